"""Transfer learning in two stages, as in the keras-io guide.

Stage 1 fits a linear head on cached embeddings of the frozen backbone (photos and their mirror
images): a convex problem solved in seconds (`core.model.head`), no Keras involved. That head
plus the backbone's LiteRT file is already a usable model. Stage 2, when the user unfreezes the
last N backbone blocks, fine-tunes from that head: on the cached activations at the freeze boundary
through the top N blocks only (`core.model.activations`), or, when the boundary is too early to cache,
end to end on photos streamed from disk with augmentation. AdamW with warm-up and cosine decay,
BatchNorm kept in inference mode, then the head solved again on the tuned features or the layer trained with the
blocks, whichever the validation photos prefer; the stage-1 model is kept unless the fine-tuned one beats it on
validation loss without getting fewer validation photos right. Whichever the run keeps then learns the validation photos
too: a head is solved again with them, a model fine-tuned on cached activations is trained again on every photo for
the epochs validation chose; the run's figures stay those measured before, on photos it had not seen. Either way the
saved model is one Keras model that takes raw RGB pixels, so prediction and export need nothing else.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from core.model import activations
from core.model.advice import MIRROR_TTA_HELPS
from core.model.augment import Augmentation, augment as augment_photo
from core.model.backbones import BackboneSpec, get_backbone, set_trainable_blocks
from core.model.embed import EmbeddingCache, embed_views, pooled_features
from core.model.head import STRENGTHS, HeadSearch, LinearHead, refit_head, scores, search_head
from core.images import load_rgb
from core.model.joined import joined_classifier, refit_joined_head, refuse_fine_tuning, search_joined_head
from core.model.schedule import automatic_epochs, automatic_rate
from core.model.novelty import (MAX_REFERENCE_ROWS, NoveltyReference, NoveltySettings, fit_novelty,
                                 with_novelty_output)

STAGE_EMBED, STAGE_HEAD, STAGE_FINETUNE, STAGE_REFIT = "embedding", "head", "fine-tuning", "every photo"


def planned_stages(config: dict) -> list[str]:
    """The stages a run with these settings (a run's stored config) goes through, in order: fine-tuning only when
    part of the network is retrained, then training it again on every photo (skipped when the run keeps the head)."""
    tuned = [STAGE_FINETUNE] + ([STAGE_REFIT] if TrainConfig.from_dict(config).refit else []) \
        if config.get("unfreeze_blocks") else []
    return [STAGE_EMBED, STAGE_HEAD] + tuned
MIN_IMPROVEMENT = 1e-3  # a validation loss lower by less than this is noise: not a better epoch


@dataclass
class TrainConfig:
    backbone: str = "efficientnet_lite0"
    unfreeze_blocks: int = 0
    # The rest is for fine-tuning only: the head is solved, with its regularisation chosen for it.
    # At most; early stopping may end it sooner. None: `automatic_epochs` for the run's training photo count.
    finetune_epochs: int | None = None
    # The peak, after a one-epoch warm-up; cosine decay to 0 at the last epoch. None: `automatic_rate` for the
    # run's training photo count. A run recorded with a number keeps it.
    finetune_learning_rate: float | None = None
    finetune_weight_decay: float = 1e-4   # AdamW's decoupled decay
    batch_size: int = 64          # two blocks on 2 CPU cores: 4.4 ms of CPU per photo against 4.6 at 32
    dropout: float = 0.2
    label_smoothing: float = 0.0
    patience: int = 3             # epochs without bettering the run's own best validation loss before it stops
    # Cached fine-tuning also trains on the middle of each photo enlarged (and its mirror image): measured on three
    # flowers5 splits, two blocks went from +0.0 to +0.8 points over the head on held-out photos, never below it.
    finetune_zoom_views: bool = True
    # The model the run keeps then learns the validation photos too; the run's figures stay the ones measured before,
    # on photos it had not seen (`python -m bench.bench_refit`, docs/benchmarks.md). A head is solved again on the
    # training and validation photos at the strength chosen without them: on never-seen photos +1.3 to +3.4 points on
    # groceries25 and its 32-px copy, +1.0 to +3.0 on flowers5 and its copy, -3.9 to +0.7 on hymenoptera (one to six
    # photos of 153: what more of its photos cost however they are learned). A model fine-tuned on cached activations
    # is trained again from that head on every photo for its best epoch count: two blocks, on never-seen photos,
    # +0.3 / +1.7 / +2.7 points on three splits of groceries25 and +3.4 / +1.1 / +0.9 on its 32-px copy, for 0.64-1.02
    # times the fine-tuning stage's time again.
    refit: bool = True
    augment: Augmentation = field(default_factory=Augmentation)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__ and k != "augment"}
        if "refit_head" in values:  # runs recorded before fine-tuned models learned the validation photos too
            known.setdefault("refit", values["refit_head"])
        # runs recorded before the Augmentation type kept its flags flat: augment_flip, augment_rotation...
        flags = values.get("augment") or {k.removeprefix("augment_"): v for k, v in values.items()
                                          if k.startswith("augment_")}
        return cls(**known, augment=Augmentation.from_dict(flags))


def most_epochs(cfg: TrainConfig, train_photos: int) -> int:
    """The most fine-tuning epochs a run goes through: the user's, else the automatic number for its photos."""
    return cfg.finetune_epochs if cfg.finetune_epochs is not None else automatic_epochs(train_photos)


def peak_rate(cfg: TrainConfig, train_photos: int) -> float:
    """The peak fine-tuning rate a run uses: the user's, else the automatic one for its training photo count."""
    return cfg.finetune_learning_rate if cfg.finetune_learning_rate is not None else automatic_rate(train_photos)


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    sha256: str


@dataclass
class TrainData:
    class_names: list[str]
    train: list[Sample]
    val: list[Sample]

    def check(self) -> None:
        """Refuse data no classifier can learn from, with a sentence saying what to add."""
        if len(self.class_names) < 2:
            raise ValueError("Training needs at least two classes with photos.")
        counts = np.bincount([s.label for s in self.train], minlength=len(self.class_names))
        empty = [self.class_names[i] for i, n in enumerate(counts) if n == 0]
        if empty:
            raise ValueError(f"These classes have no training photos: {', '.join(empty)}.")


class TrainingListener(Protocol):
    """What a training run tells its watcher; `should_stop` is asked between batches.

    In the head stage there are no epochs: `on_epoch` reports each regularisation strength tried, numbered
    from 1, with C, the cross-validated (cv_), training and validation (val_) loss and accuracy in `logs`.
    """

    def on_stage(self, stage: str, info: dict) -> None: ...
    def on_batch(self, stage: str, epoch: int, batch: int, batches: int, logs: dict) -> None: ...
    def on_epoch(self, stage: str, epoch: int, epochs: int, logs: dict) -> None: ...
    def should_stop(self) -> bool: ...


class SilentListener:
    def on_stage(self, stage, info): pass
    def on_batch(self, stage, epoch, batch, batches, logs): pass
    def on_epoch(self, stage, epoch, epochs, logs): pass
    def should_stop(self): return False


@dataclass
class TrainResult:
    head: LinearHead                    # stage 1 on the backbone's pooled embedding
    model: object | None                # fine-tuned keras.Model (pixels -> probabilities); None: head only
    class_names: list[str]
    input_size: int
    val_probabilities: np.ndarray       # (n_val_used, n_classes)
    val_samples: list[Sample]
    stopped: bool
    search: HeadSearch
    skipped: dict[str, str] = field(default_factory=dict)  # path -> why it could not be read
    timings: dict[str, float] = field(default_factory=dict)
    embed_images_per_second: float = 0.0
    best_epoch: dict[str, int] = field(default_factory=dict)
    # each validation photo averaged over the views the model answers with (`answer_views`): its mirror image, and the
    # zoomed-in ones for a model fine-tuned on them; None when it has no other view
    val_probabilities_averaged: np.ndarray | None = None
    zoomed_views: bool = False          # the fine-tuned model answers with the photo's zoomed-in views too
    finetune_path: str = ""             # "cached" (top blocks on boundary activations), "streamed" or "" (none)
    finetune_learning_rate: float | None = None  # the peak rate fine-tuning used; None when it did not run
    finetune_epochs: int | None = None  # the most epochs fine-tuning was to run; None when it did not run
    finetune_layer: str = ""            # the fine-tuned model's output layer: "re-solved" on the tuned features, or
                                        # "trained" with the blocks; "" when there is none
    # the novelty check (core.model.novelty) on the embedding the model answers from: the head's, or a fine-tuned
    # trunk's pooled features
    novelty: tuple[NoveltyReference, NoveltySettings] | None = None
    # `head` was solved again with the validation photos too (TrainConfig.refit); the validation figures above are the
    # head's before, which had not seen them
    head_refit: bool = False
    finetune_refit_epochs: int = 0      # epochs `model` was trained again for on every photo; 0: saved as validated


def strategy(device_type: str = "GPU"):
    """Every local device of this type when there are several: a MirroredStrategy gives each a slice of every batch
    and adds up their gradients, so the model learns as on one device (tests/test_devices.py checks it on two
    logical CPUs); the default, single-device strategy otherwise."""
    import tensorflow as tf

    devices = [d.name for d in tf.config.list_logical_devices(device_type)]
    return tf.distribute.MirroredStrategy(devices) if len(devices) > 1 else tf.distribute.get_strategy()


def reproducible(seed: int) -> None:
    """Same photos + same settings = same model: seeded randomness and deterministic TensorFlow ops."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if not tf.config.list_physical_devices("GPU"):  # some GPU kernels have no deterministic version and would raise
        tf.config.experimental.enable_op_determinism()


def class_weights(labels: Sequence[int], n_classes: int) -> dict[int, float]:
    """Inverse-frequency weights so a class with fewer photos counts as much in the loss."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_classes).astype(float)
    return {i: (len(labels) / (n_classes * c)) if c else 0.0 for i, c in enumerate(counts)}


def build_classifier(spec: BackboneSpec, n_classes: int, dropout: float):
    """Pixels -> backbone (inference-mode BatchNorm) -> pooling -> dropout -> softmax; no Lambda layers. A joined
    backbone's members each pool their own features, concatenated in member order (`core.model.joined`)."""
    import keras

    if len(spec.members) > 1:
        return joined_classifier(spec, n_classes, dropout)
    inputs, pooled = pooled_features(spec)
    dropped = keras.layers.Dropout(dropout, name="dropout")(pooled)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="predictions")(dropped)
    return keras.Model(inputs, outputs, name="transferlab_classifier")


def views_averaged(model, mirror: bool, zoom: bool = False):
    """The classifier answering with the mean of its probabilities over views of the photo: its mirror image
    (test-time mirroring) and, for a model fine-tuned on zoomed views, the photo's middle enlarged (and its mirror
    image); the classifier itself when neither. Its own layers are applied to each view (not the classifier nested as
    one layer), so any graph works (joined backbones too) and Grad-CAM still finds "backbone", "pooled" and
    "predictions" by name, their first call being the photo as it is."""
    import keras

    if not (mirror or zoom):
        return model
    inputs = keras.Input(model.input_shape[1:], name="pixels")
    views = [inputs, activations.zoomed_in_graph(inputs)] if zoom else [inputs]
    if mirror:
        views += [keras.ops.flip(view, axis=2) for view in views]
    # Functional._run_through_graph is what Model.call does: each layer called again with its recorded arguments
    # (the backbone's training=False included), on new tensors.
    answers = [model._run_through_graph(view, operation_fn=lambda layer: layer) for view in views]
    if not isinstance(answers[0], dict):
        return keras.Model(inputs, keras.layers.Average(name=VIEW_AVERAGE)(answers), name=model.name)
    # Named outputs (probabilities, novelty): only the probabilities are averaged; novelty stays the photo's own, as
    # its threshold was set on plain embeddings.
    averaged = keras.layers.Average(name=VIEW_AVERAGE)([answer["probabilities"] for answer in answers])
    return keras.Model(inputs, {**answers[0], "probabilities": averaged}, name=model.name)


VIEW_AVERAGE = "view_average"  # the layer averaging a model's views; before 2026-12-06, "mirror_average"


def mirror_averaging(cfg: TrainConfig) -> bool:
    """Whether the run answers with each photo averaged with its mirror image: when mirroring is measured to help
    and the user kept mirrored copies (a set where left and right matter turns both off)."""
    return MIRROR_TTA_HELPS and cfg.augment.flip


def answer_views(cfg: TrainConfig, zoom: bool) -> tuple[str, ...]:
    """The views (`core.model.activations.VIEWS` names) a model fine-tuned on cached activations answers with: the
    photo, its mirror image when the run mirrors, and with `zoom` both zoomed in when it learned from zoomed views."""
    return _with_zoomed(("", "-flip") if mirror_averaging(cfg) else ("",), zoom and cfg.finetune_zoom_views)


def _with_zoomed(plain: tuple[str, ...], zoom: bool) -> tuple[str, ...]:
    """The `plain` views, then (with `zoom`) each of them zoomed in."""
    return plain + (tuple(f"-zoom{view}" for view in plain) if zoom else ())


def assemble_classifier(spec: BackboneSpec, head: LinearHead, dropout: float = 0.0):
    """The Keras classifier with the solved head in its Dense layer: the model the downloads are made of."""
    model = build_classifier(spec, head.kernel.shape[1], dropout)
    model.get_layer("predictions").set_weights([head.kernel, head.bias])
    return model


# Answering with the zoomed-in views too (each photo's middle enlarged, and mirrored, averaged in) was measured on
# photos no run saw (`python -m bench.bench_refit --blocks 2`, docs/benchmarks.md, 2026-12-06): +3.2 / +1.8 / +0.4
# points on groceries25 (224-px product photos), +0.8 on average on its 32-px copy, and two photos of 200 lost on two
# splits of flowers5 (landscape photos already cropped square), where each run's validation photos had preferred
# them by a photo or a lower loss. So a run takes them only on clear evidence: the validation photos they put right
# that the photo and its mirror image alone did not must outnumber the reverse by ZOOM_EVIDENCE standard deviations
# of a fair coin (a one-sided sign test at the 5 % level, in its normal approximation).
ZOOM_EVIDENCE = 1.645
MONITOR = "val_xent"  # plain cross-entropy: comparable with the head's validation loss whatever the label smoothing


def _listener_callback(listener: TrainingListener, stage: str, epochs: int, best: tuple | None = None, *,
                       keep_best: bool = True):
    """Keras callback that reports progress, honours stop requests between batches and keeps the best weights.

    `best` is (score, epoch, weights) to beat from an earlier stage: fine-tuning keeps the stage-1
    model unless an epoch of its own does better on validation. With `keep_best` False (training again on every
    photo: nothing left to validate on) the last epoch's weights stay, and epochs are not reported as rows of the
    run's curves.
    """
    import keras

    class Relay(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self.batches = 0
            self.stopped = False
            self.best: tuple[float, int, list] | None = best

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1

        def on_train_batch_end(self, batch, logs=None):
            listener.on_batch(stage, self.epoch, batch + 1, self.params.get("steps") or 0, _floats(logs))
            if listener.should_stop():
                self.stopped = True
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            if not keep_best:
                return
            logs = _floats(logs)
            score = logs.get(MONITOR, logs.get("loss", math.inf))
            if self.best is None or score < self.best[0] - MIN_IMPROVEMENT:
                self.best = (score, epoch + 1, self.model.get_weights())
            listener.on_epoch(stage, epoch + 1, epochs, logs)

        def on_train_end(self, logs=None):
            if self.best is not None:
                self.model.set_weights(self.best[2])

    return Relay()


def _floats(logs: dict | None) -> dict:
    return {k: float(v) for k, v in (logs or {}).items()}


@dataclass
class Embedded:
    """Stage 1's input: training vectors (mirror images appended) and the validation vectors."""

    x: np.ndarray
    labels: np.ndarray
    groups: np.ndarray                  # a photo and its mirror image share a group
    train_samples: list[Sample]         # the readable ones, in the order of x's first block
    val_x: np.ndarray
    val_mirrored: np.ndarray | None     # the validation photos' mirror images, when flips are on
    val_samples: list[Sample]
    skipped: dict[str, str]
    computed: int                       # photos that were not in the cache


def _views(cfg: TrainConfig) -> tuple[bool, ...]:
    """The views of each photo that are embedded and cached: as is, and mirrored when flips are on."""
    return (False, True) if cfg.augment.flip else (False,)


def _embed(data: TrainData, spec: BackboneSpec, cfg: TrainConfig, cache, listener, passes: int = 1) -> Embedded:
    """Embed every photo once per view, each decoded once; progress counts `passes` passes over the photos (the
    second computes boundary activations)."""
    samples = data.train + data.val
    listener.on_stage(STAGE_EMBED, {"images": len(samples)})
    report = lambda done, total: listener.on_batch(STAGE_EMBED, 1, done, passes * total, {})  # noqa: E731
    # Validation photos get their mirror image too: the background embedder makes both for every photo.
    results = embed_views([s.path for s in samples], [s.sha256 for s in samples], spec, _views(cfg), cache=cache,
                          on_progress=report, should_stop=listener.should_stop)
    ok, failed, computed = results[0].ok, results[0].failed, results[0].computed
    n_train = sum(1 for i in ok if i < len(data.train))  # `ok` is sorted: the training photos' rows come first
    # Each view's rows copied into place and its table dropped before the next: at 50,000 photos a table is 250 MB.
    x = np.empty((len(results) * n_train, results[0].vectors.shape[1]), results[0].vectors.dtype)
    val_views = []
    for v in range(len(results)):
        x[v * n_train:(v + 1) * n_train] = results[v].vectors[:n_train]
        val_views.append(results[v].vectors[n_train:].copy())
        results[v] = None
    train_samples = [samples[i] for i in ok[:n_train]]
    return Embedded(x, np.array([s.label for s in train_samples] * len(results), dtype=int),
                    np.tile(np.arange(n_train), len(results)), train_samples,
                    val_views[0], val_views[-1] if len(results) > 1 else None, [samples[i] for i in ok[n_train:]],
                    {str(samples[i].path): why for i, why in failed.items()}, computed)


def train(data: TrainData, cfg: TrainConfig, listener: TrainingListener | None = None,
          cache: EmbeddingCache | None = None) -> TrainResult:
    """Stage 1 and, if asked, stage 2; the head with the regularisation that cross-validates best, and the
    fine-tuned model with the best validation weights."""
    spec = get_backbone(cfg.backbone)
    refuse_fine_tuning(spec, cfg.unfreeze_blocks)
    data.check()
    listener = listener or SilentListener()
    timings: dict[str, float] = {}
    n_classes = len(data.class_names)

    t0 = time.perf_counter()
    try:
        cached = cfg.unfreeze_blocks > 0 and activations.cacheable(
            activations.boundary_shape(spec, cfg.unfreeze_blocks), len(data.train) + len(data.val),
            len(_views(cfg)) * (2 if cfg.finetune_zoom_views else 1))
        e = _embed(data, spec, cfg, cache, listener, passes=2 if cached else 1)
        timings["embed_seconds"] = time.perf_counter() - t0
        boundary = _boundary(e, spec, cfg, listener) if cached else None
        timings["boundary_seconds"] = time.perf_counter() - t0 - timings["embed_seconds"]
    except InterruptedError:
        raise TrainingStopped("Stopped before any model was trained.") from None
    embed_rate = e.computed / timings["embed_seconds"] if e.computed else 0.0
    TrainData(data.class_names, e.train_samples, e.val_samples).check()  # unreadable photos may have emptied a class

    val_x, val_samples = e.val_x, e.val_samples
    listener.on_stage(STAGE_HEAD, {"epochs": len(STRENGTHS)})
    n_train = len(e.train_samples)
    novelty = fit_novelty([e.x[i:i + n_train] for i in range(0, len(e.x), n_train)], e.labels[:n_train], val_x,
                          np.array([s.label for s in val_samples], dtype=int))
    t1 = time.perf_counter()
    # A joined backbone's head puts every dimension of the concatenation on a like scale first (core.model.joined).
    solve = functools.partial(search_joined_head, sizes=[m.feature_dim for m in spec.members]) \
        if len(spec.members) > 1 else search_head
    # The head may overwrite e.x (a copy of it is 400 MB at 50,000 photos): nothing reads it after the head.
    search = solve(e.x, e.labels, n_classes, e.groups, seed=cfg.seed,
                   val=(val_x, np.array([s.label for s in val_samples], dtype=int)),
                   on_try=lambda i, row: listener.on_epoch(STAGE_HEAD, i + 1, len(STRENGTHS), row),
                   should_stop=listener.should_stop, overwrite_x=True)
    e.x = None
    stopped = listener.should_stop()
    timings["head_seconds"] = time.perf_counter() - t1
    val_probs = search.head.probabilities(val_x) if len(val_samples) else np.zeros((0, n_classes))
    chosen = next(row for row in search.tried if row["chosen"])

    averaged = (search.head.probabilities(val_x) + search.head.probabilities(e.val_mirrored)) / 2 \
        if e.val_mirrored is not None and len(val_samples) else None
    result = TrainResult(search.head, None, data.class_names, spec.input_size, val_probs, val_samples, stopped,
                         search, e.skipped, timings, embed_rate, {}, averaged, novelty=novelty)
    if cfg.unfreeze_blocks > 0 and not stopped:
        t2 = time.perf_counter()
        result.finetune_learning_rate = peak_rate(cfg, n_train)
        result.finetune_epochs = most_epochs(cfg, n_train)
        cfg = replace(cfg, finetune_learning_rate=result.finetune_learning_rate,
                      finetune_epochs=result.finetune_epochs)
        _finetune(result, spec, cfg, e, boundary, chosen.get("val_loss"), listener)
        timings["finetune_seconds"] = time.perf_counter() - t2
    if cfg.refit and len(result.val_samples) and not result.stopped:
        t3 = time.perf_counter()
        if result.model is None:
            _refit(result, e.train_samples, spec, cfg, cache, listener)
        elif boundary is not None:
            _refit_finetuned(result, spec, cfg, e, boundary, cache, listener)
        timings["refit_seconds"] = time.perf_counter() - t3
    timings["train_seconds"] = time.perf_counter() - t0
    return result


class TrainingStopped(RuntimeError):
    """The user stopped the run before there was any model to keep."""


class _StopOnly(SilentListener):
    """Tells nothing, stops when `listener` asks: reading the cached vectors again is not a stage of its own."""

    def __init__(self, listener: TrainingListener):
        self.listener = listener

    def should_stop(self) -> bool:
        return self.listener.should_stop()


def _head_on_every_photo(result: TrainResult, train_samples: list[Sample], spec: BackboneSpec, cfg: TrainConfig,
                         cache, listener: TrainingListener) -> LinearHead:
    """The stage-1 head solved again on the training and validation photos at its chosen strength (their vectors read
    back from the cache: the head's search may have overwritten the training ones to spare a copy); raises
    InterruptedError on a stop request while they are read."""
    every = _embed(TrainData(result.class_names, train_samples + result.val_samples, []), spec, cfg, cache,
                   _StopOnly(listener))
    refit = functools.partial(refit_joined_head, sizes=[m.feature_dim for m in spec.members]) \
        if len(spec.members) > 1 else refit_head
    return refit(result.head, every.x, every.labels, len(result.class_names), result.search.strength,
                 overwrite_x=True)


def _refit(result: TrainResult, train_samples: list[Sample], spec: BackboneSpec, cfg: TrainConfig, cache,
           listener: TrainingListener) -> None:
    """The kept head learns the validation photos too; a stop request keeps it as it was."""
    try:
        result.head = _head_on_every_photo(result, train_samples, spec, cfg, cache, listener)
    except InterruptedError:
        result.stopped = True
        return
    result.head_refit = True


def _refit_finetuned(result: TrainResult, spec: BackboneSpec, cfg: TrainConfig, e: Embedded, boundary: Boundary,
                     cache, listener: TrainingListener) -> None:
    """The kept fine-tuned model trained again on every photo's cached activations: from the stage-1 head solved
    again with the validation photos, at the validated peak rate, for the epochs validation chose (the schedule
    decaying over them), its output layer made as the validated model's was, its novelty check fitted on the new
    trunk. Nothing is left to validate it on: its figures stay the validated model's. A stop request keeps that."""
    epochs = result.best_epoch[STAGE_FINETUNE]
    try:
        start = _head_on_every_photo(result, e.train_samples, spec, cfg, cache, listener)
    except InterruptedError:
        result.stopped = True
        return
    cfg = replace(cfg, finetune_epochs=epochs, finetune_learning_rate=result.finetune_learning_rate)
    listener.on_stage(STAGE_REFIT, {"epochs": epochs, "blocks": cfg.unfreeze_blocks})
    model, devices = _tunable(spec, cfg, start)
    samples = e.train_samples + e.val_samples
    fit = _fit_cached(model, spec, cfg, boundary, samples, len(samples), devices)
    relay = _listener_callback(listener, STAGE_REFIT, epochs, keep_best=False)
    fit.trained.fit(fit.train, epochs=epochs, class_weight=class_weights(fit.train.labels, len(result.class_names)),
                    callbacks=[relay], verbose=0)
    if relay.stopped:
        result.stopped = True
        return
    if result.finetune_layer == "re-solved":
        fit.resolve()
    _keep_tuned(result, model, fit, cfg, np.zeros(0, dtype=int))  # no validation photos left
    result.finetune_refit_epochs = epochs


@dataclass
class Boundary:
    """Activations at the freeze boundary of the readable photos, one result per view (`_cached_views`)."""

    views: list                         # list[EmbedResult], rows in the order of train_samples + val_samples
    shape: tuple[int, ...]


def _cached_views(cfg: TrainConfig) -> tuple[str, ...]:
    """The views whose boundary activations fine-tuning trains on: as is (and mirrored), and zoomed in."""
    return _with_zoomed(("", "-flip")[:len(_views(cfg))], cfg.finetune_zoom_views)


def _boundary(e: Embedded, spec: BackboneSpec, cfg: TrainConfig, listener: TrainingListener) -> Boundary:
    """The boundary activations fine-tuning will train on, computed in the embedding stage (its second pass)."""
    samples = e.train_samples + e.val_samples
    n = len(samples)
    results, shape = activations.boundary_activations(
        [s.path for s in samples], [s.sha256 for s in samples], spec, cfg.unfreeze_blocks, _cached_views(cfg),
        on_progress=lambda done, total: listener.on_batch(STAGE_EMBED, 1, n + done, 2 * n, {}),
        should_stop=listener.should_stop)
    return Boundary(results, shape)


def _finetune(result: TrainResult, spec: BackboneSpec, cfg: TrainConfig, e: Embedded, boundary: Boundary | None,
              head_val_loss: float | None, listener: TrainingListener) -> None:
    """Stage 2 from the stage-1 head, on cached boundary activations when they fit, else streamed photos; fills in
    `result` (its model stays None when no epoch beat the head on validation)."""
    n_classes = len(result.class_names)
    model, devices = _tunable(spec, cfg, result.head)
    listener.on_stage(STAGE_FINETUNE, {"epochs": cfg.finetune_epochs, "blocks": cfg.unfreeze_blocks})
    if boundary is not None:
        result.finetune_path = "cached"
        _leave_out_unreadable(result, e, boundary)
        fit = _fit_cached(model, spec, cfg, boundary, e.train_samples + e.val_samples, len(e.train_samples), devices)
    else:
        result.finetune_path = "streamed"
        fit = _fit_streamed(model, spec, cfg, e.train_samples, result.val_samples, devices)
    has_val = fit.val is not None
    # Snapshot after freezing: Keras orders weights by trainability, so restore in the same configuration.
    baseline = (head_val_loss, 0, fit.trained.get_weights()) if has_val and head_val_loss is not None else None
    relay = _listener_callback(listener, STAGE_FINETUNE, cfg.finetune_epochs, baseline)
    fit.trained.fit(fit.train, validation_data=fit.val, epochs=cfg.finetune_epochs,
                    class_weight=class_weights(e.labels, n_classes), callbacks=[relay, stop_rule(cfg, has_val)],
                    verbose=0)
    result.stopped = relay.stopped
    result.best_epoch[STAGE_FINETUNE] = relay.best[1] if relay.best else 0
    if result.best_epoch[STAGE_FINETUNE] == 0:
        return  # no epoch beat the stage-1 head on validation: keep it (the run saves head.npz)
    resolve = fit.resolve if fit.resolve is not None and not relay.stopped else None
    labels = np.array([s.label for s in result.val_samples], dtype=int)
    if not len(result.val_samples):
        if resolve is not None:
            resolve()  # nothing to compare them on: the solver's head, which beat the trained layer where measured
        result.finetune_layer = "re-solved" if resolve is not None else "trained"
    elif not _keep_best_layer(fit.predict, resolve, model.get_layer("predictions"), result, head_val_loss,
                              mirror_averaging(cfg)):
        result.best_epoch[STAGE_FINETUNE] = 0
        return
    else:
        result.zoomed_views = _zoom_helps(fit, result, labels)
    _keep_tuned(result, model, fit, cfg, labels)


def _zoom_helps(fit: Fit, result: TrainResult, labels: np.ndarray) -> bool:
    """Whether the kept model answers with its zoomed-in views too: only when the validation photos say so clearly
    (`ZOOM_EVIDENCE`); `result`'s averaged figures are then theirs."""
    if fit.predict_zoomed is None:
        return False
    zoomed = fit.predict_zoomed()
    without = result.val_probabilities_averaged if result.val_probabilities_averaged is not None else \
        result.val_probabilities
    right_zoomed, right_without = zoomed.argmax(axis=1) == labels, without.argmax(axis=1) == labels
    gained, lost = int((right_zoomed & ~right_without).sum()), int((right_without & ~right_zoomed).sum())
    if gained <= lost or gained - lost < ZOOM_EVIDENCE * math.sqrt(gained + lost):
        return False
    result.val_probabilities_averaged = zoomed
    return True


def _keep_tuned(result: TrainResult, model, fit: Fit, cfg: TrainConfig, val_labels: np.ndarray) -> None:
    """`model` as the run saves it. The fine-tuned trunk makes another embedding than the head's: the novelty check is
    fitted again on its pooled features (the validation photos' labelled `val_labels`), and the model gets its
    `novelty` output on them; it answers averaged over its views when the run does (`views_averaged`)."""
    result.novelty = None
    if fit.features is not None:
        train_x, train_labels, val_x = fit.features()
        result.novelty = fit_novelty(train_x, train_labels, val_x, val_labels)
        model = with_novelty_output(model, result.novelty[0])
    result.model = views_averaged(model, mirror_averaging(cfg), result.zoomed_views)


def stop_rule(cfg: TrainConfig, has_val: bool = True):
    """Early stopping once `patience` epochs in a row did not improve on the run's own best validation loss.

    Not on the head's loss: while the one-epoch warm-up and the high part of the cosine schedule move the weights,
    validation loss often stays above the head's and beats it only as the rate decays (32-px groceries25 split 0:
    above it for three epochs, then 1.336 -> 1.295 and +2.0 points by epoch 8). Whether the run beats the head at all
    is the keep rule's question (the relay's baseline and the final check in `_finetune`), not the stop's."""
    import keras

    return keras.callbacks.EarlyStopping(monitor=MONITOR if has_val else "loss", mode="min", patience=cfg.patience,
                                         min_delta=MIN_IMPROVEMENT)


def _right(probabilities: np.ndarray, labels: np.ndarray) -> int:
    """How many photos the probabilities put in their own class."""
    return int((probabilities.argmax(axis=1) == labels).sum())


Probabilities = tuple[np.ndarray, np.ndarray | None]  # validation probabilities: plain, averaged over views (or None)


def keeps(tuned: Probabilities, head: Probabilities, labels: np.ndarray, head_val_loss: float | None) -> bool:
    """The keep rule: a fine-tuned model replaces the stage-1 head only with a validation loss lower than the head's
    and no fewer validation photos right (a lower loss bought with fewer right answers, seen on 15-photo validation
    sets, is no gain to the user)."""
    lower = head_val_loss is None or scores(tuned[0], labels)[0] < head_val_loss - MIN_IMPROVEMENT
    return lower and _right(tuned[0], labels) >= _right(head[0], labels)


def best_layer(candidates: Sequence[Probabilities], head: Probabilities, labels: np.ndarray,
               head_val_loss: float | None, answers_averaged: bool) -> int | None:
    """Index of the candidate output layer the run keeps, None for the stage-1 head: of those the keep rule accepts,
    the one with most validation photos right as the model answers (averaged over its views when `answers_averaged`),
    then on its plain probabilities (what the keep rule counts), then the lower validation loss; the first on a full
    tie."""
    def rank(i: int) -> tuple[int, int, float]:
        plain, averaged = candidates[i]
        answered = averaged if answers_averaged and averaged is not None else plain
        return _right(answered, labels), _right(plain, labels), -scores(plain, labels)[0]

    accepted = [i for i, tuned in enumerate(candidates) if keeps(tuned, head, labels, head_val_loss)]
    return max(accepted, key=rank) if accepted else None  # max keeps the first of equals


def _keep_best_layer(predict: Callable[[], Probabilities], resolve: Callable[[], None] | None, layer,
                     result: TrainResult, head_val_loss: float | None, answers_averaged: bool) -> bool:
    """Puts in `layer` (the Dense output) the better of the head solved again on the tuned features and the layer
    trained with the blocks, and its figures in `result`; False when neither passes the keep rule. Neither wins
    everywhere (peak rate 2e-4, two blocks: the re-solved head had more photos right on groceries25 and most of its
    32-px copy's splits, but failed the keep rule on 32-px groceries25 split 0 and hymenoptera split 0 where the
    trained layer passed), so the validation photos decide as the keep rule does."""
    trained = layer.get_weights(), predict()
    candidates = [trained]
    if resolve is not None:
        resolve()
        candidates.insert(0, (layer.get_weights(), predict()))  # on a full tie, the solver's head as before
    labels = np.array([s.label for s in result.val_samples])
    head = (result.val_probabilities, result.val_probabilities_averaged)
    chosen = best_layer([probs for _, probs in candidates], head, labels, head_val_loss, answers_averaged)
    if chosen is None:
        return False
    weights, (result.val_probabilities, result.val_probabilities_averaged) = candidates[chosen]
    layer.set_weights(weights)
    result.finetune_layer = "re-solved" if resolve is not None and chosen == 0 else "trained"
    return True


@dataclass
class Fit:
    """What stage 2 fits (the classifier, or its top on boundary activations, sharing its layers) and on what."""

    trained: object                     # keras.Model
    train: object                       # tf.data.Dataset of (inputs, one-hot labels)
    val: object | None
    predict: Callable[[], Probabilities]  # validation probabilities: plain, and averaged over the answer's views
    resolve: Callable[[], None] | None = None  # solves the head again on the tuned blocks' features, into the model
    # the tuned trunk's pooled features: training photos' (one array per plain view), their labels, validation photos'
    features: Callable[[], tuple[list[np.ndarray], np.ndarray, np.ndarray]] | None = None
    # validation probabilities averaged over the zoomed-in views too (`answer_views`); None: it learned none
    predict_zoomed: Callable[[], np.ndarray] | None = None


def _compile(model, cfg: TrainConfig, steps_per_epoch: int, devices) -> None:
    """AdamW, one epoch of linear warm-up to the peak rate, then cosine decay to zero at the last epoch."""
    import keras

    total = max(1, steps_per_epoch * cfg.finetune_epochs)
    warmup = min(steps_per_epoch, total // 2)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, max(1, total - warmup), warmup_target=cfg.finetune_learning_rate,
                                                      warmup_steps=warmup)
    with devices.scope():
        model.compile(keras.optimizers.AdamW(schedule, weight_decay=cfg.finetune_weight_decay),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
                      metrics=["accuracy", keras.metrics.CategoricalCrossentropy(name=MONITOR.removeprefix("val_"))])


def _tunable(spec: BackboneSpec, cfg: TrainConfig, head: LinearHead):
    """The classifier starting from `head` with its top `cfg.unfreeze_blocks` blocks trainable, seeded, and the
    device strategy it was built in (a model is compiled and fitted under that one)."""
    reproducible(cfg.seed)
    devices = strategy()
    with devices.scope():
        model = assemble_classifier(spec, head, cfg.dropout)
        set_trainable_blocks(spec, model.get_layer("backbone"), cfg.unfreeze_blocks)
    return model, devices


def _leave_out_unreadable(result: TrainResult, e: Embedded, boundary: Boundary) -> None:
    """Photos that could not be read since they were embedded: reported, and left out of both models' validation
    figures."""
    samples = e.train_samples + e.val_samples
    ok, n_train = boundary.views[0].ok, len(e.train_samples)
    result.skipped.update({str(samples[i].path): why for i, why in boundary.views[0].failed.items()})
    kept_val = [i - n_train for i in ok if i >= n_train]
    result.val_samples = [result.val_samples[i] for i in kept_val]
    result.val_probabilities = result.val_probabilities[kept_val]
    if result.val_probabilities_averaged is not None:
        result.val_probabilities_averaged = result.val_probabilities_averaged[kept_val]


def _fit_cached(model, spec, cfg: TrainConfig, boundary: Boundary, samples: list[Sample], n_train: int,
                devices) -> Fit:
    """Fine-tuning the top blocks on the boundary activations of `samples` (the first `n_train` to train on, the rest
    to validate with; the unreadable ones left out), one view of each photo per epoch, then the head solved again on
    what they learned."""
    import tensorflow as tf

    from core.model.cached_tuning import ViewBatches, pooled

    views_out, shape = boundary.views, boundary.shape
    ok = views_out[0].ok
    train_rows = [r for r, i in enumerate(ok) if i < n_train]
    val_rows = [r for r, i in enumerate(ok) if i >= n_train]
    n_classes = model.output_shape[-1]
    unpack = lambda v, rows: v.vectors[rows].reshape(-1, *shape)  # noqa: E731
    train_views = [unpack(v, train_rows) for v in views_out]
    train_labels = np.array([samples[ok[r]].label for r in train_rows], dtype=int)
    batches = ViewBatches(train_views, train_labels, n_classes, cfg.batch_size, cfg.seed)
    with devices.scope():
        top = activations.top_model(model, spec, cfg.unfreeze_blocks)
        features = activations.top_features(model, spec, cfg.unfreeze_blocks)
    _compile(top, cfg, len(batches), devices)
    plain_views = len(_views(cfg))  # as is (and mirrored): what the head is solved on, never zoomed
    unzoomed, answered = answer_views(cfg, zoom=False), answer_views(cfg, zoom=True)
    cached = _cached_views(cfg)
    val_views = [unpack(views_out[cached.index(view)], val_rows) for view in answered]
    val_y = np.eye(n_classes, dtype=np.float32)[[samples[ok[r]].label for r in val_rows]]
    val_ds = (tf.data.Dataset.from_tensor_slices((val_views[0], val_y)).batch(cfg.batch_size).map(_as_float)
              if len(val_rows) else None)

    def answers(views: list[np.ndarray]) -> list[np.ndarray]:
        return [top.predict(v.astype(np.float32), batch_size=cfg.batch_size, verbose=0) for v in views]

    def predict() -> Probabilities:
        probs = answers(val_views[:len(unzoomed)])
        return probs[0], np.mean(probs, axis=0) if len(probs) > 1 else None

    def predict_zoomed() -> np.ndarray:
        return np.mean(answers(val_views), axis=0)

    tuned: dict[str, object] = {}

    def tuned_features() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        # made once after the epochs (the trunk no longer changes; the re-solve only sets the Dense layer)
        if not tuned:
            tuned["train"] = [pooled(features, v) for v in train_views[:plain_views]]
            tuned["val"] = (pooled(features, val_views[0]) if len(val_rows)
                            else np.zeros((0, tuned["train"][0].shape[1]), np.float32))
        return tuned["train"], train_labels, tuned["val"]

    def resolve() -> None:
        train_x, _, val_x = tuned_features()
        x = np.concatenate(train_x)
        val = (val_x, np.argmax(val_y, axis=1)) if len(val_rows) else None
        head = search_head(x, np.tile(train_labels, plain_views), n_classes,
                           np.tile(np.arange(len(train_labels)), plain_views), val=val, seed=cfg.seed).head
        model.get_layer("predictions").set_weights([head.kernel, head.bias])

    return Fit(top, batches, val_ds, predict, resolve, tuned_features,
               predict_zoomed if len(answered) > len(unzoomed) else None)


def _as_float(x, y):
    """float16 activations (half the memory) widened per batch."""
    import tensorflow as tf

    return tf.cast(x, tf.float32), y


def _fit_streamed(model, spec, cfg: TrainConfig, train_samples, val_samples, devices) -> Fit:
    """Fine-tuning end to end on photos streamed from disk, with augmentation."""
    n_classes = model.output_shape[-1]
    _compile(model, cfg, math.ceil(len(train_samples) / cfg.batch_size), devices)
    train_ds = _dataset(train_samples, spec.input_size, cfg.batch_size, n_classes,
                        augment=cfg.augment, shuffle_seed=cfg.seed)
    val_ds = _dataset(val_samples, spec.input_size, cfg.batch_size, n_classes) if val_samples else None

    def tuned_features() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        # The tuned trunk's pooled features, one more pass over the photos: of as many training photos as the
        # reference keeps rows for (drawn by seed; a large project's would be subsampled anyway), each view.
        import keras

        features = keras.Model(model.inputs, model.get_layer("pooled").output, name="tuned_features")
        views = _views(cfg)
        most = max(1, MAX_REFERENCE_ROWS // len(views))
        rows = np.arange(len(train_samples)) if len(train_samples) <= most else \
            np.sort(np.random.default_rng(cfg.seed).choice(len(train_samples), most, replace=False))
        photos = [train_samples[i] for i in rows]
        train_x = [features.predict(_dataset(photos, spec.input_size, cfg.batch_size, n_classes, mirror=flip),
                                    verbose=0) for flip in views]
        val_x = features.predict(val_ds, verbose=0) if val_ds is not None else \
            np.zeros((0, train_x[0].shape[1]), np.float32)
        return train_x, np.array([s.label for s in photos], dtype=int), val_x

    return Fit(model, train_ds, val_ds, lambda: (model.predict(val_ds, verbose=0),
                                                 views_averaged(model, mirror=True).predict(val_ds, verbose=0)
                                                 if cfg.augment.flip else None), features=tuned_features)


def _dataset(samples: list[Sample], size: int, batch_size: int, n_classes: int, *,
             augment: Augmentation | None = None, shuffle_seed: int | None = None, mirror: bool = False):
    """tf.data pipeline streaming photos from disk (each mirrored left to right with `mirror`): decode and augment
    in parallel, batch, prefetch."""
    import tensorflow as tf

    paths = [str(s.path) for s in samples]
    labels = tf.one_hot([s.label for s in samples], n_classes)
    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(samples), seed=shuffle_seed, reshuffle_each_iteration=True)

    def load(path):
        # stateful=False: a photo depends on its path alone, so op determinism leaves the decoding parallel.
        pixels = tf.numpy_function(lambda p: load_rgb(Path(p.decode()), size).astype(np.float32), [path], tf.float32,
                                   stateful=False)
        if mirror:
            pixels = tf.reverse(pixels, axis=[1])  # (height, width, 3): the same view as embed.mirrored
        return tf.ensure_shape(pixels, (size, size, 3))

    if augment is None or not augment.any:
        ds = ds.map(lambda p, y: (load(p), y), num_parallel_calls=tf.data.AUTOTUNE)
    else:  # a seed per photo, new each epoch, drawn in order: augmented photos are the same whatever runs first
        seeds = tf.data.Dataset.random(seed=shuffle_seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda item, seed: (augment_photo(load(item[0]), seed, augment), item[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
