"""One training run from data to saved artifacts: the path shared by the app's jobs and the CLI."""

from __future__ import annotations

import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from core.serving.evaluate import evaluate_predictions, image_folder
from core.serving.export import TEST_TIME_MIRROR, TEST_TIME_ZOOM, assemble_downloads, save_usable
from core.serving.formats import write_photo_list
from core.model.head import HEAD_FILE
from core.serving.heatmap import prepare as prepare_heat_maps
from core.images import sha256_hex
from core.serving.predict import MODEL_FILE
from core.store.project import Project, RunRecord, split_for, split_key
from core.model.train import Sample, TrainConfig, TrainData, TrainingListener, mirror_averaging, train


def has_model(run: RunRecord) -> bool:
    """The run ended well enough to leave a usable model (finished, or stopped with its best weights): head.npz
    for a head-only run, model.keras for a fine-tuned one."""
    return run.status in ("completed", "stopped") and any((run.dir / f).exists() for f in (HEAD_FILE, MODEL_FILE))


def finished_runs(project: Project) -> list[RunRecord]:
    """Runs that left a usable model, newest first."""
    return [run for run in project.runs() if has_model(run)]


def data_from_project(project: Project) -> TrainData:
    """The project's kept photos, split as the store assigned them."""
    records = project.images(status="kept")  # one read: classes taken from it cannot be renamed in between
    class_names = list(dict.fromkeys(r.class_name for r in records))  # ordered by name, as Project.classes()
    index = {name: i for i, name in enumerate(class_names)}
    train_samples, val_samples = [], []
    for record in records:
        sample = Sample(record.path, index[record.class_name], record.sha256)
        (val_samples if record.split == "val" else train_samples).append(sample)
    return TrainData(class_names, train_samples, val_samples)


@contextmanager
def photo_snapshot(data: TrainData, folder: Path) -> Iterator[TrainData]:
    """The same data read from hard links in `folder/<class>/<file>`, removed afterwards.

    A photo moved, renamed or deleted while the run trains stays readable, so a run trains on
    the photos it started with. A photo already gone keeps its old path, and training skips and
    reports it like any unreadable photo. Paths keep `<class>/<file>`, so `Project.image_at` still
    finds a photo from a run's evaluation."""
    def pinned(sample):
        link = folder / sample.path.parent.name / sample.path.name
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(sample.path, link)
        except FileNotFoundError:
            return sample
        except OSError:  # a file system without hard links, or the photos on another disk
            try:
                shutil.copyfile(sample.path, link)
            except FileNotFoundError:
                return sample
        return replace(sample, path=link)

    try:
        yield TrainData(data.class_names, [pinned(s) for s in data.train], [pinned(s) for s in data.val])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def data_from_folders(data_dir: Path, val_dir: Path | None = None, val_split: float = 0.2) -> TrainData:
    """An ImageFolder tree, validated against `val_dir` or split by content hash like the store does."""
    samples, class_names = _folder_samples(Path(data_dir))
    if val_dir is not None:
        return TrainData(class_names, samples, _folder_samples(Path(val_dir), class_names)[0])
    is_val = [split_for(split_key(s.sha256), val_split) == "val" for s in samples]  # the store's rule
    return TrainData(class_names, [s for s, v in zip(samples, is_val) if not v], [s for s, v in zip(samples, is_val) if v])


def _folder_samples(folder: Path, class_names: list[str] | None = None) -> tuple[list[Sample], list[str]]:
    paths, labels, class_names = image_folder(folder, class_names)
    return [Sample(p, y, sha256_hex(p.read_bytes())) for p, y in zip(paths, labels)], class_names


def train_and_save(data: TrainData, cfg: TrainConfig, run_dir: Path, listener: TrainingListener | None = None, *,
                   assemble: bool = True):
    """Train, evaluate on the validation photos and write the usable run (labels.txt, head.npz or model.keras,
    evaluation.json, metrics.json); then, with `assemble`, the heat maps' LiteRT files and the downloads. Returns the metrics and the fine-tuned
    Keras model (None for a head-only run), which spares the assembly rebuilding it."""
    started = time.time()
    result = train(data, cfg, listener)
    labels = [s.label for s in result.val_samples]
    mirror = mirror_averaging(cfg)
    # The validation figures are the model's as it answers: each photo averaged over its views when it is.
    averaged = result.val_probabilities_averaged
    answered = averaged if (mirror or result.zoomed_views) and averaged is not None else result.val_probabilities
    evaluation = evaluate_predictions(labels, answered, result.class_names, [s.path for s in result.val_samples])
    n_used = len(data.train) + len(data.val) - len(result.skipped)
    plain = evaluate_predictions(labels, result.val_probabilities, result.class_names).accuracy if evaluation.n else None
    averaged_accuracy = (evaluate_predictions(labels, averaged, result.class_names).accuracy
                         if averaged is not None and evaluation.n else None)
    metrics = {
        "val_accuracy": evaluation.accuracy if evaluation.n else None,
        "val_images": evaluation.n,
        "train_images": n_used - evaluation.n,
        "images_used": n_used,
        "images_rejected": len(result.skipped),
        "rejected": result.skipped,
        "classes": result.class_names,
        "backbone": cfg.backbone,
        "unfreeze_blocks": cfg.unfreeze_blocks,
        # the peak rate fine-tuning used: the config's, or the automatic one for the training photo count (the
        # config then holds None)
        "finetune_learning_rate": result.finetune_learning_rate,
        "finetune_epochs": result.finetune_epochs,  # at most: the config's, or the automatic number (config None)
        "stopped_early_by_user": result.stopped,
        "best_epoch": result.best_epoch,
        # "cached": the top blocks trained on cached boundary activations; "streamed": end to end on photos
        "finetune_path": result.finetune_path,
        # fine-tuning ran but no epoch beat the stage-1 head on validation, so the head is the saved model
        "finetune_kept_head": bool(cfg.unfreeze_blocks and result.model is None and not result.stopped),
        # the model answers with each photo's probabilities averaged with its mirror image's (test-time mirroring),
        # and a model fine-tuned on zoomed-in views with theirs too (the photo's middle enlarged, and mirrored)
        TEST_TIME_MIRROR: mirror,
        TEST_TIME_ZOOM: result.zoomed_views,
        "val_accuracy_plain": plain,                 # each validation photo as it is
        "val_accuracy_averaged": averaged_accuracy,  # averaged over the views above
        # the saved model learned the validation photos too, after they measured it (the figures above are from
        # before): its head solved again with them, or its fine-tuned network trained again on every photo for this
        # many epochs (0: saved as validated)
        "head_refit": result.head_refit,
        "finetune_refit_epochs": result.finetune_refit_epochs,
        "head_C": result.search.strength,
        "head_strengths_tried": len(result.search.tried),
        "head_cv_folds": result.search.folds,
        # the head's cross-validated accuracy on the training photos: low with plenty of photos, a sign that they
        # are unlike everyday photos and fine-tuning should pay (core.model.advice.unlike_everyday)
        "head_cv_accuracy": next(row for row in result.search.tried if row["chosen"]).get("cv_accuracy"),
        "embed_seconds": round(result.timings.get("embed_seconds", 0.0), 2),
        "embed_images_per_second": round(result.embed_images_per_second, 2),
        "boundary_seconds": round(result.timings.get("boundary_seconds", 0.0), 2),
        "head_seconds": round(result.timings.get("head_seconds", 0.0), 2),
        "finetune_seconds": round(result.timings.get("finetune_seconds", 0.0), 2),
        "refit_seconds": round(result.timings.get("refit_seconds", 0.0), 2),
        "train_seconds": round(result.timings["train_seconds"], 2),
        "config": cfg.to_dict(),
        "started": started,
    }
    save_usable(Path(run_dir), result.class_names, metrics, evaluation.to_dict(), result.head, result.model,
                result.novelty)
    write_photo_list(Path(run_dir), [s for s in data.train if str(s.path) not in result.skipped], result.val_samples)
    if assemble:
        prepare_heat_maps(Path(run_dir), result.model)
        assemble_downloads(Path(run_dir), result.model)
    return metrics, result.model

