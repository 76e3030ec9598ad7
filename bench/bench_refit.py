"""The kept head as validated against the same head solved again with the validation photos too, on photos neither saw.

Each run is `core.model.train.train` with default settings (head only) on a project's photos, one fifth of them for
validation (split k as `bench_finetune` rotates it), once with `refit_head=False` and once as the app trains. Both
are scored on held-out photos no run sees: the set's own `val/` folder (flowers5, hymenoptera), or for a set with no
such folder (groceries25) the fifth of its photos that a second key of the content hash puts first (as
`bench_finetune --share` chooses, independent of the splits). Accuracy is as the model answers (each photo averaged
with its mirror image); "gain" is refitted minus as validated, in points, and "refit s" the time the refit added.

    python -m bench.bench_refit [--sets groceries25,flowers5,hymenoptera] [--sizes full,32] [--splits 0,1,2]
                                [--cache DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bench.bench_finetune import TINY, all_photos, rotated_split, subset, tiny_copy
from bench.common import cache_folder, dataset, table
from core.model.train import TrainConfig

HELD_OUT = 0.2  # of a set with no val/ folder, the share kept from every run


def project_and_held_out(root: Path) -> tuple[list, list, list[str]]:
    """The photos a project trains and validates on, the held-out photos, and the class names."""
    from core.jobs.pipeline import data_from_folders

    if (root / "val").is_dir():
        data = data_from_folders(root / "train", root / "val")
        return data.train, data.val, data.class_names
    samples, class_names = all_photos(root)
    held = subset(samples, HELD_OUT)
    apart = set(held)
    return [s for s in samples if s not in apart], held, class_names


def tiny_set(root: Path, target: Path) -> Path:
    """The set's 32-px copy, its train/ and val/ folders kept apart when it has them."""
    if not (root / "val").is_dir():
        return tiny_copy(root, target)
    for part in ("train", "val"):
        tiny_copy(root / part, target / part)
    return target


def answered(head, views: list[np.ndarray]) -> np.ndarray:
    """The head's probabilities as the model answers: averaged over the photo and its mirror image."""
    return np.mean([head.probabilities(v) for v in views], axis=0)


def runs(name: str, root: Path, splits: list[int]) -> list[list]:
    from core.model.backbones import get_backbone
    from core.model.embed import embed_views
    from core.model.train import train

    project, held, class_names = project_and_held_out(root)
    cfg = TrainConfig()
    views = [r.vectors for r in embed_views([s.path for s in held], [s.sha256 for s in held],
                                            get_backbone(cfg.backbone), (False, True))]
    labels = np.array([s.label for s in held])
    rows = []
    for k in splits:
        data = rotated_split(project, class_names, k)
        apart, refit = train(data, TrainConfig(refit_head=False)), train(data, cfg)
        right = [float((answered(r.head, views).argmax(axis=1) == labels).mean()) for r in (apart, refit)]
        rows.append([name, k, len(data.train), len(data.val), len(held), f"{apart.search.strength:.3g}",
                     f"{right[0]:.3f}", f"{right[1]:.3f}", f"{100 * (right[1] - right[0]):+.1f}",
                     refit.timings.get("refit_seconds", 0.0), refit.timings["train_seconds"]])
        print("done:", rows[-1], file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="groceries25,flowers5,hymenoptera")
    parser.add_argument("--sizes", default="full,32", help="full: the photos as they are; 32: their 32-px copies")
    parser.add_argument("--splits", default="0,1,2", help="validation splits (0 to 4; 0 is the project's own)")
    parser.add_argument("--cache", help="reuse this cache of embeddings (default: a fresh one)")
    args = parser.parse_args()
    with cache_folder(args.cache) as cache:
        rows = []
        for name in filter(None, args.sets.split(",")):
            for size in args.sizes.split(","):
                root = dataset(name) if size == "full" else tiny_set(dataset(name), cache / "tiny-kept-apart" / name)
                rows += runs(name if size == "full" else f"{name} {TINY}px", root,
                             [int(k) for k in args.splits.split(",")])
        print(table(["set", "split", "train", "val", "held out", "head C", "as validated", "refitted", "gain",
                     "refit s", "run s"], rows))


if __name__ == "__main__":
    main()
