"""Metrics of a model's answers, worked out by hand on a small case (sklearn.metrics computes them)."""

import numpy as np
import pytest

from core.serving.evaluate import evaluate_predictions

NAMES = ["ant", "bee", "wasp", "moth"]


def answers(predicted: list[int], confidence: list[float]) -> np.ndarray:
    """Probabilities whose largest entry is `predicted` at `confidence`, the rest shared by the other classes."""
    p = np.zeros((len(predicted), len(NAMES)))
    for row, (c, sure) in enumerate(zip(predicted, confidence)):
        p[row] = (1 - sure) / (len(NAMES) - 1)
        p[row, c] = sure
    return p


def test_confusion_and_per_class_metrics_match_the_hand_count():
    # wasp is never predicted (precision 0, not a division by zero); moth neither appears nor is predicted
    truth = [0, 0, 0, 1, 1, 2]
    evaluation = evaluate_predictions(truth, answers([0, 0, 1, 1, 0, 1], [0.9, 0.8, 0.6, 0.7, 0.95, 0.5]), NAMES,
                                      [f"{i}.jpg" for i in range(6)])
    assert evaluation.confusion == [[2, 1, 0, 0], [1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    assert evaluation.n == 6 and evaluation.accuracy == 0.5
    expected = {  # class: precision, recall, f1, support
        "ant": (2 / 3, 2 / 3, 2 / 3, 3), "bee": (1 / 3, 1 / 2, 0.4, 2), "wasp": (0, 0, 0, 1), "moth": (0, 0, 0, 0)}
    for row in evaluation.per_class:
        precision, recall, f1, support = expected[row["class"]]
        assert row["precision"] == pytest.approx(precision) and row["recall"] == pytest.approx(recall)
        assert row["f1"] == pytest.approx(f1) and row["support"] == support
        assert all(type(row[m]) is float for m in ("precision", "recall", "f1")) and type(row["support"]) is int
    assert [(m["path"], m["true"], m["predicted"]) for m in evaluation.misclassified] == [  # most confident first
        ("4.jpg", "bee", "ant"), ("2.jpg", "ant", "bee"), ("5.jpg", "wasp", "bee")]


def test_no_photos_give_zeros_not_an_error():
    evaluation = evaluate_predictions([], np.zeros((0, len(NAMES))), NAMES)
    assert evaluation.confusion == [[0] * 4] * 4 and evaluation.accuracy == 0.0 and evaluation.misclassified == []
    assert [(r["precision"], r["recall"], r["f1"], r["support"]) for r in evaluation.per_class] == [(0, 0, 0, 0)] * 4


def test_the_most_confused_pairs_come_first_with_their_share_of_the_real_class():
    from core.serving.evaluate import most_confused

    names = ["ant", "bee", "fly", "moth"]
    confusion = [[5, 3, 0, 0],
                 [1, 6, 0, 3],
                 [0, 1, 0, 0],
                 [0, 0, 0, 0]]
    assert most_confused(names, confusion) == [
        {"real": "ant", "said": "bee", "photos": 3, "share": 3 / 8},
        {"real": "bee", "said": "moth", "photos": 3, "share": 3 / 10},
        {"real": "bee", "said": "ant", "photos": 1, "share": 1 / 10},
        {"real": "fly", "said": "bee", "photos": 1, "share": 1.0},
    ]
    assert [p["photos"] for p in most_confused(names, confusion, limit=2)] == [3, 3]
    assert most_confused(names, [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]) == []
