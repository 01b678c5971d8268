"""skkp: scikit-learn compatible estimators for facial keypoints.

Public API is re-exported here; see ``docs/`` for the user guide.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("skkp")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from .edges import MaskEdgeKeypoints, mask_edge_keypoints
from .keypoints import NoseKeypointRegressor
from .parsing import FaceParser

__all__ = ["FaceParser", "MaskEdgeKeypoints", "NoseKeypointRegressor", "mask_edge_keypoints", "__version__"]
