"""Contour geometry behind :func:`skkp.mask_edge_keypoints` (numpy and OpenCV only).

Per part: the outer border of the largest edge-bearing component, traced with
:func:`cv2.findContours`, is turned into the cracks (pixel edges) between part
and non-part pixels, smoothed, and resampled to equally spaced points from a
canonical start. The public names are re-exported by :mod:`skkp.edges`:

- :data:`STRAIGHT_EDGE`: the gradient the Canny thresholds are fractions of;
- :func:`resample_closed_curve`: equally spaced points along a closed curve.

Examples
--------
>>> float(STRAIGHT_EDGE)  # 4 * 255: Sobel 3x3 (L2) across a 0/255 step
1020.0
"""
import numbers

import cv2
import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions, validate_parameter_constraints

from ._validation import _as_numeric_array

__all__ = ["STRAIGHT_EDGE", "edge_keypoints", "resample_closed_curve"]

#: Gradient magnitude (Sobel 3x3, L2 norm) across a long straight step of a
#: 0/255 mask: 4 * 255. The Canny thresholds of :func:`skkp.mask_edge_keypoints`
#: (``low_threshold``, ``high_threshold``) are fractions of it, so a threshold
#: ``t`` is ``t * STRAIGHT_EDGE`` in :func:`cv2.Canny` units. The largest
#: gradient a binary mask has (on diagonal and curved edges) is ``sqrt(5) / 2``
#: of it, so a ``high_threshold`` above about 1.12 finds no edge at all.
STRAIGHT_EDGE = 4.0 * 255.0

# The 8 neighbour steps (dx, dy); index k is at angle 45*k degrees, measured
# clockwise on screen (y down), starting east.
_STEPS = np.array([[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]])
_STEP_INDEX = np.full(9, -1)
_STEP_INDEX[(_STEPS[:, 0] + 1) * 3 + _STEPS[:, 1] + 1] = np.arange(8)

_RESAMPLE_CONSTRAINTS = {"n_points": [Interval(numbers.Integral, 1, None, closed="left")],
                         "start": [StrOptions({"top", "centroid"})]}


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
    """:func:`resample_closed_curve` without the argument checks (internal use)."""
    if start == "top":
        first = _top_start(curve)
    else:
        curve, first = _centroid_start(curve)
    closed = np.concatenate([curve[first:], curve[:first + 1]])
    seg = np.hypot(closed[1:, 0] - closed[:-1, 0], closed[1:, 1] - closed[:-1, 1])
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.arange(n) * (s[-1] / n)
    return np.column_stack([np.interp(t, s, closed[:, 0]), np.interp(t, s, closed[:, 1])])


def resample_closed_curve(curve, n_points, start="top"):
    """Points equally spaced by arc length along a closed curve, from a canonical start.

    The resampling step of :func:`skkp.mask_edge_keypoints`, for any closed
    polyline (e.g. a contour from another tracer).

    Parameters
    ----------
    curve : array-like of shape (m, 2)
        Vertices ``(x, y)`` in order; the last one joins back to the first (do
        not repeat the first vertex at the end). The points follow this order.
    n_points : int
        Number of points (>= 1).
    start : {"top", "centroid"}, default="top"
        Point 0: the top-most vertex (smallest ``y``; ties: smallest ``x``), or
        the top-most crossing of the curve with the vertical line through its
        area centroid.

    Returns
    -------
    ndarray of float64, shape (n_points, 2)
        Point ``k`` lies ``k / n_points`` of the perimeter after point 0.

    Examples
    --------
    >>> square = [[0, 0], [4, 0], [4, 4], [0, 4]]   # clockwise on screen (y down)
    >>> resample_closed_curve(square, 4)
    array([[0., 0.],
           [4., 0.],
           [4., 4.],
           [0., 4.]])
    >>> resample_closed_curve(square, 4, start="centroid")
    array([[2., 0.],
           [4., 2.],
           [2., 4.],
           [0., 2.]])
    """
    validate_parameter_constraints(_RESAMPLE_CONSTRAINTS, {"n_points": n_points, "start": start},
                                   caller_name="resample_closed_curve")
    arr = _as_numeric_array(curve, "curve", what="a closed curve of shape (m, 2)")
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0:
        raise ValueError(f"curve must have shape (m, 2) with m >= 1 vertices (x, y), got shape {arr.shape}.")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("curve contains NaN or infinity; vertices must be finite.")
    return _resample(arr, int(n_points), start)


def _resample_top(curves, lengths, ns):
    """:func:`resample_closed_curve` with ``start="top"`` for many curves stored one after
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


def edge_keypoints(maps, resolved, low, high, missing, start):
    """Checked (n, H, W) label maps -> (n, P, 2) points, NaN for absent parts.

    ``resolved`` is ``[(part name, label, n_points), ...]`` in output order;
    ``low``/``high`` are fractions of :data:`STRAIGHT_EDGE`; ``missing`` and
    ``start`` as in :func:`skkp.mask_edge_keypoints`. Arguments are not checked.
    """
    n_total = sum(n for _, _, n in resolved)
    out = np.full((len(maps), n_total, 2), np.nan)
    lo, hi = low * STRAIGHT_EDGE, high * STRAIGHT_EDGE
    # cv2.compare is the fast path, but it reads a 1x1 map as a scalar and fails on it
    use_cv_compare = maps.dtype == np.uint8 and maps.shape[1] * maps.shape[2] > 1
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
