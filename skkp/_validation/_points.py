"""Keypoint checks: targets for fit, point arrays for metrics, plotting and cropping."""
import numpy as np

from ._arrays import _as_numeric_array

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


def check_point_set(points, name="points", n_points=None):
    """One image's keypoints as a new float64 array of shape (K, 2).

    ``points`` is (2K,) as ``x0, y0, x1, y1, ...`` or (K, 2); K may be 0. NaN marks
    a missing point, infinity is an error. ``n_points`` (if given) is the number of
    points expected. :func:`check_points` is the same check for a stack of images.

    Examples
    --------
    >>> check_point_set([1, 2, 3, 4]).tolist()
    [[1.0, 2.0], [3.0, 4.0]]
    """
    arr = _as_numeric_array(points, name, what="points of shape (2K,) or (K, 2)")
    if not ((arr.ndim == 1 and arr.size % 2 == 0) or (arr.ndim == 2 and arr.shape[1] == 2)):
        raise ValueError(f"{name} must have shape (2K,) as x0, y0, x1, y1, ... or (K, 2); got {arr.shape}.")
    out = arr.reshape(-1, 2).astype(np.float64)
    if n_points is not None and len(out) != n_points:
        raise ValueError(f"{name} must hold {n_points} points, shape ({2 * n_points},) or ({n_points}, 2); "
                         f"got {arr.shape}.")
    if np.isinf(out).any():
        raise ValueError(f"{name} contains infinity; use NaN to mark a missing point.")
    return out
