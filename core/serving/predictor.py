"""The fastest way to run a finished run's model on new photos, chosen from what its folder holds.

A head-only run leaves `head.npz` (the Dense layer's kernel and bias): the backbone's cached
LiteRT file gives the pooled embedding and numpy does the rest, with no TensorFlow import and
no Keras load, so the model is usable the moment the head is fit. Fine-tuned runs (and runs
saved before head.npz existed) use `model.tflite` when exported, else the heat map's LiteRT file
(`core.serving.heatmap`, made first), else the Keras `model.keras`: the app's server never loads Keras
(`keras=False`: once imported there, every page run pays for it), it waits for the worker's files.
Every path takes the same centre-cropped raw pixels as training (`core.images.load_rgb`); a joined
backbone's head reads each member's LiteRT file fed the photo at the joined size, the smaller members
resizing it in their graph, as its embeddings were made and as the downloads do (`core.model.joined`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from core.serving.export import TEST_TIME_MIRROR, TFLITE_FILES
from core.model.head import HEAD_FILE, softmax
from core.serving.heatmap import RUN_MAP_FILE
from core.images import load_rgb
from core.model.novelty import load_novelty
from core.serving.predict import MODEL_FILE, Prediction, read_labels
from core.store.run_folder import NotConverted, check_probabilities, loading, read_head, read_metrics


PATH_BATCH = 16  # photos on disk decoded and run at once (`python -m core evaluate` on 10,000 photos)
UPLOAD_BATCH = 4  # photos decoded at once for a verdict; each is reduced to the model's size straight away
# (N, S, S, 3) float32 pixels -> (N, C) probabilities and, where the run has a novelty check, (N,) novelty; a joined
# backbone reads them at its own size too (its smaller members resize them in their graph)
Forward = Callable[[np.ndarray], "np.ndarray | tuple[np.ndarray, np.ndarray | None]"]


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
        return self.outputs(pixels)[0]

    def outputs(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, C) class probabilities and (N,) novelty scores (None when the run has no novelty check)."""
        pixels = np.asarray(pixels, dtype=np.float32)
        if len(pixels) == 0:
            return np.zeros((0, len(self.class_names)), np.float32), None
        with self._lock, loading():  # a damaged graph can load and still fail when it runs
            out = self._forward(pixels)
            probabilities, novelty = out if isinstance(out, tuple) else (out, None)
            return (check_probabilities(probabilities, len(self.class_names)),
                    None if novelty is None else np.asarray(novelty))

    def pixels(self, photos: Sequence[Image.Image | Path | bytes]) -> np.ndarray:
        """Decoded photos, files or their bytes as the batch `outputs` takes."""
        return np.stack([load_rgb(photo, self.input_size) for photo in photos])

    def prediction(self, row: np.ndarray, top_k: int = 3, novelty: float | None = None) -> Prediction:
        """One row of probabilities (and its novelty score) as a Prediction, best classes first."""
        order = np.argsort(-row)[:top_k]
        return Prediction([(self.class_names[i], float(row[i])) for i in order],
                          {name: float(p) for name, p in zip(self.class_names, row)},
                          None if novelty is None else float(novelty))

    def predict_images(self, images: Sequence[Image.Image], top_k: int = 3) -> list[Prediction]:
        """Top-k for already-decoded RGB photos (see `core.serving.predict.decode_upload`)."""
        if not images:
            return []
        return self._predictions(self.pixels(images), top_k)

    def _predictions(self, pixels: np.ndarray, top_k: int) -> list[Prediction]:
        probabilities, novelty = self.outputs(pixels)
        return [self.prediction(row, top_k, None if novelty is None else novelty[i])
                for i, row in enumerate(probabilities)]

    def predict_uploads(self, photos: Sequence[bytes], top_k: int = 3) -> list[Prediction]:
        """Top-k for photo files' bytes, decoded a few at a time at the model's size: a batch of forged photos that
        each decode to tens of megabytes never has more than UPLOAD_BATCH of them in memory."""
        found = []
        for start in range(0, len(photos), UPLOAD_BATCH):
            found += self._predictions(self.pixels(photos[start:start + UPLOAD_BATCH]), top_k)
        return found

    def predict_paths(self, paths: Sequence[Path]) -> tuple[np.ndarray, list[int]]:
        """Probabilities for photos on disk, and the indices that could be read."""
        probabilities, _, ok = self.score_paths(paths)
        return probabilities, ok

    def score_paths(self, paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray | None, list[int]]:
        """Probabilities and novelty scores (None: no check) for photos on disk, and the indices that could be read.
        Photos are decoded and run PATH_BATCH at a time, so memory does not grow with their number."""
        probabilities, novelty, ok = [], [], []
        for start in range(0, len(paths), PATH_BATCH):
            readable = []
            for i in range(start, min(start + PATH_BATCH, len(paths))):
                try:
                    readable.append((i, load_rgb(Path(paths[i]), self.input_size)))
                except (OSError, ValueError, SyntaxError):
                    continue
            if readable:
                batch, scores = self.outputs(np.stack([a for _, a in readable]))
                probabilities.append(batch)
                novelty.append(scores)
                ok.extend(i for i, _ in readable)
        if not ok:
            return np.zeros((0, len(self.class_names)), np.float32), None, ok
        return np.concatenate(probabilities), None if novelty[0] is None else np.concatenate(novelty), ok


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
    """The fastest predictor the run folder allows: backbone LiteRT + numpy head, the run's TFLite file (or its heat
    map file, which gives the probabilities too), or Keras (unless `keras` is False: NotConverted then).
    Everything read is checked against the run-folder contract: RunFolderInvalid (with a sentence) when it fails."""
    run_dir = Path(run_dir)
    with loading(run_dir):
        path = model_file(run_dir, keras)
        names = read_labels(run_dir)
        if path.name == HEAD_FILE:
            return _head_predictor(run_dir, names)
        if path.name in (TFLITE_FILES[False], RUN_MAP_FILE):
            from core.model.embed import LiteRTRunner

            runner = LiteRTRunner(path, n_classes=len(names))
            return Predictor(names, runner.input_size, runner.outputs, "tflite")
        from core.serving.predict import Classifier

        classifier = Classifier.load(run_dir)
        return Predictor(names, classifier.input_size, classifier.outputs, "keras")


def _head_predictor(run_dir: Path, names: list[str]) -> Predictor:
    from core.model.backbones import get_backbone
    from core.model.embed import LiteRTRunner, litert_backbone, mirrored

    metrics = read_metrics(run_dir)
    spec = get_backbone(metrics["backbone"])
    kernel, bias = read_head(run_dir, spec.feature_dim, len(names))
    # a joined backbone's parts all read the photo at its size, the smaller members resizing it in their graph, as
    # their cached embeddings were made and as the downloads do (`core.model.joined.ResizedMember`)
    parts = [LiteRTRunner(litert_backbone(part)) for part in spec.parts]
    check = load_novelty(run_dir, spec.feature_dim)
    mirror = metrics.get(TEST_TIME_MIRROR)

    def forward(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        # the pooled embedding: a joined backbone's members side by side, all on the photo at the joined size. Test-time
        # mirroring: both views through the members in one batch, their probabilities averaged; novelty stays the
        # photo's own (its threshold was set on plain embeddings), as in the .keras and TFLite files.
        n = len(pixels)
        if mirror:
            pixels = np.concatenate([pixels, mirrored(pixels)])
        embeddings = np.concatenate([part(pixels) for part in parts], axis=1)
        probabilities = softmax(embeddings @ kernel + bias)
        if mirror:
            probabilities = (probabilities[:n] + probabilities[n:]) / 2
        return probabilities, None if check is None else check[0].scores(embeddings[:n])

    return Predictor(names, spec.input_size, forward, "head")
