"""Label checks: class-label values, (n, H, W) label maps and the parser's targets."""
import numpy as np

from ..schemas import IGNORE_INDEX
from ._arrays import _as_numeric_array
from ._images import check_parsing_X

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
    arr = check_labels(arr, None, name)  # whole numbers; the range is checked below with its own wording
    lo, hi = arr.min(), arr.max()
    if lo < 0:
        raise ValueError(f"Negative values in data passed to {name}: got label {int(lo)}, but class "
                         f"labels must be in [0, {n_classes}).")
    if hi >= n_classes:
        raise ValueError(f"{name} has label {int(hi)}, but only {n_classes} classes are defined "
                         f"(labels 0..{n_classes - 1}); check the classes argument.")
    dtype = np.uint8 if n_classes <= 256 else np.int32
    return np.ascontiguousarray(arr, dtype=dtype), single


def check_labels(labels, n_classes=None, name="labels", ignore_index=IGNORE_INDEX):
    """Class labels of any shape, the value check of label arrays that may hold ignored pixels.

    Labels are whole numbers: integer and bool arrays are returned as they are (never
    written to), whole-number float arrays as a new int64 array. With ``n_classes``
    every label must lie in ``[0, n_classes)`` or equal ``ignore_index`` (None: no
    label is ignored). :func:`check_label_maps` also checks the (n, H, W) layout.

    Raises
    ------
    TypeError
        When ``labels`` does not hold numbers.
    ValueError
        For NaN, infinity or fractional values, and labels out of range.

    Examples
    --------
    >>> check_labels(np.array([0, 1, 255], np.uint8), n_classes=2)
    array([  0,   1, 255], dtype=uint8)
    >>> check_labels([0.0, 2.0]).tolist()
    [0, 2]
    """
    arr = _as_numeric_array(labels, name, what="an array of integer class labels")
    if arr.dtype == bool:
        arr = arr.view(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinity; class labels must be whole numbers.")
        frac = arr != np.round(arr)
        if frac.any():
            raise ValueError(f"{name} must hold integer class labels; got non-integer values such as "
                             f"{arr[frac].flat[0]} (dtype {arr.dtype}).")
    if n_classes is not None:
        bad = (arr < 0) | (arr >= n_classes)
        if ignore_index is not None:
            bad &= arr != ignore_index
        if bad.any():
            ignored = f" (and {ignore_index} = ignore)" if ignore_index is not None else ""
            raise ValueError(f"{name} has labels outside the {n_classes} classes [0, {n_classes}){ignored}: "
                             f"{np.unique(arr[bad])[:5].tolist()}")
    return arr.astype(np.int64) if arr.dtype.kind == "f" else arr


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
    arr = check_labels(arr, n_classes, name, ignore_index)
    return arr.astype(np.uint8)


def check_parsing_X_y(X, y, n_classes, ignore_index=IGNORE_INDEX):
    """:func:`check_parsing_X` and :func:`check_parsing_y` together -> (X, y) new arrays."""
    if y is None:  # before looking at X, so the message is about the missing target
        check_parsing_y(None, (), n_classes, ignore_index)
    X = check_parsing_X(X)
    return X, check_parsing_y(y, X.shape[:3], n_classes, ignore_index)
