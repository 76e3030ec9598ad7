"""Fine-tuning on cached freeze-boundary activations: the cache, the weights going back into the full model,
determinism, photos that vanish mid-run, and the backbone advice."""

import dataclasses
import json
import types
from pathlib import Path

import numpy as np
import pytest

import core.model.train
from core.model import activations
from core.model.advice import MEASURED, advice
from core.model.backbones import get_backbone
from core.model.embed import EmbeddingCache
from core.model.cached_tuning import pooled
from core.model.head import LinearHead, scores, search_head
from core.model.novelty import unit
from core.images import load_rgb
from core.serving.predict import Classifier
from core.jobs.pipeline import data_from_folders, train_and_save
from core.model.schedule import (LARGE_SET_EPOCHS, LARGE_SET_PHOTOS, SMALL_SET_EPOCHS, SMALL_SET_PHOTOS,
                                 automatic_epochs, automatic_rate)
from core.model.train import (STAGE_EMBED, STAGE_REFIT, SilentListener, TrainConfig, answer_views, assemble_classifier,
                              best_layer, keeps, most_epochs, peak_rate, stop_rule, train, views_averaged)
from tests.photos import write_image_folder

SPEC = get_backbone("efficientnet_lite0")


def photos(folders: Path, n: int = 4) -> list[Path]:
    return sorted((folders / "val").glob("*/*.jpg"))[:n]


def random_head(n_classes: int = 2) -> LinearHead:
    rng = np.random.default_rng(0)
    return LinearHead(rng.normal(0, 0.05, (SPEC.feature_dim, n_classes)).astype(np.float32),
                      np.zeros(n_classes, np.float32))


@pytest.mark.slow
def test_activations_are_cached_per_content_and_match_the_full_model(folders, tmp_path):
    paths = photos(folders)
    shas = [f"sha-{p.name}" for p in paths]
    cache = EmbeddingCache(tmp_path / "a.sqlite", np.float16)
    first, shape = activations.boundary_activations(paths, shas, SPEC, 2, cache=cache)
    again, _ = activations.boundary_activations(paths, shas, SPEC, 2, cache=cache)
    assert [r.computed for r in first] == [4, 4] and [r.computed for r in again] == [0, 0]
    assert first[0].vectors.dtype == np.float16 and shape == (7, 7, 192)
    np.testing.assert_array_equal(first[0].vectors, again[0].vectors)  # computed or read back: the same numbers
    assert not np.array_equal(first[0].vectors, first[1].vectors)  # the mirrored view is its own entry

    classifier = assemble_classifier(SPEC, random_head())
    pixels = np.stack([load_rgb(p, SPEC.input_size) for p in paths]).astype(np.float32)
    full = classifier.predict(pixels, verbose=0)
    top = activations.top_model(classifier, SPEC, 2)
    through_cache = top.predict(first[0].vectors.reshape(-1, *shape).astype(np.float32), verbose=0)
    np.testing.assert_allclose(through_cache, full, atol=2e-3)  # LiteRT + float16 rounding only


@pytest.mark.slow
def test_top_model_shares_the_classifiers_layers():
    classifier = assemble_classifier(SPEC, random_head())
    top = activations.top_model(classifier, SPEC, 1)
    dense = classifier.get_layer("predictions")
    dense.set_weights([w + 1 for w in dense.get_weights()])
    assert top.layers[-1] is dense
    assert {id(w) for w in top.weights} <= {id(w) for w in classifier.weights}


@pytest.mark.slow
def test_no_frozen_part_means_no_cache():
    backbone = SPEC.build(weights=False)
    everything = len(SPEC.blocks(backbone))
    assert activations.boundary_layer(SPEC, backbone, everything) is None
    assert activations.boundary_shape(SPEC, everything) is None
    assert not activations.cacheable(None, 10, 2)
    assert not activations.cacheable((112, 112, 16), 10**5, 2)  # over the budget: fine-tuning streams photos


@pytest.mark.slow
def test_finetuned_weights_are_in_the_saved_model(folders, tmp_path):
    # No validation photos: nothing to keep the head for, so the fine-tuned weights are saved.
    data = data_from_folders(folders / "train", val_split=0.0)
    cfg = TrainConfig(unfreeze_blocks=2, finetune_epochs=2, finetune_learning_rate=1e-3, batch_size=8)
    metrics, model = train_and_save(data, cfg, tmp_path / "run", assemble=False)
    assert metrics["finetune_path"] == "cached" and not metrics["finetune_kept_head"]
    head = LinearHead.load(tmp_path / "run" / "head.npz") if (tmp_path / "run" / "head.npz").exists() else None
    assert head is None and model is not None  # a fine-tuned run saves model.keras, not the head

    paths = photos(folders)
    results, shape = activations.boundary_activations(paths, [f"probe-{p.name}" for p in paths], SPEC, 2)
    top = activations.top_model(model, SPEC, 2)
    # The saved model answers with each photo averaged with its mirror image (metrics' test_time_mirror); with no
    # validation photos there is no evidence for the zoomed-in views.
    expected = np.mean([top.predict(view.vectors.reshape(-1, *shape).astype(np.float32), verbose=0)
                        for view in results[:2]], axis=0)
    assert metrics["test_time_mirror"] is True and metrics["test_time_zoom"] is False
    saved = Classifier.load(tmp_path / "run")  # model.keras, loaded with safe_mode=True
    pixels = np.stack([load_rgb(p, SPEC.input_size) for p in paths]).astype(np.float32)
    np.testing.assert_allclose(saved.probabilities(pixels), expected, atol=2e-3)  # beside its novelty output


@pytest.mark.slow
def test_a_model_answering_with_zoomed_in_views_makes_them_in_its_graph_as_the_cache_made_them(folders, tmp_path):
    """The .keras and TFLite files crop and enlarge each photo's middle themselves: their answer is the mean of the
    top blocks' answers on the four cached views the model learned from."""
    from core.model.embed import LiteRTRunner, tflite_bytes

    paths = photos(folders)
    results, shape = activations.boundary_activations(paths, [f"zoom-{p.name}" for p in paths], SPEC, 2,
                                                      answer_views(TrainConfig(), zoom=True))
    rng = np.random.default_rng(1)
    classifier = assemble_classifier(SPEC, LinearHead(rng.normal(0, 0.3, (SPEC.feature_dim, 2)).astype(np.float32),
                                                      np.zeros(2, np.float32)))
    top = activations.top_model(classifier, SPEC, 2)
    answers = [top.predict(view.vectors.reshape(-1, *shape).astype(np.float32), verbose=0) for view in results]
    expected, mirrored_only = np.mean(answers, axis=0), np.mean(answers[:2], axis=0)
    assert np.abs(expected - mirrored_only).max() > 0.01, "the zoomed-in views change the answer"
    model = views_averaged(classifier, mirror=True, zoom=True)
    pixels = np.stack([load_rgb(p, SPEC.input_size) for p in paths]).astype(np.float32)
    np.testing.assert_allclose(model.predict(pixels, verbose=0), expected, atol=3e-3)
    (tmp_path / "model.tflite").write_bytes(tflite_bytes(model, SPEC.input_size))
    lite = LiteRTRunner(tmp_path / "model.tflite", n_classes=2)
    np.testing.assert_allclose(lite.outputs(pixels)[0], expected, atol=3e-3)


@pytest.mark.slow
def test_a_fine_tuned_run_checks_novelty_on_its_tuned_features_everywhere_it_predicts(folders, tmp_path):
    """The reference and the threshold come from the tuned trunk's pooled features, and every file the run predicts
    from (model.keras, model.tflite, heatmap.tflite) answers with the same `novelty` score as numpy on them."""
    from core.model.novelty import load_novelty
    from core.serving.heatmap import RUN_MAP_FILE
    from core.serving.predictor import load_predictor

    data = data_from_folders(folders / "train", val_split=0.0)
    cfg = TrainConfig(unfreeze_blocks=1, finetune_epochs=2, finetune_learning_rate=1e-3, batch_size=8)
    run = tmp_path / "run"
    metrics, model = train_and_save(data, cfg, run)
    assert metrics["finetune_path"] == "cached" and not metrics["finetune_kept_head"]
    check = load_novelty(run, SPEC.feature_dim)
    assert check is not None, "a fine-tuned run keeps a novelty check"
    reference, settings = check
    assert len(reference.vectors) == 2 * len(data.train) and len(settings.left_out_scores) == len(data.train)

    # the reference is the tuned trunk's pooled features of the training photos (plain and mirrored), not the head's
    views, shape = activations.boundary_activations([s.path for s in data.train], [s.sha256 for s in data.train],
                                                    SPEC, 1)
    features = activations.top_features(model, SPEC, 1)
    tuned = np.concatenate([pooled(features, v.vectors.reshape(-1, *shape)) for v in views])
    np.testing.assert_allclose(reference.vectors.astype(np.float32), unit(tuned), atol=2e-3)

    paths = photos(folders, 6)
    pixels = np.stack([load_rgb(p, SPEC.input_size) for p in paths]).astype(np.float32)
    probe, _ = activations.boundary_activations(paths, [f"probe-{p.name}" for p in paths], SPEC, 1)
    expected = reference.scores(pooled(features, probe[0].vectors.reshape(-1, *shape)))
    saved = Classifier.load(run)  # model.keras: outputs probabilities and novelty
    probabilities, novelty = saved.outputs(pixels)
    assert probabilities.shape == (6, 2) and novelty.shape == (6,)
    np.testing.assert_allclose(novelty, expected, atol=2e-3)
    lite = load_predictor(run, keras=False)  # model.tflite
    assert lite.kind == "tflite"
    np.testing.assert_allclose(lite.outputs(pixels)[1], expected, atol=2e-3)
    (run / "model.tflite").unlink()  # before the downloads are made, Try it reads the heat map file
    assert load_predictor(run, keras=False).outputs(pixels)[1] is not None
    assert model_file_name(run) == RUN_MAP_FILE
    np.testing.assert_allclose(load_predictor(run, keras=False).outputs(pixels)[1], expected, atol=2e-3)


@pytest.mark.slow
def test_a_run_fine_tuned_on_streamed_photos_checks_novelty_on_its_tuned_features(folders, tmp_path, monkeypatch):
    """Too large to cache the boundary (here: made so): the reference is the tuned trunk's pooled features of the
    training photos and their mirror images, from one more pass over them, and model.keras scores with it."""
    import keras

    from core.model.novelty import load_novelty

    monkeypatch.setattr(activations, "cacheable", lambda *args: False)
    data = data_from_folders(folders / "train", val_split=0.0)
    cfg = TrainConfig(unfreeze_blocks=1, finetune_epochs=1, finetune_learning_rate=1e-3, batch_size=8)
    run = tmp_path / "run"
    metrics, model = train_and_save(data, cfg, run, assemble=False)
    assert metrics["finetune_path"] == "streamed" and not metrics["finetune_kept_head"]
    check = load_novelty(run, SPEC.feature_dim)
    assert check is not None, "a run fine-tuned on streamed photos keeps a novelty check"
    reference, settings = check
    assert len(reference.vectors) == 2 * len(data.train) and len(settings.left_out_scores) == len(data.train)

    def tuned(pixels: np.ndarray) -> np.ndarray:  # the saved model's trunk, BatchNorm in inference mode
        features = model.get_layer("backbone")(pixels, training=False)
        return keras.ops.convert_to_numpy(model.get_layer("pooled")(features))

    train_pixels = np.stack([load_rgb(s.path, SPEC.input_size) for s in data.train]).astype(np.float32)
    expected = unit(np.concatenate([tuned(train_pixels), tuned(train_pixels[:, :, ::-1])]))
    np.testing.assert_allclose(reference.vectors.astype(np.float32), expected, atol=2e-3)

    pixels = np.stack([load_rgb(p, SPEC.input_size) for p in photos(folders, 6)]).astype(np.float32)
    probabilities, novelty = Classifier.load(run).outputs(pixels)
    assert probabilities.shape == (6, 2)
    np.testing.assert_allclose(novelty, reference.scores(tuned(pixels)), atol=2e-3)


def model_file_name(run: Path) -> str:
    from core.serving.predictor import model_file

    return model_file(run, keras=False).name


@pytest.mark.slow
def test_the_head_is_solved_again_on_what_the_blocks_learned(folders):
    """After the epochs the Dense layer holds the convex solver's head on the tuned blocks' features."""
    data = data_from_folders(folders / "train", val_split=0.0)
    cfg = TrainConfig(unfreeze_blocks=1, finetune_epochs=2, finetune_learning_rate=1e-3, batch_size=8)
    result = train(data, cfg)
    assert result.model is not None
    views, shape = activations.boundary_activations([s.path for s in data.train], [s.sha256 for s in data.train],
                                                    SPEC, 1)
    features = activations.top_features(result.model, SPEC, 1)
    x = np.concatenate([pooled(features, v.vectors.reshape(-1, *shape)) for v in views])
    labels, n = np.array([s.label for s in data.train]), len(data.train)
    expected = search_head(x, np.tile(labels, 2), 2, np.tile(np.arange(n), 2), seed=cfg.seed).head
    kernel, bias = result.model.get_layer("predictions").get_weights()
    np.testing.assert_allclose(kernel, expected.kernel, atol=1e-5)
    np.testing.assert_allclose(bias, expected.bias, atol=1e-5)


@pytest.mark.slow
def test_finetuning_is_deterministic(folders):
    data = data_from_folders(folders / "train", folders / "val")
    cfg = TrainConfig(unfreeze_blocks=1, finetune_epochs=2, finetune_learning_rate=1e-3, batch_size=8, patience=5)
    first, second = train(data, cfg), train(data, cfg)
    assert first.finetune_path == "cached"
    np.testing.assert_array_equal(first.val_probabilities, second.val_probabilities)
    assert first.best_epoch == second.best_epoch
    if first.model is not None:
        for a, b in zip(first.model.get_weights(), second.model.get_weights()):
            np.testing.assert_array_equal(a, b)


class DeleteBeforeBoundary(SilentListener):
    """Deletes a photo once its embedding is done, before its boundary activation is computed."""

    def __init__(self, victim: Path):
        self.victim = victim

    def on_batch(self, stage, epoch, batch, batches, logs):
        if stage == STAGE_EMBED and batch * 2 >= batches and self.victim.exists():
            self.victim.unlink()


@pytest.mark.slow
def test_a_photo_that_vanishes_mid_run_is_skipped(folders, tmp_path):
    # Photos no other test has seen: a cached activation would (rightly) spare reading the file.
    write_image_folder(tmp_path / "train", {"stripes": 8, "blobs": 8}, offset=300)
    write_image_folder(tmp_path / "val", {"stripes": 3, "blobs": 3}, offset=400)
    data = data_from_folders(tmp_path / "train", tmp_path / "val")
    victims = [data.train[0].path, data.val[0].path]
    cfg = TrainConfig(unfreeze_blocks=1, finetune_epochs=1, batch_size=8, patience=5)
    result = train(data, cfg, DeleteBeforeBoundary(victims[0]))
    assert list(result.skipped) == [str(victims[0])]
    deeper = dataclasses.replace(cfg, unfreeze_blocks=2)  # another boundary: nothing of it cached yet
    result = train(data_from_folders(tmp_path / "train", tmp_path / "val"), deeper, DeleteBeforeBoundary(victims[1]))
    assert list(result.skipped) == [str(victims[1])]
    assert len(result.val_samples) == 5 == len(result.val_probabilities)


def test_advice_covers_every_offline_backbone_and_depth():
    rows = advice(400, {"efficientnet_lite0": {"ms_per_photo": 20.0}})
    assert {(r.backbone, r.blocks) for r in rows} == {(b, n) for b in ("efficientnet_lite0", "efficientnet_lite1",
                                                                        "efficientnet_lite2") for n in range(5)}
    lite0 = {r.blocks: r for r in rows if r.backbone == "efficientnet_lite0"}
    assert lite0[0].seconds < lite0[2].seconds and lite0[0].gain == 0.0
    assert advice(800, {"efficientnet_lite0": {"ms_per_photo": 20.0}})[2].seconds > lite0[2].seconds
    assert all(key[0] in {r.backbone for r in rows} for key in MEASURED)


@pytest.mark.slow
def test_a_run_that_cannot_beat_the_head_keeps_it_and_says_so(folders, tmp_path):
    # A learning rate of zero: no epoch can do better than the head on validation.
    cfg = TrainConfig(unfreeze_blocks=1, finetune_learning_rate=0.0, finetune_epochs=3, patience=1, batch_size=16)
    metrics, model = train_and_save(data_from_folders(folders / "train", folders / "val"), cfg, tmp_path / "run",
                                    assemble=False)
    assert model is None and metrics["finetune_kept_head"] and metrics["best_epoch"] == {"fine-tuning": 0}
    assert (tmp_path / "run" / "head.npz").exists() and not (tmp_path / "run" / "model.keras").exists()
    assert metrics["val_accuracy_averaged"] is not None and metrics["test_time_mirror"] is True
    assert metrics["val_accuracy"] == metrics["val_accuracy_averaged"], "the figures are the model's as it answers"


@pytest.mark.slow
def test_a_fine_tuned_model_with_fewer_right_answers_is_not_kept(folders, monkeypatch):
    """A lower validation loss with fewer validation photos right (tiny validation sets) keeps the head."""
    data = data_from_folders(folders / "train", folders / "val")
    cfg = TrainConfig(unfreeze_blocks=1, finetune_epochs=1, batch_size=8)
    finetune = core.model.train._finetune
    # A head whose validation loss every epoch beats, so that only the right answers decide.
    monkeypatch.setattr(core.model.train, "_finetune", lambda *a: finetune(*a[:5], 10.0, a[6]))
    assert train(data, cfg).model is not None

    fit_cached = core.model.train._fit_cached

    def wrong_answers(*args, **kwargs):
        fit = fit_cached(*args, **kwargs)
        swapped = lambda: tuple(None if p is None else p[:, ::-1] for p in fit.predict())  # noqa: E731
        return dataclasses.replace(fit, predict=swapped)

    monkeypatch.setattr(core.model.train, "_fit_cached", wrong_answers)
    result = train(data, cfg)
    assert result.model is None and result.best_epoch == {"fine-tuning": 0}

@pytest.mark.slow
def test_a_re_solved_head_that_fails_the_keep_rule_does_not_lose_the_layer_trained_with_the_blocks(folders, monkeypatch):
    """32-px groceries25 split 0 at peak rate 2e-4: the layer trained with the blocks beat the head, the head solved
    again on the tuned features did not; the run keeps the trained layer, not the stage-1 head."""
    data = data_from_folders(folders / "train", folders / "val")
    cfg = TrainConfig(unfreeze_blocks=1, finetune_epochs=1, batch_size=8)
    beats_the_head(monkeypatch)
    fit_cached = core.model.train._fit_cached
    trained = {}

    def bad_resolve(*args, **kwargs):
        fit = fit_cached(*args, **kwargs)
        dense = fit.trained.get_layer("predictions")

        def swapped():  # every answer turned round: fewer photos right than the head
            trained["probabilities"] = fit.predict()[0]
            kernel, bias = dense.get_weights()
            dense.set_weights([kernel[:, ::-1], bias[::-1]])
        return dataclasses.replace(fit, resolve=swapped)

    monkeypatch.setattr(core.model.train, "_fit_cached", bad_resolve)
    result = train(data, cfg)
    assert result.model is not None and result.finetune_layer == "trained"
    assert not result.head_refit and result.finetune_refit_epochs == 1, "trained again, with the layer trained"
    np.testing.assert_array_equal(result.val_probabilities, trained["probabilities"])


def beats_the_head(monkeypatch) -> None:
    """Every fine-tuning epoch beats the stage-1 head's validation loss: the keep rule's other half decides."""
    finetune = core.model.train._finetune
    monkeypatch.setattr(core.model.train, "_finetune", lambda *a: finetune(*a[:5], 10.0, a[6]))


class StopWhenTrainingAgain(SilentListener):
    def __init__(self):
        self.stage = ""

    def on_stage(self, stage, info):
        self.stage = stage

    def should_stop(self):
        return self.stage == STAGE_REFIT


@pytest.mark.slow
def test_a_kept_fine_tuned_model_is_trained_again_on_every_photo_and_keeps_its_validated_figures(folders,
                                                                                               monkeypatch):
    """The model the keep rule kept is trained again, for its best epoch count, on the training and validation
    photos: its trunk and novelty reference are new and hold every photo; its validation figures are the validated
    model's. A stop request while it trains again keeps the validated model."""
    from core.model.novelty import build_reference

    beats_the_head(monkeypatch)
    data = data_from_folders(folders / "train", folders / "val")
    cfg = TrainConfig(unfreeze_blocks=1, finetune_epochs=2, finetune_learning_rate=1e-3, batch_size=8, patience=5)
    apart, again = train(data, dataclasses.replace(cfg, refit=False)), train(data, cfg)
    assert apart.model is not None and not apart.finetune_refit_epochs
    assert again.finetune_refit_epochs == again.best_epoch["fine-tuning"] == apart.best_epoch["fine-tuning"] > 0
    np.testing.assert_array_equal(again.val_probabilities, apart.val_probabilities)
    assert (again.finetune_layer, again.finetune_path) == (apart.finetune_layer, "cached")
    assert any(not np.array_equal(a, b) for a, b in zip(again.model.get_weights(), apart.model.get_weights()))

    every = data.train + data.val
    views, shape = activations.boundary_activations([s.path for s in every], [s.sha256 for s in every], SPEC, 1)
    features = activations.top_features(again.model, SPEC, 1)
    tuned = [pooled(features, v.vectors.reshape(-1, *shape)) for v in views]
    reference, settings = again.novelty
    expected = build_reference(tuned, np.array([s.label for s in every]))
    np.testing.assert_allclose(reference.vectors.astype(np.float32), expected.vectors.astype(np.float32), atol=2e-3)
    assert settings.val_scores == [] and len(settings.left_out_scores) == len(every), "no validation photos left"

    stopped = train(data, cfg, StopWhenTrainingAgain())
    assert stopped.stopped and not stopped.finetune_refit_epochs
    for a, b in zip(stopped.model.get_weights(), apart.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def two_class(*first: float) -> np.ndarray:
    """Probabilities of two classes from each photo's probability of the first."""
    return np.array([[p, 1 - p] for p in first])


LABELS = np.array([0, 0, 1, 1])
HEAD = (two_class(0.6, 0.4, 0.4, 0.6), two_class(0.6, 0.4, 0.4, 0.6))  # 2 of 4 right
HEAD_LOSS = scores(HEAD[0], LABELS)[0]


def test_the_layer_kept_is_one_the_keep_rule_accepts():
    failing = (two_class(0.9, 0.55, 0.1, 0.95), None)  # 3 right, but a higher loss than the head's
    passing = (two_class(0.7, 0.45, 0.3, 0.55), None)  # 2 right, a lower loss
    fewer_right = (two_class(0.99, 0.45, 0.51, 0.55), None)  # a lower loss with 1 right
    assert not keeps(failing, HEAD, LABELS, HEAD_LOSS) and keeps(passing, HEAD, LABELS, HEAD_LOSS)
    assert scores(fewer_right[0], LABELS)[0] < HEAD_LOSS and not keeps(fewer_right, HEAD, LABELS, HEAD_LOSS)
    assert best_layer([failing, passing], HEAD, LABELS, HEAD_LOSS, answers_averaged=False) == 1
    assert best_layer([failing, fewer_right], HEAD, LABELS, HEAD_LOSS, answers_averaged=False) is None


def test_more_photos_right_as_the_model_answers_wins_then_on_plain_probabilities_then_the_lower_loss():
    more_right = (two_class(0.7, 0.55, 0.3, 0.45), two_class(0.6, 0.4, 0.4, 0.6))  # plain 4 right, averaged 2
    lower_loss = (two_class(0.95, 0.45, 0.05, 0.55), two_class(0.7, 0.55, 0.3, 0.45))  # plain 2 right, averaged 4
    assert scores(lower_loss[0], LABELS)[0] < scores(more_right[0], LABELS)[0]
    assert best_layer([lower_loss, more_right], HEAD, LABELS, HEAD_LOSS, answers_averaged=False) == 1
    assert best_layer([lower_loss, more_right], HEAD, LABELS, HEAD_LOSS, answers_averaged=True) == 0
    # groceries25 split 0 at 2e-4: as many right as the model answers, the lower loss with fewer right on plain ones
    plain_right = (two_class(0.7, 0.55, 0.3, 0.55), two_class(0.7, 0.55, 0.3, 0.45))  # plain 3 right, averaged 4
    assert scores(lower_loss[0], LABELS)[0] < scores(plain_right[0], LABELS)[0]
    assert best_layer([lower_loss, plain_right], HEAD, LABELS, HEAD_LOSS, answers_averaged=True) == 1
    same_right = (two_class(0.7, 0.45, 0.3, 0.55), None)  # plain 2 right, as lower_loss, at a higher loss
    assert best_layer([same_right, lower_loss], HEAD, LABELS, HEAD_LOSS, answers_averaged=False) == 1
    assert best_layer([lower_loss, same_right], HEAD, LABELS, HEAD_LOSS, answers_averaged=False) == 0
    assert best_layer([same_right, same_right], HEAD, LABELS, HEAD_LOSS, answers_averaged=False) == 0, \
        "the first of equals"



def test_the_zoomed_in_views_are_kept_only_on_clear_evidence_from_the_validation_photos():
    labels = np.zeros(40, dtype=int)

    def chosen(gained: int, lost: int) -> tuple[bool, np.ndarray]:
        """The mirror-averaged answer has 20 of 40 right; the zoomed one puts `gained` of its wrong ones right and
        `lost` of its right ones wrong."""
        without = np.array([[0.6, 0.4]] * 20 + [[0.4, 0.6]] * 20)
        zoomed = without.copy()
        zoomed[20:20 + gained], zoomed[:lost] = [0.6, 0.4], [0.4, 0.6]
        result = types.SimpleNamespace(val_probabilities=without, val_probabilities_averaged=without)
        fit = core.model.train.Fit(None, None, None, None, predict_zoomed=lambda: zoomed)
        return core.model.train._zoom_helps(fit, result, labels), result.val_probabilities_averaged

    assert chosen(3, 0)[0] and chosen(12, 2)[0]  # 3 >= 1.645 * sqrt(3), 10 >= 1.645 * sqrt(14); not (10, 4) below
    kept, figures = chosen(9, 2)
    assert kept and figures[20:29].argmax(axis=1).tolist() == [0] * 9, "its figures are the zoomed answer's"
    for gained, lost in ((2, 0), (1, 0), (10, 4), (2, 2), (0, 3), (0, 0)):  # a photo or a few, or a tie: too little
        assert chosen(gained, lost)[0] is False and chosen(gained, lost)[1][20:].argmax(axis=1).tolist() == [1] * 20
    fit = core.model.train.Fit(None, None, None, None)  # streamed fine-tuning: no zoomed views learned
    assert core.model.train._zoom_helps(fit, None, labels) is False
    # the views: without mirroring, the photo and its zoomed-in middle
    assert core.model.train.answer_views(TrainConfig(), zoom=True) == ("", "-flip", "-zoom", "-zoom-flip")
    no_flip = dataclasses.replace(TrainConfig(), augment=dataclasses.replace(TrainConfig().augment, flip=False))
    assert core.model.train.answer_views(no_flip, zoom=True) == ("", "-zoom")
    assert core.model.train.answer_views(no_flip, zoom=False) == ("",)


def epochs_run(val_losses: list[float], patience: int = 3) -> int:
    """How many epochs `stop_rule` lets run with these validation losses, one per epoch."""
    stopper, model = stop_rule(TrainConfig(patience=patience)), types.SimpleNamespace(stop_training=False)
    stopper.set_model(model)
    stopper.on_train_begin()
    for epoch, loss in enumerate(val_losses):
        stopper.on_epoch_end(epoch, {"val_xent": loss})
        if model.stop_training:
            return epoch + 1
    return len(val_losses)


def test_fine_tuning_stops_when_it_stops_improving_on_itself_not_on_the_head():
    """Measured losses (2 blocks, split 0): 32-px groceries25 stayed above the head's 1.336 for three epochs, then beat
    it as the rate decayed (+2.0 points at epoch 8); 32-px flowers5 got worse after its first epoch."""
    assert epochs_run([1.4056, 1.3785, 1.3807, 1.3278, 1.3042, 1.3083, 1.2976, 1.2951]) == 8
    assert epochs_run([0.5712, 0.6187, 0.5774, 0.6415, 0.6109, 0.5907, 0.5868, 0.5872]) == 4
    assert epochs_run([0.5, 0.5, 0.5, 0.5], patience=2) == 3, "no better than its best by MIN_IMPROVEMENT: stop"


def test_zoomed_view_enlarges_the_middle():
    pixels = np.zeros((2, 100, 100, 3), np.float32)
    pixels[:, 10:90, 10:90] = 200.0  # a bright square framed by a black border 10 % wide
    zoomed = activations.zoomed(pixels)
    assert zoomed.shape == pixels.shape and zoomed.dtype == np.float32
    assert zoomed.min() > 150  # the border is cropped away: only the middle, enlarged, is left


@pytest.mark.slow
def test_cli_fine_tunes_at_the_automatic_rate_and_says_how_long_is_left(folders, tmp_path, capsys, monkeypatch):
    from core.__main__ import main as cli

    compiled = []  # the peak rate each fine-tuning optimizer was built with
    compile_ = core.model.train._compile
    monkeypatch.setattr(core.model.train, "_compile", lambda model, cfg, *args: (
        compiled.append(cfg.finetune_learning_rate), compile_(model, cfg, *args))[1])
    args = ["train", str(folders / "train"), "--out", str(tmp_path / "run"), "--val-dir", str(folders / "val")]
    assert cli(args + ["--unfreeze-blocks", "1", "--epochs", "2"]) == 0
    captured = capsys.readouterr()
    shown = json.loads(captured.out)
    assert shown["finetune_path"] == "cached"
    assert "s left in this stage" in captured.err  # paced from the stage's own progress, as on the Train page
    train_photos = len(data_from_folders(folders / "train").train + data_from_folders(folders / "train").val)
    # fine-tuning, then training again on every photo when its model is kept: at the validated rate
    assert compiled[0] == automatic_rate(train_photos) and shown["finetune_learning_rate"] == compiled[0]
    assert compiled == [compiled[0]] * (1 + bool(shown["finetune_refit_epochs"]))
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert recorded["config"]["finetune_learning_rate"] is None, "the run says the rate was chosen for it"
    assert recorded["finetune_learning_rate"] == compiled[0], "and which one it used"
    assert recorded["config"]["finetune_epochs"] == recorded["finetune_epochs"] == 2, "--epochs is the user's number"
    trained_again = 0 if shown["finetune_kept_head"] else recorded["best_epoch"]["fine-tuning"]
    assert shown["finetune_refit_epochs"] == trained_again


def test_the_automatic_rate_grows_with_the_training_photos():
    """Two blocks, measured (docs/benchmarks.md, 2026-12-05): 2e-4 gained more on groceries25 and its 32-px copy
    (3,112 to 3,179 training photos) and on parts of groceries25 (759 to 1,571), 1e-4 kept 32-px flowers5's gains
    that 2e-4 lost (464 to 480), and flowers5 (481) and hymenoptera (313) lost nothing at 1e-4."""
    assert automatic_rate(3_112) == automatic_rate(1_556) == automatic_rate(759) == 2e-4
    assert automatic_rate(481) == automatic_rate(464) == automatic_rate(313) == automatic_rate(1) == 1e-4
    assert automatic_rate(SMALL_SET_PHOTOS) == 1e-4 and automatic_rate(LARGE_SET_PHOTOS) == 2e-4
    between = [automatic_rate(n) for n in range(SMALL_SET_PHOTOS, LARGE_SET_PHOTOS + 1, 10)]
    assert between == sorted(between) and all(1e-4 <= rate <= 2e-4 for rate in between)
    assert 1e-4 < automatic_rate((SMALL_SET_PHOTOS + LARGE_SET_PHOTOS) // 2) < 2e-4, "no cliff between them"


def test_the_automatic_schedule_is_longer_from_as_many_photos_as_the_larger_rate():
    """Measured side by side (docs/benchmarks.md, 2026-12-06): 16 epochs beat 8 on every split of groceries25 and
    its 32-px copy (3,112 to 3,179 training photos) and gained nothing on a few hundred (240 to 490)."""
    assert automatic_epochs(3_112) == automatic_epochs(LARGE_SET_PHOTOS) == LARGE_SET_EPOCHS == 16
    assert automatic_epochs(481) == automatic_epochs(LARGE_SET_PHOTOS - 1) == SMALL_SET_EPOCHS == 8
    assert automatic_rate(LARGE_SET_PHOTOS) == 2e-4, "both change at the same count"
    assert most_epochs(TrainConfig(), 3_112) == 16 and most_epochs(TrainConfig(), 300) == 8
    assert most_epochs(TrainConfig(finetune_epochs=5), 3_112) == 5, "a number the user chose wins"


def test_a_rate_the_user_chose_wins_and_a_recorded_run_keeps_its_rate():
    assert TrainConfig().finetune_learning_rate is None
    assert peak_rate(TrainConfig(), 3_143) == 2e-4 and peak_rate(TrainConfig(), 480) == 1e-4
    assert peak_rate(TrainConfig(finetune_learning_rate=3e-5), 3_143) == 3e-5
    recorded = {**TrainConfig().to_dict(), "finetune_learning_rate": 1e-4}  # a run from before the automatic rate
    assert peak_rate(TrainConfig.from_dict(recorded), 3_143) == 1e-4
    assert TrainConfig.from_dict(TrainConfig().to_dict()).finetune_learning_rate is None


def test_the_cli_takes_a_learning_rate_and_refuses_one_that_is_none(capsys):
    from core.__main__ import parser

    train_args = ["train", "photos", "--out", "run"]
    assert parser().parse_args(train_args).learning_rate is None, "automatic unless given"
    assert parser().parse_args(train_args + ["--learning-rate", "3e-4"]).learning_rate == 3e-4
    for bad in ("0", "-1e-4", "fast", "nan"):
        with pytest.raises(SystemExit):
            parser().parse_args(train_args + [f"--learning-rate={bad}"])
        assert "give a number above 0" in capsys.readouterr().err
