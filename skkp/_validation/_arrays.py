"""Generic array checks: the numeric front door, finiteness and group labels."""
import numpy as np


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
    try:
        arr = np.asarray(X)
    except ValueError:
        shapes = sorted({np.shape(x) for x in X}, key=str) if isinstance(X, (list, tuple)) else []
        if len(shapes) > 1:
            raise ValueError(f"{name} is a list of {len(X)} arrays of different shapes (e.g. {shapes[0]} and "
                             f"{shapes[1]}); give arrays of one shape: crop or resize images to one size first "
                             f"(skkp.datasets.crop_faces does both).") from None
        raise ValueError(f"{name} could not be read as one array: expected {what}.") from None
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


def _check_finite(arr, name):
    if not np.isfinite(arr).all():
        bad = "NaN" if np.isnan(arr).any() else "infinity"
        raise ValueError(f"Input {name} contains {bad}; images and features must be finite.")


def check_flag(value, name):
    """``value`` when it is True or False (numpy's too); a ``ValueError`` naming ``name`` otherwise.

    Examples
    --------
    >>> check_flag(True, "flip_average")
    True
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


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
