"""Using a trained model: top-k classes for photos, and a heat map (`core.serving.heatmap`) drawn over the whole photo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from core.images import decode_image, dim_outside_square, sha256_hex, square_box, unseen_share

MODEL_FILE = "model.keras"
LABELS_FILE = "labels.txt"
OUTLINE_COLOUR = (255, 255, 255)  # around the square the model saw, on a heat map of a photo that is not square


@dataclass(frozen=True)
class Prediction:
    top: list[tuple[str, float]]   # best first
    probabilities: dict[str, float]
    novelty: float | None = None   # how unlike the training photos (core.model.novelty); None: the run has no check

    @property
    def label(self) -> str:
        return self.top[0][0]

    @property
    def confidence(self) -> float:
        return self.top[0][1]

    def unfamiliar(self, threshold: float | None) -> bool:
        """Unlike every class the model knows, at the novelty threshold in force (None: no check)."""
        return self.novelty is not None and threshold is not None and self.novelty > threshold


def read_labels(run_dir: Path) -> list[str]:
    """The run's class names in output order (checked: `core.store.run_folder`)."""
    from core.store.run_folder import read_labels as checked

    return checked(run_dir)


class Classifier:
    """A saved run's Keras model with its labels: for export (`core.serving.predictor` predicts faster, without Keras)."""

    def __init__(self, model, class_names: list[str], output: int = 0):
        self.model = model
        self.class_names = class_names
        self.input_size = int(model.input_shape[1])
        self.output = output  # which of the model's outputs holds the probabilities

    @classmethod
    def load(cls, run_dir: Path) -> "Classifier":
        """The run's model.keras, checked against the run-folder contract; RunFolderInvalid when it does not hold."""
        import keras

        from core.store.run_folder import RunFolderInvalid, check_keras_file, check_keras_model

        path = Path(run_dir) / MODEL_FILE
        if not path.exists():
            raise FileNotFoundError(f"{run_dir} has no {MODEL_FILE}: the run did not finish or is not a run folder.")
        names = read_labels(run_dir)
        check_keras_file(run_dir)
        try:
            model = keras.saving.load_model(path, safe_mode=True)
        except Exception as exc:  # Keras raises what its parsers raise: ValueError, TypeError, KeyError, OSError...
            raise RunFolderInvalid(f"model.keras of this run cannot be loaded ({type(exc).__name__}: "
                                   f"{str(exc)[:200]}).") from exc
        return cls(model, names, check_keras_model(model, len(names)))

    def outputs(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and, for a model with a novelty output, the novelty scores."""
        out = self.model.predict(pixels.astype(np.float32), verbose=0, batch_size=16)
        if isinstance(out, dict):
            return np.asarray(out["probabilities"]), np.asarray(out["novelty"]) if "novelty" in out else None
        if isinstance(out, (list, tuple)):
            novelty = next((np.asarray(o) for o in out if np.ndim(o) == 1), None)
            return np.asarray(out[self.output]), novelty
        return np.asarray(out), None

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        from core.store.run_folder import check_probabilities

        return check_probabilities(self.outputs(pixels)[0], len(self.class_names))


def overlay_heatmap(image: Image.Image, heatmap: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """The whole photo with the heat map laid in warm colours over its centre square, the part the model saw;
    the rest, cut off before the model looked, is dimmed and the square outlined."""
    image = image.convert("RGB")
    left, top, right, bottom = square_box(image.size)
    heat = Image.fromarray((np.clip(heatmap, 0, 1) * 255).astype(np.uint8)).resize(
        (right - left, bottom - top), Image.Resampling.BICUBIC)
    h = np.asarray(heat, dtype=np.float32)[..., None] / 255.0
    colour = np.concatenate([np.clip(1.5 * h, 0, 1), np.clip(1.5 * h - 0.5, 0, 1) * 0.9,
                             np.clip(0.6 - h, 0, 1) * 0.5], -1)
    pixels = np.asarray(image)
    square = pixels[top:bottom, left:right].astype(np.float32) / 255.0
    shown = dim_outside_square(pixels)
    glow = np.clip(square * (1 - alpha * h) + colour * alpha * h, 0, 1)
    shown[top:bottom, left:right] = (glow * 255).astype(np.uint8)
    result = Image.fromarray(shown)
    if unseen_share(image.size) > 0:
        # drawn just outside the square, over the dimmed part, so none of the heat map is covered
        width = max(2, min(image.size) // 120)
        ImageDraw.Draw(result).rectangle((left - width, top - width, right + width - 1, bottom + width - 1),
                                         outline=OUTLINE_COLOUR, width=width)
    return result


def decode_upload(data: bytes) -> Image.Image:
    """An uploaded or webcam photo, decoded with the same rules as the dataset; ImageRejected if not usable."""
    return decode_image(data).image


class Arrivals:
    """Photos put in front of a model over a session, each content once, the latest arrivals first.

    A page keeps one between reruns and hands it everything on screen each time (uploads, webcam shots);
    photos that came in together keep the order they came in. A photo taken off and added again counts as new.
    """

    def __init__(self) -> None:
        self._arrived: dict[str, int] = {}  # content digest -> arrival number
        self._count = 0

    def arrange(self, photos: Sequence[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], list[tuple[str, str]]]:
        """The photos newest first, copies left out; and (name of a copy, name it is already there under)."""
        unique: dict[str, tuple[str, bytes]] = {}
        copies = []
        for name, data in photos:
            digest = sha256_hex(data)
            if digest in unique:
                copies.append((name, unique[digest][0]))
            else:
                unique[digest] = (name, data)
        self._arrived = {d: n for d, n in self._arrived.items() if d in unique}
        if unique.keys() - self._arrived.keys():
            self._count += 1
            self._arrived |= {d: self._count for d in unique if d not in self._arrived}
        newest_first = sorted(unique, key=lambda d: -self._arrived[d])  # stable: a batch keeps its order
        return [unique[d] for d in newest_first], copies


SURE, NOT_SURE, UNFAMILIAR = "sure", "not sure", "not one of your classes"


@dataclass(frozen=True)
class Bar:
    """When a prediction counts: below `sure` (top probability) it is "not sure"; above `novelty` (the run's
    novelty threshold in force; None when it has no check) it is "not one of your classes", whatever its top
    probability says."""

    sure: float
    novelty: float | None = None

    def verdict(self, prediction: Prediction) -> str:
        if prediction.unfamiliar(self.novelty):
            return UNFAMILIAR
        return SURE if prediction.confidence >= self.sure else NOT_SURE


def summary_rows(names: Sequence[str], outcomes: Sequence[Prediction | str], bar: Bar) -> list[dict]:
    """One row per photo for a results table or CSV; an outcome that is a str says why the photo could not be read."""
    rows = []
    for name, outcome in zip(names, outcomes, strict=True):
        if isinstance(outcome, Prediction):
            rows.append({"file": name, "prediction": outcome.label, "confidence": round(outcome.confidence, 4),
                         "verdict": bar.verdict(outcome)})
        else:
            rows.append({"file": name, "prediction": None, "confidence": None, "verdict": f"not read: {outcome}"})
    return rows
