"""The Train page's fine-tuning advice: expected time per depth, and the sign that photos are unlike everyday ones."""

from core.model.advice import (CLEARLY_BETTER, MEASURED, UNLIKE_BELOW, UNLIKE_MIN_PER_CLASS, Advice, advice,
                               suggested_depth, unlike_everyday)


def summary(cv_accuracy, per_class: int, classes: int = 5) -> dict:
    return {"head_cv_accuracy": cv_accuracy, "train_images": per_class * classes, "classes": [f"c{i}" for i in range(classes)]}


def test_a_head_that_cross_validates_poorly_on_plenty_of_photos_is_the_sign():
    said = unlike_everyday(summary(0.62, 100))
    assert said and "62%" in said and "100 photos per class" in said
    assert unlike_everyday(summary(UNLIKE_BELOW + 0.05, 100)) is None  # the features already separate the classes
    assert unlike_everyday(summary(0.62, UNLIKE_MIN_PER_CLASS - 10)) is None  # too few photos to tell, or to tune
    assert unlike_everyday(summary(None, 100)) is None  # a head solved without cross-validation
    assert unlike_everyday({}) is None


def test_fine_tuning_costs_more_the_deeper_and_the_more_photos():
    speeds = {"efficientnet_lite0": {"ms_per_photo": 6.0}}
    lite0 = {r.blocks: r for r in advice(1000, speeds) if r.backbone == "efficientnet_lite0"}
    assert lite0[0].seconds < lite0[1].seconds <= lite0[2].seconds <= lite0[3].seconds <= lite0[4].seconds
    assert lite0[0].gain == 0.0 and lite0[2].gain_unlike is not None
    doubled = {r.blocks: r for r in advice(2000, speeds) if r.backbone == "efficientnet_lite0"}
    assert doubled[2].seconds == 2 * lite0[2].seconds


def lite0(gains: dict[int, float | None]) -> list[Advice]:
    return [Advice("efficientnet_lite0", b, 60.0 * (b + 1), 0.0, gain, True) for b, gain in gains.items()]


def test_a_deeper_depth_is_suggested_only_when_it_gains_clearly_more():
    """Each block deeper costs time: the shallowest depth within CLEARLY_BETTER points of the best is suggested, and
    the deepest measured one is named beside it."""
    rows = lite0({0: 0.0, 1: None, 2: 2.6, 3: 2.6 + CLEARLY_BETTER - 0.1})
    assert [r.blocks if r else None for r in suggested_depth(rows)] == [2, 3]
    rows = lite0({0: 0.0, 1: None, 2: 2.6, 3: 2.6 + CLEARLY_BETTER + 0.1})
    assert [r.blocks if r else None for r in suggested_depth(rows)] == [3, None]
    assert suggested_depth(lite0({0: 0.0, 1: None, 2: None})) is None
    assert suggested_depth(advice(1000, {}), "efficientnet_lite2") is None  # no fine-tuning measured on it


def test_the_measured_table_suggests_two_blocks():
    """With the figures measured (docs/benchmarks.md), three blocks do not gain clearly more than two."""
    chosen, deeper = suggested_depth(advice(3000, {"efficientnet_lite0": {"ms_per_photo": 6.0}}))
    assert (chosen.blocks, chosen.gain_unlike) == (2, MEASURED[("efficientnet_lite0", 2)].unlike)
    assert deeper.blocks == 3 and deeper.seconds > chosen.seconds
