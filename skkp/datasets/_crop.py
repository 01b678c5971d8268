"""Square face crops from boxes or landmarks, and the way back to the original frame."""
import numbers

import cv2
import numpy as np
from sklearn.utils import Bunch, check_random_state

from .._validation import check_points


def _as_image_list(images):
    """Images as a list of uint8 (h, w) or (h, w, 3) arrays (no copies)."""
    if isinstance(images, np.ndarray):
        if images.ndim not in (3, 4):
            raise ValueError("images as one array must have shape (n, H, W) or (n, H, W, C), "
                             f"got {images.shape}")
        images = list(images)
    elif not isinstance(images, (list, tuple)):
        raise TypeError(f"images must be a list of arrays or an array, got {type(images).__name__}")
    out = []
    for i, image in enumerate(images):
        image = np.asarray(image)
        if image.dtype != np.uint8:
            raise TypeError(f"images[{i}] must be uint8, got {image.dtype}")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
            raise ValueError(f"images[{i}] must have shape (h, w), (h, w, 1) or (h, w, 3), "
                             f"got {image.shape}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"images[{i}] is empty: shape {image.shape}")
        out.append(image)
    return out


def _map_points(points, A, t):
    """Apply per-image (n, 2, 2) ``A`` and (n, 2) ``t`` to (n, K, 2) points; a point
    with any NaN coordinate is NaN in both."""
    out = np.einsum("nij,nkj->nki", A, points) + t[:, None, :]
    out[np.isnan(points).any(axis=2)] = np.nan
    return out


def _parse_jitter(jitter):
    if isinstance(jitter, numbers.Real):
        shift, scale = float(jitter), 2.0 * float(jitter)
    elif isinstance(jitter, (tuple, list)) and len(jitter) == 2:
        shift, scale = float(jitter[0]), float(jitter[1])
    else:
        raise ValueError(f"jitter must be a float or a (shift, scale) pair, got {jitter!r}")
    if not (0.0 <= shift and 0.0 <= scale < 1.0):
        raise ValueError(f"jitter must give shift >= 0 and 0 <= scale < 1, got {jitter!r}")
    return shift, scale


def _boxes_from(keypoints, boxes, n):
    if boxes is not None:
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.shape != (n, 4):
            raise ValueError(f"boxes must have shape (n_images, 4) = ({n}, 4) as x0, y0, x1, y1, "
                             f"got {boxes.shape}")
        if not np.all(np.isfinite(boxes)):
            raise ValueError("boxes must be finite")
        return boxes
    if keypoints is None:
        raise ValueError("give keypoints or boxes to locate the faces")
    missing = np.isnan(keypoints).any(axis=2, keepdims=True)  # a point needs both x and y
    empty = np.where(missing.all(axis=(1, 2)))[0]
    if empty.size:
        raise ValueError(f"keypoints row {empty[0]} has no labelled point; pass boxes instead")
    labelled = np.where(missing, np.nan, keypoints)
    return np.concatenate([np.nanmin(labelled, axis=1), np.nanmax(labelled, axis=1)], axis=1)


def _warp(image, M, size):
    """Warp ``image`` by the 2x3 ``M`` into ``size`` x ``size``; area-shrink first when
    ``M`` reduces by more than 2x, so the crop is not aliased."""
    k = abs(M[0, 0])
    if k < 0.5:
        h, w = image.shape[:2]
        w2, h2 = max(1, int(round(w * k))), max(1, int(round(h * k)))
        image = cv2.resize(image, (w2, h2), interpolation=cv2.INTER_AREA)
        rx, ry = w2 / w, h2 / h  # resize maps x -> (x + 0.5) * rx - 0.5
        A, t = M[:, :2], M[:, 2]
        M = np.column_stack([A[:, 0] / rx, A[:, 1] / ry,
                             t + A[:, 0] * (0.5 / rx - 0.5) + A[:, 1] * (0.5 / ry - 0.5)])
    return cv2.warpAffine(image, M, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def crop_faces(images, keypoints=None, boxes=None, size=96, margin=0.25, gray=True, jitter=0.0,
               random_state=None):
    """Cut square, resized face crops from images of any size.

    The face box comes from ``boxes`` (any detector) or else from the extent of
    each row's labelled keypoints (NaN ignored). The box side ``s = max(w, h)`` is
    enlarged by ``margin * s`` on each side, made square around the box centre and
    mapped onto ``size`` x ``size`` pixels with one affine matrix per image
    (``cv2.warpAffine``, black outside the image). Shrinking by more than 2x first
    area-resizes the image to avoid aliasing.

    Parameters
    ----------
    images : list of uint8 arrays (h, w) or (h, w, 3) RGB, or array (n, H, W[, C])
    keypoints : array of shape (n, 2K) or (n, K, 2), optional
        Pixels x0, y0, x1, y1, ...; NaN = missing (a point with one NaN
        coordinate is missing as a whole), infinity is an error
        (:func:`skkp._validation.check_points`). Mapped into the crops.
    boxes : array of shape (n, 4), optional
        x0, y0, x1, y1 per image; used instead of the keypoint extent.
    size : int
        Side of the output crops.
    margin : float
        Extra border on each side, as a fraction of the box side.
    gray : bool
        Return (n, size, size) grey crops; else (n, size, size, 3) RGB.
    jitter : float or (float, float)
        ``j`` moves the centre by up to ``j * s`` in x and y and scales the crop by
        up to ``1 +- 2j``; a pair gives ``(shift, scale)`` separately.
    random_state : int, RandomState or None
        Seeds the jitter (never the global RNG).

    Returns
    -------
    data : sklearn.utils.Bunch
        ``images`` uint8 crops; ``keypoints`` in crop pixels (same layout as
        given, or ``None``); ``transforms`` (n, 2, 3) original -> crop matrices,
        undone by :func:`uncrop_keypoints`.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((120, 160, 3), np.uint8)
    >>> pts = np.array([[40.0, 30.0, 80.0, 30.0, 60.0, 70.0]])
    >>> out = crop_faces([image], pts, size=64, margin=0.25)
    >>> out.images.shape, out.keypoints.round(1)
    ((1, 64, 64), array([[10.2, 10.2, 52.8, 10.2, 31.5, 52.8]]))
    """
    image_list = _as_image_list(images)
    n = len(image_list)
    if not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if not isinstance(margin, numbers.Real) or not margin >= 0:
        raise ValueError(f"margin must be a number >= 0, got {margin!r}")
    shift, scale = _parse_jitter(jitter)
    points = None if keypoints is None else check_points(keypoints, "keypoints", n_samples=n)
    box = _boxes_from(points, boxes, n)
    side = np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])
    if np.any(side <= 0):
        i = int(np.argmax(side <= 0))
        raise ValueError(f"face box {i} has zero or negative size: {box[i].tolist()}")
    rng = check_random_state(random_state)
    channels = () if gray else (3,)
    crops = np.zeros((n, size, size) + channels, dtype=np.uint8)
    transforms = np.zeros((n, 2, 3))
    for i, image in enumerate(image_list):
        cx, cy = (box[i, 0] + box[i, 2]) / 2.0, (box[i, 1] + box[i, 3]) / 2.0
        crop_side = side[i] * (1.0 + 2.0 * margin)
        if shift or scale:  # always three draws per image, so seeds give stable crops
            dx, dy, ds = rng.uniform(-1.0, 1.0, size=3)
            cx, cy = cx + dx * shift * side[i], cy + dy * shift * side[i]
            crop_side *= 1.0 + ds * scale
        k = size / crop_side  # pixel centres: x_crop = k * (x - left) - 0.5
        M = np.array([[k, 0.0, -k * (cx - crop_side / 2.0) - 0.5],
                      [0.0, k, -k * (cy - crop_side / 2.0) - 0.5]])
        if gray and image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        elif not gray and image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        crops[i] = _warp(np.ascontiguousarray(image), M, size)
        transforms[i] = M
    out_points = None
    if points is not None:
        out_points = _map_points(points, transforms[:, :, :2], transforms[:, :, 2])
        out_points = out_points.reshape(np.shape(keypoints))  # the layout given
    return Bunch(images=crops, keypoints=out_points, transforms=transforms)


def uncrop_keypoints(keypoints, transforms):
    """Map keypoints from crop pixels back to the original images.

    Parameters
    ----------
    keypoints : array of shape (n, 2K) or (n, K, 2)
        E.g. predictions on the crops of :func:`crop_faces`; NaN stays NaN.
    transforms : array of shape (n, 2, 3)
        The ``transforms`` returned by :func:`crop_faces`.

    Returns
    -------
    keypoints : ndarray, same shape as the input, in original-image pixels.

    Examples
    --------
    >>> import numpy as np
    >>> pts = np.array([[40.0, 30.0, 80.0, 30.0, 60.0, 70.0]])
    >>> out = crop_faces([np.zeros((120, 160), np.uint8)], pts, size=64)
    >>> np.allclose(uncrop_keypoints(out.keypoints, out.transforms), pts)
    True
    """
    transforms = np.asarray(transforms, dtype=np.float64)
    if transforms.ndim != 3 or transforms.shape[1:] != (2, 3):
        raise ValueError(f"transforms must have shape (n, 2, 3), got {transforms.shape}")
    points = check_points(keypoints, "keypoints", n_samples=transforms.shape[0])
    A_inv = np.linalg.inv(transforms[:, :, :2])
    t_inv = -np.einsum("nij,nj->ni", A_inv, transforms[:, :, 2])
    return _map_points(points, A_inv, t_inv).reshape(np.shape(keypoints))
