"""Synthetic data generators, keypoint schemas and readers for real data sets."""
from ._faces import CELEBAMASK_CLASSES

__all__ = ["CELEBAMASK_CLASSES"]
