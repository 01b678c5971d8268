"""Tests for skkp.edges: mask_edge_keypoints and MaskEdgeKeypoints."""
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

from skkp.datasets import CELEBAMASK_CLASSES
from skkp.edges import MaskEdgeKeypoints, _crack_curve, _resample, _resample_top, mask_edge_keypoints

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
    single = np.concatenate([_resample(c, n) for c, n in zip(curves, ns)])
    np.testing.assert_allclose(batched, single, atol=1e-9)


def test_specks_are_ignored_by_canny_gate():
    lab = np.zeros((30, 30), dtype=np.uint8)
    lab[10, 10] = 1  # one pixel: gradient 0.5 of a straight edge, below high_threshold=0.6
    assert np.isnan(mask_edge_keypoints(lab, classes=TWO, n_points=4)).all()
    pts = mask_edge_keypoints(lab, classes=TWO, n_points=4, high_threshold=0.45, output="points")
    assert np.hypot(pts[:, 0] - 10, pts[:, 1] - 10).max() <= 0.5  # around the pixel's centre
    lab[15:25, 15:25] = 1
    lab[2, 2] = 1
    assert not np.isnan(mask_edge_keypoints(lab, classes=TWO, n_points=4)).any()
    # thresholds above a straight edge's gradient leave no edges at all
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


@pytest.mark.parametrize("params, match", [
    ({"n_points": 2}, "n_points must be an int >= 3"),
    ({"n_points": 4.0}, "n_points must be an int or a dict"),
    ({"n_points": {"nosee": 4}}, "unknown classes"),
    ({"parts": ["nose", "beard"]}, "unknown classes"),
    ({"parts": "nose"}, "list of class names"),
    ({"parts": []}, "at least one class"),
    ({"parts": ["nose", "nose"]}, "must not repeat"),
    ({"low_threshold": 0.8, "high_threshold": 0.5}, "must not exceed"),
    ({"high_threshold": -1}, "high_threshold must be a finite number"),
    ({"missing": "drop"}, "missing must be one of"),
    ({"start": "left"}, "start must be one of"),
    ({"output": "dict"}, "output must be one of"),
    ({"classes": ["background"]}, "at least 2 classes"),
    ({"classes": ["bg", "a", "a"]}, "unique"),
    ({"image_shape": (8, 0)}, "image_shape must be"),
])
def test_bad_parameters(params, match):
    lab = np.zeros((1, 8, 8), dtype=np.uint8)
    with pytest.raises((ValueError, TypeError), match=match):
        MaskEdgeKeypoints(**params).fit(lab)


def test_inputs_not_modified_and_read_only_ok():
    lab = _face_like()
    lab.setflags(write=False)
    before = lab.copy()
    MaskEdgeKeypoints(parts=["nose"]).fit_transform(lab)
    mask_edge_keypoints(lab[0], parts=["nose"])
    np.testing.assert_array_equal(lab, before)
    n_points = {"nose": 4}
    MaskEdgeKeypoints(n_points=n_points).fit_transform(lab)
    assert n_points == {"nose": 4}


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
    assert pipe[-1].n_points == 16 and pipe[-1].start == "centroid"
    scores = cross_val_score(pipe, images, params, scoring=_polygon_area_score, cv=3)
    assert scores.shape == (3,) and (scores > -0.06).all()




def test_default_classes_are_celebamask():
    assert MaskEdgeKeypoints().classes == CELEBAMASK_CLASSES


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


@pytest.fixture
def one_torch_thread():
    """Tiny networks run fastest on one thread; two threads on a busy 2-core machine crawl."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
