"""Keypoint scorers for scikit-learn's model selection; imported from :mod:`skkp.metrics`.

Errors come back negated (greater is better), as scikit-learn's ``neg_*`` scorers do.
"""
import numpy as np
from sklearn.metrics import make_scorer

from ..schemas import KeypointSchema
from ._nme import _schema_pair, normalized_mean_error
from ._point_errors import mean_absolute_error_px, mean_point_error, root_mean_squared_error_px

__all__ = ["mae_px_scorer", "rmse_px_scorer", "mean_point_error_scorer", "nme_scorer", "SCORERS"]


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
    normalizer : {'outer_eyes', 'bbox'}, schema name, KeypointSchema or tuple (i, j)
        See :func:`~skkp.metrics.per_image_nme`; an unknown name or a schema
        without a normalising pair is refused here already. Per-image arrays
        are refused: they cannot follow cross-validation splits.
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
    if not isinstance(normalizer, (str, tuple, KeypointSchema)):
        raise ValueError("nme_scorer needs normalizer 'outer_eyes', 'bbox', a schema (name) or a "
                         "tuple (i, j); a per-image array cannot follow cross-validation splits")
    _schema_pair(normalizer)  # unknown names and schemas without a pair fail now, not in the search
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
