"""The novelty check: the score, its reference and threshold, the run folder, the exported outputs, the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest

from core.model import novelty
from core.model.novelty import (NOVELTY_FILE, NoveltyReference, NoveltySettings, auroc, build_reference, fit_novelty,
                          hidden_class_scores, load_novelty, save_novelty, set_threshold, threshold_for, unit)


def test_score_is_one_minus_cosine_to_the_kth_nearest_reference_vector():
    reference = NoveltyReference(unit(np.eye(4)).astype(np.float16), np.arange(4), k=2)
    query = np.array([[3.0, 1.0, 0.0, 0.0]])  # cos 0.949 to e0, 0.316 to e1, 0 to the rest
    assert reference.scores(query)[0] == pytest.approx(1 - 1 / np.sqrt(10), abs=1e-3)
    assert NoveltyReference(reference.vectors, reference.labels, k=1).scores(query)[0] == \
        pytest.approx(1 - 3 / np.sqrt(10), abs=1e-3)
    assert reference.scores(query * 100)[0] == pytest.approx(reference.scores(query)[0], abs=1e-6)  # scale-free
    assert reference.scores(np.zeros((0, 4))).shape == (0,)


def test_reference_keeps_both_views_as_float16_unit_rows_and_fits_its_byte_budget():
    rng = np.random.default_rng(0)
    plain, mirrored = rng.normal(size=(300, 64)), rng.normal(size=(300, 64))
    labels = np.repeat(np.arange(3), 100)
    whole = build_reference([plain, mirrored], labels)
    assert whole.vectors.shape == (600, 64) and whole.vectors.dtype == np.float16
    assert np.allclose(np.linalg.norm(whole.vectors.astype(np.float32), axis=1), 1, atol=1e-3)
    assert (whole.labels == np.tile(labels, 2)).all()
    capped = build_reference([plain, mirrored], labels, max_bytes=100 * 64 * 2)
    assert capped.vectors.nbytes <= 100 * 64 * 2 and len(capped.vectors) == 100
    assert set(capped.labels) == {0, 1, 2}
    # the capped reference is a sample of the views' rows taken as if they were one array, gathered view by view
    rows = np.sort(np.random.default_rng(novelty.SEED).choice(600, 100, replace=False))
    assert np.array_equal(capped.vectors, unit(np.concatenate([plain, mirrored])[rows]).astype(np.float16))
    assert (capped.labels == np.tile(labels, 2)[rows]).all() and (capped.sources == np.tile(np.arange(300), 2)[rows]).all()


def test_threshold_flags_the_chosen_share_of_validation_photos():
    scores = np.linspace(0, 1, 101)
    assert (scores > threshold_for(scores, 0.05)).mean() <= 0.05
    assert (scores > threshold_for(scores, 0.05)).mean() >= 0.04
    assert threshold_for(np.zeros(0)) == 2.0  # no validation photos: nothing flagged


def test_hiding_a_class_makes_its_photos_unfamiliar():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 32)) * 3
    train = np.concatenate([c + rng.normal(size=(40, 32)) * 0.3 for c in centres])
    labels = np.repeat(np.arange(3), 40)
    val = np.concatenate([c + rng.normal(size=(10, 32)) * 0.3 for c in centres])
    val_labels = np.repeat(np.arange(3), 10)
    reference, settings = fit_novelty([train], labels, val, val_labels)
    hidden = hidden_class_scores(reference, val, val_labels)
    assert hidden.min() > max(settings.val_scores)
    assert settings.caught_hidden() == 1.0 and settings.false_alarms() <= 0.05
    assert auroc(settings.val_scores, settings.hidden_scores) == 1.0


def test_auroc_counts_ties_as_half_and_matches_its_definition():
    assert auroc([0, 1], [0.5, 2]) == pytest.approx(0.75)
    assert auroc([1, 1], [1]) == pytest.approx(0.5)
    rng = np.random.default_rng(2)
    known, unknown = rng.normal(size=50), rng.normal(size=40) + 0.5
    pairs = (unknown[None, :] > known[:, None]).mean() + 0.5 * (unknown[None, :] == known[:, None]).mean()
    assert auroc(known, unknown) == pytest.approx(pairs)
    assert auroc([], [1.0]) is None


def test_the_threshold_in_force_is_kept_in_the_run_folder(tmp_path):
    reference, settings = fit_novelty([np.eye(8)[:6]], np.arange(6) % 2, np.eye(8)[6:], np.array([0, 1]))
    save_novelty(tmp_path, reference, settings)
    set_threshold(tmp_path, 0.25)
    loaded_reference, loaded = load_novelty(tmp_path)
    assert loaded.threshold == 0.25 and loaded.suggested == settings.suggested
    assert np.array_equal(loaded_reference.vectors, reference.vectors)
    (tmp_path / NOVELTY_FILE).unlink()
    assert load_novelty(tmp_path) is None
    with pytest.raises(FileNotFoundError):
        set_threshold(tmp_path / "elsewhere", 0.3)


def test_exported_model_has_probabilities_and_novelty_outputs_like_the_numpy_score(tmp_path):
    import keras

    from core.model.embed import LiteRTRunner, tflite_bytes
    from core.model.novelty import novelty_output

    inputs = keras.Input((16, 16, 3), name="pixels")
    pooled = keras.layers.GlobalAveragePooling2D(name="pooled")(keras.layers.Conv2D(8, 3, name="conv")(inputs))
    probabilities = keras.layers.Dense(3, activation="softmax", name="predictions")(pooled)
    features = keras.Model(inputs, pooled)
    pixels = np.random.default_rng(3).uniform(0, 255, (6, 16, 16, 3)).astype(np.float32)
    reference = build_reference([features.predict(pixels[:4], verbose=0)], np.arange(4), k=2)
    model = keras.Model(inputs, {"probabilities": probabilities, "novelty": novelty_output(pooled, reference)})
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)  # built-in layers and ops only
    out = loaded.predict(pixels, verbose=0)
    expected = reference.scores(features.predict(pixels, verbose=0))
    assert out["novelty"].shape == (6,) and out["probabilities"].shape == (6, 3)
    assert np.allclose(out["novelty"], expected, atol=2e-3)
    probs, novelty = LiteRTRunner(tflite_bytes(loaded, 16)).outputs(pixels)
    assert np.allclose(probs, out["probabilities"], atol=1e-5) and np.allclose(novelty, out["novelty"], atol=1e-4)


@pytest.mark.slow
def test_cli_reports_unknown_photos_and_predict_says_not_one_of_the_classes(tmp_path, capsys):
    from core.__main__ import main as cli
    from core.serving.export import _classifier_from_head, save_keras
    from core.serving.predict import Classifier
    from core.serving.predictor import load_predictor
    from core.jobs.pipeline import data_from_folders, train_and_save
    from core.model.train import TrainConfig
    from tests.photos import class_photo, photo, write_image_folder

    write_image_folder(tmp_path / "train", {"stripes": 16, "blobs": 16})
    write_image_folder(tmp_path / "val", {"stripes": 8, "blobs": 8}, offset=100)
    write_image_folder(tmp_path / "test", {"stripes": 10, "blobs": 10}, offset=300)
    unknown = tmp_path / "other" / "any" / "depth"
    unknown.mkdir(parents=True)
    for seed in range(20):
        photo(seed).save(unknown / f"{seed}.jpg")
    run_dir = tmp_path / "run"
    train_and_save(data_from_folders(tmp_path / "train", tmp_path / "val"), TrainConfig(), run_dir, assemble=False)
    settings = NoveltySettings.load(run_dir)
    assert len(settings.val_scores) == 16 and settings.threshold == settings.suggested

    assert cli(["evaluate", str(run_dir), str(tmp_path / "test"), "--json", "--unknown-dir",
                str(tmp_path / "other")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] >= 0.9 and report["n"] == 20  # top-1, whatever the novelty check says
    assert report["unknown"]["caught"] >= 0.9 and report["unknown"]["false_alarms"] <= 0.2
    assert report["unknown"]["auroc"] >= 0.95 and report["unknown"]["photos"] == 20
    assert cli(["evaluate", str(run_dir), str(tmp_path / "test"), "--json"]) == 0
    assert "unknown" not in json.loads(capsys.readouterr().out)

    assert cli(["predict", str(run_dir), str(unknown / "0.jpg"), str(next((tmp_path / "test" / "blobs").iterdir()))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "not one of the classes" in lines[0] and "closest:" in lines[0]
    assert "not one of" not in lines[1] and "blobs" in lines[1]

    save_keras(_classifier_from_head(run_dir), run_dir / "model.keras")  # what the downloads are made of
    pixels = np.stack([np.asarray(class_photo(0, 900).resize((224, 224)), np.float32),
                       np.asarray(photo(7).resize((224, 224)), np.float32)])
    fast = load_predictor(run_dir).outputs(pixels)
    out = Classifier.load(run_dir).model.predict(pixels, verbose=0)
    assert sorted(out) == ["novelty", "probabilities"]
    slow = out["probabilities"], out["novelty"]
    assert np.allclose(fast[1], slow[1], atol=1e-3) and np.allclose(fast[0], slow[0], atol=1e-4)


def test_a_damaged_or_forged_novelty_file_is_refused_with_a_sentence(tmp_path):
    from core.store.run_folder import RunFolderInvalid

    reference, settings = fit_novelty([np.eye(8)[:6]], np.arange(6) % 2, np.eye(8)[6:], np.array([0, 1]))
    save_novelty(tmp_path, reference, settings)
    with pytest.raises(RunFolderInvalid, match="shape"):
        load_novelty(tmp_path, feature_dim=16)  # another backbone's width
    (tmp_path / "novelty.json").write_text('{"threshold": "high", "k": 5}')
    with pytest.raises(RunFolderInvalid, match="threshold"):
        load_novelty(tmp_path)
    settings.save(tmp_path)
    np.savez(tmp_path / NOVELTY_FILE, reference=np.array([["a"]]))
    with pytest.raises(RunFolderInvalid):
        load_novelty(tmp_path)
