"""How well the suspect ranking finds mislabeled photos: flowers5/train with 10 photos put in a wrong class.

    python -m bench.bench_suspects [SEED]

The 10 photos are picked with a fixed seed, two from each class, and each is moved to another
class chosen by the same seed. The figure is how many of the 10 are among the top 20 suspects.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bench.common import dataset, table  # noqa: E402
from core.ingest import import_folder  # noqa: E402
from core.store import Project, create_project  # noqa: E402
from core.suspects import rank_suspects  # noqa: E402

MISLABELED = 10
TOP = 20


def mislabel(project: Project, n: int, seed: int) -> dict[int, str]:
    """Move n photos, spread evenly over the classes, each to another class; returns id -> true class."""
    rng = np.random.default_rng(seed)
    names = project.class_names()
    moved: dict[int, str] = {}
    for i in range(n):
        true = names[i % len(names)]
        candidates = [r.id for r in project.images(true) if r.id not in moved]
        image_id = int(rng.choice(candidates))
        wrong = str(rng.choice([c for c in names if c != true]))
        project.move([image_id], wrong)
        moved[image_id] = true
    return moved


def main(seed: int = 0) -> None:
    source = dataset("flowers5") / "train"
    cache = os.environ.get("TRANSFERLAB_CACHE")  # set it yourself to re-run quickly
    with tempfile.TemporaryDirectory() as tmp, \
            mock.patch.dict(os.environ, {"TRANSFERLAB_CACHE": cache or str(Path(tmp) / "cache")}):
        project = create_project("bench", Path(tmp))
        import_folder(project, source)
        moved = mislabel(project, MISLABELED, seed)
        start = time.perf_counter()
        ranking = rank_suspects(project)
        seconds = time.perf_counter() - start
    position = {s.image_id: rank for rank, s in enumerate(ranking, 1)}
    rows = []
    for image_id, true in moved.items():
        suspect = ranking[position[image_id] - 1]
        rows.append([image_id, true, suspect.class_name, suspect.predicted_class, position[image_id],
                     suspect.score, suspect.label_probability])
    found = sum(position[i] <= TOP for i in moved)
    print(f"{len(ranking)} flowers5/train photos, {MISLABELED} moved to a wrong class (seed {seed}); "
          f"ranking took {seconds:.1f} s including embedding")
    print(table(["id", "true class", "labelled", "predicted", "rank", "score", "p(label)"],
                sorted(rows, key=lambda r: r[4])))
    print(f"Mislabeled photos in the top {TOP} suspects: {found} of {MISLABELED}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
