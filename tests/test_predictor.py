"""The fast predictor: backbone LiteRT + numpy head agrees with the saved Keras model, falls back by what a run holds."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from core.serving.export import export_tflite
from core.serving.predict import Classifier
from core.serving.export import TFLITE_FILES
from core.model.head import HEAD_FILE
from core.serving.predictor import Predictor, load_predictor, model_file
from core.store.run_folder import RunFolderInvalid
from tests.photos import class_photo

pytestmark = pytest.mark.slow


def copy_run(run_dir: Path, tmp_path: Path, *names: str) -> Path:
    target = tmp_path / "run"
    target.mkdir()
    for name in names:
        shutil.copy(run_dir / name, target / name)
    return target


def photos() -> list:
    return [class_photo(label, 300 + i, size=(260, 190)) for label in (0, 1) for i in range(3)]


def test_head_predictor_agrees_with_keras_and_needs_no_keras_file(trained_run, tmp_path):
    head_only = copy_run(trained_run, tmp_path, "labels.txt", "metrics.json", HEAD_FILE)
    predictor = load_predictor(head_only)
    keras = Classifier.load(trained_run)
    assert predictor.kind == "head" and model_file(head_only).name == HEAD_FILE
    assert predictor.class_names == keras.class_names and predictor.input_size == keras.input_size
    from core.images import load_rgb

    pixels = np.stack([load_rgb(img, keras.input_size) for img in photos()]).astype(np.float32)
    fast, slow = predictor.probabilities(pixels), keras.probabilities(pixels)
    assert fast.shape == (6, 2) and np.allclose(fast.sum(axis=1), 1, atol=1e-5)
    assert np.abs(fast - slow).max() < 1e-3
    verdicts = predictor.predict_images(photos(), top_k=2)
    assert [p.label for p in verdicts] == ["stripes"] * 3 + ["blobs"] * 3


def test_predictor_is_safe_to_share_between_threads(trained_run, tmp_path):
    predictor = load_predictor(copy_run(trained_run, tmp_path, "labels.txt", "metrics.json", HEAD_FILE))
    from core.images import load_rgb

    batches = [np.stack([load_rgb(img, predictor.input_size)]).astype(np.float32) for img in photos()]
    expected = [predictor.probabilities(b) for b in batches]
    results: dict[int, list] = {}

    def worker(n: int) -> None:
        results[n] = [predictor.probabilities(b) for b in batches for _ in range(3)]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in results.values():
        assert all(np.allclose(g, expected[i // 3], atol=1e-6) for i, g in enumerate(got))


def test_without_a_head_the_tflite_file_then_keras_serve(trained_run, tmp_path):
    keras_only = copy_run(trained_run, tmp_path, "labels.txt", "metrics.json", "model.keras")
    assert load_predictor(keras_only).kind == "keras"
    export_tflite(keras_only)
    predictor = load_predictor(keras_only)
    assert predictor.kind == "tflite" and model_file(keras_only).name == TFLITE_FILES[False]
    paths = []
    for i, img in enumerate(photos()):
        paths.append(tmp_path / f"{i}.jpg")
        img.save(paths[-1])
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    probabilities, ok = predictor.predict_paths([paths[0], tmp_path / "broken.jpg", *paths[1:]])
    assert ok == [0, 2, 3, 4, 5, 6] and probabilities.shape == (6, 2)
    assert [predictor.class_names[i] for i in probabilities.argmax(axis=1)] == ["stripes"] * 3 + ["blobs"] * 3


def test_a_folder_without_a_model_or_with_a_wrong_head_is_refused(trained_run, tmp_path):
    empty = copy_run(trained_run, tmp_path, "labels.txt", "metrics.json")
    with pytest.raises(RunFolderInvalid, match="holds no model"):  # the one error pages catch
        load_predictor(empty)
    np.savez(empty / HEAD_FILE, kernel=np.zeros((7, 2), np.float32), bias=np.zeros(2, np.float32))
    with pytest.raises(RunFolderInvalid, match="needs"):
        load_predictor(empty)


def test_photos_on_disk_are_predicted_a_small_batch_at_a_time(tmp_path):
    """`python -m core evaluate` on 10,000 photos decoded them all into one array; now memory stays flat."""
    paths = []
    for i in range(40):
        paths.append(tmp_path / f"{i}.png")
        class_photo(i % 2, i).save(paths[-1])
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    paths.insert(7, tmp_path / "broken.jpg")
    batches = []

    def forward(pixels):
        batches.append(len(pixels))
        return np.stack([np.full(2, pixels[i].mean()) for i in range(len(pixels))])

    probabilities, ok = Predictor(["blobs", "stripes"], 32, forward, "head").predict_paths(paths)
    assert ok == [i for i in range(41) if i != 7] and probabilities.shape == (40, 2)
    assert max(batches) <= 16 and sum(batches) == 40
    from core.images import load_rgb
    assert np.allclose(probabilities[:, 0], [load_rgb(paths[i], 32).mean() for i in ok])


def test_many_photos_on_disk_are_scored_a_bounded_batch_at_a_time(tmp_path):
    """`python -m core evaluate` on 10,000 photos once decoded them all into one batch (about 6 GB at 224 px): the
    forward pass never sees more than PATH_BATCH photos, and the answers come back in order, unreadable ones out."""
    from core.serving import predictor as predictor_module
    from tests.photos import photo

    paths = []
    for i in range(40):
        path = tmp_path / f"{i}.jpg"
        photo(i, (64, 48)).save(path) if i != 7 else path.write_bytes(b"not a photo")
        paths.append(path)
    seen = []

    def forward(pixels):
        seen.append(len(pixels))
        brightness = pixels.mean(axis=(1, 2, 3)) / 255  # a row per photo, told apart
        return np.stack([brightness, 1 - brightness], axis=1)

    model = predictor_module.Predictor(["a", "b"], 32, forward, "head")
    probabilities, ok = model.predict_paths(paths)
    assert max(seen) <= predictor_module.PATH_BATCH and sum(seen) == 39
    assert ok == [i for i in range(40) if i != 7] and len(probabilities) == 39
    alone = [model.predict_paths([paths[i]])[0][0] for i in (0, 39)]
    np.testing.assert_allclose([probabilities[0], probabilities[-1]], alone)
