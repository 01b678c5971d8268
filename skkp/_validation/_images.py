"""Image checks: the one pixel-scale rule, keypoint-network images and parser images."""
from collections import namedtuple

import numpy as np

from ._arrays import _as_numeric_array, _check_finite

#: What :func:`check_images` returns: the pixel array for the network (0-1 scale
#: for images, see :func:`pixel_scale`), whether X held images or a plain feature
#: matrix, the channel count the user passed (1 gray, 3 colour; 0 for features),
#: the (height, width) of the input and the scale its values were read on.
CheckedImages = namedtuple("CheckedImages", "data kind n_channels_in image_shape pixel_scale")


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
                f"(n, H, W), (n, H, W, 1), (n, 1, H, W) or (n, H, W, 3) ({name}[None] for one (H, W) "
                f"image), or use architecture='mlp' for plain feature vectors.")
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
        data *= np.float32(1.0 / scale)  # as a product, bit-identical to earlier releases
    return CheckedImages(data, "image", n_channels, tuple(imgs.shape[1:]), scale)


def check_fitted_input(model, checked):
    """Predict-time rule: ``checked`` (from :func:`check_images`) must be the kind of input
    ``model`` was fitted on: its ``input_kind_``, ``n_features_in_`` and ``n_channels_in_``.

    Examples
    --------
    >>> class Fitted:
    ...     input_kind_, n_features_in_, n_channels_in_ = "image", 256, 1
    >>> check_fitted_input(Fitted(), check_images(np.zeros((2, 16, 16, 3), np.uint8)))
    Traceback (most recent call last):
    ...
    ValueError: X has 3 channel(s) per image but the model was fitted on images with 1 channel(s).
    """
    if checked.kind != model.input_kind_:
        raise ValueError(f"X holds {checked.kind}s but the model was fitted on {model.input_kind_}s.")
    if checked.kind == "features" and checked.data.shape[1] != model.n_features_in_:
        raise ValueError(f"X has {checked.data.shape[1]} features, but {type(model).__name__} is "
                         f"expecting {model.n_features_in_} features as input.")
    if checked.kind == "image" and checked.n_channels_in != model.n_channels_in_:
        raise ValueError(f"X has {checked.n_channels_in} channel(s) per image but the model was "
                         f"fitted on images with {model.n_channels_in_} channel(s).")


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
