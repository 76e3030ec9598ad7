"""The kept model as validated against the same model after it learned the validation photos too, on photos neither
saw.

Each run is `core.model.train.train` with default settings (head only, or `--blocks N` fine-tuned) on a project's
photos, one fifth of them for validation (split k as `bench_finetune` rotates it), once with `refit=False` and once as
the app trains: a kept head solved again with the validation photos, a kept fine-tuned model trained again on every
photo. Both are scored on held-out photos no run sees: the set's own `val/` folder (flowers5, hymenoptera), or for a
set with no such folder (groceries25) the fifth of its photos that a second key of the content hash puts first (as
`bench_finetune --share` chooses, independent of the splits). Accuracy is as the model answers (each photo averaged
with its mirror image, and a fine-tuned model with its zoomed-in views too); "gain" is refitted minus as validated, in
points; "no zoom" the refitted fine-tuned model answering with the photo and its mirror image only; "kept" what the
keep rule kept; "tune s" the fine-tuning stage's time and "refit s" the time the refit added.

    python -m bench.bench_refit [--sets groceries25,flowers5,hymenoptera] [--sizes full,32] [--splits 0,1,2]
                                [--blocks N] [--cache DIR]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
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


class HeldOut:
    """The held-out photos as each kind of model reads them: embeddings for a head (as is and mirrored), boundary
    activations of the views a fine-tuned model answers with (computed once, cached)."""

    def __init__(self, held: list, cfg: TrainConfig):
        from core.model.backbones import get_backbone
        from core.model.embed import embed_views

        self.held, self.cfg, self.spec = held, cfg, get_backbone(cfg.backbone)
        self.labels = np.array([s.label for s in held])
        self.embeddings = [r.vectors for r in embed_views([s.path for s in held], [s.sha256 for s in held], self.spec,
                                                          (False, True))]
        self.boundary: dict[tuple[str, ...], list[np.ndarray]] = {}

    def right(self, result, zoom: bool = True) -> float:
        """The share of held-out photos the run's model names right, as it answers (averaged over its views; without
        the zoomed-in ones if not `zoom`)."""
        from core.model.train import answer_views

        if result.model is None:
            probabilities = np.mean([result.head.probabilities(v) for v in self.embeddings], axis=0)
        else:
            top = self.top(result.model)
            views = answer_views(self.cfg, zoom=result.zoomed_views and zoom)
            probabilities = np.mean([top.predict(v, verbose=0) for v in self.activations(views)], axis=0)
        return float((probabilities.argmax(axis=1) == self.labels).mean())

    def top(self, model):
        from core.model import activations

        return activations.top_model(model, self.spec, self.cfg.unfreeze_blocks)

    def activations(self, views: tuple[str, ...]) -> list[np.ndarray]:
        from core.model import activations

        if views not in self.boundary:
            found, shape = activations.boundary_activations([s.path for s in self.held], [s.sha256 for s in self.held],
                                                            self.spec, self.cfg.unfreeze_blocks, views)
            self.boundary[views] = [v.vectors.reshape(-1, *shape).astype(np.float32) for v in found]
        return self.boundary[views]


def runs(name: str, root: Path, splits: list[int], blocks: int) -> list[list]:
    from core.model.train import train

    project, held, class_names = project_and_held_out(root)
    cfg = TrainConfig(unfreeze_blocks=blocks)
    scored = HeldOut(held, cfg)
    rows = []
    for k in splits:
        data = rotated_split(project, class_names, k)
        apart, refit = train(data, replace(cfg, refit=False)), train(data, cfg)
        right = [scored.right(r) for r in (apart, refit)]
        unzoomed = f"{scored.right(refit, zoom=False):.3f}" if refit.zoomed_views else "-"
        rows.append([name, k, len(data.train), len(data.val), len(held), "tuned" if apart.model else "head",
                     f"{right[0]:.3f}", f"{right[1]:.3f}", f"{100 * (right[1] - right[0]):+.1f}", unzoomed,
                     refit.timings.get("finetune_seconds", 0.0), refit.timings.get("refit_seconds", 0.0),
                     refit.timings["train_seconds"]])
        print("done:", rows[-1], file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="groceries25,flowers5,hymenoptera")
    parser.add_argument("--sizes", default="full,32", help="full: the photos as they are; 32: their 32-px copies")
    parser.add_argument("--splits", default="0,1,2", help="validation splits (0 to 4; 0 is the project's own)")
    parser.add_argument("--blocks", type=int, default=0, help="blocks fine-tuned (0: the head only)")
    parser.add_argument("--cache", help="reuse this cache of embeddings (default: a fresh one)")
    args = parser.parse_args()
    with cache_folder(args.cache) as cache:
        rows = []
        for name in filter(None, args.sets.split(",")):
            for size in args.sizes.split(","):
                root = dataset(name) if size == "full" else tiny_set(dataset(name), cache / "tiny-kept-apart" / name)
                rows += runs(name if size == "full" else f"{name} {TINY}px", root,
                             [int(k) for k in args.splits.split(",")], args.blocks)
        print(table(["set", "split", "train", "val", "held out", "kept", "as validated", "refitted", "gain", "no zoom",
                     "tune s", "refit s", "run s"], rows))


if __name__ == "__main__":
    main()
