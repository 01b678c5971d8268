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
"""
import numbers

import cv2
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ._validation import check_label_maps
from .datasets._faces import CELEBAMASK_CLASSES

__all__ = ["mask_edge_keypoints", "MaskEdgeKeypoints"]

#: Sobel (3x3, L2) gradient magnitude across a long straight step of a 0/255
#: mask; thresholds are given as fractions of it.
_STRAIGHT_EDGE = 4.0 * 255.0

# The 8 neighbour steps (dx, dy); index k is at angle 45*k degrees, measured
# clockwise on screen (y down), starting east.
_STEPS = np.array([[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]])
_STEP_INDEX = np.full(9, -1)
_STEP_INDEX[(_STEPS[:, 0] + 1) * 3 + _STEPS[:, 1] + 1] = np.arange(8)


def _crack_table():
    """For a border pixel entered by step ``k_in`` and left by step ``k_out``
    (row ``8 * k_in + k_out``): the 4-neighbour directions whose pixel edges
    ("cracks") face the outside, in clockwise order, padded with -1. Row 64 is
    a single-pixel component: all four.

    Border following (Suzuki-Abe, as in ``cv2.findContours``) finds the next
    pixel by sweeping round the current one from the previous pixel; every
    neighbour swept over before the next pixel is outside. Sweeping clockwise
    from the way back (``k_in + 4``) up to ``k_out``, the 4-neighbours met
    share a crack with the outside. ``k_out == k_in + 4`` (a spur tip): all
    seven other neighbours are swept.
    """
    table = np.full((65, 4), -1)
    for k_in in range(8):
        for k_out in range(8):
            back = (k_in + 4) % 8
            span = (k_out - back) % 8 or 8
            cracks = [(back + j) % 8 for j in range(1, span) if (back + j) % 2 == 0]
            table[8 * k_in + k_out, :len(cracks)] = cracks
    table[64] = [0, 2, 4, 6]
    return table


_CRACKS = _crack_table()
_N_CRACKS = (_CRACKS >= 0).sum(axis=1)


def _resolve_parts(classes, n_points, parts):
    """Check ``classes``/``n_points``/``parts``; return [(name, label, n), ...]."""
    if isinstance(classes, str) or not hasattr(classes, "__len__"):
        raise TypeError(f"classes must be a sequence of class names (index = label value), got {classes!r}.")
    classes = list(classes)
    if len(classes) < 2:
        raise ValueError(f"classes must name at least 2 classes (background first), got {len(classes)}.")
    if not all(isinstance(c, str) for c in classes):
        raise TypeError("classes must be a sequence of str class names.")
    if len(set(classes)) != len(classes):
        dup = sorted({c for c in classes if classes.count(c) > 1})
        raise ValueError(f"classes must be unique names; repeated: {dup}.")
    index = {c: i for i, c in enumerate(classes)}

    if isinstance(n_points, dict):
        unknown = [k for k in n_points if k not in index]
        if unknown:
            raise ValueError(f"n_points names unknown classes {unknown}; known classes: {classes}.")
        default_parts = list(n_points)
    elif isinstance(n_points, numbers.Integral) and not isinstance(n_points, bool):
        default_parts = classes[1:]
    else:
        raise TypeError(f"n_points must be an int or a dict {{class name: int}}, got {n_points!r}.")

    if parts is None:
        parts = default_parts
    else:
        if isinstance(parts, str) or not hasattr(parts, "__iter__"):
            raise TypeError(f"parts must be a list of class names, got {parts!r}.")
        parts = list(parts)
        unknown = [p for p in parts if not isinstance(p, str) or p not in index]
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
        if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 3:
            raise ValueError(f"n_points must be an int >= 3 (per part), got {n!r} for {p!r}.")
        resolved.append((p, index[p], int(n)))
    return classes, resolved


def _check_options(low_threshold, high_threshold, missing, start, output):
    for name, value in (("low_threshold", low_threshold), ("high_threshold", high_threshold)):
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not np.isfinite(value) \
                or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    if low_threshold > high_threshold:
        raise ValueError(f"low_threshold ({low_threshold}) must not exceed high_threshold ({high_threshold}).")
    for name, value, allowed in (("missing", missing, ("nan", "raise")), ("start", start, ("top", "centroid")),
                                 ("output", output, ("flat", "points"))):
        if not isinstance(value, str) or value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}.")


def _ring_indices(lengths):
    """For curves of ``lengths`` stored one after another: start offsets, and
    the index of the previous and next vertex of each vertex on its own curve."""
    ends = np.cumsum(lengths)
    starts = ends - lengths
    idx = np.arange(ends[-1])
    prev, nxt = idx - 1, idx + 1
    prev[starts] = ends - 1
    nxt[ends - 1] = starts
    return starts, prev, nxt


def _crack_curves(chains):
    """Closed border pixel chains (clockwise on screen, interior on the right)
    -> the midpoints of the pixel edges between the traced pixels and the
    outside, in order, all curves one after another, and the curve lengths.

    The midpoints lie on the boundary between part and non-part pixels, half
    a pixel outside the border pixel centres.
    """
    lengths = np.array([len(c) for c in chains])
    pixels = np.concatenate(chains).astype(np.int64)
    starts, prev, nxt = _ring_indices(lengths)
    step = pixels[nxt] - pixels  # (0, 0) for a single pixel
    k_out = _STEP_INDEX[(step[:, 0] + 1) * 3 + step[:, 1] + 1]
    code = 8 * k_out[prev] + k_out
    code[starts[lengths == 1]] = 64
    dirs = _CRACKS[code]
    dirs = dirs[dirs >= 0]  # row by row: the cracks stay in boundary order
    counts = _N_CRACKS[code]
    cracks = np.repeat(pixels, counts, axis=0) + 0.5 * _STEPS[dirs]
    return cracks, np.add.reduceat(counts, starts)


def _enclosed_areas(chains):
    """Area inside the crack boundary of each chain (pixels, holes included)."""
    cracks, lengths = _crack_curves(chains)
    starts, _, nxt = _ring_indices(lengths)
    x, y = cracks[:, 0], cracks[:, 1]
    return 0.5 * np.add.reduceat(x * y[nxt] - x[nxt] * y, starts)


def _crack_curve(chain):
    """:func:`_crack_curves` for one chain."""
    return _crack_curves([chain])[0]


def _part_chain(mask, low, high):
    """Border pixel chain (clockwise on screen) of the largest component of a
    0/255 mask that has a Canny edge, or None."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    height, width = mask.shape
    chains = [c[::-1, 0, :] for c in contours]  # OpenCV traces outer borders anticlockwise on screen
    if len(chains) > 1:  # largest first: area inside the sub-pixel outer boundary
        order = np.argsort(-_enclosed_areas(chains), kind="stable")
        contours, chains = [contours[i] for i in order], [chains[i] for i in order]
    for contour, chain in zip(contours, chains):
        # Canny on a crop around this component, padded with "not this part"
        # beyond the image so that a part touching the border has an edge there.
        bx, by, bw, bh = cv2.boundingRect(contour)
        x0, y0, x1, y1 = bx - 2, by - 2, bx + bw + 2, by + bh + 2
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        crop = mask[cy0:cy1, cx0:cx1]
        if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
            crop = cv2.copyMakeBorder(crop, cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1, cv2.BORDER_CONSTANT,
                                      value=0)
        edges = cv2.Canny(crop, low, high, L2gradient=True)
        # Canny puts a binary step's edge on a border pixel or on a pixel next to
        # it: the component counts if one of those carries an edge.
        cx, cy = chain[:, 0] - x0, chain[:, 1] - y0
        if edges[cy, cx].any() or edges[cy, cx - 1].any() or edges[cy, cx + 1].any() \
                or edges[cy - 1, cx].any() or edges[cy + 1, cx].any():
            return chain
    return None


def _smooth(curves, lengths):
    """One pass of a circular [1, 2, 1] / 4 filter along each curve (evens out
    the crack zig-zag); curves of fewer than 4 points are left as they are."""
    _, prev, nxt = _ring_indices(lengths)
    out = 0.25 * (curves[prev] + curves[nxt]) + 0.5 * curves
    short = np.repeat(lengths < 4, lengths)
    out[short] = curves[short]
    return out


def _top_start(curve):
    """Index of the top-most vertex (ties: the left-most of those)."""
    top = np.flatnonzero(curve[:, 1] == curve[:, 1].min())
    return top[np.argmin(curve[top, 0])]


def _centroid_start(curve):
    """Insert the top-most crossing of the closed curve with the vertical line
    through its area centroid; return (curve, index of that vertex)."""
    x, y = curve[:, 0], curve[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    area = cross.sum()
    cx = ((x + xn) * cross).sum() / (3.0 * area) if abs(area) > 1e-9 else x.mean()
    # segments from vertex i to i + 1 that reach the line x = cx
    hit = np.flatnonzero(((x - cx) * (xn - cx) <= 0) & (x != xn))
    if hit.size == 0:  # a vertical sliver: the line runs along it
        return curve, _top_start(curve)
    t = (cx - x[hit]) / (xn[hit] - x[hit])
    ys = y[hit] + t * (yn[hit] - y[hit])
    i = hit[np.argmin(ys)]
    point = np.array([[cx, ys.min()]])
    return np.concatenate([curve[:i + 1], point, curve[i + 1:]]), i + 1


def _resample(curve, n, start="top"):
    """``n`` points equally spaced by arc length along one closed curve, from
    its canonical start (see ``start`` in :func:`mask_edge_keypoints`)."""
    if start == "top":
        first = _top_start(curve)
    else:
        curve, first = _centroid_start(curve)
    closed = np.concatenate([curve[first:], curve[:first + 1]])
    seg = np.hypot(closed[1:, 0] - closed[:-1, 0], closed[1:, 1] - closed[:-1, 1])
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.arange(n) * (s[-1] / n)
    return np.column_stack([np.interp(t, s, closed[:, 0]), np.interp(t, s, closed[:, 1])])


def _resample_top(curves, lengths, ns):
    """:func:`_resample` with ``start="top"`` for many curves stored one after
    another; returns the points of all curves one after another."""
    starts, _, nxt = _ring_indices(lengths)
    curve_id = np.repeat(np.arange(len(lengths)), lengths)
    x, y = curves[:, 0], curves[:, 1]
    top = y == np.minimum.reduceat(y, starts)[curve_id]
    x_top = np.where(top, x, np.inf)
    hits = np.flatnonzero(x_top == np.minimum.reduceat(x_top, starts)[curve_id])
    first = hits[np.searchsorted(hits, starts)]  # top-most, then left-most vertex of each curve
    local = (np.arange(len(curves)) - starts[curve_id] + (first - starts)[curve_id]) % lengths[curve_id]
    ring = curves[local + starts[curve_id]]  # each curve rotated to start at its top
    step = ring[nxt] - ring
    seg = np.hypot(step[:, 0], step[:, 1])
    arc = np.concatenate([[0.0], np.cumsum(seg)[:-1]])  # arc length at each vertex, all curves
    perimeter = np.add.reduceat(seg, starts)
    target_id = np.repeat(np.arange(len(lengths)), ns)
    k = np.arange(ns.sum()) - np.repeat(np.cumsum(ns) - ns, ns)
    target = arc[starts][target_id] + k * (perimeter / ns)[target_id]
    j = np.searchsorted(arc, target, side="right") - 1
    j = np.clip(j, starts[target_id], (starts + lengths - 1)[target_id])
    frac = np.divide(target - arc[j], seg[j], out=np.zeros(len(j)), where=seg[j] > 0)
    return ring[j] + frac[:, None] * step[j]


def _keypoints(maps, resolved, low, high, missing, start):
    """(n, H, W) checked label maps -> (n, P, 2) points."""
    n_total = sum(n for _, _, n in resolved)
    out = np.full((len(maps), n_total, 2), np.nan)
    lo, hi = low * _STRAIGHT_EDGE, high * _STRAIGHT_EDGE
    use_cv_compare = maps.dtype == np.uint8
    chains, rows, ns = [], [], []
    for i, label_map in enumerate(maps):
        first = 0
        for name, label, n in resolved:
            if use_cv_compare:
                mask = cv2.compare(label_map, label, cv2.CMP_EQ)
            else:
                mask = (label_map == label).view(np.uint8) * np.uint8(255)
            chain = _part_chain(mask, lo, hi)
            if chain is not None:
                chains.append(chain)
                rows.append((i, first, n))
                ns.append(n)
            elif missing == "raise":
                where = f"label map {i}" if len(maps) > 1 else "the label map"
                raise ValueError(f"Part {name!r} (label {label}) has no edge in {where}; pass "
                                 f"missing='nan' to get NaN points for absent parts.")
            first += n
    if not chains:
        return out
    # all boundaries of all maps at once: cracks, smoothing, resampling
    cracks, lengths = _crack_curves(chains)
    curves = _smooth(cracks, lengths)
    ns = np.array(ns)
    if start == "top":
        points = np.split(_resample_top(curves, lengths, ns), np.cumsum(ns)[:-1])
    else:
        pieces = np.split(curves, np.cumsum(lengths)[:-1])
        points = [_resample(c, n, start) for c, n in zip(pieces, ns)]
    for (i, first, n), p in zip(rows, points):
        out[i, first:first + n] = p
    return out


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
        non-maximum suppression removes) are ignored; any threshold above 1
        ignores everything.
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
    classes, resolved = _resolve_parts(classes, n_points, parts)
    _check_options(low_threshold, high_threshold, missing, start, output)
    maps, single = check_label_maps(label_map, len(classes), name="label_map", allow_single=True)
    points = _keypoints(maps, resolved, low_threshold, high_threshold, missing, start)
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

    def _check_params(self):
        classes, resolved = _resolve_parts(self.classes, self.n_points, self.parts)
        _check_options(self.low_threshold, self.high_threshold, self.missing, self.start, self.output)
        shape = self.image_shape
        if shape is not None:
            ok = (isinstance(shape, (tuple, list)) and len(shape) == 2 and list(shape).count(-1) <= 1
                  and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and (v >= 1 or v == -1)
                          for v in shape))
            if not ok:
                raise ValueError(f"image_shape must be None or (H, W) with positive ints (one may be -1), "
                                 f"got {shape!r}.")
            shape = tuple(int(v) for v in shape)
        return classes, resolved, shape

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
        classes, resolved, shape = self._check_params()
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
        classes, resolved, shape = self._check_params()
        maps, _ = check_label_maps(X, len(classes), name="X", image_shape=shape)
        n_pixels = maps.shape[1] * maps.shape[2]
        if hasattr(self, "n_features_in_") and n_pixels != self.n_features_in_:
            raise ValueError(f"X has {n_pixels} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input (pixels of the "
                             f"{self.image_shape_[0]}x{self.image_shape_[1]} label maps seen in fit).")
        points = _keypoints(maps, resolved, self.low_threshold, self.high_threshold, self.missing, self.start)
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
        _, resolved = _resolve_parts(self.classes, self.n_points, self.parts)
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
