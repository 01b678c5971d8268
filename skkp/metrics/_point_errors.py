"""Keypoint input checks and errors in pixels; imported from :mod:`skkp.metrics`.

Functions take ``(y_true, y_pred)`` of shape ``(n, 2K)`` (``x0, y0, x1, y1,
...``) or ``(n, K, 2)``, in pixels, checked by :func:`skkp._validation.check_points`.
A point whose true ``x`` or ``y`` is NaN is not labelled and is left out; a NaN
prediction at a labelled point is an error.
"""
import numbers

import numpy as np

from .._validation import check_points

__all__ = ["mean_absolute_error_px", "root_mean_squared_error_px", "mean_point_error",
           "per_keypoint_error"]


# --------------------------------------------------------------------------- #
# keypoint input checks (shared with the normalised errors)
# --------------------------------------------------------------------------- #
def _check_pair(y_true, y_pred):
    """Checked (n, K, 2) copies and the (n, K) mask of labelled points."""
    t = check_points(y_true, "y_true")
    p = check_points(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred hold different keypoint shapes: "
                         f"{np.shape(y_true)} vs {np.shape(y_pred)}")
    labelled = ~np.isnan(t).any(axis=2)
    bad = labelled & np.isnan(p).any(axis=2)
    if bad.any():
        i, k = np.argwhere(bad)[0]
        raise ValueError(f"y_pred is NaN at {int(bad.sum())} labelled point(s) (first: image {i}, "
                         f"point {k}); predictions must be finite wherever y_true is labelled")
    return t, p, labelled


def _check_weights(sample_weight, n):
    if sample_weight is None:
        return np.ones(n)
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},); got {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("sample_weight must be finite and non-negative")
    return w


def _check_threshold(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")
    return float(value)


def _weighted_ratio(sums, counts, w, what):
    """sum_i w_i sums_i / sum_i w_i counts_i, or a ValueError if nothing counts."""
    den = np.dot(w, counts)
    if den == 0:
        raise ValueError(f"nothing to score: y_true has no {what} (all NaN, or zero sample_weight)")
    return float(np.dot(w, sums) / den)


def _distances(t, p, labelled):
    """(n, K) Euclidean point errors, NaN where the point is not labelled."""
    d = np.sqrt(((t - p) ** 2).sum(axis=2))
    d[~labelled] = np.nan
    return d


def _row_nanmean(a, axis):
    """nanmean without the all-NaN RuntimeWarning (all-NaN slices give NaN)."""
    ok = ~np.isnan(a)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, a, 0.0).sum(axis=axis) / ok.sum(axis=axis)


# --------------------------------------------------------------------------- #
# pixel errors
# --------------------------------------------------------------------------- #
def mean_absolute_error_px(y_true, y_pred, *, sample_weight=None):
    """Mean absolute error in pixels over all labelled coordinates.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n, 2K) or (n, K, 2)
        True and predicted points, ``x0, y0, x1, y1, ...``; NaN in ``y_true``
        marks an unlabelled point.
    sample_weight : array-like of shape (n,), optional
        Per-image weights.

    Returns
    -------
    float

    Examples
    --------
    >>> y_true = np.array([[0.0, 0.0, 10.0, np.nan]])
    >>> y_pred = np.array([[1.0, 3.0, 50.0, 50.0]])
    >>> mean_absolute_error_px(y_true, y_pred)  # the second point is unlabelled
    2.0
    """
    t, p, lab = _check_pair(y_true, y_pred)
    w = _check_weights(sample_weight, t.shape[0])
    err = np.where(lab[..., None], np.abs(t - p), 0.0)
    return _weighted_ratio(err.sum(axis=(1, 2)), 2 * lab.sum(axis=1), w, "labelled coordinate")


def root_mean_squared_error_px(y_true, y_pred, *, sample_weight=None):
    """Root of the mean squared error in pixels over all labelled coordinates.

    This is the Kaggle facial-keypoints metric: one square root over every
    coordinate (not the mean of per-column RMSEs).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n, 2K) or (n, K, 2)
    sample_weight : array-like of shape (n,), optional

    Returns
    -------
    float

    Examples
    --------
    >>> root_mean_squared_error_px([[0.0, 0.0, 0.0, 0.0]], [[3.0, 0.0, 4.0, 1.0]])
    2.5495097567963922
    """
    t, p, lab = _check_pair(y_true, y_pred)
    w = _check_weights(sample_weight, t.shape[0])
    err = np.where(lab[..., None], (t - p) ** 2, 0.0)
    return float(np.sqrt(_weighted_ratio(err.sum(axis=(1, 2)), 2 * lab.sum(axis=1), w,
                                         "labelled coordinate")))


def mean_point_error(y_true, y_pred, *, sample_weight=None):
    """Mean Euclidean (point-to-point) distance in pixels over labelled points.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n, 2K) or (n, K, 2)
    sample_weight : array-like of shape (n,), optional

    Returns
    -------
    float

    Examples
    --------
    >>> mean_point_error([[0.0, 0.0, 0.0, 0.0]], [[3.0, 4.0, 0.0, 1.0]])
    3.0
    """
    t, p, lab = _check_pair(y_true, y_pred)
    w = _check_weights(sample_weight, t.shape[0])
    d = np.where(lab, _distances(t, p, lab), 0.0)
    return _weighted_ratio(d.sum(axis=1), lab.sum(axis=1), w, "labelled point")


def per_keypoint_error(y_true, y_pred, names=None):
    """Mean Euclidean error of each keypoint over the images where it is labelled.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n, 2K) or (n, K, 2)
    names : sequence of K str, optional
        Point names; when given a dict ``name -> error`` is returned.

    Returns
    -------
    ndarray of shape (K,) or dict
        NaN for a point never labelled.

    Examples
    --------
    >>> y_true = [[0.0, 0.0, 5.0, 5.0], [0.0, 0.0, np.nan, np.nan]]
    >>> y_pred = [[0.0, 2.0, 5.0, 6.0], [0.0, 4.0, 9.0, 9.0]]
    >>> per_keypoint_error(y_true, y_pred)
    array([3., 1.])
    >>> per_keypoint_error(y_true, y_pred, names=["tip", "left"])
    {'tip': 3.0, 'left': 1.0}
    """
    t, p, lab = _check_pair(y_true, y_pred)
    err = _row_nanmean(_distances(t, p, lab), axis=0)
    if names is None:
        return err
    names = list(names)
    if len(names) != err.shape[0]:
        raise ValueError(f"names has {len(names)} entries; y_true has {err.shape[0]} points")
    return {str(k): float(v) for k, v in zip(names, err)}
