"""How well "not one of your classes" works: models trained as the app trains them, shown photos of other kinds.

    TRANSFERLAB_CACHE=/work/cache python -m bench.bench_novelty

Each model is a head-only run (`core.model.train.train`, its novelty check built from its training photos,
its threshold from its validation photos). Its *test* photos are photos of its own classes it never
saw (not the validation photos that set the threshold): "false alarms" is the share of them flagged.
"caught" is the share of photos of other kinds flagged at the same threshold. AUROC compares the
novelty score with the top probability (what the "not sure" bar looks at) on the same photos.

- flowers5 model: trained on flowers5/train (validation by the store's content-hash rule), tested on
  flowers5/val, shown every groceries25 photo;
- groceries25 model: a fifth of the photos held out by content hash as its test set, the rest split
  as the store splits; shown every flowers5 and hymenoptera photo;
- groceries25 with 5 classes held out (3 draws): shown every photo of those 5 classes; "hidden est."
  is what the Results page would promise (each class hidden from the reference in turn).
Then: the reference subsampled to a quarter (as a 50,000-photo project would be) measures the same,
and the score's cost per photo beside the backbone's.

    TRANSFERLAB_CACHE=/work/cache python -m bench.bench_novelty --unfreeze-blocks 2 [--only flowers5]

measures fine-tuned runs instead (their novelty check is on the tuned trunk's features): each run is trained and
saved as the app does (`train_and_save`), and its photos are scored by the saved model as Try it does
(`load_predictor(...).score_paths`); the photos of other kinds are a random draw of at most UNKNOWN_PHOTOS per set.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bench.common import dataset, table  # noqa: E402
from core.model.backbones import get_backbone  # noqa: E402
from core.model.embed import embed_files  # noqa: E402
from core.serving.evaluate import photo_files  # noqa: E402
from core.images import sha256_hex  # noqa: E402
from core.model.novelty import (FALSE_ALARMS, MAX_REFERENCE_BYTES, MAX_REFERENCE_ROWS, auroc,  # noqa: E402
                          build_reference, confident_share, flagged_share, threshold_for)
from core.jobs.pipeline import data_from_folders, train_and_save  # noqa: E402
from core.model.novelty import NoveltySettings  # noqa: E402
from core.serving.predictor import load_predictor  # noqa: E402
from core.model.train import Sample, TrainConfig, TrainData, train  # noqa: E402

BACKBONE = "efficientnet_lite0"
HELD_OUT_DRAWS = 3
HELD_OUT = 5
UNKNOWN_PHOTOS = 600  # per set of other kinds, for fine-tuned runs (scored through the saved model: ~0.1 s a photo)


def embeddings(paths: list[Path]) -> np.ndarray:
    """The backbone's embeddings of photos (from the shared cache when they are there)."""
    result = embed_files(paths, [sha256_hex(Path(p).read_bytes()) for p in paths], get_backbone(BACKBONE))
    return result.vectors


def test_split(data: TrainData, share: float = 0.2) -> tuple[TrainData, list[Sample]]:
    """A share of the photos held out by content (another part of the hash than the store's split uses)."""
    test = {s.sha256 for s in data.train + data.val if int(s.sha256[12:20], 16) / 16**8 < share}
    keep = lambda samples: [s for s in samples if s.sha256 not in test]  # noqa: E731
    return (TrainData(data.class_names, keep(data.train), keep(data.val)),
            [s for s in data.train + data.val if s.sha256 in test])


def measure(name: str, data: TrainData, test: list[Sample], others: dict[str, list[Path]],
            unfreeze_blocks: int = 0) -> list[list]:
    """Train as the app does; the rows of the table for each set of other photos."""
    if unfreeze_blocks:
        return measure_fine_tuned(name, data, test, others, unfreeze_blocks)
    result = train(data, TrainConfig(backbone=BACKBONE))
    reference, settings = result.novelty
    test_x = embeddings([s.path for s in test])
    labels = np.array([s.label for s in test])
    head_probabilities = result.head.probabilities(test_x)
    known = reference.scores(test_x)
    rows = []
    for other, paths in others.items():
        x = embeddings(paths)
        unknown = reference.scores(x)
        rows.append(row(name, other, settings, (head_probabilities, known, labels),
                        (result.head.probabilities(x), unknown)))
        if name.startswith("groceries25 model") and other == "flowers5":
            quarter = build_reference([reference.vectors], np.zeros(len(reference.vectors)),
                                      max_bytes=len(reference.vectors) * reference.vectors.shape[1] // 2)
            val = quarter.scores(embeddings([s.path for s in result.val_samples]))
            threshold = threshold_for(val, confident_share(FALSE_ALARMS, len(val)))
            small = quarter.scores(test_x)
            print(f"reference of {len(reference.vectors)} rows ({reference.vectors.nbytes / 2**20:.1f} MB) vs a "
                  f"quarter of it ({quarter.vectors.nbytes / 2**20:.1f} MB): AUROC {auroc(known, unknown):.3f} vs "
                  f"{auroc(small, quarter.scores(x)):.3f}, false alarms {flagged_share(known, settings.threshold):.3f}"
                  f" vs {flagged_share(small, threshold):.3f}", flush=True)
    return rows


def row(name: str, other: str, settings: NoveltySettings, known: tuple, unknown: tuple) -> list:
    """One line of the table: (probabilities, novelty, labels) of the model's own test photos, (probabilities,
    novelty) of the photos of other kinds."""
    probabilities, scores, labels = known
    accuracy = float((probabilities.argmax(axis=1) == labels).mean())
    return [name, other, len(unknown[1]), f"{flagged_share(unknown[1], settings.threshold):.3f}",
            f"{flagged_share(scores, settings.threshold):.3f}", f"{auroc(scores, unknown[1]):.3f}",
            f"{auroc(-probabilities.max(axis=1), -unknown[0].max(axis=1)):.3f}", f"{settings.caught_hidden():.3f}",
            f"{accuracy:.3f}"]


def measure_fine_tuned(name: str, data: TrainData, test: list[Sample], others: dict[str, list[Path]],
                       unfreeze_blocks: int) -> list[list]:
    """A fine-tuned run trained and saved as the app does, its photos scored by the saved model."""
    with tempfile.TemporaryDirectory() as folder:
        metrics, _ = train_and_save(data, TrainConfig(backbone=BACKBONE, unfreeze_blocks=unfreeze_blocks),
                                    Path(folder) / "run")
        run = Path(folder) / "run"
        print(f"{name}: fine-tuned ({metrics['finetune_path']}), kept the head: {metrics['finetune_kept_head']}, "
              f"{metrics['train_seconds']:.0f} s", flush=True)
        predictor, settings = load_predictor(run, keras=False), NoveltySettings.load(run)
        probabilities, known, ok = predictor.score_paths([s.path for s in test])
        labels = np.array([test[i].label for i in ok])
        rows = []
        for other, paths in others.items():
            draw = np.random.default_rng(0).permutation(len(paths))[:UNKNOWN_PHOTOS]
            unknown_probabilities, unknown, _ = predictor.score_paths([paths[i] for i in sorted(draw)])
            rows.append(row(name, other, settings, (probabilities, known, labels), (unknown_probabilities, unknown)))
        return rows


def held_out(data: TrainData, seed: int) -> tuple[str, TrainData, list[Sample], list[Path]]:
    """The groceries photos without HELD_OUT classes drawn by seed, and the photos of those classes."""
    out = set(np.random.default_rng(seed).choice(len(data.class_names), HELD_OUT, replace=False).tolist())
    names = [n for i, n in enumerate(data.class_names) if i not in out]
    relabel = {old: new for new, old in enumerate(i for i in range(len(data.class_names)) if i not in out)}
    keep = lambda samples: [Sample(s.path, relabel[s.label], s.sha256) for s in samples if s.label not in out]  # noqa: E731
    hidden = [s.path for s in data.train + data.val if s.label in out]
    trained, test = test_split(TrainData(names, keep(data.train), keep(data.val)))
    return ", ".join(data.class_names[i] for i in sorted(out)), trained, test, hidden


def speed(reference_rows: int, dim: int = 1280, photos: int = 200) -> None:
    """The score's cost per photo with the largest reference a run keeps, beside the backbone's."""
    from core.model.embed import make_embedder
    from core.model.novelty import NoveltyReference, unit

    rng = np.random.default_rng(0)
    reference = NoveltyReference(unit(rng.normal(size=(reference_rows, dim))).astype(np.float16))
    x = rng.normal(size=(1, dim)).astype(np.float32)
    reference.scores(x)
    start = time.perf_counter()
    for _ in range(photos):
        reference.scores(x)
    score_ms = (time.perf_counter() - start) / photos * 1000
    embed = make_embedder(get_backbone(BACKBONE))
    pixels = rng.uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    embed(pixels)
    start = time.perf_counter()
    for _ in range(photos // 4):
        embed(pixels)
    embed_ms = (time.perf_counter() - start) / (photos // 4) * 1000
    print(f"one photo: backbone {embed_ms:.1f} ms, novelty score {score_ms:.2f} ms against {reference_rows} "
          f"reference rows ({score_ms / embed_ms:.1%} of the backbone)")


def main(unfreeze_blocks: int = 0, only: str | None = None) -> None:
    flowers, groceries, hymenoptera = dataset("flowers5"), dataset("groceries25"), dataset("hymenoptera")
    rows = []
    if only in (None, "flowers5"):
        unseen = data_from_folders(flowers / "val")
        rows += measure("flowers5 model", data_from_folders(flowers / "train"), unseen.train + unseen.val,
                        {"groceries25": photo_files(groceries)}, unfreeze_blocks)
    all_groceries = data_from_folders(groceries / "train")
    if only in (None, "groceries25"):
        trained, test = test_split(all_groceries)
        rows += measure("groceries25 model", trained, test,
                        {"flowers5": photo_files(flowers), "hymenoptera": photo_files(hymenoptera)}, unfreeze_blocks)
    for seed in range(HELD_OUT_DRAWS if only in (None, "held-out") else 0):
        names, trained, test, hidden = held_out(all_groceries, seed)
        rows += measure(f"groceries20 model #{seed}", trained, test, {f"held out: {names}": hidden}, unfreeze_blocks)
    print(table(["model", "shown", "photos", "caught", "false alarms", "AUROC novelty", "AUROC top prob.",
                 "hidden est.", "accuracy"], rows))
    print("accuracy: top-1 on the model's own test photos; the novelty check never changes the top class.")
    if not unfreeze_blocks:
        speed(min(MAX_REFERENCE_ROWS, MAX_REFERENCE_BYTES // (2 * 1280)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unfreeze-blocks", type=int, default=0, help="fine-tune this many top blocks (0: head only)")
    parser.add_argument("--only", choices=["flowers5", "groceries25", "held-out"], help="one of the models")
    arguments = parser.parse_args()
    main(arguments.unfreeze_blocks, arguments.only)
