"""skkp: scikit-learn compatible estimators for facial keypoints.

Public API is re-exported here; see ``docs/`` for the user guide.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("skkp")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from .keypoints import NoseKeypointRegressor

__all__ = ["NoseKeypointRegressor", "__version__"]
