"""Hostile inputs, measured: `python -m core collect` against a hostile stand-in, and embedding
sixteen 59 MP PNGs with four decode threads per core. Run with `python -m bench.bench_hostile`.

Both run in child processes, so each peak RSS is that command's alone. The collect run gets a
search whose results mix good photos with every hostile link (header drip, body drip, a host that
never answers, PostScript, HTML and forged sizes posing as photos), then a search page that never
ends and one that drips: its wall time is bounded by the downloader's and the search's deadlines.
The embedding run is repeated without the shared decode budget, as the code decoded before, when
the machine has the memory to spare. Last, a zip of 20,000 tiny non-photos is imported in-process.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import table
from core.intake.download import DownloadSettings
from core.files import TEMP_PREFIX
from core.images import ImageRejected, decode_image
from core.intake.search import DEADLINE
from tests.hostile_files import forged_png
from tests.hostile_standin import ENDLESS_QUERY, SLOW_QUERY, HostileStandin

GOOD_PHOTOS = 12
JUNK_FILES = 20_000
PNGS = 16
RSS_LIMIT_COLLECT_MB = 500
RSS_LIMIT_EMBED_MB = 600
ROOT = Path(__file__).resolve().parents[1]


def _loopback(url: str, i: int) -> str:
    """A stand-in URL on a name the system resolver knows: 127.0.0.1 or localhost, taking turns."""
    host = ("127.0.0.1", "localhost")[i % 2]
    return url.replace(url.split("/")[2].split(":")[0], host, 1)


def _child(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run `python ARGS`; (result, wall seconds, peak RSS in MB of that child alone, from wait4)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(args, process.returncode, out.read(), err.read())
    return result, seconds, usage.ru_maxrss / 1024


def collect_run() -> None:
    with HostileStandin(hosts=1) as standin, tempfile.TemporaryDirectory() as tmp:
        mixed = standin.hostile_urls() + standin.query_photo_urls("good", GOOD_PHOTOS)
        standin.results["hostile mix"] = [_loopback(url, i) for i, url in enumerate(mixed)]
        out = Path(tmp) / "out"
        env = {"TRANSFERLAB_SEARCH_URL": standin.endpoint, "TRANSFERLAB_ALLOW_PRIVATE_HOSTS": "1"}
        result, seconds, peak = _child(["-m", "core", "collect", str(out), "hostile mix", ENDLESS_QUERY, SLOW_QUERY,
                                        "--per-class", str(len(mixed))], env)
        if result.returncode != 0:
            raise SystemExit(f"collect failed ({result.returncode}): {result.stderr[-2000:]}")
        report = json.loads(result.stdout)
        leftovers = [p for p in out.rglob(f"{TEMP_PREFIX}*")]
        photos = [p for p in out.glob("*/*") if p.is_file() and not p.parent.name.startswith(".")]  # not .transferlab/
        unreadable = [p for p in photos if not _decodes(p)]
        settings = DownloadSettings()
    print(f"python -m core collect: {len(mixed)} results for 'hostile mix' ({GOOD_PHOTOS} good photos, "
          f"{len(mixed) - GOOD_PHOTOS} hostile links), then an endless and a dripping search page; "
          f"deadlines {settings.deadline:.0f} s per photo, {DEADLINE:.0f} s per search page; {os.cpu_count()} CPU cores")
    rows = []
    for c in report["classes"]:
        failed = ", ".join(f"{reason} {n}" for reason, n in sorted(c["failed"].items(), key=lambda kv: -kv[1])) or "-"
        rows.append([c["class_name"], c["saved"], failed, c["seconds"]])
    print(table(["class", "saved", "failures by reason", "seconds"], rows))
    print(table(["wall seconds", "peak RSS MB", f"RSS limit MB", "partial files left", "stored files that don't decode"],
                [[seconds, peak, RSS_LIMIT_COLLECT_MB, len(leftovers), len(unreadable)]]))


def zip_run() -> None:
    """Importing a zip of 20,000 tiny files that are not photos: rejections are recorded in batches."""
    from core.intake.ingest import import_zip
    from core.store.project import Project
    from tests.photos import zip_bytes

    archive = zip_bytes({f"junk/{i}.jpg": b"not a photo %d" % i for i in range(JUNK_FILES)})
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(Path(tmp), create=True)
        started = time.perf_counter()
        report = import_zip(project, io.BytesIO(archive))
        seconds = time.perf_counter() - started
        recorded = len(project.rejected_inputs(limit=JUNK_FILES + 1))
    print(f"\nImporting a zip of {JUNK_FILES:,} tiny files that are not photos")
    print(table(["seconds", "files/s", "rejected", "recorded"], [[seconds, JUNK_FILES / seconds, len(report.rejected),
                                                                 recorded]]))


def _decodes(path: Path) -> bool:
    try:
        decode_image(path.read_bytes())
        return True
    except ImageRejected:
        return False


EMBED_CHILD = """
import os, sys, time
from pathlib import Path
from core import images
from core.model.backbones import get_backbone
from core.model.embed import EmbeddingCache, embed_files, litert_backbone
folder, budget = Path(sys.argv[1]), int(sys.argv[2])
images.DECODE_BUDGET.limit = budget
spec = get_backbone("efficientnet_lite0")
paths = sorted(folder.glob("*.png"))
started = time.perf_counter()
result = embed_files(paths, [p.stem for p in paths], spec, cache=EmbeddingCache(folder / "embeddings.sqlite"),
                     decode_threads=4 * (os.cpu_count() or 1))
print(len(result.ok), len(result.failed), round(time.perf_counter() - started, 1))
"""


def embed_run() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i in range(PNGS):
            (folder / f"forged{i}.png").write_bytes(forged_png(7000 + i, 8400))
        convert = "from core.model.backbones import get_backbone; from core.model.embed import litert_backbone; " \
                  "litert_backbone(get_backbone('efficientnet_lite0'))"
        _child(["-c", convert], {})  # conversion needs TensorFlow: done first, in its own process
        budgets = {"shared decode budget (64 MP)": 64_000_000}
        if _available_gb() > 12:
            budgets["no budget (as before)"] = 10 ** 12
        rows = []
        for label, budget in budgets.items():
            for old in folder.glob("embeddings.sqlite*"):
                old.unlink()
            result, seconds, peak = _child(["-c", EMBED_CHILD, str(folder), str(budget)], {})
            if result.returncode != 0:
                raise SystemExit(f"embedding failed: {result.stderr[-2000:]}")
            ok, failed, embed_seconds = result.stdout.split()[-3:]
            rows.append([label, ok, failed, float(embed_seconds), peak])
    threads = 4 * (os.cpu_count() or 1)
    print(f"\nEmbedding {PNGS} PNGs of 59 MP (about 172 KB each on disk) with {threads} decode threads "
          f"({os.cpu_count()} cores x 4); RSS limit {RSS_LIMIT_EMBED_MB} MB")
    print(table(["decoding", "embedded", "failed", "seconds", "peak RSS MB"], rows))
    if len(rows) == 2:
        print(f"peak RSS without the budget / with it: {rows[1][4] / rows[0][4]:.1f}x")
    else:
        print("(the run without a budget is skipped: it needs more than 12 GB of free memory)")


def _available_gb() -> float:
    import psutil

    return psutil.virtual_memory().available / 1024 ** 3


def main() -> None:
    collect_run()
    embed_run()
    zip_run()


if __name__ == "__main__":
    main()
