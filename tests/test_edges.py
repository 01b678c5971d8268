"""Tests for skkp.edges: mask_edge_keypoints and MaskEdgeKeypoints (geometry in skkp._contours)."""
import re
import subprocess
import sys

import cv2
import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import get_tags
from sklearn.utils._param_validation import InvalidParameterError

import skkp._contours
import skkp.edges
from skkp._contours import _crack_curve, _resample_top
from skkp.edges import STRAIGHT_EDGE, MaskEdgeKeypoints, mask_edge_keypoints, resample_closed_curve
from skkp.schemas import CELEBAMASK_CLASSES

TWO = ["background", "shape"]


# ---------------------------------------------------------------- geometry helpers
def _ellipse(cx, cy, a, b, angle_deg, n=4000):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))
    x, y = a * np.cos(t), b * np.sin(t)
    return np.column_stack([cx + c * x - s * y, cy + s * x + c * y])


def _rotated_rect(cx, cy, w, h, angle_deg):
    c, s = np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))
    corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2.0
    return corners @ np.array([[c, s], [-s, c]]) + (cx, cy)


def _inside_convex(poly, shape):
    """Pixels whose centre lies inside a convex polygon (the exact raster)."""
    yy, xx = np.mgrid[:shape[0], :shape[1]].astype(float)
    area = np.sum(poly[:, 0] * np.roll(poly[:, 1], -1) - np.roll(poly[:, 0], -1) * poly[:, 1])
    sign = np.sign(area)
    inside = np.ones(shape, dtype=bool)
    for p, q in zip(poly, np.roll(poly, -1, axis=0)):
        inside &= sign * ((q[0] - p[0]) * (yy - p[1]) - (q[1] - p[1]) * (xx - p[0])) > 0
    return inside


def _inside_ellipse(cx, cy, a, b, angle_deg, shape):
    yy, xx = np.mgrid[:shape[0], :shape[1]].astype(float)
    c, s = np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))
    u = c * (xx - cx) + s * (yy - cy)
    v = -s * (xx - cx) + c * (yy - cy)
    return (u / a) ** 2 + (v / b) ** 2 < 1.0


def _project(points, poly):
    """Distance of each point to a closed polyline and the arc length of its projection."""
    p, q = poly, np.roll(poly, -1, axis=0)
    seg = q - p
    length = np.hypot(seg[:, 0], seg[:, 1])
    t = np.clip(((points[:, None] - p) * seg).sum(-1) / length ** 2, 0, 1)
    foot = p + t[..., None] * seg
    d = np.hypot(*(points[:, None] - foot).transpose(2, 0, 1))
    j = d.argmin(axis=1)
    rows = np.arange(len(points))
    arc = np.concatenate([[0.0], np.cumsum(length)])[j] + t[rows, j] * length[j]
    return d[rows, j], arc, length.sum()


def _shapes():
    """(raster, true boundary polygon) pairs: ellipses, rotated rectangles, convex polygons."""
    rng = np.random.RandomState(7)
    shape = (120, 120)
    out = []
    for _ in range(3):
        cx, cy, a, b, ang = *rng.uniform(56, 64, 2), rng.uniform(25, 50), rng.uniform(18, 35), rng.uniform(0, 180)
        out.append((_inside_ellipse(cx, cy, a, b, ang, shape), _ellipse(cx, cy, a, b, ang)))
    for _ in range(3):
        rect = _rotated_rect(*rng.uniform(56, 64, 2), rng.uniform(50, 90), rng.uniform(35, 70), rng.uniform(0, 90))
        out.append((_inside_convex(rect, shape), rect))
    for k in (5, 6, 7):  # near-regular convex polygons (no needle-sharp corners)
        ang = np.sort(2 * np.pi * (np.arange(k) + rng.uniform(-0.2, 0.2, k)) / k)
        poly = np.column_stack([60 + 45 * np.cos(ang), 60 + 40 * np.sin(ang)])
        out.append((_inside_convex(poly, shape), poly))
    return out


SHAPES = _shapes()


# ---------------------------------------------------------------- accuracy
@pytest.mark.parametrize("i", range(len(SHAPES)))
@pytest.mark.parametrize("n_points", [8, 16])
def test_points_on_true_boundary_and_evenly_spaced(i, n_points):
    mask, poly = SHAPES[i]
    pts = mask_edge_keypoints(mask.astype(np.uint8), classes=TWO, n_points=n_points, output="points")
    assert pts.shape == (n_points, 2)
    dist, arc, perimeter = _project(pts, poly)
    assert dist.max() < 1.0, dist.max()
    # consecutive spacing along the true boundary, relative to perimeter / n
    spacing = np.diff(np.concatenate([arc, arc[:1] + perimeter])) % perimeter
    assert np.abs(spacing / (perimeter / n_points) - 1).max() < 0.10


def test_subpixel_edge_is_between_pixels():
    # A box of pixel centres 4..15 x 5..14: its boundary runs at x = 3.5, 15.5 and y = 4.5, 14.5.
    lab = np.zeros((20, 20), dtype=np.uint8)
    lab[5:15, 4:16] = 1
    pts = mask_edge_keypoints(lab, classes=TWO, n_points=40, output="points")
    on_side = np.minimum.reduce([np.abs(pts[:, 0] - 3.5), np.abs(pts[:, 0] - 15.5),
                                 np.abs(pts[:, 1] - 4.5), np.abs(pts[:, 1] - 14.5)])
    assert on_side.max() < 0.3  # only the corners are cut, by about a quarter pixel
    assert np.median(on_side) < 1e-9


def test_start_top_left_and_clockwise():
    lab = _inside_ellipse(40, 30, 25, 12, 0, (60, 80)).astype(np.uint8)
    pts = mask_edge_keypoints(lab, classes=TWO, n_points=16, output="points")
    assert pts[0, 1] == pytest.approx(pts[:, 1].min())
    top = pts[np.isclose(pts[:, 1], pts[:, 1].min())]
    assert pts[0, 0] == top[:, 0].min()
    x, y = pts[:, 0], pts[:, 1]
    # positive shoelace sum in image coordinates (y down) = clockwise on screen
    assert np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) > 0
    # clockwise on screen from the top: next goes right, a quarter later we are at the right end
    assert x[1] > x[0] and x[4] > 60 and y[8] > 40 and x[12] < 20


def test_start_centroid_sits_above_the_centroid():
    lab = np.zeros((60, 80), dtype=np.uint8)
    lab[20:40, 10:70] = 1
    lab[19, 10:30] = 1  # a one-pixel bump on the top-left moves the top-most point
    top = mask_edge_keypoints(lab, classes=TWO, n_points=8, output="points")
    cen = mask_edge_keypoints(lab, classes=TWO, n_points=8, start="centroid", output="points")
    assert top[0, 0] < 15
    ys, xs = np.nonzero(lab)
    assert cen[0, 0] == pytest.approx(xs.mean(), abs=0.5)
    assert cen[0, 1] == pytest.approx(19.5, abs=0.01)  # on the top edge of the box
    assert np.sum(cen[:, 0] * np.roll(cen[:, 1], -1) - np.roll(cen[:, 0], -1) * cen[:, 1]) > 0


def test_same_place_across_shifted_images():
    base = _inside_ellipse(30, 30, 18, 10, 20, (64, 64)).astype(np.uint8)
    moved = np.roll(base, (5, 7), axis=(0, 1))
    a = mask_edge_keypoints(base, classes=TWO, output="points")
    b = mask_edge_keypoints(moved, classes=TWO, output="points")
    np.testing.assert_allclose(b - a, np.broadcast_to([7, 5], a.shape), atol=1e-9)


# ---------------------------------------------------------------- the crack tracer
def test_crack_curve_is_exactly_the_outer_pixel_boundary():
    rng = np.random.RandomState(0)
    checked = 0
    for _ in range(60):
        h, w = rng.randint(4, 25, 2)
        noise = cv2.GaussianBlur(rng.rand(h, w).astype(np.float32), (0, 0), rng.uniform(0.3, 1.5))
        blobs = (noise > np.quantile(noise, rng.uniform(0.3, 0.8))).astype(np.uint8)
        n, comp = cv2.connectedComponents(blobs, connectivity=8)
        if n < 2:
            continue
        one = (comp == 1 + np.bincount(comp.ravel())[1:].argmax()).astype(np.uint8) * 255
        (contour,), _ = cv2.findContours(one, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        mid = _crack_curve(contour[::-1, 0, :].astype(np.int64))
        # expected: pixel edges between the component and the background reachable from outside
        padded = np.pad(one, 1)
        outside = (padded == 0).astype(np.uint8)
        cv2.floodFill(outside, None, (0, 0), 2, flags=4)
        expected = set()
        for y, x in zip(*np.nonzero(padded)):
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                if outside[y + dy, x + dx] == 2:
                    expected.add((x - 1 + dx / 2, y - 1 + dy / 2))
        got = [tuple(p) for p in mid]
        assert len(got) == len(set(got)) == len(expected) and set(got) == expected
        step = np.hypot(*np.diff(np.vstack([mid, mid[:1]]), axis=0).T)
        assert step.max() <= 1.0 + 1e-12  # consecutive cracks touch: the order is a walk
        x, y = mid[:, 0], mid[:, 1]
        assert np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) > 0  # clockwise on screen
        checked += 1
    assert checked > 40


# ---------------------------------------------------------------- components, holes, borders
def test_largest_component_used_and_holes_ignored():
    lab = np.zeros((80, 80), dtype=np.uint8)
    cv2.circle(lab, (50, 40), 20, 1, -1)
    cv2.circle(lab, (50, 40), 8, 0, -1)   # a hole
    lab[5:10, 5:10] = 1                    # a smaller second component
    pts = mask_edge_keypoints(lab, classes=TWO, n_points=24, output="points")
    r = np.hypot(pts[:, 0] - 50, pts[:, 1] - 40)
    assert r.min() > 19 and r.max() < 21.5


def test_largest_component_is_by_area_not_by_outline_through_pixel_centres():
    lab = np.zeros((30, 40), dtype=np.uint8)
    lab[5, 2:30] = 1        # a thin line: 28 pixels, nothing inside its pixel-centre outline
    lab[15:20, 10:15] = 1   # a 5 x 5 block: 25 pixels
    pts = mask_edge_keypoints(lab, classes=TWO, n_points=8, output="points")
    assert np.abs(pts[:, 1] - 5).max() <= 0.5


def test_batched_resampling_matches_one_curve_at_a_time():
    rng = np.random.RandomState(3)
    curves = [np.column_stack([rng.uniform(0, 50, m), rng.uniform(0, 50, m)]) for m in (4, 9, 30)]
    curves[1][3:6, 1] = curves[1][:, 1].min()  # a flat top: ties broken to the left
    ns = np.array([3, 7, 16])
    batched = _resample_top(np.concatenate(curves), np.array([len(c) for c in curves]), ns)
    single = np.concatenate([resample_closed_curve(c, n) for c, n in zip(curves, ns)])
    np.testing.assert_allclose(batched, single, atol=1e-9)


# ---------------------------------------------------------------- public building blocks
def test_public_names_are_exported():
    assert set(skkp.edges.__all__) == {"mask_edge_keypoints", "MaskEdgeKeypoints", "STRAIGHT_EDGE",
                                       "resample_closed_curve"}
    assert all(hasattr(skkp.edges, name) for name in skkp.edges.__all__)
    assert skkp.edges.resample_closed_curve is skkp._contours.resample_closed_curve
    assert skkp.edges.STRAIGHT_EDGE == skkp._contours.STRAIGHT_EDGE


def test_straight_edge_is_the_sobel_gradient_of_a_mask_step():
    step = np.zeros((9, 12), dtype=np.uint8)
    step[:, 6:] = 255
    gx = cv2.Sobel(step, cv2.CV_64F, 1, 0, ksize=3)
    gy = cv2.Sobel(step, cv2.CV_64F, 0, 1, ksize=3)
    assert np.hypot(gx, gy)[2:-2].max() == STRAIGHT_EDGE
    # the thresholds are fractions of it. A box's largest gradient is at its corners, 3 * sqrt(2) / 4 of
    # a straight edge's; the largest any binary mask has is sqrt(5) / 2 (on diagonal and curved edges).
    lab = np.zeros((40, 40), dtype=np.uint8)
    lab[5:25, 5:25] = 1
    for high, found in ((1.05, True), (1.07, False)):
        pts = mask_edge_keypoints(lab, classes=TWO, n_points=4, low_threshold=0.5, high_threshold=high)
        assert np.isnan(pts).any() != found, high
    disc = _inside_ellipse(20, 20, 12, 12, 0, (40, 40)).astype(np.uint8)
    for high, found in ((1.11, True), (1.12, False)):
        pts = mask_edge_keypoints(disc, classes=TWO, n_points=4, low_threshold=0.5, high_threshold=high)
        assert np.isnan(pts).any() != found, high


def test_resample_closed_curve_spacing_start_and_order():
    rng = np.random.RandomState(1)
    t = np.sort(rng.uniform(0, 2 * np.pi, 200))
    curve = np.column_stack([30 + 20 * np.cos(t), 25 + 10 * np.sin(t)])  # clockwise on screen (y down)
    before = curve.copy()
    pts = resample_closed_curve(curve, 10)
    np.testing.assert_array_equal(curve, before)
    assert pts.shape == (10, 2) and pts.dtype == np.float64
    np.testing.assert_array_equal(pts[0], curve[np.argmin(curve[:, 1])])  # point 0: the top-most vertex
    # equal steps along the polyline: project the points onto it and compare arc lengths
    _, arc, perimeter = _project(pts, curve)
    spacing = np.diff(np.concatenate([arc, arc[:1] + perimeter])) % perimeter
    np.testing.assert_allclose(spacing, perimeter / 10, rtol=1e-6)
    # the points follow the curve's own order: a reversed curve gives the reversed walk
    back = resample_closed_curve(curve[::-1], 10)
    np.testing.assert_allclose(back[0], pts[0])
    np.testing.assert_allclose(back[1:], pts[:0:-1], atol=1e-9)
    # a flat top: ties go to the left-most vertex; "centroid" puts point 0 above the centroid
    square = [[0, 0], [4, 0], [4, 4], [0, 4]]
    np.testing.assert_array_equal(resample_closed_curve(square, 8)[0], [0, 0])
    np.testing.assert_array_equal(resample_closed_curve([[3, 0], [3, 2], [0, 2], [0, 0]], 4)[0], [0, 0])
    np.testing.assert_allclose(resample_closed_curve(square, 8, start="centroid")[0], [2, 0])


@pytest.mark.parametrize("args, kwargs, error, match", [
    (([[0, 0], [1, 0], [0, 1]], 0), {}, ValueError, "'n_points' parameter of resample_closed_curve"),
    (([[0, 0], [1, 0], [0, 1]], 2.0), {}, TypeError, "'n_points' parameter"),
    (([[0, 0], [1, 0], [0, 1]], 4), {"start": "left"}, ValueError, "'start' parameter"),
    (([0, 1, 2, 3], 4), {}, ValueError, r"curve must have shape \(m, 2\)"),
    ((np.zeros((0, 2)), 4), {}, ValueError, r"curve must have shape \(m, 2\)"),
    (([[0, 0], [np.nan, 1], [0, 1]], 4), {}, ValueError, "NaN or infinity"),
    (([["a", "b"]], 4), {}, TypeError, "curve must hold numbers"),
    (("curve", 4), {}, TypeError, "curve must be"),
])
def test_resample_closed_curve_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        resample_closed_curve(*args, **kwargs)


def test_specks_are_ignored_by_canny_gate():
    lab = np.zeros((30, 30), dtype=np.uint8)
    lab[10, 10] = 1  # one pixel: gradient 0.5 of a straight edge, below high_threshold=0.6
    assert np.isnan(mask_edge_keypoints(lab, classes=TWO, n_points=4)).all()
    pts = mask_edge_keypoints(lab, classes=TWO, n_points=4, high_threshold=0.45, output="points")
    assert np.hypot(pts[:, 0] - 10, pts[:, 1] - 10).max() <= 0.5  # around the pixel's centre
    lab[15:25, 15:25] = 1
    lab[2, 2] = 1
    assert not np.isnan(mask_edge_keypoints(lab, classes=TWO, n_points=4)).any()
    # thresholds above the largest gradient of a binary mask (sqrt(5) / 2 of a straight edge's) leave no edges
    assert np.isnan(mask_edge_keypoints(lab, classes=TWO, n_points=4, low_threshold=1.1,
                                        high_threshold=1.2)).all()


def test_part_filling_the_image_has_its_edge_on_the_border():
    lab = np.ones((10, 12), dtype=np.uint8)
    pts = mask_edge_keypoints(lab, classes=TWO, n_points=12, output="points")
    assert pts[:, 0].min() >= -0.5 and pts[:, 0].max() <= 11.5
    assert np.isclose(pts[:, 0], -0.5).any() and np.isclose(pts[:, 1], 9.5).any()


# ---------------------------------------------------------------- parts, missing, output layout
def _face_like():
    lab = np.zeros((2, 64, 64), dtype=np.uint8)
    cv2.ellipse(lab[0], (32, 32), (22, 28), 0, 0, 360, 1, -1)       # skin
    cv2.ellipse(lab[0], (32, 34), (4, 8), 0, 0, 360, 2, -1)         # nose
    cv2.ellipse(lab[0], (32, 48), (9, 3), 0, 0, 360, 11, -1)        # u_lip
    lab[1] = lab[0]
    lab[1][lab[1] == 2] = 1                                          # no nose on the second face
    return lab


def test_missing_nan_and_raise():
    lab = _face_like()
    out = mask_edge_keypoints(lab, parts=["nose", "u_lip"], n_points=8, output="points")
    assert out.shape == (2, 16, 2)
    assert not np.isnan(out[0]).any()
    assert np.isnan(out[1, :8]).all() and not np.isnan(out[1, 8:]).any()
    with pytest.raises(ValueError, match="'nose'.*label map 1"):
        mask_edge_keypoints(lab, parts=["nose"], missing="raise")


def test_default_parts_and_feature_names():
    lab = _face_like()
    est = MaskEdgeKeypoints(n_points=4).fit(lab)
    out = est.transform(lab)
    assert out.shape == (2, 18 * 8) and est.n_features_out_ == 144 and est.n_features_in_ == 64 * 64
    names = est.get_feature_names_out()
    assert len(names) == out.shape[1]
    assert list(names[:4]) == ["skin_0_x", "skin_0_y", "skin_1_x", "skin_1_y"]
    assert names[8] == "nose_0_x"
    # absent parts are NaN, present ones are not
    skin, nose = out[0, :8], out[0, 8:16]
    assert not np.isnan(skin).any() and not np.isnan(nose).any() and np.isnan(out[0, 16:24]).all()


def test_n_points_dict_selects_parts_in_dict_order():
    lab = _face_like()
    est = MaskEdgeKeypoints(n_points={"u_lip": 6, "nose": 3})
    out = est.fit_transform(lab)
    assert out.shape == (2, 18)
    assert list(est.get_feature_names_out()[[0, 12]]) == ["u_lip_0_x", "nose_0_x"]
    np.testing.assert_allclose(out[0, :12], mask_edge_keypoints(lab[0], parts=["u_lip"], n_points=6))
    with pytest.raises(ValueError, match="without an entry for part 'skin'"):
        mask_edge_keypoints(lab, n_points={"nose": 4}, parts=["nose", "skin"])


def test_output_layouts_and_single_map():
    lab = _face_like()
    flat = mask_edge_keypoints(lab, parts=["nose"], n_points=5)
    pts = mask_edge_keypoints(lab, parts=["nose"], n_points=5, output="points")
    single = mask_edge_keypoints(lab[0], parts=["nose"], n_points=5)
    assert flat.shape == (2, 10) and pts.shape == (2, 5, 2) and single.shape == (10,)
    np.testing.assert_array_equal(flat.reshape(2, 5, 2), pts)
    np.testing.assert_array_equal(single, flat[0])
    est = MaskEdgeKeypoints(parts=["nose"], n_points=5, output="points")
    np.testing.assert_array_equal(est.fit_transform(lab), pts)


def test_flattened_rows_with_image_shape():
    lab = _face_like()
    est = MaskEdgeKeypoints(parts=["nose", "u_lip"], image_shape=(64, -1))
    np.testing.assert_array_equal(est.fit_transform(lab.reshape(2, -1)),
                                  MaskEdgeKeypoints(parts=["nose", "u_lip"]).fit_transform(lab))
    assert est.image_shape_ == (64, 64)
    with pytest.raises(ValueError, match="must be .n, H, W."):
        MaskEdgeKeypoints().fit(lab.reshape(2, -1))


def test_wide_label_range_and_other_dtypes():
    lab = _face_like()
    many = [f"c{i}" for i in range(300)]
    big = lab.astype(np.int64) * 20  # labels up to 220 ... with 300 classes: not uint8-sized tables
    big[0, 0, 0] = 299
    out = mask_edge_keypoints(big, classes=many, parts=["c40", "c220"], n_points=6)
    ref = mask_edge_keypoints(lab, parts=["nose", "u_lip"], n_points=6)
    np.testing.assert_allclose(out, ref)
    np.testing.assert_allclose(mask_edge_keypoints(lab.astype(float), parts=["nose"]),
                               mask_edge_keypoints(lab, parts=["nose"]))
    assert not np.isnan(mask_edge_keypoints(lab.astype(bool), classes=TWO)[0]).any()


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad, match", [
    (np.full((2, 8, 8), 0.5), "integer class labels"),
    (np.full((2, 8, 8), np.nan), "NaN or infinity"),
    (np.full((2, 8, 8), -1), "Negative values"),
    (np.full((2, 8, 8), 19), "label 19, but only 19 classes"),
    (np.zeros((0, 8, 8), dtype=np.uint8), "empty"),
    (np.zeros((2, 0, 8), dtype=np.uint8), "empty"),
    (np.zeros(8, dtype=np.uint8), "Reshape your data"),
    (np.zeros((2, 8, 8, 1), dtype=np.uint8), "label maps"),
])
def test_bad_label_maps(bad, match):
    with pytest.raises(ValueError, match=match):
        mask_edge_keypoints(bad)
    with pytest.raises(ValueError, match=match):
        MaskEdgeKeypoints().fit(bad)


def test_bad_types():
    with pytest.raises(TypeError, match="must hold numbers"):
        mask_edge_keypoints(np.array([["a", "b"]]))
    with pytest.raises(TypeError, match="array-like"):
        mask_edge_keypoints("label map")
    with pytest.raises(ValueError, match="must be .n, H, W."):
        MaskEdgeKeypoints().fit(np.zeros((8, 8), dtype=np.uint8))


# (parameters, error type, message): TypeError for a wrong type, ValueError for a wrong value. The
# constraint errors (InvalidParameterError, both a TypeError and a ValueError) name "the '<name>'
# parameter"; the others name the argument at the start of the message.
BAD_PARAMETERS = [
    ({"n_points": 2}, ValueError, "'n_points' parameter of {caller} must be an int in the range \\[3, inf\\)"),
    ({"n_points": 4.0}, TypeError, "'n_points' parameter .* or an instance of 'dict'. Got 4.0"),
    ({"n_points": True}, TypeError, "'n_points' parameter"),
    ({"n_points": {"nose": 2}}, ValueError, "n_points must be an int >= 3 .* 2 for 'nose'"),
    ({"n_points": {"nose": 4.0}}, TypeError, "n_points values must be ints >= 3"),
    ({"n_points": {2: 4}}, TypeError, "n_points keys must be class names"),
    ({"n_points": {"nosee": 4}}, ValueError, "n_points names unknown classes \\['nosee'\\]"),
    ({"n_points": {}}, ValueError, "No part selected"),
    ({"n_points": {"nose": 4}, "parts": ["nose", "skin"]}, ValueError, "without an entry for part 'skin'"),
    ({"parts": ["nose", "beard"]}, ValueError, "parts names unknown classes \\['beard'\\]"),
    ({"parts": "nose"}, TypeError, "'parts' parameter of {caller} must be an array-like or None"),
    ({"parts": ["nose", 2]}, TypeError, "parts must be a list of class names \\(str\\), got 2"),
    ({"parts": []}, ValueError, "at least one class"),
    ({"parts": ["nose", "nose"]}, ValueError, "parts must not repeat"),
    ({"low_threshold": 0.8, "high_threshold": 0.5}, ValueError, "low_threshold .0.8. must not exceed"),
    ({"high_threshold": -1}, ValueError, "'high_threshold' parameter .* range \\[0.0, inf\\)"),
    ({"high_threshold": np.inf}, ValueError, "'high_threshold' parameter"),
    ({"low_threshold": np.nan}, ValueError, "'low_threshold' parameter"),
    ({"low_threshold": "0.3"}, TypeError, "'low_threshold' parameter"),
    ({"low_threshold": False}, TypeError, "low_threshold must be a number"),
    ({"missing": "drop"}, ValueError, "'missing' parameter of {caller} must be a str among"),
    ({"start": "left"}, ValueError, "'start' parameter of {caller} must be a str among"),
    ({"output": "dict"}, ValueError, "'output' parameter of {caller} must be a str among"),
    ({"output": None}, TypeError, "'output' parameter"),
    ({"classes": ["background"]}, ValueError, "classes must hold between 2 and .* got 1"),
    ({"classes": ["bg", "a", "a"]}, ValueError, "classes must be unique names; repeated: \\['a'\\]"),
    ({"classes": "bg,nose"}, TypeError, "'classes' parameter of {caller} must be an array-like"),
    ({"classes": ["bg", 1]}, TypeError, "classes must be a sequence of str class names, got int 1"),
]


def _error_of(call):
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    return info.value


def _check_error(err, error, match, caller):
    assert isinstance(err, error), (type(err), err)
    if not isinstance(err, InvalidParameterError):  # beyond the constraints: exactly one of the two
        assert not isinstance(err, TypeError if error is ValueError else ValueError), (type(err), err)
    assert re.search(match.format(caller=caller), str(err)), str(err)


@pytest.mark.parametrize("params, error, match", BAD_PARAMETERS)
def test_bad_parameters_same_error_from_function_and_estimator(params, error, match):
    lab = np.zeros((1, 8, 8), dtype=np.uint8)
    from_function = _error_of(lambda: mask_edge_keypoints(lab, **params))
    _check_error(from_function, error, match, "mask_edge_keypoints")
    est = MaskEdgeKeypoints(**params)
    for method in (est.fit, est.transform, est.fit_transform):  # transform works without fit: it checks too
        from_estimator = _error_of(lambda: method(lab))
        _check_error(from_estimator, error, match, "MaskEdgeKeypoints")
        assert type(from_estimator) is type(from_function)
        assert str(from_estimator).replace("MaskEdgeKeypoints", "mask_edge_keypoints") == str(from_function)
    assert type(_error_of(est.get_feature_names_out)) is type(from_function)


@pytest.mark.parametrize("image_shape, error", [
    ((8, 0), ValueError), ((8, -1, 1), ValueError), ((-1, -1), ValueError), ((8.0, 8), TypeError),
    ((8, True), TypeError), ("8x8", TypeError), (np.array([8, 8]), TypeError),
])
def test_bad_image_shape(image_shape, error):
    err = _error_of(lambda: MaskEdgeKeypoints(image_shape=image_shape).fit(np.zeros((1, 64), np.uint8)))
    _check_error(err, error, "image_shape", "MaskEdgeKeypoints")


def test_parameter_constraints_cover_every_parameter():
    est = MaskEdgeKeypoints()
    assert set(est._parameter_constraints) == set(est.get_params())
    # the estimator validates with scikit-learn's machinery, naming itself
    with pytest.raises(InvalidParameterError, match="'start' parameter of MaskEdgeKeypoints"):
        est.set_params(start="bottom").fit(np.zeros((1, 4, 4), np.uint8))


def test_inputs_not_modified():
    lab = _face_like()
    before = lab.copy()
    out = MaskEdgeKeypoints(parts=["nose"]).fit_transform(lab)
    single = mask_edge_keypoints(lab[0], parts=["nose"])
    np.testing.assert_array_equal(lab, before)
    np.testing.assert_array_equal(out[0], single)
    n_points, parts, classes = {"nose": 4}, ["nose"], list(CELEBAMASK_CLASSES)
    MaskEdgeKeypoints(n_points=n_points, parts=parts, classes=classes).fit_transform(lab)
    assert n_points == {"nose": 4} and parts == ["nose"] and classes == list(CELEBAMASK_CLASSES)


def test_read_only_input_ok():
    lab = _face_like()
    ref = mask_edge_keypoints(lab, parts=["nose"])
    lab.setflags(write=False)
    np.testing.assert_array_equal(MaskEdgeKeypoints(parts=["nose"]).fit_transform(lab), ref)
    np.testing.assert_array_equal(mask_edge_keypoints(lab[0], parts=["nose"]), ref[0])


# ---------------------------------------------------------------- estimator behaviour
def test_stateless_transform_without_fit_and_tags():
    lab = _face_like()
    est = MaskEdgeKeypoints(parts=["u_lip"])
    assert get_tags(est).requires_fit is False
    out = est.transform(lab)
    assert not hasattr(est, "n_features_in_")
    np.testing.assert_array_equal(out, clone(est).fit(lab).transform(lab))
    fitted = clone(est).fit(lab)
    with pytest.raises(ValueError, match="X has 1024 features, but MaskEdgeKeypoints is expecting 4096"):
        fitted.transform(lab[:, :32, :32])


def test_joblib_round_trip_in_fresh_process(tmp_path):
    lab = _face_like()
    est = MaskEdgeKeypoints(n_points={"nose": 5, "u_lip": 7}, start="centroid").fit(lab)
    joblib.dump(est, tmp_path / "est.joblib")
    np.save(tmp_path / "lab.npy", lab)
    code = ("import joblib, numpy as np, sys; p = sys.argv[1]; "
            "est = joblib.load(p + '/est.joblib'); np.save(p + '/out.npy', est.transform(np.load(p + '/lab.npy')))")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), est.transform(lab))


def _circles(n=12, size=48, seed=0):
    """Gray images of a bright disc and its (cx, cy, r)."""
    rng = np.random.RandomState(seed)
    images = np.zeros((n, size, size), dtype=np.float32)
    params = np.column_stack([rng.uniform(18, 30, n), rng.uniform(18, 30, n), rng.uniform(8, 14, n)])
    yy, xx = np.mgrid[:size, :size]
    for img, (cx, cy, r) in zip(images, params):
        img[np.hypot(xx - cx, yy - cy) < r] = 0.9
    return images, params


def _threshold(images):
    """A toy 'parser': gray images -> 0/1 label maps."""
    return (np.asarray(images) > 0.5).astype(np.uint8)


def _polygon_area_score(estimator, X, y):
    """Higher is better: minus the relative error of the polygon area against pi r^2."""
    pts = estimator.transform(X).reshape(len(X), -1, 2)
    x, yy = pts[..., 0], pts[..., 1]
    area = 0.5 * np.abs(np.sum(x * np.roll(yy, -1, axis=1) - np.roll(x, -1, axis=1) * yy, axis=1))
    return -np.mean(np.abs(area / (np.pi * y[:, 2] ** 2) - 1))


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_pipeline_in_grid_search(n_jobs):
    images, params = _circles()
    pipe = make_pipeline(FunctionTransformer(_threshold), MaskEdgeKeypoints(classes=TWO))
    grid = GridSearchCV(pipe, {"maskedgekeypoints__n_points": [4, 8, 32]}, scoring=_polygon_area_score,
                        cv=KFold(3), n_jobs=n_jobs)
    grid.fit(images, params)
    # a 4-gon badly under-estimates a disc's area; 32 points follow it closely
    assert grid.best_params_ == {"maskedgekeypoints__n_points": 32}
    scores = grid.cv_results_["mean_test_score"]
    assert scores[0] < -0.25 and scores[2] > -0.05
    assert grid.best_estimator_.transform(images).shape == (12, 64)


def test_cross_val_score_and_nested_set_params():
    images, params = _circles()
    pipe = make_pipeline(FunctionTransformer(_threshold), MaskEdgeKeypoints(classes=TWO))
    pipe.set_params(maskedgekeypoints__n_points=16, maskedgekeypoints__start="centroid")
    # the nested parameters reach the transformer: 16 points per disc, point 0 above the centroid
    out = pipe.fit(images, params).transform(images)
    np.testing.assert_array_equal(out, mask_edge_keypoints(_threshold(images), classes=TWO, n_points=16,
                                                           start="centroid"))
    assert out.shape == (12, 32)
    np.testing.assert_allclose(out[:, 0], params[:, 0], atol=0.5)
    scores = cross_val_score(pipe, images, params, scoring=_polygon_area_score, cv=3)
    assert scores.shape == (3,) and (scores > -0.06).all()


def test_default_classes_are_celebamask():
    # label value i means CELEBAMASK_CLASSES[i], by default, for the estimator and the function
    names = MaskEdgeKeypoints(n_points=3).get_feature_names_out()
    assert list(names[::6]) == [f"{c}_0_x" for c in CELEBAMASK_CLASSES[1:]]
    for label in (1, 2, 11, 18):
        lab = np.zeros((1, 24, 24), dtype=np.uint8)
        lab[0, 6:18, 6:18] = label
        out = MaskEdgeKeypoints(n_points=3).fit_transform(lab).reshape(18, 6)
        found = [CELEBAMASK_CLASSES[1 + i] for i in np.flatnonzero(~np.isnan(out).any(axis=1))]
        assert found == [CELEBAMASK_CLASSES[label]]
        np.testing.assert_array_equal(mask_edge_keypoints(lab[0], n_points=3).reshape(18, 6), out)


def test_import_loads_neither_torch_nor_skorch():
    code = ("import sys, skkp.edges; bad = {'torch', 'skorch'} & set(sys.modules); "
            "assert not bad, sorted(bad)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---------------------------------------------------------------- parse, then points
def _edge_point_error(estimator, X, y):
    """Scorer: minus the mean distance (pixels) between the points of the predicted
    and of the true label maps, over parts present in both."""
    last = estimator[-1]
    pred = estimator.transform(X).reshape(len(X), -1, 2)
    true = mask_edge_keypoints(y, classes=last.classes, n_points=last.n_points, parts=last.parts,
                               output="points")
    d = np.hypot(*(pred - true).transpose(2, 0, 1))
    return -np.nanmean(d) if np.isfinite(d).any() else -1e3


def test_face_parser_then_edge_points_pipeline(tmp_path, one_torch_thread):
    from skkp.datasets import make_faces
    from skkp.parsing import FaceParser

    images, labels = make_faces(n_samples=8, image_size=48, random_state=0)
    parser = FaceParser(image_size=32, width=0.125, max_epochs=1, batch_size=4, lr=0.05, augment=False,
                        device="cpu", random_state=0)
    # memory: the parser is fitted once per fold, not once per n_points candidate
    pipe = make_pipeline(parser, MaskEdgeKeypoints(parts=["skin", "hair"]), memory=str(tmp_path / "cache"))
    grid = GridSearchCV(pipe, {"maskedgekeypoints__n_points": [4, 8]}, scoring=_edge_point_error, cv=2)
    grid.fit(images, labels)
    out = grid.transform(images)
    n = grid.best_params_["maskedgekeypoints__n_points"]
    assert out.shape == (8, 2 * 2 * n)
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()
    path = tmp_path / "pipe.joblib"
    joblib.dump(grid.best_estimator_, path)
    np.testing.assert_array_equal(joblib.load(path).transform(images), out)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32])
def test_one_pixel_label_maps_give_nan_points_not_a_cv2_error(dtype):
    maps = np.array([[[0]], [[2]]], dtype=dtype)  # (2, 1, 1): no part has an edge in a 1x1 map
    pts = mask_edge_keypoints(maps, classes=("bg", "a", "b"), n_points=3)
    assert pts.shape == (2, 12) and np.isnan(pts).all()
    out = MaskEdgeKeypoints(classes=("bg", "a", "b"), n_points=3, output="points").fit_transform(maps)
    assert out.shape == (2, 6, 2) and np.isnan(out).all()
    with pytest.raises(ValueError, match="has no edge"):
        mask_edge_keypoints(maps, classes=("bg", "a", "b"), n_points=3, missing="raise")
