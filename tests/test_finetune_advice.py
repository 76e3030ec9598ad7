"""The Train page's fine-tuning advice: expected time per depth, and the sign that photos are unlike everyday ones."""

from core.model.advice import UNLIKE_BELOW, UNLIKE_MIN_PER_CLASS, advice, unlike_everyday


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
