"""Mirroring keypoints (skkp.augment.flip_points) and flip test-time averaging (predict(flip_average=True))."""
import numpy as np
import pytest

from skkp.augment import flip_points
from skkp.keypoints import NoseKeypointRegressor

S = 32


def blob_images(n, size=S, seed=0):
    """Two Gaussian blobs per image, the second dimmer; keypoint i is the centre of blob i."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[:size, :size]
    y = rng.uniform(0.25 * size, 0.75 * size, (n, 4))
    X = np.zeros((n, size, size), np.float32)
    for i in range(n):
        for k in range(2):
            X[i] += (1.0 - 0.4 * k) * np.exp(-((xx - y[i, 2 * k]) ** 2 + (yy - y[i, 2 * k + 1]) ** 2) / 6.0)
    return (np.clip(X, 0, 1) * 255).astype(np.uint8), y


@pytest.fixture(scope="module")
def fitted():
    X, y = blob_images(64)
    model = NoseKeypointRegressor(architecture="cnn", image_size=S, max_epochs=2, batch_size=16, random_state=0,
                                  device="cpu", augment=False, flip_pairs=[(0, 1)])
    return model.fit(X, y), X[:6]


def test_flip_points_mirrors_x_and_swaps_pairs():
    pts = np.array([[10.0, 5.0, 20.0, 6.0, 47.5, 7.0]])
    out = flip_points(pts, 96, flip_pairs=[(0, 1)])
    np.testing.assert_array_equal(out, [[75.0, 6.0, 85.0, 5.0, 47.5, 7.0]])  # the centre line stays put
    np.testing.assert_array_equal(flip_points(out, 96, [(0, 1)]), pts)        # twice: the points back
    np.testing.assert_array_equal(pts, [[10.0, 5.0, 20.0, 6.0, 47.5, 7.0]])   # the input is not modified


def test_flip_points_keeps_the_layout_and_nan():
    pts = np.arange(12, dtype=float).reshape(2, 3, 2)
    pts[1, 2] = np.nan
    out = flip_points(pts, 10)
    assert out.shape == (2, 3, 2)
    np.testing.assert_array_equal(out[..., 0], 9 - pts[..., 0])
    assert np.isnan(out[1, 2]).all()
    np.testing.assert_array_equal(flip_points(pts.reshape(2, 6), 10), out.reshape(2, 6))


def test_flip_points_follow_the_mirrored_image():
    X, y = blob_images(3, size=40)
    expected = flip_points(y, 40, [(0, 1)])
    for img, before, after in zip(X[:, :, ::-1], y, expected):
        # the swap keeps names: the brighter blob (point 0 before) is point 1 of the mirrored image
        row, col = np.unravel_index(np.argmax(img), img.shape)
        np.testing.assert_allclose([col, row], after[2:], atol=1.0)
        np.testing.assert_allclose(after[2:], [39 - before[0], before[1]])


@pytest.mark.parametrize("kwargs, match", [
    ({"points": np.zeros((2, 3))}, "shape"), ({"points": np.zeros((2, 3, 3))}, "shape"),
    ({"width": 0}, "width"), ({"width": "96"}, "width"),
    ({"flip_pairs": [(0, 0)]}, "flip_pairs"), ({"flip_pairs": [(0, 5)]}, "flip_pairs"),
    ({"flip_pairs": [(0, 1, 2)]}, "flip_pairs")])
def test_flip_points_errors(kwargs, match):
    args = {"points": np.zeros((2, 4)), "width": 96, "flip_pairs": [(0, 1)], **kwargs}
    with pytest.raises(ValueError, match=match):
        flip_points(args["points"], args["width"], args["flip_pairs"])


def test_flip_average_is_the_mean_with_the_mirrored_prediction(fitted):
    model, X = fitted
    plain = model.predict(X)
    np.testing.assert_array_equal(model.predict(X, flip_average=False), plain)
    back = flip_points(model.predict(np.ascontiguousarray(X[:, :, ::-1])), S, model.flip_pairs_)
    np.testing.assert_allclose(model.predict(X, flip_average=True), (plain + back) / 2, atol=1e-4)


def test_flip_average_of_mirrored_images_is_the_mirrored_flip_average(fitted):
    """Mirror-consistent by construction, also for images of another size (resized for the network)."""
    model, X = fitted
    big = np.repeat(np.repeat(X, 2, axis=1), 3, axis=2)[:, :50, :70]   # 50x70, not square
    mirrored = np.ascontiguousarray(big[:, :, ::-1])
    a = model.predict(big, flip_average=True)
    b = flip_points(model.predict(mirrored, flip_average=True), 70, model.flip_pairs_)
    np.testing.assert_allclose(a, b, atol=1e-3)
    assert a.shape == (6, 4)


def test_flip_average_keeps_the_points_layout(fitted):
    model, X = fitted
    X_train, y = blob_images(64)
    as_points = NoseKeypointRegressor(**model.get_params()).fit(X_train, y.reshape(-1, 2, 2))
    assert as_points.predict(X, flip_average=True).shape == (6, 2, 2)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_flip_average_must_be_a_bool(fitted, value):
    model, X = fitted
    with pytest.raises(ValueError, match="flip_average"):
        model.predict(X, flip_average=value)


def test_flip_average_needs_flip_pairs_and_images(fitted):
    model, X = fitted
    X_train, y = blob_images(64)
    no_pairs = NoseKeypointRegressor(**{**model.get_params(), "flip_pairs": []}).fit(X_train, y)
    with pytest.raises(ValueError, match="flip_average=True needs"):
        no_pairs.predict(X, flip_average=True)
    rng = np.random.RandomState(0)
    features = NoseKeypointRegressor(architecture="mlp", max_epochs=1, random_state=0, device="cpu").fit(
        rng.rand(20, 5), rng.rand(20, 2))
    with pytest.raises(ValueError, match="flip_average=True needs"):
        features.predict(rng.rand(3, 5), flip_average=True)
    assert features.predict(rng.rand(3, 5), flip_average=False).shape == (3, 2)
