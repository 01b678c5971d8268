"""Face-parsing label maps painted from 68 iBUG 300-W landmarks."""
import numbers

import cv2
import numpy as np

from .._validation import check_point_set, check_points
from ..schemas import CELEBAMASK_CLASSES, check_class_names

_SHIFT = 4                      # cv2 fixed-point bits: vertices at 1/16 pixel
_ONE = float(1 << _SHIFT)

#: Order in which :func:`landmarks_to_mask` paints its regions (later wins).
LANDMARK_PAINT_ORDER = ("skin", "nose", "r_brow", "l_brow", "r_eye", "l_eye", "u_lip", "l_lip",
                        "mouth")


def landmarks68_template(size=100):
    """A synthetic, symmetric frontal face as 68 iBUG 300-W landmarks.

    Handy for examples and tests of :func:`landmarks_to_mask`; it is drawn by
    hand, not averaged from any data set.

    Parameters
    ----------
    size : float, default=100
        Side of the square image the face fills (the jaw spans about 76 %).

    Returns
    -------
    points : ndarray of shape (68, 2), float64
        ``(x, y)`` in pixels; ``points.ravel()`` gives ``x0, y0, ..., x67, y67``.

    Examples
    --------
    >>> pts = landmarks68_template(size=100)
    >>> pts.shape, pts[30].tolist()          # the nose tip
    ((68, 2), [50.0, 59.0])
    """
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, numbers.Real) or \
            not np.isfinite(size) or size <= 0:
        raise ValueError(f"size must be a positive number, got {size!r}.")
    t = np.linspace(0, np.pi, 17)
    jaw = np.c_[50 - 38 * np.cos(t) * (1 - 0.25 * np.sin(t) ** 2), 42 + 48 * np.sin(t)]
    bx = np.linspace(20, 44, 5)
    r_brow = np.c_[bx, 33 - 4 * np.sin(np.pi * (bx - 16) / 30)]
    bridge = np.c_[[50.0] * 4, [38, 45, 52, 59]]
    lower_nose = np.c_[[42, 46, 50, 54, 58], [63, 64.5, 65, 64.5, 63]]
    r_eye = np.array([[25, 42], [30, 39], [36, 39], [41, 42], [36, 44.5], [30, 44.5]], float)
    l_eye = np.c_[100 - r_eye[[3, 2, 1, 0, 5, 4], 0], r_eye[[3, 2, 1, 0, 5, 4], 1]]
    outer = np.array([[37, 75], [41, 72], [46, 70.5], [50, 71.5], [54, 70.5], [59, 72], [63, 75],
                      [59, 79], [54, 81], [50, 81.5], [46, 81], [41, 79]], float)
    inner = np.array([[40, 75], [45, 74], [50, 74.5], [55, 74], [60, 75], [55, 77], [50, 77.5],
                      [45, 77]], float)
    l_brow = np.c_[100 - r_brow[::-1, 0], r_brow[::-1, 1]]
    pts = np.vstack([jaw, r_brow, l_brow, bridge, lower_nose, r_eye, l_eye, outer, inner])
    return pts * (size / 100.0)


def _check_landmarks(keypoints68, name):
    pts = check_point_set(keypoints68, name, n_points=68)
    if np.isnan(pts).any():
        bad = np.flatnonzero(np.isnan(pts).any(axis=1)).tolist()
        raise ValueError(f"{name} holds NaN values (landmarks {bad}); every one of the 68 landmarks "
                         f"is needed to build a label map.")
    return pts


def _check_shape(shape, name="shape"):
    try:
        dims = tuple(int(d) for d in shape)
        ok = all(float(d) == float(o) for d, o in zip(dims, shape))
    except (TypeError, ValueError):
        dims, ok = (), False
    if not ok or len(dims) not in (2, 3) or min(dims[:2]) < 1:
        raise ValueError(f"{name} must be (height, width) or (height, width, channels) with "
                         f"positive ints, got {shape!r}.")
    return dims[:2]


def landmarks_to_mask(keypoints68, shape, classes=CELEBAMASK_CLASSES, forehead=0.2,
                      brow_width=0.08):
    """Paint a face-parsing label map from 68 iBUG 300-W landmarks.

    Regions, painted in :data:`LANDMARK_PAINT_ORDER` (later ones cover earlier):

    - skin: the jaw line 0-16 closed over both brows 26-17, the brow line moved
      up by ``forehead`` times the distance from the top of the nose bridge
      (27) to the chin (8), along that same direction, so the polygon covers
      the forehead;
    - nose: the union of the bridge 27-29 widened to each side (half-width 6 %
      of the outer eye-corner distance at 27, growing to 9 % at 29) and the
      convex hull of the widened point 29, the tip 30 and the lower nose
      31-35, whose outer points 31 and 35 are pushed outwards by 15 % of their
      distance to cover the nostril wings;
    - r_brow (17-21, image left) and l_brow (22-26): the landmark line and
      the same line moved down by ``brow_width`` times the outer eye-corner
      distance (tapering to 60 % at the outer end);
    - r_eye (36-41, image left) and l_eye (42-47): the eye polygons;
    - u_lip: outer upper lip 48-54 back along the inner upper lip 64-60;
      l_lip: outer lower lip 54-59, 48 back along the inner lower lip 60,
      67-64;
    - mouth: the inner lip polygon 60-67, if its area is at least one pixel.

    Hair, ears, neck and the other classes are not produced.

    Parameters
    ----------
    keypoints68 : array-like of shape (136,) or (68, 2)
        Landmarks in pixels, ``x0, y0, ..., x67, y67``.
    shape : (int, int) or (int, int, int)
        Shape of the image; the label map has its height and width.
    classes : sequence of str, default=CELEBAMASK_CLASSES
        Class names (unique, at most 255: label 255 is the ignore index); each
        painted region gets the index of its name here. Must contain
        ``background`` and the names above.
    forehead : float, default=0.2
        How far the brow line is raised to close the skin polygon.
    brow_width : float, default=0.08
        Brow thickness as a fraction of the outer eye-corner distance.

    Returns
    -------
    mask : ndarray of shape (height, width), uint8

    Examples
    --------
    >>> pts = landmarks68_template(size=100)   # a synthetic frontal face
    >>> mask = landmarks_to_mask(pts, (100, 100))
    >>> CELEBAMASK_CLASSES[mask[58, 50]], CELEBAMASK_CLASSES[mask[42, 68]]
    ('nose', 'l_eye')
    """
    pts = _check_landmarks(keypoints68, "keypoints68")
    height, width = _check_shape(shape)
    classes = check_class_names(classes, "classes")
    missing = [c for c in ("background",) + LANDMARK_PAINT_ORDER if c not in classes]
    if missing:
        raise ValueError(f"classes must include {missing} (background and every name of "
                         f"{list(LANDMARK_PAINT_ORDER)}); got {classes!r}.")
    for name, value in (("forehead", forehead), ("brow_width", brow_width)):
        if not isinstance(value, numbers.Real) or not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")

    iod = np.linalg.norm(pts[45] - pts[36])
    up = pts[27] - pts[8]
    face_len = np.linalg.norm(up)
    up = up / face_len if face_len > 0 else np.array([0.0, -1.0])
    right = np.array([-up[1], up[0]])  # image right for an upright face
    if np.dot(right, pts[45] - pts[36]) < 0:
        right = -right

    brows = pts[26:16:-1] + forehead * face_len * up
    polys = {"skin": np.vstack([pts[0:17], brows])}
    hw = iod * np.array([0.06, 0.075, 0.09])[:, None]
    spread = 0.15 * (pts[35] - pts[31])
    lower = np.vstack([pts[29] - hw[2] * right, pts[30], pts[31] - spread, pts[32:35],
                       pts[35] + spread, pts[29] + hw[2] * right])
    hull = cv2.convexHull(lower.astype(np.float32))[:, 0].astype(np.float64)
    polys["nose"] = [np.vstack([pts[27:30] - hw * right, (pts[27:30] + hw * right)[::-1]]),
                     hull]
    taper = brow_width * iod * np.linspace(0.6, 1.0, 5)[:, None]
    for name, idx in (("r_brow", np.arange(17, 22)), ("l_brow", np.arange(26, 21, -1))):
        line = pts[idx]  # outer end first
        polys[name] = np.vstack([line, (line - taper * up)[::-1]])
    polys["r_eye"], polys["l_eye"] = pts[36:42], pts[42:48]
    polys["u_lip"] = np.vstack([pts[48:55], pts[64:59:-1]])
    polys["l_lip"] = np.vstack([pts[54:60], pts[48:49], pts[60:61], pts[67:63:-1]])
    polys["mouth"] = pts[60:68]

    mask = np.full((height, width), classes.index("background"), dtype=np.uint8)
    for name in LANDMARK_PAINT_ORDER:
        parts = polys[name] if isinstance(polys[name], list) else [polys[name]]
        if name == "mouth" and cv2.contourArea(parts[0].astype(np.float32)) < 1.0:
            continue
        for poly in parts:  # one call each: cv2 fills overlaps of one call even-odd
            cv2.fillPoly(mask, [np.round(poly * _ONE).astype(np.int32)], classes.index(name),
                         cv2.LINE_8, _SHIFT)
    return mask


def landmarks_to_masks(keypoints, shapes, classes=CELEBAMASK_CLASSES, **kwargs):
    """Label maps for a batch of landmark sets; see :func:`landmarks_to_mask`.

    Parameters
    ----------
    keypoints : array-like of shape (n, 136) or (n, 68, 2)
    shapes : (int, int) or sequence of n shapes
        One image shape for all, or one per row.
    classes : sequence of str, default=CELEBAMASK_CLASSES
    **kwargs
        ``forehead`` and ``brow_width``, passed on.

    Returns
    -------
    masks : ndarray of shape (n, height, width) when ``shapes`` is one shape,
        else a list of n (height_i, width_i) arrays.

    Examples
    --------
    >>> pts = landmarks68_template(size=64).ravel()
    >>> masks = landmarks_to_masks(np.stack([pts, pts]), (64, 64))
    >>> masks.shape
    (2, 64, 64)
    """
    kp = check_points(keypoints, "keypoints")
    if kp.shape[1] != 68:
        raise ValueError(f"keypoints must have shape (n, 136) or (n, 68, 2), got {np.shape(keypoints)}.")
    single = np.ndim(shapes) == 1
    if not single and len(shapes) != len(kp):
        raise ValueError(f"shapes must be one (height, width) or one shape per row of keypoints "
                         f"({len(kp)}), got {len(shapes)} shapes.")
    out = []
    for i, row in enumerate(kp):
        shape = shapes if single else shapes[i]
        try:
            out.append(landmarks_to_mask(row, shape, classes, **kwargs))
        except ValueError as err:
            raise ValueError(f"row {i}: {err}".replace("keypoints68", "keypoints")) from None
    return np.stack(out) if single else out
