"""Head only vs fine-tuning the last 1-4 blocks: accuracy on photos the run never saw and time per run, on flowers5
and hymenoptera; then a harder check (20 training photos per class of flowers5, every other photo as the test).

Each run trains as a project would: on one folder, with the project's own validation split (which picks the
regularisation and whether fine-tuning beat the head); "test acc" is then measured once on the other folder.

    python -m bench.bench_finetune [--backbones efficientnet_lite0,...] [--depths 0,1,2,3,4] [--cache DIR]

Each run is `core.train.train` with default settings except the depth. Runs share one cache (a fresh temporary
one unless --cache is given), so "embed s" is spent once per set and backbone and "cache s" once per depth;
"fine-tune s" is the time after the activations are cached. "factor" is the fine-tuning stage in units of one
forward pass per training view (core.advice.MEASURED's second figure).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import dataset, table


def run(data, cfg):
    from core.train import train

    start = time.perf_counter()
    result = train(data, cfg)
    return result, time.perf_counter() - start


def accuracy(probabilities: np.ndarray, samples) -> str:
    """Share of right answers, as three decimals (one photo in a few hundred)."""
    return f"{(probabilities.argmax(axis=1) == np.array([s.label for s in samples])).mean():.3f}"


def test_probabilities(result, cfg, samples) -> tuple[np.ndarray, np.ndarray]:
    """The trained model's probabilities on other photos, as is and averaged with their mirror images."""
    from core import activations
    from core.backbones import get_backbone
    from core.embed import embed_views

    spec = get_backbone(cfg.backbone)
    paths, shas = [s.path for s in samples], [s.sha256 for s in samples]
    if result.model is None:
        views = embed_views(paths, shas, spec, (False, True))
        plain, mirrored = (result.head.probabilities(v.vectors) for v in views)
    else:
        views, shape = activations.boundary_activations(paths, shas, spec, cfg.unfreeze_blocks)
        top = activations.top_model(result.model, spec, cfg.unfreeze_blocks)
        plain, mirrored = (top.predict(v.vectors.reshape(-1, *shape).astype(np.float32), verbose=0) for v in views)
    return plain, (plain + mirrored) / 2


def held_out(data, test, cfg) -> list:
    """One run trained with the project's own validation split, then scored on photos it never saw."""
    result, wall = run(data, cfg)
    plain, mirrored = test_probabilities(result, cfg, test)
    kept = "head kept" if cfg.unfreeze_blocks and result.model is None else result.best_epoch.get("fine-tuning", "-")
    return [cfg.unfreeze_blocks, len(data.train), len(data.val), len(test), kept,
            accuracy(result.val_probabilities, result.val_samples), accuracy(plain, test), accuracy(mirrored, test),
            result.timings["embed_seconds"], result.timings.get("boundary_seconds", 0.0),
            result.timings.get("finetune_seconds", 0.0), wall]


def project_split(samples, class_names):
    """The photos split as a project would split them (by content hash, 20 % for validation)."""
    from core.store import split_for, split_key
    from core.train import TrainData

    is_val = [split_for(split_key(s.sha256), 0.2) == "val" for s in samples]
    return TrainData(class_names, [s for s, v in zip(samples, is_val) if not v], [s for s, v in zip(samples, is_val) if v])


def depth_table(name: str, backbones: list[str], depths: list[int]) -> list[list]:
    """The set's train/ folder as a project (its own validation split), its val/ folder as the test."""
    from core.backbones import get_backbone
    from core.runs import data_from_folders
    from core.speed import time_backbone
    from core.train import TrainConfig

    root = dataset(name)
    train_folder = data_from_folders(root / "train")
    data = project_split(train_folder.train + train_folder.val, train_folder.class_names)
    tested = data_from_folders(root / "val")
    rows = []
    for backbone in backbones:
        forward_ms, _ = time_backbone(get_backbone(backbone))
        for depth in depths:
            row = held_out(data, tested.train + tested.val, TrainConfig(backbone=backbone, unfreeze_blocks=depth))
            factor = row[-2] / (2 * len(data.train) * forward_ms / 1000)  # fine-tuning in forward passes per view
            rows.append([name, backbone.removeprefix("efficientnet_"), *row, forward_ms, factor])
            print("done:", rows[-1], file=sys.stderr, flush=True)
    return rows


def harder_check(per_class: int, depths: list[int]) -> list[list]:
    """Train (with the usual validation split) on `per_class` photos per class of flowers5, test on all the rest."""
    from core.runs import data_from_folders
    from core.train import TrainConfig

    root = dataset("flowers5")
    full = data_from_folders(root / "train", root / "val")
    everything = sorted(full.train + full.val, key=lambda s: str(s.path))  # not by hash: that would pick the split too
    chosen = [s for c in range(len(full.class_names)) for s in [s for s in everything if s.label == c][:per_class]]
    test = [s for s in everything if s not in set(chosen)]
    data = project_split(chosen, full.class_names)
    rows = []
    for depth in depths:
        rows.append(held_out(data, test, TrainConfig(unfreeze_blocks=depth)))
        print("done:", rows[-1], file=sys.stderr, flush=True)
    return rows


COLUMNS = ["blocks", "train", "val", "test", "best epoch", "val acc", "test acc", "+mirror", "embed s", "cache s",
           "fine-tune s", "wall s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="efficientnet_lite0")
    parser.add_argument("--depths", default="0,1,2,3,4")
    parser.add_argument("--sets", default="flowers5,hymenoptera")
    parser.add_argument("--per-class", type=int, default=20,
                        help="training photos per class in the harder check (0: skip it)")
    parser.add_argument("--cache", help="reuse this cache of embeddings and activations (default: a fresh one)")
    args = parser.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        previous = os.environ.get("TRANSFERLAB_CACHE")
        os.environ["TRANSFERLAB_CACHE"] = args.cache or str(Path(tmp) / "cache")
        try:
            load = os.getloadavg()[0]
            rows = [row for name in args.sets.split(",") if name
                    for row in depth_table(name, args.backbones.split(","), depths)]
            print(f"{os.cpu_count()} CPU cores, load average {load:.1f} at the start; default settings but the depth")
            if rows:
                print("Each set's train/ folder is the project (20 % of it for validation), its val/ folder the test")
                print(table(["set", "backbone", *COLUMNS, "fwd ms", "factor"], rows))
            if args.per_class <= 0:
                return
            print(f"\nHarder check: flowers5, {args.per_class} photos per class as the project (20 % of them for "
                  "validation), every other photo to test")
            print(table(COLUMNS, harder_check(args.per_class, depths)))
        finally:
            if previous is None:
                os.environ.pop("TRANSFERLAB_CACHE", None)
            else:
                os.environ["TRANSFERLAB_CACHE"] = previous


if __name__ == "__main__":
    main()
