"""The classifier head as what it is: multinomial logistic regression on frozen-backbone embeddings.

A small convex problem, so it is solved, not trained: scikit-learn's L-BFGS on the embeddings
projected to their top principal directions, for a few regularisation strengths; the strength is
chosen by cross-validation on the training photos only (a photo and its mirror image always in
the same fold), and the result folded back into one (kernel, bias) pair on the raw embedding:
probabilities = softmax(embedding @ kernel + bias), the Keras Dense layer's own form.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from threadpoolctl import threadpool_limits

STRENGTHS = tuple(float(c) for c in np.logspace(-2.5, 1.0, 8))  # C: the inverse of the regularisation strength
FOLDS = 4
COMPONENTS = 256  # top principal directions: 5x less work than 1280 dimensions, the same accuracy
MAX_ITERATIONS = 300
SCALE = 10.0  # centred vectors scaled to this mean norm, so the strengths above mean the same for every backbone
DEFAULT_STRENGTH = 0.3  # when there are too few photos to cross-validate
HEAD_FILE = "head.npz"


@dataclass(frozen=True)
class LinearHead:
    """probabilities = softmax(embedding @ kernel + bias); kernel (D, C) float32, bias (C,) float32."""

    kernel: np.ndarray
    bias: np.ndarray

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        return softmax(np.asarray(embeddings, dtype=np.float64) @ self.kernel + self.bias)

    def save(self, path: Path) -> None:
        """head.npz with arrays `kernel` and `bias`, written atomically."""
        import io

        from core.files import atomic_write

        buffer = io.BytesIO()
        np.savez(buffer, kernel=self.kernel.astype(np.float32), bias=self.bias.astype(np.float32))
        atomic_write(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> "LinearHead":
        with np.load(Path(path)) as arrays:
            return cls(arrays["kernel"], arrays["bias"])


@dataclass(frozen=True)
class Basis:
    """Centring, scaling and projection learned from the training vectors (no labels: no leak into folds)."""

    mean: np.ndarray        # (D,)
    directions: np.ndarray  # (D, k), already scaled

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.directions


def basis(x: np.ndarray, components: int = COMPONENTS) -> Basis:
    x = np.asarray(x, dtype=np.float64)  # float32 mixed with float64 falls off the fast BLAS path
    mean = x.mean(axis=0)
    centred = x - mean
    scale = SCALE / (np.sqrt((centred ** 2).sum(axis=1).mean()) + 1e-12)
    return Basis(mean, principal_directions(centred, components) * scale)


def principal_directions(x: np.ndarray, k: int) -> np.ndarray:
    """(D, k) top principal directions of centred x, by randomized SVD with one power iteration (identity if D <= k)."""
    if min(x.shape) <= k:
        return np.eye(x.shape[1])
    sketch = x @ np.random.default_rng(0).normal(size=(x.shape[1], k + 10))
    q = np.linalg.qr(x @ (x.T @ sketch))[0]
    return np.linalg.svd(q.T @ x, full_matrices=False)[2][:k].T


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def fit_softmax(z: np.ndarray, labels: np.ndarray, n_classes: int, strength: float, *,
                warm=None) -> tuple[LinearHead, object]:
    """Class-balanced multinomial logistic regression by L-BFGS: the head in z's coordinates (classes absent
    from `labels` get no probability) and the estimator, which as `warm` starts the next fit near this one."""
    model = warm if warm is not None else LogisticRegression(class_weight="balanced", max_iter=MAX_ITERATIONS,
                                                             warm_start=True)
    model.set_params(C=strength)
    with warnings.catch_warnings():  # a capped iteration count is a choice here, not a problem to report
        warnings.simplefilter("ignore")
        model.fit(z, labels)
    kernel = np.zeros((z.shape[1], n_classes))
    bias = np.full(n_classes, -np.inf)
    coef, intercept = model.coef_, model.intercept_
    if len(model.classes_) == 2:  # scikit-learn keeps one logit for two classes: split it into two
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    kernel[:, model.classes_] = coef.T
    bias[model.classes_] = intercept
    return LinearHead(kernel, bias), model


@dataclass
class HeadSearch:
    head: LinearHead                      # on raw embeddings, refitted on all training vectors
    strength: float                       # the C it picked
    tried: list[dict] = field(default_factory=list)  # one row per C: C, cv_/train/val loss and accuracy
    folds: int = 0                        # 0: too few photos to cross-validate, DEFAULT_STRENGTH used


def scores(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(log loss, accuracy) of predicted probabilities."""
    p = np.clip(probabilities[np.arange(len(labels)), labels], 1e-15, 1.0)
    return float(-np.log(p).mean()), float((probabilities.argmax(axis=1) == labels).mean())


def search_head(x: np.ndarray, labels: np.ndarray, n_classes: int, groups: np.ndarray, *,
                val: tuple[np.ndarray, np.ndarray] | None = None, seed: int = 0,
                on_try: Callable[[int, dict], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> HeadSearch:
    """Fit the head for each strength, pick the one with the lowest cross-validated loss.

    `groups` ties a photo to its mirror image (never split across folds). `val` is only scored, never
    used to choose. `on_try(i, row)` reports each strength as it is done; `should_stop` ends the search
    early with the best strength so far.
    """
    # These matrices are small: BLAS threads cost more in hand-offs than they save (5x slower measured on 2 cores).
    with threadpool_limits(1):
        return _search(x, np.asarray(labels), n_classes, groups, val, seed, on_try, should_stop)


def _search(x, labels, n_classes, groups, val, seed, on_try, should_stop) -> HeadSearch:
    projection = basis(x)
    z = projection(x)
    folds = _folds(labels, groups, seed)
    fold_models: list = [None] * len(folds)
    full_model = None
    tried, heads = [], []
    for i, strength in enumerate(STRENGTHS if folds else (DEFAULT_STRENGTH,)):
        row: dict = {"C": strength}
        if folds:
            out_of_fold = np.zeros((len(z), n_classes))
            for f, (train, test) in enumerate(folds):
                fitted, fold_models[f] = fit_softmax(z[train], labels[train], n_classes, strength,
                                                     warm=fold_models[f])
                out_of_fold[test] = fitted.probabilities(z[test])
            row["cv_loss"], row["cv_accuracy"] = scores(out_of_fold, labels)
        full, full_model = fit_softmax(z, labels, n_classes, strength, warm=full_model)
        row["loss"], row["accuracy"] = scores(full.probabilities(z), labels)
        if val is not None and len(val[1]):
            row["val_loss"], row["val_accuracy"] = scores(full.probabilities(projection(val[0])), np.asarray(val[1]))
        tried.append(row)
        heads.append(full)
        if on_try:
            on_try(i, row)
        if should_stop and should_stop():
            break
    best = min(range(len(tried)), key=lambda j: tried[j].get("cv_loss", 0.0))
    for j, row in enumerate(tried):
        row["chosen"] = j == best
    return HeadSearch(_raw(heads[best], projection), tried[best]["C"], tried, len(folds))


def _folds(labels: np.ndarray, groups: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds of whole groups; none when some class has fewer than two photos."""
    smallest = min(len(np.unique(groups[labels == c])) for c in np.unique(labels))
    n = min(FOLDS, smallest)
    if n < 2:
        return []
    return list(StratifiedGroupKFold(n, shuffle=True, random_state=seed).split(labels, labels, groups))


def _raw(head: LinearHead, projection: Basis) -> LinearHead:
    """The head in the raw embedding's coordinates: z @ W + b = x @ (P W) + (b - mean @ P W)."""
    kernel = projection.directions @ np.where(np.isfinite(head.kernel), head.kernel, 0.0)
    bias = np.where(np.isfinite(head.bias), head.bias, -1e4) - projection.mean @ kernel
    return LinearHead(kernel.astype(np.float32), bias.astype(np.float32))
