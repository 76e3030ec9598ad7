"""Seconds from a click on Train to a usable model, through the app's real job path (store, job start, warm
worker), beside the engine's own train_seconds.

    python -m bench.bench_instant

Figures (issue 9 targets in brackets):
  engine      `python -m core train` on flowers5, embeddings cached: train_seconds in metrics.json [<= 2.0 s]
  ready       3 classes x 30 uploaded photos, warm worker, embeddings prepared: click -> model ready [<= 3 s]
  retrain     10 more photos added, Train clicked at once (the run embeds what the background has not) [<= 2 s]
  400 new     397 photos nobody has embedded yet, warm worker: click -> model ready [<= 15 s]
"Model ready" is the run's status turning completed: labels.txt, head.npz and the metrics are written
and Results / Try it can use it; the .keras and TFLite downloads follow and are timed too.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.bench_train import timed_train
from bench.common import dataset, table

POLL = 0.01


def photos(folder: Path, count: int, skip: int = 0) -> list[tuple[str, bytes]]:
    paths = sorted(p for p in folder.iterdir() if p.is_file())[skip:skip + count]
    return [(p.name, p.read_bytes()) for p in paths]


def wait(condition, what: str, seconds: float = 600) -> float:
    """Seconds until condition() holds, polled every POLL seconds."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > seconds:
            raise SystemExit(f"gave up waiting for {what} after {seconds:.0f} s")
        time.sleep(POLL)
    return time.perf_counter() - start


def click_train(project) -> tuple[float, float, dict]:
    """Start a run as the Train button does; seconds to a usable model, seconds to the downloads, and its summary."""
    from core.jobs import server as jobs
    from core.model.train import TrainConfig

    start = time.perf_counter()
    run_id = jobs.start_training(project, TrainConfig())
    wait(lambda: project.run(run_id).status not in jobs.ACTIVE, "the run")
    usable = time.perf_counter() - start
    run = project.run(run_id)
    if run.status != "completed":
        raise SystemExit(f"run {run_id} ended {run.status}: {run.error}")
    wait(lambda: jobs.downloads(project, project.run(run_id)) != "preparing", "the downloads")
    return usable, time.perf_counter() - start, run.summary


def add(project, folder: Path, counts: dict[str, int], skip: int = 0) -> None:
    """Upload photos of each class in `counts` from an ImageFolder tree, as the Collect page does."""
    from core.intake.ingest import import_files

    for name, count in counts.items():
        import_files(project, name, photos(folder / name, count, skip))


def main() -> None:
    flowers, ants_bees = dataset("flowers5"), dataset("hymenoptera")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        engine_cache = tmp / "engine-cache"
        timed_train(flowers, tmp / "engine-cold", engine_cache)
        wall, metrics = timed_train(flowers, tmp / "engine-warm", engine_cache)
        rows.append(["engine: flowers5, 400 photos, cached", metrics["train_seconds"], "", 2.0,
                     metrics["val_accuracy"]])

        os.environ["TRANSFERLAB_HOME"], os.environ["TRANSFERLAB_CACHE"] = str(tmp / "workspace"), str(tmp / "cache")
        from core.jobs import server as jobs
        from core.model import preembed
        from core.store.project import create_project
        from core.jobs.server import WORKER

        try:
            # Warm-up: starts the worker, converts the backbone once; a person's first run after install pays this.
            warm_up = create_project("warm up")
            add(warm_up, flowers / "val", {"daisy": 5, "dandelion": 5})
            click_train(warm_up)

            three = create_project("three classes")
            add(three, flowers / "train", {"daisy": 30, "dandelion": 30, "roses": 30})
            jobs.prepare(three)
            prepared = wait(lambda: preembed.readiness(three).complete, "the background embedding")
            usable, downloads, summary = click_train(three)
            rows.append([f"ready: 3 x 30 photos (prepared in {prepared:.1f} s)", usable, downloads, 3.0,
                         summary["val_accuracy"]])

            add(three, flowers / "train", {"daisy": 4, "dandelion": 4, "roses": 2}, skip=30)
            usable, downloads, summary = click_train(three)
            rows.append(["retrain: +10 photos, clicked at once", usable, downloads, 2.0, summary["val_accuracy"]])

            many = create_project("four hundred")
            for split in ("train", "val"):
                add(many, ants_bees / split, {"ants": 1000, "bees": 1000})
            total = preembed.readiness(many).total
            usable, downloads, summary = click_train(many)
            rows.append([f"{total} photos not embedded yet", usable, downloads, 15.0, summary["val_accuracy"]])
        finally:
            WORKER.shutdown()
    print(f"Click on Train to a usable model through the real job path, warm worker, {os.cpu_count()} CPU cores "
          "(engine: train_seconds from metrics.json; the page polls once a second on top)")
    print(table(["case", "model ready s", "downloads ready s", "target s", "val accuracy"], rows))
    print("; ".join(f"{r[0].split(':')[0]}: {r[1] / r[3]:.2f} of target" for r in rows))


if __name__ == "__main__":
    main()
