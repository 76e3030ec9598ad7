"""The training engine end to end with the real offline backbone: embed, train, save, export, CLI."""

import json
import time
from pathlib import Path

import numpy as np
import pytest

from core import jobs
from core.__main__ import main as cli
from core.embed import EmbeddingCache, embed_files
from core.export import export_tflite, tflite_agreement
from core.backbones import get_backbone
from core.predict import Classifier
from core.predictor import load_predictor
from core.runs import data_from_folders, data_from_project, train_and_save
from core.store import RunRecord
from core.train import SilentListener, TrainConfig, TrainData, class_weights, train
from tests.photos import class_photo, write_image_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_image_folder(root / "train", {"stripes": 16, "blobs": 16})
    write_image_folder(root / "val", {"stripes": 6, "blobs": 6}, offset=100)
    return root


@pytest.fixture(scope="module")
def trained_run(folders, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    train_and_save(data_from_folders(folders / "train", folders / "val"), TrainConfig(epochs=8), run_dir)
    return run_dir


def test_class_weights_balance_classes():
    weights = class_weights([0, 0, 0, 1], 2)
    assert weights[1] == pytest.approx(3 * weights[0])


def test_training_refuses_a_single_class(folders):
    data = data_from_folders(folders / "train")
    with pytest.raises(ValueError, match="at least two classes"):
        train(TrainData(["only"], [s for s in data.train if s.label == 0], []), TrainConfig())


def test_run_folder_has_a_safe_loading_model(trained_run):
    assert sorted(p.name for p in trained_run.iterdir()) == ["evaluation.json", "labels.txt", "metrics.json",
                                                              "model.keras"]
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["val_accuracy"] >= 0.9 and metrics["images_used"] == 44 and metrics["images_rejected"] == 0
    classifier = Classifier.load(trained_run)  # safe_mode=True: no Lambda layers, no custom code
    prediction = load_predictor(trained_run).predict_images([class_photo(1, 500)], top_k=2)[0]
    assert classifier.class_names == ["blobs", "stripes"] and prediction.label == "blobs"
    heat = classifier.gradcam(class_photo(0, 501))
    assert heat.shape == (classifier.input_size,) * 2 and 0 <= heat.min() and heat.max() <= 1


def test_tflite_exports_predict_like_keras(trained_run, folders):
    photos = sorted((folders / "val").glob("*/*.jpg"))
    float_path = export_tflite(trained_run)
    assert tflite_agreement(trained_run, float_path, photos) == 1.0
    quant_path = export_tflite(trained_run, quantize=True)
    assert quant_path.stat().st_size < float_path.stat().st_size / 2
    assert tflite_agreement(trained_run, quant_path, photos) >= 0.9


def test_embeddings_are_cached_per_content(folders, tmp_path):
    spec = get_backbone("efficientnet_lite0")
    paths = sorted((folders / "train").glob("*/*.jpg"))[:5]
    shas = [f"sha-{p.name}" for p in paths]
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    first = embed_files(paths, shas, spec, cache=cache)
    again = embed_files(paths, shas, spec, cache=cache)
    assert first.computed == 5 and again.computed == 0
    np.testing.assert_allclose(first.vectors, again.vectors)
    keras_path = embed_files(paths, shas, spec, cache=EmbeddingCache(tmp_path / "k.sqlite"), engine="keras")
    np.testing.assert_allclose(first.vectors, keras_path.vectors, atol=2e-3, rtol=2e-2)


def test_unreadable_photos_are_reported_not_fatal(folders, tmp_path):
    bad = tmp_path / "train" / "blobs" / "broken.jpg"
    write_image_folder(tmp_path / "train", {"stripes": 4, "blobs": 4})
    bad.write_bytes(b"not a jpeg")
    result = train(data_from_folders(tmp_path / "train", val_split=0.0), TrainConfig(epochs=2))
    assert list(result.skipped) == [str(bad)]


class StopAfter(SilentListener):
    def __init__(self, batches: int):
        self.batches, self.seen, self.stages = batches, 0, []

    def on_stage(self, stage, info):
        self.stages.append(stage)

    def on_batch(self, stage, epoch, batch, batches, logs):
        if stage == "fine-tuning":
            self.seen += 1

    def should_stop(self):
        return self.seen >= self.batches


def test_finetuning_stops_between_batches_and_keeps_a_model(folders):
    listener = StopAfter(batches=1)
    cfg = TrainConfig(epochs=3, unfreeze_blocks=2, finetune_epochs=3, batch_size=8)
    result = train(data_from_folders(folders / "train", folders / "val"), cfg, listener)
    assert listener.stages == ["embedding", "head", "fine-tuning"]
    assert result.stopped and listener.seen == 1
    assert result.val_probabilities.shape == (12, 2)


def test_background_job_trains_and_reports(project, folders):
    from core.ingest import import_folder

    import_folder(project, folders / "train")
    run_id = jobs.start_training(project, TrainConfig(epochs=4))
    with pytest.raises(jobs.JobRefused):
        jobs.start_training(project, TrainConfig())
    deadline = time.time() + 240
    while (run := jobs.refresh(project, run_id)).status in jobs.ACTIVE and time.time() < deadline:
        time.sleep(1)
    assert run.status == "completed", run.error
    assert run.summary["val_accuracy"] is not None and (run.dir / "model.keras").exists()
    assert [e["stage"] for e in project.epochs(run_id)][0] == "head"
    assert jobs.active_run(project) is None


def test_vanished_worker_is_marked_failed(project, monkeypatch):
    run_id = project.create_run(TrainConfig().to_dict())
    project.update_run(run_id, status="running", pid=2**22 + 12345)  # no such process
    monkeypatch.setattr(time, "time", lambda: 10**10)  # past the start-up grace period
    run: RunRecord = jobs.refresh(project, run_id)
    assert run.status == "failed" and "ended unexpectedly" in run.error


def test_project_data_follows_store_split(project, folders):
    from core.ingest import import_folder

    import_folder(project, folders / "train")
    data = data_from_project(project)
    assert data.class_names == ["blobs", "stripes"]
    assert len(data.train) + len(data.val) == 32
    assert {s.path for s in data.val} == {r.path for r in project.images(split="val")}


def test_cli_train_evaluate_predict_export(folders, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli(["train", str(folders / "train"), "--out", str(run_dir), "--val-dir", str(folders / "val"),
                "--epochs", "6"]) == 0
    assert json.loads(capsys.readouterr().out)["val_accuracy"] >= 0.9
    assert cli(["evaluate", str(run_dir), str(folders / "val"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 12 and len(report["confusion"]) == 2
    photo = next((folders / "val" / "blobs").glob("*.jpg"))
    assert cli(["predict", str(run_dir), str(photo), "--top-k", "1"]) == 0
    assert "blobs" in capsys.readouterr().out
    assert cli(["export", str(run_dir), "--format", "tflite"]) == 0
    assert (run_dir / "model.tflite").exists()


def test_cli_bad_input_is_one_clear_line(tmp_path, capsys):
    assert cli(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1
    assert cli(["evaluate", str(tmp_path), str(tmp_path)]) == 2
