"""Fine-tuning's photo loader under op determinism: stateful augmentation layers vs. stateless ops.

Reproducible training calls `enable_op_determinism()`, which makes tf.data run any map function
holding random state one element at a time. Keras' random augmentation layers hold such state,
so the loader used to decode and augment one photo at a time; `core.model.augment` draws from a seed
per photo instead, so the loader stays parallel. Both are measured side by side, with how many
photos were being decoded at once at most.

    python -m bench.bench_loader
"""

from __future__ import annotations

import os
import threading
import time

from bench.common import dataset, table
from core.model import train as training
from core.model.augment import CONTRAST, ROTATION, ZOOM
from core.jobs.pipeline import data_from_folders
from core.model.train import TrainConfig, _dataset

PHOTOS = 64
SIZE = 224


class Concurrency:
    """Wraps the loader's photo reader to count how many reads overlap."""

    def __init__(self, read):
        self.read, self.now, self.most = read, 0, 0
        self.lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            return self.read(*args, **kwargs)
        finally:
            with self.lock:
                self.now -= 1


def keras_layers_dataset(samples, cfg: TrainConfig):
    """The loader as it was: decode, batch, then stateful Keras augmentation layers on each batch."""
    import keras
    import tensorflow as tf

    layers = keras.Sequential([keras.layers.RandomFlip("horizontal", seed=cfg.seed),
                               keras.layers.RandomRotation(ROTATION, seed=cfg.seed),
                               keras.layers.RandomZoom(ZOOM, seed=cfg.seed),
                               keras.layers.RandomContrast(CONTRAST, value_range=(0, 255), seed=cfg.seed)])
    plain = _dataset(samples, SIZE, cfg.batch_size, 2, shuffle_seed=cfg.seed)
    return plain.map(lambda x, y: (layers(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)


def timed(make, counter: Concurrency, repeats: int = 3) -> tuple[float, int]:
    """Best seconds of `repeats` passes over a fresh dataset, and the most photos read at once."""
    best, counter.most = float("inf"), 0
    for _ in range(repeats):
        ds = make()
        start = time.perf_counter()
        for _batch in ds:
            pass
        best = min(best, time.perf_counter() - start)
    return best, counter.most


def main() -> None:
    import tensorflow as tf

    samples = data_from_folders(dataset("flowers5") / "train", val_split=0.0).train[:PHOTOS]
    cfg = TrainConfig()
    counter = Concurrency(training.load_rgb)
    training.load_rgb = counter
    tf.keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()
    before = timed(lambda: keras_layers_dataset(samples, cfg), counter)
    after = timed(lambda: _dataset(samples, SIZE, cfg.batch_size, 2, augment=cfg.augment,
                                   shuffle_seed=cfg.seed), counter)
    print(f"{len(samples)} flowers5 photos: decode + augment + batch {cfg.batch_size}, op determinism on, "
          f"{os.cpu_count()} CPU cores, best of 3 passes")
    print(table(["augmentation", "seconds per pass", "photos read at once (most)"],
                [["Keras random layers (stateful)", before[0], before[1]],
                 ["core.model.augment (stateless, seed per photo)", after[0], after[1]]]))
    print(f"stateless is {before[0] / after[0]:.2f}x faster")


if __name__ == "__main__":
    main()
