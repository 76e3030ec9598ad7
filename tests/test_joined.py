"""Offline backbones joined by '+': the spec, embeddings per member from one decode, the predictor, the refusal of
fine-tuning, the advice, the CLI; then a joined run end to end with the real networks (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import core.model.embed
from core.__main__ import main as cli
from core.model.advice import GAINS_BY_PHOTOS, MEASURED_SETS, TRAIN_SHARE, costs, most_alike, nearest_count
from core.model.backbones import REGISTRY, backbone_label, get_backbone
from core.serving.heatmap import load_heat_mapper, run_map_model
from core.model.embed import EmbeddingCache, EmbedResult, Group, cached_groups, side_by_side
from core.model.head import search_head
from core.model.joined import (OFFERED, RECOMMENDED, JoinRefused, feature_scales, refit_joined_head, refuse_fine_tuning,
                               search_joined_head)
from core.model.train import TrainConfig, TrainData, train
from tests.photos import class_photo

LITE02 = "efficientnet_lite0+efficientnet_lite2"


def test_a_joined_name_is_a_backbone_made_of_its_members_in_order():
    spec = get_backbone("efficientnet_lite2+efficientnet_lite0")
    assert [m.name for m in spec.members] == ["efficientnet_lite2", "efficientnet_lite0"]
    assert spec.name == "efficientnet_lite2+efficientnet_lite0" and spec.label == "EfficientNet-Lite2 + Lite0"
    assert spec.feature_dim == 2560 and spec.input_size == 260 and spec.offline
    # the Train page says what the members are fed: the joined size, shrunk inside the model for the smaller ones
    assert spec.description.endswith("All read the photo at 260 px; Lite0 shrinks it to 224 px inside the model.")
    assert "Lite0 and Lite1 shrink it to 224 and 240 px" in get_backbone(RECOMMENDED).description
    assert spec.params == REGISTRY["efficientnet_lite0"].params + REGISTRY["efficientnet_lite2"].params
    assert get_backbone("efficientnet_lite0").members == (REGISTRY["efficientnet_lite0"],)
    assert backbone_label(LITE02) == "EfficientNet-Lite0 + Lite2" and backbone_label("gone+away") == "gone+away"
    assert RECOMMENDED in OFFERED and all(get_backbone(name).offline for name in OFFERED)


def test_smaller_members_read_the_joined_size_under_keys_of_their_own():
    """The app's cached path and the downloads must see the same pixels: a joined backbone's smaller members read the
    photo at the joined size and resize it in their graph, and their vectors are cached under keys naming both sizes;
    single backbones' keys are unchanged (nothing else is embedded again)."""
    from core.model.embed import cache_key, view_key
    from core.model.joined import ResizedMember

    spec = get_backbone(RECOMMENDED)
    assert [part.input_size for part in spec.parts] == [260, 260, 260]
    assert [type(part) for part in spec.parts] == [ResizedMember, ResizedMember, type(REGISTRY["efficientnet_lite2"])]
    assert [view_key(part, True) for part in spec.parts] == [
        "efficientnet_lite0@224from260fitv4-flip", "efficientnet_lite1@240from260fitv4-flip", "efficientnet_lite2@260v4-flip"]
    assert [cache_key(get_backbone(n)) for n in ("efficientnet_lite0", "efficientnet_lite2", "resnet50")] == [
        "efficientnet_lite0@224v4", "efficientnet_lite2@260v4", "resnet50@224v4"]
    assert get_backbone("efficientnet_lite0").parts == (REGISTRY["efficientnet_lite0"],)
    assert [p.feature_dim for p in spec.parts] == [m.feature_dim for m in spec.members]
    assert cache_key(get_backbone("efficientnet_lite0+efficientnet_lite1").parts[0]) == "efficientnet_lite0@224from240fitv4"


def _pil(picture: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pillow's BILINEAR resize of a float (H, W) picture."""
    from PIL import Image

    return np.asarray(Image.fromarray(picture.astype(np.float32), "F").resize((width, height), Image.BILINEAR))


def test_resample_matrix_is_pillows_own_resize():
    from core.model.joined import resample_matrix

    wide = np.random.default_rng(0).uniform(0, 1, (7, 260)).astype(np.float32)
    for size in (100, 224, 240, 400):
        np.testing.assert_allclose(wide @ resample_matrix(260, size), _pil(wide, size, 7), atol=1e-5)


@pytest.mark.parametrize("size", [224, 240])
def test_the_members_shrink_recovers_pils_direct_resize_and_runs_as_built_in_ops(size):
    """A smaller member shrinks the joined-size photo so that it comes closer to what PIL's resize straight from the
    original would give (the app's way until 2026-12-04, and the most accurate) than Pillow's own reduce or a plain
    bilinear sample (the layer until 2026-12-04) do, on photo-like originals smaller and larger than the joined
    size; the Keras layer and its LiteRT form compute exactly that matrix product."""
    import keras
    from scipy.signal import lfilter

    from core.model.embed import LiteRTRunner, tflite_bytes
    from core.model.joined import member_resize, resample_matrix, shrink_matrix

    class Member:
        input_size = size

    rng = np.random.default_rng(size)
    errors = {"fit": [], "reduce": [], "bilinear": []}
    for original_size in (224, 300, 500, 900):
        noise = rng.normal(0, 1, (original_size, original_size))
        for axis in (0, 1):  # neighbouring pixels correlated as in photos
            noise = lfilter([1.0], [1.0, -0.95], noise, axis=axis)
        original = (noise - noise.min()) / np.ptp(noise) * 255
        joined = _pil(original, 260, 260)
        direct = _pil(original, size, size)
        m = shrink_matrix(260, size)
        errors["fit"].append(np.abs(m.T @ joined @ m - direct).mean())
        r = resample_matrix(260, size)
        errors["reduce"].append(np.abs(r.T @ joined @ r - direct).mean())
        plain = np.asarray(keras.layers.Resizing(size, size, interpolation="bilinear")(joined[None, :, :, None]))
        errors["bilinear"].append(np.abs(plain[0, :, :, 0] - direct).mean())
    assert np.mean(errors["fit"]) < 0.8 * min(np.mean(errors["reduce"]), np.mean(errors["bilinear"])), errors

    if size != 224:  # the layer is the same for every size: converted once
        return
    pixels = rng.uniform(0, 255, (2, 260, 260, 3)).astype(np.float32)
    expected = np.einsum("hH,bHWc,Ww->bhwc", shrink_matrix(260, size).T, pixels, shrink_matrix(260, size))
    inputs = keras.Input((260, 260, 3))
    model = keras.Model(inputs, member_resize(Member, 260)(inputs))
    np.testing.assert_allclose(np.asarray(model(pixels)), expected, atol=1e-2, rtol=0)
    np.testing.assert_allclose(LiteRTRunner(tflite_bytes(model, 260))(pixels), expected, atol=1e-2, rtol=0)


@pytest.mark.parametrize("name, message", [
    ("efficientnet_lite0+nope", "unknown backbone"),
    ("efficientnet_lite0+resnet50", "only offline backbones can be joined"),
    ("efficientnet_lite0+efficientnet_lite0", "names a backbone twice"),
    ("efficientnet_lite0+", "unknown backbone"),
])
def test_bad_joined_names_are_refused_clearly(name, message):
    with pytest.raises(ValueError, match=message):
        get_backbone(name)


def test_fine_tuning_a_joined_backbone_is_refused_before_any_work():
    with pytest.raises(JoinRefused, match="trains only the new head"):
        refuse_fine_tuning(get_backbone(LITE02), 2)
    refuse_fine_tuning(get_backbone(LITE02), 0)
    refuse_fine_tuning(get_backbone("efficientnet_lite0"), 2)
    data = TrainData(["a", "b"], [], [])  # refused before the data is even looked at
    with pytest.raises(JoinRefused):
        train(data, TrainConfig(backbone=LITE02, unfreeze_blocks=1))


def _loud_and_quiet(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Two members side by side: one in large numbers with little to say, one in numbers 1,000 times smaller that
    tells the class."""
    labels = rng.integers(0, 3, n)
    centres = np.eye(3, 16) * 3.0
    loud = rng.normal(size=(n, 16)) * 3.0 + 0.3 * centres[labels]
    quiet = (rng.normal(size=(n, 16)) + centres[labels]) * 1e-3
    return np.hstack([loud, quiet]).astype(np.float32), labels


def test_the_joined_head_hears_a_member_measured_in_small_numbers():
    rng = np.random.default_rng(0)
    (x, labels), (val_x, val_labels) = _loud_and_quiet(300, rng), _loud_and_quiet(300, rng)
    groups = np.arange(len(labels))
    raw = search_head(x, labels, 3, groups).head
    joined = search_joined_head(x, labels, 3, groups, sizes=[16, 16], val=(val_x, val_labels))
    right = lambda head: (head.probabilities(val_x).argmax(axis=1) == val_labels).mean()  # noqa: E731
    assert right(raw) < 0.5 and right(joined.head) > 0.9  # on the raw sum of squares the quiet member cannot count
    # head.npz's contract: a (D, C) kernel and a bias on the raw concatenated embedding, the scaling folded in
    assert joined.head.kernel.shape == (32, 3) and joined.head.kernel.dtype == np.float32
    chosen = next(row for row in joined.tried if row["chosen"])
    assert abs(chosen["val_accuracy"] - right(joined.head)) < 0.02  # scored on the scaled vectors: the same answers
    # each member brought to one common scale, each dimension halfway to it: no labels, only the training vectors
    scales = feature_scales(x, [16, 16])
    assert scales[16:].min() > 100 * scales[:16].max()
    assert np.allclose(feature_scales(x * 7.0, [16, 16]), scales / 7.0, rtol=1e-4)
    # solved again with the validation vectors too, at the chosen strength: still on the raw concatenation, the
    # quiet member still counting; on the same vectors it stays the search's head
    refit = refit_joined_head(joined.head, np.concatenate([x, val_x]), np.concatenate([labels, val_labels]), 3,
                              joined.strength, sizes=[16, 16])
    assert refit.kernel.shape == (32, 3) and refit.kernel.dtype == np.float32 and right(refit) > 0.9
    again = refit_joined_head(joined.head, x, labels, 3, joined.strength, sizes=[16, 16])
    np.testing.assert_allclose(again.probabilities(val_x), joined.head.probabilities(val_x), atol=0.01)


def test_side_by_side_joins_the_photos_every_member_has_in_member_order():
    first = EmbedResult(np.array([[1.0], [2.0], [3.0]]), [0, 1, 3], {2: "broken"}, 3, 1.0)
    second = EmbedResult(np.array([[10.0, 11.0], [30.0, 31.0]]), [0, 3], {1: "gone", 2: "broken"}, 1, 2.0)
    joined = side_by_side([first, second])
    assert joined.ok == [0, 3] and joined.failed == {1: "gone", 2: "broken"}
    np.testing.assert_array_equal(joined.vectors, [[1, 10, 11], [3, 30, 31]])
    assert side_by_side([first]) is first


def test_members_share_one_decode_and_each_runs_only_on_what_its_cache_lacks(tmp_path, monkeypatch):
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.jpg")
        class_photo(i % 2, i).save(paths[-1])
    shas = [f"sha{i}" for i in range(5)]
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    cache.put("small", {shas[0]: np.zeros(2), shas[1]: np.zeros(2)})  # the first member has two photos already
    decodes = []
    real = core.model.embed.load_rgb_sizes
    monkeypatch.setattr(core.model.embed, "load_rgb_sizes", lambda path, sizes: decodes.append(sizes) or real(path, sizes))
    seen: dict[str, list] = {"small": [], "large": []}

    def runner(name):
        def run(pixels):
            seen[name].append(pixels.shape)
            return np.full((len(pixels), 2), pixels.shape[1], np.float32)
        return lambda: run

    groups = [Group(32, {"small": lambda p: p}, runner("small")), Group(48, {"large": lambda p: p}, runner("large"))]
    small, large = (views[0] for views in cached_groups(paths, shas, groups, cache))
    assert [tuple(sizes) for sizes in decodes] == [(32, 48)] * 5  # each photo decoded once, for both sizes
    assert seen == {"small": [(3, 32, 32, 3)], "large": [(5, 48, 48, 3)]}
    assert small.ok == large.ok == [0, 1, 2, 3, 4] and small.vectors[2, 0] == 32 and large.vectors[0, 0] == 48
    assert set(cache.get("large", shas)) == set(shas)  # cached per member under its own key


def test_costs_put_the_joined_choices_beside_lite0():
    speeds = {name: {"ms_per_photo": ms} for name, ms in
              (("efficientnet_lite0", 5.0), ("efficientnet_lite1", 10.0), ("efficientnet_lite2", 15.0))}
    rows = {r.backbone: r for r in costs(400, speeds)}
    assert list(rows) == ["efficientnet_lite0", *OFFERED]
    lite0, joined = rows["efficientnet_lite0"], rows[LITE02]
    assert joined.prepare_seconds == pytest.approx(4 * lite0.prepare_seconds) and joined.timed_here  # 5 + 15 ms
    assert rows[RECOMMENDED].prepare_seconds == pytest.approx(6 * lite0.prepare_seconds)  # all three: 5 + 10 + 15 ms
    assert joined.size_mb > lite0.size_mb and lite0.gains == (0.0, 0.0, 0.0)
    # measured: groceries25's Lite0+1+2 model.tflite is 100 MB, 50 MB of networks and 3,276 reference rows of 3,840
    assert rows[RECOMMENDED].download_mb == pytest.approx(rows[RECOMMENDED].size_mb + 3276 * 3840 * 4 / 1e6)
    assert lite0.download_mb == pytest.approx(lite0.size_mb + 4096 * 1280 * 4 / 1e6)
    assert all(r.gains is not None and r.try_ms and r.live_fps for r in rows.values())
    assert joined.live_fps < lite0.live_fps and joined.try_ms > lite0.try_ms
    assert [MEASURED_SETS[most_alike(n)][1] for n in (1, 2, 3, 5, 10, 12, 40)] == [2, 2, 2, 5, 5, 25, 25]


def test_the_gain_shown_is_the_one_measured_nearest_the_projects_photos_a_class():
    curve = ((10, 4.0), (25, 2.0), (50, 1.0), (96, 0.5))  # the last count: all of a set's photos
    assert [nearest_count(curve, n) for n in (1, 10, 15, 16, 35, 40, 70, 96, 500)] == [
        (10, 4.0), (10, 4.0), (10, 4.0), (25, 2.0), (25, 2.0), (50, 1.0), (96, 0.5), (96, 0.5), (96, 0.5)]
    few, many = ({r.backbone: r for r in costs(photos, {}, classes=5)} for photos in (5 * 12, 5 * 1000))
    for name in OFFERED:
        curves = GAINS_BY_PHOTOS[name]
        assert few[name].gain_photos == tuple(c[0][0] for c in curves)  # 12 a class, ~10 to train on: the fewest
        assert few[name].gains == tuple(c[0][1] for c in curves)
        assert many[name].gain_photos == tuple(c[-1][0] for c in curves)  # more than any set has: all of them
        assert many[name].gains == tuple(c[-1][1] for c in curves)
    assert few["efficientnet_lite0"].gains == (0.0,) * len(MEASURED_SETS)
    middle = {r.backbone: r for r in costs(round(5 * 25 / TRAIN_SHARE), {}, classes=5)}[RECOMMENDED]
    assert middle.gain_photos == (25,) * len(MEASURED_SETS)  # 25 a class to train on
    assert costs(400, {})[1].gains == many[RECOMMENDED].gains  # class count unknown: the gains on whole sets


def test_cli_lists_the_recommended_joined_choice_first(capsys):
    assert cli(["backbones"]) == 0
    joined = capsys.readouterr().out.split("joined")[1].splitlines()[1:]
    assert joined[0].startswith(RECOMMENDED + " ") and "recommended" in joined[0]


# ---- end to end with the real networks ------------------------------------------------------------


@pytest.mark.slow
def test_a_joined_run_trains_predicts_evaluates_and_exports_one_model(folders, tmp_path, capsys):
    from core.model.embed import LiteRTRunner, embed_views
    from core.serving.export import TFLITE_FILES
    from core.model.head import HEAD_FILE, LinearHead
    from core.images import load_rgb
    from core.serving.predict import Classifier
    from core.serving.predictor import load_predictor
    from core.jobs.pipeline import data_from_folders

    run = tmp_path / "run"
    assert cli(["train", str(folders / "train"), "--out", str(run), "--backbone", LITE02,
                "--val-dir", str(folders / "val")]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["backbone"] == LITE02 and metrics["val_accuracy"] >= 0.9
    head = LinearHead.load(run / HEAD_FILE)
    assert head.kernel.shape == (2560, 2)

    # The head reads the members' cached embeddings side by side: Lite0's (the photo at 260 px, resized to 224 in its
    # graph, as the download does), then Lite2's (its own, shared with Lite2 alone).
    data = data_from_folders(folders / "train", folders / "val")
    paths, shas = [s.path for s in data.val], [s.sha256 for s in data.val]
    joined, joined_mirrored = (view.vectors for view in embed_views(paths, shas, get_backbone(LITE02), (False, True)))
    parts = [embed_views(paths, shas, part, (False,))[0].vectors for part in get_backbone(LITE02).parts]
    np.testing.assert_array_equal(joined, np.concatenate(parts, axis=1))
    np.testing.assert_array_equal(parts[1], embed_views(paths, shas, get_backbone("efficientnet_lite2"))[0].vectors)

    predictor = load_predictor(run)  # Try it, the live webcam and evaluation
    assert predictor.kind == "head" and predictor.input_size == 260
    app = predictor.predict_paths(paths)[0]
    # test_time_mirror: each photo's probabilities averaged with its mirror image's (issue 17)
    assert metrics["test_time_mirror"] is True
    np.testing.assert_allclose(app, (head.probabilities(joined) + head.probabilities(joined_mirrored)) / 2, atol=1e-4)
    assert predictor.predict_images([class_photo(0, 300)])[0].label == "stripes"

    # One model to take away: the photo at 260 px, Lite0 fed a resized copy inside the graph.
    classifier = Classifier.load(run)
    assert classifier.input_size == 260
    exported = LiteRTRunner(run / TFLITE_FILES[False])
    pixels = np.stack([load_rgb(p, 260) for p in paths]).astype(np.float32)
    np.testing.assert_allclose(exported(pixels), app, atol=1e-4)
    np.testing.assert_allclose(classifier.probabilities(pixels), exported(pixels), atol=1e-3)
    heat = load_heat_mapper(run).heat_map(class_photo(0, 301))  # each member's map, summed (core.serving.heatmap)
    assert heat.shape == (260, 260) and 0 <= heat.min() and heat.max() <= 1
    probabilities, *maps = run_map_model(classifier.model)(pixels[:1])  # as a fine-tuned joined run would read it
    assert [tuple(m.shape) for m in maps] == [(1, 7, 7, 2), (1, 9, 9, 2)]
    logits = np.log(np.asarray(probabilities))[0]
    score = sum(np.asarray(m)[0].mean(axis=(0, 1)) for m in maps) + head.bias - head.bias.mean()
    np.testing.assert_allclose(score, logits - logits.mean(), atol=1e-3)

    capsys.readouterr()
    assert cli(["evaluate", str(run), str(folders / "val"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == metrics["val_accuracy"]
    assert cli(["train", str(folders / "train"), "--out", str(tmp_path / "deeper"), "--backbone", LITE02,
                "--unfreeze-blocks", "2"]) == 2
    assert "trains only the new head" in capsys.readouterr().err and not (tmp_path / "deeper").exists()


@pytest.mark.slow
def test_a_joined_download_answers_real_photos_as_the_app_does(tmp_path):
    """Real photos of many sizes (ants and bees, 193-2592 px): the downloaded model.tflite and model.keras give the
    probabilities the app gives (Try it, evaluation: the members' cached-path LiteRT files), to float rounding. Before
    the smaller members resized the same 260 px photo as the downloads, the app fed them PIL's own resize and
    disagreed by up to tenths of a probability."""
    from tests.conftest import shared_dataset
    from core.images import load_rgb
    from core.serving.export import TFLITE_FILES
    from core.model.embed import LiteRTRunner
    from core.serving.predict import Classifier
    from core.serving.predictor import load_predictor

    root = shared_dataset("hymenoptera")
    train_dir = tmp_path / "train"
    for name in ("ants", "bees"):
        (train_dir / name).mkdir(parents=True)
        for path in sorted((root / "train" / name).iterdir())[:10]:
            (train_dir / name / path.name).write_bytes(path.read_bytes())
    run = tmp_path / "run"
    assert cli(["train", str(train_dir), "--out", str(run), "--backbone", LITE02]) == 0
    photos = sorted((root / "val" / "ants").iterdir())[:6] + sorted((root / "val" / "bees").iterdir())[:6]
    app = load_predictor(run).predict_paths(photos)[0]
    pixels = np.stack([load_rgb(p, 260) for p in photos]).astype(np.float32)
    np.testing.assert_allclose(LiteRTRunner(run / TFLITE_FILES[False])(pixels), app, atol=2e-4)
    np.testing.assert_allclose(Classifier.load(run).probabilities(pixels), app, atol=2e-4)
