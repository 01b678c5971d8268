"""Metrics for facial keypoints and face parsing: plain functions and scorers.

Keypoint functions take ``(y_true, y_pred)`` of shape ``(n, 2K)`` (``x0, y0,
x1, y1, ...``) or ``(n, K, 2)``, in pixels. A point whose true ``x`` or ``y``
is NaN is not labelled and is left out; a NaN prediction at a labelled point
is an error. Normalised errors read their normalising point pair from the
layouts of :mod:`skkp.schemas` (``normalizer="outer_eyes"``, a schema or its
name) or take a pair, the box of the points or given distances. Parsing
functions take integer label maps ``(n, H, W)`` or ``(H, W)``; pixels whose
true label is ``ignore_index`` (:data:`skkp.schemas.IGNORE_INDEX`) are left out.

Scorers (``greater_is_better=False`` ones report the negated error, as
scikit-learn's ``neg_*`` scorers do) work with ``cross_val_score`` and
``GridSearchCV``; :data:`SCORERS` lists the ready-made ones.

Modules: ``_point_errors`` (input checks, errors in pixels), ``_nme``
(normalised errors and the cumulative error curve), ``_scorers`` (keypoint
scorers), ``_parsing`` (face-parsing metrics and scorers). Numpy and
scikit-learn only: importing this package does not load torch.
"""
from ._nme import OUTER_EYES_68, ced_auc, cumulative_error_curve, failure_rate, normalized_mean_error, pck, \
    per_image_nme
from ._parsing import (
    mean_f1, mean_f1_scorer, mean_iou, miou_scorer, parsing_confusion_matrix, parsing_report,
    per_class_f1, per_class_iou, pixel_accuracy,
)
from ._point_errors import mean_absolute_error_px, mean_point_error, per_keypoint_error, \
    root_mean_squared_error_px
from ._scorers import SCORERS, mae_px_scorer, mean_point_error_scorer, nme_scorer, rmse_px_scorer

__all__ = [
    "OUTER_EYES_68", "mean_absolute_error_px", "root_mean_squared_error_px", "mean_point_error",
    "per_image_nme", "normalized_mean_error", "failure_rate", "pck",
    "cumulative_error_curve", "ced_auc", "per_keypoint_error",
    "mae_px_scorer", "rmse_px_scorer", "mean_point_error_scorer", "nme_scorer",
    "SCORERS",
    "parsing_confusion_matrix", "per_class_iou", "per_class_f1", "mean_iou",
    "mean_f1", "pixel_accuracy", "parsing_report", "miou_scorer", "mean_f1_scorer",
]
