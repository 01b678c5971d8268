"""Paired geometric and photometric transforms.

One 2x3 affine matrix moves an image, its keypoints and its label map together,
so geometry never drifts between them. Coordinates follow OpenCV: the centre of
pixel ``(col, row)`` is at ``x = col, y = row``.
"""
import cv2
import numpy as np


def affine_matrix(center, angle=0.0, scale=1.0, shift=(0.0, 0.0), flip_width=None):
    """Build a 2x3 matrix: optional horizontal flip, then rotation/scale about
    ``center``, then a shift in pixels.

    Parameters
    ----------
    center : (float, float)
        Centre ``(x, y)`` of rotation and scaling, in pixels.
    angle : float
        Counter-clockwise rotation in degrees (as seen on screen).
    scale : float
        Isotropic scale factor.
    shift : (float, float)
        Translation ``(dx, dy)`` in pixels, applied last.
    flip_width : int or None
        If given, mirror ``x -> flip_width - 1 - x`` first.

    Returns
    -------
    M : ndarray of shape (2, 3), float64

    Examples
    --------
    >>> M = affine_matrix((47.5, 47.5), flip_width=96)
    >>> warp_points(np.array([[0.0, 10.0]]), M)
    array([[95., 10.]])
    """
    M = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), float(angle), float(scale))
    M[:, 2] += np.asarray(shift, dtype=np.float64)
    if flip_width is not None:
        F = np.array([[-1.0, 0.0, flip_width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        M = M @ F
    return M


def random_affine(rng, size, rotation=15.0, scale=(0.9, 1.1), shift=0.05, flip=False):
    """Draw a random :func:`affine_matrix` for a square image of side ``size``.

    Parameters
    ----------
    rng : numpy.random.RandomState
    size : int
        Side of the (square) image in pixels.
    rotation : float
        Maximum absolute rotation in degrees.
    scale : (float, float)
        Range of the scale factor.
    shift : float
        Maximum absolute shift as a fraction of ``size``.
    flip : bool
        Whether a horizontal flip may be drawn (probability 0.5).

    Returns
    -------
    M : ndarray of shape (2, 3)
    flipped : bool
    """
    c = (size - 1) / 2.0
    angle = rng.uniform(-rotation, rotation) if rotation else 0.0
    s = rng.uniform(scale[0], scale[1]) if scale else 1.0
    d = rng.uniform(-shift, shift, size=2) * size if shift else np.zeros(2)
    flipped = bool(flip and rng.rand() < 0.5)
    return affine_matrix((c, c), angle, s, d, flip_width=size if flipped else None), flipped


def warp_image(image, M, size, border_value=0.0, interpolation=cv2.INTER_LINEAR):
    """Apply ``M`` to an (H, W) or (H, W, C) image, giving a ``size`` x ``size`` output."""
    return cv2.warpAffine(image, M, (int(size), int(size)), flags=interpolation,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)


def warp_labels(labels, M, size, ignore_index=255):
    """Apply ``M`` to an integer label map (nearest neighbour; outside -> ``ignore_index``)."""
    out = cv2.warpAffine(labels.astype(np.uint8), M, (int(size), int(size)), flags=cv2.INTER_NEAREST,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=int(ignore_index))
    return out


def warp_points(points, M):
    """Apply ``M`` to an array of points of shape (..., 2); NaN stays NaN."""
    points = np.asarray(points, dtype=np.float64)
    return points @ M[:, :2].T + M[:, 2]


def swap_pairs(points, pairs):
    """Return a copy of (K, 2) ``points`` with each ``(i, j)`` in ``pairs`` swapped.

    After a horizontal flip the subject's left eye lands where the right eye was,
    so the labels of paired points must be exchanged.
    """
    out = np.array(points, copy=True)
    for i, j in pairs:
        out[[i, j]] = out[[j, i]]
    return out
