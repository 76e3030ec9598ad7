"""Fine-tuning on one device and under tf.distribute.MirroredStrategy on two logical CPUs, in a fresh process
(logical devices must be set up before TensorFlow starts): prints what tests/test_devices.py compares.

    python -m tests.mirrored_training FOLDER
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from pathlib import Path

import numpy as np


def norm(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """The distance between two lists of weight arrays, as one vector."""
    return float(np.sqrt(sum(np.sum((x.astype(np.float64) - y) ** 2) for x, y in zip(a, b))))


def main(folder: Path) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import core.model.train
    from core.model.backbones import get_backbone
    from core.images import load_rgb
    from core.jobs.pipeline import data_from_folders
    from core.model.train import TrainConfig, train
    from tests.photos import write_image_folder

    write_image_folder(folder / "train", {"stripes": 16, "blobs": 16})
    write_image_folder(folder / "val", {"stripes": 8, "blobs": 8}, offset=100)
    # No validation photos while training: the fine-tuned weights are always kept, so both runs' can be compared.
    data = data_from_folders(folder / "train", val_split=0.0)
    held_out = data_from_folders(folder / "val", val_split=0.0).train
    pixels = np.stack([load_rgb(s.path, get_backbone(TrainConfig().backbone).input_size) for s in held_out])
    cfg = TrainConfig(unfreeze_blocks=1, finetune_epochs=2, finetune_learning_rate=1e-3, batch_size=8,
                      dropout=0.0)  # no dropout: its random masks would differ between the replicas
    one = train(data, cfg).model
    reseeded = train(data, dataclasses.replace(cfg, seed=1)).model  # the yardstick: how far another seed lands
    single = core.model.train.strategy
    core.model.train.strategy = functools.partial(single, "CPU")
    replicas = core.model.train.strategy().num_replicas_in_sync
    two = train(data, cfg).model
    # a fine-tuned model answers {probabilities, novelty}
    probabilities = [m.predict(pixels.astype(np.float32), verbose=0)["probabilities"] for m in (one, two)]
    labels = np.array([s.label for s in held_out])
    backbones = [m.get_layer("backbone").get_weights() for m in (one, two, reseeded)]
    heads = [m.get_layer("predictions").get_weights()[0] for m in (one, two)]
    pretrained = get_backbone(cfg.backbone).build().get_weights()
    print(json.dumps({
        "replicas": replicas,
        "accuracy": [float((p.argmax(1) == labels).mean()) for p in probabilities],
        "probability_difference": float(np.abs(probabilities[0] - probabilities[1]).max()),
        # the tuned blocks: how far apart the two runs' weights are, relative to how far fine-tuning moved them (norms
        # over all of the backbone's weights: AdamW moves even weights with next to no gradient by about the rate,
        # so single weights say little)
        "backbone_difference": norm(backbones[0], backbones[1]) / norm(backbones[0], pretrained),
        "other_seed_difference": norm(backbones[0], backbones[2]) / norm(backbones[0], pretrained),
        # the head solved again on the tuned features, relative to its own size
        "head_difference": float(np.linalg.norm(heads[0] - heads[1]) / np.linalg.norm(heads[0])),
    }))

if __name__ == "__main__":
    main(Path(sys.argv[1]))
