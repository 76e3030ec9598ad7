"""Batches of cached boundary activations: one view of every photo per epoch, the same for the same seed."""

import numpy as np

from core.model.cached_tuning import ViewBatches


def epoch_rows(batches: ViewBatches) -> list[tuple[int, int]]:
    """(photo, view) pairs of one epoch, read back from the batches' contents."""
    rows = []
    for i in range(len(batches)):
        x, y = batches[i]
        assert x.dtype == np.float32 and y.shape == (len(x), 3)
        rows += [(int(v[0]) // 10, int(v[0]) % 10) for v in x]  # activation value = 10 * photo + view
    return rows


def views(n_photos: int, n_views: int) -> list[np.ndarray]:
    return [np.array([[10 * p + v] for p in range(n_photos)], dtype=np.float16) for v in range(n_views)]


def test_every_photo_once_per_epoch_in_a_view_drawn_afresh():
    labels = np.arange(30) % 3
    batches = ViewBatches(views(30, 4), labels, 3, batch_size=8, seed=0)
    assert len(batches) == 4
    first = epoch_rows(batches)
    assert sorted(p for p, _ in first) == list(range(30))
    x, y = batches[0]
    assert [int(v[0]) // 10 % 3 for v in x] == list(y.argmax(axis=1))  # labels travel with their photos
    batches.on_epoch_end()
    second = epoch_rows(batches)
    assert sorted(p for p, _ in second) == list(range(30))
    assert first != second and len({v for _, v in first + second}) == 4  # new order and views, all views used

    again = ViewBatches(views(30, 4), labels, 3, batch_size=8, seed=0)
    assert epoch_rows(again) == first  # same seed: same batches
    assert epoch_rows(ViewBatches(views(30, 4), labels, 3, batch_size=8, seed=1)) != first
