"""Coordinate frames of the keypoint networks, numpy only (no torch).

Shared by the estimator's :class:`skkp._keypoint_data.KeypointFrame` and by the
torch-free ONNX predictor (:mod:`skkp.onnx`), so both map coordinates alike.
"""
import numpy as np

__all__ = ["from_unit", "rescale_points", "to_unit"]


def to_unit(points, size):
    """Pixel coordinates of a ``size`` x ``size`` image -> [-1, 1] (pixel edges at +-1).

    Examples
    --------
    >>> to_unit(np.array([-0.5, 15.5, 31.5]), 32)
    array([-1.,  0.,  1.])
    """
    return (points + 0.5) * (2.0 / size) - 1.0


def from_unit(units, size):
    """[-1, 1] units -> pixel coordinates of a ``size`` x ``size`` image (inverse of :func:`to_unit`).

    Examples
    --------
    >>> from_unit(np.array([-1.0, 0.0, 1.0]), 32)
    array([-0.5, 15.5, 31.5])
    """
    return (units + 1.0) * (size / 2.0) - 0.5


def rescale_points(y, shape_from, shape_to):
    """Map (n, 2K) pixel coordinates between image frames of (H, W) shapes.

    Examples
    --------
    >>> rescale_points(np.array([[15.5, 7.5]]), (16, 32), (32, 64))
    array([[31.5, 15.5]])
    """
    out = np.array(y, dtype=np.float64, copy=True)
    (h0, w0), (h1, w1) = shape_from, shape_to
    out[:, 0::2] = (out[:, 0::2] + 0.5) * (w1 / w0) - 0.5
    out[:, 1::2] = (out[:, 1::2] + 0.5) * (h1 / h0) - 0.5
    return out
