"""Tests for skkp.metrics: hand-computed cases, agreement with sklearn.metrics,
NaN handling, input validation and the scorers inside sklearn's model selection."""
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.dummy import DummyRegressor
from sklearn.base import BaseEstimator
from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score, jaccard_score,
                             mean_absolute_error, mean_squared_error)
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, cross_validate
from sklearn.neighbors import KNeighborsRegressor

import skkp.metrics as M
from skkp.schemas import (CELEBAMASK_CLASSES, IBUG68_SCHEMA, IGNORE_INDEX, KAGGLE_SCHEMA, KEYPOINT_SCHEMAS,
                          KeypointSchema)


def _frozen(*arrays):
    """Read-only copies: any in-place write by the code under test raises."""
    out = []
    for a in arrays:
        a = np.array(a, copy=True)
        a.flags.writeable = False
        out.append(a)
    return out


def _random_points(rng, n=6, K=5, scale=50.0):
    y_true = rng.uniform(0, scale, size=(n, 2 * K))
    y_pred = y_true + rng.normal(0, 2.0, size=y_true.shape)
    return y_true, y_pred


def _face68(rng, n=5):
    """Roughly face-like 68-point layouts with the outer eye corners 40 px apart."""
    pts = rng.uniform(20, 80, size=(n, 68, 2))
    pts[:, 36] = [30.0, 40.0]
    pts[:, 45] = [70.0, 40.0]
    return pts


# --------------------------------------------------------------------------- #
# pixel errors
# --------------------------------------------------------------------------- #
def test_pixel_errors_match_sklearn_without_nan():
    rng = np.random.RandomState(0)
    y_true, y_pred = _random_points(rng)
    w = rng.uniform(0.5, 2.0, size=y_true.shape[0])
    assert M.mean_absolute_error_px(y_true, y_pred) == pytest.approx(
        mean_absolute_error(y_true, y_pred))
    assert M.mean_absolute_error_px(y_true, y_pred, sample_weight=w) == pytest.approx(
        mean_absolute_error(y_true, y_pred, sample_weight=w))
    # Kaggle RMSE: one root over all coordinates = sqrt of sklearn's uniform-average MSE
    assert M.root_mean_squared_error_px(y_true, y_pred) == pytest.approx(
        np.sqrt(mean_squared_error(y_true, y_pred)))
    assert M.root_mean_squared_error_px(y_true, y_pred, sample_weight=w) == pytest.approx(
        np.sqrt(mean_squared_error(y_true, y_pred, sample_weight=w)))


def test_flat_and_3d_layouts_agree():
    rng = np.random.RandomState(1)
    y_true, y_pred = _random_points(rng, n=4, K=3)
    t3, p3 = y_true.reshape(4, 3, 2), y_pred.reshape(4, 3, 2)
    for f in (M.mean_absolute_error_px, M.root_mean_squared_error_px, M.mean_point_error):
        assert f(t3, p3) == pytest.approx(f(y_true, y_pred))
        assert f(y_true, p3) == pytest.approx(f(y_true, y_pred))  # mixed layouts are fine
    np.testing.assert_allclose(M.per_keypoint_error(t3, p3), M.per_keypoint_error(y_true, y_pred))


def test_mean_point_error_hand_computed():
    y_true = [[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, np.nan, np.nan]]
    y_pred = [[3.0, 4.0, 10.0, 10.0], [5.0, 7.0, 99.0, 99.0]]
    # labelled point errors: 5, 0, 2 -> mean 7/3
    assert M.mean_point_error(y_true, y_pred) == pytest.approx(7 / 3)
    # per-image weights: image 0 has 2 points (sum 5), image 1 one point (sum 2)
    assert M.mean_point_error(y_true, y_pred, sample_weight=[1.0, 3.0]) == pytest.approx(
        (5 + 3 * 2) / (2 + 3 * 1))


def test_nan_truth_excludes_whole_point():
    # point 1 has only its y missing: both its coordinates are left out
    y_true = np.array([[0.0, 0.0, 10.0, np.nan, 4.0, 4.0]])
    y_pred = np.array([[1.0, 1.0, 30.0, 30.0, 4.0, 7.0]])
    assert M.mean_absolute_error_px(y_true, y_pred) == pytest.approx((1 + 1 + 0 + 3) / 4)
    assert M.root_mean_squared_error_px(y_true, y_pred) == pytest.approx(np.sqrt((1 + 1 + 9) / 4))
    assert M.mean_point_error(y_true, y_pred) == pytest.approx((np.sqrt(2) + 3) / 2)
    # NaN predictions at unlabelled points are allowed
    y_pred[0, 2:4] = np.nan
    assert M.mean_absolute_error_px(y_true, y_pred) == pytest.approx(5 / 4)


def test_nan_prediction_at_labelled_point_raises():
    y_true = np.zeros((2, 4))
    y_pred = np.zeros((2, 4))
    y_pred[1, 3] = np.nan
    for f in (M.mean_absolute_error_px, M.root_mean_squared_error_px, M.mean_point_error,
              M.per_keypoint_error):
        with pytest.raises(ValueError, match="y_pred is NaN.*image 1, point 1"):
            f(y_true, y_pred)
    with pytest.raises(ValueError, match="y_pred"):
        M.normalized_mean_error(y_true, y_pred, normalizer="bbox")


def test_all_unlabelled_raises():
    y = np.full((2, 4), np.nan)
    with pytest.raises(ValueError, match="nothing to score"):
        M.mean_absolute_error_px(y, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="nothing to score"):
        M.mean_point_error(np.zeros((2, 4)), np.ones((2, 4)), sample_weight=[0, 0])


@pytest.mark.parametrize("y_true, y_pred, match", [
    (np.zeros((2, 5)), np.zeros((2, 5)), r"y_true must have shape \(n, 2K\).*got \(2, 5\)"),
    (np.zeros(4), np.zeros(4), r"y_true must have shape.*got \(4,\)"),
    (np.zeros((2, 2, 3)), np.zeros((2, 2, 3)), r"y_true must have shape.*\(n, K, 2\)"),
    (np.zeros((2, 4)), np.zeros((2, 5)), r"y_pred must have shape"),
    (np.zeros((2, 4)), np.zeros((3, 4)), "different keypoint shapes"),
    (np.zeros((2, 4)), np.zeros((2, 6)), "different keypoint shapes"),
    (np.zeros((0, 4)), np.zeros((0, 4)), "y_true is empty"),
    (np.zeros((1, 2)), np.array([[np.inf, 0.0]]), "y_pred contains infinity"),
    (None, np.zeros((1, 2)), "y_true is None"),
    (np.zeros((1, 2), complex), np.zeros((1, 2)), "y_true must hold real numbers"),
])
def test_keypoint_input_validation(y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        M.mean_absolute_error_px(y_true, y_pred)


def test_keypoint_type_and_weight_validation():
    with pytest.raises(TypeError, match="y_true must hold numbers"):
        M.mean_point_error([["a", "b"]], [[0.0, 0.0]])
    with pytest.raises(TypeError, match="y_pred must be"):
        M.mean_point_error([[0.0, 0.0]], "0 0")
    with pytest.raises(ValueError, match="sample_weight"):
        M.mean_point_error(np.zeros((2, 2)), np.ones((2, 2)), sample_weight=[1.0])
    with pytest.raises(ValueError, match="sample_weight"):
        M.mean_point_error(np.zeros((2, 2)), np.ones((2, 2)), sample_weight=[1.0, -1.0])


def test_per_keypoint_error():
    rng = np.random.RandomState(2)
    y_true, y_pred = _random_points(rng, n=7, K=4)
    y_true[[0, 3], 2:4] = np.nan  # point 1 unlabelled in two images
    y_true[:, 6:8] = np.nan       # point 3 never labelled
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" warning
        err = M.per_keypoint_error(y_true, y_pred)
    t, p = y_true.reshape(7, 4, 2), y_pred.reshape(7, 4, 2)
    for k in range(3):
        rows = ~np.isnan(t[:, k, 0])
        assert err[k] == pytest.approx(np.linalg.norm(t[rows, k] - p[rows, k], axis=1).mean())
    assert np.isnan(err[3])
    named = M.per_keypoint_error(y_true, y_pred, names=["a", "b", "c", "d"])
    assert list(named) == ["a", "b", "c", "d"] and named["b"] == pytest.approx(err[1])
    with pytest.raises(ValueError, match="names"):
        M.per_keypoint_error(y_true, y_pred, names=["a"])


# --------------------------------------------------------------------------- #
# normalised errors
# --------------------------------------------------------------------------- #
def test_nme_outer_eyes_matches_loop():
    rng = np.random.RandomState(3)
    t = _face68(rng)
    t[1, 36] = [20.0, 40.0]  # a wider face: 50 px
    p = t + rng.normal(0, 1.5, size=t.shape)
    expected = [np.linalg.norm(t[i] - p[i], axis=1).mean() / np.linalg.norm(t[i, 36] - t[i, 45])
                for i in range(len(t))]
    np.testing.assert_allclose(M.per_image_nme(t, p), expected)
    np.testing.assert_allclose(M.per_image_nme(t.reshape(len(t), -1), p), expected)
    assert M.normalized_mean_error(t, p) == pytest.approx(np.mean(expected))
    assert M.normalized_mean_error(t, p) == pytest.approx(
        M.normalized_mean_error(t, p, normalizer=(36, 45)))


def test_nme_outer_eyes_needs_68_points():
    with pytest.raises(ValueError, match="68-point"):
        M.normalized_mean_error(np.zeros((2, 18)), np.zeros((2, 18)))


def test_nme_subset_of_points_uses_full_face_normaliser():
    rng = np.random.RandomState(4)
    t = _face68(rng, n=3)
    p = t.copy()
    nose = np.arange(27, 36)
    p[:, nose] += [3.0, 4.0]          # 5 px error on each nose point
    p[:, :17] += 30.0                 # jaw errors must not count
    assert M.normalized_mean_error(t, p, points=nose) == pytest.approx(5.0 / 40.0)
    mask = np.zeros(68, dtype=bool)
    mask[nose] = True
    assert M.normalized_mean_error(t, p, points=mask) == pytest.approx(5.0 / 40.0)
    # the normaliser is read from all points even though only nose points are scored
    assert M.pck(t, p, threshold=0.13, points=nose) == 1.0
    assert M.pck(t, p, threshold=0.12, points=nose) == 0.0


def test_bbox_normaliser_hand_computed():
    y_true = np.array([[0.0, 0.0, 8.0, 2.0, np.nan, 100.0]])  # extent 8 x 2 -> sqrt(16) = 4
    y_pred = np.array([[2.0, 0.0, 8.0, 2.0, 0.0, 0.0]])
    np.testing.assert_allclose(M.per_image_nme(y_true, y_pred, normalizer="bbox"), [(2 / 2) / 4])


def test_array_and_tuple_normalisers():
    y_true = np.array([[0.0, 0.0, 10.0, 0.0], [0.0, 0.0, 20.0, 0.0]])
    y_pred = y_true + [[1.0, 0.0, 0.0, 0.0], [0.0, 4.0, 0.0, 0.0]]
    np.testing.assert_allclose(M.per_image_nme(y_true, y_pred, normalizer=(0, 1)), [0.05, 0.1])
    np.testing.assert_allclose(M.per_image_nme(y_true, y_pred, normalizer=np.array([5.0, 4.0])),
                               [0.1, 0.5])
    np.testing.assert_allclose(M.per_image_nme(y_true, y_pred, normalizer=[5.0, 4.0]), [0.1, 0.5])


@pytest.mark.parametrize("normalizer, match", [
    ("eyes", "normalizer must be"),
    ((0, 0), "two different points"),
    ((0, 5), "two different points"),
    ((0, 1, 2), "two point indices"),
    ((0.0, 1.0), "two point indices"),
    (np.ones(3), r"shape \(2,\)"),
    (np.array([1.0, 0.0]), "positive"),
    (np.array([1.0, -2.0]), "positive"),
    (np.array([1.0, np.inf]), "positive"),
])
def test_bad_normalizer(normalizer, match):
    y = np.array([[0.0, 0.0, 10.0, 0.0], [0.0, 0.0, 20.0, 0.0]])
    with pytest.raises(ValueError, match=match):
        M.per_image_nme(y, y, normalizer=normalizer)


def test_zero_bbox_normaliser_raises():
    y = np.array([[5.0, 5.0, np.nan, np.nan]])  # one labelled point: zero extent
    with pytest.raises(ValueError, match="positive"):
        M.per_image_nme(y, y, normalizer="bbox")


@pytest.mark.parametrize("points", [[], [0, 7], [-1], [[0, 1]], [0.5], np.ones(3, dtype=bool)])
def test_bad_points(points):
    y = np.zeros((1, 8))
    y[0, ::2] = np.arange(4)
    with pytest.raises(ValueError, match="points"):
        M.per_image_nme(y, y, normalizer=(0, 1), points=points)


def test_unscorable_images_are_nan_and_left_out():
    y_true = np.array([[0.0, 0.0, 10.0, 0.0, 5.0, 5.0],
                       [0.0, 0.0, 10.0, 0.0, np.nan, np.nan],   # scored point unlabelled
                       [np.nan, np.nan, 10.0, 0.0, 5.0, 5.0]])  # normaliser point unlabelled
    y_pred = np.where(np.isnan(y_true), 0.0, y_true) + [0, 0, 0, 0, 1, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        e = M.per_image_nme(y_true, y_pred, normalizer=(0, 1), points=[2])
    np.testing.assert_allclose(e, [0.1, np.nan, np.nan])
    assert M.normalized_mean_error(y_true, y_pred, normalizer=(0, 1), points=[2]) == pytest.approx(0.1)
    assert M.failure_rate(y_true, y_pred, 0.05, normalizer=(0, 1), points=[2]) == 1.0
    with pytest.raises(ValueError, match="nothing to score"):
        M.normalized_mean_error(y_true[1:], y_pred[1:], normalizer=(0, 1), points=[2])


def test_failure_rate_pck_hand_computed():
    # eye distance 10; per-point errors 0, 1 | 0, 2 | 0, 0.5 -> NME 0.05, 0.1, 0.025
    y_true = np.tile([0.0, 0.0, 10.0, 0.0], (3, 1))
    y_pred = y_true + [[0, 0, 0, 1], [0, 0, 2, 0], [0, 0, 0, 0.5]]
    e = M.per_image_nme(y_true, y_pred, normalizer=(0, 1))
    np.testing.assert_allclose(e, [0.05, 0.1, 0.025])
    assert M.failure_rate(y_true, y_pred, 0.08, normalizer=(0, 1)) == pytest.approx(1 / 3)
    assert M.failure_rate(y_true, y_pred, 0.10, normalizer=(0, 1)) == 0.0  # strictly greater
    assert M.failure_rate(y_true, y_pred, 0.04, normalizer=(0, 1),
                          sample_weight=[1, 1, 2]) == pytest.approx(2 / 4)
    # normalised point errors 0, .1, 0, .2, 0, .05
    assert M.pck(y_true, y_pred, 0.1, normalizer=(0, 1)) == pytest.approx(5 / 6)
    assert M.pck(y_true, y_pred, 0.05, normalizer=(0, 1)) == pytest.approx(4 / 6)
    assert M.normalized_mean_error(y_true, y_pred, normalizer=(0, 1),
                                   sample_weight=[0, 1, 3]) == pytest.approx((0.1 + 0.075) / 4)
    for bad in (0, -0.1, np.nan, "0.1", True):
        with pytest.raises(ValueError, match="threshold"):
            M.failure_rate(y_true, y_pred, bad, normalizer=(0, 1))


def test_ced_curve_and_auc():
    rng = np.random.RandomState(5)
    t = _face68(rng, n=40)
    p = t + rng.normal(0, 2.5, size=t.shape)
    e = M.per_image_nme(t, p)
    thr, frac = M.cumulative_error_curve(t, p, max_threshold=0.1, n_thresholds=2001)
    assert thr[0] == 0 and thr[-1] == pytest.approx(0.1)
    assert np.all(np.diff(frac) >= 0)
    np.testing.assert_allclose(frac, [(e <= x).mean() for x in thr])
    auc = M.ced_auc(t, p, max_threshold=0.1)
    assert 0 < auc < 1
    assert auc == pytest.approx(np.trapezoid(frac, thr) / 0.1, abs=1e-3)
    assert M.ced_auc(t, t) == 1.0
    far = t + 40.0
    assert M.ced_auc(t, far) == 0.0
    _, f = M.cumulative_error_curve(t, far)
    assert f.max() == 0.0
    with pytest.raises(ValueError, match="n_thresholds"):
        M.cumulative_error_curve(t, p, n_thresholds=1)
    with pytest.raises(ValueError, match="max_threshold"):
        M.ced_auc(t, p, max_threshold=-1)


_KEYPOINT_METRICS = [
    M.mean_absolute_error_px, M.root_mean_squared_error_px, M.mean_point_error, M.per_keypoint_error,
    lambda t, p: M.normalized_mean_error(t, p, normalizer="bbox", points=[1, 2]),
    M.failure_rate, M.pck, M.ced_auc, M.cumulative_error_curve,
]


@pytest.mark.parametrize("layout", [(3, 68, 2), (3, 136)])
def test_keypoint_inputs_not_modified(layout):
    rng = np.random.RandomState(6)
    t = _face68(rng, n=3)
    t[0, 5] = np.nan
    p = t + 1.0
    p[0, 5] = np.nan
    t, p = t.reshape(layout), p.reshape(layout)
    t0, p0 = t.copy(), p.copy()
    frozen_t, frozen_p = _frozen(t, p)
    for f in _KEYPOINT_METRICS:
        expected = f(t, p)
        # read-only inputs work too (no write to them), with the same result
        np.testing.assert_array_equal(f(frozen_t, frozen_p), expected)
        np.testing.assert_array_equal(t, t0)  # writeable inputs come back unchanged
        np.testing.assert_array_equal(p, p0)


# --------------------------------------------------------------------------- #
# scorers
# --------------------------------------------------------------------------- #
def test_scorers_in_cross_val_score():
    rng = np.random.RandomState(7)
    X = rng.normal(size=(30, 3))
    y = rng.uniform(0, 96, size=(30, 8))  # 4 points
    cv = KFold(3)
    for scorer, metric in [(M.mae_px_scorer, M.mean_absolute_error_px),
                           (M.rmse_px_scorer, M.root_mean_squared_error_px),
                           (M.mean_point_error_scorer, M.mean_point_error),
                           (M.nme_scorer("bbox", points=[1, 3]),
                            lambda a, b: M.normalized_mean_error(a, b, "bbox", points=[1, 3]))]:
        scores = cross_val_score(DummyRegressor(), X, y, cv=cv, scoring=scorer)
        expected = [-metric(y[te], np.tile(y[tr].mean(axis=0), (len(te), 1)))
                    for tr, te in cv.split(X)]
        np.testing.assert_allclose(scores, expected)
        assert np.all(scores < 0)


def test_scorers_in_grid_search():
    rng = np.random.RandomState(8)
    X = rng.uniform(size=(40, 2))
    y = np.hstack([X * 90, X[:, ::-1] * 50])  # a smooth target: neighbours help
    scoring = {k: v for k, v in M.SCORERS.items() if k != "neg_nme_outer_eyes"}  # K=4 here
    gs = GridSearchCV(KNeighborsRegressor(), {"n_neighbors": [1, 3, 25]}, cv=4,
                      scoring=scoring, refit="neg_mean_point_error", error_score="raise")
    gs.fit(X, y)
    assert gs.best_params_["n_neighbors"] in (1, 3)
    for name in ("neg_mae_px", "neg_rmse_px", "neg_nme_bbox"):
        assert np.all(gs.cv_results_[f"mean_test_{name}"] < 0)
    res = cross_validate(KNeighborsRegressor(3), X, y, cv=2,
                         scoring={"nme": M.nme_scorer((0, 1))})
    assert res["test_nme"].shape == (2,)


def test_outer_eyes_is_the_ibug68_schema_pair():
    assert M.OUTER_EYES_68 == IBUG68_SCHEMA.normalizer == (36, 45)
    rng = np.random.RandomState(16)
    t = _face68(rng, n=4)
    t[2, 45] = [75.0, 42.0]
    p = t + rng.normal(0, 1.0, size=t.shape)
    expected = M.per_image_nme(t, p, normalizer=(36, 45))
    for normalizer in ("outer_eyes", "ibug68", IBUG68_SCHEMA, M.OUTER_EYES_68):
        np.testing.assert_allclose(M.per_image_nme(t, p, normalizer=normalizer), expected)


@pytest.mark.parametrize("name", sorted(KEYPOINT_SCHEMAS))
def test_schema_normalizers(name):
    schema = KEYPOINT_SCHEMAS[name]
    rng = np.random.RandomState(17)
    t = rng.uniform(0, 90, size=(5, schema.n_keypoints, 2))
    p = t + rng.normal(0, 2.0, size=t.shape)
    i, j = schema.normalizer
    expected = [np.linalg.norm(t[n] - p[n], axis=1).mean() / np.linalg.norm(t[n, i] - t[n, j])
                for n in range(5)]
    np.testing.assert_allclose(M.per_image_nme(t, p, normalizer=name), expected)
    np.testing.assert_allclose(M.per_image_nme(t, p, normalizer=schema), expected)
    assert M.normalized_mean_error(t, p, normalizer=name) == pytest.approx(np.mean(expected))
    assert M.failure_rate(t, p, 1e9, normalizer=schema) == 0.0


def test_schema_normalizer_errors():
    y = np.zeros((2, 4, 2))
    y[:, 1, 0] = 10.0
    with pytest.raises(ValueError, match="normalizer='kaggle15' needs the 15-point 'kaggle15' layout.*K=4"):
        M.per_image_nme(y, y, normalizer="kaggle15")
    with pytest.raises(ValueError, match="needs the 68-point 'ibug68' layout"):
        M.normalized_mean_error(y, y, normalizer=IBUG68_SCHEMA)
    no_pair = KeypointSchema("four", ("a", "b", "c", "d"))
    with pytest.raises(ValueError, match="schema 'four' has no normalising pair"):
        M.per_image_nme(y, y, normalizer=no_pair)
    with pytest.raises(ValueError, match="schema 'four' has no normalising pair"):
        M.nme_scorer(no_pair)
    with pytest.raises(ValueError, match="KEYPOINT_SCHEMAS"):
        M.per_image_nme(y, y, normalizer="ibug_68")
    # a custom schema with a pair is used as given
    pair = KeypointSchema("four", ("a", "b", "c", "d"), normalizer=(0, 1))
    np.testing.assert_allclose(M.per_image_nme(y, y + [3.0, 4.0], normalizer=pair), [0.5, 0.5])


def test_nme_scorer_with_a_schema_name():
    rng = np.random.RandomState(18)
    y = rng.uniform(0, 96, size=(12, 2 * KAGGLE_SCHEMA.n_keypoints))
    X = rng.normal(size=(12, 2))
    cv = KFold(3)
    scores = cross_val_score(DummyRegressor(), X, y, cv=cv, scoring=M.nme_scorer("kaggle15"))
    expected = [-M.normalized_mean_error(y[te], np.tile(y[tr].mean(axis=0), (len(te), 1)),
                                         normalizer=KAGGLE_SCHEMA.normalizer)
                for tr, te in cv.split(X)]
    np.testing.assert_allclose(scores, expected)


def test_nme_scorer_outer_eyes_and_bad_args():
    rng = np.random.RandomState(9)
    y = _face68(rng, n=12).reshape(12, -1)
    X = rng.normal(size=(12, 2))
    s = cross_val_score(DummyRegressor(), X, y, cv=3, scoring=M.SCORERS["neg_nme_outer_eyes"])
    assert s.shape == (3,) and np.all(s < 0)
    with pytest.raises(ValueError, match="cross-validation"):
        M.nme_scorer(np.ones(12))
    with pytest.raises(ValueError, match="normalizer must be 'outer_eyes', 'bbox', a schema name"):
        M.nme_scorer("eyes")


# --------------------------------------------------------------------------- #
# face parsing
# --------------------------------------------------------------------------- #
def _label_maps(rng, n=3, size=(6, 7), n_classes=5, ignore_frac=0.2):
    y_true = rng.randint(0, n_classes, size=(n,) + size)
    y_pred = np.where(rng.uniform(size=y_true.shape) < 0.6, y_true,
                      rng.randint(0, n_classes, size=y_true.shape))
    y_true[rng.uniform(size=y_true.shape) < ignore_frac] = 255
    return y_true.astype(np.uint8), y_pred.astype(np.int32)


def test_confusion_matrix_matches_sklearn():
    rng = np.random.RandomState(10)
    t, p = _label_maps(rng)
    keep = t != 255
    cm = M.parsing_confusion_matrix(t, p, n_classes=5)
    np.testing.assert_array_equal(cm, confusion_matrix(t[keep], p[keep], labels=range(5)))
    assert cm.sum() == keep.sum()
    # one (H, W) map is the same as a stack of one
    np.testing.assert_array_equal(M.parsing_confusion_matrix(t[0], p[0], 5),
                                  M.parsing_confusion_matrix(t[:1], p[:1], 5))
    # ignore_index=None scores every pixel
    t2 = np.where(t == 255, 0, t)
    np.testing.assert_array_equal(M.parsing_confusion_matrix(t2, p, 5, ignore_index=None),
                                  confusion_matrix(t2.ravel(), p.ravel(), labels=range(5)))


def test_per_class_scores_match_sklearn():
    rng = np.random.RandomState(11)
    t, p = _label_maps(rng, n_classes=6)
    p[p == 5] = 4
    t[t == 5] = 4  # class 5 absent from truth and prediction -> NaN
    keep = t != 255
    f1 = M.per_class_f1(t, p, 6)
    iou = M.per_class_iou(t, p, 6)
    np.testing.assert_allclose(f1, f1_score(t[keep], p[keep], labels=range(6), average=None,
                                            zero_division=np.nan))
    np.testing.assert_allclose(iou[:5], jaccard_score(t[keep], p[keep], labels=range(5),
                                                      average=None))
    assert np.isnan(f1[5]) and np.isnan(iou[5])
    assert M.mean_f1(t, p, 6) == pytest.approx(np.mean(f1[1:5]))
    assert M.mean_iou(t, p, 6) == pytest.approx(np.mean(iou[:5]))
    assert M.mean_iou(t, p, 6, exclude=(0, 1)) == pytest.approx(np.mean(iou[2:5]))
    assert M.pixel_accuracy(t, p, 6) == pytest.approx(accuracy_score(t[keep], p[keep]))


def test_parsing_hand_computed():
    y_true = np.array([[0, 0, 1, 1],
                       [2, 2, 1, 255]])
    y_pred = np.array([[0, 1, 1, 1],
                       [2, 0, 0, 2]])
    # class 0: TP 1, |gt| 2, |pred| 3 ; class 1: TP 2, |gt| 3, |pred| 3 ; class 2: TP 1, 2, 1
    np.testing.assert_allclose(M.per_class_f1(y_true, y_pred, 3), [2 / 5, 4 / 6, 2 / 3])
    np.testing.assert_allclose(M.per_class_iou(y_true, y_pred, 3), [1 / 4, 2 / 4, 1 / 2])
    assert M.mean_f1(y_true, y_pred, 3) == pytest.approx((4 / 6 + 2 / 3) / 2)
    assert M.mean_iou(y_true, y_pred, 3) == pytest.approx((1 / 4 + 1 / 2 + 1 / 2) / 3)
    assert M.pixel_accuracy(y_true, y_pred, 3) == pytest.approx(4 / 7)


def test_metrics_from_confusion_matrix():
    rng = np.random.RandomState(12)
    t, p = _label_maps(rng)
    cm = M.parsing_confusion_matrix(t, p, 5)
    for f in (M.per_class_iou, M.per_class_f1):
        np.testing.assert_allclose(f(cm=cm), f(t, p, 5))
    for f in (M.mean_iou, M.mean_f1, M.pixel_accuracy):
        assert f(cm=cm) == pytest.approx(f(t, p, 5))
    with pytest.raises(ValueError, match="not both"):
        M.mean_iou(t, p, 5, cm=cm)
    with pytest.raises(ValueError, match="either"):
        M.mean_iou(t, p)
    with pytest.raises(ValueError, match="square"):
        M.mean_iou(cm=np.ones((2, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        M.mean_iou(cm=-np.ones((2, 2)))
    with pytest.raises(ValueError, match="exclude"):
        M.mean_f1(cm=cm, exclude=(7,))


def test_parsing_report():
    rng = np.random.RandomState(13)
    t, p = _label_maps(rng, n_classes=len(CELEBAMASK_CLASSES))
    r = M.parsing_report(t, p, CELEBAMASK_CLASSES)
    assert list(r["per_class"]) == list(CELEBAMASK_CLASSES)
    assert r["mean_iou"] == pytest.approx(M.mean_iou(t, p, 19))
    assert r["mean_f1"] == pytest.approx(M.mean_f1(t, p, 19))
    assert r["pixel_accuracy"] == pytest.approx(M.pixel_accuracy(t, p, 19))
    assert r["per_class"]["nose"]["support"] == int(((t == 2)).sum())
    assert r["per_class"]["nose"]["predicted"] == int(((p == 2) & (t != 255)).sum())
    assert r["per_class"]["skin"]["f1"] == pytest.approx(M.per_class_f1(t, p, 19)[1])
    assert list(M.parsing_report(t, p, 19)["per_class"])[:2] == ["0", "1"]
    with pytest.raises(ValueError, match="classes"):
        M.parsing_report(t, p, "skin")


@pytest.mark.parametrize("y_true, y_pred, n_classes, kwargs, err, match", [
    (np.zeros((2, 3, 3), int), np.zeros((2, 3, 4), int), 3, {}, ValueError, "different shapes"),
    (np.zeros(5, int), np.zeros(5, int), 3, {}, ValueError, "label map"),
    (np.zeros((1, 1, 2, 2), int), np.zeros((1, 1, 2, 2), int), 3, {}, ValueError, "label map"),
    (np.array([[0, 3]]), np.array([[0, 1]]), 3, {}, ValueError, r"y_true has labels outside.*\[3\]"),
    (np.array([[0, 1]]), np.array([[0, 255]]), 3, {}, ValueError,
     r"y_pred \(at scored pixels\) has labels outside.*\[255\]"),
    (np.array([[0, 1]]), np.array([[0, -1]]), 3, {}, ValueError, r"y_pred \(at scored pixels\).*\[-1\]"),
    (np.array([[0, 255]]), np.array([[0, 1]]), 3, {"ignore_index": None}, ValueError,
     r"y_true has labels outside the 3 classes \[0, 3\): \[255\]"),
    (np.array([[0, 1]]), np.array([[0, 1]]), 0, {}, ValueError, "n_classes"),
    (np.array([[0, 1]]), np.array([[0, 1]]), 3, {"ignore_index": 1}, ValueError, "ignore_index"),
    (np.array([[0.0, 1.5]]), np.array([[0, 1]]), 3, {}, ValueError, "y_true must hold integer.*1.5"),
    (np.array([[0.0, np.nan]]), np.array([[0, 1]]), 3, {}, ValueError, "y_true contains NaN"),
    (np.array([["a", "b"]]), np.array([[0, 1]]), 3, {}, TypeError, "y_true must hold numbers"),
    (np.array([[0, 1]]), "0 1", 3, {}, TypeError, "y_pred must be"),
    (np.array([[255, 255]]), np.array([[0, 1]]), 3, {}, ValueError, "nothing to score"),
])
def test_parsing_input_validation(y_true, y_pred, n_classes, kwargs, err, match):
    with pytest.raises(err, match=match):
        M.mean_iou(y_true, y_pred, n_classes, **kwargs)


def test_parsing_accepts_integral_floats_and_leaves_inputs_alone():
    rng = np.random.RandomState(14)
    t, p = _label_maps(rng)
    t0, p0 = t.copy(), p.copy()
    r = M.parsing_report(t, p, 5)
    np.testing.assert_array_equal(t, t0)  # writeable inputs come back unchanged
    np.testing.assert_array_equal(p, p0)
    frozen_t, frozen_p = _frozen(t, p)    # read-only ones are accepted
    np.testing.assert_array_equal(M.parsing_report(frozen_t, frozen_p, 5)["confusion_matrix"],
                                  r["confusion_matrix"])
    assert M.mean_iou(t.astype(float), p.astype(float), 5) == pytest.approx(r["mean_iou"])
    # ignored pixels may hold anything in y_pred
    p2 = np.array(p)
    p2[t == 255] = 200
    assert M.mean_iou(t, p2, 5) == pytest.approx(r["mean_iou"])
    # bool maps are class 0 / 1; another ignore_index (here -1) works the same way as 255
    b = t[0] > 2
    np.testing.assert_array_equal(M.parsing_confusion_matrix(b, b, 2), [[(~b).sum(), 0], [0, b.sum()]])
    t3 = t.astype(np.int64)
    t3[t == IGNORE_INDEX] = -1
    np.testing.assert_array_equal(M.parsing_confusion_matrix(t3, p2, 5, ignore_index=-1),
                                  r["confusion_matrix"])


class _ThresholdParser(BaseEstimator):
    """A stand-in parser: pixel > threshold is class 1."""

    def __init__(self, threshold=0.5):
        self.threshold = threshold

    def fit(self, X, y):
        return self

    def predict(self, X):
        return (np.asarray(X) > self.threshold).astype(np.int64)


def test_parsing_scorers_in_grid_search():
    rng = np.random.RandomState(15)
    X = rng.uniform(size=(12, 5, 5))
    y = (X > 0.3).astype(np.int64)
    y[:, 0, 0] = 255
    gs = GridSearchCV(_ThresholdParser(), {"threshold": [0.1, 0.3, 0.8]}, cv=3,
                      scoring={"miou": M.miou_scorer(2), "f1": M.mean_f1_scorer(2)}, refit="miou")
    gs.fit(X, y)
    assert gs.best_params_ == {"threshold": 0.3}
    assert gs.best_score_ == pytest.approx(1.0)
    assert gs.cv_results_["mean_test_f1"][2] < 1.0
    with pytest.raises(ValueError, match="n_classes"):
        M.miou_scorer(0)


def test_importing_metrics_and_datasets_loads_no_torch():
    code = ("import sys, skkp.datasets, skkp.metrics, skkp.plotting; "
            "assert 'torch' not in sys.modules and 'skorch' not in sys.modules, "
            "sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'skorch'))[:5]")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
