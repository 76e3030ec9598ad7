"""The training engine end to end with the real offline backbone: embed, train, save, export, CLI."""

import json
import time

import numpy as np
import pytest
from PIL import Image

from core.jobs import server as jobs
from core.jobs import worker

from core.model import preembed
from core.__main__ import main as cli
from core.model.embed import EmbeddingCache, LiteRTRunner, embed_files, embed_views, litert_backbone
from core.serving.export import export_tflite, tflite_agreement
from core.model.backbones import get_backbone
from core.model.head import HEAD_FILE, LinearHead
from core.serving.heatmap import load_heat_mapper
from core.images import load_rgb
from core.serving.predict import Classifier
from core.serving.predictor import load_predictor
from core.jobs.pipeline import data_from_folders, data_from_project, has_model
from core.store.project import RunRecord
from core.model.train import SilentListener, TrainConfig, TrainData, class_weights, train
from tests.photos import class_photo, class_photo_bytes, write_image_folder
from tests.waiting import wait_for

pytestmark = pytest.mark.slow
RUN_SECONDS = 300  # for a run and its downloads in the worker, on a loaded machine


def test_class_weights_balance_classes():
    weights = class_weights([0, 0, 0, 1], 2)
    assert weights[1] == pytest.approx(3 * weights[0])


def test_training_refuses_a_single_class(folders):
    data = data_from_folders(folders / "train")
    with pytest.raises(ValueError, match="at least two classes"):
        train(TrainData(["only"], [s for s in data.train if s.label == 0], []), TrainConfig())


def test_run_folder_has_a_safe_loading_model(trained_run):
    assert sorted(p.name for p in trained_run.iterdir()) == ["evaluation.json", "head.npz", "labels.txt",
                                                              "metrics.json", "model.keras", "model.tflite",
                                                              "model_quant.tflite", "novelty.json", "novelty.npz",
                                                              "photos.json"]
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["val_accuracy"] >= 0.9 and metrics["images_used"] == 44 and metrics["images_rejected"] == 0
    classifier = Classifier.load(trained_run)  # safe_mode=True: no Lambda layers, no custom code
    prediction = load_predictor(trained_run).predict_images([class_photo(1, 500)], top_k=2)[0]
    assert classifier.class_names == ["blobs", "stripes"] and prediction.label == "blobs"
    heat = load_heat_mapper(trained_run).heat_map(class_photo(0, 501))
    assert heat.shape == (classifier.input_size,) * 2 and 0 <= heat.min() and heat.max() <= 1


def test_each_class_glows_on_the_half_of_the_photo_that_shows_it(trained_run):
    """Stripes on the left, blobs on the right: each class's heat map is hotter on its own half."""
    photo = Image.new("RGB", (224, 224))
    photo.paste(class_photo(0, 600, (112, 224)), (0, 0))
    photo.paste(class_photo(1, 601, (112, 224)), (112, 0))
    mapper = load_heat_mapper(trained_run)
    stripes = mapper.heat_map(photo, mapper.class_names.index("stripes"))
    blobs = mapper.heat_map(photo, mapper.class_names.index("blobs"))
    assert stripes[:, :112].mean() > 2 * stripes[:, 112:].mean()
    assert blobs[:, 112:].mean() > 2 * blobs[:, :112].mean()


def test_head_file_with_the_litert_backbone_predicts_like_the_keras_model(trained_run, folders):
    """The run-folder contract: softmax(backbone embedding @ kernel + bias), averaged over the photo and its mirror
    image (test_time_mirror in metrics.json), is the saved model's answer."""
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["test_time_mirror"] is True and metrics["val_accuracy"] == metrics["val_accuracy_averaged"]
    head = LinearHead.load(trained_run / HEAD_FILE)
    assert head.kernel.dtype == head.bias.dtype == np.float32
    assert head.kernel.shape == (get_backbone(metrics["backbone"]).feature_dim, 2) and head.bias.shape == (2,)
    classifier = Classifier.load(trained_run)
    pixels = np.stack([load_rgb(p, classifier.input_size) for p in sorted((folders / "val").glob("*/*.jpg"))])
    embed = LiteRTRunner(litert_backbone(get_backbone(metrics["backbone"])))
    expected = (head.probabilities(embed(pixels.astype(np.float32)))
                + head.probabilities(embed(np.ascontiguousarray(pixels[:, :, ::-1], dtype=np.float32)))) / 2
    np.testing.assert_allclose(expected, classifier.probabilities(pixels), atol=2e-3)
    predictor = load_predictor(trained_run)
    assert predictor.kind == "head"
    np.testing.assert_allclose(predictor.probabilities(pixels), expected, atol=1e-5)
    np.testing.assert_allclose(predictor.probabilities(pixels[:, :, ::-1]), expected, atol=1e-5)


def test_head_search_reports_the_strengths_tried_and_picks_by_cross_validation(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert 2 <= metrics["head_strengths_tried"] <= 8 and metrics["head_cv_folds"] == 4
    assert metrics["train_seconds"] >= metrics["head_seconds"] > 0


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
    result = train(data_from_folders(tmp_path / "train", val_split=0.0), TrainConfig())
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
    cfg = TrainConfig(unfreeze_blocks=2, finetune_epochs=3, batch_size=8)
    result = train(data_from_folders(folders / "train", folders / "val"), cfg, listener)
    assert listener.stages == ["embedding", "head", "fine-tuning"]
    assert result.stopped and listener.seen == 1
    assert result.val_probabilities.shape == (12, 2)


def test_finetuning_that_never_beats_the_head_stops_after_patience(folders):
    """Early stopping stops: with a learning rate of zero no epoch improves on the first, so it and `patience` more
    run, and none beats the head."""
    epochs = []

    class Epochs(SilentListener):
        def on_epoch(self, stage, epoch, total, logs):
            epochs.append((stage, epoch))

    cfg = TrainConfig(unfreeze_blocks=1, finetune_epochs=6, finetune_learning_rate=0.0, patience=2, batch_size=16)
    result = train(data_from_folders(folders / "train", folders / "val"), cfg, Epochs())
    assert [e for stage, e in epochs if stage == "fine-tuning"] == [1, 2, 3]
    assert result.best_epoch["fine-tuning"] == 0, "the head's weights are kept"
    assert result.head_refit, "the head it keeps then learns the validation photos too"


def test_a_kept_head_learns_the_validation_photos_too_and_keeps_the_figures_measured_before(folders):
    """The validation photos choose and measure; the saved head is then solved again with them at the strength chosen
    without them. Its figures stay those of the head that had not seen them."""
    data = data_from_folders(folders / "train", folders / "val")
    apart, refit = train(data, TrainConfig(refit=False)), train(data, TrainConfig())
    assert refit.head_refit and not apart.head_refit
    np.testing.assert_array_equal(refit.val_probabilities, apart.val_probabilities)
    assert refit.search.strength == apart.search.strength
    assert not np.allclose(refit.head.kernel, apart.head.kernel)
    val = embed_views([s.path for s in data.val], [s.sha256 for s in data.val], get_backbone("efficientnet_lite0"),
                      (False,))[0].vectors
    labels = np.array([s.label for s in data.val])
    sure = lambda head: head.probabilities(val)[np.arange(len(labels)), labels].mean()  # noqa: E731
    assert sure(refit.head) > sure(apart.head), "it learned them"
    nothing_to_add = train(TrainData(data.class_names, data.train, []), TrainConfig())
    assert not nothing_to_add.head_refit


def test_background_job_is_usable_first_then_assembles_downloads(project, folders):
    from core.intake.ingest import import_folder

    import_folder(project, folders / "train")
    run_id = jobs.start_training(project, TrainConfig())
    with pytest.raises(jobs.JobRefused):
        jobs.start_training(project, TrainConfig())
    run = wait_for(lambda: (r := jobs.refresh(project, run_id)).status not in jobs.ACTIVE and r, "the run to end",
                   RUN_SECONDS)
    assert run.status == "completed", run.error
    assert has_model(run) and (run.dir / HEAD_FILE).exists() and (run.dir / "labels.txt").exists()
    assert run.summary["val_accuracy"] is not None
    assert [e["stage"] for e in project.epochs(run_id)] == ["head"] * 8
    assert jobs.active_run(project) is None
    wait_for(lambda: jobs.downloads(project, run) == "ready", "the downloads", RUN_SECONDS)
    assert Classifier.load(run.dir).class_names == ["blobs", "stripes"]


def test_stop_before_the_worker_starts_the_run(project, folders):
    from core.intake.ingest import import_folder

    import_folder(project, folders / "train")
    project.set_backbone("efficientnet_lite0")
    run_id = project.create_run(TrainConfig().to_dict())
    project.request_stop(run_id)
    usable, _ = worker.run_job(project, run_id)
    run = project.run(run_id)
    assert not usable and run.status == "stopped" and not has_model(run)


def test_background_embedding_makes_every_photo_ready(project, folders, tmp_path):
    from core.intake.ingest import import_folder

    import_folder(project, folders / "val")
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    assert preembed.readiness(project, cache).ready == 0
    while preembed.embed_some(project, limit=5, cache=cache):
        pass
    ready = preembed.readiness(project, cache)
    assert ready.complete and ready.total == 12
    records = project.images(status="kept")
    plain, mirrored = embed_views([r.path for r in records], [r.sha256 for r in records],
                                  get_backbone(ready.backbone), cache=cache)
    assert plain.computed == mirrored.computed == 0 and len(mirrored.ok) == 12


def test_vanished_worker_is_marked_failed(project, monkeypatch):
    run_id = project.create_run(TrainConfig().to_dict())
    project.update_run(run_id, status="running", pid=2**22 + 12345)  # no such process
    monkeypatch.setattr(time, "time", lambda: 10**10)  # past the start-up grace period
    run: RunRecord = jobs.refresh(project, run_id)
    assert run.status == "failed" and "ended unexpectedly" in run.error


def test_project_data_follows_store_split(project, folders):
    from core.intake.ingest import import_folder

    import_folder(project, folders / "train")
    data = data_from_project(project)
    assert data.class_names == ["blobs", "stripes"]
    assert len(data.train) + len(data.val) == 32
    assert {s.path for s in data.val} == {r.path for r in project.images(split="val")}


def test_cli_train_evaluate_predict_export(folders, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli(["train", str(folders / "train"), "--out", str(run_dir), "--val-dir", str(folders / "val")]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["val_accuracy"] >= 0.9 and shown["head_refit"]
    assert cli(["train", str(folders / "train"), "--out", str(tmp_path / "apart"), "--val-dir", str(folders / "val"),
                "--no-refit"]) == 0
    assert not json.loads(capsys.readouterr().out)["head_refit"]
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


def test_background_embedding_tries_an_unreadable_photo_once(project, tmp_path):
    added = project.add_image("cats", class_photo_bytes(0, 7), source="upload")
    project.image(added.image_id).path.write_bytes(b"no longer a photo")  # damaged on disk after it was stored
    unreadable: set[str] = set()
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    assert preembed.embed_some(project, unreadable=unreadable, cache=cache) == 1
    assert unreadable == {project.image(added.image_id).sha256}
    assert preembed.embed_some(project, unreadable=unreadable, cache=cache) == 0
    assert preembed.readiness(project, cache).ready == 0
