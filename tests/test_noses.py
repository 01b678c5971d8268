"""Tests for the synthetic nose generator and the nose keypoint schemas."""
import dataclasses

import cv2
import numpy as np
import pytest
from sklearn.utils import check_random_state

from skkp.datasets import NOSE_SCHEMAS, KeypointSchema, get_nose_schema, make_noses
from skkp.datasets._noses import _render

VIEWS = ("frontal", "side", "bottom")


# ----------------------------------------------------------------------------- schemas
@pytest.mark.parametrize("view, k", [("frontal", 7), ("side", 5), ("bottom", 9)])
def test_schema_sizes_and_pairs(view, k):
    schema = get_nose_schema(view)
    assert schema is NOSE_SCHEMAS[view]
    assert schema.n_keypoints == len(schema.names) == k
    for i, j in schema.flip_pairs:   # pairs join left_X with right_X
        assert schema.names[i].startswith("left_") and schema.names[j].startswith("right_")
        assert schema.names[i][5:] == schema.names[j][6:]
    unpaired = set(range(k)) - {i for pair in schema.flip_pairs for i in pair}
    assert not any(schema.names[i].startswith(("left_", "right_")) for i in unpaired)
    perm = schema.flip_permutation()
    assert sorted(perm) == list(range(k)) and [perm[p] for p in perm] == list(range(k))
    assert schema.normalizer is not None


def test_get_nose_schema_rejects_unknown_view():
    with pytest.raises(ValueError, match=r"view must be one of \['bottom', 'frontal', 'side'\]"):
        get_nose_schema("top")
    with pytest.raises(ValueError, match="view"):
        get_nose_schema(None)


def test_keypoint_schema_validates_and_is_frozen():
    s = KeypointSchema("two", ("left_eye", "right_eye"), ((0, 1),), (0, 1), "eyes")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "other"
    with pytest.raises(ValueError, match="unique"):
        KeypointSchema("dup", ("a", "a"))
    with pytest.raises(ValueError, match="flip_pairs"):
        KeypointSchema("bad", ("a", "b"), ((0, 2),))
    with pytest.raises(ValueError, match="flip_pairs"):
        KeypointSchema("bad", ("a", "b", "c"), ((0, 1), (1, 2)))
    with pytest.raises(ValueError, match="normalizer"):
        KeypointSchema("bad", ("a", "b"), (), (1, 1))


# ----------------------------------------------------------------------------- generator
@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("size", [16, 37, 96])
def test_shapes_dtypes_and_points_inside(view, size):
    X, y = make_noses(6, view=view, image_size=size, random_state=0)
    k = get_nose_schema(view).n_keypoints
    assert X.shape == (6, size, size) and X.dtype == np.uint8
    assert y.shape == (6, 2 * k) and y.dtype == np.float64
    assert np.isfinite(y).all()
    assert (y >= 0).all() and (y <= size - 1).all()
    assert X.std(axis=(1, 2)).min() > 3   # not blank


@pytest.mark.parametrize("view", VIEWS)
def test_deterministic_and_leaves_global_rng_alone(view):
    state = np.random.get_state()
    X1, y1 = make_noses(5, view=view, image_size=32, random_state=7)
    after = np.random.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(state[1:3], after[1:3]))
    np.random.random_sample(10)   # moving the global RNG does not change the output
    X2, y2 = make_noses(5, view=view, image_size=32, random_state=np.random.RandomState(7))
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    X3, y3 = make_noses(5, view=view, image_size=32, random_state=8)
    assert not np.array_equal(y1, y3) and not np.array_equal(X1, X3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_samples=0), "n_samples"), (dict(n_samples=2.5), "n_samples"),
    (dict(n_samples=True), "n_samples"), (dict(n_samples="3"), "n_samples"),
    (dict(view="top"), "view must be one of"), (dict(image_size=15), "image_size"),
    (dict(image_size=32.0), "image_size"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_noses(**kwargs)


@pytest.mark.parametrize("view", ["frontal", "bottom"])
def test_subject_left_is_on_image_right(view):
    schema = get_nose_schema(view)
    _, y = make_noses(200, view=view, image_size=48, random_state=1)
    pts = y.reshape(len(y), -1, 2)
    for i, j in schema.flip_pairs:
        assert (pts[:, i, 0] > pts[:, j, 0]).all(), (schema.names[i], schema.names[j])


def test_mean_predictor_is_not_enough():
    """Pose and shape vary enough that predicting the mean leaves >= 4 px MAE at 96 px."""
    for view in VIEWS:
        _, y_train = make_noses(250, view=view, image_size=96, random_state=0)
        _, y_test = make_noses(250, view=view, image_size=96, random_state=1)
        mae = np.abs(y_test - y_train.mean(axis=0)).mean()
        assert 4.0 <= mae <= 10.0, (view, mae)


# ----------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("view", ["frontal", "bottom"])
def test_nostril_points_are_the_dark_blob_centres(view):
    names = get_nose_schema(view).names
    idx = [names.index("left_nostril"), names.index("right_nostril")]
    X, pts = _render(40, view, 96, check_random_state(3), clean=True)
    for img, p in zip(X, pts):
        dark = (img < 0.3 * np.median(img)).astype(np.uint8)
        _, _, stats, centres = cv2.connectedComponentsWithStats(dark)
        centres = centres[1:][stats[1:, cv2.CC_STAT_AREA] >= 3]
        for k in idx:
            assert np.hypot(*(centres - p[k]).T).min() < 1.5


def test_clean_render_matches_noisy_keypoints():
    _, y = make_noses(8, view="frontal", image_size=40, random_state=4)
    _, pts = _render(8, "frontal", 40, check_random_state(4), clean=True)
    np.testing.assert_allclose(pts.reshape(8, -1), y)


@pytest.mark.parametrize("size", [48, 96])
def test_side_points_lie_on_the_silhouette(size):
    """Scanning across the profile (face -> air), the intensity crosses its midpoint
    level at the keypoint."""
    X, pts = _render(60, "side", size, check_random_state(7), clean=True)
    t = np.arange(-3, 3.01, 0.1)
    contrast, err = [], []
    for img, p in zip(X, pts):
        axis = p[4] - p[0]                                   # nasion -> subnasale
        across = np.array([axis[1], -axis[0]]) / np.hypot(*axis)   # towards the air
        for k in range(5):
            xy = (p[k] + t[:, None] * across).astype(np.float32)
            prof = cv2.remap(img.astype(np.float32), xy[:, :1], xy[:, 1:],
                             cv2.INTER_LINEAR)[:, 0]
            a, b = prof[:5].mean(), prof[-5:].mean()
            above = prof > (a + b) / 2
            cross = np.flatnonzero(above[1:] != above[:-1])
            contrast.append(abs(b - a))
            err.append(np.abs(t[cross] + 0.05).min() if len(cross) else np.inf)
    contrast, err = np.array(contrast), np.array(err)
    visible = contrast > 20
    assert visible.mean() > 0.75
    assert np.median(err[visible]) < 0.5
    assert (err[visible] < 1.5).mean() > 0.98
