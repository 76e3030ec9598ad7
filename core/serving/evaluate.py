"""Honest numbers for a model: accuracy, per-class precision/recall/F1, confusion, mistakes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from core.store.errors import StoreError
from core.store.names import name_key, validate_name, visible


@dataclass
class Evaluation:
    class_names: list[str]
    n: int
    accuracy: float
    per_class: list[dict]            # class, precision, recall, f1, support
    confusion: list[list[int]]       # rows = true class, columns = predicted class
    misclassified: list[dict]        # path, true, predicted, confidence; most confident mistakes first
    # with photos of other kinds: auroc, caught (share of them flagged), false_alarms (share of the test photos
    # flagged), both at the run's novelty threshold in force
    unknown: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Evaluation":
        return cls(**values)


def evaluate_predictions(y_true: Sequence[int], probabilities: np.ndarray, class_names: list[str],
                         paths: Sequence[Path | str] | None = None) -> Evaluation:
    """Metrics from true labels and predicted probabilities (one row per photo)."""
    # imported here: sklearn costs the app's server a second at start, and only training and the CLI evaluate
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=int)
    probabilities = np.asarray(probabilities).reshape(len(y_true), len(class_names))
    y_pred = probabilities.argmax(axis=1) if len(y_true) else np.zeros(0, int)
    labels = np.arange(len(class_names))
    if len(y_true):
        confusion = confusion_matrix(y_true, y_pred, labels=labels)
        precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                                         zero_division=0.0)
    else:  # sklearn refuses no photos at all: nothing counted, nothing scored
        confusion = np.zeros((len(labels), len(labels)), dtype=int)
        precision = recall = f1 = support = np.zeros(len(labels))
    per_class = [{"class": name, "precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                  "support": int(support[i])} for i, name in enumerate(class_names)]
    wrong = np.nonzero(y_pred != y_true)[0]
    wrong = wrong[np.argsort(-probabilities[wrong, y_pred[wrong]])] if len(wrong) else wrong
    misclassified = [
        {"path": str(paths[i]) if paths is not None else None, "true": class_names[y_true[i]],
         "predicted": class_names[y_pred[i]], "confidence": float(probabilities[i, y_pred[i]])}
        for i in wrong
    ]
    accuracy = float((y_pred == y_true).mean()) if len(y_true) else 0.0
    return Evaluation(list(class_names), int(len(y_true)), accuracy, per_class, confusion.tolist(), misclassified)


def most_confused(class_names: list[str], confusion: list[list[int]], limit: int = 10) -> list[dict]:
    """The mix-ups that cost most, largest first: real class, what the model said, photos, and their share of the
    real class's photos. With 100 classes a full matrix is 10,000 cells; these few rows say where it goes wrong."""
    matrix = np.asarray(confusion, dtype=int).reshape(len(class_names), len(class_names))
    off = matrix * (1 - np.eye(len(class_names), dtype=int))
    real, said = np.nonzero(off)
    order = np.lexsort((said, real, -off[real, said]))[:limit]  # ties: in class order
    totals = matrix.sum(axis=1)
    return [{"real": class_names[r], "said": class_names[s], "photos": int(off[r, s]),
             "share": float(off[r, s] / totals[r])} for r, s in zip(real[order], said[order])]


def image_folder(folder: Path, class_names: list[str] | None = None) -> tuple[list[Path], list[int], list[str]]:
    """Files of an ImageFolder tree with labels. Folder names go through the app's name rules (a folder whose name
    cannot be a class is refused, two that are one name are refused); with class_names given, folders are matched
    to them as the app compares names (case, Unicode form, invisible characters aside)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder.")
    named = _class_folders(folder)
    names = class_names or sorted(named, key=str.lower)
    keys = {name_key(name): name for name in names}
    unknown = [name for name in named if name_key(name) not in keys]
    if unknown:
        raise ValueError(f"{folder} has folders the model does not know: {', '.join(map(visible, unknown))} "
                         f"(it knows {', '.join(map(visible, names))}).")
    by_label = {keys[name_key(name)]: directory for name, directory in named.items()}
    paths, labels = [], []
    for label, name in enumerate(names):
        directory = by_label.get(name)
        for f in sorted(directory.glob("*")) if directory else []:
            if f.is_file() and not f.name.startswith("."):
                paths.append(f)
                labels.append(label)
    if not paths:
        raise ValueError(f"{folder} holds no photos in class folders.")
    return paths, labels, names


def _class_folders(folder: Path) -> dict[str, Path]:
    """Class name -> its folder, each name as the app would write it."""
    named: dict[str, Path] = {}
    for directory in sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")):
        try:
            name = validate_name(directory.name)
        except StoreError as exc:
            raise ValueError(f"The folder '{visible(directory.name)}' in {folder} cannot be a class: {exc}") from None
        twin = next((other for other in named if name_key(other) == name_key(name)), None)
        if twin is not None:
            raise ValueError(f"The folders '{visible(named[twin].name)}' and '{visible(directory.name)}' in {folder} "
                             "are one class name to the app; merge them or rename one.")
        named[name] = directory
    return named


def evaluate_folder(run_dir: Path, folder: Path, unknown_dir: Path | None = None) -> Evaluation:
    """Evaluate a saved run on an ImageFolder tree whose class folders match the run's labels; with `unknown_dir`
    (any tree of photos of other kinds), also how its novelty check tells those from the test photos."""
    from core.model.novelty import NoveltySettings, auroc, flagged_share
    from core.serving.predictor import load_predictor

    predictor = load_predictor(run_dir)
    paths, labels, _ = image_folder(folder, predictor.class_names)
    probabilities, novelty, ok = predictor.score_paths(paths)
    evaluation = evaluate_predictions([labels[i] for i in ok], probabilities, predictor.class_names,
                                      [paths[i] for i in ok])
    if unknown_dir is not None:
        settings = NoveltySettings.load(run_dir)
        if novelty is None or settings is None:
            raise ValueError(f"{run_dir} has no novelty check (runs trained before it have none).")
        _, unknown, found = predictor.score_paths(photo_files(Path(unknown_dir)))
        if not found:
            raise ValueError(f"{unknown_dir} holds no readable photos.")
        evaluation.unknown = {"auroc": auroc(novelty, unknown), "caught": flagged_share(unknown, settings.threshold),
                              "false_alarms": flagged_share(novelty, settings.threshold),
                              "threshold": settings.threshold, "photos": len(found)}
    return evaluation


def photo_files(folder: Path) -> list[Path]:
    """Every file under a folder, at any depth (hidden ones left out), in a fixed order."""
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder.")
    return sorted(f for f in folder.rglob("*")
                  if f.is_file() and not any(part.startswith(".") for part in f.relative_to(folder).parts))
