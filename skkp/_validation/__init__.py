"""The one place that turns user input into checked arrays, with clear messages.

Every check raises ``TypeError`` for a wrong type and ``ValueError`` for a wrong
value, naming the argument and what was expected, before any training starts;
inputs are never modified in place. Numpy only (no torch).

What pixel values mean, for every estimator, plotting and the data helpers
(:func:`pixel_scale`): integer images (uint8 and the other integer types) are on
the 0-255 scale; a float image array whose values all lie in [0, 1] is on the 0-1
scale, any other float array on the 0-255 scale. Values above 255 are an error.
"""
from ._arrays import _as_numeric_array, check_flag, check_groups  # noqa: F401  (the private front door, for skkp modules)
from ._images import (CheckedImages, check_fitted_input, check_images, check_not_single_image, check_parsing_X,
                      pixel_scale)
from ._labels import check_label_maps, check_labels, check_parsing_X_y, check_parsing_y
from ._points import check_keypoint_targets, check_point_set, check_points

__all__ = ["CheckedImages", "check_fitted_input", "check_flag", "check_groups", "check_images", "check_keypoint_targets", "check_label_maps",
           "check_labels", "check_not_single_image", "check_parsing_X", "check_parsing_X_y", "check_parsing_y",
           "check_point_set", "check_points", "pixel_scale"]
