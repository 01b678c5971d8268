"""Face detection in whole photos, and the calibration of detector boxes to landmark boxes.

:func:`detect_faces` (or a :class:`FaceDetector`) finds faces in images of any size and
returns, per image, an array of boxes ``(x, y, w, h, score)`` in that image's pixels,
sorted by score (best first). Backends:

- ``"skimage"``: scikit-image's bundled LBP frontal-face cascade (any OpenCV; needs
  scikit-image). scikit-image gives boxes without a score, so its raw windows are grouped
  here: windows overlapping with IoU > 0.5 form one face (at least ``min_neighbors`` of
  them), and the score is the number of windows merged, each counted by its scale (its
  side over the 24-pixel cascade window; the search step grows with the window).
- ``"opencv-haar"``: OpenCV's Haar frontal-face cascade, only where the installed OpenCV
  has ``cv2.CascadeClassifier`` and ships ``cv2.data.haarcascades`` (opencv-python 4.x;
  OpenCV 5 has neither). The score is OpenCV's neighbour count (as for ``"skimage"``).
- ``"yunet"``: OpenCV's ``cv2.FaceDetectorYN`` with the user's ONNX file (``model=``;
  nothing is downloaded). The score is the detection confidence in [0, 1].
- a callable ``image -> boxes``, any detector of your own.
- ``"auto"``: ``"opencv-haar"`` when available, else ``"skimage"`` (the best installed
  backend that needs no user file).

Detector boxes do not frame a face the way the extent of its landmarks does (a cascade
box sits higher and is square). :func:`fit_box_calibration` learns the map from detector
boxes to landmark-extent boxes (:func:`keypoint_boxes`) and :func:`apply_box_calibration`
applies it; :func:`calibrate_detections` first finds which detection is the labelled face.
Boxes here are ``(x, y, w, h)``; :func:`skkp.datasets.crop_faces` takes
``(x0, y0, x1, y1)``: convert with :func:`xywh_to_xyxy` / :func:`xyxy_to_xywh`.

Numpy, OpenCV and scikit-image only (no torch).
"""
import numbers
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions

from ._validation import _as_numeric_array, check_not_single_image, check_points, pixel_scale

__all__ = ["BACKENDS", "BoxCalibration", "FaceDetector", "apply_box_calibration", "available_backends",
           "box_iou", "calibrate_detections", "detect_faces", "fit_box_calibration", "keypoint_boxes",
           "xywh_to_xyxy", "xyxy_to_xywh"]

#: Backend names accepted by :class:`FaceDetector` (a callable is accepted too).
BACKENDS = ("auto", "opencv-haar", "skimage", "yunet")
_HAAR_FILE = "haarcascade_frontalface_default.xml"


# ----------------------------------------------------------------------------- images
def _one_image(image, name, scale=None):
    """One image as uint8 (H, W) gray or (H, W, 3) RGB; ``scale`` is the pixel scale when already
    decided for a whole stack."""
    arr = _as_numeric_array(image, name, what="an image (H, W) gray or (H, W, 3) RGB", strict=True)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        hint = " (drop the alpha channel of RGBA images)" if arr.ndim == 3 and arr.shape[2] == 4 else ""
        raise ValueError(f"{name} must be an image of shape (H, W) gray or (H, W, 3) RGB, got shape "
                         f"{arr.shape}{hint}.")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: shape {arr.shape}.")
    if arr.dtype == np.uint8:
        return arr
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity; pixel values must be finite.")
    if arr.min() < 0:
        raise ValueError(f"{name} has negative pixel values (minimum {arr.min()}); pixels are on the 0-255 "
                         f"scale, or 0-1 for floats.")
    scale = pixel_scale(arr, name) if scale is None else scale
    return np.rint(arr * (255.0 / scale)).astype(np.uint8)


def _image_list(images, name="images"):
    """Images as a list of uint8 (H, W) or (H, W, 3) RGB arrays (not copied when already uint8).

    ``images`` is a list or tuple of arrays of any sizes, a 1-D object array of them, or one
    array (n, H, W[, C]) of images of one size. One single image is refused with a hint.
    Pixel values follow :func:`skkp._validation.pixel_scale` (decided per image in a list,
    once for a stacked array).
    """
    if isinstance(images, np.ndarray) and images.dtype == object:
        if images.ndim != 1:
            raise ValueError(f"{name} as an object array must be 1-D (one image per entry), got shape "
                             f"{images.shape}.")
        images = list(images)
    if isinstance(images, (list, tuple)):
        return [_one_image(im, f"{name}[{i}]") for i, im in enumerate(images)]
    if not isinstance(images, np.ndarray):
        if isinstance(images, (str, bytes)) or not hasattr(images, "__array__"):
            raise TypeError(f"{name} must be a list of images (arrays (H, W) or (H, W, 3)) or an array "
                            f"(n, H, W[, 3]), got {type(images).__name__}.")
        images = np.asarray(images)
    if images.ndim == 2:
        raise ValueError(f"{name} with shape {images.shape} is one (H, W) image; pass a list of images, "
                         f"e.g. [{name}].")
    if images.ndim == 3:
        check_not_single_image(images, name)
    if images.ndim not in (3, 4):
        raise ValueError(f"{name} as one array must have shape (n, H, W) or (n, H, W, 3), got {images.shape}.")
    arr = _as_numeric_array(images, name, what="images (n, H, W) or (n, H, W, 3)", strict=True)
    scale = None if arr.dtype == np.uint8 or arr.size == 0 else pixel_scale(arr, name)
    return [_one_image(im, f"{name}[{i}]", scale) for i, im in enumerate(arr)]


def _gray(image):
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


# ----------------------------------------------------------------------------- boxes
def _box_array(boxes, name, min_cols=4):
    arr = _as_numeric_array(boxes, name, what="boxes of shape (n, 4) as x, y, w, h")
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, min_cols)
    if arr.ndim != 2 or arr.shape[1] < min_cols:
        raise ValueError(f"{name} must have shape (n, 4) as x, y, w, h (extra columns such as a score are "
                         f"kept), got {arr.shape}.")
    return arr.astype(np.float64)


def xywh_to_xyxy(boxes):
    """Boxes ``(x, y, w, h, ...)`` -> ``(x0, y0, x1, y1, ...)`` (extra columns kept).

    Examples
    --------
    >>> xywh_to_xyxy([[10, 20, 30, 40, 0.9]]).tolist()
    [[10.0, 20.0, 40.0, 60.0, 0.9]]
    """
    out = _box_array(boxes, "boxes").copy()
    out[:, 2:4] += out[:, 0:2]
    return out


def xyxy_to_xywh(boxes):
    """Boxes ``(x0, y0, x1, y1, ...)`` -> ``(x, y, w, h, ...)`` (extra columns kept).

    Examples
    --------
    >>> xyxy_to_xywh([[10, 20, 40, 60]]).tolist()
    [[10.0, 20.0, 30.0, 40.0]]
    """
    out = _box_array(boxes, "boxes").copy()
    out[:, 2:4] -= out[:, 0:2]
    return out


def keypoint_boxes(keypoints):
    """The landmark-extent box ``(x, y, w, h)`` of each row of keypoints.

    The min/max box of the labelled points, as :func:`skkp.datasets.crop_faces` frames
    faces from keypoints; a row with no labelled point gives a NaN box.

    Parameters
    ----------
    keypoints : array of shape (n, 2K) or (n, K, 2)
        Pixels ``x0, y0, x1, y1, ...``; NaN marks a missing point.

    Returns
    -------
    boxes : ndarray of shape (n, 4)

    Examples
    --------
    >>> keypoint_boxes([[40, 30, 80, 30, 60, 70]]).tolist()
    [[40.0, 30.0, 40.0, 40.0]]
    """
    pts = check_points(keypoints, "keypoints")
    pts[np.isnan(pts).any(axis=2)] = np.nan
    out = np.full((len(pts), 4), np.nan)
    ok = ~np.isnan(pts).all(axis=(1, 2))
    lo, hi = np.nanmin(pts[ok], axis=1), np.nanmax(pts[ok], axis=1)
    out[ok] = np.c_[lo, hi - lo]
    return out


def box_iou(boxes_a, boxes_b):
    """Intersection over union of every box of ``boxes_a`` with every box of ``boxes_b``.

    Parameters
    ----------
    boxes_a : array of shape (n, 4) as x, y, w, h (extra columns ignored)
    boxes_b : array of shape (m, 4)

    Returns
    -------
    iou : ndarray of shape (n, m)
        In [0, 1]; 0 for boxes of zero area or with NaN.

    Examples
    --------
    >>> box_iou([[0, 0, 10, 10]], [[5, 0, 10, 10], [20, 20, 5, 5]]).round(3).tolist()
    [[0.333, 0.0]]
    """
    iou = _overlap(_box_array(boxes_a, "boxes_a"), _box_array(boxes_b, "boxes_b"))
    return np.where(np.isfinite(iou), iou, 0.0)


# ----------------------------------------------------------------------------- calibration
@dataclass(frozen=True)
class BoxCalibration:
    """A map from detector boxes to landmark-extent boxes (see :func:`fit_box_calibration`).

    A box ``(x, y, w, h)`` with centre ``(cx, cy)`` becomes the box of centre
    ``(cx + dx * w, cy + dy * h)`` and size ``(scale_x * w, scale_y * h)``. The default
    is the identity.

    Parameters
    ----------
    dx, dy : float
        Centre offset in units of the box width and height.
    scale_x, scale_y : float
        Width and height factors (> 0).
    n_boxes : int
        Number of box pairs it was fitted on (0 for one set by hand).

    Examples
    --------
    >>> BoxCalibration(dy=0.1, scale_x=1.2).apply([[0, 0, 10, 10]]).tolist()
    [[-1.0, 1.0, 12.0, 10.0]]
    """

    dx: float = 0.0
    dy: float = 0.0
    scale_x: float = 1.0
    scale_y: float = 1.0
    n_boxes: int = 0

    def __post_init__(self):
        for key in ("dx", "dy", "scale_x", "scale_y"):
            value = getattr(self, key)
            if not isinstance(value, numbers.Real) or not np.isfinite(value):
                raise ValueError(f"calibration {key} must be a finite number, got {value!r}.")
        if not (self.scale_x > 0 and self.scale_y > 0):
            raise ValueError(f"calibration scale_x and scale_y must be > 0, got {self.scale_x}, {self.scale_y}.")

    def apply(self, boxes):
        """Calibrated boxes: see :func:`apply_box_calibration`."""
        return apply_box_calibration(self, boxes)

    def to_dict(self):
        """The fields as a plain dict (JSON-friendly)."""
        return {k: (int(v) if k == "n_boxes" else float(v)) for k, v in asdict(self).items()}


def _as_calibration(calibration):
    if isinstance(calibration, BoxCalibration):
        return calibration
    if isinstance(calibration, Mapping):
        unknown = set(calibration) - {"dx", "dy", "scale_x", "scale_y", "n_boxes"}
        if unknown:
            raise ValueError(f"calibration has unknown keys {sorted(unknown)}; expected dx, dy, scale_x, "
                             f"scale_y (and n_boxes).")
        return BoxCalibration(**calibration)
    raise TypeError(f"calibration must be a BoxCalibration or a dict with dx, dy, scale_x, scale_y, got "
                    f"{type(calibration).__name__}.")


def fit_box_calibration(detector_boxes, landmark_boxes):
    """Learn the map from detector boxes to landmark-extent boxes, robustly.

    For each pair, the centre offset in units of the detector box's width and height and
    the width and height ratios are computed; the calibration takes their medians (the
    ratios' geometric median), so up to half the pairs may be outliers (a wrong face, a
    bad label) without moving it.

    Parameters
    ----------
    detector_boxes : array of shape (n, 4) as x, y, w, h
        Extra columns (a score) are ignored.
    landmark_boxes : array of shape (n, 4) as x, y, w, h
        The matching target boxes, e.g. :func:`keypoint_boxes` of the faces' landmarks.
        Pairs with a NaN or a non-positive size are left out.

    Returns
    -------
    BoxCalibration

    Raises
    ------
    ValueError
        When the shapes differ or no valid pair is left.

    Examples
    --------
    >>> det = np.array([[10.0, 10, 50, 50], [100, 40, 80, 80]])
    >>> fit_box_calibration(det, BoxCalibration(dy=0.2, scale_y=1.1).apply(det))
    BoxCalibration(dx=0.0, dy=0.2, scale_x=1.0, scale_y=1.1, n_boxes=2)
    """
    det = _box_array(detector_boxes, "detector_boxes")[:, :4]
    ref = _box_array(landmark_boxes, "landmark_boxes")[:, :4]
    if det.shape != ref.shape:
        raise ValueError(f"detector_boxes and landmark_boxes must have one box each per face: got {len(det)} "
                         f"and {len(ref)} boxes.")
    ok = np.isfinite(det).all(1) & np.isfinite(ref).all(1) & (det[:, 2:] > 0).all(1) & (ref[:, 2:] > 0).all(1)
    if not ok.any():
        raise ValueError("fit_box_calibration needs at least one pair of finite boxes of positive size.")
    det, ref = det[ok], ref[ok]
    centre = lambda b: b[:, :2] + b[:, 2:] / 2  # noqa: E731
    offset = np.median((centre(ref) - centre(det)) / det[:, 2:], axis=0)
    scale = np.exp(np.median(np.log(ref[:, 2:] / det[:, 2:]), axis=0))
    values = np.round(np.r_[offset, scale], 12)  # exact fits come out as the exact numbers
    return BoxCalibration(float(values[0]), float(values[1]), float(values[2]), float(values[3]), int(ok.sum()))


def apply_box_calibration(calibration, boxes):
    """Map detector boxes to landmark-extent boxes with a :class:`BoxCalibration`.

    Parameters
    ----------
    calibration : BoxCalibration or dict
        With keys ``dx, dy, scale_x, scale_y``.
    boxes : array of shape (n, 4) or (n, 5) as x, y, w, h[, score]
        Extra columns are kept unchanged.

    Returns
    -------
    boxes : ndarray of the same shape, float64 (a new array)

    Examples
    --------
    >>> apply_box_calibration({"dx": 0.0, "dy": 0.1, "scale_x": 1.0, "scale_y": 1.0},
    ...                       [[0, 0, 10, 10, 0.9]]).tolist()
    [[0.0, 1.0, 10.0, 10.0, 0.9]]
    """
    cal = _as_calibration(calibration)
    out = _box_array(boxes, "boxes").copy()
    w, h = out[:, 2].copy(), out[:, 3].copy()
    cx, cy = out[:, 0] + w / 2 + cal.dx * w, out[:, 1] + h / 2 + cal.dy * h
    out[:, 2], out[:, 3] = cal.scale_x * w, cal.scale_y * h
    out[:, 0], out[:, 1] = cx - out[:, 2] / 2, cy - out[:, 3] / 2
    return out


def calibrate_detections(detections, landmark_boxes, match_iou=0.3):
    """Match each image's detections to its labelled face and fit the calibration on the matches.

    Two rounds, so that detector boxes of another scale than the landmark boxes (a face
    detector for nose points) still match: first, the images with exactly one detection
    containing the landmark box's centre give a rough calibration; then a detection
    matches when its *calibrated* box has IoU > ``match_iou`` with the landmark box, and
    the images with exactly one match give the final :func:`fit_box_calibration`.

    Parameters
    ----------
    detections : list of arrays (n_faces, 4) or (n_faces, 5)
        Per image, as :func:`detect_faces` returns them.
    landmark_boxes : array of shape (n_images, 4)
        The labelled face of each image (:func:`keypoint_boxes`); NaN rows never match.
    match_iou : float, default=0.3

    Returns
    -------
    calibration : BoxCalibration
        The identity (``n_boxes=0``) when no detection contains any labelled face.
    match : ndarray of shape (n_images,), int
        Index of the matched detection (the highest IoU after calibration) per image, -1
        when none.

    Examples
    --------
    >>> faces = np.array([[10.0, 10, 40, 40], [60, 20, 50, 50]])  # two labelled faces
    >>> dets = [BoxCalibration(dy=-0.2, scale_x=0.5, scale_y=0.5).apply(f[None]) for f in faces]
    >>> cal, match = calibrate_detections(dets, faces)
    >>> cal.to_dict(), match.tolist()
    ({'dx': 0.0, 'dy': 0.4, 'scale_x': 2.0, 'scale_y': 2.0, 'n_boxes': 2}, [0, 0])
    """
    ref = _box_array(landmark_boxes, "landmark_boxes")[:, :4]
    if not isinstance(detections, (list, tuple)):
        raise TypeError(f"detections must be a list with one array of boxes per image, got "
                        f"{type(detections).__name__}.")
    if len(detections) != len(ref):
        raise ValueError(f"detections must be a list with one array of boxes per image ({len(ref)}), got "
                         f"{len(detections)}.")
    dets = [_box_array(d, f"detections[{i}]")[:, :4] for i, d in enumerate(detections)]
    centre = ref[:, :2] + ref[:, 2:] / 2

    def fit(pairs, fallback):
        if not pairs:
            return fallback
        return fit_box_calibration(np.array([d for d, _ in pairs]), np.array([r for _, r in pairs]))

    rough = []
    for d, r, c in zip(dets, ref, centre):
        inside = (d[:, 0] <= c[0]) & (c[0] <= d[:, 0] + d[:, 2]) & (d[:, 1] <= c[1]) & (c[1] <= d[:, 1] + d[:, 3])
        if inside.sum() == 1:
            rough.append((d[inside][0], r))
    if not rough:
        return BoxCalibration(), np.full(len(ref), -1)
    calibration = fit(rough, None)
    match, pairs = np.full(len(ref), -1), []
    for i, (d, r) in enumerate(zip(dets, ref)):
        if len(d) == 0 or not np.isfinite(r).all():
            continue
        iou = box_iou(calibration.apply(d), r[None])[:, 0]
        hits = np.flatnonzero(iou > match_iou)
        if hits.size:
            match[i] = hits[np.argmax(iou[hits])]
        if hits.size == 1:
            pairs.append((d[hits[0]], r))
    return fit(pairs, calibration), match


# ----------------------------------------------------------------------------- backends
def _haar_file():
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = os.path.join(folder, _HAAR_FILE) if folder else None
    return path if path and os.path.isfile(path) else None


def _skimage_available():
    try:
        import skimage.feature  # noqa: F401
    except ImportError:
        return False
    return True


def available_backends():
    """The detector backends that work in this installation, in the order ``"auto"`` prefers.

    ``"opencv-haar"`` needs ``cv2.CascadeClassifier`` and OpenCV's bundled cascade files,
    ``"skimage"`` needs scikit-image, ``"yunet"`` needs ``cv2.FaceDetectorYN`` (and, to run,
    the user's ONNX file). ``"auto"`` takes the first of ``"opencv-haar"`` and ``"skimage"``.

    Examples
    --------
    >>> set(available_backends()) <= {"opencv-haar", "skimage", "yunet"}
    True
    """
    found = []
    if hasattr(cv2, "CascadeClassifier") and _haar_file():
        found.append("opencv-haar")
    if _skimage_available():
        found.append("skimage")
    if hasattr(cv2, "FaceDetectorYN"):
        found.append("yunet")
    return tuple(found)


def _overlap(a, b, smaller=False):
    """Pairwise overlap (n, m) of boxes ``a`` (n, 4) and ``b`` (m, 4): IoU, or intersection over the
    smaller area (NaN for empty boxes)."""
    a, b = a[:, None, :4], b[None, :, :4]
    iw = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    ih = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a, area_b = a[..., 2] * a[..., 3], b[..., 2] * b[..., 3]
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (np.minimum(area_a, area_b) if smaller else area_a + area_b - inter)


def _group_windows(windows, min_neighbors, unit, same=0.5, inside=0.5, chunk=512):
    """Merge the raw cascade windows (m, 4) of each face into one box (k, 5) with a score.

    Windows overlapping with IoU > ``same`` are linked, and each connected set is one
    candidate: its mean box, kept when it has at least ``min_neighbors`` windows, scored by
    the sum of its windows' sides in units of ``unit`` (the cascade's window: the search
    step grows with the window, so each window counts by its scale and a large face is not
    outvoted by the many small windows of a false alarm). A candidate lying mostly
    (intersection / smaller area > ``inside``) in a better-scored one is dropped.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    m = len(windows)
    if m == 0:
        return np.zeros((0, 5))
    windows = windows[np.lexsort((windows[:, 0], windows[:, 1], windows[:, 2]))]  # any thread order -> one result
    rows, cols = [], []
    for start in range(0, m, chunk):
        i, j = np.nonzero(_overlap(windows[start:start + chunk], windows) > same)
        rows.append(i + start)
        cols.append(j)
    graph = coo_matrix((np.ones(sum(map(len, rows))), (np.concatenate(rows), np.concatenate(cols))), shape=(m, m))
    n_groups, labels = connected_components(graph, directed=False)
    counts = np.bincount(labels, minlength=n_groups)
    means = np.stack([np.bincount(labels, windows[:, c], n_groups) for c in range(4)], axis=1) / counts[:, None]
    scores = np.bincount(labels, windows[:, 2] / unit, n_groups)
    keep = counts >= min_neighbors
    boxes = np.c_[means[keep], scores[keep]]
    boxes = boxes[np.argsort(-boxes[:, 4], kind="stable")]
    kept = []
    for k in range(len(boxes)):
        if not kept or _overlap(boxes[k:k + 1, :4], boxes[kept, :4], smaller=True).max() <= inside:
            kept.append(k)
    return boxes[kept]


class _SkimageCascade:
    def __init__(self, det):
        if not _skimage_available():
            raise ImportError("backend='skimage' needs scikit-image: pip install scikit-image "
                              "(or choose another backend, see skkp.detection.available_backends()).")
        from skimage.data import lbp_frontal_face_cascade_filename
        from skimage.feature import Cascade

        self.cascade = Cascade(lbp_frontal_face_cascade_filename())
        self.window = int(max(self.cascade.window_width, self.cascade.window_height))
        self.det = det

    def __call__(self, gray, min_size, max_size):
        side = min(gray.shape)
        lo, hi = max(self.window, int(np.ceil(min_size))), min(side, int(max_size or side))
        if hi <= lo:
            return np.zeros((0, 5))
        # min_neighbor_number=1 with an overlap threshold no window can pass returns the raw windows,
        # grouped below, so the score (windows per face) is known
        raw = self.cascade.detect_multi_scale(gray.astype(np.float32) / np.float32(255.0),
                                              scale_factor=float(self.det.scale_factor), step_ratio=1.0,
                                              min_size=(lo, lo), max_size=(hi, hi), min_neighbor_number=1,
                                              intersection_score_threshold=1.0)
        windows = np.array([[r["c"], r["r"], r["width"], r["height"]] for r in raw], dtype=np.float64)
        return _group_windows(windows.reshape(-1, 4), self.det.min_neighbors, self.window)


class _HaarCascade:
    def __init__(self, det):
        if not hasattr(cv2, "CascadeClassifier"):
            raise ValueError(f"backend='opencv-haar' needs cv2.CascadeClassifier, which the installed OpenCV "
                             f"{cv2.__version__} does not have (OpenCV 5 removed it); use backend='skimage' "
                             f"or 'yunet', or install opencv-python-headless<5.")
        path = det.model if det.model is not None else _haar_file()
        if path is None:
            raise ValueError(f"backend='opencv-haar' needs OpenCV's bundled {_HAAR_FILE} (cv2.data.haarcascades), "
                             f"which the installed OpenCV {cv2.__version__} does not ship; pass model= the path "
                             f"of a cascade XML file, or use backend='skimage'.")
        path = _check_model_file(path, "opencv-haar")
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise ValueError(f"model={path!r} could not be read as an OpenCV cascade XML file.")
        self.det = det

    def __call__(self, gray, min_size, max_size):
        side = int(min(gray.shape))
        lo = int(np.ceil(min_size))
        hi = min(side, int(max_size or side))
        if hi < lo:
            return np.zeros((0, 5))
        rects, counts = self.cascade.detectMultiScale2(gray, scaleFactor=float(self.det.scale_factor),
                                                       minNeighbors=int(self.det.min_neighbors),
                                                       minSize=(lo, lo), maxSize=(hi, hi))
        rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
        return np.c_[rects, np.asarray(counts, dtype=np.float64).reshape(-1)]


def _check_model_file(model, backend):
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be the path of the {backend} model file, got {type(model).__name__}.")
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise ValueError(f"model={path!r} is not a file; backend={backend!r} reads its model from there "
                         f"(nothing is downloaded).")
    return path


class _YuNet:
    def __init__(self, det):
        if not hasattr(cv2, "FaceDetectorYN"):
            raise ValueError(f"backend='yunet' needs cv2.FaceDetectorYN (OpenCV >= 4.5.4); the installed "
                             f"OpenCV {cv2.__version__} does not have it.")
        if det.model is None:
            raise ValueError("backend='yunet' needs model=, the path of a YuNet ONNX file (e.g. "
                             "face_detection_yunet_2023mar.onnx from the OpenCV model zoo; skkp never "
                             "downloads it).")
        path = _check_model_file(det.model, "yunet")
        try:
            self.net = cv2.FaceDetectorYN.create(path, "", (320, 320), float(det.score_threshold), 0.3, 5000)
        except cv2.error as exc:
            raise ValueError(f"model={path!r} could not be loaded by cv2.FaceDetectorYN: {exc}") from None
        self.det = det

    def __call__(self, image, min_size, max_size):
        bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_RGB2BGR)
        self.net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = self.net.detect(bgr)
        if faces is None:
            return np.zeros((0, 5))
        faces = np.asarray(faces, dtype=np.float64).reshape(len(faces), -1)
        boxes = np.c_[faces[:, :4], faces[:, -1]]  # x, y, w, h, 10 landmark coordinates, score
        side = np.minimum(boxes[:, 2], boxes[:, 3])
        return boxes[(side >= min_size) & (side <= (max_size or np.inf))]


def _callable_name(fn):
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _check_callable_boxes(out, fn, shape):
    name = _callable_name(fn)
    if out is None:
        return np.zeros((0, 5))
    try:
        arr = np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"the detector callable {name} must return an array-like of boxes (x, y, w, h[, score]), "
                        f"got {type(out).__name__}.") from None
    if arr.size == 0:
        return np.zeros((0, 5))
    if arr.ndim == 1 and arr.shape[0] in (4, 5):
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] not in (4, 5):
        raise ValueError(f"the detector callable {name} must return boxes of shape (n, 4) or (n, 5) as "
                         f"x, y, w, h[, score], got shape {arr.shape} (for an image of shape {shape}).")
    if not np.isfinite(arr).all():
        raise ValueError(f"the detector callable {name} returned boxes with NaN or infinity: {arr.tolist()[:3]}.")
    if (arr[:, 2:4] <= 0).any():
        raise ValueError(f"the detector callable {name} returned a box with zero or negative width or height; "
                         f"boxes are x, y, w, h (not x0, y0, x1, y1?): {arr[(arr[:, 2:4] <= 0).any(1)][0].tolist()}.")
    if arr.shape[1] == 4:
        arr = np.c_[arr, np.ones(len(arr))]
    return arr


class FaceDetector(BaseEstimator):
    """Find faces in images of any size; boxes ``(x, y, w, h, score)``, best first.

    Holds only its parameters (so :func:`sklearn.base.clone` and ``get_params`` work);
    the backend is built on first use.

    Parameters
    ----------
    backend : {"auto", "opencv-haar", "skimage", "yunet"} or callable, default="auto"
        See :mod:`skkp.detection`. A callable takes one uint8 image, (H, W) gray or
        (H, W, 3) RGB, and returns an array-like of boxes ``(x, y, w, h)`` or
        ``(x, y, w, h, score)`` in its pixels (None or empty: no face). Boxes without a
        score get score 1 and keep their order.
    model : str or path-like, default=None
        The model file: required for ``"yunet"`` (its ONNX file); for ``"opencv-haar"``
        a cascade XML instead of OpenCV's bundled one.
    min_size : int, default=24
        Smallest face side searched, in pixels of the image passed (for ``"yunet"``:
        smaller faces are dropped). The skimage cascade cannot find faces smaller than
        its 24-pixel window in the (possibly downscaled, see ``max_side``) image.
    max_size : int or None, default=None
        Largest face side searched (None: the image's shorter side).
    scale_factor : float, default=1.1
        Step between the searched window sizes (cascades).
    min_neighbors : int, default=3
        Windows a cascade face needs (cascades).
    score_threshold : float, default=0.6
        Smallest confidence kept (``"yunet"``; YuNet's five landmarks per face are not
        returned).
    max_side : int or None, default=640
        Images whose longer side exceeds it are searched on a copy shrunk to it (boxes
        are mapped back); None searches at full size. Not applied to callables.

    Examples
    --------
    >>> from skimage import data
    >>> boxes = FaceDetector("skimage", min_size=60).detect(data.astronaut())
    >>> boxes.shape, boxes[0, :4].round().tolist()
    ((1, 5), [174.0, 66.0, 99.0, 99.0])
    """

    _parameter_constraints = {
        "backend": [StrOptions(set(BACKENDS)), callable],
        "model": [str, os.PathLike, None],
        "min_size": [Interval(numbers.Real, 1, None, closed="left")],
        "max_size": [Interval(numbers.Real, 1, None, closed="left"), None],
        "scale_factor": [Interval(numbers.Real, 1, None, closed="neither")],
        "min_neighbors": [Interval(numbers.Integral, 1, None, closed="left")],
        "score_threshold": [Interval(numbers.Real, 0, 1, closed="both")],
        "max_side": [Interval(numbers.Integral, 32, None, closed="left"), None],
    }

    def __init__(self, backend="auto", *, model=None, min_size=24, max_size=None, scale_factor=1.1,
                 min_neighbors=3, score_threshold=0.6, max_side=640):
        self.backend = backend
        self.model = model
        self.min_size = min_size
        self.max_size = max_size
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.score_threshold = score_threshold
        self.max_side = max_side

    @property
    def backend_(self):
        """The backend that runs: ``"auto"`` resolved, or ``"callable"``."""
        return self._impl()[0]

    def _impl(self):
        key = tuple(sorted((k, v if isinstance(v, (str, numbers.Number, type(None))) else id(v))
                           for k, v in self.get_params().items()))
        cached = self.__dict__.get("_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        self._validate_params()
        if self.max_size is not None and self.max_size < self.min_size:
            raise ValueError(f"max_size={self.max_size} must be >= min_size={self.min_size}.")
        backend = self.backend
        if callable(backend):
            impl = ("callable", backend)
        else:
            if backend == "auto":
                backend = "opencv-haar" if "opencv-haar" in available_backends() else "skimage"
            impl = (backend, {"opencv-haar": _HaarCascade, "skimage": _SkimageCascade, "yunet": _YuNet}[backend](self))
        self.__dict__["_cache"] = (key, impl)
        return impl

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: the live detector keeps its backend
        state.pop("_cache", None)  # OpenCV and scikit-image detectors do not pickle; rebuilt on use
        return state

    def detect(self, image):
        """Faces in one image.

        Parameters
        ----------
        image : array of shape (H, W), (H, W, 1) or (H, W, 3) RGB
            uint8, or other numbers read by :func:`skkp._validation.pixel_scale`.

        Returns
        -------
        boxes : ndarray of shape (n_faces, 5)
            ``x, y, w, h, score`` in pixels of ``image``, by decreasing score (ties keep the
            backend's order).
        """
        name, impl = self._impl()
        image = _one_image(image, "image")
        if name == "callable":
            boxes = _check_callable_boxes(impl(image), impl, image.shape)
        else:
            h, w = image.shape[:2]
            f = 1.0
            if self.max_side is not None and max(h, w) > self.max_side:
                f = self.max_side / max(h, w)
                image = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
            search = image if name == "yunet" else _gray(image)
            boxes = impl(search, self.min_size * f, None if self.max_size is None else self.max_size * f)
            boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
            boxes[:, :4] /= f
        return boxes[np.argsort(-boxes[:, 4], kind="stable")]

    __call__ = detect


def detect_faces(images, backend="auto", **kwargs):
    """Find the faces in each of several images.

    Parameters
    ----------
    images : list of arrays, or array (n, H, W[, 3])
        Images of any sizes, each (H, W) gray or (H, W, 3) RGB, uint8 (or numbers as in
        :func:`skkp._validation.pixel_scale`). One image alone is refused: pass ``[image]``.
    backend : str or callable, default="auto"
        See :class:`FaceDetector`.
    **kwargs
        Other :class:`FaceDetector` parameters (``model``, ``min_size``, ...).

    Returns
    -------
    boxes : list of ndarray of shape (n_faces, 5)
        Per image, ``x, y, w, h, score`` in its pixels, by decreasing score.

    Examples
    --------
    >>> from skimage import data
    >>> found = detect_faces([data.astronaut(), np.zeros((100, 120), np.uint8)], min_size=60)
    >>> [len(b) for b in found]
    [1, 0]
    """
    detector = FaceDetector(backend, **kwargs)
    return [detector.detect(image) for image in _image_list(images)]
