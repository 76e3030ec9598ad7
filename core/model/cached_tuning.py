"""What fine-tuning on cached boundary activations feeds the top blocks, and what it reads back from them.

Each photo has several cached views (as is, mirrored, zoomed in, both). An epoch shows every training photo
once, in one of its views drawn afresh each epoch: the views act as augmentation at a quarter of the cost of
showing all of them every epoch (measured on groceries25: the same accuracy per epoch, 4x faster). After the
epochs, the tuned blocks' pooled features feed the convex head solver again (`core.model.head`): a head solved on the
features the blocks learned often beats the Dense layer trained alongside them (groceries25, two blocks: 0.810
against 0.800 validation accuracy, lower loss), not always, so `core.model.train` keeps whichever of the two the
validation photos prefer.
"""

from __future__ import annotations

import math
from typing import Sequence

import keras
import numpy as np

PREDICT_BATCH = 128


class ViewBatches(keras.utils.PyDataset):
    """(activations, one-hot labels) batches: each photo once per epoch, in a view and order drawn from the seed
    and the epoch number, so the same photos and settings give the same batches."""

    def __init__(self, views: Sequence[np.ndarray], labels: np.ndarray, n_classes: int, batch_size: int, seed: int):
        super().__init__()
        self.views, self.labels = list(views), np.asarray(labels, dtype=int)
        self.onehot = np.eye(n_classes, dtype=np.float32)
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0
        self._draw()

    def _draw(self) -> None:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.order = rng.permutation(len(self.labels))
        self.view = rng.integers(len(self.views), size=len(self.labels))

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        x = np.stack([self.views[self.view[r]][r] for r in rows]).astype(np.float32)  # float16 in the cache
        return x, self.onehot[self.labels[rows]]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._draw()


def pooled(features: "keras.Model", activations: np.ndarray) -> np.ndarray:
    """Pooled features of (float16) boundary activations."""
    return features.predict(activations.astype(np.float32), batch_size=PREDICT_BATCH, verbose=0)
