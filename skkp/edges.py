"""Ordered keypoints along the edges of face parts in label maps.

:func:`mask_edge_keypoints` and :class:`MaskEdgeKeypoints` turn a parsing label
map (one integer class per pixel, e.g. from :class:`skkp.FaceParser`) into a
fixed number of points per part, placed along the part's outer edge so that
point ``i`` means the same place from one image to the next.

Per part: binary mask -> Canny edges (Sobel gradients, non-maximum
suppression, hysteresis) -> outer boundary of the largest edge-bearing
component, traced with :func:`cv2.findContours` and placed on the cracks
between mask and non-mask pixels (sub-pixel) -> ``n_points`` points equally
spaced by arc length, from a canonical start (by default the top-most point,
ties to the left), running clockwise on screen (image coordinates, y down).

The contour geometry lives in :mod:`skkp._contours`; its public pieces are
re-exported here: :data:`STRAIGHT_EDGE` (the gradient the Canny thresholds are
fractions of) and :func:`resample_closed_curve` (equally spaced points along
any closed curve, from the same canonical start).
"""
import numbers

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions, validate_parameter_constraints

from ._contours import STRAIGHT_EDGE, edge_keypoints, resample_closed_curve
from ._validation import check_label_maps
from .schemas import CELEBAMASK_CLASSES, check_class_names

__all__ = ["mask_edge_keypoints", "MaskEdgeKeypoints", "STRAIGHT_EDGE", "resample_closed_curve"]

#: Most classes a label map may have (more than 256 are held as int32 labels).
_MAX_CLASSES = int(np.iinfo(np.int32).max)

#: scikit-learn constraints of the parameters :func:`mask_edge_keypoints` and
#: :class:`MaskEdgeKeypoints` share; :func:`_resolve_parts` checks the rest.
_PARAMETER_CONSTRAINTS = {
    "classes": ["array-like"],
    "n_points": [Interval(numbers.Integral, 3, None, closed="left"), dict],
    "low_threshold": [Interval(numbers.Real, 0, None, closed="left")],
    "high_threshold": [Interval(numbers.Real, 0, None, closed="left")],
    "missing": [StrOptions({"nan", "raise"})],
    "parts": ["array-like", None],
    "start": [StrOptions({"top", "centroid"})],
    "output": [StrOptions({"flat", "points"})],
}


def _resolve_parts(classes, n_points, parts, low_threshold, high_threshold):
    """What the constraints cannot express, shared by the function and the estimator.

    Run after :data:`_PARAMETER_CONSTRAINTS` passed. ``TypeError`` for a wrong
    type, ``ValueError`` for a wrong value. Returns the class names (a new list)
    and ``[(part name, label, n_points), ...]`` in output order.
    """
    for name, value in (("low_threshold", low_threshold), ("high_threshold", high_threshold)):
        if isinstance(value, bool):
            raise TypeError(f"{name} must be a number >= 0 (a fraction of a straight edge's gradient), "
                            f"got {value!r}.")
    if low_threshold > high_threshold:
        raise ValueError(f"low_threshold ({low_threshold}) must not exceed high_threshold ({high_threshold}).")
    classes = check_class_names(classes, "classes", max_classes=_MAX_CLASSES)
    index = {c: i for i, c in enumerate(classes)}

    if isinstance(n_points, dict):
        for key, n in n_points.items():
            if not isinstance(key, str):
                raise TypeError(f"n_points keys must be class names (str), got {key!r}.")
            if not isinstance(n, numbers.Integral) or isinstance(n, bool):
                raise TypeError(f"n_points values must be ints >= 3 (points per part), got {n!r} for {key!r}.")
            if n < 3:
                raise ValueError(f"n_points must be an int >= 3 (per part), got {n!r} for {key!r}.")
        unknown = [k for k in n_points if k not in index]
        if unknown:
            raise ValueError(f"n_points names unknown classes {unknown}; known classes: {classes}.")
        default_parts = list(n_points)
    else:
        default_parts = classes[1:]

    if parts is None:
        parts = default_parts
    else:
        parts = list(parts)
        not_str = [p for p in parts if not isinstance(p, str)]
        if not_str:
            raise TypeError(f"parts must be a list of class names (str), got {not_str[0]!r} in {parts!r}.")
        unknown = [p for p in parts if p not in index]
        if unknown:
            raise ValueError(f"parts names unknown classes {unknown}; known classes: {classes}.")
        if len(set(parts)) != len(parts):
            raise ValueError(f"parts must not repeat a class, got {parts}.")
    if not parts:
        raise ValueError("No part selected: parts (or the keys of n_points) must name at least one class.")

    resolved = []
    for p in parts:
        n = n_points.get(p) if isinstance(n_points, dict) else n_points
        if n is None:
            raise ValueError(f"n_points is a dict without an entry for part {p!r}; give every part in "
                             f"parts a number of points.")
        resolved.append((p, index[p], int(n)))
    return classes, resolved


def _check_image_shape(shape):
    """``image_shape`` (already a tuple, list or None) as a tuple of 2 ints, or None."""
    if shape is None:
        return None
    expected = "None or (H, W) with positive ints (one may be -1)"
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in shape):
        raise TypeError(f"image_shape must be {expected}, got {shape!r}.")
    if len(shape) != 2 or list(shape).count(-1) > 1 or not all(v >= 1 or v == -1 for v in shape):
        raise ValueError(f"image_shape must be {expected}, got {shape!r}.")
    return tuple(int(v) for v in shape)


def mask_edge_keypoints(label_map, classes=CELEBAMASK_CLASSES, n_points=16, low_threshold=0.3,
                        high_threshold=0.6, missing="nan", parts=None, start="top", output="flat"):
    """Keypoints equally spaced along the outer edge of each part of a label map.

    Parameters
    ----------
    label_map : array-like of int, shape (H, W) or (n, H, W)
        Class label per pixel; value ``i`` means ``classes[i]``. Float arrays
        are accepted only when they hold whole numbers.
    classes : sequence of str, default=CELEBAMASK_CLASSES
        Class names in label order; index 0 is the background.
    n_points : int or dict, default=16
        Points per part (>= 3), or ``{class name: n}``; with a dict and
        ``parts=None`` the dict's keys are the parts, in the dict's order.
    low_threshold, high_threshold : float, default=0.3, 0.6
        Canny hysteresis thresholds as fractions of the gradient across a long
        straight mask edge (Sobel 3x3, L2 norm). A component counts only if
        Canny finds an edge pixel on its boundary: with the defaults isolated
        pixels (gradient 0.5) and blobs of at most 2x2 pixels (whose edges
        non-maximum suppression removes) are ignored. A ``high_threshold``
        above ``sqrt(5) / 2`` (about 1.12, the largest gradient a binary mask
        has, on diagonal and curved edges) ignores everything.
    missing : {"nan", "raise"}, default="nan"
        What a part without an edge-bearing component gives: NaN points, or
        a ``ValueError``.
    parts : list of str or None, default=None
        The parts to report, in output order. Default: every class except
        ``classes[0]`` (or the keys of a dict ``n_points``).
    start : {"top", "centroid"}, default="top"
        Where point 0 goes: the top-most point of the boundary (ties: the
        left-most), or where the vertical line through the part's centroid
        meets the top of the boundary (steadier on flat-topped parts).
    output : {"flat", "points"}, default="flat"
        ``"flat"``: ``x0, y0, x1, y1, ...``; ``"points"``: (..., P, 2).

    Returns
    -------
    ndarray of float64
        (2P,) or (P, 2) for one (H, W) map, (n, 2P) or (n, P, 2) for a stack,
        P being the total number of points, parts in ``parts`` order.

    Raises
    ------
    TypeError, ValueError
        A parameter of the wrong type (``TypeError``) or value (``ValueError``);
        the message names it and what was expected. :class:`MaskEdgeKeypoints`
        raises the same errors for the same parameters (scikit-learn's
        ``InvalidParameterError`` is both a ``TypeError`` and a ``ValueError``).
    ValueError
        Label maps that are not whole numbers in ``[0, len(classes))`` or not
        (H, W) / (n, H, W); with ``missing="raise"``, a part without an edge.

    Notes
    -----
    Foreground is 8-connected. With several components, the one with the
    largest area inside its outer boundary (holes included) is used, the
    first one found on a tie; holes are ignored (only the outer boundary is
    traced). Points lie on the boundary between part
    and non-part pixels (half a pixel outside the border pixel centres,
    lightly smoothed), run clockwise on screen (y down) and are equally spaced
    by arc length. A part touching the image border gets its edge there.

    Examples
    --------
    >>> lab = np.zeros((20, 20), dtype=np.uint8)
    >>> lab[5:15, 4:16] = 1                       # a 12 x 10 pixel box
    >>> mask_edge_keypoints(lab, classes=["background", "box"], n_points=4,
    ...                     output="points").round(1)
    array([[ 5. ,  4.5],
           [15.3,  5. ],
           [14. , 14.5],
           [ 3.7, 14. ]])
    """
    params = dict(classes=classes, n_points=n_points, low_threshold=low_threshold, high_threshold=high_threshold,
                  missing=missing, parts=parts, start=start, output=output)
    validate_parameter_constraints(_PARAMETER_CONSTRAINTS, params, caller_name="mask_edge_keypoints")
    classes, resolved = _resolve_parts(classes, n_points, parts, low_threshold, high_threshold)
    maps, single = check_label_maps(label_map, len(classes), name="label_map", allow_single=True)
    points = edge_keypoints(maps, resolved, low_threshold, high_threshold, missing, start)
    if output == "flat":
        points = points.reshape(len(points), -1)
    return points[0] if single else points


class MaskEdgeKeypoints(TransformerMixin, BaseEstimator):
    """Transform label maps into keypoints equally spaced along each part's edge.

    Stateless: ``fit`` only checks the parameters and the input and records
    ``n_features_in_`` and ``n_features_out_``; ``transform`` also works
    without ``fit``. See :func:`mask_edge_keypoints` for the method.

    Parameters
    ----------
    classes : sequence of str, default=CELEBAMASK_CLASSES
        Class names in label order; index 0 is the background.
    n_points : int or dict, default=16
        Points per part, or ``{class name: n}``.
    low_threshold, high_threshold : float, default=0.3, 0.6
        Canny thresholds as fractions of a straight mask edge's gradient.
    missing : {"nan", "raise"}, default="nan"
        Absent part: NaN points or ``ValueError``.
    parts : list of str or None, default=None
        Parts to report, in output order (default: all but the background).
    start : {"top", "centroid"}, default="top"
        Canonical first point of each part.
    output : {"flat", "points"}, default="flat"
        (n, 2P) rows ``x0, y0, x1, y1, ...`` or (n, P, 2).
    image_shape : (int, int) or None, default=None
        Lets X be (n, H*W) flattened label maps; one side may be ``-1``
        (numpy reshape rules). ``None``: X must be (n, H, W).

    Attributes
    ----------
    n_features_in_ : int
        Pixels per label map (H*W).
    n_features_out_ : int
        Output columns, 2 * total points.
    image_shape_ : (int, int)
        (H, W) of the label maps seen in ``fit``.

    Examples
    --------
    >>> lab = np.zeros((2, 20, 20), dtype=np.uint8)
    >>> lab[:, 5:15, 4:16] = 1
    >>> est = MaskEdgeKeypoints(classes=["background", "box"], n_points=4)
    >>> est.fit_transform(lab).shape
    (2, 8)
    >>> est.get_feature_names_out()[:3].tolist()
    ['box_0_x', 'box_0_y', 'box_1_x']
    """

    _parameter_constraints = {**_PARAMETER_CONSTRAINTS, "image_shape": [tuple, list, None]}

    def __init__(self, classes=CELEBAMASK_CLASSES, n_points=16, low_threshold=0.3, high_threshold=0.6,
                 missing="nan", parts=None, start="top", output="flat", image_shape=None):
        self.classes = classes
        self.n_points = n_points
        self.low_threshold = low_threshold
        self.high_threshold = high_threshold
        self.missing = missing
        self.parts = parts
        self.start = start
        self.output = output
        self.image_shape = image_shape

    def _resolve(self):
        """Checks beyond ``_parameter_constraints`` -> (classes, resolved parts, image_shape)."""
        classes, resolved = _resolve_parts(self.classes, self.n_points, self.parts, self.low_threshold,
                                           self.high_threshold)
        return classes, resolved, _check_image_shape(self.image_shape)

    def fit(self, X, y=None):
        """Check the parameters and X; record the input and output sizes.

        Parameters
        ----------
        X : array-like of int, shape (n, H, W), or (n, H*W) with ``image_shape``
        y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        classes, resolved, shape = self._resolve()
        maps, _ = check_label_maps(X, len(classes), name="X", image_shape=shape)
        self.image_shape_ = tuple(maps.shape[1:])
        self.n_features_in_ = int(maps.shape[1] * maps.shape[2])
        self.n_features_out_ = 2 * sum(n for _, _, n in resolved)
        return self

    def transform(self, X):
        """Keypoints along the edge of each part of each label map.

        Parameters
        ----------
        X : array-like of int, shape (n, H, W), or (n, H*W) with ``image_shape``

        Returns
        -------
        ndarray of float64, shape (n, 2P) or (n, P, 2)
            NaN for parts absent from a map (``missing="nan"``).
        """
        self._validate_params()  # transform works without fit
        classes, resolved, shape = self._resolve()
        maps, _ = check_label_maps(X, len(classes), name="X", image_shape=shape)
        n_pixels = maps.shape[1] * maps.shape[2]
        if hasattr(self, "n_features_in_") and n_pixels != self.n_features_in_:
            raise ValueError(f"X has {n_pixels} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input (pixels of the "
                             f"{self.image_shape_[0]}x{self.image_shape_[1]} label maps seen in fit).")
        points = edge_keypoints(maps, resolved, self.low_threshold, self.high_threshold, self.missing, self.start)
        return points.reshape(len(points), -1) if self.output == "flat" else points

    def get_feature_names_out(self, input_features=None):
        """Output column names ``<part>_<i>_x``, ``<part>_<i>_y``.

        Parameters
        ----------
        input_features : ignored

        Returns
        -------
        ndarray of str objects, shape (n_features_out_,)
        """
        self._validate_params()
        _, resolved, _ = self._resolve()
        names = [f"{part}_{i}_{axis}" for part, _, n in resolved for i in range(n) for axis in "xy"]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.three_d_array = True
        tags.input_tags.categorical = True  # label maps: non-negative integer codes
        tags.input_tags.positive_only = True
        tags.transformer_tags.preserves_dtype = []
        return tags
