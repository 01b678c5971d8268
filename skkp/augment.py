"""Paired geometric and photometric transforms.

One 2x3 affine matrix moves an image, its keypoints and its label map together,
so geometry never drifts between them. Coordinates follow OpenCV: the centre of
pixel ``(col, row)`` is at ``x = col, y = row``.
"""

import threading

import cv2
import numpy as np

from .schemas import IGNORE_INDEX


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


def resize_stack(images, size, labels=False):
    """Resize each image of a stack (n, H, W[, C]) to ``size`` x ``size``, the one resize rule.

    Images use ``cv2.INTER_AREA`` when no side grows (it averages, so shrinking does
    not alias) and ``cv2.INTER_LINEAR`` otherwise; label maps (``labels=True``) use
    nearest neighbour. A stack already of that size is returned as it is, else a new
    array of the same dtype.

    Examples
    --------
    >>> resize_stack(np.zeros((2, 40, 30), np.uint8), 32).shape
    (2, 32, 32)
    """
    n, h, w = images.shape[:3]
    if (h, w) == (size, size):
        return images
    if labels:
        interpolation = cv2.INTER_NEAREST
    else:
        interpolation = cv2.INTER_AREA if (h >= size and w >= size) else cv2.INTER_LINEAR
    out = np.empty((n, size, size) + images.shape[3:], dtype=images.dtype)
    for i in range(n):
        out[i] = cv2.resize(images[i], (size, size), interpolation=interpolation).reshape(out.shape[1:])
    return out


def warp_labels(labels, M, size, ignore_index=IGNORE_INDEX):
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


def flip_points(points, width, flip_pairs=()):
    """Keypoints of horizontally mirrored images: ``x -> width - 1 - x``, then ``flip_pairs`` swapped.

    The points of ``image[:, ::-1]`` given those of ``image`` (pixel centres at integer
    coordinates, as everywhere in skkp); the swap keeps each point's name (the subject's
    left eye is still called left after the mirror). Applying it twice gives the points back.

    Parameters
    ----------
    points : array-like of shape (n, 2K) or (n, K, 2)
        ``x0, y0, x1, y1, ...`` per row; NaN stays NaN.
    width : int or float
        Width of the images in pixels.
    flip_pairs : sequence of (int, int), default=()
        Disjoint keypoint index pairs that exchange names under a mirror (a schema's
        ``flip_pairs``).

    Returns
    -------
    flipped : ndarray of float64, the shape of ``points``

    Examples
    --------
    >>> flip_points(np.array([[10.0, 5.0, 20.0, 6.0]]), 96, flip_pairs=[(0, 1)])
    array([[75.,  6., 85.,  5.]])
    """
    pts = np.array(points, dtype=np.float64, copy=True)
    if pts.ndim not in (2, 3) or (pts.ndim == 2 and pts.shape[1] % 2) or (pts.ndim == 3 and pts.shape[2] != 2):
        raise ValueError(f"points must have shape (n, 2K) or (n, K, 2), got {pts.shape}.")
    if not isinstance(width, (int, float, np.integer, np.floating)) or not width > 0:
        raise ValueError(f"width must be a positive number of pixels, got {width!r}.")
    view = pts.reshape(len(pts), -1, 2)
    n_keypoints = view.shape[1]
    pairs = [tuple(int(i) for i in p) for p in flip_pairs]
    used = [i for p in pairs for i in p]
    if any(len(p) != 2 for p in pairs) or len(set(used)) != len(used) or \
            any(not 0 <= i < n_keypoints for i in used):
        raise ValueError(f"flip_pairs must be disjoint pairs of keypoint indices in [0, {n_keypoints}), "
                         f"got {flip_pairs!r}.")
    view[:, :, 0] = (width - 1) - view[:, :, 0]
    for i, j in pairs:
        view[:, [i, j]] = view[:, [j, i]]
    return pts


# --------------------------------------------------------------------------- #
# face-parsing transforms: an image and its label map move together
# --------------------------------------------------------------------------- #
#: ImageNet channel statistics (RGB, 0-1 scale), used to normalise network input.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


_THREAD_RNG = threading.local()


def sample_rng(seed, epoch, index):
    """The generator of one training sample's augmentation: ``np.random.RandomState`` seeded from
    ``(seed, epoch, index)`` (one word of ``np.random.SeedSequence``), so a sample's draws depend
    on nothing else (not the batch order, not the DataLoader worker).

    It is this thread's one RandomState, seeded again: seeding takes about 1.5 us where making
    a RandomState takes about 90 us, a third of augmenting a 96 px sample here, with the same
    draws. Use it before the next call in the same thread.

    Examples
    --------
    >>> a = sample_rng(0, 1, 2).uniform(size=3)
    >>> b = sample_rng(0, 1, 2).uniform(size=3)
    >>> bool((a == b).all()), bool((a == np.random.RandomState(
    ...     np.random.SeedSequence([0, 1, 2]).generate_state(1)[0]).uniform(size=3)).all())
    (True, True)
    """
    rng = getattr(_THREAD_RNG, "rng", None)
    if rng is None:
        rng = _THREAD_RNG.rng = np.random.RandomState()
    rng.seed(np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1)[0])
    return rng


def normalize_image(image):
    """(H, W, 3) RGB on the 0-255 scale -> float32 (3, H, W) with ImageNet mean/std."""
    out = np.asarray(image, dtype=np.float32) / 255.0
    out = (out - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def normalize_images(images):
    """:func:`normalize_image` for a torch batch, on the batch's device: uint8 (B, H, W, 3) ->
    float32 (B, 3, H, W) (a channels-last view; ``.contiguous()`` gives the usual layout), with
    the same operations in the same order, so the values are the same.

    Examples
    --------
    >>> import torch
    >>> rgb = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    >>> out = normalize_images(torch.from_numpy(rgb))
    >>> tuple(out.shape), bool(np.array_equal(out[1].numpy(), normalize_image(rgb[1])))
    ((2, 3, 4, 5), True)
    """
    import torch

    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=images.device)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=images.device)
    return ((images.float() / 255.0 - mean) / std).permute(0, 3, 1, 2)


def scale_crop_matrix(rng, shape, size, scale=(0.75, 2.0), flip=False):
    """Draw one affine matrix: optional mirror, random scale, random crop.

    The image (``shape`` = (h, w)) is resized so that its longer side becomes
    ``s * size`` with ``s`` uniform in ``scale``, then a random ``size`` x
    ``size`` window is cut from it; a window larger than the scaled image is
    placed at a random position (the rest is padding).

    Parameters
    ----------
    rng : numpy.random.RandomState
    shape : (int, int)
        Height and width of the input image.
    size : int
        Side of the output.
    scale : (float, float), default=(0.75, 2.0)
        Range of the scale relative to ``size``; ``None`` means 1.
    flip : bool, default=False
        Mirror horizontally first.

    Returns
    -------
    M : ndarray of shape (2, 3)
        For :func:`warp_image` and :func:`warp_labels`.
    """
    h, w = int(shape[0]), int(shape[1])
    s = rng.uniform(scale[0], scale[1]) if scale else 1.0
    f = s * size / max(h, w)
    offsets = []
    for extent in (f * w, f * h):  # x then y; always two draws
        lo, hi = sorted((0.0, extent - size))
        offsets.append(rng.uniform(lo, hi))
    # scaling about (-0.5, -0.5) maps pixel edges onto pixel edges (cv2.resize convention)
    return affine_matrix((-0.5, -0.5), 0.0, f, (-offsets[0], -offsets[1]), flip_width=w if flip else None)


def color_jitter(rng, image, brightness=0.5, contrast=0.5, saturation=0.5):
    """Random brightness, contrast and saturation of an RGB image.

    Each factor is drawn uniformly in ``[1 - v, 1 + v]``: brightness scales the
    pixels, contrast blends with the mean grey level, saturation with the grey
    image. Returns float32 in [0, 255]; a grey (H, W) image gets no saturation
    change.

    Examples
    --------
    >>> rng = np.random.RandomState(0)
    >>> color_jitter(rng, np.full((2, 2, 3), 100, np.uint8), 0, 0, 0)[0, 0]
    array([100., 100., 100.], dtype=float32)
    """
    out = np.asarray(image, dtype=np.float32)
    b, c, s = (rng.uniform(1 - v, 1 + v) if v else 1.0 for v in (brightness, contrast, saturation))
    out = out * b
    gray = out @ np.array([0.299, 0.587, 0.114], dtype=np.float32) if out.ndim == 3 else out
    out = (out - gray.mean()) * c + gray.mean()
    if out.ndim == 3:
        gray = out @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        out = (out - gray[..., None]) * s + gray[..., None]
    return np.clip(out, 0.0, 255.0)


def random_parsing_transform(rng, image, labels, size, lut=None, scale=(0.75, 2.0), flip=True,
                             jitter=0.5, ignore_index=IGNORE_INDEX):
    """Augment an RGB image and its label map together, for training a parser.

    One affine matrix (mirror with probability 0.5 if ``flip``, random scale in
    ``scale`` of ``size``, random crop to ``size``) moves the image (bilinear,
    padded with the ImageNet mean colour) and the labels (nearest neighbour,
    padded with ``ignore_index``); a mirrored label map is relabelled with
    ``lut`` (see :func:`flip_lut`) so left and right parts swap. Then colour
    jitter of strength ``jitter``.

    Parameters
    ----------
    rng : numpy.random.RandomState
    image : ndarray (H, W, 3) uint8 RGB
    labels : ndarray (H, W) integer labels < 256
    size : int
        Side of the output.
    lut : ndarray of shape (256,) or None
        Flip lookup table; ``None`` keeps labels as they are.
    scale : (float, float) or None, default=(0.75, 2.0)
    flip : bool, default=True
    jitter : float, default=0.5
        Brightness, contrast and saturation strength; 0 turns it off.
    ignore_index : int, default=IGNORE_INDEX (255)

    Returns
    -------
    image : ndarray (size, size, 3) float32 in [0, 255]
    labels : ndarray (size, size) uint8

    Examples
    --------
    >>> rng = np.random.RandomState(0)
    >>> img, lab = random_parsing_transform(rng, np.zeros((40, 30, 3), np.uint8),
    ...                                     np.ones((40, 30), np.uint8), 32)
    >>> img.shape, lab.shape, set(np.unique(lab)) <= {1, 255}
    ((32, 32, 3), (32, 32), True)
    """
    flipped = bool(flip and rng.rand() < 0.5)
    M = scale_crop_matrix(rng, labels.shape[:2], size, scale, flip=flipped)
    pad = tuple(255.0 * m for m in IMAGENET_MEAN)
    out_image = warp_image(np.asarray(image, dtype=np.float32), M, size, border_value=pad)
    out_labels = warp_labels(labels, M, size, ignore_index=ignore_index)
    if flipped and lut is not None:
        out_labels = np.asarray(lut, dtype=np.uint8)[out_labels]
    if jitter:
        out_image = color_jitter(rng, out_image, jitter, jitter, jitter)
    return out_image, out_labels
