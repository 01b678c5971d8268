"""Normalised keypoint errors (NME), failure rate, PCK and the cumulative error curve.

Imported from :mod:`skkp.metrics`. The normalising distance of each image comes
from ``normalizer``: a named layout of :mod:`skkp.schemas` (its ``normalizer``
pair; ``'outer_eyes'`` is :data:`~skkp.schemas.IBUG68_SCHEMA`'s), the box of the
true points, a pair of point indices or given distances.
"""
import numbers

import numpy as np

from ..schemas import IBUG68_SCHEMA, KEYPOINT_SCHEMAS, KeypointSchema
from ._point_errors import _check_pair, _check_threshold, _check_weights, _distances, _row_nanmean, \
    _weighted_ratio

__all__ = ["OUTER_EYES_68", "per_image_nme", "normalized_mean_error", "failure_rate", "pck",
           "cumulative_error_curve", "ced_auc"]

#: iBUG 68-point indices of the outer eye corners (300-W normaliser), read from
#: :data:`skkp.schemas.IBUG68_SCHEMA`.
OUTER_EYES_68 = IBUG68_SCHEMA.normalizer


# --------------------------------------------------------------------------- #
# normalised errors
# --------------------------------------------------------------------------- #
def _schema_pair(normalizer, K=None):
    """The (i, j) pair of a schema, schema name or ``'outer_eyes'``; other values unchanged.

    ``K`` (the number of points of ``y_true``, if known) must match the schema's.
    """
    if isinstance(normalizer, str) and normalizer != "bbox":
        if normalizer == "outer_eyes":
            schema = IBUG68_SCHEMA
        elif normalizer in KEYPOINT_SCHEMAS:
            schema = KEYPOINT_SCHEMAS[normalizer]
        else:
            raise ValueError(f"normalizer must be 'outer_eyes', 'bbox', a schema name of "
                             f"skkp.schemas.KEYPOINT_SCHEMAS {sorted(KEYPOINT_SCHEMAS)}, a "
                             f"KeypointSchema, a tuple (i, j) or an array of shape (n,); "
                             f"got {normalizer!r}")
    elif isinstance(normalizer, KeypointSchema):
        schema = normalizer
    else:
        return normalizer
    if schema.normalizer is None:
        raise ValueError(f"normalizer: schema {schema.name!r} has no normalising pair "
                         f"(its .normalizer is None); pass 'bbox', a tuple (i, j) or an array")
    if K is not None and K != schema.n_keypoints:
        shown = normalizer if isinstance(normalizer, str) else schema.name
        raise ValueError(f"normalizer={shown!r} needs the {schema.n_keypoints}-point {schema.name!r} "
                         f"layout; y_true has K={K} points. Use 'bbox', a tuple (i, j) of point "
                         f"indices or an array of per-image distances")
    return schema.normalizer


def _normalizer_values(t, normalizer):
    """Per-image normalising distance (n,) computed from all points of y_true."""
    n, K, _ = t.shape
    normalizer = _schema_pair(normalizer, K)
    if isinstance(normalizer, str):  # 'bbox': the only string _schema_pair passes on
        x = np.where(np.isnan(t).any(axis=2, keepdims=True), np.nan, t)
        extent = np.fmax.reduce(x, axis=1) - np.fmin.reduce(x, axis=1)  # NaN-ignoring
        d = np.sqrt(extent[:, 0] * extent[:, 1])
    elif isinstance(normalizer, tuple):
        if len(normalizer) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                           for v in normalizer):
            raise ValueError(f"a tuple normalizer must be two point indices (i, j); got {normalizer!r}")
        i, j = (int(v) for v in normalizer)
        if not (0 <= i < K and 0 <= j < K) or i == j:
            raise ValueError(f"normalizer indices {normalizer!r} must be two different points in "
                             f"[0, {K})")
        d = np.sqrt(((t[:, i] - t[:, j]) ** 2).sum(axis=1))
    else:
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
    normalizer : {'outer_eyes', 'bbox'}, schema name, KeypointSchema, tuple (i, j) or \
array-like of shape (n,)
        ``'outer_eyes'``: distance between points 36 and 45 of ``y_true``, the
        ``normalizer`` pair of :data:`~skkp.schemas.IBUG68_SCHEMA` (68 points
        only); ``'bbox'``: ``sqrt(w * h)`` of the extent of the labelled true
        points; a :class:`~skkp.schemas.KeypointSchema` or a key of
        :data:`~skkp.schemas.KEYPOINT_SCHEMAS` (e.g. ``'kaggle15'``): the
        distance between the schema's ``normalizer`` pair (``y_true`` must have
        the schema's number of points; a schema without a pair is an error);
        ``(i, j)``: distance between those two true points; an array: one
        distance per image. The normaliser always uses all of ``y_true``'s
        points, whatever ``points`` selects.
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
    normalizer : {'outer_eyes', 'bbox'}, schema name, KeypointSchema, tuple (i, j) or array
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
