"""How well the suspect ranking finds mislabeled and off-topic photos: flowers5/train with 10 photos put in a
wrong class and 10 photos of other sets (groceries25, hymenoptera) dropped into its classes.

    python -m bench.bench_suspects [SEED]

The 10 photos are picked with a fixed seed, two from each class, and each is moved to another
class chosen by the same seed; the off-topic ones too. The figures: how many of the 10 mislabeled
are among the top 20 suspects, and where the off-topic ones rank, with the ranking of before the
novelty signal (label and class-centre only) beside today's.
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
from core.intake.ingest import import_files, import_folder  # noqa: E402
from core.store.project import Project, create_project  # noqa: E402
from core.model.suspects import LABEL_WEIGHT, Suspect, rank_suspects  # noqa: E402

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


def off_topic(project: Project, n: int, seed: int) -> set[int]:
    """Drop n photos of other sets into the project's classes; their ids."""
    rng = np.random.default_rng(seed)
    pool = sorted(dataset("groceries25").glob("*/*/*")) + sorted(dataset("hymenoptera").glob("*/*/*"))
    names = project.class_names()
    before = {r.id for r in project.images()}
    for i, path in enumerate(rng.choice(len(pool), n, replace=False)):
        import_files(project, names[i % len(names)], [(f"web-{i}{pool[path].suffix}", pool[path].read_bytes())])
    return {r.id for r in project.images()} - before


def before_novelty(suspect: Suspect) -> float:
    """The score of the ranking before the novelty signal: the label and class-centre signals alone."""
    return LABEL_WEIGHT * (1 - suspect.label_probability) + (1 - LABEL_WEIGHT) / (1 + np.exp(-suspect.centre_distance))


def main(seed: int = 0) -> None:
    source = dataset("flowers5") / "train"
    cache = os.environ.get("TRANSFERLAB_CACHE")  # set it yourself to re-run quickly
    with tempfile.TemporaryDirectory() as tmp, \
            mock.patch.dict(os.environ, {"TRANSFERLAB_CACHE": cache or str(Path(tmp) / "cache")}):
        project = create_project("bench", Path(tmp))
        import_folder(project, source)
        moved = mislabel(project, MISLABELED, seed)
        strangers = off_topic(project, MISLABELED, seed)
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
    print(f"{len(ranking)} flowers5/train photos, {MISLABELED} moved to a wrong class and {MISLABELED} of other "
          f"sets added (seed {seed}); "
          f"ranking took {seconds:.1f} s including embedding")
    print(table(["id", "true class", "labelled", "predicted", "rank", "score", "p(label)"],
                sorted(rows, key=lambda r: r[4])))
    print(f"Mislabeled photos in the top {TOP} suspects: {found} of {MISLABELED}")
    old = {s.image_id: rank for rank, s in enumerate(sorted(ranking, key=before_novelty, reverse=True), 1)}
    print(table(["ranking", f"mislabeled in top {TOP}", f"off-topic in top {TOP}", "off-topic ranks"], [
        [name, sum(ranks[i] <= TOP for i in moved), sum(ranks[i] <= TOP for i in strangers),
         " ".join(str(r) for r in sorted(ranks[i] for i in strangers))]
        for name, ranks in (("before (label + class centre)", old), ("today (+ unlike its class-mates)", position))]))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
