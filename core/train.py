"""Transfer learning in two stages, as in the keras-io guide.

Stage 1 trains a small head (dropout + dense) on cached embeddings of the frozen backbone:
seconds, not minutes. Stage 2, when the user unfreezes the last N backbone blocks, fine-tunes
end to end from that head on photos streamed from disk, with augmentation, a lower learning
rate and BatchNorm kept in inference mode. The result is one Keras model that takes raw RGB
pixels, so prediction and export need nothing else.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from core.augment import Augmentation, augment as augment_photo
from core.backbones import BackboneSpec, get_backbone, set_trainable_blocks
from core.embed import EmbeddingCache, embed_files, pooled_features
from core.images import load_rgb

STAGE_EMBED, STAGE_HEAD, STAGE_FINETUNE = "embedding", "head", "fine-tuning"


@dataclass
class TrainConfig:
    backbone: str = "efficientnet_lite0"
    unfreeze_blocks: int = 0
    epochs: int = 40              # stage 1 maximum; early stopping usually ends it sooner
    finetune_epochs: int = 6      # stage 2 maximum
    learning_rate: float = 1e-3
    finetune_learning_rate: float = 1e-4
    batch_size: int = 32
    dropout: float = 0.2
    label_smoothing: float = 0.0
    patience: int = 6
    augment_flip: bool = True
    augment_rotation: bool = True
    augment_zoom: bool = True
    augment_contrast: bool = True
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)


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
    """What a training run tells its watcher; `should_stop` is asked between batches."""

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
    model: object                       # keras.Model: raw RGB pixels (S, S, 3) -> class probabilities
    class_names: list[str]
    input_size: int
    val_probabilities: np.ndarray       # (n_val_used, n_classes)
    val_samples: list[Sample]
    stopped: bool
    skipped: dict[str, str] = field(default_factory=dict)  # path -> why it could not be read
    timings: dict[str, float] = field(default_factory=dict)
    embed_images_per_second: float = 0.0
    best_epoch: dict[str, int] = field(default_factory=dict)


def strategy():
    """All local GPUs when there are several; the default (single device) otherwise."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


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
    """Pixels -> backbone (inference-mode BatchNorm) -> pooling -> dropout -> softmax; no Lambda layers."""
    import keras

    inputs, pooled = pooled_features(spec)
    dropped = keras.layers.Dropout(dropout, name="dropout")(pooled)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="predictions")(dropped)
    return keras.Model(inputs, outputs, name="transferlab_classifier")


def build_head(feature_dim: int, n_classes: int, dropout: float):
    """The stage-1 model: the classifier's last layers, fed cached embeddings."""
    import keras

    inputs = keras.Input((feature_dim,), name="embedding")
    dropped = keras.layers.Dropout(dropout, name="dropout")(inputs)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="predictions")(dropped)
    return keras.Model(inputs, outputs, name="head")


def _listener_callback(listener: TrainingListener, stage: str, epochs: int, best: tuple | None = None):
    """Keras callback that reports progress, honours stop requests between batches and keeps the best weights.

    `best` is (score, epoch, weights) to beat from an earlier stage: fine-tuning keeps the stage-1
    model unless an epoch of its own does better on validation.
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
            logs = _floats(logs)
            score = logs.get("val_loss", logs.get("loss", math.inf))
            if self.best is None or score < self.best[0]:
                self.best = (score, epoch + 1, self.model.get_weights())
            listener.on_epoch(stage, epoch + 1, epochs, logs)

        def on_train_end(self, logs=None):
            if self.best is not None:
                self.model.set_weights(self.best[2])

    return Relay()


def _floats(logs: dict | None) -> dict:
    return {k: float(v) for k, v in (logs or {}).items()}


def _embed_split(samples: list[Sample], spec, cache, listener, progress: list[int], flip: bool = False):
    """Embed one split; `progress` is [done so far, total] across all splits, for one smooth bar."""
    start = progress[0]

    def report(done: int, _n: int) -> None:
        progress[0] = start + done
        listener.on_batch(STAGE_EMBED, 1, progress[0], progress[1], {})

    result = embed_files([s.path for s in samples], [s.sha256 for s in samples], spec, cache=cache, flip=flip,
                         on_progress=report, should_stop=listener.should_stop)
    kept = [samples[i] for i in result.ok]
    skipped = {str(samples[i].path): why for i, why in result.failed.items()}
    return result, kept, skipped


def train(data: TrainData, cfg: TrainConfig, listener: TrainingListener | None = None,
          cache: EmbeddingCache | None = None) -> TrainResult:
    """Run stage 1 and, if asked, stage 2; returns the model with the best validation weights."""
    import keras

    data.check()
    listener = listener or SilentListener()
    spec = get_backbone(cfg.backbone)
    timings: dict[str, float] = {}
    n_classes = len(data.class_names)

    t0 = time.perf_counter()
    progress = [0, len(data.train) * (2 if cfg.augment_flip else 1) + len(data.val)]
    listener.on_stage(STAGE_EMBED, {"images": progress[1]})
    try:
        train_emb, train_samples, skipped = _embed_split(data.train, spec, cache, listener, progress)
        val_emb, val_samples, val_skipped = _embed_split(data.val, spec, cache, listener, progress)
        # Mirrored copies double the head's training photos for the price of embedding them once.
        flipped = _embed_split(train_samples, spec, cache, listener, progress, flip=True) if cfg.augment_flip else None
    except InterruptedError:
        raise TrainingStopped("Stopped before any model was trained.") from None
    skipped.update(val_skipped)
    timings["embed_seconds"] = time.perf_counter() - t0
    computed = train_emb.computed + val_emb.computed + (flipped[0].computed if flipped else 0)
    embed_rate = computed / timings["embed_seconds"] if computed else 0.0
    head_x = np.concatenate([train_emb.vectors, flipped[0].vectors]) if flipped else train_emb.vectors
    head_samples = train_samples + (flipped[1] if flipped else [])

    y_train = np.array([s.label for s in head_samples])
    y_val = np.array([s.label for s in val_samples])
    has_val = len(val_samples) > 0
    weights = class_weights(y_train, n_classes)
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
    one_hot = lambda y: keras.utils.to_categorical(y, n_classes)  # noqa: E731

    t1 = time.perf_counter()
    reproducible(cfg.seed)  # here, not earlier: a cold cache builds a backbone first, which draws random numbers
    listener.on_stage(STAGE_HEAD, {"epochs": cfg.epochs})
    devices = strategy()  # one for the run: a model is compiled and fitted under the strategy it was built in
    with devices.scope():
        head = build_head(spec.feature_dim, n_classes, cfg.dropout)
        head.compile(keras.optimizers.Adam(cfg.learning_rate), loss=loss, metrics=["accuracy"])
    relay = _listener_callback(listener, STAGE_HEAD, cfg.epochs)
    callbacks = [relay, keras.callbacks.EarlyStopping(monitor="val_loss" if has_val else "loss",
                                                      patience=cfg.patience)]
    head.fit(head_x, one_hot(y_train), batch_size=cfg.batch_size, epochs=cfg.epochs,
             validation_data=(val_emb.vectors, one_hot(y_val)) if has_val else None,
             class_weight=weights, callbacks=callbacks, verbose=0, shuffle=True)
    timings["head_seconds"] = time.perf_counter() - t1
    best_epoch = {STAGE_HEAD: relay.best[1] if relay.best else 0}
    stopped = relay.stopped

    with devices.scope():
        model = build_classifier(spec, n_classes, cfg.dropout)
        model.get_layer("predictions").set_weights(head.get_layer("predictions").get_weights())
    val_probs = head.predict(val_emb.vectors, verbose=0) if has_val else np.zeros((0, n_classes))

    if cfg.unfreeze_blocks > 0 and not stopped:
        t2 = time.perf_counter()
        listener.on_stage(STAGE_FINETUNE, {"epochs": cfg.finetune_epochs, "blocks": cfg.unfreeze_blocks})
        head_val_loss = relay.best[0] if has_val and relay.best else None
        relay = _finetune(model, spec, cfg, train_samples, val_samples, weights, loss, listener, head_val_loss,
                          devices)
        stopped = relay.stopped
        best_epoch[STAGE_FINETUNE] = relay.best[1] if relay.best else 0  # 0: no epoch beat the stage-1 model
        timings["finetune_seconds"] = time.perf_counter() - t2
        if has_val:
            val_probs = model.predict(_dataset(val_samples, spec.input_size, cfg.batch_size, n_classes),
                                      verbose=0)
    timings["train_seconds"] = time.perf_counter() - t0
    return TrainResult(model, data.class_names, spec.input_size, val_probs, val_samples, stopped,
                       skipped, timings, embed_rate, best_epoch)


class TrainingStopped(RuntimeError):
    """The user stopped the run before there was any model to keep."""


def _finetune(model, spec, cfg: TrainConfig, train_samples, val_samples, weights, loss, listener,
              head_val_loss: float | None, devices):
    import keras

    n_classes = model.output_shape[-1]
    with devices.scope():
        set_trainable_blocks(spec, model.get_layer("backbone"), cfg.unfreeze_blocks)
        model.compile(keras.optimizers.Adam(cfg.finetune_learning_rate), loss=loss, metrics=["accuracy"])
    train_ds = _dataset(train_samples, spec.input_size, cfg.batch_size, n_classes, augment=_augmenter(cfg),
                        shuffle_seed=cfg.seed)
    val_ds = _dataset(val_samples, spec.input_size, cfg.batch_size, n_classes) if val_samples else None
    # Snapshot after freezing: Keras orders weights by trainability, so restore in the same configuration.
    baseline = (head_val_loss, 0, model.get_weights()) if val_ds is not None and head_val_loss is not None else None
    relay = _listener_callback(listener, STAGE_FINETUNE, cfg.finetune_epochs, baseline)
    callbacks = [relay, keras.callbacks.EarlyStopping(monitor="val_loss" if val_ds else "loss",
                                                      patience=max(2, cfg.patience // 2))]
    model.fit(train_ds, validation_data=val_ds, epochs=cfg.finetune_epochs, class_weight=weights,
              callbacks=callbacks, verbose=0)
    return relay


def _augmenter(cfg: TrainConfig) -> Augmentation | None:
    """The random flips/rotations/zooms/contrast chosen in the settings, or None."""
    choice = Augmentation(cfg.augment_flip, cfg.augment_rotation, cfg.augment_zoom, cfg.augment_contrast)
    return choice if choice != Augmentation(False, False, False, False) else None


def _dataset(samples: list[Sample], size: int, batch_size: int, n_classes: int, *,
             augment: Augmentation | None = None, shuffle_seed: int | None = None):
    """tf.data pipeline streaming photos from disk: decode and augment in parallel, batch, prefetch."""
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
        return tf.ensure_shape(pixels, (size, size, 3))

    if augment is None:
        ds = ds.map(lambda p, y: (load(p), y), num_parallel_calls=tf.data.AUTOTUNE)
    else:  # a seed per photo, new each epoch, drawn in order: augmented photos are the same whatever runs first
        seeds = tf.data.Dataset.random(seed=shuffle_seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda item, seed: (augment_photo(load(item[0]), seed, augment), item[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
