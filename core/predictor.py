"""The fastest way to run a finished run's model on new photos, chosen from what its folder holds.

A head-only run leaves `head.npz` (the Dense layer's kernel and bias): the backbone's cached
LiteRT file gives the pooled embedding and numpy does the rest, with no TensorFlow import and
no Keras load, so the model is usable the moment the head is fit. Fine-tuned runs (and runs
saved before head.npz existed) use `model.tflite` when exported, else the heat map's LiteRT file
(`core.heatmap`, made first), else the Keras `model.keras`: the app's server never loads Keras
(`keras=False`: once imported there, every page run pays for it), it waits for the worker's files.
Every path takes the same centre-cropped raw pixels as training (`core.images.load_rgb`).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from core.export import METRICS_FILE, TFLITE_FILES
from core.head import HEAD_FILE, LinearHead, softmax
from core.heatmap import RUN_MAP_FILE, NotConverted, probabilities
from core.images import load_rgb
from core.predict import MODEL_FILE, Prediction, read_labels


Forward = Callable[[np.ndarray], np.ndarray]  # (N, S, S, 3) float32 pixels -> (N, C) probabilities


class Predictor:
    """A run's classes and a thread-safe forward pass; one instance serves every page and webcam thread."""

    def __init__(self, class_names: list[str], input_size: int, forward: Forward, kind: str):
        self.class_names = class_names
        self.input_size = input_size
        self.kind = kind  # "head", "tflite" or "keras": which file the verdicts come from
        self._forward = forward
        self._lock = threading.Lock()  # a LiteRT interpreter must not be invoked from two threads at once

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) pixels 0..255 -> (N, C) class probabilities."""
        if len(pixels) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        with self._lock:
            return np.asarray(self._forward(np.asarray(pixels, dtype=np.float32)))

    def prediction(self, row: np.ndarray, top_k: int = 3) -> Prediction:
        """One row of probabilities as a Prediction, best classes first."""
        order = np.argsort(-row)[:top_k]
        return Prediction([(self.class_names[i], float(row[i])) for i in order],
                          {name: float(p) for name, p in zip(self.class_names, row)})

    def predict_images(self, images: Sequence[Image.Image], top_k: int = 3) -> list[Prediction]:
        """Top-k for already-decoded RGB photos (see `core.predict.decode_upload`)."""
        if not images:
            return []
        pixels = np.stack([load_rgb(img, self.input_size) for img in images])
        return [self.prediction(row, top_k) for row in self.probabilities(pixels)]

    def predict_paths(self, paths: Sequence[Path]) -> tuple[np.ndarray, list[int]]:
        """Probabilities for photos on disk, and the indices that could be read."""
        arrays, ok = [], []
        for i, path in enumerate(paths):
            try:
                arrays.append(load_rgb(Path(path), self.input_size))
                ok.append(i)
            except (OSError, ValueError, SyntaxError):
                continue
        if not arrays:
            return np.zeros((0, len(self.class_names))), ok
        return self.probabilities(np.stack(arrays)), ok


def model_file(run_dir: Path, keras: bool = True) -> Path:
    """The file `load_predictor` reads the model from: a cache key for pages (its time changes on re-save).
    NotConverted when, without Keras, only model.keras is there yet (the worker makes the LiteRT files)."""
    run_dir = Path(run_dir)
    for name in (HEAD_FILE, TFLITE_FILES[False], RUN_MAP_FILE, MODEL_FILE):
        if (run_dir / name).exists():
            if name == MODEL_FILE and not keras:
                raise NotConverted(f"{run_dir.name} has no LiteRT file yet")
            return run_dir / name
    raise FileNotFoundError(f"{run_dir} holds no model yet ({HEAD_FILE}, {TFLITE_FILES[False]} or {MODEL_FILE}): "
                            "the run did not finish or is not a run folder.")


def load_predictor(run_dir: Path, keras: bool = True) -> Predictor:
    """The fastest predictor the run folder allows: backbone LiteRT + numpy head, the run's TFLite file (or its
    heat map's, which also gives the probabilities), or Keras (unless `keras` is False)."""
    run_dir = Path(run_dir)
    path = model_file(run_dir, keras)
    names = read_labels(run_dir)
    if path.name == HEAD_FILE:
        return _head_predictor(run_dir, path, names)
    if path.name in (TFLITE_FILES[False], RUN_MAP_FILE):
        from core.embed import LiteRTRunner

        runner = LiteRTRunner(path)
        if path.name == TFLITE_FILES[False]:
            return Predictor(names, runner.input_size, runner, "tflite")
        return Predictor(names, runner.input_size, lambda pixels: probabilities(runner.outputs(pixels)), "tflite")
    from core.predict import Classifier

    classifier = Classifier.load(run_dir)
    return Predictor(names, classifier.input_size, classifier.probabilities, "keras")


def _head_predictor(run_dir: Path, path: Path, names: list[str]) -> Predictor:
    from core.backbones import get_backbone
    from core.embed import LiteRTRunner, litert_backbone

    metrics = json.loads((run_dir / METRICS_FILE).read_text(encoding="utf-8"))
    spec = get_backbone(metrics["backbone"])
    head = LinearHead.load(path)
    kernel, bias = head.kernel.astype(np.float32), head.bias.astype(np.float32)
    if kernel.shape != (spec.feature_dim, len(names)) or bias.shape != (len(names),):
        raise ValueError(f"{path.name} has a {kernel.shape} kernel and {bias.shape} bias; a {spec.name} head for "
                         f"{len(names)} classes needs ({spec.feature_dim}, {len(names)}) and ({len(names)},).")
    embed = LiteRTRunner(litert_backbone(spec))
    return Predictor(names, spec.input_size, lambda pixels: softmax(embed(pixels) @ kernel + bias), "head")
