"""Is a photo like anything the model was trained on? A novelty score for every prediction.

Softmax always picks a class, however foreign the photo. The novelty score looks at the embedding
the model already makes and asks how far it is from the run's training photos:

    novelty = 1 - cos(embedding, its k-th nearest reference vector)

where the reference is the training photos' embeddings (each photo and its mirror image), unit
length, kept as float16 (a random subsample when a project is so large that they would pass
`MAX_REFERENCE_BYTES` or `MAX_REFERENCE_ROWS`). The k-th nearest rather than the nearest: one stray
training photo does not make its whole neighbourhood familiar. The threshold is set on scores of photos of the run's own
classes that the reference did not hold (its validation photos, and up to 2,000 training photos each
scored without its own rows), so that such photos are flagged at most `FALSE_ALARMS` of the time
with 95 % confidence (measured: the plain 5 % quantile of 619 validation photos flagged 6.1 % of 830
unseen ones). The user may move it; the value in force is kept in the run folder (`novelty.json`).

Measured in bench/bench_novelty.py: on photos of other kinds it separates far better than the top
probability (AUROC 0.99-1.00 against 0.80-0.94); photos of a *related* kind the model has never
seen are much harder, and the Results page says so with a figure measured on the project itself
(each class hidden from the reference in turn).
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from threadpoolctl import ThreadpoolController

from core.files import atomic_write

NOVELTY_FILE = "novelty.npz"          # reference (R, D) float16 unit vectors
NOVELTY_SETTINGS = "novelty.json"     # the threshold in force and what the check measured
K = 5
FALSE_ALARMS = 0.05                   # at most this share of unseen photos of the run's own classes flagged
CONFIDENCE_Z = 1.0                    # ... one standard error of the share measured below it (84 % one-sided)
MAX_REFERENCE_BYTES = 24 * 2**20      # 50,000 photos of a 1280-wide embedding would be 244 MB as float16 pairs
# ... and at most this many rows: one photo is scored in about 1 ms per 1,000 rows (one core), and the live webcam
# scores every frame. Measured on groceries with 5 classes held out: 1,024 rows lose 0.04-0.07 AUROC on them,
# 4,096 rows none; photos of other kinds are told apart as well by any of these sizes.
MAX_REFERENCE_ROWS = 4096
SEED = 0
_BLAS = ThreadpoolController()  # made once: threadpool_limits() scans every loaded library, 2 ms each call
LEFT_OUT_PHOTOS = 2000                # training photos scored without themselves, to set the threshold
# What the check did on photo sets no run here has seen (bench/bench_novelty.py, EfficientNet-Lite0, the default
# threshold), for the Results page to quote with its reference named.
MEASURED_ELSEWHERE = ("99 to 100 in our tests (a model of 5 kinds of flowers shown grocery photos; a model of 25 "
                      "groceries shown photos of flowers, ants and bees)")


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class NoveltyReference:
    """What the score compares a photo's embedding with: training embeddings, unit length, and (while training)
    their classes."""

    vectors: np.ndarray   # (R, D) float16, unit rows
    labels: np.ndarray | None = None   # (R,) class index of each row; not kept in the run folder
    k: int = K
    sources: np.ndarray | None = None  # (R,) the training photo each row comes from; not kept either

    def __post_init__(self):
        # widened once: numpy multiplies float16 slowly, and a live webcam scores every frame
        object.__setattr__(self, "_wide", np.asarray(self.vectors, dtype=np.float32).T.copy())

    def scores(self, embeddings: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
        """(N,) novelty of (N, D) embeddings; `keep` (R,) bool restricts the reference (a class hidden)."""
        if len(embeddings) == 0:
            return np.zeros(0, np.float32)
        with _BLAS.limit(limits=1, user_api="blas"):  # BLAS threads fighting the backbone's: 8x slower (measured)
            similarity = unit(embeddings) @ (self._wide if keep is None else self._wide[:, keep])
        k = min(self.k, similarity.shape[1])
        kth = np.partition(similarity, similarity.shape[1] - k, axis=1)[:, similarity.shape[1] - k]
        return (1.0 - kth).astype(np.float32)

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, reference=self.vectors.astype(np.float16))
        atomic_write(Path(path), buffer.getvalue())


def most_reference_rows(feature_dim: int, *, max_bytes: int = MAX_REFERENCE_BYTES, k: int = K) -> int:
    """The most rows a reference of `feature_dim`-wide embeddings keeps (MAX_REFERENCE_ROWS, or fewer where they
    would pass `max_bytes` as float16)."""
    return max(k, min(MAX_REFERENCE_ROWS, max_bytes // (2 * feature_dim)))


def build_reference(views: Sequence[np.ndarray], labels: np.ndarray, *, max_bytes: int = MAX_REFERENCE_BYTES,
                    k: int = K) -> NoveltyReference:
    """The reference from the training photos' embeddings, one array per view (as is, mirrored), rows aligned
    with `labels`; a random subsample of rows when all of them would pass `max_bytes` as float16."""
    n, total = len(labels), len(labels) * len(views)
    most = most_reference_rows(np.shape(views[0])[1], max_bytes=max_bytes, k=k)
    rows = np.sort(np.random.default_rng(SEED).choice(total, most, replace=False)) if total > most else np.arange(total)
    # The chosen rows gathered view by view: the views joined whole would be a copy of every training vector (400 MB
    # at 50,000 photos) only to keep a sample of them.
    vectors = np.concatenate([np.asarray(v)[rows[(rows >= i * n) & (rows < (i + 1) * n)] - i * n]
                              for i, v in enumerate(views)])
    row_labels = np.tile(np.asarray(labels, dtype=np.int32), len(views))[rows]
    return NoveltyReference(unit(vectors).astype(np.float16), row_labels, k, np.tile(np.arange(n), len(views))[rows])


@dataclass
class NoveltySettings:
    """novelty.json: the threshold in force, the one the validation photos suggest, and what was measured."""

    threshold: float                      # in force: a photo scoring above it is "not one of your classes"
    suggested: float                      # keeps false alarms within FALSE_ALARMS (95 % confidence)
    false_alarm_target: float = FALSE_ALARMS
    val_scores: list[float] = field(default_factory=list)        # sorted: the validation photos' scores
    hidden_scores: list[float] = field(default_factory=list)     # photos scored with their whole class hidden
    k: int = K
    left_out_scores: list[float] = field(default_factory=list)   # training photos, each without its own rows

    @property
    def own_scores(self) -> list[float]:
        """Scores of photos of the run's own classes that the reference did not hold: what any threshold flags."""
        return self.val_scores + self.left_out_scores

    def false_alarms(self, threshold: float | None = None) -> float | None:
        """Share of photos of the run's own classes (unseen by the reference) flagged at a threshold."""
        return flagged_share(self.own_scores, self.threshold if threshold is None else threshold)

    def caught_hidden(self, threshold: float | None = None) -> float | None:
        """Share of photos flagged when the reference lacks their class: a related kind never seen."""
        return flagged_share(self.hidden_scores, self.threshold if threshold is None else threshold)

    def threshold_for(self, false_alarms: float) -> float:
        """The threshold that flags this share of the photos of the run's own classes."""
        return threshold_for(np.asarray(self.own_scores), false_alarms)

    def save(self, run_dir: Path) -> None:
        atomic_write(Path(run_dir) / NOVELTY_SETTINGS, json.dumps(asdict(self), indent=1).encode())

    @classmethod
    def load(cls, run_dir: Path) -> "NoveltySettings | None":
        """The run's settings (checked: core.store.run_folder), or None for a run without a novelty check."""
        from core.store.run_folder import read_novelty_settings

        if not (Path(run_dir) / NOVELTY_SETTINGS).exists():
            return None
        values = read_novelty_settings(run_dir)
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


def flagged_share(scores: Sequence[float], threshold: float) -> float | None:
    scores = np.asarray(scores, dtype=np.float64)
    return float((scores > threshold).mean()) if len(scores) else None


def threshold_for(scores: np.ndarray, false_alarms: float = FALSE_ALARMS) -> float:
    """The score that a share `false_alarms` of `scores` exceed (an unreachable 2.0 when there are none)."""
    if len(scores) == 0:
        return 2.0  # 1 - cos never passes 2: nothing flagged until the run has validation photos
    return float(np.quantile(np.asarray(scores, dtype=np.float64), 1.0 - false_alarms, method="higher"))


def confident_share(target: float, n: int) -> float:
    """The share of n validation photos to flag so that the share of all such photos flagged stays within
    `target` with 95 % confidence (0 when n is too small to promise it)."""
    return max(0.0, target - CONFIDENCE_Z * float(np.sqrt(target * (1 - target) / max(n, 1))))


def hidden_class_scores(reference: NoveltyReference, val_embeddings: np.ndarray, val_labels: np.ndarray) -> np.ndarray:
    """Each validation photo scored against the reference without its own class: how a related kind of thing the
    model never saw would score (none when there are fewer than two classes in the reference)."""
    val_labels = np.asarray(val_labels)
    out = np.zeros(len(val_labels), np.float32)
    for c in np.unique(val_labels):
        keep = reference.labels != c
        if keep.sum() < reference.k:
            return np.zeros(0, np.float32)
        rows = val_labels == c
        out[rows] = reference.scores(val_embeddings[rows], keep)
    return out


def left_out_scores(reference: NoveltyReference, photos: np.ndarray, which: np.ndarray) -> np.ndarray:
    """Training photos (`which`: their indices, `photos`: their embeddings) each scored against the reference
    without the rows made from it (it and its mirror image): as an unseen photo of its class would score.
    Measured on the shared sets: the same 95th percentile as the validation photos', within 0.01."""
    out = np.zeros(len(which), np.float32)
    for start in range(0, len(which), 256):
        rows = slice(start, start + 256)
        similarity = unit(photos[rows]) @ reference._wide
        similarity[reference.sources[None, :] == which[rows, None]] = -np.inf
        out[rows] = 1 - np.partition(similarity, similarity.shape[1] - reference.k, axis=1)[:, -reference.k]
    return out


def fit_novelty(train_views: Sequence[np.ndarray], train_labels: np.ndarray, val_embeddings: np.ndarray,
                val_labels: np.ndarray, *, k: int = K) -> tuple[NoveltyReference, NoveltySettings]:
    """The reference from the training photos; the threshold from the validation photos and from training photos
    each left out of the reference (many more of them: a firmer threshold, even for a run with few validation
    photos)."""
    train_labels = np.asarray(train_labels)
    reference = build_reference(train_views, train_labels, k=k)
    rng = np.random.default_rng(SEED)
    which = np.sort(rng.choice(len(train_labels), min(LEFT_OUT_PHOTOS, len(train_labels)), replace=False))
    plain = np.asarray(train_views[0])[which]
    val_scores = np.sort(reference.scores(val_embeddings))
    left_out = np.sort(left_out_scores(reference, plain, which)) if len(reference.vectors) > 2 * k else np.zeros(0)
    own = np.concatenate([val_scores, left_out])
    suggested = threshold_for(own, confident_share(FALSE_ALARMS, len(own)))
    hidden = hidden_class_scores(reference, np.concatenate([np.asarray(val_embeddings).reshape(-1, plain.shape[1]),
                                                            plain]),
                                 np.concatenate([np.asarray(val_labels, dtype=int), train_labels[which]]))
    rounded = lambda scores: [round(float(v), 5) for v in np.sort(scores)]  # noqa: E731
    return reference, NoveltySettings(suggested, suggested, FALSE_ALARMS, rounded(val_scores), rounded(hidden), k,
                                      rounded(left_out))


def save_novelty(run_dir: Path, reference: NoveltyReference, settings: NoveltySettings) -> None:
    """novelty.npz then novelty.json (its presence says the check is complete)."""
    reference.save(Path(run_dir) / NOVELTY_FILE)
    settings.save(run_dir)


def load_novelty(run_dir: Path, feature_dim: int | None = None) -> tuple[NoveltyReference, NoveltySettings] | None:
    """The run's novelty check (checked against the run-folder contract; D = `feature_dim` when given), or None for
    a run without one."""
    from core.store.run_folder import read_novelty_reference

    run_dir = Path(run_dir)
    settings = NoveltySettings.load(run_dir)
    if settings is None or not (run_dir / NOVELTY_FILE).exists():
        return None
    return NoveltyReference(read_novelty_reference(run_dir, feature_dim), None, settings.k), settings


def set_threshold(run_dir: Path, threshold: float) -> NoveltySettings:
    """Put a new threshold in force for a run (kept in its folder for every page, the CLI and exports' metadata)."""
    settings = NoveltySettings.load(run_dir)
    if settings is None:
        raise FileNotFoundError(f"{run_dir} has no novelty check ({NOVELTY_SETTINGS}).")
    settings.threshold = float(threshold)
    settings.save(run_dir)
    return settings


def auroc(known: Sequence[float], unknown: Sequence[float]) -> float | None:
    """Chance that a photo of an unknown kind scores above one of a known class (ties count half)."""
    from sklearn.metrics import roc_auc_score  # here: the server opens this module, only evaluation needs sklearn

    if not len(known) or not len(unknown):
        return None
    truth = np.r_[np.zeros(len(known)), np.ones(len(unknown))]
    return float(roc_auc_score(truth, np.r_[np.asarray(known, np.float64), np.asarray(unknown, np.float64)]))


def novelty_output(pooled, reference: NoveltyReference):
    """The Keras tensor (N,) of the same score on the classifier's pooled embedding, from built-in layers and ops
    only (no Lambda, no custom class): the model loads with safe_mode and converts to TFLite (TOPK_V2)."""
    import keras

    similarity = keras.layers.Dense(len(reference.vectors), use_bias=False, name="novelty_reference")
    sims = similarity(keras.layers.UnitNormalization(name="novelty_unit")(pooled))
    similarity.set_weights([reference.vectors.astype(np.float32).T])
    similarity.trainable = False
    kth = keras.ops.top_k(sims, min(reference.k, len(reference.vectors)), sorted=True)[0][:, -1]
    return keras.ops.subtract(1.0, kth)


def with_novelty_output(classifier, reference: NoveltyReference):
    """The classifier with two named outputs, `probabilities` (N, C) and `novelty` (N,): the score on its layer
    named "pooled" (for a fine-tuned run, the tuned trunk's pooled features, which its reference holds)."""
    import keras

    novelty = novelty_output(classifier.get_layer("pooled").output, reference)
    return keras.Model(classifier.inputs, {"probabilities": classifier.outputs[0], "novelty": novelty},
                       name=classifier.name)
