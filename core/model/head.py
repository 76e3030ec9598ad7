"""The classifier head as what it is: multinomial logistic regression on frozen-backbone embeddings.

A small convex problem, so it is solved, not trained: L-BFGS on the whole embedding, in float32, for a
path of regularisation strengths from the strongest, each started from the previous one's answer, until the
cross-validated loss rises. The strength is chosen by cross-validation on the training photos only (a photo
and its mirror image always in the same fold); the folds and the model on all photos are one problem to the
solver (their parameters side by side), so every step is two large matrix products a fold instead of ten
small ones. With many photos (more than SEARCH_ROWS vectors) the strength is chosen on a sample of them and only
the final head is solved on all. The result is one (kernel, bias) pair on the raw embedding:
probabilities = softmax(embedding @ kernel + bias), the Keras Dense layer's own form.

Nothing is projected away. With fewer vectors than dimensions the vectors are rotated onto the space they
span, which loses nothing: an L2-regularised linear model's weights always lie in that space (representer
theorem), so the answer is the full-dimensional one, found with less work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.linalg.blas import daxpy, ddot
from threadpoolctl import threadpool_limits

STRENGTHS = tuple(float(c) for c in np.logspace(-2.5, 1.0, 8))  # C: the inverse of the regularisation strength
FOLDS = 4
SCALE = 10.0  # centred vectors scaled to this mean norm, so the strengths above mean the same for every backbone
DEFAULT_STRENGTH = 0.3  # when there are too few photos to cross-validate
# Largest gradient entry at which a fit counts as solved; the chosen head is then polished to POLISH_TOLERANCE.
# Measured against fits solved to 1e-7 (bench/bench_head.py): these give the same validation predictions on
# every shared set.
TOLERANCE = 0.1
POLISH_TOLERANCE = 0.01
MAX_ITERATIONS = 500
# Above this many vectors (photos and mirror images) the strength is chosen on a sample of about this many (whole
# groups, every class in proportion) and only the final head is solved on all of them: one gradient of the search
# costs 3.2 s at 100,000 vectors and 100 classes on one thread, and every shared set has fewer.
SEARCH_ROWS = 10_000
# L-BFGS's memory (steps kept) in that final solve on all vectors. A gradient there costs 0.63 s at 100,000 vectors
# and 100 classes, the memory's vector work a few ms, so more memory is free: at 50,000 photos 30 steps took 97-100
# gradients to the same head where 10 took 119-120, and 60 no fewer than 30 (docs/scale.md). The searches keep
# lbfgs's 10: their answers on the shared sets stay as measured.
FINAL_MEMORY = 30
CHUNK_ROWS = 8192  # rows at a time where a whole temporary copy of the vectors is not needed
# The search stops once the cross-validated loss has risen this many strengths in a row: it falls to one lowest
# point and rises after it (measured on every shared set and split), and the larger strengths cost the most.
STOP_AFTER_RISES = 1
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


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Coordinates:
    """Centring, one scale, and (with fewer vectors than dimensions) the rotation onto their span: no labels used."""

    mean: np.ndarray                # (D,)
    scale: float
    directions: np.ndarray | None   # (D, r) orthonormal, or None: all D dimensions kept as they are

    def __call__(self, x: np.ndarray, rows: np.ndarray | None = None, *, overwrite: bool = False) -> np.ndarray:
        """x (or its `rows`, in that order) in these coordinates: one new array, no temporary copy of x; with
        `overwrite`, x itself where it can be (float32, every row, no rotation)."""
        x = np.asarray(x, dtype=np.float32)
        if overwrite and rows is None and self.directions is None and x.flags.writeable:
            x -= self.mean
            x *= np.float32(self.scale)
            return x
        z = x - self.mean if rows is None else x[rows]
        if rows is not None:
            z -= self.mean
        z *= np.float32(self.scale)
        return np.ascontiguousarray(z if self.directions is None else z @ self.directions)

    def raw(self, kernel: np.ndarray, bias: np.ndarray) -> LinearHead:
        """The head in raw embedding coordinates: z @ W + b = x @ (s R W) + (b - mean @ s R W)."""
        kernel = np.asarray(kernel, np.float64) * self.scale
        if self.directions is not None:
            kernel = self.directions.astype(np.float64) @ kernel
        return LinearHead(kernel.astype(np.float32), (bias - self.mean.astype(np.float64) @ kernel).astype(np.float32))


def coordinates(x: np.ndarray) -> Coordinates:
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    squares = 0.0
    for start in range(0, len(x), CHUNK_ROWS):  # the mean squared norm, a chunk at a time: no copy of x
        centred = x[start:start + CHUNK_ROWS] - mean
        squares += float(np.einsum("ij,ij->", centred, centred, dtype=np.float64))
    scale = SCALE / (float(np.sqrt(squares / max(len(x), 1))) + 1e-12)
    if len(x) >= x.shape[1]:
        return Coordinates(mean, scale, None)
    centred = x - mean
    # An orthonormal basis of the span of the centred vectors (QR is 5x faster than an SVD here and needs no rank cut:
    # a direction with no data in it just gets a zero weight).
    basis = np.linalg.qr(centred.T.astype(np.float64))[0]
    return Coordinates(mean, scale, np.ascontiguousarray(basis, dtype=np.float32))


class Problems:
    """Class-balanced multinomial logistic regressions on the same vectors, one per mask of rows, solved as one.

    Problem p minimises C_p * sum over its rows of w_i * cross-entropy_i + |W_p|^2 / 2, with w the "balanced"
    class weights of its rows (mean 1): scikit-learn's objective. In this form the gradient at the previous
    strength's answer is as large as the weights themselves, so one tolerance fits every C. A class absent
    from a problem's rows gets no probability from it.
    """

    def __init__(self, z: np.ndarray, labels: np.ndarray, n_classes: int, masks: np.ndarray):
        self.z = np.ascontiguousarray(z, dtype=np.float32)
        self.n_classes, self.count = n_classes, len(masks)
        self.rows = masks.sum(axis=1)
        counts = np.stack([np.bincount(labels[m], minlength=n_classes) for m in masks])  # (P, K)
        self.present = counts > 0
        per_class = np.where(self.present, self.rows[:, None] / (np.maximum(counts, 1) * self.present.sum(axis=1, keepdims=True)), 0.0)
        self.weights = np.ascontiguousarray((per_class[:, labels] * masks).T, dtype=np.float32)  # (n, P), mean 1 per problem
        self.absent = np.where(self.present, 0.0, -1e30).astype(np.float32)  # (P, K) added to the logits
        self.labels = np.asarray(labels)
        # Runs of rows that belong to the same problems: each run's rows are multiplied only by the weights of the
        # problems that use them (a fold's own rows are not, which saves a fifth of the work of the C search).
        cuts = np.flatnonzero((masks[:, 1:] != masks[:, :-1]).any(axis=0)) + 1
        self.blocks = [(slice(a, b), np.flatnonzero(masks[:, a])) for a, b in zip([0, *cuts], [*cuts, len(labels)])
                       if masks[:, a].any()]

    @property
    def size(self) -> int:
        return (self.z.shape[1] + 1) * self.count * self.n_classes

    def unpack(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(W (d, P, K), b (P, K)) float32 from the solver's flat float64 vector."""
        d, P, K = self.z.shape[1], self.count, self.n_classes
        return (params[:d * P * K].reshape(d, P, K).astype(np.float32),
                params[d * P * K:].reshape(P, K).astype(np.float32))

    def _loss_and_gradient(self, params: np.ndarray, strengths: np.ndarray) -> tuple[float, np.ndarray]:
        W, b = self.unpack(params)
        d, K = W.shape[0], self.n_classes
        grad_w, grad_b = W.copy(), np.zeros_like(b)
        loss = 0.5 * float(np.einsum("dpk,dpk->", W, W, dtype=np.float64))
        scaled = self.weights * strengths.astype(np.float32)  # (n, P)
        for rows, active in self.blocks:
            z, labels, weights = self.z[rows], self.labels[rows], scaled[rows][:, active]
            logits = (z @ W[:, active].reshape(d, -1)).reshape(len(z), len(active), K)
            logits += b[active] + self.absent[active]
            logits -= logits.max(axis=2, keepdims=True)
            true = np.take_along_axis(logits, labels[:, None, None], axis=2)[:, :, 0]
            np.exp(logits, out=logits)
            total = logits.sum(axis=2)
            loss -= float(np.einsum("na,na->", weights, true - np.log(total), dtype=np.float64))
            residual = logits  # the probabilities minus the one-hot labels, times each row's weight and C
            residual *= (weights / total)[:, :, None]
            residual[np.arange(len(z)), :, labels] -= weights
            grad_w[:, active] += (z.T @ residual.reshape(len(z), -1)).reshape(d, len(active), K)
            grad_b[active] += residual.sum(axis=0)
        return loss, np.concatenate([grad_w.ravel(), grad_b.ravel()]).astype(np.float64)

    def solve(self, strengths, start: np.ndarray | None = None, tolerance: float | None = None,
              memory: int = 10) -> np.ndarray:
        """The parameters minimising every problem's objective at once (C: one, or one per problem), L-BFGS from
        `start` (default zeros) keeping the last `memory` steps."""
        start = np.zeros(self.size) if start is None else start
        strengths = np.broadcast_to(np.asarray(strengths, np.float64), (self.count,))
        return lbfgs(lambda params: self._loss_and_gradient(params, strengths), start,
                     TOLERANCE if tolerance is None else tolerance, MAX_ITERATIONS, memory)

    def problem(self, params: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
        """(kernel (d, K), bias (K,)) of problem p; an absent class gets a bias that rules it out."""
        W, b = self.unpack(params)
        return W[:, p], np.where(self.present[p], b[p], -1e4)


def lbfgs(fun: Callable[[np.ndarray], tuple[float, np.ndarray]], start: np.ndarray, tolerance: float,
          max_iterations: int, memory: int = 10) -> np.ndarray:
    """The minimum of a smooth convex `fun` (returning value and gradient), by L-BFGS from `start`: done when the
    largest gradient entry is at most `tolerance`. Armijo backtracking from the unit step (with an L2 penalty the
    curvature is positive, so no Wolfe search is needed). scipy's L-BFGS-B costs 12 ms a step here on one thread,
    and ten times that on two: this costs 4 ms, in place, with the last `memory` steps in two (memory, N) arrays."""
    x = np.array(start, dtype=np.float64)
    f, g = fun(x)
    S, Y = np.empty((memory, len(x))), np.empty((memory, len(x)))
    rho, alpha = np.empty(memory), np.empty(memory)
    s, y = np.empty(len(x)), np.empty(len(x))
    count = newest = 0
    for _ in range(max_iterations):
        if np.abs(g).max() <= tolerance:
            break
        q = g.copy()  # q becomes the step's negative: the inverse-Hessian estimate times the gradient
        order = [(newest - i) % memory for i in range(count)]
        for i in order:
            alpha[i] = rho[i] * ddot(S[i], q)
            q = daxpy(Y[i], q, a=-alpha[i])
        q *= 1.0 / (rho[newest] * ddot(Y[newest], Y[newest])) if count else 1.0 / max(1.0, float(np.sqrt(ddot(g, g))))
        for i in reversed(order):
            q = daxpy(S[i], q, a=alpha[i] - rho[i] * ddot(Y[i], q))
        slope = -ddot(g, q)
        if slope >= 0:  # not a descent direction (rounding): start the memory again from the gradient
            q, slope, count = g.copy(), -ddot(g, g), 0
        step = 1.0
        while True:
            new = daxpy(q, x.copy(), a=-step)
            f_new, g_new = fun(new)
            if f_new <= f + 1e-4 * step * slope:  # (False for NaN)
                break
            step *= 0.5
            if step < 1e-10:  # no step lowers the objective: solved as far as rounding allows
                return x
        np.subtract(new, x, out=s)
        np.subtract(g_new, g, out=y)
        sy = ddot(s, y)
        if sy > 1e-10 * ddot(s, s):
            newest = (newest + 1) % memory if count else 0
            S[newest], Y[newest], rho[newest] = s, y, 1.0 / sy
            count = min(count + 1, memory)
        x, f, g = new, f_new, g_new
    return x


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
                should_stop: Callable[[], bool] | None = None, threads: int = 1,
                overwrite_x: bool = False) -> HeadSearch:
    """Fit the head for each strength, pick the one with the lowest cross-validated loss.

    `groups` ties a photo to its mirror image (never split across folds). `val` is only scored, never
    used to choose. `on_try(i, row)` reports each strength as it is done; `should_stop` ends the search
    early with the best strength so far. `threads`: BLAS threads (see `_threads`). `overwrite_x`: x may be
    changed in place (as scipy's `overwrite_a`), which spares a copy of it when there are many vectors.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    with _threads(threads):
        if len(labels) <= SEARCH_ROWS:
            return _search(x, labels, n_classes, groups, val, seed, on_try, should_stop)
        return _sampled_search(x, labels, n_classes, groups, val, seed, on_try, should_stop, overwrite_x)


def _sampled_search(x, labels, n_classes, groups, val, seed, on_try, should_stop, overwrite_x=False) -> HeadSearch:
    """The strength chosen on a sample, the head solved on every vector at that strength (`tried` and its
    validation scores are the sample's; stopped early, the sample's head is the answer).

    C carries unchanged, as it does from the search's folds (three quarters of the vectors) to the final head. The solve on all vectors starts from the sample's head at the strength times (all vectors / sampled ones):
    the sum-form objective on the sample then weighs its data as the full one does, so the start is the full
    answer up to the sample's noise and the costly full-size solve needs few steps.

    The final tolerance grows with the vectors: the objective is a sum over them, so its gradient does too, and
    POLISH_TOLERANCE times (all / SEARCH_ROWS) asks the same of the mean gradient as POLISH_TOLERANCE asks of
    SEARCH_ROWS vectors. It also stays above the rounding of the float32 sums, which grows with the vectors: at
    50,000 vectors the largest gradient entry would not go below about 0.03, and the solve spent two thirds of its
    gradients on line searches that rounding made fail (docs/scale.md)."""
    sample = _sample(labels, groups, SEARCH_ROWS, seed)
    found = _search(np.asarray(x)[sample], labels[sample], n_classes, groups[sample], val, seed, on_try, should_stop)
    if should_stop and should_stop():
        return found
    coords = coordinates(x)
    z = coords(x, overwrite=overwrite_x)  # at 50,000 photos a copy of x would be 400 MB
    full = Problems(z, labels, n_classes, np.ones((1, len(labels)), bool))
    part = Problems(z[sample], labels[sample], n_classes, np.ones((1, len(sample)), bool))
    start = part.solve(found.strength * len(labels) / len(sample), _in_coordinates(found.head, coords))
    params = full.solve(found.strength, start, POLISH_TOLERANCE * len(labels) / SEARCH_ROWS, FINAL_MEMORY)
    return HeadSearch(coords.raw(*full.problem(params, 0)), found.strength, found.tried, found.folds)


def refit_head(head: LinearHead, x: np.ndarray, labels: np.ndarray, n_classes: int, strength: float, *,
               overwrite_x: bool = False) -> LinearHead:
    """`head` solved again on more vectors (a run's training and validation photos) at the strength its search
    chose, started from it. C carries unchanged, as it does from the search's folds to its final head, and the start
    is close to the answer, so the solve takes few steps; its tolerance grows with the vectors as the sampled
    search's final solve does. `overwrite_x` as in `search_head`."""
    labels = np.asarray(labels)
    with _threads():
        coords = coordinates(x)
        problem = Problems(coords(x, overwrite=overwrite_x), labels, n_classes, np.ones((1, len(labels)), bool))
        params = problem.solve(strength, _in_coordinates(head, coords),
                               POLISH_TOLERANCE * max(1.0, len(labels) / SEARCH_ROWS), FINAL_MEMORY)
    return coords.raw(*problem.problem(params, 0))


def _in_coordinates(head: LinearHead, coords: Coordinates) -> np.ndarray:
    """A raw-embedding head as a one-problem solver's flat parameters in `coords` (the inverse of Coordinates.raw)."""
    kernel = head.kernel.astype(np.float64) / coords.scale
    weights = kernel if coords.directions is None else coords.directions.T.astype(np.float64) @ kernel
    return np.concatenate([weights.ravel(), head.bias + coords.mean.astype(np.float64) @ head.kernel.astype(np.float64)])


def _sample(labels: np.ndarray, groups: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """Row indices of about `rows` rows: whole groups, each class's share kept (and at least FOLDS groups of it)."""
    rng = np.random.default_rng(seed)
    group_ids, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    share = rows / len(labels)
    kept = np.zeros(len(group_ids), dtype=bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels[first] == label))
        kept[members[:max(int(np.ceil(share * len(members))), min(len(members), FOLDS))]] = True
    return np.flatnonzero(kept[inverse.ravel()])


def _threads(threads: int = 1):
    """One BLAS thread by default: on two cores a second thread made the head slower, not faster. The solver's steps are small
    vector operations between two matrix products, and OpenBLAS's threads spin between calls: scipy's L-BFGS-B took
    10x longer a step with two threads than with one, and the whole groceries25 search took 14 s with two and
    10 s with one on an idle machine (far worse under load, when the spinning thread waits for a core)."""
    return threadpool_limits(threads)


def _search(x, labels, n_classes, groups, val, seed, on_try, should_stop) -> HeadSearch:
    coords = coordinates(x)
    folds = _folds(labels, groups, seed)
    # Rows in fold order, so each fold's rows are one block of the problems (Problems.blocks); the head does not
    # depend on the order.
    fold_of = np.zeros(len(labels), dtype=int)
    for f, (_, test) in enumerate(folds):
        fold_of[test] = f
    order = np.argsort(fold_of, kind="stable")
    z, labels, fold_of = coords(x, order), labels[order], fold_of[order]
    folds = [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(len(folds))]
    masks = np.stack([fold_of != f for f in range(len(folds))] + [np.ones(len(z), bool)])
    problems = Problems(z, labels, n_classes, masks)
    val_z = coords(val[0]) if val is not None and len(val[1]) else None
    params = previous = None
    tried, solutions, rises = [], [], 0
    for i, strength in enumerate(STRENGTHS if folds else (DEFAULT_STRENGTH,)):
        # The answer moves smoothly with log C: starting from the straight line through the last two halves the steps.
        start = params if previous is None else 2 * params - previous
        previous, params = params, problems.solve(strength, start)
        row = _scored(problems, params, strength, folds, labels, val_z, val)
        tried.append(row)
        solutions.append(params)
        if on_try:
            on_try(i, row)
        if should_stop and should_stop():
            break
        rises = rises + 1 if i and row.get("cv_loss", 0.0) > tried[-2].get("cv_loss", 0.0) else 0
        if rises >= STOP_AFTER_RISES:  # past the best: the cross-validated loss only rises from here on
            break
    best = min(range(len(tried)), key=lambda j: tried[j].get("cv_loss", 0.0))
    for j, row in enumerate(tried):
        row["chosen"] = j == best
    full = Problems(z, labels, n_classes, masks[-1:])
    polished = full.solve(tried[best]["C"],
                          np.concatenate(_take(problems, solutions[best], len(folds))), POLISH_TOLERANCE)
    return HeadSearch(coords.raw(*full.problem(polished, 0)), tried[best]["C"], tried, len(folds))


def _take(problems: Problems, params: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Problem p's parameters, flat, in a one-problem solver's layout."""
    W, b = problems.unpack(params)
    return W[:, p].ravel().astype(np.float64), b[p].astype(np.float64)


def _scored(problems: Problems, params: np.ndarray, strength: float, folds, labels, val_z, val) -> dict:
    """One strength's row: C, cross-validated (cv_), training and validation (val_) loss and accuracy."""
    row: dict = {"C": strength}

    def probabilities(p: int, z: np.ndarray) -> np.ndarray:
        kernel, bias = problems.problem(params, p)
        return softmax((z @ kernel).astype(np.float64) + bias)

    if folds:
        out_of_fold = np.zeros((len(labels), problems.n_classes))
        for f, (_, test) in enumerate(folds):
            contiguous = len(test) and test[-1] - test[0] + 1 == len(test)  # (the search puts each fold's rows together)
            out_of_fold[test] = probabilities(f, problems.z[test[0]:test[-1] + 1] if contiguous else problems.z[test])
        row["cv_loss"], row["cv_accuracy"] = scores(out_of_fold, labels)
    row["loss"], row["accuracy"] = scores(probabilities(problems.count - 1, problems.z), labels)
    if val_z is not None:
        kernel, bias = problems.problem(params, problems.count - 1)
        row["val_loss"], row["val_accuracy"] = scores(softmax(val_z.astype(np.float64) @ kernel + bias),
                                                      np.asarray(val[1]))
    return row


def out_of_fold(z: np.ndarray, labels: np.ndarray, n_classes: int, fold_of: np.ndarray,
                strengths: Callable[[np.ndarray], np.ndarray], *, in_place: bool = False) -> np.ndarray:
    """(n, K) probabilities of each vector from the model fitted on the other folds, all folds solved as one.
    `in_place`: z's rows are put in fold order in z itself while it works, and back after (a reordered copy of z
    is 250 MB at 50,000 photos)."""
    folds = np.unique(fold_of)
    order = np.argsort(fold_of, kind="stable")  # each fold's rows together: one block (Problems.blocks)
    fold_of = fold_of[order]
    z = np.asarray(z)
    if in_place:
        reorder_rows(z, order)
    try:
        problems = Problems(z if in_place else z[order], np.asarray(labels)[order], n_classes,
                            np.stack([fold_of != f for f in folds]))
        probabilities = np.zeros((len(z), n_classes))
        with _threads():
            params = problems.solve(strengths(problems.rows))
            for p, f in enumerate(folds):
                kernel, bias = problems.problem(params, p)
                rows = order[fold_of == f]
                probabilities[rows] = softmax((problems.z[fold_of == f] @ kernel).astype(np.float64) + bias)
    finally:
        if in_place:
            reorder_rows(z, np.argsort(order))
    return probabilities


def reorder_rows(a: np.ndarray, order: np.ndarray) -> None:
    """a[:] = a[order] for a permutation `order`, in a itself: each cycle of the permutation moved a row at a time,
    with one row held aside, so no second copy of a is made."""
    moved = np.zeros(len(order), bool)
    for start in np.flatnonzero(order != np.arange(len(order))):
        if moved[start]:
            continue
        held, j = a[start].copy(), start
        while (k := order[j]) != start:
            a[j] = a[k]
            moved[j], j = True, k
        a[j] = held
        moved[j] = True


def _folds(labels: np.ndarray, groups: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds of whole groups as (train, test) row indices; none when some class has fewer than two photos."""
    classes = np.unique(labels)
    smallest = min(len(np.unique(groups[labels == c])) for c in classes)
    n = min(FOLDS, smallest)
    if n < 2:
        return []
    fold_of = stratified_folds(labels, groups, n, seed)
    return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(n)]


def stratified_folds(labels: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold number per row: each class's groups dealt round the folds in a seeded order, a group never split."""
    rng = np.random.default_rng(seed)
    group_ids, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    group_fold = np.empty(len(group_ids), dtype=int)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels[first] == label))
        group_fold[members] = (np.arange(len(members)) + rng.integers(folds)) % folds
    return group_fold[inverse.ravel()]
