"""Named keypoint schemas: point names, left/right pairs and the error normaliser."""
from dataclasses import dataclass
from typing import Optional, Tuple


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
