"""Heat maps as class activation maps from LiteRT files: exact for the app's models (the map's mean is the class
score), the same for a head-only run and its fine-tuned form, joined backbones summed, and no Keras to read them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.model.backbones import get_backbone
from core.model.head import HEAD_FILE, LinearHead
from core.serving.heatmap import (RUN_MAP_FILE, NotConverted, centred, combine, load_heat_mapper, prepare, ready,
                          run_map_model)
from core.images import load_rgb
from core.serving.predictor import load_predictor
from tests.photos import class_photo

ROOT = Path(__file__).resolve().parents[1]
LITE0 = "efficientnet_lite0"


def head_run(folder: Path, backbone: str, classes: int = 3, seed: int = 0) -> Path:
    """A head-only run folder with a random head on `backbone`'s embeddings."""
    dim = sum(get_backbone(name).feature_dim for name in backbone.split("+"))
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    LinearHead(rng.normal(0, 0.05, (dim, classes)).astype(np.float32),
               rng.normal(0, 0.1, classes).astype(np.float32)).save(folder / HEAD_FILE)
    (folder / "labels.txt").write_text("".join(f"class {i}\n" for i in range(classes)))
    (folder / "metrics.json").write_text(json.dumps({"backbone": backbone}))
    return folder


def test_combine_resizes_sums_and_scales_the_positive_part():
    small, large = np.array([[1.0, -1.0], [0.0, 3.0]]), np.zeros((3, 3))
    heat = combine([small, large], 8)
    assert heat.shape == (8, 8) and heat.dtype == np.float32
    assert heat.min() == 0.0 and heat.max() == pytest.approx(1.0)
    assert heat[7, 7] > heat[0, 0] > heat[0, 7]  # the strongest corner stays the strongest
    assert not combine([-np.ones((2, 2))], 4).any()  # nothing for the class: no glow, not a division by zero


def test_a_run_without_its_files_is_not_ready(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "empty-cache"))
    run = head_run(tmp_path / "run", LITE0)
    assert not ready(run)
    with pytest.raises(NotConverted):
        load_heat_mapper(run)
    (run / HEAD_FILE).unlink()  # a fine-tuned run reads its own heatmap.tflite
    with pytest.raises(NotConverted, match=RUN_MAP_FILE):
        load_heat_mapper(run)


@pytest.mark.slow
def test_head_only_map_is_the_score_and_matches_the_fine_tuned_form(tmp_path):
    from core.model.train import assemble_classifier

    run = head_run(tmp_path / "head", LITE0)
    prepare(run)
    mapper, predictor = load_heat_mapper(run), load_predictor(run)
    head = LinearHead.load(run / HEAD_FILE)
    image = class_photo(1, 5, size=(260, 190))
    probabilities, maps = mapper.probabilities_and_maps(image)
    pixels = load_rgb(image, 224)[None].astype(np.float32)
    assert np.allclose(probabilities, predictor.probabilities(pixels)[0], atol=1e-4)
    # exact: the map's mean is the class score (less what all classes share), as the Dense layer computes it
    logits = np.log(probabilities)
    assert maps[0].shape == (7, 7, 3)
    assert np.allclose(maps[0].mean(axis=(0, 1)) + head.bias - head.bias.mean(), logits - logits.mean(), atol=1e-3)

    # the same model as a fine-tuned run keeps it: its own LiteRT file gives the same probabilities and maps
    fine = tmp_path / "fine"
    shutil.copytree(run, fine)
    (fine / HEAD_FILE).unlink()
    prepare(fine, assemble_classifier(get_backbone(LITE0), head))
    assert ready(fine) and (fine / RUN_MAP_FILE).exists()
    own_probabilities, own_maps = load_heat_mapper(fine).probabilities_and_maps(image)
    assert np.allclose(own_probabilities, probabilities, atol=1e-4)
    assert len(own_maps) == 1 and np.allclose(own_maps[0], maps[0], atol=1e-3)
    first, second = mapper.heat_map(image, 0), mapper.heat_map(image, 2)
    assert first.shape == (224, 224) and 0 <= first.min() and first.max() <= 1 and not np.allclose(first, second)


@pytest.mark.slow
def test_joined_backbone_maps_are_summed_per_member(tmp_path):
    """A head on two members' joined embeddings: one map per member, their means adding up to the score."""
    run = head_run(tmp_path / "joined", f"{LITE0}+efficientnet_lite2", classes=2)
    prepare(run)
    probabilities, maps = load_heat_mapper(run).probabilities_and_maps(class_photo(0, 3))
    head = LinearHead.load(run / HEAD_FILE)
    logits = np.log(probabilities)
    assert [m.shape for m in maps] == [(7, 7, 2), (9, 9, 2)]  # each member at its own size
    assert np.allclose(sum(m.mean(axis=(0, 1)) for m in maps) + head.bias - head.bias.mean(), logits - logits.mean(),
                       atol=1e-3)


def test_a_joined_keras_classifier_gets_one_class_map_per_member():
    """run_map_model finds each member's pooled feature map through a Concatenate, in the concatenation's order."""
    import keras

    inputs = keras.Input((16, 16, 3))
    small = keras.layers.Conv2D(4, 3, strides=4, name="small")(inputs)                 # 4x4x4
    large = keras.layers.Conv2D(6, 3, strides=2, padding="same", name="large")(inputs)  # 8x8x6
    pooled = [keras.layers.GlobalAveragePooling2D(name=f"pool_{n}")(t) for n, t in (("l", large), ("s", small))]
    joined = keras.layers.Concatenate()(pooled)  # large first: the order of the kernel's rows
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(keras.layers.Dropout(0.1)(joined))
    model = keras.Model(inputs, outputs)
    pixels = np.random.default_rng(1).uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)
    probabilities, large_map, small_map = run_map_model(model)(pixels)
    assert large_map.shape == (2, 8, 8, 3) and small_map.shape == (2, 4, 4, 3)
    kernel, bias = model.get_layer("predictions").get_weights()
    logits = np.log(np.asarray(probabilities))
    score = np.asarray(large_map).mean(axis=(1, 2)) + np.asarray(small_map).mean(axis=(1, 2))
    assert np.allclose(score + bias - bias.mean(), logits - logits.mean(axis=1, keepdims=True), atol=1e-4)
    assert np.allclose(centred(kernel).sum(axis=1), 0, atol=1e-6)


@pytest.mark.slow
def test_reading_a_heat_map_imports_no_keras(tmp_path):
    """The server draws heat maps: once Keras is imported there, every page run pays for it (the live webcam
    stalled). Reading the LiteRT files must not import it."""
    run = head_run(tmp_path / "run", LITE0)
    prepare(run)
    photo = tmp_path / "photo.png"
    class_photo(0, 1).save(photo)
    script = ("import sys; from PIL import Image; from core.serving.heatmap import load_heat_mapper; "
              f"heat = load_heat_mapper({str(run)!r}).heat_map(Image.open({str(photo)!r}).convert('RGB')); "
              "assert heat.shape == (224, 224) and heat.max() == 1; "
              "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
