"""Face-parsing metrics and scorers; imported from :mod:`skkp.metrics`.

Functions take label maps ``(n, H, W)`` or ``(H, W)`` of whole numbers (integer,
bool or integral float arrays, checked by :func:`skkp._validation.check_labels`);
pixels whose true label is ``ignore_index`` (default :data:`skkp.schemas.IGNORE_INDEX`,
255) are left out.
"""
import numbers

import numpy as np
from sklearn.metrics import make_scorer

from .._validation import check_labels
from ..schemas import IGNORE_INDEX

__all__ = [
    "parsing_confusion_matrix", "per_class_iou", "per_class_f1", "mean_iou",
    "mean_f1", "pixel_accuracy", "parsing_report", "miou_scorer", "mean_f1_scorer",
]


# --------------------------------------------------------------------------- #
# face parsing
# --------------------------------------------------------------------------- #
def _check_n_classes(n_classes, ignore_index):
    if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer; got {n_classes!r}")
    if ignore_index is not None:
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
            raise ValueError(f"ignore_index must be an integer or None; got {ignore_index!r}")
        if 0 <= ignore_index < n_classes:
            raise ValueError(f"ignore_index={ignore_index} is a valid class for "
                             f"n_classes={n_classes}; pick a value outside [0, n_classes)")


def _as_label_map(y, name, n_classes=None, ignore_index=None):
    """``y`` checked by :func:`skkp._validation.check_labels`, as one (H, W) map or a stack."""
    a = check_labels(y, n_classes, name, ignore_index)
    if a.ndim not in (2, 3):
        raise ValueError(f"{name} must be a label map (H, W) or a stack (n, H, W); got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    return a


def parsing_confusion_matrix(y_true, y_pred, n_classes, ignore_index=IGNORE_INDEX):
    """One confusion matrix over a whole set of label maps.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n, H, W) or (H, W)
        Rows of the result count true labels, columns predicted ones
        (``sklearn.metrics.confusion_matrix`` convention).
    n_classes : int
    ignore_index : int or None, default=255
        True label of pixels to leave out. ``y_pred`` must hold a class in
        ``[0, n_classes)`` at every scored pixel.

    Returns
    -------
    ndarray of shape (n_classes, n_classes), int64

    Examples
    --------
    >>> y_true = np.array([[0, 1], [1, 255]])
    >>> y_pred = np.array([[0, 1], [0, 1]])
    >>> parsing_confusion_matrix(y_true, y_pred, n_classes=2)
    array([[1, 0],
           [1, 1]])
    """
    _check_n_classes(n_classes, ignore_index)
    t = _as_label_map(y_true, "y_true", n_classes, ignore_index)
    p = _as_label_map(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred have different shapes: {t.shape} vs {p.shape}")
    if ignore_index is not None:
        keep = t != ignore_index
        t, p = t[keep], p[keep]
    # y_pred may hold anything at ignored pixels, a class everywhere else
    p = check_labels(p, n_classes, "y_pred (at scored pixels)", ignore_index=None)
    t = t.ravel().astype(np.int64)
    p = p.ravel().astype(np.int64)
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes,
                                                                                   n_classes)


def _confusion(y_true, y_pred, n_classes, cm, ignore_index):
    """A float confusion matrix, from ``cm=`` or from label maps."""
    if cm is None:
        if y_true is None or y_pred is None or n_classes is None:
            raise ValueError("pass either y_true, y_pred and n_classes, or cm=")
        cm = parsing_confusion_matrix(y_true, y_pred, n_classes, ignore_index)
    else:
        if y_true is not None or y_pred is not None or n_classes is not None:
            raise ValueError("pass either y_true, y_pred and n_classes, or cm=, not both")
        cm = np.asarray(cm)
        if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
            raise ValueError(f"cm must be a square (C, C) confusion matrix; got shape {cm.shape}")
        if cm.dtype.kind not in "biuf" or not np.isfinite(cm).all() or (cm < 0).any():
            raise ValueError("cm must hold finite, non-negative counts")
    cm = cm.astype(np.float64)
    if cm.sum() == 0:
        raise ValueError("nothing to score: no pixel outside ignore_index (empty confusion matrix)")
    return cm


def _nanmean_excluding(values, exclude):
    keep = np.ones(values.shape[0], dtype=bool)
    exclude = np.asarray(exclude if exclude is not None else (), dtype=np.int64).ravel()
    if exclude.size and (exclude.min() < 0 or exclude.max() >= values.shape[0]):
        raise ValueError(f"exclude must hold class indices in [0, {values.shape[0]}); got "
                         f"{exclude.tolist()}")
    keep[exclude] = False
    v = values[keep]
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


def per_class_iou(y_true=None, y_pred=None, n_classes=None, *, cm=None, ignore_index=IGNORE_INDEX):
    """Intersection over union of each class, ``TP / (TP + FP + FN)``.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n, H, W) or (H, W), optional
    n_classes : int, optional
    cm : array-like of shape (C, C), optional
        A confusion matrix from :func:`parsing_confusion_matrix`, instead of
        ``y_true, y_pred, n_classes``.
    ignore_index : int or None, default=255

    Returns
    -------
    ndarray of shape (C,)
        NaN for a class absent from both truth and prediction.

    Examples
    --------
    >>> per_class_iou([[0, 1], [1, 1]], [[0, 1], [0, 1]], n_classes=3).round(3)
    array([0.5  , 0.667,   nan])
    """
    cm = _confusion(y_true, y_pred, n_classes, cm, ignore_index)
    tp = np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / (cm.sum(axis=0) + cm.sum(axis=1) - tp)


def per_class_f1(y_true=None, y_pred=None, n_classes=None, *, cm=None, ignore_index=IGNORE_INDEX):
    """F1 (Dice) of each class, ``2 TP / (|truth| + |prediction|)``.

    Parameters are those of :func:`per_class_iou`.

    Returns
    -------
    ndarray of shape (C,)
        NaN for a class absent from both truth and prediction.

    Examples
    --------
    >>> per_class_f1([[0, 1], [1, 1]], [[0, 1], [0, 1]], n_classes=3).round(3)
    array([0.667, 0.8  ,   nan])
    """
    cm = _confusion(y_true, y_pred, n_classes, cm, ignore_index)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 2 * np.diag(cm) / (cm.sum(axis=0) + cm.sum(axis=1))


def mean_iou(y_true=None, y_pred=None, n_classes=None, *, cm=None, ignore_index=IGNORE_INDEX, exclude=()):
    """Mean IoU over classes, background included by default; NaN classes skipped.

    Parameters
    ----------
    y_true, y_pred, n_classes, cm, ignore_index
        See :func:`per_class_iou`.
    exclude : sequence of int, default=()
        Classes left out of the mean.

    Returns
    -------
    float
        NaN if no class is left to average.

    Examples
    --------
    >>> round(mean_iou([[0, 1], [1, 1]], [[0, 1], [0, 1]], n_classes=3), 4)
    0.5833
    """
    return _nanmean_excluding(per_class_iou(y_true, y_pred, n_classes, cm=cm,
                                            ignore_index=ignore_index), exclude)


def mean_f1(y_true=None, y_pred=None, n_classes=None, *, cm=None, ignore_index=IGNORE_INDEX, exclude=(0,)):
    """Mean F1 over classes, background (class 0) excluded by default; NaN classes skipped.

    Parameters
    ----------
    y_true, y_pred, n_classes, cm, ignore_index
        See :func:`per_class_iou`.
    exclude : sequence of int, default=(0,)

    Returns
    -------
    float
        NaN if no class is left to average.

    Examples
    --------
    >>> mean_f1([[0, 1], [1, 1]], [[0, 1], [0, 1]], n_classes=3)
    0.8
    """
    return _nanmean_excluding(per_class_f1(y_true, y_pred, n_classes, cm=cm,
                                           ignore_index=ignore_index), exclude)


def pixel_accuracy(y_true=None, y_pred=None, n_classes=None, *, cm=None, ignore_index=IGNORE_INDEX):
    """Fraction of scored pixels whose predicted class is right.

    Parameters are those of :func:`per_class_iou`.

    Returns
    -------
    float

    Examples
    --------
    >>> pixel_accuracy([[0, 1], [1, 255]], [[0, 1], [0, 0]], n_classes=2)
    0.6666666666666666
    """
    cm = _confusion(y_true, y_pred, n_classes, cm, ignore_index)
    return float(np.trace(cm) / cm.sum())


def parsing_report(y_true, y_pred, classes, *, ignore_index=IGNORE_INDEX, exclude=(0,)):
    """All parsing metrics at once, from one confusion matrix.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n, H, W) or (H, W)
    classes : int or sequence of str
        Number of classes, or their names (e.g. ``skkp.datasets.CELEBAMASK_CLASSES``).
    ignore_index : int or None, default=255
    exclude : sequence of int, default=(0,)
        Classes left out of ``mean_f1`` (``mean_iou`` always includes all).

    Returns
    -------
    dict
        ``pixel_accuracy``, ``mean_iou``, ``mean_f1``, ``confusion_matrix`` and
        ``per_class``: ``{name: {"iou", "f1", "support", "predicted"}}`` where
        the last two count true and predicted pixels.

    Examples
    --------
    >>> r = parsing_report([[0, 1], [1, 1]], [[0, 1], [0, 1]], ["bg", "skin"])
    >>> r["mean_f1"], r["per_class"]["skin"]["support"]
    (0.8, 3)
    """
    if isinstance(classes, numbers.Integral) and not isinstance(classes, bool):
        names = [str(c) for c in range(int(classes))]
    elif isinstance(classes, str) or not hasattr(classes, "__len__"):
        raise ValueError(f"classes must be an int or a sequence of class names; got {classes!r}")
    else:
        names = [str(c) for c in classes]
    cm = parsing_confusion_matrix(y_true, y_pred, len(names), ignore_index)
    iou = per_class_iou(cm=cm)
    f1 = per_class_f1(cm=cm)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    return {
        "pixel_accuracy": pixel_accuracy(cm=cm),
        "mean_iou": _nanmean_excluding(iou, ()),
        "mean_f1": _nanmean_excluding(f1, exclude),
        "confusion_matrix": cm,
        "per_class": {name: {"iou": float(iou[c]), "f1": float(f1[c]), "support": int(support[c]),
                             "predicted": int(predicted[c])} for c, name in enumerate(names)},
    }


def miou_scorer(n_classes, ignore_index=IGNORE_INDEX):
    """A scorer for :func:`mean_iou` (greater is better) on ``predict`` label maps.

    Each call scores one set (one CV fold) with its own confusion matrix.

    Examples
    --------
    >>> s = miou_scorer(n_classes=19)
    """
    _check_n_classes(n_classes, ignore_index)
    return make_scorer(mean_iou, n_classes=n_classes, ignore_index=ignore_index)


def mean_f1_scorer(n_classes, ignore_index=IGNORE_INDEX, exclude=(0,)):
    """A scorer for :func:`mean_f1` (greater is better) on ``predict`` label maps.

    Examples
    --------
    >>> s = mean_f1_scorer(n_classes=19)
    """
    _check_n_classes(n_classes, ignore_index)
    return make_scorer(mean_f1, n_classes=n_classes, ignore_index=ignore_index,
                       exclude=tuple(exclude))
