"""Keypoint metrics and scorers; imported from :mod:`skkp.metrics`.

Functions take ``(y_true, y_pred)`` of shape ``(n, 2K)`` (``x0, y0, x1, y1,
...``) or ``(n, K, 2)``, in pixels. A point whose true ``x`` or ``y`` is NaN
is not labelled and is left out; a NaN prediction at a labelled point is an
error.
"""
import numbers

import numpy as np
from sklearn.metrics import make_scorer

__all__ = [
    "mean_absolute_error_px", "root_mean_squared_error_px", "mean_point_error",
    "per_image_nme", "normalized_mean_error", "failure_rate", "pck",
    "cumulative_error_curve", "ced_auc", "per_keypoint_error",
    "mae_px_scorer", "rmse_px_scorer", "mean_point_error_scorer", "nme_scorer",
    "SCORERS", "OUTER_EYES_68",
]

#: iBUG 68-point indices of the outer eye corners (300-W normaliser).
OUTER_EYES_68 = (36, 45)


# --------------------------------------------------------------------------- #
# keypoint input checks
# --------------------------------------------------------------------------- #
def _as_points(y, name):
    """Return ``y`` as a float view/copy of shape (n, K, 2); never writes to it."""
    try:
        arr = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric array of keypoints; got {type(y).__name__}") from exc
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if arr.ndim == 2:
        if arr.shape[1] % 2:
            raise ValueError(f"{name} has {arr.shape[1]} columns; expected an even number "
                             "(x0, y0, x1, y1, ...)")
        arr = arr.reshape(arr.shape[0], -1, 2)
    elif arr.ndim == 3:
        if arr.shape[2] != 2:
            raise ValueError(f"{name} of shape {arr.shape} must be (n, K, 2)")
    else:
        raise ValueError(f"{name} must be 2-D (n, 2K) or 3-D (n, K, 2); got shape {arr.shape}")
    if np.isinf(arr).any():
        raise ValueError(f"{name} contains infinite values")
    return arr


def _check_pair(y_true, y_pred):
    """Checked (n, K, 2) arrays and the (n, K) mask of labelled points."""
    t = _as_points(y_true, "y_true")
    p = _as_points(y_pred, "y_pred")
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


# --------------------------------------------------------------------------- #
# normalised errors
# --------------------------------------------------------------------------- #
def _normalizer_values(t, normalizer):
    """Per-image normalising distance (n,) computed from all points of y_true."""
    n, K, _ = t.shape
    if isinstance(normalizer, str):
        if normalizer == "outer_eyes":
            if K != 68:
                raise ValueError(f"normalizer='outer_eyes' needs the 68-point iBUG layout; y_true has "
                                 f"K={K} points. Use 'bbox', a tuple (i, j) of point indices or an "
                                 f"array of per-image distances")
            normalizer = OUTER_EYES_68
        elif normalizer == "bbox":
            x = np.where(np.isnan(t).any(axis=2, keepdims=True), np.nan, t)
            extent = np.fmax.reduce(x, axis=1) - np.fmin.reduce(x, axis=1)  # NaN-ignoring
            d = np.sqrt(extent[:, 0] * extent[:, 1])
            normalizer = None
        else:
            raise ValueError(f"normalizer must be 'outer_eyes', 'bbox', a tuple (i, j) or an array "
                             f"of shape (n,); got {normalizer!r}")
    if isinstance(normalizer, tuple):
        if len(normalizer) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                           for v in normalizer):
            raise ValueError(f"a tuple normalizer must be two point indices (i, j); got {normalizer!r}")
        i, j = (int(v) for v in normalizer)
        if not (0 <= i < K and 0 <= j < K) or i == j:
            raise ValueError(f"normalizer indices {normalizer!r} must be two different points in "
                             f"[0, {K})")
        d = np.sqrt(((t[:, i] - t[:, j]) ** 2).sum(axis=1))
    elif normalizer is not None:
        try:
            d = np.asarray(normalizer, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"normalizer array must be numeric; got {type(normalizer).__name__}") from exc
        if d.shape != (n,):
            raise ValueError(f"normalizer array must have shape ({n},) (one distance per image); "
                             f"got {d.shape}")
    with np.errstate(invalid="ignore"):
        bad = ~np.isnan(d) & ~((d > 0) & np.isfinite(d))
    if bad.any():
        raise ValueError(f"normalizer must be positive and finite; it is {float(d[bad][0])} for image(s) "
                         f"{np.flatnonzero(bad)[:5].tolist()}")
    return d


def _points_index(points, K):
    if points is None:
        return np.arange(K)
    idx = np.asarray(points)
    if idx.dtype == bool:
        if idx.shape != (K,):
            raise ValueError(f"a boolean points mask must have shape ({K},); got {idx.shape}")
        idx = np.flatnonzero(idx)
    elif idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"points must be a 1-D sequence of point indices; got {points!r}")
    if idx.size == 0:
        raise ValueError("points selects no keypoint")
    if idx.min() < 0 or idx.max() >= K:
        raise ValueError(f"points indices must lie in [0, {K}); got {points!r}")
    return idx


def _normalized_distances(y_true, y_pred, normalizer, points):
    """(n, P) point errors divided by each image's normaliser; NaN = not scored."""
    t, p, lab = _check_pair(y_true, y_pred)
    norm = _normalizer_values(t, normalizer)
    idx = _points_index(points, t.shape[1])
    return _distances(t, p, lab)[:, idx] / norm[:, None]


def per_image_nme(y_true, y_pred, normalizer="outer_eyes", points=None):
    """Per-image normalised mean error: mean point error / normalising distance.

    The shared core of :func:`normalized_mean_error`, :func:`failure_rate`,
    :func:`cumulative_error_curve` and :func:`ced_auc`.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n, 2K) or (n, K, 2)
    normalizer : {'outer_eyes', 'bbox'}, tuple (i, j) or array-like of shape (n,)
        ``'outer_eyes'``: distance between points 36 and 45 of ``y_true``
        (68-point iBUG layout only); ``'bbox'``: ``sqrt(w * h)`` of the extent
        of the labelled true points; ``(i, j)``: distance between those two
        true points; an array: one distance per image. The normaliser always
        uses all of ``y_true``'s points, whatever ``points`` selects.
    points : sequence of int or boolean mask of shape (K,), optional
        The points to score (default all), e.g. the nose points of a 68-point face.

    Returns
    -------
    ndarray of shape (n,)
        NaN for an image with no labelled scored point or no normaliser
        (e.g. an unlabelled eye corner).

    Examples
    --------
    >>> y_true = [[0.0, 0.0, 10.0, 0.0], [0.0, 0.0, 20.0, 0.0]]
    >>> y_pred = [[1.0, 0.0, 10.0, 0.0], [0.0, 0.0, 20.0, 4.0]]
    >>> per_image_nme(y_true, y_pred, normalizer=(0, 1))
    array([0.05, 0.1 ])
    """
    return _row_nanmean(_normalized_distances(y_true, y_pred, normalizer, points), axis=1)


def _scored_nme(y_true, y_pred, normalizer, points):
    """Per-image NME of the images that can be scored, and the mask of those."""
    e = per_image_nme(y_true, y_pred, normalizer, points)
    ok = ~np.isnan(e)
    if not ok.any():
        raise ValueError("nothing to score: no image has both a labelled scored point and a "
                         "normaliser")
    return e, ok


def normalized_mean_error(y_true, y_pred, normalizer="outer_eyes", points=None, *,
                          sample_weight=None):
    """Normalised mean error (NME): mean over images of :func:`per_image_nme`.

    Images without a labelled scored point or a normaliser are left out.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n, 2K) or (n, K, 2)
    normalizer : {'outer_eyes', 'bbox'}, tuple (i, j) or array-like of shape (n,)
        See :func:`per_image_nme`.
    points : sequence of int, optional
        Indices of the points to score (default all).
    sample_weight : array-like of shape (n,), optional

    Returns
    -------
    float

    Examples
    --------
    >>> y_true = [[0.0, 0.0, 10.0, 0.0], [0.0, 0.0, 20.0, 0.0]]
    >>> y_pred = [[1.0, 0.0, 10.0, 0.0], [0.0, 0.0, 20.0, 4.0]]
    >>> round(normalized_mean_error(y_true, y_pred, normalizer=(0, 1)), 6)
    0.075
    >>> normalized_mean_error(y_true, y_pred, normalizer=(0, 1), points=[1])
    0.1
    """
    e, ok = _scored_nme(y_true, y_pred, normalizer, points)
    w = _check_weights(sample_weight, e.shape[0])
    return _weighted_ratio(np.where(ok, e, 0.0), ok.astype(float), w, "scorable image")


def failure_rate(y_true, y_pred, threshold=0.10, normalizer="outer_eyes", points=None, *,
                 sample_weight=None):
    """Fraction of scored images whose NME exceeds ``threshold``.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n, 2K) or (n, K, 2)
    threshold : float, default=0.10
        300-W reports 0.08 and 0.10.
    normalizer, points
        See :func:`per_image_nme`.
    sample_weight : array-like of shape (n,), optional

    Returns
    -------
    float in [0, 1]

    Examples
    --------
    >>> y_true = [[0.0, 0.0, 10.0, 0.0], [0.0, 0.0, 20.0, 0.0]]
    >>> y_pred = [[1.0, 0.0, 10.0, 0.0], [0.0, 0.0, 20.0, 4.0]]
    >>> failure_rate(y_true, y_pred, threshold=0.08, normalizer=(0, 1))
    0.5
    """
    threshold = _check_threshold(threshold, "threshold")
    e, ok = _scored_nme(y_true, y_pred, normalizer, points)
    w = _check_weights(sample_weight, e.shape[0])
    return _weighted_ratio((ok & (e > threshold)).astype(float), ok.astype(float), w,
                           "scorable image")


def pck(y_true, y_pred, threshold=0.05, normalizer="outer_eyes", points=None):
    """Percentage of correct keypoints: fraction of labelled scored points whose
    error divided by the image's normaliser is at most ``threshold``.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n, 2K) or (n, K, 2)
    threshold : float, default=0.05
    normalizer, points
        See :func:`per_image_nme`.

    Returns
    -------
    float in [0, 1]

    Examples
    --------
    >>> y_true = [[0.0, 0.0, 10.0, 0.0], [0.0, 0.0, 20.0, 0.0]]
    >>> y_pred = [[1.0, 0.0, 10.0, 0.0], [0.0, 0.0, 20.0, 4.0]]
    >>> pck(y_true, y_pred, threshold=0.1, normalizer=(0, 1))
    0.75
    """
    threshold = _check_threshold(threshold, "threshold")
    dn = _normalized_distances(y_true, y_pred, normalizer, points)
    ok = ~np.isnan(dn)
    if not ok.any():
        raise ValueError("nothing to score: no labelled scored point has a normaliser")
    return float(np.mean(dn[ok] <= threshold))


def cumulative_error_curve(y_true, y_pred, max_threshold=0.10, normalizer="outer_eyes",
                           points=None, n_thresholds=101):
    """Cumulative error distribution (CED) of the per-image NME.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n, 2K) or (n, K, 2)
    max_threshold : float, default=0.10
    normalizer, points
        See :func:`per_image_nme`.
    n_thresholds : int, default=101
        Number of evenly spaced thresholds from 0 to ``max_threshold``.

    Returns
    -------
    thresholds : ndarray of shape (n_thresholds,)
    fractions : ndarray of shape (n_thresholds,)
        Fraction of scored images with NME <= each threshold.

    Examples
    --------
    >>> y_true = [[0.0, 0.0, 10.0, 0.0], [0.0, 0.0, 20.0, 0.0]]
    >>> y_pred = [[1.0, 0.0, 10.0, 0.0], [0.0, 0.0, 20.0, 4.0]]
    >>> t, f = cumulative_error_curve(y_true, y_pred, normalizer=(0, 1), n_thresholds=5)
    >>> t
    array([0.   , 0.025, 0.05 , 0.075, 0.1  ])
    >>> f
    array([0. , 0. , 0.5, 0.5, 1. ])
    """
    max_threshold = _check_threshold(max_threshold, "max_threshold")
    if isinstance(n_thresholds, bool) or not isinstance(n_thresholds, numbers.Integral) \
            or n_thresholds < 2:
        raise ValueError(f"n_thresholds must be an integer >= 2; got {n_thresholds!r}")
    e, ok = _scored_nme(y_true, y_pred, normalizer, points)
    e = np.sort(e[ok])
    thresholds = np.linspace(0.0, max_threshold, int(n_thresholds))
    return thresholds, np.searchsorted(e, thresholds, side="right") / e.size


def ced_auc(y_true, y_pred, max_threshold=0.10, normalizer="outer_eyes", points=None):
    """Area under the cumulative error curve from 0 to ``max_threshold``,
    divided by ``max_threshold`` so a perfect model scores 1.

    Computed exactly (no grid): ``mean_i max(0, 1 - nme_i / max_threshold)``
    over scored images, the limit of the trapezoid rule on an ever finer grid.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n, 2K) or (n, K, 2)
    max_threshold : float, default=0.10
    normalizer, points
        See :func:`per_image_nme`.

    Returns
    -------
    float in [0, 1]

    Examples
    --------
    >>> y_true = [[0.0, 0.0, 10.0, 0.0], [0.0, 0.0, 20.0, 0.0]]
    >>> y_pred = [[1.0, 0.0, 10.0, 0.0], [0.0, 0.0, 20.0, 4.0]]
    >>> round(ced_auc(y_true, y_pred, normalizer=(0, 1)), 6)  # (0.5 + 0) / 2
    0.25
    """
    max_threshold = _check_threshold(max_threshold, "max_threshold")
    e, ok = _scored_nme(y_true, y_pred, normalizer, points)
    return float(np.mean(np.maximum(0.0, 1.0 - e[ok] / max_threshold)))


# --------------------------------------------------------------------------- #
# keypoint scorers
# --------------------------------------------------------------------------- #
#: ``-mean_absolute_error_px`` (greater is better).
mae_px_scorer = make_scorer(mean_absolute_error_px, greater_is_better=False)
#: ``-root_mean_squared_error_px``.
rmse_px_scorer = make_scorer(root_mean_squared_error_px, greater_is_better=False)
#: ``-mean_point_error``.
mean_point_error_scorer = make_scorer(mean_point_error, greater_is_better=False)


def nme_scorer(normalizer="outer_eyes", points=None):
    """A scorer returning ``-normalized_mean_error`` for model selection.

    Parameters
    ----------
    normalizer : {'outer_eyes', 'bbox'} or tuple (i, j)
        Per-image arrays are refused: they cannot follow cross-validation splits.
    points : sequence of int, optional

    Returns
    -------
    scorer : callable ``scorer(estimator, X, y)``

    Examples
    --------
    >>> from sklearn.dummy import DummyRegressor
    >>> X, y = np.zeros((2, 1)), np.array([[0.0, 0.0, 10.0, 0.0], [0.0, 0.0, 10.0, 0.0]])
    >>> model = DummyRegressor(strategy="constant", constant=[0.0, 0.0, 10.0, 1.0]).fit(X, y)
    >>> nme_scorer(normalizer=(0, 1))(model, X, y)  # point error 1 px, 0.5 per image, / 10 px
    -0.05
    """
    if isinstance(normalizer, str):
        if normalizer not in ("outer_eyes", "bbox"):
            raise ValueError(f"normalizer must be 'outer_eyes', 'bbox' or a tuple (i, j); "
                             f"got {normalizer!r}")
    elif not isinstance(normalizer, tuple):
        raise ValueError("nme_scorer needs normalizer 'outer_eyes', 'bbox' or a tuple (i, j); a "
                         "per-image array cannot follow cross-validation splits")
    return make_scorer(normalized_mean_error, greater_is_better=False, normalizer=normalizer,
                       points=None if points is None else tuple(np.asarray(points).tolist()))


#: Ready-made keypoint scorers by name, for ``scoring=SCORERS[name]`` or
#: ``cross_validate(..., scoring=SCORERS)``-style dicts.
SCORERS = {
    "neg_mae_px": mae_px_scorer,
    "neg_rmse_px": rmse_px_scorer,
    "neg_mean_point_error": mean_point_error_scorer,
    "neg_nme_bbox": nme_scorer("bbox"),
    "neg_nme_outer_eyes": nme_scorer("outer_eyes"),
}
