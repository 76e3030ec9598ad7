"""The solved head: the full-dimensional answer, found fast and the same every time."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from core.model import head
from core.model.head import (Problems, coordinates, out_of_fold, refit_head, reorder_rows, search_head,
                             stratified_folds)


def blobs(n_per_class, dims, n_classes=3, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dims)) * spread
    labels = np.repeat(np.arange(n_classes), n_per_class)
    return (centres[labels] + rng.normal(size=(len(labels), dims))).astype(np.float32), labels


def test_signal_in_a_direction_of_little_variance_is_not_projected_away():
    """The head used to keep the top 256 principal directions: a class told apart only along a quiet
    direction (as on grocery shelves) was lost. Now every direction counts."""
    rng = np.random.default_rng(1)
    n, dims = 1200, 320
    labels = np.arange(n) % 2
    x = rng.normal(size=(n, dims)).astype(np.float32) * np.linspace(3.0, 1.0, dims, dtype=np.float32)
    x[:, -1] = (labels * 2 - 1) * 0.8 + rng.normal(size=n) * 0.1  # the last, quietest direction holds the label
    train, val = slice(0, 1000), slice(1000, None)
    search = search_head(x[train], labels[train], 2, np.arange(1000), val=(x[val], labels[val]))
    accuracy = (search.head.probabilities(x[val]).argmax(axis=1) == labels[val]).mean()
    assert accuracy > 0.95


def test_head_is_the_full_dimensional_logistic_regression():
    """At the C it picks, the head predicts what scikit-learn's float64 solver, solved tightly, predicts."""
    x, labels = blobs(80, 40, n_classes=4, spread=0.4)
    x, labels = x[40:], labels[40:]  # class 0 has half the photos: the class weights matter
    search = search_head(x, labels, 4, np.arange(len(labels)))
    coords = coordinates(x)
    reference = LogisticRegression(class_weight="balanced", C=search.strength, tol=1e-10, max_iter=10000)
    reference.fit(coords(x).astype(np.float64), labels)
    test, _ = blobs(50, 40, n_classes=4, seed=5, spread=0.4)
    expected = reference.predict_proba(coords(test).astype(np.float64))
    got = search.head.probabilities(test)
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).mean() >= 0.99
    np.testing.assert_allclose(got, expected, atol=0.02)


@pytest.mark.parametrize("dims", [40, 300])  # more vectors than dimensions, and fewer (solved on their span)
def test_a_head_solved_again_on_more_vectors_is_the_logistic_regression_on_all_of_them(dims):
    """A run's kept head, refitted with its validation photos at the strength chosen without them, is what
    scikit-learn finds on the union at that C; on the vectors it was solved on it stays as it was."""
    x, labels = blobs(60, dims, n_classes=3, spread=0.6)
    train = np.arange(len(labels)) % 5 != 0  # a fifth held aside, then learned too
    search = search_head(x[train], labels[train], 3, np.arange(train.sum()))
    refit = refit_head(search.head, x, labels, 3, search.strength)
    coords = coordinates(x)
    reference = LogisticRegression(class_weight="balanced", C=search.strength, tol=1e-10, max_iter=10000)
    reference.fit(coords(x).astype(np.float64), labels)
    test, _ = blobs(50, dims, n_classes=3, seed=5, spread=0.6)
    np.testing.assert_allclose(refit.probabilities(test), reference.predict_proba(coords(test).astype(np.float64)),
                               atol=0.02)
    assert np.abs(refit.probabilities(test) - search.head.probabilities(test)).max() > 0.02  # it did learn more
    again = refit_head(search.head, x[train], labels[train], 3, search.strength)
    np.testing.assert_allclose(again.probabilities(test), search.head.probabilities(test), atol=0.01)


def test_fewer_vectors_than_dimensions_are_solved_on_their_span_without_loss():
    x, labels = blobs(20, 300)
    coords = coordinates(x)
    assert coords.directions is not None and coords.directions.shape == (300, 60)
    plain = head.Coordinates(coords.mean, coords.scale, None)
    heads = []
    for c in (coords, plain):
        problems = Problems(c(x), labels, 3, np.ones((1, len(x)), bool))
        heads.append(c.raw(*problems.problem(problems.solve(0.3, tolerance=1e-6), 0)))
    test, _ = blobs(10, 300, seed=3)
    np.testing.assert_allclose(heads[0].probabilities(test), heads[1].probabilities(test), atol=1e-4)


def test_search_is_deterministic_and_reports_every_strength():
    x, labels = blobs(30, 50)
    groups = np.arange(len(labels))
    first, second = search_head(x, labels, 3, groups), search_head(x, labels, 3, groups)
    assert np.array_equal(first.head.kernel, second.head.kernel) and np.array_equal(first.head.bias, second.head.bias)
    assert [row["C"] for row in first.tried] == list(head.STRENGTHS[:len(first.tried)]) and first.folds == head.FOLDS
    assert sum(row["chosen"] for row in first.tried) == 1
    assert all({"cv_loss", "cv_accuracy", "loss", "accuracy"} <= set(row) for row in first.tried)


def test_folds_keep_a_photo_with_its_mirror_image_and_every_class_in_each():
    labels = np.tile(np.repeat(np.arange(3), [10, 20, 40]), 2)
    groups = np.tile(np.arange(70), 2)
    fold_of = stratified_folds(labels, groups, 4, seed=0)
    assert (fold_of[:70] == fold_of[70:]).all()
    for c in range(3):
        counts = np.bincount(fold_of[labels == c], minlength=4)
        assert counts.max() - counts.min() <= 2  # each group is two rows


def test_a_class_missing_from_a_problem_gets_no_probability():
    x, labels = blobs(10, 8)
    masks = np.stack([labels != 2, np.ones(len(labels), bool)])
    problems = Problems(x, labels, 3, masks)
    params = problems.solve(1.0)
    kernel, bias = problems.problem(params, 0)
    probabilities = head.softmax(x @ kernel + bias)
    assert probabilities[:, 2].max() < 1e-3 and np.isfinite(probabilities).all()


@pytest.mark.parametrize("n_classes", [2, 5])
def test_head_on_the_raw_embedding_has_the_dense_layer_shape(n_classes):
    x, labels = blobs(12, 30, n_classes=n_classes)
    search = search_head(x, labels, n_classes, np.arange(len(labels)))
    assert search.head.kernel.shape == (30, n_classes) and search.head.bias.shape == (n_classes,)
    assert search.head.kernel.dtype == search.head.bias.dtype == np.float32


def test_search_stops_once_the_cross_validated_loss_rises():
    """The larger strengths cost the most to solve: once past the lowest cross-validated loss they are not tried."""
    x, labels = blobs(40, 30, n_classes=4, spread=0.3)
    search = search_head(x, labels, 4, np.arange(len(labels)))
    losses = [row["cv_loss"] for row in search.tried]
    assert 2 <= len(losses) < len(head.STRENGTHS)
    assert losses[-1] > losses[-2] and all(a > b for a, b in zip(losses[:-2], losses[1:-1]))
    assert search.tried[-2]["chosen"]


def test_lbfgs_finds_the_minimum_of_an_ill_conditioned_quadratic():
    curvature = np.logspace(0, 3, 200)
    target = np.random.default_rng(0).normal(size=200)
    x = head.lbfgs(lambda v: (0.5 * float((curvature * (v - target)) @ (v - target)), curvature * (v - target)),
                   np.zeros(200), 1e-8, 1000)
    np.testing.assert_allclose(x, target, atol=1e-8)


def test_many_photos_choose_the_strength_on_a_sample_and_fit_all_of_them(monkeypatch):
    """The final solve on all vectors asks of the mean gradient what the sample's solve asks: the objective is a sum
    over the vectors, so its tolerance grows with them (a fixed one asked more than float32 sums give: at 50,000
    vectors the solve ground at the rounding for two thirds of its steps), with a longer L-BFGS memory. Its answer is
    the tight solve's."""
    x, labels = blobs(150, 20, n_classes=3, spread=0.5)
    monkeypatch.setattr(head, "SEARCH_ROWS", 200)
    asked = []
    solve = Problems.solve

    def spy(problems, strengths, start=None, tolerance=None, memory=10):
        asked.append((len(problems.z), tolerance, memory))
        return solve(problems, strengths, start, tolerance, memory)

    monkeypatch.setattr(Problems, "solve", spy)
    search = search_head(x, labels, 3, np.arange(len(labels)))
    assert search.folds == head.FOLDS and search.tried
    assert asked[-1] == (450, pytest.approx(head.POLISH_TOLERANCE * 450 / 200), head.FINAL_MEMORY)
    assert all(memory == 10 for _, _, memory in asked[:-1])  # the searches as measured on the shared sets
    coords = coordinates(x)
    problems = Problems(coords(x), labels, 3, np.ones((1, len(x)), bool))
    expected = coords.raw(*problems.problem(solve(problems, search.strength, tolerance=1e-6), 0))
    test, _ = blobs(50, 20, n_classes=3, seed=4, spread=0.5)
    got, tight = search.head.probabilities(test), expected.probabilities(test)
    assert (got.argmax(axis=1) == tight.argmax(axis=1)).mean() >= 0.99  # the head issue's test of a lossless shortcut
    np.testing.assert_allclose(got, tight, atol=0.02)


def test_sets_up_to_the_sample_size_are_searched_whole(monkeypatch):
    x, labels = blobs(40, 10, n_classes=3, spread=0.5)
    whole = search_head(x, labels, 3, np.arange(len(labels)))
    monkeypatch.setattr(head, "_sampled_search", lambda *args: pytest.fail("sampled a set under SEARCH_ROWS"))
    monkeypatch.setattr(head, "SEARCH_ROWS", len(labels))
    again = search_head(x, labels, 3, np.arange(len(labels)))
    assert again.strength == whole.strength
    np.testing.assert_array_equal(again.head.kernel, whole.head.kernel)


def test_the_sample_keeps_whole_groups_and_every_class_in_proportion():
    labels = np.tile(np.repeat(np.arange(3), [100, 200, 20]), 2)
    groups = np.tile(np.arange(320), 2)
    rows = head._sample(labels, groups, 320, seed=0)
    assert len(rows) == 2 * len(np.unique(groups[rows]))  # a photo with its mirror image
    assert np.bincount(labels[rows], minlength=3).tolist() == [100, 200, 20]


def test_a_head_on_raw_embeddings_goes_back_into_the_solvers_coordinates():
    x, labels = blobs(10, 30, n_classes=3)  # fewer vectors than dimensions: rotated onto their span
    coords = coordinates(x)
    problems = Problems(coords(x), labels, 3, np.ones((1, len(x)), bool))
    params = problems.solve(1.0)
    np.testing.assert_allclose(head._in_coordinates(coords.raw(*problems.problem(params, 0)), coords), params,
                               atol=1e-4)


def test_rows_reordered_in_place_match_a_reordered_copy():
    rng = np.random.default_rng(3)
    for n in (0, 1, 7, 500):
        for order in (np.arange(n), rng.permutation(n), np.roll(np.arange(n), 1)):
            a = rng.normal(size=(n, 5)).astype(np.float32)
            expected = a[order]
            reorder_rows(a, order)
            assert np.array_equal(a, expected)


def test_out_of_fold_in_place_answers_as_on_a_copy_and_leaves_the_vectors_as_they_were():
    """Issue 23: the suspects check runs in the server, and a reordered copy of 50,000 vectors was 250 MB of its peak."""
    x, labels = blobs(60, 12, n_classes=3, spread=0.8)
    x = x.astype(np.float32)
    fold_of = np.arange(len(labels)) % 4
    kept = x.copy()
    strengths = lambda rows: 1 / (0.1 * rows)  # noqa: E731
    copied = out_of_fold(x, labels, 3, fold_of, strengths)
    in_place = out_of_fold(x, labels, 3, fold_of, strengths, in_place=True)
    assert np.array_equal(x, kept)
    np.testing.assert_array_equal(in_place, copied)


def test_the_head_may_work_in_the_vectors_own_memory_with_the_same_answer(monkeypatch):
    """With `overwrite_x` the final solve on every vector takes x as its working copy (400 MB less at 50,000 photos)."""
    x, labels = blobs(150, 20, n_classes=3, spread=0.5)
    x = x.astype(np.float32)
    monkeypatch.setattr(head, "SEARCH_ROWS", 200)
    kept = search_head(x.copy(), labels, 3, np.arange(len(labels)))
    coords = coordinates(x)
    spare = x.copy()
    overwritten = search_head(spare, labels, 3, np.arange(len(labels)), overwrite_x=True)
    np.testing.assert_array_equal(overwritten.head.kernel, kept.head.kernel)
    np.testing.assert_array_equal(overwritten.head.bias, kept.head.bias)
    np.testing.assert_array_equal(spare, coords(x))  # x itself became the solver's coordinates
