"""Tests for make_faces (synthetic faces) and landmarks_to_mask (label maps from 68 landmarks)."""
import csv
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from skkp.datasets import (CELEBAMASK_CLASSES, LANDMARK_PAINT_ORDER, landmarks68_template,
                           landmarks_to_mask, landmarks_to_masks, make_faces)

C = {name: i for i, name in enumerate(CELEBAMASK_CLASSES)}
YTF68 = Path(os.environ.get("SKKP_YTF68",
                            Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ytf68"))


@pytest.fixture(scope="module")
def faces():
    return make_faces(n_samples=100, image_size=64, random_state=0)


# ----------------------------------------------------------------------------- make_faces
def test_make_faces_shapes_and_dtypes():
    images, labels = make_faces(n_samples=3, image_size=40, random_state=1)
    assert images.shape == (3, 40, 40, 3) and images.dtype == np.uint8
    assert labels.shape == (3, 40, 40) and labels.dtype == np.uint8
    assert labels.max() < len(CELEBAMASK_CLASSES)


def test_make_faces_deterministic_and_leaves_global_rng_alone():
    state = np.random.get_state()
    a = make_faces(n_samples=4, image_size=48, random_state=7)
    b = make_faces(n_samples=4, image_size=48, random_state=np.random.RandomState(7))
    c = make_faces(n_samples=4, image_size=48, random_state=8)
    after = np.random.get_state()
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    # the global generator is untouched: same key, position and cached Gaussian
    assert np.array_equal(state[1], after[1]) and state[2:] == after[2:]


def test_every_class_appears_and_optional_parts_are_optional(faces):
    _, labels = faces
    present = np.array([[np.any(lab == c) for c in range(19)] for lab in labels])
    frac = present.mean(axis=0)
    assert np.all(frac > 0), {CELEBAMASK_CLASSES[c]: f for c, f in enumerate(frac)}
    for name in ("background", "skin", "nose", "l_brow", "r_brow", "u_lip", "l_lip", "neck"):
        assert frac[C[name]] >= 0.95, name
    for name in ("eye_g", "hat", "ear_r", "neck_l", "mouth", "l_ear"):
        assert 0.05 <= frac[C[name]] <= 0.9, (name, frac[C[name]])


def test_left_right_and_layout(faces):
    _, labels = faces
    ys, xs = np.mgrid[:64, :64]

    def centre(lab, name):
        m = lab == C[name]
        return (xs[m].mean(), ys[m].mean()) if m.any() else None

    checked = 0
    for lab in labels:
        le, re = centre(lab, "l_eye"), centre(lab, "r_eye")
        nose, lip, lb = centre(lab, "nose"), centre(lab, "l_lip"), centre(lab, "l_brow")
        if None in (le, re, nose, lip, lb):
            continue  # eyes may hide behind sunglasses
        checked += 1
        assert le[0] > re[0]                      # subject's left eye is on the image right
        assert min(le[0], re[0]) < nose[0] < max(le[0], re[0])
        assert nose[1] < lip[1] and lb[1] < le[1]
    assert checked >= 50


def test_image_follows_the_label_map(faces):
    """Colours change where labels change: neighbours across a skin/background
    boundary differ far more than neighbours inside the skin."""
    images, labels = faces
    img = images.astype(np.float32)
    diff = np.abs(img[:, :, 1:] - img[:, :, :-1]).sum(-1)
    a, b = labels[:, :, 1:], labels[:, :, :-1]
    inside = diff[(a == C["skin"]) & (b == C["skin"])]
    across = diff[((a == C["skin"]) & (b == C["background"])) |
                  ((a == C["background"]) & (b == C["skin"]))]
    assert np.median(across) > 3 * np.median(inside)


@pytest.mark.parametrize("kwargs, exc", [
    ({"n_samples": 0}, ValueError), ({"n_samples": 2.0}, TypeError), ({"n_samples": True}, TypeError),
    ({"image_size": 8}, ValueError), ({"image_size": "64"}, TypeError),
    ({"random_state": "seed"}, ValueError),
])
def test_make_faces_rejects_bad_arguments(kwargs, exc):
    name = next(iter(kwargs))
    with pytest.raises(exc, match=name if name != "random_state" else None):
        make_faces(**kwargs)


# ----------------------------------------------------------------------------- landmarks_to_mask
def _centroid(mask, cls):
    ys, xs = np.nonzero(mask == cls)
    return np.array([xs.mean(), ys.mean()])


def _check_mask(mask, pts):
    p = np.round(pts).astype(int)
    assert CELEBAMASK_CLASSES[mask[p[30, 1], p[30, 0]]] == "nose"
    for name, idx in (("r_eye", slice(36, 42)), ("l_eye", slice(42, 48))):
        cx, cy = np.round(pts[idx].mean(0)).astype(int)
        assert CELEBAMASK_CLASSES[mask[cy, cx]] == name


def test_template_mask_regions():
    pts = landmarks68_template(size=120)
    kp = pts.ravel().copy()
    mask = landmarks_to_mask(kp, (120, 120))
    assert mask.shape == (120, 120) and mask.dtype == np.uint8
    assert np.array_equal(kp, pts.ravel())  # input untouched
    assert set(np.unique(mask)) == {C[n] for n in ("background",) + LANDMARK_PAINT_ORDER}
    _check_mask(mask, pts)
    # left/right not swapped: l_* regions lie around points 42-47 / 22-26 (image right)
    assert np.linalg.norm(_centroid(mask, C["l_eye"]) - pts[42:48].mean(0)) < 2
    assert _centroid(mask, C["l_brow"])[0] > 60 > _centroid(mask, C["r_brow"])[0]
    # brows below their landmark line, above the eyes; upper lip above lower lip
    assert pts[17:27, 1].mean() < _centroid(mask, C["l_brow"])[1] < pts[42:48, 1].mean()
    assert _centroid(mask, C["u_lip"])[1] < _centroid(mask, C["mouth"])[1] \
        < _centroid(mask, C["l_lip"])[1]
    # the forehead is covered: skin above the brow line
    assert mask[int(pts[17:27, 1].min()) - 3, 60] == C["skin"]
    assert mask[2, 2] == C["background"]


def test_forehead_parameter_raises_skin_top():
    pts = landmarks68_template(size=100)
    low = landmarks_to_mask(pts, (100, 100), forehead=0.0)
    high = landmarks_to_mask(pts, (100, 100), forehead=0.3)
    assert np.nonzero(high == C["skin"])[0].min() < np.nonzero(low == C["skin"])[0].min() - 10


def test_closed_mouth_has_no_mouth_class():
    pts = landmarks68_template(size=100)
    pts[65:68] = pts[[63, 62, 61]]  # inner lower lip onto inner upper lip
    mask = landmarks_to_mask(pts, (100, 100))
    assert not np.any(mask == C["mouth"])
    assert np.any(mask == C["u_lip"]) and np.any(mask == C["l_lip"])


def test_flat_and_2d_input_and_custom_class_order():
    pts = landmarks68_template(size=80)
    a = landmarks_to_mask(pts, (80, 80, 3))
    assert np.array_equal(a, landmarks_to_mask(pts.ravel().tolist(), (80, 80)))
    order = list(reversed(CELEBAMASK_CLASSES))
    b = landmarks_to_mask(pts, (80, 80), classes=order)
    lut = np.array([order.index(name) for name in CELEBAMASK_CLASSES])
    assert np.array_equal(b, lut[a])


def test_landmarks_bad_input():
    pts = landmarks68_template()
    bad = pts.copy()
    bad[30] = np.nan
    with pytest.raises(ValueError, match="keypoints68.*NaN.*30"):
        landmarks_to_mask(bad, (100, 100))
    with pytest.raises(ValueError, match="keypoints68"):
        landmarks_to_mask(pts[:60], (100, 100))
    with pytest.raises(ValueError, match="shape"):
        landmarks_to_mask(pts, (100,))
    with pytest.raises(ValueError, match="shape"):
        landmarks_to_mask(pts, (100, 0))
    inf = pts.copy()
    inf[3, 0] = np.inf
    with pytest.raises(ValueError, match="keypoints68 contains infinity"):
        landmarks_to_mask(inf, (100, 100))
    with pytest.raises(ValueError, match=r"keypoints68 must hold 68 points.*got \(60, 2\)"):
        landmarks_to_mask(pts[:60], (100, 100))
    with pytest.raises(TypeError, match="keypoints68 must hold numbers"):
        landmarks_to_mask(np.full((68, 2), "x"), (100, 100))
    with pytest.raises(ValueError, match=r"classes must include \['nose'"):
        landmarks_to_mask(pts, (100, 100), classes=("background", "skin"))
    with pytest.raises(ValueError, match="classes must be unique"):
        landmarks_to_mask(pts, (100, 100), classes=list(CELEBAMASK_CLASSES) + ["skin"])
    with pytest.raises(TypeError, match="classes"):
        landmarks_to_mask(pts, (100, 100), classes="skin")
    with pytest.raises(ValueError, match="forehead"):
        landmarks_to_mask(pts, (100, 100), forehead=-1)


def test_landmarks_to_masks_batch():
    a = landmarks68_template(size=64).ravel()
    b = (landmarks68_template(size=48) + 4).ravel()
    kp = np.stack([a, b])
    stacked = landmarks_to_masks(kp, (64, 64))
    assert stacked.shape == (2, 64, 64)
    assert np.array_equal(stacked[1], landmarks_to_mask(b, (64, 64)))
    listed = landmarks_to_masks(kp.reshape(2, 68, 2), [(64, 64), (60, 56)])
    assert [m.shape for m in listed] == [(64, 64), (60, 56)]
    kp[1, 61] = np.nan
    with pytest.raises(ValueError, match="row 1.*keypoints"):
        landmarks_to_masks(kp, (64, 64))
    with pytest.raises(ValueError, match="shapes"):
        landmarks_to_masks(kp[:1], [(64, 64), (64, 64)])
    with pytest.raises(ValueError, match=r"keypoints must have shape \(n, 2K\)"):
        landmarks_to_masks(kp[0], (64, 64))
    with pytest.raises(ValueError, match=r"keypoints must have shape \(n, 136\) or \(n, 68, 2\)"):
        landmarks_to_masks(kp[:, :120], (64, 64))
    with pytest.raises(TypeError, match="keypoints must hold numbers"):
        landmarks_to_masks([["a"] * 136], (64, 64))


@pytest.mark.skipif(not (YTF68 / "keypoints.csv").is_file(), reason="ytf68 data not available")
def test_landmarks_to_mask_on_ytf68():
    with open(YTF68 / "keypoints.csv", newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    rows = rows[::max(1, len(rows) // 150)]
    nose_ok = eyes_ok = 0
    for row in rows:
        image = cv2.imread(str(YTF68 / "images" / row[0]), cv2.IMREAD_UNCHANGED)
        pts = np.array(row[1:], dtype=float).reshape(68, 2)
        mask = landmarks_to_mask(pts.ravel(), image.shape)
        p = np.round(pts).astype(int)
        nose_ok += mask[p[30, 1], p[30, 0]] == C["nose"]
        centres = [np.round(pts[s].mean(0)).astype(int) for s in (slice(36, 42), slice(42, 48))]
        eyes_ok += (mask[centres[0][1], centres[0][0]] == C["r_eye"]) and \
            (mask[centres[1][1], centres[1][0]] == C["l_eye"])
        # left/right not swapped: the l_eye region sits on points 42-47
        le = _centroid(mask, C["l_eye"])
        assert np.linalg.norm(le - pts[42:48].mean(0)) < np.linalg.norm(le - pts[36:42].mean(0))
    assert nose_ok >= 0.97 * len(rows), (nose_ok, len(rows))
    assert eyes_ok >= 0.97 * len(rows), (eyes_ok, len(rows))
