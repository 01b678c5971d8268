"""Every named layout skkp knows: keypoint schemas, face-parsing class lists, and their checks.

Numpy only; imports nothing else from skkp, so any module may use it.

- :class:`KeypointSchema`: names, left/right flip pairs and the normalising pair
  of a set of keypoints; :data:`KEYPOINT_SCHEMAS` is the registry and
  :func:`get_schema` its lookup.
- :data:`CELEBAMASK_CLASSES` and :data:`BISENET_CLASSES`: the two 19-class orders
  of face parsing in circulation; :data:`IGNORE_INDEX` marks unlabelled pixels;
  :func:`check_class_names` is the one check of a class list.
- :func:`infer_flip_pairs` (keypoints) and :func:`flip_lut` (class labels): what a
  horizontal flip swaps.
"""
import warnings
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

__all__ = ["BISENET_CLASSES", "CELEBAMASK_CLASSES", "IBUG68_NOSE", "IBUG68_NOSE_SCHEMA", "IBUG68_SCHEMA",
           "IGNORE_INDEX", "KAGGLE_FEATURE_NAMES", "KAGGLE_SCHEMA", "KEYPOINT_SCHEMAS", "KeypointSchema",
           "NOSE_SCHEMAS", "check_class_names", "flip_lut", "get_nose_schema", "get_schema",
           "infer_flip_pairs"]

#: Label of pixels that are not labelled: ignored by losses and metrics, never predicted.
IGNORE_INDEX = 255


# ----------------------------------------------------------------------------- keypoint schemas
@dataclass(frozen=True)
class KeypointSchema:
    """Names and symmetry of a set of keypoints.

    Parameters
    ----------
    name : str
        Short identifier of the schema.
    names : tuple of str
        One name per keypoint, in the column order of ``y`` (``x0, y0, x1, y1, ...``).
        ``left_*`` is the subject's left, which appears on the image's right.
    flip_pairs : tuple of (int, int)
        Index pairs exchanged by a horizontal flip.
    normalizer : (int, int) or None
        Indices of the two points whose distance normalises errors (NME).
    description : str
        One line saying what the schema is for.

    Examples
    --------
    >>> s = KeypointSchema("eyes", ("left_eye", "right_eye"), ((0, 1),), (0, 1), "two eyes")
    >>> s.n_keypoints, s.flip_permutation()
    (2, [1, 0])
    """

    name: str
    names: Tuple[str, ...]
    flip_pairs: Tuple[Tuple[int, int], ...] = ()
    normalizer: Optional[Tuple[int, int]] = None
    description: str = ""

    def __post_init__(self):
        # store plain tuples so the schema is hashable and cannot be changed through a list
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "flip_pairs", tuple(tuple(int(i) for i in p)
                                                     for p in self.flip_pairs))
        if self.normalizer is not None:
            object.__setattr__(self, "normalizer", tuple(int(i) for i in self.normalizer))
        k = len(self.names)
        if k == 0 or len(set(self.names)) != k:
            raise ValueError(f"names must be non-empty and unique, got {self.names!r}")
        used = [i for pair in self.flip_pairs for i in pair]
        if any(len(p) != 2 for p in self.flip_pairs) or len(set(used)) != len(used) or \
                any(not 0 <= i < k for i in used):
            raise ValueError(f"flip_pairs must be disjoint index pairs in [0, {k}), got "
                             f"{self.flip_pairs!r}")
        norm = self.normalizer
        if norm is not None and (len(norm) != 2 or norm[0] == norm[1]
                                 or any(not 0 <= i < k for i in norm)):
            raise ValueError(f"normalizer must be two distinct indices in [0, {k}) or None, got "
                             f"{self.normalizer!r}")

    @property
    def n_keypoints(self):
        """Number of keypoints ``K`` (``y`` has ``2K`` columns)."""
        return len(self.names)

    def subset(self, indices, name, normalizer=None, description=""):
        """A schema of the points ``indices`` of this one (pairs kept when both ends are kept).

        Examples
        --------
        >>> s = KeypointSchema("abc", ("a", "l", "r"), ((1, 2),))
        >>> s.subset([1, 2], "lr").flip_pairs
        ((0, 1),)
        """
        indices = [int(i) for i in indices]
        where = {old: new for new, old in enumerate(indices)}
        pairs = tuple((where[i], where[j]) for i, j in self.flip_pairs if i in where and j in where)
        return KeypointSchema(name, tuple(self.names[i] for i in indices), pairs, normalizer,
                              description or f"points {indices} of {self.name}")

    def flip_permutation(self):
        """Keypoint order after a horizontal flip: ``points_flipped[i] = points[perm[i]]``."""
        perm = list(range(self.n_keypoints))
        for i, j in self.flip_pairs:
            perm[i], perm[j] = j, i
        return perm


#: The 15 Kaggle facial keypoints in file order; "left" is the subject's left.
KAGGLE_KEYPOINT_NAMES = (
    "left_eye_center", "right_eye_center", "left_eye_inner_corner", "left_eye_outer_corner",
    "right_eye_inner_corner", "right_eye_outer_corner", "left_eyebrow_inner_end",
    "left_eyebrow_outer_end", "right_eyebrow_inner_end", "right_eyebrow_outer_end",
    "nose_tip", "mouth_left_corner", "mouth_right_corner", "mouth_center_top_lip",
    "mouth_center_bottom_lip",
)
#: Point-index pairs that swap under a horizontal flip.
KAGGLE_FLIP_PAIRS = ((0, 1), (2, 4), (3, 5), (6, 8), (7, 9), (11, 12))


def _ibug68_names():
    names = [f"jaw_{i:02d}" for i in range(17)]                 # 0-16, image left to right
    names += [f"r_brow_{i}" for i in range(5)]                  # 17-21 (subject's right)
    names += [f"l_brow_{i}" for i in range(5)]                  # 22-26
    names += [f"nose_bridge_{i}" for i in range(4)]             # 27-30, 30 = tip
    names += [f"nose_lower_{i}" for i in range(5)]              # 31-35, 33 = subnasale
    names += [f"r_eye_{i}" for i in range(6)]                   # 36-41, 36 = outer corner
    names += [f"l_eye_{i}" for i in range(6)]                   # 42-47, 45 = outer corner
    names += [f"outer_lip_{i:02d}" for i in range(12)]          # 48-59, 48/54 = corners
    names += [f"inner_lip_{i}" for i in range(8)]               # 60-67
    return tuple(names)


#: The 68 iBUG / 300-W point names; ``l_*``/``r_*`` are the subject's left/right.
IBUG68_NAMES = _ibug68_names()
#: Mirror pairs of the 300-W 68-point layout (0-based indices).
IBUG68_FLIP_PAIRS = (
    tuple((i, 16 - i) for i in range(8))                        # jaw
    + tuple((17 + i, 26 - i) for i in range(5))                 # brows
    + ((31, 35), (32, 34))                                      # nostrils
    + ((36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46))  # eyes
    + ((48, 54), (49, 53), (50, 52), (59, 55), (58, 56))        # outer lip
    + ((60, 64), (61, 63), (67, 65))                            # inner lip
)
#: The 9 nose points (bridge 27-30, lower nose 31-35).
IBUG68_NOSE = tuple(range(27, 36))

#: Kaggle's 15 points; errors normalised by the inter-pupil distance (eye centres,
#: the pair labelled in nearly every row).
KAGGLE_SCHEMA = KeypointSchema(
    "kaggle15", KAGGLE_KEYPOINT_NAMES, KAGGLE_FLIP_PAIRS, (0, 1),
    "Kaggle Facial Keypoints Detection: 15 points on 96x96 grey faces")
#: iBUG 300-W 68 points; errors normalised by the outer eye corners 36 and 45.
IBUG68_SCHEMA = KeypointSchema(
    "ibug68", IBUG68_NAMES, IBUG68_FLIP_PAIRS, (36, 45),
    "iBUG 300-W 68 landmarks: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67")
#: The 30 keypoint columns of Kaggle's ``training.csv``, in file order.
KAGGLE_FEATURE_NAMES = tuple(f"{name}_{c}" for name in KAGGLE_KEYPOINT_NAMES for c in "xy")

#: The 9 iBUG nose points 27-35 as a schema. Its own normaliser is the nose width
#: (points 31 and 35, indices 4 and 8 here); the benchmarks normalise nose errors by the
#: full face's outer eye distance where all 68 points are known.
IBUG68_NOSE_SCHEMA = IBUG68_SCHEMA.subset(IBUG68_NOSE, "ibug68_nose", normalizer=(4, 8),
                                          description="iBUG 68 nose points 27-35")

#: The nose views of the reference nose study, by view name.
NOSE_SCHEMAS = {
    "frontal": KeypointSchema(
        "nose_frontal",
        ("nasion", "pronasale", "left_alare", "right_alare", "left_nostril", "right_nostril",
         "subnasale"),
        flip_pairs=((2, 3), (4, 5)), normalizer=(2, 3),
        description="nose seen from the front: bridge top, tip, alar wings, nostrils, base"),
    "side": KeypointSchema(
        "nose_side", ("nasion", "dorsum", "pronasale", "columella", "subnasale"),
        flip_pairs=(), normalizer=(0, 2),
        description="nose in profile (facing the image's right), points on the silhouette"),
    "bottom": KeypointSchema(
        "nose_bottom",
        ("pronasale", "columella", "subnasale", "left_nostril", "right_nostril",
         "left_subalare", "right_subalare", "left_alare", "right_alare"),
        flip_pairs=((3, 4), (5, 6), (7, 8)), normalizer=(7, 8),
        description="nose base seen from below (tip at the top): nostrils, columella, alae"),
}

#: Every named keypoint layout, by name; ``NoseKeypointRegressor(schema=NAME)`` uses them.
KEYPOINT_SCHEMAS = {s.name: s for s in (*NOSE_SCHEMAS.values(), KAGGLE_SCHEMA, IBUG68_SCHEMA,
                                        IBUG68_NOSE_SCHEMA)}


def get_nose_schema(view):
    """Return the :class:`KeypointSchema` of a nose ``view``.

    Parameters
    ----------
    view : {"frontal", "side", "bottom"}

    Returns
    -------
    schema : KeypointSchema

    Examples
    --------
    >>> get_nose_schema("frontal").names[:2]
    ('nasion', 'pronasale')
    """
    if not isinstance(view, str) or view not in NOSE_SCHEMAS:
        raise ValueError(f"view must be one of {sorted(NOSE_SCHEMAS)}, got {view!r}")
    return NOSE_SCHEMAS[view]


def get_schema(schema, n_keypoints=None, name="schema"):
    """Look a schema up by name (or pass one through), checking its number of points.

    Parameters
    ----------
    schema : str, KeypointSchema or None
        A key of :data:`KEYPOINT_SCHEMAS`, a schema, or None: the only registered
        schema with ``n_keypoints`` points (None when there is no single one).
    n_keypoints : int or None
        Number of points the data has; checked against the schema when given.
    name : str
        Argument name used in error messages.

    Returns
    -------
    KeypointSchema or None

    Examples
    --------
    >>> get_schema("ibug68_nose").n_keypoints
    9
    >>> get_schema(None, 7).name
    'nose_frontal'
    """
    if schema is None:
        matches = [s for s in KEYPOINT_SCHEMAS.values() if s.n_keypoints == n_keypoints]
        return matches[0] if len(matches) == 1 else None
    if isinstance(schema, str):
        if schema not in KEYPOINT_SCHEMAS:
            raise ValueError(f"{name} must be one of {sorted(KEYPOINT_SCHEMAS)} or a KeypointSchema, "
                             f"got {schema!r}.")
        schema = KEYPOINT_SCHEMAS[schema]
    elif not isinstance(schema, KeypointSchema):
        raise TypeError(f"{name} must be a schema name, a KeypointSchema or None, got {type(schema).__name__}.")
    if n_keypoints is not None and schema.n_keypoints != n_keypoints:
        raise ValueError(f"{name} {schema.name!r} has {schema.n_keypoints} keypoints but y has "
                         f"{n_keypoints}.")
    return schema


def infer_flip_pairs(y, tol=0.2):
    """Left/right keypoint pairs read off the mirror symmetry of the mean shape.

    The mean of the shapes, each centred and scaled to unit size (NaN-aware),
    is mirrored about its vertical centre line and
    each mirrored point is matched to the nearest point. When the matching is
    an involution (i -> j -> i) and every match lies within ``tol`` times the
    shape's RMS radius, the shape is left/right symmetric and the matched
    pairs (i != j) are returned; otherwise ``()``, meaning "do not flip".

    Parameters
    ----------
    y : ndarray of shape (n, 2K)
    tol : float

    Returns
    -------
    tuple of (int, int)

    Examples
    --------
    >>> y = np.array([[10.0, 10.0, 30.0, 10.0, 20.0, 25.0]])  # two eyes and a nose tip
    >>> infer_flip_pairs(y)
    ((0, 1),)
    """
    shapes = np.asarray(y, dtype=np.float64).reshape(len(y), -1, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows or columns
        # each shape centred and scaled to unit RMS radius first, so position and size do not matter
        shapes = shapes - np.nanmean(shapes, axis=1, keepdims=True)
        shapes = shapes / np.sqrt(np.nanmean((shapes ** 2).sum(axis=2), axis=1))[:, None, None]
        pts = np.nanmean(shapes, axis=0)
    k = len(pts)
    if k < 2 or np.isnan(pts).any():
        return ()
    centre = pts.mean(axis=0)
    radius = np.sqrt(((pts - centre) ** 2).sum(axis=1).mean())
    mirrored = pts.copy()
    mirrored[:, 0] = 2 * centre[0] - pts[:, 0]
    dist = np.linalg.norm(mirrored[:, None] - pts[None], axis=-1)
    match = dist.argmin(axis=1)
    if radius == 0 or not (match[match] == np.arange(k)).all() or dist[np.arange(k), match].max() > tol * radius:
        return ()
    return tuple((i, int(j)) for i, j in enumerate(match) if i < j)


# ----------------------------------------------------------------------------- parsing classes
#: The 19 CelebAMask-HQ classes in the official order. ``l_*`` is the subject's
#: left, which appears on the image's right.
CELEBAMASK_CLASSES = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow",
    "l_ear", "r_ear", "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l",
    "neck", "cloth",
)
#: Class order of face-parsing.PyTorch (BiSeNet) checkpoints: same 19 names as
#: :data:`CELEBAMASK_CLASSES`, other indices.
BISENET_CLASSES = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear",
    "ear_r", "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)


def check_class_names(classes, name="classes", max_classes=IGNORE_INDEX):
    """The one check of a list of class names (label ``i`` is ``classes[i]``).

    Parameters
    ----------
    classes : sequence of str
        Background first; between 2 and ``max_classes`` unique names.
    name : str
        Argument name used in error messages.
    max_classes : int
        Most names allowed (255 by default: label 255 is :data:`IGNORE_INDEX`).

    Returns
    -------
    list of str
        A new list; ``classes`` is not modified.

    Raises
    ------
    TypeError
        When ``classes`` is not a sequence of str.
    ValueError
        When it holds fewer than 2 or more than ``max_classes`` names, or repeats one.

    Examples
    --------
    >>> check_class_names(("background", "skin"))
    ['background', 'skin']
    """
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__len__") or not hasattr(classes, "__iter__"):
        raise TypeError(f"{name} must be a sequence of class names (index = label value), got {classes!r}.")
    names = list(classes)
    if not all(isinstance(c, str) for c in names):
        bad = next(c for c in names if not isinstance(c, str))
        raise TypeError(f"{name} must be a sequence of str class names, got {type(bad).__name__} {bad!r}.")
    if not 2 <= len(names) <= max_classes:
        raise ValueError(f"{name} must hold between 2 and {max_classes} names (background first), "
                         f"got {len(names)}.")
    if len(set(names)) != len(names):
        dup = sorted({c for c in names if names.count(c) > 1})
        raise ValueError(f"{name} must be unique names; repeated: {dup}.")
    return names


def flip_lut(classes, ignore_index=IGNORE_INDEX):
    """Label lookup table for a horizontal flip: swaps ``l_*`` and ``r_*`` classes.

    Class ``l_x`` is paired with ``r_x`` (and ``left_x`` with ``right_x``) when
    both names are present; all other labels, ``ignore_index`` included, map to
    themselves. CelebAMask-HQ's ``ear_r`` (earring) and ``neck_l`` (necklace) are
    not sides and stay as they are.

    Parameters
    ----------
    classes : sequence of str
        Class names; position = label value.
    ignore_index : int, default=255
        Kept unchanged (every label not in ``classes`` is).

    Returns
    -------
    lut : ndarray of shape (256,), uint8
        ``lut[labels]`` relabels a flipped uint8 label map.

    Examples
    --------
    >>> lut = flip_lut(["background", "skin", "l_eye", "r_eye"])
    >>> lut[[0, 1, 2, 3, 255]]
    array([  0,   1,   3,   2, 255], dtype=uint8)
    """
    names = [str(c) for c in classes]
    if len(names) > 255:
        raise ValueError(f"classes must hold at most 255 names (label 255 is reserved); got {len(names)}")
    index = {name: i for i, name in enumerate(names)}
    lut = np.arange(256, dtype=np.uint8)
    for left, right in (("l_", "r_"), ("left_", "right_")):
        for name, i in index.items():
            if name.startswith(left):
                j = index.get(right + name[len(left):])
                if j is not None:
                    lut[i], lut[j] = j, i
    return lut
