"""Synthetic data generators, keypoint schemas and readers for real data sets."""
