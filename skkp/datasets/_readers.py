"""Readers for real keypoint data: Kaggle facial keypoints, landmark CSVs, iBUG ``.pts``.

Every reader names the file and line of the first bad row. With
``errors="raise"`` (default) that row raises ``ValueError``; with
``errors="skip"`` bad rows are left out, a ``UserWarning`` says how many and why,
and the returned Bunch carries ``n_skipped``. Blank lines are not rows and are
ignored; no other row is ever dropped silently.
"""
import csv
import math
import os
import re
import warnings

import cv2
import numpy as np
from sklearn.utils import Bunch

from ..schemas import KAGGLE_FEATURE_NAMES, KAGGLE_KEYPOINT_NAMES
from ._imread import read_image

_KAGGLE_SIDE = 96
_PERSON_RE = re.compile(r"^(.*)_\d+$")


class _RowError(Exception):
    """A problem with one row; turned into ValueError or a skip by the caller."""


def _check_errors(errors):
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")


class _RowCollector:
    """Turn row problems into ``ValueError`` or record them as skipped rows."""

    def __init__(self, path, errors):
        self.path, self.errors, self.skipped = path, errors, []

    def bad(self, line, message):
        if self.errors == "raise":
            raise ValueError(f"{self.path}, line {line}: {message}")
        self.skipped.append((line, message))

    def finish(self):
        if self.skipped:
            shown = "; ".join(f"line {ln}: {msg}" for ln, msg in self.skipped[:3])
            more = " ..." if len(self.skipped) > 3 else ""
            warnings.warn(f"{self.path}: skipped {len(self.skipped)} bad row(s) ({shown}{more})",
                          UserWarning, stacklevel=3)
        return len(self.skipped)


def _csv_rows(path):
    """Yield ``(line_number, fields)`` for the non-blank records of a CSV file.

    Decoding and CSV syntax problems become ``ValueError`` naming the file and line.
    """
    if not os.path.isfile(path):
        raise ValueError(f"file not found: {path}")
    line = 0
    try:
        with open(path, "r", encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            for fields in reader:
                line = reader.line_num
                if fields and any(s.strip() for s in fields):
                    yield line, fields
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a readable text CSV file (after line {line}): {exc}") from None
    except csv.Error as exc:
        raise ValueError(f"{path}, line {line + 1}: malformed CSV: {exc}") from None


def _parse_float(text, what):
    """Parse one coordinate; an empty field (or 'nan') is missing (NaN)."""
    text = text.strip()
    if not text:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise _RowError(f"{what} is not a number: {text!r}") from None
    if math.isinf(value):
        raise _RowError(f"{what} is infinite: {text!r}")
    return value


def _parse_coords(fields, names):
    return [_parse_float(text, f"column {name!r}") for text, name in zip(fields, names)]


def _parse_pixels(text, n_expected):
    """Parse a Kaggle ``Image`` field of space-separated integers 0..255 (vectorised)."""
    with warnings.catch_warnings():
        # older numpy warns (instead of raising) on trailing garbage
        warnings.simplefilter("error", DeprecationWarning)
        try:
            values = np.fromstring(text, dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning):
            raise _RowError("column 'Image' holds something other than "
                            "space-separated integers") from None
    if values.size != n_expected:
        raise _RowError(f"column 'Image' has {values.size} pixel values, expected {n_expected} "
                        f"({_KAGGLE_SIDE}x{_KAGGLE_SIDE})")
    if values.min() < 0 or values.max() > 255:
        raise _RowError("column 'Image' has pixel values outside 0..255")
    return values.astype(np.uint8).reshape(_KAGGLE_SIDE, _KAGGLE_SIDE)


def load_kaggle_facial_keypoints(path, errors="raise"):
    """Read Kaggle "Facial Keypoints Detection" ``training.csv`` or ``test.csv``.

    ``training.csv`` has 30 keypoint columns (:data:`KAGGLE_FEATURE_NAMES`, empty
    field = not labelled) and ``Image``: 9216 space-separated grey values of a
    96x96 image. ``test.csv`` has ``ImageId,Image``. The layout is told by the header.

    Parameters
    ----------
    path : str or path-like
    errors : {"raise", "skip"}
        What to do with a bad row (wrong number of fields or pixels, text where a
        number belongs, pixels outside 0..255): raise ``ValueError`` naming file
        and line, or skip it with a warning and count it in ``n_skipped``.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``images`` (n, 96, 96) uint8; ``keypoints`` (n, 30) float64 in pixels as
        x0, y0, x1, y1, ... with NaN where missing (``None`` for ``test.csv``);
        ``image_ids`` (n,) int64 (``test.csv`` only, else ``None``);
        ``keypoint_names`` (15 names); ``feature_names`` (30 column names);
        ``n_skipped``. "left" is the subject's left.

    Examples
    --------
    >>> import os, tempfile
    >>> header = ",".join(KAGGLE_FEATURE_NAMES + ("Image",))
    >>> row = ",".join(["30.5", "40"] + [""] * 28 + [" ".join(["7"] * 9216)])
    >>> path = os.path.join(tempfile.mkdtemp(), "training.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write(header + "\\n" + row + "\\n")
    >>> data = load_kaggle_facial_keypoints(path)
    >>> data.images.shape, data.keypoints[0, :3]
    ((1, 96, 96), array([30.5, 40. ,  nan]))
    """
    _check_errors(errors)
    path = os.fspath(path)
    rows = _csv_rows(path)
    try:
        _, header = next(rows)
    except StopIteration:
        raise ValueError(f"{path}: empty file, expected a Kaggle facial keypoints CSV") from None
    header = [h.strip() for h in header]
    train_header = list(KAGGLE_FEATURE_NAMES) + ["Image"]
    if header == train_header:
        is_train = True
    elif header == ["ImageId", "Image"]:
        is_train = False
    else:
        missing = [c for c in train_header if c not in header]
        extra = [c for c in header if c not in train_header]
        raise ValueError(
            f"{path}, line 1: not a Kaggle facial keypoints header; expected the 30 keypoint "
            f"columns then 'Image' (training.csv) or 'ImageId,Image' (test.csv); got "
            f"{len(header)} columns (missing {missing[:3]}, unexpected {extra[:3]})")
    n_fields, n_pixels = len(header), _KAGGLE_SIDE * _KAGGLE_SIDE
    images, targets, collector = [], [], _RowCollector(path, errors)
    for line, fields in rows:
        try:
            if len(fields) != n_fields:
                raise _RowError(f"{len(fields)} fields, expected {n_fields}")
            if is_train:
                target = _parse_coords(fields[:-1], KAGGLE_FEATURE_NAMES)
            else:
                text = fields[0].strip()
                if not text.isdigit():
                    raise _RowError(f"column 'ImageId' is not a non-negative integer: {text!r}")
                target = int(text)
            image = _parse_pixels(fields[-1], n_pixels)
        except _RowError as exc:
            collector.bad(line, str(exc))
            continue
        images.append(image)
        targets.append(target)
    n_skipped = collector.finish()
    images = (np.stack(images) if images
              else np.zeros((0, _KAGGLE_SIDE, _KAGGLE_SIDE), dtype=np.uint8))
    if is_train:
        keypoints = np.array(targets, dtype=np.float64).reshape(len(targets), len(KAGGLE_FEATURE_NAMES))
        image_ids = None
    else:
        keypoints, image_ids = None, np.array(targets, dtype=np.int64)
    return Bunch(images=images, keypoints=keypoints, image_ids=image_ids,
                 keypoint_names=KAGGLE_KEYPOINT_NAMES, feature_names=KAGGLE_FEATURE_NAMES,
                 n_skipped=n_skipped)


def person_id(filename):
    """Person of an image file named ``<Person_Name>_<frame>.<ext>``.

    A trailing ``_<digits>`` before the extension is removed; any directory part
    is ignored. A name without that pattern is its own person.

    Examples
    --------
    >>> person_id("Warren_Buffett_12.jpg"), person_id("faces/2382SJ8.jpg")
    ('Warren_Buffett', '2382SJ8')
    """
    stem = os.path.splitext(os.path.basename(os.fspath(filename)))[0]
    match = _PERSON_RE.match(stem)
    return match.group(1) if match else stem


def _looks_numeric(fields):
    try:
        [float(s) for s in fields]
    except ValueError:
        return False
    return True


def load_landmarks_csv(csv_path, image_dir, gray=False, errors="raise", duplicates="keep"):
    """Read images and landmarks listed in a CSV file (the ytf68 layout).

    The first line is a header such as ``image,x0,y0,x1,y1,...``; each row then
    names an image file (relative to ``image_dir``) followed by the x, y pixel
    coordinates of K points. Empty coordinate fields are missing (NaN). An image
    named on several rows with different points has conflicting labels (ytf68 has
    584 such names, whose rows disagree by 8 px on the nose: one row was made for
    another crop of the image); ``duplicates`` says what to do with them.

    Parameters
    ----------
    csv_path : str or path-like
    image_dir : str or path-like
        Folder the file names are relative to.
    gray : bool
        Read images as (h, w) grey instead of (h, w, 3) RGB.
    errors : {"raise", "skip"}
        What to do with a bad row (wrong number of fields, text where a number
        belongs, missing or unreadable image): raise ``ValueError`` naming file
        and line, or skip it with a warning and count it in ``n_skipped``.
    duplicates : {"keep", "drop"}, default="keep"
        Rows of an image named again with different points: keep them all with a
        warning giving the count and the first such name, or drop every row of
        those names (counted in ``n_conflicting``). Rows that repeat the same
        points are kept either way.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``images`` list of uint8 arrays (sizes may differ); ``keypoints`` (n, 2K)
        float64; ``filenames`` (n,) str; ``groups`` (n,) str, :func:`person_id`
        of each file (use with ``GroupKFold``); ``n_skipped``; ``n_conflicting``,
        the rows of names with conflicting points (kept or dropped).

    Notes
    -----
    Images are read with ``cv2.imread`` ignoring any EXIF orientation tag, so
    pixels are in stored order, as landmark tools usually annotate them.

    Examples
    --------
    >>> import os, tempfile, cv2, numpy as np
    >>> root = tempfile.mkdtemp()
    >>> _ = cv2.imwrite(os.path.join(root, "Ann_Lee_1.png"), np.zeros((20, 30, 3), np.uint8))
    >>> with open(os.path.join(root, "points.csv"), "w") as f:
    ...     _ = f.write("image,x0,y0,x1,y1\\nAnn_Lee_1.png,3,4,10,\\n")
    >>> data = load_landmarks_csv(os.path.join(root, "points.csv"), root)
    >>> data.images[0].shape, data.keypoints, data.groups
    ((20, 30, 3), array([[ 3.,  4., 10., nan]]), array(['Ann_Lee'], dtype='<U7'))
    """
    _check_errors(errors)
    if duplicates not in ("keep", "drop"):
        raise ValueError(f"duplicates must be 'keep' or 'drop', got {duplicates!r}.")
    csv_path, image_dir = os.fspath(csv_path), os.fspath(image_dir)
    if not os.path.isdir(image_dir):
        raise ValueError(f"image_dir is not a folder: {image_dir}")
    rows = _csv_rows(csv_path)
    try:
        _, header = next(rows)
    except StopIteration:
        raise ValueError(f"{csv_path}: empty file, expected a header line "
                         "'image,x0,y0,...' and rows") from None
    if len(header) < 3 or (len(header) - 1) % 2:
        raise ValueError(f"{csv_path}, line 1: header must be an image-name column followed by "
                         f"x,y pairs; got {len(header)} columns")
    if _looks_numeric(header[1:]):
        raise ValueError(f"{csv_path}, line 1: looks like data; a header line such as "
                         "'image,x0,y0,...' is required")
    names = [h.strip() for h in header[1:]]
    flag = (cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    images, keypoints, filenames = [], [], []
    collector = _RowCollector(csv_path, errors)
    for line, fields in rows:
        try:
            if len(fields) != len(header):
                raise _RowError(f"{len(fields)} fields, expected {len(header)}")
            name = fields[0].strip()
            if not name:
                raise _RowError("empty image file name")
            coords = _parse_coords(fields[1:], names)
            image_path = os.path.join(image_dir, name)
            if not os.path.isfile(image_path):
                raise _RowError(f"image file not found: {image_path}")
            try:
                image = read_image(image_path, flag)
            except ValueError as exc:
                raise _RowError(str(exc)) from None
        except _RowError as exc:
            collector.bad(line, str(exc))
            continue
        if not gray:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        images.append(image)
        keypoints.append(coords)
        filenames.append(name)
    n_skipped = collector.finish()
    keypoints = np.array(keypoints, dtype=np.float64).reshape(len(keypoints), len(names))
    filenames = np.array(filenames, dtype=str)
    conflicting = _conflicting_rows(filenames, keypoints)
    if conflicting.any() and duplicates == "drop":
        keep = np.flatnonzero(~conflicting)
        images, keypoints, filenames = [images[i] for i in keep], keypoints[keep], filenames[keep]
    elif conflicting.any():
        first = filenames[np.argmax(conflicting)]
        warnings.warn(f"{csv_path}: {len(set(filenames[conflicting]))} image names (e.g. {first}) are on more than "
                      f"one row with different points: those {int(conflicting.sum())} rows label the same image "
                      f"differently. Pass duplicates='drop' to leave them out.", UserWarning, stacklevel=2)
    groups = np.array([person_id(f) for f in filenames], dtype=str)
    return Bunch(images=images, keypoints=keypoints, filenames=filenames, groups=groups,
                 n_skipped=n_skipped, n_conflicting=int(conflicting.sum()))


def _conflicting_rows(filenames, keypoints):
    """Mask of the rows whose file name is on another row with different points (NaN equal to NaN)."""
    out = np.zeros(len(filenames), dtype=bool)
    rows = {}
    for i, name in enumerate(filenames):
        rows.setdefault(name, []).append(i)
    for idx in rows.values():
        if len(idx) > 1:
            first = keypoints[idx[0]]
            if not all(np.array_equal(keypoints[i], first, equal_nan=True) for i in idx[1:]):
                out[idx] = True
    return out
