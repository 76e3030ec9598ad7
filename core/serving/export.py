"""The run folder and taking a model away: labels, head, metrics, .keras, TFLite files, a dataset zip.

A run is usable as soon as `save_usable` has written labels.txt, head.npz (head-only runs) or
model.keras (fine-tuned runs), evaluation.json and metrics.json. The downloads (model.keras and
the two TFLite files) are assembled afterwards by `assemble_downloads`, in the background in the
app. Every file is written under a temporary name and renamed, so a crash mid-save never leaves
a model file that half-loads.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from core.model.embed import LiteRTRunner, tflite_bytes
from core.images import load_rgb
from core.serving.predict import LABELS_FILE, MODEL_FILE, Classifier, read_labels
from core.store.run_folder import read_head, read_metrics
from core.files import atomic_path, atomic_write
from core.model.head import HEAD_FILE, LinearHead
from core.model.novelty import (NoveltyReference, NoveltySettings, load_novelty, save_novelty,
                                 with_novelty_output)
from core.store.project import Project

METRICS_FILE = "metrics.json"
TEST_TIME_MIRROR = "test_time_mirror"  # metrics.json: the model averages each photo with its mirror image
TEST_TIME_ZOOM = "test_time_zoom"  # metrics.json: a fine-tuned model averages the photo's zoomed-in views in too
EVALUATION_FILE = "evaluation.json"
TFLITE_FILES = {False: "model.tflite", True: "model_quant.tflite"}
DOWNLOAD_FILES = (MODEL_FILE, *TFLITE_FILES.values())
DOWNLOADS_ERROR_FILE = "downloads_error.txt"  # why the downloads could not be made; its absence: not failed
DownloadsState = Literal["ready", "preparing", "failed"]


def save_keras(model, path: Path) -> None:
    """Save a Keras model atomically (Keras insists on the .keras suffix, so the temp name keeps it)."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def write_json(path: Path, values: dict) -> None:
    atomic_write(path, json.dumps(values, indent=2).encode())


def save_usable(run_dir: Path, class_names: list[str], metrics: dict, evaluation: dict | None,
                head: LinearHead | None = None, model=None,
                novelty: tuple[NoveltyReference, NoveltySettings] | None = None) -> None:
    """What makes a run usable: labels, then the head (head-only) or the fine-tuned model, its novelty check, then
    evaluation and metrics (metrics.json last: its presence says the rest is there)."""
    run_dir = Path(run_dir)
    atomic_write(run_dir / LABELS_FILE, ("\n".join(class_names) + "\n").encode())
    if model is not None:
        save_keras(model, run_dir / MODEL_FILE)
    else:
        head.save(run_dir / HEAD_FILE)
    if novelty is not None:
        save_novelty(run_dir, *novelty)
    if evaluation is not None:
        write_json(run_dir / EVALUATION_FILE, evaluation)
    write_json(run_dir / METRICS_FILE, metrics)


def assemble_downloads(run_dir: Path, model=None) -> None:
    """model.keras (built from head.npz when it is not there yet) and both TFLite files; a failure is recorded
    in the run folder for the pages and raised."""
    run_dir = Path(run_dir)
    (run_dir / DOWNLOADS_ERROR_FILE).unlink(missing_ok=True)
    try:
        if model is None and not (run_dir / MODEL_FILE).exists():
            model = _classifier_from_head(run_dir)
            save_keras(model, run_dir / MODEL_FILE)
        for quantize in (False, True):
            if not (run_dir / TFLITE_FILES[quantize]).exists():
                export_tflite(run_dir, quantize=quantize, model=model)
    except Exception as exc:
        atomic_write(run_dir / DOWNLOADS_ERROR_FILE, f"{type(exc).__name__}: {exc}".encode())
        raise


def downloads_state(run_dir: Path) -> DownloadsState:
    """Whether a usable run's files to take away are there, being made, or could not be made."""
    run_dir = Path(run_dir)
    if all((run_dir / name).exists() for name in DOWNLOAD_FILES):
        return "ready"
    return "failed" if (run_dir / DOWNLOADS_ERROR_FILE).exists() else "preparing"


def downloads_error(run_dir: Path) -> str:
    path = Path(run_dir) / DOWNLOADS_ERROR_FILE
    return path.read_text(errors="replace") if path.exists() else ""


def _classifier_from_head(run_dir: Path):
    """The Keras classifier of a head-only run: its backbone with head.npz in the Dense layer."""
    from core.model.backbones import get_backbone
    from core.model.train import assemble_classifier, views_averaged

    metrics = read_metrics(run_dir)
    spec = get_backbone(metrics["backbone"])
    head = LinearHead(*read_head(run_dir, spec.feature_dim, len(read_labels(run_dir))))
    model = with_novelty(assemble_classifier(spec, head), run_dir)
    return views_averaged(model, bool(metrics.get(TEST_TIME_MIRROR)))


def with_novelty(classifier, run_dir: Path):
    """The classifier with two named outputs, `probabilities` (N, C) and `novelty` (N,), when the run has a novelty
    check (its threshold stays in the run folder's novelty.json); else the classifier as it is."""
    check = load_novelty(run_dir, int(classifier.get_layer("pooled").output.shape[-1]))
    return classifier if check is None else with_novelty_output(classifier, check[0])


def export_tflite(run_dir: Path, *, quantize: bool = False, model=None) -> Path:
    """model.tflite (float32) or model_quant.tflite (dynamic-range int8 weights) beside the .keras file."""
    model = model if model is not None else Classifier.load(run_dir).model
    path = Path(run_dir) / TFLITE_FILES[quantize]
    atomic_write(path, tflite_bytes(model, int(model.input_shape[1]), quantize=quantize))
    return path


def tflite_agreement(run_dir: Path, tflite_path: Path, photos: Sequence[Path]) -> float:
    """Share of photos on which the TFLite file and the Keras model pick the same class."""
    classifier = Classifier.load(run_dir)
    pixels = np.stack([load_rgb(Path(p), classifier.input_size) for p in photos]).astype(np.float32)
    keras_top = classifier.probabilities(pixels).argmax(axis=1)
    runner = LiteRTRunner(Path(tflite_path))
    lite_top = np.concatenate([runner(pixels[i:i + 8]) for i in range(0, len(pixels), 8)]).argmax(axis=1)
    return float((keras_top == lite_top).mean())


def dataset_zip(project: Project, destination: Path) -> Path:
    """The kept photos as an ImageFolder zip (class/file), for use in any other tool."""
    with atomic_path(destination) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for record in project.images(status="kept"):  # stored, not deflated: photos are already compressed
            zf.write(record.path, f"{record.class_name}/{record.path.name}")
    return destination



def folder_zip(images_dir: Path, destination: Path) -> Path:
    """Every photo file in a project's class folders as a zip, read from disk alone (for a damaged database)."""
    with atomic_path(destination) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(Path(images_dir).glob("*/*")):
            if path.is_file() and not (path.name.startswith(".") or path.parent.name.startswith(".")):
                zf.write(path, f"{path.parent.name}/{path.name}")
    return destination
