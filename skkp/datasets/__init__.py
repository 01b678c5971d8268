"""Synthetic data generators and readers for real data sets.

The keypoint schemas and class lists re-exported here live in :mod:`skkp.schemas`.
"""
from ..schemas import (BISENET_CLASSES, CELEBAMASK_CLASSES, IBUG68_NOSE, IBUG68_NOSE_SCHEMA, IBUG68_SCHEMA,
                       KAGGLE_FEATURE_NAMES, KAGGLE_SCHEMA, KEYPOINT_SCHEMAS, NOSE_SCHEMAS, KeypointSchema,
                       get_nose_schema)
from ._celeba import convert_class_order, load_celebamask_hq
from ._crop import crop_faces, uncrop_keypoints
from ._faces import make_faces
from ._landmark_masks import (LANDMARK_PAINT_ORDER, landmarks68_template, landmarks_to_mask,
                              landmarks_to_masks)
from ._noses import make_noses
from ._pts import read_pts, write_pts
from ._readers import load_kaggle_facial_keypoints, load_landmarks_csv, person_id

__all__ = ["CELEBAMASK_CLASSES", "IBUG68_NOSE_SCHEMA", "KEYPOINT_SCHEMAS"]
__all__ += ["KeypointSchema", "NOSE_SCHEMAS", "get_nose_schema", "make_noses"]
__all__ += ["LANDMARK_PAINT_ORDER", "landmarks68_template", "landmarks_to_mask",
            "landmarks_to_masks", "make_faces"]
__all__ += ["BISENET_CLASSES", "IBUG68_NOSE", "IBUG68_SCHEMA", "KAGGLE_FEATURE_NAMES",
            "KAGGLE_SCHEMA", "convert_class_order", "crop_faces", "load_celebamask_hq",
            "load_kaggle_facial_keypoints", "load_landmarks_csv", "person_id", "read_pts",
            "uncrop_keypoints", "write_pts"]
