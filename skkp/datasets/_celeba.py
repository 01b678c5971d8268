"""CelebAMask-HQ reader and conversion between face-parsing class orders."""
import os
import warnings

import cv2
import numpy as np
from sklearn.utils import Bunch

from .._validation import check_labels
from ..schemas import BISENET_CLASSES, CELEBAMASK_CLASSES, IGNORE_INDEX, check_class_names
from ._imread import read_image

_ORDERS = {"celebamask": CELEBAMASK_CLASSES, "bisenet": BISENET_CLASSES}
_IMAGE_DIR = "CelebA-HQ-img"
_MASK_DIR = "CelebAMask-HQ-mask-anno"
_MAPPING = "CelebA-HQ-to-CelebA-mapping.txt"
_PARTITION = "list_eval_partition.txt"
_SPLITS = {"train": 0, "val": 1, "test": 2}


def _order(value, name):
    if isinstance(value, str):
        if value not in _ORDERS:
            raise ValueError(f"{name} must be one of {sorted(_ORDERS)} or a sequence of class "
                             f"names, got {value!r}")
        return _ORDERS[value]
    names = tuple(check_class_names(value, name))
    return names


def convert_class_order(labels, source="celebamask", target="bisenet"):
    """Renumber a label map from one class order to another by class name.

    Parameters
    ----------
    labels : array-like of whole numbers, any shape
        Values are indices into ``source``; 255 (:data:`~skkp.schemas.IGNORE_INDEX`)
        stays 255. Integer, bool or whole-number float arrays
        (:func:`skkp._validation.check_labels`).
    source, target : {"celebamask", "bisenet"} or sequence of str
        Class orders (:data:`CELEBAMASK_CLASSES`, :data:`BISENET_CLASSES`) or
        explicit name lists. Every source class must exist in the target.

    Returns
    -------
    labels : ndarray, same shape, uint8 (a new array).

    Examples
    --------
    >>> import numpy as np
    >>> convert_class_order(np.array([0, 2, 6, 13, 255]))  # nose, l_brow, hair
    array([  0,  10,   2,  17, 255], dtype=uint8)
    """
    src, dst = _order(source, "source"), _order(target, "target")
    missing = [c for c in src if c not in dst]
    if missing:
        raise ValueError(f"classes {missing} of source are not in target {dst}")
    arr = check_labels(labels, len(src), "labels", ignore_index=IGNORE_INDEX)
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lut[:len(src)] = [dst.index(c) for c in src]
    return lut[arr.astype(np.intp)]


def _read_split(root, split):
    """CelebA-HQ indices of ``split`` from the official CelebA partition."""
    mapping, partition = os.path.join(root, _MAPPING), os.path.join(root, _PARTITION)
    for path in (mapping, partition):
        if not os.path.isfile(path):
            raise ValueError(f"split={split!r} needs {_MAPPING} and {_PARTITION} in root; "
                             f"not found: {path}")
    part_of = {}
    with open(partition, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise ValueError(f"{partition}, line {line_no}: expected '<file> 0|1|2', "
                                 f"got {line.strip()!r}")
            part_of[fields[0]] = int(fields[1])
    wanted = set()
    with open(mapping, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.split()
            if not fields or (line_no == 1 and fields[0] == "idx"):
                continue
            if len(fields) != 3 or not fields[0].isdigit():
                raise ValueError(f"{mapping}, line {line_no}: expected 'idx orig_idx orig_file', "
                                 f"got {line.strip()!r}")
            if fields[2] not in part_of:
                raise ValueError(f"{mapping}, line {line_no}: {fields[2]} is not in {partition}")
            if part_of[fields[2]] == _SPLITS[split]:
                wanted.add(int(fields[0]))
    return wanted


def _read_gray(path):
    return read_image(path, cv2.IMREAD_GRAYSCALE)


def _label_map(root, idx, classes):
    """Merge the part masks of image ``idx``; later classes paint over earlier ones."""
    folder = os.path.join(root, _MASK_DIR, str(idx // 2000))
    labels = None
    for value, name in enumerate(classes[1:], start=1):
        path = os.path.join(folder, f"{idx:05d}_{name}.png")
        if not os.path.isfile(path):
            continue  # parts absent from a face have no file
        mask = _read_gray(path)
        if labels is None:
            labels = np.zeros(mask.shape, dtype=np.uint8)
        elif mask.shape != labels.shape:
            raise ValueError(f"mask {path} has shape {mask.shape}, other masks of image {idx} "
                             f"have {labels.shape}")
        labels[mask > 0] = value
    if labels is None:  # none of the selected parts: size from any mask of this image
        for name in CELEBAMASK_CLASSES[1:]:
            path = os.path.join(folder, f"{idx:05d}_{name}.png")
            if os.path.isfile(path):
                return np.zeros(_read_gray(path).shape, dtype=np.uint8)
        raise ValueError(f"no mask files for image {idx} under {folder}")
    return labels


def load_celebamask_hq(root, split=None, size=None, classes=CELEBAMASK_CLASSES, ids=None, errors="raise"):
    """Read CelebAMask-HQ images and merge their part masks into label maps.

    ``root`` holds ``CelebA-HQ-img/<idx>.jpg`` and
    ``CelebAMask-HQ-mask-anno/<idx // 2000>/<idx:05d>_<part>.png`` (one binary
    mask per part, named as the classes). Each mask is read as grey ``> 0`` and
    painted **in class-index order, so a later class overwrites an earlier one**
    where masks overlap (e.g. ``hair`` over ``skin``, ``cloth`` over ``neck``
    with the default order). The label map keeps the mask resolution (512), or
    is resized to ``size`` by nearest neighbour; the image is resized to match.

    Parameters
    ----------
    root : str or path-like
    split : {None, "train", "val", "test"}
        Official CelebA split; needs ``CelebA-HQ-to-CelebA-mapping.txt`` (columns
        idx orig_idx orig_file) and CelebA's ``list_eval_partition.txt`` in root.
    size : int, optional
        Side of the returned square images and label maps.
    classes : sequence of str
        Output class order (checked by :func:`skkp.schemas.check_class_names`);
        ``classes[0]`` is the background, the others name mask files. Parts left
        out become background.
    ids : sequence of int, optional
        Load only these image indices (the full set at 512 px needs ~31 GB).
    errors : {"raise", "skip"}, default="raise"
        What an unreadable or truncated image or mask file does: raise a
        ``ValueError`` naming it, or leave that image out with a ``UserWarning``
        that counts and names the skipped ones (``n_skipped`` in the result).

    Returns
    -------
    data : sklearn.utils.Bunch
        ``images`` (n, H, W, 3) uint8 RGB; ``labels`` (n, H, W) uint8; ``ids``
        (n,) int64 image indices; ``classes``; ``n_skipped``.

    Examples
    --------
    >>> import os, tempfile, cv2, numpy as np
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "CelebA-HQ-img"))
    >>> os.makedirs(os.path.join(root, "CelebAMask-HQ-mask-anno", "0"))
    >>> _ = cv2.imwrite(os.path.join(root, "CelebA-HQ-img", "0.jpg"), np.zeros((32, 32, 3), np.uint8))
    >>> mask = np.zeros((16, 16), np.uint8); mask[4:12, 4:12] = 255
    >>> _ = cv2.imwrite(os.path.join(root, "CelebAMask-HQ-mask-anno", "0", "00000_skin.png"), mask)
    >>> data = load_celebamask_hq(root)
    >>> data.images.shape, data.labels.shape, int(data.labels.sum())
    ((1, 16, 16, 3), (1, 16, 16), 64)
    """
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
    root = os.fspath(root)
    image_dir = os.path.join(root, _IMAGE_DIR)
    if not os.path.isdir(image_dir):
        raise ValueError(f"root must contain a {_IMAGE_DIR} folder, not found: {image_dir}")
    if split is not None and split not in _SPLITS:
        raise ValueError(f"split must be None, 'train', 'val' or 'test', got {split!r}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, (int, np.integer))
                             or size < 1):
        raise ValueError(f"size must be None or a positive integer, got {size!r}")
    classes = tuple(check_class_names(classes, "classes"))
    unknown = [c for c in classes[1:] if c not in CELEBAMASK_CLASSES[1:]]
    if unknown:
        raise ValueError(f"classes must be a background name then CelebAMask-HQ parts "
                         f"{CELEBAMASK_CLASSES[1:]}; got unknown parts {unknown}")
    found = sorted(int(os.path.splitext(f)[0]) for f in os.listdir(image_dir)
                   if f.lower().endswith(".jpg") and os.path.splitext(f)[0].isdigit())
    if ids is not None:
        requested = [int(i) for i in ids]
        absent = sorted(set(requested) - set(found))
        if absent:
            raise ValueError(f"ids not found in {image_dir}: {absent[:5]}")
        found = requested
    if split is not None:
        wanted = _read_split(root, split)
        found = [i for i in found if i in wanted]
    images, labels, kept, skipped = [], [], [], []
    for idx in found:
        path = os.path.join(image_dir, f"{idx}.jpg")
        try:
            image = read_image(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
            label = _label_map(root, idx, classes)
        except ValueError as exc:
            if errors == "raise":
                raise
            skipped.append(f"{idx}: {exc}")
            continue
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        h, w = label.shape
        if size is not None:
            label = cv2.resize(label, (size, size), interpolation=cv2.INTER_NEAREST)
            h = w = size
        if image.shape[:2] != (h, w):
            shrink = image.shape[0] > h or image.shape[1] > w
            image = cv2.resize(image, (w, h),
                               interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        if images and image.shape != images[0].shape:
            raise ValueError(f"image {idx} has masks of size {label.shape}, earlier ones "
                             f"{labels[0].shape}; pass size= to resize them all")
        images.append(image)
        labels.append(label)
        kept.append(idx)
    if skipped:
        warnings.warn(f"load_celebamask_hq skipped {len(skipped)} image(s): {'; '.join(skipped[:3])}"
                      f"{' ...' if len(skipped) > 3 else ''}", UserWarning, stacklevel=2)
    side = size or 512
    return Bunch(
        images=np.stack(images) if images else np.zeros((0, side, side, 3), np.uint8),
        labels=np.stack(labels) if labels else np.zeros((0, side, side), np.uint8),
        ids=np.array(kept, dtype=np.int64), classes=classes, n_skipped=len(skipped))
