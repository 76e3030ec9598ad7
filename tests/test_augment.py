"""Stateless augmentation: same seed, same photos, whatever order the parallel loader runs in."""

import json

import numpy as np
import pytest

from core.model.augment import Augmentation
from core.jobs.pipeline import data_from_folders
from core.model.train import TrainConfig, _dataset, train
from tests.photos import write_image_folder


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("aug")
    write_image_folder(root, {"stripes": 6, "blobs": 6})
    return data_from_folders(root, val_split=0.0).train


def epochs(samples, seed: int, n: int = 2) -> list[np.ndarray]:
    import keras

    keras.utils.set_random_seed(seed)
    ds = _dataset(samples, 64, 4, 2, augment=Augmentation(), shuffle_seed=seed)
    return [np.concatenate([x.numpy() for x, _ in ds]) for _ in range(n)]


def test_same_seed_gives_the_same_photos_and_each_epoch_new_ones(samples):
    first, again = epochs(samples, 0), epochs(samples, 0)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], epochs(samples, 1)[0])
    assert first[0].shape == (12, 64, 64, 3) and 0 <= first[0].min() and first[0].max() <= 255


def test_augmentation_changes_photos_only_when_asked(samples):
    import keras

    keras.utils.set_random_seed(0)
    plain = np.concatenate([x.numpy() for x, _ in _dataset(samples, 64, 4, 2, shuffle_seed=0)])
    keras.utils.set_random_seed(0)
    none = Augmentation(False, False, False, False)
    same = np.concatenate([x.numpy() for x, _ in _dataset(samples, 64, 4, 2, augment=none, shuffle_seed=0)])
    assert np.allclose(plain, same)


def test_a_runs_augmentation_is_one_setting_read_back_from_new_and_old_runs():
    cfg = TrainConfig(augment=Augmentation(flip=False, zoom=False))
    assert cfg.to_dict()["augment"] == {"flip": False, "rotation": True, "zoom": False, "contrast": True}
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    # as runs recorded before the Augmentation type stored them
    flat = {"backbone": "efficientnet_lite0", "augment_flip": False, "augment_rotation": True, "augment_zoom": False,
            "augment_contrast": True, "seed": 3}
    assert TrainConfig.from_dict(flat) == TrainConfig(augment=Augmentation(flip=False, zoom=False), seed=3)
    assert TrainConfig.from_dict({}).augment == Augmentation() and Augmentation().any
    assert not Augmentation(False, False, False, False).any


@pytest.mark.slow
def test_same_photos_and_settings_give_the_same_fine_tuned_model(samples):
    from core.model.train import TrainData

    data = TrainData(["blobs", "stripes"], samples, [])
    cfg = TrainConfig(finetune_epochs=2, unfreeze_blocks=1)
    first, second = (train(data, cfg).model.get_weights() for _ in range(2))
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
