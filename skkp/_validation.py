"""The one place that turns user input into checked arrays, with clear messages.

Every check raises ``TypeError`` for a wrong type and ``ValueError`` for a wrong
value, naming the argument and what was expected, before any training starts;
inputs are never modified in place. Numpy only (no torch).

What pixel values mean, for every estimator, plotting and the data helpers
(:func:`pixel_scale`): integer images (uint8 and the other integer types) are on
the 0-255 scale; a float image array whose values all lie in [0, 1] is on the 0-1
scale, any other float array on the 0-255 scale. Values above 255 are an error.
"""
from collections import namedtuple

import numpy as np

from .schemas import IGNORE_INDEX

#: What :func:`check_images` returns: the pixel array for the network (0-1 scale
#: for images, see :func:`pixel_scale`), whether X held images or a plain feature
#: matrix, the channel count the user passed (1 gray, 3 colour; 0 for features),
#: the (height, width) of the input and the scale its values were read on.
CheckedImages = namedtuple("CheckedImages", "data kind n_channels_in image_shape pixel_scale")


def _as_numeric_array(X, name, what="an array-like of numbers", strict=False):
    """``X`` as a real numeric ndarray (not copied when already one), or a clear error.

    The one front door of every input check: None, sparse matrices, strings and
    other non-array types, complex values and non-numeric dtypes are refused.
    ``strict=False`` converts object arrays to float and lets bool through (as
    scikit-learn does for features); ``strict=True`` refuses both (pixel data).
    """
    if X is None:
        raise ValueError(f"This estimator requires {name} to be passed, but the target {name} is None."
                         if name == "y" else f"{name} is None; expected {what}.")
    if hasattr(X, "sparse") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(f"Sparse data was passed for {name}, but dense data is required. Use '.toarray()' "
                        f"to convert to a dense numpy array.")
    if isinstance(X, (str, bytes)) or not (hasattr(X, "__array__") or isinstance(X, (list, tuple))):
        raise TypeError(f"{name} must be {what}, got {type(X).__name__}.")
    arr = np.asarray(X)
    if np.iscomplexobj(arr):
        raise ValueError(f"Complex data not supported: {name} must hold real numbers, got dtype {arr.dtype}.")
    if arr.dtype == object and not strict:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must hold numbers; converting it failed: {exc}") from None
    if not (np.issubdtype(arr.dtype, np.number) or (arr.dtype == bool and not strict)):
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}; expected {what}.")
    return arr


def _to_gray(images):
    """(n, H, W, 3) -> (n, H, W) with ITU-R BT.601 luma weights (as OpenCV)."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return images.astype(np.float32, copy=False) @ weights


def pixel_scale(arr, name="X"):
    """The scale pixel values are read on: 1.0 (0-1) or 255.0 (0-255), by skkp's one rule.

    Integer images are on the 0-255 scale; a float array whose finite values all lie
    in [0, 1] is on the 0-1 scale, any other float array on the 0-255 scale. The
    decision is taken once for the whole array, so one call never mixes scales.

    Raises
    ------
    ValueError
        When a value exceeds 255 (e.g. uint16 images: convert them to uint8 first).

    Examples
    --------
    >>> pixel_scale(np.array([0, 200], np.uint8)), pixel_scale(np.array([0.0, 0.5]))
    (255.0, 1.0)
    >>> pixel_scale(np.array([0.0, 200.0]))
    255.0
    """
    arr = np.asarray(arr)
    if arr.dtype == np.uint8 or arr.size == 0:
        return 255.0
    finite = arr[np.isfinite(arr)] if np.issubdtype(arr.dtype, np.floating) else arr
    hi = finite.max() if finite.size else 0
    if hi > 255:
        raise ValueError(f"{name} has pixel values up to {hi}, but images are read on the 0-255 scale "
                         f"(uint8) or the 0-1 scale (floats); convert it, e.g. uint16 images with "
                         f"(X >> 8).astype(np.uint8).")
    if np.issubdtype(arr.dtype, np.floating) and (not finite.size or (finite.min() >= 0 and hi <= 1)):
        return 1.0
    return 255.0


def check_not_single_image(arr, name="X"):
    """Refuse one (H, W, 3) or (H, W, 1) image where a stack of images is expected.

    Examples
    --------
    >>> check_not_single_image(np.zeros((2, 32, 32)))
    """
    if arr.ndim == 3 and arr.shape[-1] in (1, 3) and min(arr.shape[:2]) > 3:
        raise ValueError(f"{name} with shape {arr.shape} looks like one (H, W, {arr.shape[-1]}) image; "
                         f"estimators take a stack of images (n, H, W[, C]): pass {name}[None] for a "
                         f"single image.")


def check_images(X, *, allow_features=False, min_size=16, name="X"):
    """Turn user images into a float32 array of shape (n, 1, H, W).

    Accepted layouts: flattened square rows (n, H*W), (n, H, W), (n, H, W, 1),
    (n, 1, H, W), colour (n, H, W, 3) or (n, 3, H, W), which is converted to
    gray. Pixels are brought to the 0-1 scale by :func:`pixel_scale` (plain
    feature matrices are kept as they are). With
    ``allow_features=True`` a 2-D matrix whose rows are not square images of at
    least ``min_size`` pixels is returned as plain features (n, p).

    Parameters
    ----------
    X : array-like
    allow_features : bool
        Accept any 2-D feature matrix (for the MLP architecture).
    min_size : int
        Smallest accepted image side in pixels.
    name : str
        Argument name used in error messages.

    Returns
    -------
    CheckedImages

    Examples
    --------
    >>> out = check_images(np.zeros((2, 20, 20, 3), dtype=np.uint8))
    >>> out.data.shape, out.kind, out.n_channels_in
    ((2, 1, 20, 20), 'image', 3)
    """
    arr = _as_numeric_array(X, name)
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: found array with 0 sample(s) (shape={arr.shape}) while a "
                         f"minimum of 1 is required.")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: found array with 0 feature(s) (shape={arr.shape}) while a "
                         f"minimum of 1 is required.")
    n_channels = 1
    if arr.ndim == 1:
        raise ValueError(f"Expected 2D array, got 1D array instead: {name} must be (n_samples, n_features) "
                         f"or a stack of images, got shape {arr.shape}. Reshape your data either using "
                         f"array.reshape(-1, 1) if your data has a single feature or array.reshape(1, -1) if "
                         f"it contains a single sample.")
    if arr.ndim == 2:
        side = int(round(np.sqrt(arr.shape[1])))
        square = side * side == arr.shape[1] and side >= min_size
        if not square:
            if allow_features:
                data = arr.astype(np.float32)
                _check_finite(data, name)
                return CheckedImages(data, "features", 0, None, None)
            raise ValueError(
                f"{name} with shape {arr.shape} is 2-D but its rows are not flattened square images of at "
                f"least {min_size}x{min_size} pixels ({arr.shape[1]} values per row). Pass images as "
                f"(n, H, W), (n, H, W, 1), (n, 1, H, W) or (n, H, W, 3), or use architecture='mlp' for "
                f"plain feature vectors.")
        imgs = arr.reshape(arr.shape[0], side, side)
    elif arr.ndim == 3:
        check_not_single_image(arr, name)
        imgs = arr
    elif arr.ndim == 4:
        if arr.shape[-1] in (1, 3) and arr.shape[1] not in (1, 3):
            n_channels = arr.shape[-1]
            imgs = arr[..., 0] if n_channels == 1 else _to_gray(arr)
        elif arr.shape[1] in (1, 3):
            n_channels = arr.shape[1]
            imgs = arr[:, 0] if n_channels == 1 else _to_gray(np.moveaxis(arr, 1, -1))
        else:
            raise ValueError(f"{name} with shape {arr.shape}: a 4-D image stack must have 1 or 3 channels "
                             f"first (n, C, H, W) or last (n, H, W, C).")
    else:
        raise ValueError(f"{name} must have 2 to 4 dimensions, got shape {arr.shape}.")
    if min(imgs.shape[1:]) < min_size:
        raise ValueError(f"{name} holds images of {imgs.shape[1]}x{imgs.shape[2]} pixels; images must be at "
                         f"least {min_size}x{min_size}.")
    scale = pixel_scale(arr, name)
    data = imgs.astype(np.float32)[:, None]
    _check_finite(data, name)
    if scale != 1.0:
        data /= np.float32(scale)
    return CheckedImages(data, "image", n_channels, tuple(imgs.shape[1:]), scale)


def _check_finite(arr, name):
    if not np.isfinite(arr).all():
        bad = "NaN" if np.isnan(arr).any() else "infinity"
        raise ValueError(f"Input {name} contains {bad}; images and features must be finite.")


def check_keypoint_targets(y, n_samples, *, allow_any_width=False, name="y"):
    """Check keypoint targets and return a float64 copy of shape (n, 2K) (or (n, t)).

    ``y`` may be (n, 2K) as x0, y0, x1, y1, ... or (n, K, 2); NaN marks an
    unlabelled coordinate, infinity is an error. With ``allow_any_width`` a 1-D
    or odd-width target is accepted (plain regression on feature vectors).

    Examples
    --------
    >>> check_keypoint_targets(np.zeros((3, 2, 2)), 3).shape
    (3, 4)
    """
    arr = _as_numeric_array(y, name)
    if arr.ndim == 0:
        raise ValueError(f"{name} must be an array of targets, got a scalar.")
    if arr.shape[0] != n_samples:
        raise ValueError(f"X and {name} have inconsistent numbers of samples: X has {n_samples}, "
                         f"{name} has {arr.shape[0]}.")
    if arr.ndim == 3:
        if arr.shape[2] != 2:
            raise ValueError(f"{name} with shape {arr.shape}: a 3-D target must be (n, K, 2).")
        arr = arr.reshape(arr.shape[0], -1)
    if arr.ndim == 1:
        if not allow_any_width:
            raise ValueError(f"{name} must be (n, 2K) keypoint coordinates x0, y0, x1, y1, ... or (n, K, 2); "
                             f"got a 1-D array of shape {arr.shape}.")
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (n, 2K) or (n, K, 2), got shape {arr.shape}.")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no target columns.")
    if arr.shape[1] % 2 and not allow_any_width:
        raise ValueError(f"{name} has {arr.shape[1]} columns; keypoint targets need an even number "
                         f"(x, y for each point).")
    out = arr.astype(np.float64)  # always a copy
    if np.isinf(out).any():
        raise ValueError(f"{name} contains infinity; use NaN to mark unlabelled coordinates.")
    xs, ys = np.isnan(out[:, 0::2]), np.isnan(out[:, 1::2])
    if out.shape[1] % 2 == 0 and (xs != ys).any():
        raise ValueError(f"{name} has points where only one of x and y is NaN; mark a missing point by "
                         f"setting both to NaN.")
    return out


def check_points(points, name="keypoints", n_samples=None):
    """Keypoints as a new float64 array of shape (n, K, 2), the one check for point arrays.

    ``points`` is (n, 2K) as ``x0, y0, x1, y1, ...`` or (n, K, 2); NaN marks a
    missing point, infinity is an error. ``n_samples`` (if given) is the number
    of rows expected.

    Returns
    -------
    points : ndarray of shape (n, K, 2)
        Always a copy; ``points`` is never written to.

    Examples
    --------
    >>> check_points([[0, 1, 2, 3]]).shape
    (1, 2, 2)
    """
    arr = _as_numeric_array(points, name, what="keypoints of shape (n, 2K) or (n, K, 2)")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); expected keypoints (n, 2K) or (n, K, 2).")
    if arr.ndim == 2 and arr.shape[1] % 2 == 0:
        out = arr.reshape(arr.shape[0], -1, 2).astype(np.float64)
    elif arr.ndim == 3 and arr.shape[2] == 2:
        out = arr.astype(np.float64)
    else:
        raise ValueError(f"{name} must have shape (n, 2K) as x0, y0, x1, y1, ... or (n, K, 2); "
                         f"got {arr.shape}.")
    if n_samples is not None and out.shape[0] != n_samples:
        raise ValueError(f"{name} has {out.shape[0]} rows but there are {n_samples} images.")
    if np.isinf(out).any():
        raise ValueError(f"{name} contains infinity; use NaN to mark a missing point.")
    return out


def check_label_maps(X, n_classes, *, name="X", allow_single=False, image_shape=None):
    """Check integer label maps and return them as (n, H, W) plus a flag.

    Labels must be whole numbers in ``[0, n_classes)``; float arrays are
    accepted only when every value is a whole number. ``X`` is (n, H, W), or
    (H, W) for one map when ``allow_single``, or (n, H*W) flattened rows when
    ``image_shape=(H, W)`` is given (one side may be -1). The result is uint8
    when ``n_classes <= 256`` (else int32), a new array unless ``X`` already
    was a C-contiguous array of that dtype; it is never written to.

    Returns
    -------
    maps : ndarray of shape (n, H, W)
    single : bool
        True when ``X`` was one (H, W) map.

    Examples
    --------
    >>> maps, single = check_label_maps(np.zeros((4, 5), dtype=int), 3, allow_single=True)
    >>> maps.shape, maps.dtype, single
    ((1, 4, 5), dtype('uint8'), True)
    """
    arr = _as_numeric_array(X, name)
    single = False
    if image_shape is not None and arr.ndim == 2:
        try:
            arr = arr.reshape((arr.shape[0],) + tuple(image_shape))
        except ValueError:
            raise ValueError(f"{name} has rows of {arr.shape[1]} pixels, which cannot be reshaped to "
                             f"image_shape={tuple(image_shape)}.") from None
    elif allow_single and arr.ndim == 2:
        arr, single = arr[None], True
    if arr.size == 0:
        raise ValueError(f"{name} is empty: 0 feature(s) (shape={np.shape(X)}) while a minimum of 1 is "
                         f"required; label maps need at least one map of at least 1x1 pixels.")
    if arr.ndim != 3:
        expected = "(n, H, W) label maps" + (" or one (H, W) map" if allow_single else "")
        if image_shape is not None:
            expected += f" or (n, H*W) rows of image_shape={tuple(image_shape)}"
        hint = " Reshape your data, e.g. X[None] for a single map." if arr.ndim < 3 else ""
        raise ValueError(f"{name} must be {expected}; got an array of shape {np.shape(X)}.{hint}")
    if arr.dtype == bool:
        arr = arr.view(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinity; label maps must hold integer class labels.")
        frac = arr != np.round(arr)
        if frac.any():
            raise ValueError(f"{name} must hold integer class labels; got non-integer values such as "
                             f"{arr[frac].flat[0]} (dtype {arr.dtype}).")
    lo, hi = arr.min(), arr.max()
    if lo < 0:
        raise ValueError(f"Negative values in data passed to {name}: got label {int(lo)}, but class "
                         f"labels must be in [0, {n_classes}).")
    if hi >= n_classes:
        raise ValueError(f"{name} has label {int(hi)}, but only {n_classes} classes are defined "
                         f"(labels 0..{n_classes - 1}); check the classes argument.")
    dtype = np.uint8 if n_classes <= 256 else np.int32
    return np.ascontiguousarray(arr, dtype=dtype), single


# --------------------------------------------------------------------------- #
# face parsing: images (n, H, W[, 3]) and label maps (n, H, W)
# --------------------------------------------------------------------------- #
def check_parsing_X(X, name="X"):
    """Turn user images into a new uint8 RGB array of shape (n, H, W, 3).

    Accepted: (n, H, W, 3) RGB, (n, H, W) or (n, H, W, 1) gray (repeated to three
    channels); pixel values as :func:`pixel_scale` reads them (uint8, integers on
    the 0-255 scale, floats on the 0-1 or 0-255 scale), rounded to uint8.

    Examples
    --------
    >>> check_parsing_X(np.zeros((2, 8, 6), np.uint8)).shape
    (2, 8, 6, 3)
    """
    arr = _as_numeric_array(X, name, what="images (n, H, W, 3) or (n, H, W) of pixel values",
                            strict=True)
    check_not_single_image(arr, name)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 3 or (arr.ndim == 4 and arr.shape[-1] == 3)):
        hint = " (tabular data is not supported)" if arr.ndim == 2 else ""
        raise ValueError(f"{name} must be images of shape (n, H, W, 3) RGB or (n, H, W) gray; "
                         f"got shape {arr.shape}{hint}")
    if arr.shape[0] == 0 or arr.size == 0:
        raise ValueError(f"{name} is empty: expected at least one image with pixels; got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinity")
        if arr.min() < 0:
            raise ValueError(f"{name} has negative pixel values (minimum {arr.min()}); pixels are on the "
                             f"0-255 scale, or 0-1 for floats")
        arr = np.rint(arr * (255.0 / pixel_scale(arr, name))).astype(np.uint8)
    if arr.ndim == 3:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    return np.array(arr, dtype=np.uint8, copy=True, order="C")


def check_parsing_y(y, shape, n_classes, ignore_index=IGNORE_INDEX, name="y"):
    """Check label maps against the images' ``shape`` (n, H, W); returns a new uint8 array.

    Labels must be integers in ``[0, n_classes)`` or ``ignore_index``.

    Examples
    --------
    >>> check_parsing_y([[[0, 1], [255, 1]]], (1, 2, 2), n_classes=2).dtype
    dtype('uint8')
    """
    if y is None:
        raise ValueError("FaceParser requires y to be passed, but the target y is None; "
                         "expected label maps of shape (n, H, W)")
    if isinstance(y, (str, bytes)) or not (hasattr(y, "__array__") or isinstance(y, (list, tuple))):
        raise TypeError(f"{name} must be an array of label maps (n, H, W); got {type(y).__name__}")
    arr = np.asarray(y)
    shape = tuple(int(s) for s in shape)
    if arr.shape != shape:
        raise ValueError(f"{name} must be label maps of shape (n, H, W) = {shape} matching X; "
                         f"got shape {arr.shape}")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must hold integer class labels; got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise TypeError(f"{name} must hold integer class labels; got non-integer floats")
    bad = (arr != ignore_index) & ((arr < 0) | (arr >= n_classes))
    if bad.any():
        values = np.unique(arr[bad])[:5].tolist()
        raise ValueError(f"{name} has labels outside the {n_classes} classes [0, {n_classes}) "
                         f"(and {ignore_index} = ignore): {values}")
    return arr.astype(np.uint8)


def check_parsing_X_y(X, y, n_classes, ignore_index=IGNORE_INDEX):
    """:func:`check_parsing_X` and :func:`check_parsing_y` together -> (X, y) new arrays."""
    if y is None:  # before looking at X, so the message is about the missing target
        check_parsing_y(None, (), n_classes, ignore_index)
    X = check_parsing_X(X)
    return X, check_parsing_y(y, X.shape[:3], n_classes, ignore_index)


def check_groups(groups, n_samples):
    """``groups`` as a 1-D array of ``n_samples`` labels, or None.

    Examples
    --------
    >>> check_groups(["a", "a", "b"], 3).tolist()
    ['a', 'a', 'b']
    >>> check_groups(None, 3) is None
    True
    """
    if groups is None:
        return None
    arr = np.asarray(groups)
    if arr.ndim != 1 or arr.shape[0] != n_samples:
        raise ValueError(f"groups must be a 1-D array with one label per sample ({n_samples}); "
                         f"got shape {arr.shape}")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError("groups must not contain NaN")
    return arr
