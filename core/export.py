"""Taking a model away: the run folder's .keras, labels.txt and metrics, TFLite files, a dataset zip.

Every file is written under a temporary name and renamed, so a crash mid-save never leaves a
model file that half-loads.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from core.embed import LiteRTRunner, tflite_bytes
from core.images import load_rgb
from core.predict import LABELS_FILE, MODEL_FILE, Classifier
from core.files import atomic_path, atomic_write
from core.store import Project

METRICS_FILE = "metrics.json"
EVALUATION_FILE = "evaluation.json"
TFLITE_FILES = {False: "model.tflite", True: "model_quant.tflite"}


def save_keras(model, path: Path) -> None:
    """Save a Keras model atomically (Keras insists on the .keras suffix, so the temp name keeps it)."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def write_json(path: Path, values: dict) -> None:
    atomic_write(path, json.dumps(values, indent=2).encode())


def save_run(model, class_names: list[str], run_dir: Path, metrics: dict, evaluation: dict | None = None) -> None:
    """Write what a finished run leaves behind: labels and metrics first, the model last."""
    run_dir = Path(run_dir)
    atomic_write(run_dir / LABELS_FILE, ("\n".join(class_names) + "\n").encode())
    if evaluation is not None:
        write_json(run_dir / EVALUATION_FILE, evaluation)
    write_json(run_dir / METRICS_FILE, metrics)
    save_keras(model, run_dir / MODEL_FILE)


def export_tflite(run_dir: Path, *, quantize: bool = False) -> Path:
    """model.tflite (float32) or model_quant.tflite (dynamic-range int8 weights) beside the .keras file."""
    classifier = Classifier.load(run_dir)
    path = Path(run_dir) / TFLITE_FILES[quantize]
    atomic_write(path, tflite_bytes(classifier.model, classifier.input_size, quantize=quantize))
    return path


def tflite_agreement(run_dir: Path, tflite_path: Path, photos: Sequence[Path]) -> float:
    """Share of photos on which the TFLite file and the Keras model pick the same class."""
    classifier = Classifier.load(run_dir)
    pixels = np.stack([load_rgb(Path(p), classifier.input_size) for p in photos]).astype(np.float32)
    keras_top = classifier.probabilities(pixels).argmax(axis=1)
    runner = LiteRTRunner(Path(tflite_path))
    lite_top = np.concatenate([runner(pixels[i:i + 8]) for i in range(0, len(pixels), 8)]).argmax(axis=1)
    return float((keras_top == lite_top).mean())


def read_evaluation(run_dir: Path) -> dict | None:
    path = Path(run_dir) / EVALUATION_FILE
    return json.loads(path.read_text()) if path.exists() else None


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
