"""Honest numbers for a model: accuracy, per-class precision/recall/F1, confusion, mistakes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclass
class Evaluation:
    class_names: list[str]
    n: int
    accuracy: float
    per_class: list[dict]            # class, precision, recall, f1, support
    confusion: list[list[int]]       # rows = true class, columns = predicted class
    misclassified: list[dict]        # path, true, predicted, confidence; most confident mistakes first

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Evaluation":
        return cls(**values)


def evaluate_predictions(y_true: Sequence[int], probabilities: np.ndarray, class_names: list[str],
                         paths: Sequence[Path | str] | None = None) -> Evaluation:
    """Metrics from true labels and predicted probabilities (one row per photo)."""
    y_true = np.asarray(y_true, dtype=int)
    probabilities = np.asarray(probabilities).reshape(len(y_true), len(class_names))
    y_pred = probabilities.argmax(axis=1) if len(y_true) else np.zeros(0, int)
    k = len(class_names)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (y_true, y_pred), 1)
    per_class = []
    for i, name in enumerate(class_names):
        tp = confusion[i, i]
        predicted, actual = confusion[:, i].sum(), confusion[i, :].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append({"class": name, "precision": float(precision), "recall": float(recall),
                          "f1": float(f1), "support": int(actual)})
    wrong = np.nonzero(y_pred != y_true)[0]
    wrong = wrong[np.argsort(-probabilities[wrong, y_pred[wrong]])] if len(wrong) else wrong
    misclassified = [
        {"path": str(paths[i]) if paths is not None else None, "true": class_names[y_true[i]],
         "predicted": class_names[y_pred[i]], "confidence": float(probabilities[i, y_pred[i]])}
        for i in wrong
    ]
    accuracy = float((y_pred == y_true).mean()) if len(y_true) else 0.0
    return Evaluation(list(class_names), int(len(y_true)), accuracy, per_class, confusion.tolist(), misclassified)


def image_folder(folder: Path, class_names: list[str] | None = None) -> tuple[list[Path], list[int], list[str]]:
    """Files of an ImageFolder tree with labels; with class_names given, folders must match them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder.")
    found = sorted((d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")), key=str.lower)
    names = class_names or found
    unknown = [d for d in found if d not in names]
    if unknown:
        raise ValueError(f"{folder} has folders the model does not know: {', '.join(unknown)} "
                         f"(it knows {', '.join(names)}).")
    paths, labels = [], []
    for label, name in enumerate(names):
        for f in sorted((folder / name).glob("*")) if (folder / name).is_dir() else []:
            if f.is_file() and not f.name.startswith("."):
                paths.append(f)
                labels.append(label)
    if not paths:
        raise ValueError(f"{folder} holds no photos in class folders.")
    return paths, labels, names


def evaluate_folder(run_dir: Path, folder: Path) -> Evaluation:
    """Evaluate a saved run on an ImageFolder tree whose class folders match the run's labels."""
    from core.predictor import load_predictor

    predictor = load_predictor(run_dir)
    paths, labels, _ = image_folder(folder, predictor.class_names)
    probabilities, ok = predictor.predict_paths(paths)
    return evaluate_predictions([labels[i] for i in ok], probabilities, predictor.class_names,
                                [paths[i] for i in ok])
