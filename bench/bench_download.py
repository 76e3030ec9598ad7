"""Web collection speed: bing_image_downloader's own loop against `core.intake.collect`, same links, same run.

A local stand-in for Bing serves 100 distinct photos for one query, each answered after 100 ms
(a typical image host's latency). Run with `python -m bench.bench_download`.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

from bing_image_downloader import bing, downloader

from bench.common import table
from core import config
from core.intake.collect import CollectRequest, collect
from core.intake.download import Downloader, DownloadSettings
from core.store.project import Project
from tests.bing_standin import BingStandin, photo_file, query_seed

QUERY = "bench photos"
IMAGES = 100
LATENCY = 0.1


def library_run(standin: BingStandin, out_dir: Path) -> int:
    """bing_image_downloader.download() pointed at the stand-in; returns the files it saved."""
    with mock.patch.object(bing, "urllib", _urllib_towards(standin)), contextlib.redirect_stdout(io.StringIO()):
        downloader.download(QUERY, limit=IMAGES, output_dir=str(out_dir), adult_filter_off=False, timeout=5,
                            filter="photo", verbose=False)
    return sum(1 for _ in (out_dir / QUERY).iterdir())


def _urllib_towards(standin: BingStandin) -> SimpleNamespace:
    """The `urllib` the library sees: its hard-coded Bing URL and the stand-in's host names lead to 127.0.0.1."""

    def request(url: str, data: bytes | None = None, headers: dict | None = None) -> urllib.request.Request:
        if url.startswith(config.BING_ENDPOINT):
            url = standin.endpoint + url[len(config.BING_ENDPOINT):]
        else:
            parts = urllib.parse.urlsplit(url)
            url = parts._replace(netloc=f"127.0.0.1:{parts.port}").geturl()
        return urllib.request.Request(url, data, headers or {})

    return SimpleNamespace(request=SimpleNamespace(Request=request, urlopen=urllib.request.urlopen),
                           parse=urllib.parse)


def collect_run(standin: BingStandin, project_dir: Path) -> int:
    """core.intake.collect into a fresh project; returns the photos it saved."""
    project = Project(project_dir, create=True)
    with Downloader(DownloadSettings(allow_private=True), resolve=standin.resolve) as pool:
        report = collect(project, CollectRequest([QUERY], per_class=IMAGES), downloader=pool)
    return report.classes[0].saved


def timed(run) -> tuple[int, float]:
    started = time.perf_counter()
    saved = run()
    return saved, time.perf_counter() - started


def main() -> None:
    with BingStandin(latency=LATENCY, per_query=IMAGES) as standin, tempfile.TemporaryDirectory() as tmp:
        for i, url in enumerate(standin.query_photo_urls(QUERY)):  # make every photo once, before the clocks run
            photo_file(query_seed(QUERY) + i, url.rsplit(".", 1)[-1])
        with mock.patch.dict(os.environ, {"TRANSFERLAB_SEARCH_URL": standin.endpoint}):
            results = {
                "bing_image_downloader": timed(lambda: library_run(standin, Path(tmp) / "library")),
                "transferlab collect": timed(lambda: collect_run(standin, Path(tmp) / "project")),
            }
    rates = {name: saved / seconds for name, (saved, seconds) in results.items()}
    print(f"{IMAGES} distinct photos from {standin.hosts} hosts, {LATENCY * 1000:.0f} ms per image request, "
          f"core.intake.collect fully decodes and stores each one, {os.cpu_count()} CPU cores")
    print(table(["downloader", "images", "seconds", "images/s"],
                [[name, saved, seconds, rates[name]] for name, (saved, seconds) in results.items()]))
    print(f"core.intake.collect speed-up over bing_image_downloader: "
          f"{rates['transferlab collect'] / rates['bing_image_downloader']:.1f}x")

if __name__ == "__main__":
    main()
