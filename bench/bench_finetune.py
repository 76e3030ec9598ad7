"""Head only vs fine-tuning the last 1-3 blocks, per shared photo set and its 32-px copy, on three validation splits.

Each run trains as a project would, on all of the set's photos, with one fifth of them (by content hash, as the
store splits) for validation: split k takes the photos whose split key lies in [k/5, (k+1)/5), so split 0 is the
project's own. The head is solved on the embeddings; fine-tuning is `core.model.train.train` with default settings but the
depth, and the honest keep rule decides whether its model or the head's is the run's ("head kept").

The 32-px copy is the tiny-photo regime: every photo's centre square shrunk to 32x32 (PNG, made once into the
cache folder), which the app enlarges back to the network's input size like any other photo.

    python -m bench.bench_finetune [--sets groceries25,flowers5,hymenoptera] [--depths 0,1,2,3] [--splits 0,1,2]
                                   [--sizes full,32] [--rates auto,1e-4,2e-4] [--epochs 8,16] [--share 0.5]
                                   [--cache DIR]

Runs share one cache (a fresh temporary one unless --cache is given), so each photo's embeddings and boundary
activations are computed once: "cache s" is the time the run spent making them (0 when an earlier run of the
table did), "epochs s" the fine-tuning after that (epochs, the head re-solved on the tuned features, the keep
check) and "epochs cpu s" the CPU seconds it took; "epochs run/best" how many epochs ran before the stop rule ended
them and which one's weights were kept (0: none beat the head); "rate" the peak learning rate (--rates: each
fine-tuning depth at each rate, side by side on the same split; "auto", the default: the app's automatic rate for the
run's training photo count); "max epochs" the schedule's length (--epochs: each beside the others, as --rates; the
cosine decay reaches zero at the last one; "auto", the default: the app's automatic number); "model" the head
kept, or the fine-tuned model's output layer: the head re-solved on the tuned features or the layer trained with
the blocks, as the validation photos chose. --share trains on part of each set's photos, chosen by content as the
splits are but independently of them, to see a set with fewer photos. "wall s" is the whole run; "cpu s" the CPU
seconds the process spent in it (all threads), so a run's time on a quiet machine can be judged while others share
it (on 2 cores, quiet wall ~ cpu s / 2 for the parallel parts); "load" the 1-minute load average when the run
began. "val acc" is the run's validation accuracy from its plain probabilities and as the model answers (each photo
averaged with its mirror image, and a fine-tuned model with its zoomed-in views when it takes them); "gain" each minus
the head's on the same split, in points; "head cv" the head's cross-validated accuracy on the training photos
(core.model.advice's sign of photos unlike everyday ones); "factor" the epochs in units of one forward pass of the
whole network per training photo and view, as plain and mirrored (core.model.advice.MEASURED's last figure: the forward pass is timed on this machine at its quietest moment).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import cache_folder, dataset, table
from core.model.train import STAGE_FINETUNE, SilentListener, TrainConfig

TINY = 32  # pixels a side of the tiny copies


def tiny_copy(source: Path, target: Path, side: int = TINY) -> Path:
    """Each photo of `source`'s class folders (all of train/ and val/), centre square shrunk to side x side PNG."""
    from PIL import Image, ImageOps

    for path in sorted(source.rglob("*")):
        if path.suffix.lower() not in {".jpg", ".jpeg", ".png"}:
            continue
        out = target / path.parent.name / (path.relative_to(source).as_posix().replace("/", "_") + ".png")
        if out.exists():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
        square = min(img.size)
        left, top = (img.width - square) // 2, (img.height - square) // 2
        img.crop((left, top, left + square, top + square)).resize((side, side), Image.Resampling.BOX).save(out)
    return target


def all_photos(root: Path):
    """Every photo of a set, whether it has train/ and val/ folders or is one folder of classes."""
    from core.jobs.pipeline import data_from_folders

    folders = [root / "train", root / "val"] if (root / "train").is_dir() else [root]
    data = data_from_folders(folders[0], folders[1] if len(folders) > 1 and folders[1].is_dir() else None)
    return data.train + data.val, data.class_names


def subset(samples, share: float):
    """The photos whose content puts them in the first `share` of a second key, independent of the split key (which
    reads the hash's first digits): a smaller set with the classes in about the same proportions."""
    return [s for s in samples if int(s.sha256[-12:], 16) / 16 ** 12 < share] if share < 1 else samples


def rotated_split(samples, class_names, k: int):
    """Split k: the photos whose split key lies in [k/5, (k+1)/5) for validation."""
    from core.store.project import split_key
    from core.model.train import TrainData

    is_val = [k / 5 <= split_key(s.sha256) < (k + 1) / 5 for s in samples]
    return TrainData(class_names, [s for s, v in zip(samples, is_val) if not v],
                     [s for s, v in zip(samples, is_val) if v])


def accuracy(result, averaged: bool = False) -> float:
    """Validation accuracy of the run's model: of its plain probabilities, or (`averaged`) each photo averaged over
    its views (mirror image, and zoomed-in views for a model fine-tuned on them), as the model answers."""
    probabilities = result.val_probabilities_averaged if averaged else result.val_probabilities
    return float((probabilities.argmax(axis=1) == np.array([s.label for s in result.val_samples])).mean())


class Epochs(SilentListener):
    """Counts the fine-tuning epochs a run went through and notes the CPU time when that stage began."""

    def __init__(self):
        self.run, self.cpu_start = 0, None

    def on_stage(self, stage, info):
        if stage == STAGE_FINETUNE:
            self.cpu_start = time.process_time()

    def on_epoch(self, stage, epoch, epochs, logs):
        self.run += stage == STAGE_FINETUNE


def runs(name: str, root: Path, depths: list[int], splits: list[int], rates: list[float | None],
         schedules: list[int | None], share: float = 1.0) -> list[list]:
    from core.model.backbones import get_backbone
    from core.model.speed import time_backbone
    from core.model.train import train

    samples, class_names = all_photos(root)
    samples = subset(samples, share)
    forward_s = time_backbone(get_backbone(TrainConfig().backbone))[0] / 1000
    rows = []
    for k in splits:
        data = rotated_split(samples, class_names, k)
        head_acc = None
        tunings = [(r, e) for r in rates for e in schedules]
        for depth, (rate, length) in [(d, t) for d in depths for t in (tunings if d else tunings[:1])]:
            load, cpu0, epochs = os.getloadavg()[0], time.process_time(), Epochs()
            config = TrainConfig(unfreeze_blocks=depth, finetune_learning_rate=rate, finetune_epochs=length)
            result = train(data, config, epochs)
            cpu = time.process_time() - cpu0
            t = result.timings
            acc, acc_answered = accuracy(result), accuracy(result, averaged=True)
            head_acc = (acc, acc_answered) if depth == 0 else head_acc
            kept = "-" if depth == 0 else ("head kept" if result.model is None else result.finetune_layer)
            cv = next(row for row in result.search.tried if row["chosen"]).get("cv_accuracy", float("nan"))
            gains = "" if head_acc is None or depth == 0 else \
                f"{100 * (acc - head_acc[0]):+.1f} / {100 * (acc_answered - head_acc[1]):+.1f}"
            used = f"{result.finetune_learning_rate:g}{' auto' if rate is None else ''}" if depth else ""
            most = f"{result.finetune_epochs}{' auto' if length is None else ''}" if depth else ""
            rows.append([name, k, len(data.train), len(data.val), depth, used, most, cv,
                         kept, f"{acc:.3f} / {acc_answered:.3f}",
                         gains, f"{epochs.run}/{result.best_epoch.get(STAGE_FINETUNE, 0)}" if depth else "",
                         t["embed_seconds"] + t.get("boundary_seconds", 0.0), t.get("finetune_seconds", 0.0),
                         time.process_time() - epochs.cpu_start if epochs.cpu_start is not None else 0.0,
                         t["train_seconds"], cpu, load, t.get("finetune_seconds", 0.0) / (2 * len(data.train) * forward_s)])
            print("done:", rows[-1], file=sys.stderr, flush=True)
    return rows


def rates(text: str) -> list[float | None]:
    """--rates as numbers, None for auto."""
    return [None if rate == "auto" else float(rate) for rate in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="groceries25,flowers5,hymenoptera")
    parser.add_argument("--depths", default="0,1,2,3")
    parser.add_argument("--splits", default="0,1,2", help="validation splits (0 to 4; 0 is the project's own)")
    parser.add_argument("--sizes", default="full,32", help="full: the photos as they are; 32: their 32-px copies")
    parser.add_argument("--rates", default="auto", help="peak learning rates to fine-tune with, each beside the "
                        "others; auto: the one chosen for the run's training photo count, as the app does")
    parser.add_argument("--epochs", default="auto", help="fine-tuning schedules' lengths (at most, in epochs), "
                        "each beside the others; auto: the number chosen for the run's training photo count")
    parser.add_argument("--share", type=float, default=1.0,
                        help="train on this share of each set's photos (chosen by content), to see fewer photos")
    parser.add_argument("--cache", help="reuse this cache of embeddings and activations (default: a fresh one)")
    args = parser.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    with cache_folder(args.cache) as cache:
        load = os.getloadavg()[0]
        rows = []
        for name in filter(None, args.sets.split(",")):
            for size in args.sizes.split(","):
                root = dataset(name) if size == "full" else tiny_copy(dataset(name), cache / "tiny" / name)
                label = (name if size == "full" else f"{name} {TINY}px") + \
                    (f", {args.share:.0%} of it" if args.share < 1 else "")
                rows += runs(label, root, depths,
                             [int(k) for k in args.splits.split(",")], rates(args.rates),
                             [None if e == "auto" else int(e) for e in args.epochs.split(",")], args.share)
        print(f"{os.cpu_count()} CPU cores, load average {load:.1f} at the start; default settings but the depth, "
              "the rate and the schedule's length")
        print(table(["set", "split", "train", "val", "blocks", "rate", "max epochs", "head cv", "model",
                     "val acc plain / as answered", "gain", "epochs run/best", "cache s", "epochs s", "epochs cpu s",
                     "wall s", "cpu s", "load", "factor"], rows))


if __name__ == "__main__":
    main()
