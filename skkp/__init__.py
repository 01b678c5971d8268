"""skkp: scikit-learn compatible estimators for facial keypoints.

Public API is re-exported here; see ``docs/`` for the user guide. The estimators
are imported on first use, so ``import skkp`` (and the numpy-only modules
``skkp.schemas``, ``skkp.datasets``, ``skkp.metrics``, ``skkp.edges``) do not
load torch or skorch.
"""
import importlib

from ._version import __version__

#: public name -> module that defines it
_LAZY = {"FaceParser": "parsing", "MaskEdgeKeypoints": "edges", "NoseKeypointRegressor": "keypoints",
         "mask_edge_keypoints": "edges", "save": "io", "load": "io", "FaceKeypointRegressor": "faces",
         "FaceDetector": "detection", "detect_faces": "detection"}

__all__ = ["FaceDetector", "FaceKeypointRegressor", "FaceParser", "MaskEdgeKeypoints", "NoseKeypointRegressor",
           "detect_faces", "load", "mask_edge_keypoints", "save", "__version__"]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
