"""Tampered or broken run folders are refused with one typed error and a sentence, before anything big is
allocated (issue 19, item 5). The contract is core/store/run_folder.py and docs/run-folder.md."""

from __future__ import annotations

import io
import json
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core.model.backbones import get_backbone
from core.serving.predictor import load_predictor
from core.store.run_folder import (FILES, OUTPUTS, RunFolderInvalid, check_outputs, read_evaluation, read_head,
                             read_labels, read_metrics)

LITE0 = get_backbone("efficientnet_lite0")


def head_run(folder: Path, labels=("ants", "bees"), kernel=None, bias=None) -> Path:
    """A head-only run folder as the app writes one (labels, head.npz, metrics.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.txt").write_text("".join(f"{name}\n" for name in labels), encoding="utf-8")
    kernel = np.zeros((LITE0.feature_dim, len(labels)), np.float32) if kernel is None else kernel
    bias = np.zeros(len(labels), np.float32) if bias is None else bias
    np.savez(folder / "head.npz", kernel=kernel, bias=bias)
    (folder / "metrics.json").write_text(json.dumps({"backbone": LITE0.name}))
    return folder


def refused(run_dir: Path, match: str) -> str:
    with pytest.raises(RunFolderInvalid, match=match) as caught:
        load_predictor(run_dir)
    return str(caught.value)


def test_a_head_without_bias_is_refused_with_a_sentence(tmp_path):
    run = head_run(tmp_path / "run")
    np.savez(run / "head.npz", kernel=np.zeros((LITE0.feature_dim, 2), np.float32))
    assert "no `bias` array" in refused(run, "bias")


def test_a_head_of_nan_is_refused(tmp_path):
    run = head_run(tmp_path / "run", kernel=np.full((LITE0.feature_dim, 2), np.nan, np.float32))
    refused(run, "not finite")


def test_metrics_that_are_a_list_are_refused(tmp_path):
    run = head_run(tmp_path / "run")
    (run / "metrics.json").write_text("[1, 2]")
    refused(run, "metrics.json .* holds a list")


def test_a_head_for_other_classes_is_refused(tmp_path):
    run = head_run(tmp_path / "run", labels=("ants", "bees", "wasps"))
    np.savez(run / "head.npz", kernel=np.zeros((LITE0.feature_dim, 2), np.float32), bias=np.zeros(2, np.float32))
    refused(run, r"shape \(1280, 2\); this run needs \(1280, 3\)")


def npy_header(shape: tuple[int, ...], dtype=np.float32) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                  "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def test_an_array_header_claiming_a_huge_shape_is_refused_before_any_allocation(tmp_path):
    run = head_run(tmp_path / "run")
    with zipfile.ZipFile(run / "head.npz", "w") as zf:
        zf.writestr("kernel.npy", npy_header((1280, 10 ** 9)) + b"\0" * 64)
        zf.writestr("bias.npy", npy_header((2,)) + b"\0" * 8)
    tracemalloc.start()
    try:
        refused(run, r"shape \(1280, 1000000000\)")
        assert tracemalloc.get_traced_memory()[1] < 50 * 2 ** 20
    finally:
        tracemalloc.stop()


def test_a_small_compressed_head_unpacking_to_a_gigabyte_is_refused_before_reading(tmp_path):
    """The header says the right shape, but the member unpacks to far more: refused from the zip's own sizes."""
    run = head_run(tmp_path / "run")
    with zipfile.ZipFile(run / "head.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("kernel.npy", "w", force_zip64=True) as member:
            member.write(npy_header((LITE0.feature_dim, 2)))
            zeros = bytes(16 * 2 ** 20)
            for _ in range(64):  # 1 GB of zeros: about 1 MB compressed
                member.write(zeros)
        zf.writestr("bias.npy", npy_header((2,)) + bytes(8))
    assert (run / "head.npz").stat().st_size < 4 * 2 ** 20
    tracemalloc.start()
    try:
        refused(run, "larger than its shape says")
        assert tracemalloc.get_traced_memory()[1] < 50 * 2 ** 20
    finally:
        tracemalloc.stop()


def test_an_object_array_is_never_unpickled(tmp_path):
    run = head_run(tmp_path / "run")
    np.savez(run / "head.npz", kernel=np.array([object()] * 2, dtype=object), bias=np.zeros(2, np.float32))
    refused(run, "not the float numbers")


@pytest.mark.parametrize("labels,match", [
    (b"", "names 0 classes"),
    (b"ants\nants\n", "twice"),
    (b"\xff\xfe\n", "not UTF-8"),
    (b"ants\tbees\n", "written another way"),
    (b"ants\n.hidden\n", "cannot use"),
])
def test_labels_that_the_app_would_not_write_are_refused(tmp_path, labels, match):
    run = head_run(tmp_path / "run")
    (run / "labels.txt").write_bytes(labels)
    with pytest.raises(RunFolderInvalid, match=match):
        read_labels(run)


def test_an_oversized_file_is_refused_without_being_read(tmp_path):
    run = head_run(tmp_path / "run")
    with open(run / "metrics.json", "wb") as f:
        f.truncate(FILES["metrics.json"].max_bytes + 1)  # sparse: no disk used
    with pytest.raises(RunFolderInvalid, match="more than"):
        read_metrics(run)


@pytest.mark.parametrize("evaluation", [
    [1, 2], {"n": 3}, {"n": 1, "accuracy": float("nan"), "class_names": ["a"], "per_class": [{"class": "a"}],
                        "confusion": [[1]], "misclassified": []},
    {"n": 1, "accuracy": 1.0, "class_names": ["a"], "per_class": [{"class": "a"}], "confusion": [[1, 2]],
     "misclassified": []},
    {"n": 2, "accuracy": 0.5, "class_names": ["a", "b"], "confusion": [[1, 1], [0, 0]],
     "per_class": [{"class": c, "precision": 1, "recall": 1, "f1": 1, "support": 1} for c in "ab"],
     "misclassified": [{"path": ["x"], "true": "a", "predicted": "b", "confidence": 0.9}]},
])
def test_an_evaluation_the_app_did_not_write_is_refused(tmp_path, evaluation):
    run = head_run(tmp_path / "run")
    (run / "evaluation.json").write_text(json.dumps(evaluation))
    with pytest.raises(RunFolderInvalid):
        read_evaluation(run)


def test_an_evaluation_the_app_wrote_reads_back(tmp_path):
    from core.serving.evaluate import evaluate_predictions

    run = head_run(tmp_path / "run")
    evaluation = evaluate_predictions([0, 1, 1], np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]]), ["ants", "bees"],
                                      ["a.jpg", "b.jpg", "c.jpg"]).to_dict()
    (run / "evaluation.json").write_text(json.dumps(evaluation))
    assert read_evaluation(run) == evaluation


def test_outputs_follow_the_contract():
    assert check_outputs([(None, 3)], 3, "m") == 0
    assert check_outputs([(None,), (None, 3)], 3, "m") == 1  # a novelty score beside the probabilities
    assert check_outputs([(None, 7, 7, 3), (None, 3), (None, 8, 8, 3)], 3, "m") == 1  # heatmap.tflite's class maps
    assert set(OUTPUTS) == {"probabilities", "novelty", "class_map"}
    for shapes in ([(None, 2)], [(None, 3), (None, 3)], [(None, 3), (None, 4, 1)], [], [(None, 3), (None,), (None,)],
                   [(None, 3), (None, 7, 7, 2)]):
        with pytest.raises(RunFolderInvalid, match="outputs shaped"):
            check_outputs(shapes, 3, "m")


def test_a_good_head_reads_back(tmp_path):
    kernel = np.random.default_rng(0).normal(size=(LITE0.feature_dim, 2)).astype(np.float32)
    run = head_run(tmp_path / "run", kernel=kernel)
    got, bias = read_head(run, LITE0.feature_dim, 2)
    assert got.dtype == np.float32 and np.array_equal(got, kernel) and bias.shape == (2,)


def keras_run(folder: Path, outputs: int, labels: int, lambda_layer: bool = False) -> Path:
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    if lambda_layer:
        x = keras.layers.Lambda(lambda t: t * 2)(x)
    heads = [keras.layers.Dense(2, activation="softmax", name=f"out{i}")(x) for i in range(outputs)]
    model = keras.Model(inputs, heads if outputs > 1 else heads[0])
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    (folder / "labels.txt").write_text("".join(f"class{i}\n" for i in range(labels)))
    (folder / "metrics.json").write_text(json.dumps({"backbone": LITE0.name}))
    return folder


@pytest.mark.parametrize("outputs,labels,lambda_layer,match", [
    (2, 1, False, "outputs shaped"),  # two outputs for one label: an IndexError before
    (1, 2, True, "cannot be loaded"),  # Keras safe mode refuses a Lambda layer: a TypeError or ValueError before
])
def test_a_keras_model_breaking_the_contract_is_refused(tmp_path, outputs, labels, lambda_layer, match):
    run = keras_run(tmp_path / "run", outputs, labels, lambda_layer)
    refused(run, match)


def test_try_it_shows_a_sentence_for_a_tampered_run(project):
    """The page catches the one typed error: no 'This app has encountered an error'."""
    from tests.apptest import no_exceptions, open_app
    from tests.photos import photo_bytes

    run_id = project.create_run({})
    run = head_run(project.run_dir(run_id))
    np.savez(run / "head.npz", kernel=np.zeros((LITE0.feature_dim, 2), np.float32))  # no bias
    project.update_run(run_id, status="completed", summary={"classes": ["ants", "bees"], "val_accuracy": 0.5})
    at = open_app(project.name, "pages/predict.py")
    no_exceptions(at.file_uploader(key="predict_uploads").set_value([("x.jpg", photo_bytes(1), "image/jpeg")]).run())
    errors = " ".join(e.value for e in at.error)
    assert "could not be loaded" in errors and "bias" in errors


@pytest.mark.slow
def test_forty_damaged_tflite_files_are_each_used_or_refused_with_the_typed_error(tmp_path):
    """Fuzzed copies of a small run's model.tflite: once a MemoryError or a RuntimeError escaped the pages."""
    import random

    import keras

    from core.model.embed import tflite_bytes

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3)(inputs))
    base = tflite_bytes(keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)), 32)
    rng, outcomes = random.Random(0), []
    for i in range(40):
        data = bytearray(base)
        for _ in range(rng.choice([1, 4, 16, 64])):
            data[rng.randrange(len(data))] = rng.randrange(256)
        run = tmp_path / f"run{i}"
        run.mkdir()
        (run / "model.tflite").write_bytes(bytes(data))
        (run / "labels.txt").write_text("a\nb\n")
        try:
            predictor = load_predictor(run)
            predictor.probabilities(np.zeros((2, predictor.input_size, predictor.input_size, 3), np.float32))
            outcomes.append("used")
        except RunFolderInvalid:
            outcomes.append("refused")
    assert "refused" in outcomes and len(outcomes) == 40


def test_an_array_of_free_length_is_bounded_by_its_file_limit(tmp_path):
    """novelty.npz's reference rows have no fixed count: a header claiming billions of them is refused unread."""
    from core.store.run_folder import read_npz

    path = tmp_path / "novelty.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("reference.npy", npy_header((10 ** 9, 1280), np.float16) + b"\0" * 64)
    with pytest.raises(RunFolderInvalid, match="claims"):
        read_npz(path, {"reference": (None, 1280)})
