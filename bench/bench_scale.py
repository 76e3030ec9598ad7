"""Every step of the app on projects of 1,000, 10,000 and 50,000 photos, and how each figure grows.

    TRANSFERLAB_CACHE=/work/cache python -m bench.bench_scale [--sizes 1000,10000,50000] [--steps STEPS] \
        [--limit SECONDS] [--dir DIR] [--rounds N] [--stand-in-embeddings]

The photos are made from the real shared photo sets by `bench.scale_photos` (crops, mirror images, colour and size
changes; about 100 classes at 10,000 and more; 1 % planted near-duplicates) in DIR/n<size>/photos, once, and
reused. Per size, in a fresh workspace (DIR/n<size>/workspace) and a cache kept per size (DIR/n<size>/cache, the
converted backbones linked from the shared cache), these steps run, each in its own process under a time limit
(a step past it is killed and reported as "> limit", with what it got done by then):

- import:     the photo folder imported into a new project (`core.intake.ingest.import_folder`): photos a second
- zip:        the same photos as a zip into a second project (`import_zip`): photos a second
- duplicates: `Project.duplicate_groups` on every kept photo: seconds, and the planted copies it found
- count:      one "ready to train" count (`preembed.readiness`), as three pages draw it every 2 s
- prepare:    the worker's background embedding (`preembed.embed_some`, one thread) until every photo is ready to
              train: photos a second and seconds. Embeddings already in DIR's cache from an earlier run are not made again:
              then the earlier run's rate is printed, marked "(earlier run)".
- head:       a head-only training run through the worker's code (`run_job`), embeddings cached: the head
              solve's seconds, the run's seconds and its peak memory
- suspects:   the Review page's check for photos in the wrong class (`suspects.rank_suspects`)
- suspects-server: the same check as a user meets it: `streamlit run app.py` on the workspace, Review's Suspects tab in
              Chromium, "Find suspects" clicked, until the tab shows the ranking (any kept ranking is dropped first).
              The check runs in the server's process, on a thread, so this is the memory a user's server reaches:
              seconds from the click (and the CPU seconds the server and its worker used meanwhile); the server's RSS
              before the click, its peak (VmHWM) and its RSS 2 s after the check; the peak of the server and its
              descendants (the worker) together, sampled from /proc every 0.2 s. Screenshots of the tab 3 s and 60 s
              into the check and after it: DIR/n<size>/suspects-*.png
- train-server: training as a user meets it, then the check while the new run's downloads are made: a fresh
              `streamlit run app.py`, "🏋️ Train" clicked on Train (default settings), and once the run is usable,
              with its downloads still being made, Review's "Find suspects": the worker's TFLite conversion and the
              server's check at once, the most memory measured. Seconds until usable and the peak of the server and
              its worker together while training; the check's and the downloads' seconds from the click, the peak
              meanwhile, and what the worker keeps 2 s after both
- export:     the run's model downloads (`export.assemble_downloads`) and the photos as a zip (`dataset_zip`)
- pages:      `streamlit run app.py` on the workspace; every page's time to a settled screen (as
              `bench.bench_pages` measures it: the app's script run finished and no skeleton left), first
              visit and median of --rounds; the server's and its worker's peak memory (VmHWM)
- size:       the project's database and the cache's embeddings, in MB

With --stand-in-embeddings the embeddings are NOT made from the photos: embedding 50,000 photos takes about two
hours here (7 photos a second), so each photo's vectors (plain and mirrored, default backbone) are its source
photo's real cached embedding (from the shared cache, TRANSFERLAB_CACHE) plus noise of its own (shared by its mirror
image) and an offset per class (so "beans" and "beans 2", made from the same kind, are two classes). They are
written under the photo's real cache keys in a cache of their own (DIR/n<size>/cache-standin), and the project is a
copy of the imported one (DIR/n<size>/workspace-standin: photos hard-linked, database copied), so no stand-in is
ever read as a real embedding. Only time and memory are read from the steps that use them (head, suspects,
suspects-server, export, Results, Try it); their accuracy says nothing about the app's.

Memory is each step process's peak RSS (ru_maxrss; for suspects-server, train-server and pages, the server's and
worker's), not an estimate. The last columns are the growth exponents between sizes: figure ~ n^k (1 = linear; above
1 grows worse than the photos). Run it with `nice -n 5` and quote the load average (printed) beside the figures.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import resource
import shutil
import statistics
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bench.common import table
from bench.scale_photos import PhotoSet, make_photos

STEPS = ("import", "zip", "duplicates", "count", "prepare", "head", "suspects", "suspects-server", "train-server",
         "export", "pages", "size")
PAGES = ("start", "collect", "review", "train", "results", "predict")
PROJECT = "scale"


@dataclass
class Outcome:
    """What one step reported: figures by name (None = not measured), or that it ran past its limit."""

    figures: dict[str, float | str | None] = field(default_factory=dict)
    note: str = ""


# ---- running a step in its own process, under a limit -----------------------------------------------------------


def _child(queue, progress, fn: Callable, args: tuple) -> None:
    try:
        figures = fn(progress, *args)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        queue.put(("ok", {**figures, "peak MB": round(peak)}))
    except BaseException as exc:  # noqa: BLE001 - the bench reports it and goes on with the next step
        queue.put(("failed", f"{type(exc).__name__}: {exc}"))


def in_process(fn: Callable, limit: float, *args) -> tuple[dict, str]:
    """Run fn(progress, *args) in a forked process; (figures, note). `progress` is [done, total], shared. Past
    `limit` seconds the process is killed and the note says so, with how far it got."""
    ctx = multiprocessing.get_context("fork")
    queue, progress = ctx.Queue(), ctx.Array("l", 2)
    process = ctx.Process(target=_child, args=(queue, progress, fn, args), daemon=True)
    start = time.perf_counter()
    process.start()
    try:
        status, value = queue.get(timeout=limit)
    except Exception:  # queue.Empty: past its limit
        process.kill()
        process.join()
        elapsed = time.perf_counter() - start
        done, total = progress[:]
        return {"done": done, "total": total, "seconds": elapsed}, f"> {limit:.0f} s (killed; {done:,} of {total:,} done)"
    process.join()
    return (value, "") if status == "ok" else ({}, value)


# ---- the steps (each runs in a child process; `progress` is [done, total], for a partial figure) --------------


def _track(progress) -> Callable[[int, int], None]:
    return lambda done, total: progress.__setitem__(slice(None), [done, total])


def _project():
    from core.store.project import open_project

    return open_project(PROJECT)


def step_import(progress, folder: Path) -> dict:
    from core.intake.ingest import import_folder
    from core.store.project import create_project

    project = create_project(PROJECT)
    start = time.perf_counter()
    report = import_folder(project, folder, on_progress=_track(progress))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "added": report.added, "photos/s": report.added / seconds}


def step_zip(progress, archive: Path) -> dict:
    from core.intake.ingest import import_zip
    from core.store.project import create_project

    project = create_project("zipped")
    start = time.perf_counter()
    report = import_zip(project, archive, on_progress=_track(progress))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "added": report.added, "photos/s": report.added / seconds}


def step_duplicates(progress, planted: list[tuple[str, str]]) -> dict:
    project = _project()
    start = time.perf_counter()
    found = project.duplicate_groups()
    seconds = time.perf_counter() - start
    where = {(r.class_name, r.original_name): i for i, group in enumerate(found) for r in group}
    pairs = [tuple(tuple(p.split("/", 1)) for p in pair) for pair in planted]
    caught = sum(a in where and where.get(a) == where.get(b) for a, b in pairs)
    return {"seconds": seconds, "groups": len(found), "planted found": caught, "planted": len(pairs)}


def step_count(progress) -> dict:
    from core.model import preembed

    project = _project()
    start = time.perf_counter()
    ready = preembed.readiness(project)
    return {"seconds": time.perf_counter() - start, "ready": ready.ready, "photos": ready.total}


def step_prepare(progress) -> dict:
    from core.model import preembed

    project = _project()
    before = preembed.readiness(project)
    progress[1] = before.total - before.ready
    start = time.perf_counter()
    while (tried := preembed.embed_some(project, threads=1)):
        progress[0] += tried
    seconds = time.perf_counter() - start
    made = preembed.readiness(project).ready - before.ready
    return {"photos": before.total, "made": made, "seconds": seconds, "photos/s": made / seconds if made else None}


def step_head(progress) -> dict:
    from core.jobs.worker import run_job
    from core.model.train import TrainConfig

    project = _project()
    run_id = project.create_run(TrainConfig().to_dict())
    start = time.perf_counter()
    usable, _ = run_job(project, run_id)
    run = project.run(run_id)
    if not usable:
        raise RuntimeError(f"the run failed: {run.error}")
    return {"run seconds": time.perf_counter() - start, "head seconds": run.summary.get("head_seconds"),
            "embed seconds": run.summary.get("embed_seconds"), "val accuracy": run.summary.get("val_accuracy")}


def step_suspects(progress) -> dict:
    from core.model.suspects import rank_suspects

    start = time.perf_counter()
    ranked = rank_suspects(_project(), on_progress=_track(progress))
    return {"seconds": time.perf_counter() - start, "photos": len(ranked)}


def step_export(progress, destination: Path) -> dict:
    from core.serving.export import assemble_downloads, dataset_zip

    project = _project()
    runs = [r for r in project.runs() if r.status == "completed"]
    figures: dict = {}
    if runs:
        start = time.perf_counter()
        assemble_downloads(runs[0].dir)
        figures["downloads s"] = time.perf_counter() - start
    start = time.perf_counter()
    dataset_zip(project, destination)
    figures["photos zip s"] = time.perf_counter() - start
    destination.unlink(missing_ok=True)
    return figures


STAND_IN_PHOTO_NOISE = 0.7  # per photo, in units of the source embeddings' per-dimension spread
STAND_IN_CLASS_OFFSET = 0.2   # per class, the same units


def _source_of(record, kinds: dict[str, dict[str, Path]]) -> Path | None:
    """The shared photo a made photo (`bench.scale_photos`: "<source stem>-<n>.jpg", planted copies
    "copy-<made stem>.jpg") was made from, through its class's kind ("beans 2" is made from "beans")."""
    import re

    kind = record.class_name if record.class_name in kinds else re.sub(r" \d+$", "", record.class_name)
    stem = re.sub(r"-\d{6}$", "", Path(record.original_name or record.path.name).stem.removeprefix("copy-"))
    # a planted copy may sit in another class than its original: then its source is another kind's photo
    return kinds.get(kind, {}).get(stem) or next((k[stem] for k in kinds.values() if stem in k), None)


def step_stand_in(progress, shared_cache: Path) -> dict:
    """Every kept photo's plain and mirrored vectors (default backbone), made from its source photo's real cached
    embedding plus noise: see the module's note. Written to this size's stand-in cache (TRANSFERLAB_CACHE)."""
    import hashlib

    import numpy as np

    from bench.scale_photos import source_kinds
    from core.model.backbones import DEFAULT_BACKBONE, get_backbone
    from core.model.embed import EmbeddingCache, view_key

    start = time.perf_counter()
    spec = get_backbone(DEFAULT_BACKBONE)
    shared, own = EmbeddingCache(shared_cache / "embeddings.sqlite"), EmbeddingCache()
    kinds = {kind: {p.stem: p for p in paths} for kind, paths in source_kinds().items()}
    records = _project().images()
    sources = {r.sha256: _source_of(r, kinds) for r in records}
    missing = [r.original_name for r in records if sources[r.sha256] is None]
    if missing:
        raise RuntimeError(f"{len(missing)} photos have no source photo, e.g. {missing[:3]}")
    source_sha = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in set(sources.values())}
    keys = [view_key(part, flip) for part in spec.parts for flip in (False, True)]
    real = {key: shared.get(key, list(set(source_sha.values()))) for key in keys}
    lacking = {key: len(set(source_sha.values()) - set(found)) for key, found in real.items()}
    if any(lacking.values()):
        raise RuntimeError(f"the shared cache lacks source embeddings: {lacking} (embed the shared sets first)")
    rng = np.random.default_rng(0)
    spread = np.stack(list(real[keys[0]].values())).std(axis=0)
    classes = sorted({r.class_name for r in records})
    offsets = {name: rng.normal(0, STAND_IN_CLASS_OFFSET, spread.shape) * spread for name in classes}
    progress[1] = len(records)
    for first in range(0, len(records), 2000):
        chunk = records[first:first + 2000]
        noise = {r.sha256: rng.normal(0, STAND_IN_PHOTO_NOISE, spread.shape) * spread + offsets[r.class_name]
                 for r in chunk}
        for key in keys:
            own.put(key, {r.sha256: np.maximum(real[key][source_sha[sources[r.sha256]]] + noise[r.sha256], 0)
                          for r in chunk})  # embeddings come out of a ReLU: never negative
        progress[0] = first + len(chunk)
    return {"photos": len(records), "sources": len(source_sha), "seconds": time.perf_counter() - start}


def _stand_in_workspace(imported: Path, copy: Path) -> None:
    """A copy of the imported workspace for stand-in runs: photos and thumbnails hard-linked, the rest copied."""
    if copy.exists():
        return
    def link_or_copy(src: str, dst: str) -> None:
        if "/images/" in src or "/thumbs/" in src:
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)
    partial = copy.with_name(copy.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(imported, partial, copy_function=link_or_copy,
                    ignore=shutil.ignore_patterns("runs", "streamlit.log"))
    partial.rename(copy)


# ---- steps in this process --------------------------------------------------------------------------------------


def _peak_mb(pid: int) -> float | None:
    """A live process's peak resident memory (VmHWM), MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def step_pages(workspace: Path, rounds: int, limit: float) -> Outcome:
    """Every page's time to a settled screen on a warm server, and the server's and worker's peak memory."""
    import psutil

    from bench.bench_pages import settle_time
    from tests.browser import browser_page, streamlit_server

    out = Outcome()
    timeout = min(limit, 120.0)
    with streamlit_server(workspace) as url, browser_page(height=1200) as page:
        def timed(name: str) -> float | str:
            try:
                return settle_time(page, f"{url}/{name}?project={PROJECT}", timeout=timeout)
            except Exception:  # playwright's TimeoutError: not settled within the limit
                return f"> {timeout:.0f}"

        timed("")  # the server's first run: imports
        for name in PAGES:
            out.figures[f"{name} first s"] = timed(name)
        for name in PAGES:
            times = [timed(name) for _ in range(rounds)]
            numbers = [t for t in times if isinstance(t, float)]
            out.figures[f"{name} s"] = statistics.median(numbers) if len(numbers) == len(times) else times[-1]
            out.figures[f"{name} rounds"] = times  # in the log: one slow round among fast ones is load, not the page
        server = next((p for p in psutil.Process().children() if "streamlit" in " ".join(p.cmdline())), None)
        if server is not None:
            out.figures["server peak MB"] = _peak_mb(server.pid)
            workers = [p for p in server.children(recursive=True) if "worker" in " ".join(p.cmdline()[1:3])]
            out.figures["worker peak MB"] = _peak_mb(workers[0].pid) if workers else None
    return out


class MemorySampler:
    """A process's resident memory and its descendants' (the worker, when one runs), read from /proc every
    `every` seconds on a thread: the peak of their sum and of the process alone, MB."""

    def __init__(self, pid: int, every: float = 0.2):
        import threading

        import psutil

        self.process, self.every = psutil.Process(pid), every
        self.peak_total = self.peak_own = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> tuple[float, float]:
        """(the process's RSS, its and its descendants' together), MB."""
        import psutil

        own = total = 0.0
        for i, process in enumerate([self.process, *self.process.children(recursive=True)]):
            try:
                rss = process.memory_info().rss / 2**20
            except psutil.NoSuchProcess:  # a child that ended between the listing and the read
                continue
            own, total = (rss if i == 0 else own), total + rss
        self.peak_own, self.peak_total = max(self.peak_own, own), max(self.peak_total, total)
        return own, total

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def cpu_seconds(self) -> tuple[float, float]:
        """(the process's CPU seconds so far, its descendants' now alive)."""
        import psutil

        def used(process) -> float:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                return 0.0
            return times.user + times.system

        return used(self.process), sum(used(p) for p in self.process.children(recursive=True))

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


# The Suspects tab when its check is over: no Stop button, the start button enabled and named "Check again" (the
# bench starts from a project without a kept ranking), or an error box; and the script run finished.
CHECK_ENDED = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const button = document.querySelector('.st-key-find_suspects button');
  return app !== null && app.getAttribute('data-test-script-state') === 'notRunning'
    && !document.querySelector('[data-testid="stSkeleton"]') && !document.querySelector('.st-key-stop_suspects')
    && (document.querySelector('[data-testid="stAlertContentError"]') !== null
        || (button !== null && !button.disabled && button.innerText.includes('Check again')));
}"""


SHOTS_AT = (3, 60)  # seconds after the click at which the running check is photographed


def step_server_suspects(workspace: Path, limit: float, shots: Path) -> Outcome:
    """The suspects check as a user meets it: a fresh `streamlit run app.py`, Review's Suspects tab in Chromium,
    "Find suspects", until the tab shows the ranking. Seconds from the click; the server's RSS before the click,
    and its peak with its descendants (the worker) sampled every 0.2 s, and its own VmHWM. Screenshots of the tab
    while the check runs (SHOTS_AT) and after it, in `shots`."""
    from playwright.sync_api import TimeoutError as NotYet

    from core.model import suspects
    from tests.browser import browser_page, server_pid, streamlit_server

    _project().put_note(suspects.NOTE, "null")  # no kept ranking: the tab starts at "Find suspects"
    out = Outcome()
    with streamlit_server(workspace) as url, browser_page(height=1200) as page:
        _suspects_tab(page, url)
        with MemorySampler(server_pid(url)) as memory:
            out.figures["server before MB"], out.figures["before MB"] = map(round, memory.sample())
            cpu = memory.cpu_seconds()
            start = time.perf_counter()
            page.locator(".st-key-find_suspects button").click()
            for moment in (*SHOTS_AT, limit):
                try:
                    wait = max(moment - (time.perf_counter() - start), 0.1)
                    page.wait_for_function(CHECK_ENDED, timeout=wait * 1000, polling=200)
                except NotYet:
                    if moment < limit:
                        page.screenshot(path=str(shots / f"suspects-{moment}s.png"), full_page=True)
                    continue
                out.figures["seconds"] = time.perf_counter() - start
                out.figures["server CPU s"], out.figures["worker CPU s"] = (
                    after - before for after, before in zip(memory.cpu_seconds(), cpu))  # how much of it was waiting
                page.wait_for_timeout(2_000)
                out.figures["server after MB"] = round(memory.sample()[0])  # what the server keeps once it is over
                break
            else:  # not over within the limit: reported as such, its memory so far kept
                out.note = f"> {limit:.0f} s (the check was still running)"
        out.figures["peak MB"], out.figures["server peak MB"] = round(memory.peak_total), round(memory.peak_own)
        out.figures["server VmHWM MB"] = _peak_mb(memory.process.pid)
        workers = [_peak_mb(p.pid) or 0 for p in memory.process.children(recursive=True)]
        out.figures["worker VmHWM MB"] = max(workers) if workers else None
        page.screenshot(path=str(shots / "suspects-done.png"), full_page=True)
        error = page.locator('[data-testid="stAlertContentError"]')
        if not out.note and error.count():
            out.note = f"failed: {error.first.inner_text()[:300]}"
    return out


def _suspects_tab(page, url: str) -> None:
    """Review's Suspects tab, settled."""
    from tests.browser import SETTLED, wait_idle

    page.goto(f"{url}/review?project={PROJECT}", timeout=120_000)
    page.wait_for_function(SETTLED, timeout=120_000, polling=50)
    page.get_by_role("tab", name="Suspects").click()
    wait_idle(page, timeout=120_000)


def step_server_train(workspace: Path, limit: float, shots: Path) -> Outcome:
    """Training as a user meets it, then the suspects check while the new run's downloads are made (the worker's
    TFLite conversion and the server's check at once: the worst memory case measured): a fresh `streamlit run
    app.py`, "🏋️ Train" clicked on Train (default settings), and as soon as the run is usable with its downloads
    still being made, Review's "Find suspects". The server's and its worker's RSS together, sampled every 0.2 s: the
    peak while training, the peak from the click until both the check and the downloads are done, the worker's RSS
    2 s after both (what it keeps); seconds of each. Screenshot: DIR/n<size>/train-check-done.png."""
    from core.jobs.pipeline import has_model
    from core.model import suspects
    from core.serving.export import downloads_state
    from tests.browser import SETTLED, browser_page, server_pid, streamlit_server

    project = _project()
    project.put_note(suspects.NOTE, "null")
    earlier = {run.id for run in project.runs()}
    out = Outcome()
    deadline = time.perf_counter() + limit
    with streamlit_server(workspace) as url, browser_page(height=1200) as page:
        page.goto(f"{url}/train?project={PROJECT}", timeout=120_000)
        page.wait_for_function(SETTLED, timeout=120_000, polling=50)
        button = page.get_by_role("button", name="🏋️ Train", exact=True)
        while button.is_disabled() and time.perf_counter() < deadline:  # the page waits for every photo's vectors
            page.wait_for_timeout(1_000)
        with MemorySampler(server_pid(url)) as training:
            start = time.perf_counter()
            button.click()
            run = None
            while time.perf_counter() < deadline:
                run = next((r for r in project.runs() if r.id not in earlier), None)
                if run is not None and (run.status == "failed" or has_model(run)):
                    break
                time.sleep(0.2)
            out.figures["training s"] = time.perf_counter() - start
        out.figures["training peak MB"] = round(training.peak_total)
        if run is None or not has_model(run):
            out.note = f"failed: {run.error}" if run is not None and run.error else f"> {limit:.0f} s (training)"
            return out
        _suspects_tab(page, url)
        with MemorySampler(server_pid(url)) as checking:
            out.figures["downloads ready at click"] = downloads_state(run.dir) != "preparing"
            start = time.perf_counter()
            page.locator(".st-key-find_suspects button").click()
            check = downloads = None
            while (check is None or downloads is None) and time.perf_counter() < deadline:
                if check is None and page.evaluate(CHECK_ENDED):
                    check = time.perf_counter() - start
                if downloads is None and downloads_state(run.dir) != "preparing":
                    downloads = time.perf_counter() - start
                page.wait_for_timeout(200)
            out.figures["check s"], out.figures["downloads s after click"] = check, downloads
            page.wait_for_timeout(2_000)
            own, total = checking.sample()
            out.figures["worker after MB"] = round(total - own)
        out.figures["check peak MB"], out.figures["check server peak MB"] = (
            round(checking.peak_total), round(checking.peak_own))
        if check is None or downloads is None:
            out.note = f"> {limit:.0f} s (the check or the downloads were not done)"
        page.screenshot(path=str(shots / "train-check-done.png"), full_page=True)
    return out


def step_size(workspace: Path, cache: Path) -> Outcome:
    meta = workspace / PROJECT
    db = sum(p.stat().st_size for p in meta.glob("project.sqlite*"))
    embeddings = sum(p.stat().st_size for p in cache.glob("embeddings.sqlite*"))
    return Outcome({"database MB": db / 1e6, "embeddings MB": embeddings / 1e6,
                    "thumbnails MB": sum(p.stat().st_size for p in (meta / "thumbs").glob("*")) / 1e6})


# ---- one size ---------------------------------------------------------------------------------------------------


def _zip_of(photos: PhotoSet, path: Path) -> Path:
    if not path.exists():
        partial = path.with_suffix(".part")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as zf:
            for f in photos.files():
                zf.write(f, f.relative_to(photos.folder).as_posix())
        partial.rename(path)
    return path


def _cache_for(root: Path, shared_cache: Path) -> Path:
    """A cache of this size's own (embeddings of made photos stay out of the shared one), converted backbones
    linked from the shared cache so nothing is converted again."""
    shared = shared_cache / "backbones"
    root.mkdir(parents=True, exist_ok=True)
    if shared.is_dir() and not (root / "backbones").exists():
        (root / "backbones").symlink_to(shared)
    return root


def measure(size: int, steps: list[str], limit: float, base: Path, rounds: int, shared_cache: Path,
            stand_in: bool = False) -> dict[str, Outcome]:
    """One size's steps; `shared_cache` is TRANSFERLAB_CACHE as given (each size points it at its own cache)."""
    folder = base / f"n{size}"
    t0 = time.perf_counter()
    photos = make_photos(folder, size, progress=True)
    print(f"{size:,} photos in {photos.classes} classes ready in {time.perf_counter() - t0:.0f} s", flush=True)
    cache = _cache_for(folder / ("cache-standin" if stand_in else "cache"), shared_cache)
    workspace = folder / "workspace"
    if "import" in steps:
        shutil.rmtree(workspace, ignore_errors=True)
        shutil.rmtree(folder / "workspace-standin", ignore_errors=True)
    workspace.mkdir(parents=True, exist_ok=True)
    os.environ["TRANSFERLAB_HOME"], os.environ["TRANSFERLAB_CACHE"] = str(workspace), str(cache)
    earlier = folder / "prepare.json"
    results: dict[str, Outcome] = {}

    def run(name: str, fn: Callable, *args) -> None:
        if name not in steps:
            return
        start = time.perf_counter()
        figures, note = in_process(fn, limit, *args)
        results[name] = Outcome(figures, note)
        print(f"  {name}: {time.perf_counter() - start:.0f} s {note} {json.dumps(figures, default=str)}", flush=True)

    run("import", step_import, photos.folder)
    if "zip" in steps:
        run("zip", step_zip, _zip_of(photos, folder / "photos.zip"))
        shutil.rmtree(workspace / "zipped", ignore_errors=True)
    if stand_in:
        steps = [*steps, "stand-in"]
        workspace = folder / "workspace-standin"
        _stand_in_workspace(folder / "workspace", workspace)
        os.environ["TRANSFERLAB_HOME"] = str(workspace)
        print("  STAND-IN EMBEDDINGS: every photo's vectors are its source photo's real embedding plus noise; "
              "only times and memory below mean anything", flush=True)
        run("stand-in", step_stand_in, shared_cache)
        if results["stand-in"].note:  # the later steps would embed every photo for real, into the stand-ins' cache
            raise SystemExit(f"the stand-in embeddings failed: {results['stand-in'].note}")
    run("duplicates", step_duplicates, photos.planted)
    run("count", step_count)
    run("prepare", step_prepare)
    ready = _prepared(results.get("prepare"), earlier)

    def here(name: str, fn: Callable, *args) -> None:  # a step that drives a server from this process
        if name in steps:
            t = time.perf_counter()
            results[name] = fn(*args)
            print(f"  {name}: {time.perf_counter() - t:.0f} s {results[name].note} "
                  f"{json.dumps(results[name].figures, default=str)}", flush=True)

    skipped = Outcome(note="skipped: not every photo was prepared within the limit")
    for name, fn, *args in (("head", step_head), ("suspects", step_suspects),
                            ("export", step_export, folder / "export.zip")):
        if ready or name not in steps:
            run(name, fn, *args)
        else:  # each would embed the rest itself, which the prepare step showed does not fit the limit
            results[name] = skipped
    for name, fn in (("suspects-server", step_server_suspects), ("train-server", step_server_train)):
        if ready or name not in steps:
            here(name, fn, workspace, limit, folder)
        else:
            results[name] = skipped
    here("pages", step_pages, workspace, rounds, limit)
    if "size" in steps:
        results["size"] = step_size(workspace, cache)
    return results


def _prepared(outcome: Outcome | None, earlier: Path) -> bool:
    """Whether every photo is embedded; fills in the rate of a step cut short, or of an earlier run when this one
    found everything cached."""
    if outcome is None:
        return True  # not asked for: the later steps embed what they need
    figures = outcome.figures
    if outcome.note.startswith(">"):
        figures["photos/s"] = figures["done"] / figures["seconds"] if figures["done"] else None
        figures["estimate"] = f"est. {figures['total'] / figures['photos/s']:.0f}" if figures["photos/s"] else None
        return False
    if figures.get("made", 0) > 100:
        earlier.write_text(json.dumps(figures))
    elif figures.get("made") == 0 and earlier.exists():
        saved = json.loads(earlier.read_text())
        figures.update({"seconds": saved["seconds"], "photos/s": saved["photos/s"]})
        outcome.note = "(rate and time from an earlier run: every photo was cached)"
    return not outcome.note or outcome.note.startswith("(")


# ---- the table --------------------------------------------------------------------------------------------------

FIGURES = [  # (row label, step, figure name)
    ("import, folder: photos/s", "import", "photos/s"),
    ("import, folder: s", "import", "seconds"),
    ("import, folder: peak MB", "import", "peak MB"),
    ("import, zip: photos/s", "zip", "photos/s"),
    ("duplicate grouping: s", "duplicates", "seconds"),
    ("duplicate grouping: planted found", "duplicates", "planted found"),
    ("duplicate grouping: groups", "duplicates", "groups"),
    ("duplicate grouping: peak MB", "duplicates", "peak MB"),
    ("preparation: photos/s", "prepare", "photos/s"),
    ("preparation: s until ready", "prepare", "seconds"),
    ("'ready to train' count: s", "count", "seconds"),
    ("stand-in embeddings written: s", "stand-in", "seconds"),
    ("head solve: s", "head", "head seconds"),
    ("training run: s", "head", "run seconds"),
    ("training run: peak MB", "head", "peak MB"),
    ("training run: val accuracy", "head", "val accuracy"),
    ("suspects check: s", "suspects", "seconds"),
    ("suspects check: peak MB", "suspects", "peak MB"),
    ("suspects in the server: s", "suspects-server", "seconds"),
    ("suspects in the server: server CPU s", "suspects-server", "server CPU s"),
    ("suspects in the server: worker CPU s", "suspects-server", "worker CPU s"),
    ("suspects in the server: server MB before", "suspects-server", "server before MB"),
    ("suspects in the server: server peak MB", "suspects-server", "server VmHWM MB"),
    ("suspects in the server: worker peak MB", "suspects-server", "worker VmHWM MB"),
    ("suspects in the server: server + worker peak MB", "suspects-server", "peak MB"),
    ("suspects in the server: server MB after", "suspects-server", "server after MB"),
    ("training in the server: s until usable", "train-server", "training s"),
    ("training in the server: server + worker peak MB", "train-server", "training peak MB"),
    ("check during the downloads: s", "train-server", "check s"),
    ("check during the downloads: downloads s after the click", "train-server", "downloads s after click"),
    ("check during the downloads: server + worker peak MB", "train-server", "check peak MB"),
    ("check during the downloads: server peak MB", "train-server", "check server peak MB"),
    ("check during the downloads: worker MB after", "train-server", "worker after MB"),
    ("export downloads: s", "export", "downloads s"),
    ("export photos zip: s", "export", "photos zip s"),
    *[(f"page {p}: first visit s", "pages", f"{p} first s") for p in PAGES],
    *[(f"page {p}: settled s", "pages", f"{p} s") for p in PAGES],
    ("server peak MB", "pages", "server peak MB"),
    ("worker peak MB", "pages", "worker peak MB"),
    ("database MB", "size", "database MB"),
    ("embeddings cache MB", "size", "embeddings MB"),
]


def cell(outcome: Outcome | None, figure: str) -> float | str:
    if outcome is None:
        return "-"
    value = outcome.figures.get(figure)
    if outcome.note.startswith(">"):  # past its limit: a rate measured until then is still a figure
        limit = outcome.note.split(" (")[0]
        if figure == "seconds" and outcome.figures.get("estimate"):
            return f"{limit} ({outcome.figures['estimate']})"
        if figure.endswith("MB") and value is not None:  # memory until then: a peak is at least that
            return f">= {value:.0f}" if "peak" in figure else value
        return value if figure.endswith("/s") and value is not None else limit
    if outcome.note.startswith("skipped"):
        return "skipped"
    if outcome.note and not outcome.note.startswith("(") and value is None:
        return "failed"
    return "-" if value is None else value


def exponent(a: float | str, b: float | str, n1: int, n2: int) -> str:
    """k in figure ~ n^k between two sizes; '' when either is not a measured positive number."""
    if not (isinstance(a, (int, float)) and isinstance(b, (int, float))) or a <= 0 or b <= 0:
        return ""
    return f"{math.log(b / a) / math.log(n2 / n1):+.2f}"


def report(sizes: list[int], results: dict[int, dict[str, Outcome]]) -> str:
    rows = []
    for label, step, figure in FIGURES:
        cells = [cell(results[n].get(step), figure) for n in sizes]
        if all(c == "-" for c in cells):
            continue
        rows.append([label, *cells, *[exponent(cells[i], cells[i + 1], sizes[i], sizes[i + 1])
                                      for i in range(len(sizes) - 1)]])
    headers = ["figure", *[f"{n:,}" for n in sizes], *[f"k {a // 1000}k-{b // 1000}k" for a, b in zip(sizes, sizes[1:])]]
    notes = [f"{n:,} {step}: {o.note}" for n in sizes for step, o in results[n].items() if o.note]
    return table(headers, rows) + ("\n" + "\n".join(notes) if notes else "")


def _arg(args: list[str], flag: str, default: str) -> str:
    return args[args.index(flag) + 1] if flag in args else default


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    sizes = [int(s) for s in _arg(args, "--sizes", "1000,10000,50000").split(",")]
    steps = _arg(args, "--steps", ",".join(STEPS)).split(",")
    unknown = set(steps) - set(STEPS)
    if unknown:
        raise SystemExit(f"unknown steps {sorted(unknown)}; the steps are {','.join(STEPS)}")
    if "import" not in steps:
        print("without the import step each size reuses the project its last run imported")
    limit = float(_arg(args, "--limit", "900"))
    base = Path(_arg(args, "--dir", "/tmp/transferlab-scale")).resolve()
    rounds = int(_arg(args, "--rounds", "2"))
    stand_in = "--stand-in-embeddings" in args
    from core import config

    shared_cache = config.cache_dir()  # read once: each size's steps point TRANSFERLAB_CACHE at that size's cache
    results = {}
    for size in sizes:
        print(f"== {size:,} photos (load average {os.getloadavg()[0]:.1f})", flush=True)
        results[size] = measure(size, steps, limit, base, rounds, shared_cache, stand_in)
    if stand_in:
        print("\nSTAND-IN EMBEDDINGS (--stand-in-embeddings): head, suspects (both), export, Results and Try it ran on "
              "vectors made from the source photos' real embeddings plus noise; read their times and memory, not their "
              "accuracy.")
    print(f"\nload average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(report(sizes, results))


if __name__ == "__main__":
    main()
