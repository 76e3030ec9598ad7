"""Many writers on one project at once, then rows against files: the inconsistencies must be 0.

Four writer processes (imports, moves, class renames, rejects/restores) and back-to-back training
runs (real worker processes) share one project for a while; then the store's own consistency check
(`Project.check`, the one it runs to report what is out of step) compares every row with every file.

    python -m bench.soak [--seconds 120]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

from bench.common import table
from core.jobs import server as jobs
from core.store.project import Project, StoreError, create_project
from core.model.train import TrainConfig
from tests.photos import class_photo_bytes

SEED_PHOTOS = 20  # per class, before the writers start: enough for a training run from the first second


def importer(project: Project, rng: random.Random, n: int) -> str:
    """One new photo into a class that exists now (its name may change under us)."""
    label = n % 2
    name = project.class_names()[label]
    class_id = project.class_id(name)  # by id, as a web search adds: a rename meanwhile must not revive the old name
    if class_id is None:
        raise StoreError("renamed between two reads")
    result = project.add_image(name, class_photo_bytes(label, 10_000 + n), source="upload",
                               original_name=f"soak-{n}.jpg", class_id=class_id)
    return f"import {result.status}"


def mover(project: Project, rng: random.Random, n: int) -> str:
    """A few photos to the class of another photo (by id, as a rename may be under way): file steps on both sides."""
    photos = project.images(status="kept")
    picked = rng.sample(photos, min(3, len(photos)))
    target = rng.choice(photos).class_name
    class_id = project.class_id(target)
    if class_id is None:
        raise StoreError("renamed between two reads")
    project.move([p.id for p in picked], target, class_id=class_id)
    return "move"


def renamer(project: Project, rng: random.Random, n: int) -> str:
    """Rename one class back and forth: its whole folder moves while the others write into it."""
    name = next(name for name in project.class_names() if name.startswith("stripes"))
    project.rename_class(name, "stripes" if name != "stripes" else "stripes (renamed)")
    time.sleep(0.05)  # a person renames now and then; without a pause this writer only measures lock turns
    return "rename"


def rejecter(project: Project, rng: random.Random, n: int) -> str:
    """Reject a photo or restore one: row-only changes racing the file steps."""
    photos = project.images()
    photo = rng.choice(photos)
    (project.restore if photo.status == "rejected" else project.reject)([photo.id])
    return "reject/restore"


WRITERS = {"imports": importer, "moves": mover, "renames": renamer, "rejects": rejecter}


def writer(kind: str, meta_dir: str, deadline: float, results) -> None:
    """Each writer its own process and its own Project, as pages, searches and workers have."""
    project, rng, counts = Project(Path(meta_dir)), random.Random(kind), Counter()
    n = 0
    while time.time() < deadline:
        n += 1
        try:
            counts[WRITERS[kind](project, rng, n)] += 1
        except StoreError as exc:  # a clean refusal (the class was just renamed): what a user would read
            counts[f"refused: {str(exc)[:40]}"] += 1
        except Exception:  # noqa: BLE001 - anything else is a defect this soak exists to find
            counts["ERROR"] += 1
            traceback.print_exc()
    results.put((kind, dict(counts)))


def train_until(project: Project, deadline: float) -> Counter:
    """Start runs back to back (small settings) until the deadline; count how each ended."""
    outcomes: Counter = Counter()
    cfg = TrainConfig(finetune_epochs=1, unfreeze_blocks=1)
    while time.time() < deadline:
        run_id = jobs.start_training(project, cfg)
        while (run := jobs.refresh(project, run_id)).status in jobs.ACTIVE:
            time.sleep(0.5)
        changed = run.status == "failed" and "no training photos" in (run.error or "")
        outcomes["refused: data changed" if changed else run.status] += 1  # a clean refusal, not a defect
        if run.status == "failed" and not changed:
            print(f"run {run_id} failed: {run.error}", file=sys.stderr)
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="how long the writers run (default 120)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        os.environ.setdefault("TRANSFERLAB_CACHE", str(Path(root) / "cache"))
        project = create_project("soak", Path(root))
        for label, name in enumerate(("stripes", "blobs")):
            for i in range(SEED_PHOTOS):
                project.add_image(name, class_photo_bytes(label, i), source="upload")
        deadline = time.time() + args.seconds
        results = multiprocessing.Queue()
        processes = [multiprocessing.Process(target=writer, args=(kind, str(project.meta_dir), deadline, results))
                     for kind in WRITERS]
        for p in processes:
            p.start()
        runs = train_until(project, deadline)
        counts = dict(results.get() for _ in processes)
        for p in processes:
            p.join()
        report = Project(project.meta_dir).check()
        rows = [[kind, sum(v for k, v in c.items() if not k.startswith(("refused", "ERROR"))),
                 sum(v for k, v in c.items() if k.startswith("refused")), c.get("ERROR", 0)]
                for kind, c in counts.items()]
        rows.append(["training runs", runs["completed"] + runs["stopped"], runs["refused: data changed"],
                     runs["failed"]])
        print(f"one project, {len(WRITERS)} writer processes + training, {args.seconds:.0f} s, "
              f"{os.cpu_count()} CPU cores")
        print(table(["writer", "done", "refused", "errors"], rows))
        refusals = sum((Counter({k: v for k, v in c.items() if k.startswith("refused")}) for c in counts.values()),
                       Counter())
        print(f"runs: {dict(runs)}; photos now: {len(project.images())}; most common refusals: "
              f"{refusals.most_common(3)}")
        print(f"inconsistencies: {report.problems} "
              f"({report.describe() or 'every row has its file and every file its row'})")
        if report.problems or any(r[3] for r in rows):
            raise SystemExit(1)


if __name__ == "__main__":
    main()
