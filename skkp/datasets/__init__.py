"""Synthetic data generators, keypoint schemas and readers for real data sets."""
from ._faces import CELEBAMASK_CLASSES, make_faces
from ._noses import NOSE_SCHEMAS, get_nose_schema, make_noses
from ._schemas import KeypointSchema
from ._landmark_masks import (LANDMARK_PAINT_ORDER, landmarks68_template, landmarks_to_mask,
                              landmarks_to_masks)
from ._celeba import BISENET_CLASSES, convert_class_order, load_celebamask_hq
from ._crop import crop_faces, uncrop_keypoints
from ._pts import read_pts, write_pts
from ._readers import (IBUG68_NOSE, IBUG68_SCHEMA, KAGGLE_FEATURE_NAMES, KAGGLE_SCHEMA,
                       load_kaggle_facial_keypoints, load_landmarks_csv, person_id)

#: The 9 nose points 27-35 of the iBUG 68 layout (bridge 27-30, lower nose 31-35);
#: errors are normalised by the outer eye distance of the full face where known.
IBUG68_NOSE_SCHEMA = IBUG68_SCHEMA.subset(IBUG68_NOSE, "ibug68_nose", normalizer=(4, 8),
                                          description="iBUG 68 nose points 27-35")

#: Every named keypoint layout, by name; ``NoseKeypointRegressor(schema=NAME)`` uses them.
KEYPOINT_SCHEMAS = {s.name: s for s in (*NOSE_SCHEMAS.values(), KAGGLE_SCHEMA, IBUG68_SCHEMA,
                                        IBUG68_NOSE_SCHEMA)}

__all__ = ["CELEBAMASK_CLASSES", "IBUG68_NOSE_SCHEMA", "KEYPOINT_SCHEMAS"]
__all__ += ["KeypointSchema", "NOSE_SCHEMAS", "get_nose_schema", "make_noses"]
__all__ += ["LANDMARK_PAINT_ORDER", "landmarks68_template", "landmarks_to_mask",
            "landmarks_to_masks", "make_faces"]
__all__ += ["BISENET_CLASSES", "IBUG68_NOSE", "IBUG68_SCHEMA", "KAGGLE_FEATURE_NAMES",
            "KAGGLE_SCHEMA", "convert_class_order", "crop_faces", "load_celebamask_hq",
            "load_kaggle_facial_keypoints", "load_landmarks_csv", "person_id", "read_pts",
            "uncrop_keypoints", "write_pts"]
