"""iBUG ``.pts`` landmark files (the 300-W format)."""
import math
import os

import numpy as np

from .._validation import check_point_set


def read_pts(path):
    """Read an iBUG ``.pts`` landmark file into a (K, 2) float64 array.

    The format is ``version: 1``, ``n_points: K``, ``{``, K lines ``x y``, ``}``.
    Values are returned as stored; 300-W files are often treated as 1-based
    (MATLAB) pixel coordinates, so check your source before mixing conventions.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.pts")
    >>> write_pts(path, [[1.5, 2.0], [3.0, 4.25]])
    >>> read_pts(path)
    array([[1.5 , 2.  ],
           [3.  , 4.25]])
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"file not found: {path}")
    try:
        with open(path, "r", encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text .pts file") from None
    n_points, points, state = None, [], "header"
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        where = f"{path}, line {number}"
        if state == "header":
            if text == "{":
                if n_points is None:
                    raise ValueError(f"{where}: '{{' before an 'n_points:' line")
                state = "points"
                continue
            key, sep, value = text.partition(":")
            if not sep:
                raise ValueError(f"{where}: expected 'key: value' or '{{', got {text!r}")
            if key.strip() == "n_points":
                try:
                    n_points = int(value)
                except ValueError:
                    raise ValueError(f"{where}: n_points is not an integer: {value.strip()!r}") from None
                if n_points < 0:
                    raise ValueError(f"{where}: n_points must be >= 0, got {n_points}")
        elif state == "points":
            if text == "}":
                if len(points) != n_points:
                    raise ValueError(f"{where}: {len(points)} points before '}}', "
                                     f"n_points says {n_points}")
                state = "done"
                continue
            parts = text.split()
            try:
                xy = [float(p) for p in parts]
            except ValueError:
                xy = []
            if len(xy) != 2 or not all(math.isfinite(v) for v in xy):
                raise ValueError(f"{where}: expected two finite numbers 'x y', got {text!r}")
            points.append(xy)
        else:
            raise ValueError(f"{where}: unexpected text after '}}': {text!r}")
    if state != "done":
        raise ValueError(f"{path}: incomplete .pts file (no "
                         f"{'{' if state == 'header' else '}'} found)")
    return np.array(points, dtype=np.float64).reshape(-1, 2)


def write_pts(path, points):
    """Write (K, 2) or (2K,) finite points as an iBUG ``.pts`` file.

    Numbers are written with Python's shortest round-trip repr, so
    ``read_pts(path)`` gives back exactly the same float64 values.
    """
    arr = check_point_set(points, "points")
    if np.isnan(arr).any():
        raise ValueError("points must be finite: the .pts format cannot store missing (NaN) points")
    body = "".join(f"{float(x)!r} {float(y)!r}\n" for x, y in arr)
    with open(os.fspath(path), "w", encoding="utf-8") as f:
        f.write(f"version: 1\nn_points: {len(arr)}\n{{\n{body}}}\n")
