"""What a user can hope for: the offline default with default settings on real photo sets."""

import pytest

from core.runs import data_from_folders, train_and_save
from core.train import TrainConfig
from tests.conftest import shared_dataset

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name, floor", [("hymenoptera", 0.94), ("flowers5", 0.88)])
def test_default_settings_reach_published_accuracy(name, floor, tmp_path):
    root = shared_dataset(name)
    metrics, _ = train_and_save(data_from_folders(root / "train", root / "val"), TrainConfig(), tmp_path)
    print(f"{name}: validation accuracy {metrics['val_accuracy']:.3f} on {metrics['val_images']} photos")
    assert metrics["val_accuracy"] >= floor
