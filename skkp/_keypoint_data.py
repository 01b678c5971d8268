"""Data side of the keypoint estimator: the network frame, the training dataset with
paired augmentation, and the callback that logs pixel errors."""
import warnings

import numpy as np
import torch
from skorch.callbacks import Callback

from ._device import sample_epoch_index
from ._frames import from_unit, rescale_points, to_unit  # noqa: F401  (re-exported: the names stay here)
from .augment import random_affine, resize_stack, sample_rng, swap_pairs, warp_image, warp_points


#: Augmentation used when ``augment=True``; a dict passed as ``augment`` overrides these keys.
AUGMENT_DEFAULTS = {"rotation": 15.0, "scale": (0.9, 1.1), "shift": 0.05, "flip": False,
                    "brightness": 0.2, "contrast": 0.2}


def names_from_columns(y, n_keypoints):
    """Keypoint names from a DataFrame's ``NAME_x, NAME_y, ...`` columns, or None."""
    columns = getattr(y, "columns", None)
    if columns is None or n_keypoints is None or len(columns) != 2 * n_keypoints:
        return None
    columns = [str(c) for c in columns]
    names = []
    for cx, cy in zip(columns[0::2], columns[1::2]):
        if not (cx.lower().endswith("_x") and cy.lower().endswith("_y") and cx[:-2] == cy[:-2]):
            return None
        names.append(cx[:-2])
    return names


def augment_config(augment):
    """The augmentation ranges for the ``augment`` parameter: None (off), the defaults, or the
    defaults updated by a dict (unknown keys are an error)."""
    if augment is True:
        return dict(AUGMENT_DEFAULTS)
    if augment is False:
        return None
    unknown = set(augment) - set(AUGMENT_DEFAULTS)
    if unknown:
        raise ValueError(f"augment has unknown keys {sorted(unknown)}; valid keys are {sorted(AUGMENT_DEFAULTS)}.")
    return {**AUGMENT_DEFAULTS, **augment}


# ----------------------------------------------------------------------------- coordinate frames
# to_unit, from_unit and rescale_points live in the torch-free ._frames (the ONNX predictor uses
# them too) and are imported above under the same names.


class KeypointFrame:
    """The network's frame, used alike by fit and predict: inputs resized to
    ``image_size`` and standardised with the statistics of fit, pixel coordinates of
    the user's images <-> [-1, 1] units of the network image (plain feature
    regression: features and targets standardised per column).

    With ``standardise_targets=True`` the network's targets are moreover the
    [-1, 1] units standardised per coordinate with the mean and standard
    deviation of fit (``y_offset``, ``y_scale``): ``output = (unit - y_offset) /
    y_scale``. Direct-regression networks need this: the nose points of a face
    crop spread over about 0.1 of the [-1, 1] range, so in raw units every Adam
    step moves a dense output by more than that spread (docs/keypoints.md, "what
    was wrong"). Heatmap networks answer in units by construction and do not use it.

    Parameters
    ----------
    image_size : int
        Side of the square network input.
    standardise_targets : bool, default=False
        Standardise image keypoint targets per coordinate (see above).

    Examples
    --------
    >>> from skkp._validation import check_images
    >>> checked = check_images(np.zeros((2, 48, 48), np.uint8))
    >>> frame = KeypointFrame(32).fit(checked, np.array([[23.5, 23.5], [0.0, 47.0]]))
    >>> frame.targets(np.array([[23.5, 23.5]]), checked)
    array([[0., 0.]], dtype=float32)
    >>> frame.points(np.array([[0.0, 0.0]]), checked)
    array([[23.5, 23.5]])
    >>> scaled = KeypointFrame(32, standardise_targets=True).fit(checked, np.array([[23.5, 23.5], [0.0, 47.0]]))
    >>> scaled.targets(np.array([[23.5, 23.5], [0.0, 47.0]]), checked)
    array([[ 1., -1.],
           [-1.,  1.]], dtype=float32)
    >>> scaled.points(np.array([[1.0, -1.0]]), checked)
    array([[23.5, 23.5]])
    """

    def __init__(self, image_size, standardise_targets=False):
        self.image_size = int(image_size)
        self.standardise_targets = bool(standardise_targets)

    def fit(self, checked, targets):
        """Record the input statistics (and, for features or with ``standardise_targets``, the
        target scaling) of fit."""
        self._fit_resized(self._resized(checked), checked, targets)
        return self

    def fit_inputs(self, checked, targets, reference=None):
        """:meth:`fit`, then the network inputs of the same images, resizing them once.

        With a ``reference`` frame (of the network being fine-tuned), its input
        statistics are kept (and its target scaling, where it has one) instead."""
        resized = self._resized(checked)
        self._fit_resized(resized, checked, targets)
        if reference is not None:
            self.x_mean, self.x_std = reference.x_mean, reference.x_std
            if reference.y_scale is not None:
                self.y_offset, self.y_scale = reference.y_offset, reference.y_scale
        return self._standardise(resized)

    def _fit_resized(self, data, checked, targets):
        self.kind = checked.kind
        if self.kind == "image":
            self.x_mean, self.x_std = np.float32(data.mean()), np.float32(data.std() or 1.0)
            self.y_offset = self.y_scale = None
            if getattr(self, "standardise_targets", False):
                self.y_offset, self.y_scale = _column_scaling(self._units(targets, checked))
        else:
            self.x_mean = data.mean(axis=0)
            std = data.std(axis=0)
            self.x_std = np.where(std > 0, std, 1.0).astype(np.float32)
            self.y_offset, self.y_scale = _column_scaling(targets)

    def _resized(self, checked):
        if checked.kind != "image":
            return checked.data
        return resize_stack(checked.data[:, 0], self.image_size)[:, None]

    def inputs(self, checked):
        """Network inputs (float32) for checked images or features."""
        return self._standardise(self._resized(checked))

    def _standardise(self, data):
        return ((data - self.x_mean) / self.x_std).astype(np.float32)

    def _units(self, targets, checked):
        """(n, 2K) pixel coordinates of ``checked``'s images -> [-1, 1] units of the network image."""
        size = (self.image_size,) * 2
        return to_unit(rescale_points(targets, checked.image_shape, size), self.image_size)

    def targets(self, targets, checked):
        """(n, 2K) pixel coordinates of ``checked``'s images (or plain targets) -> network outputs."""
        if self.kind == "image":
            targets = self._units(targets, checked)
        if self.y_scale is None:
            return targets.astype(np.float32)
        return ((targets - self.y_offset) / self.y_scale).astype(np.float32)

    def points(self, outputs, checked):
        """Network outputs -> (n, 2K) pixel coordinates of ``checked``'s images (or plain targets)."""
        if self.y_scale is not None:
            outputs = outputs * self.y_scale + self.y_offset
        if self.kind == "image":
            size = (self.image_size,) * 2
            return rescale_points(from_unit(outputs, self.image_size), size, checked.image_shape)
        return outputs

    def target_scaling(self):
        """``(y_offset, y_scale)`` as float32 arrays, or None: how the training dataset turns
        [-1, 1] units into network outputs after augmenting (images only)."""
        if self.kind != "image" or self.y_scale is None:
            return None
        return np.asarray(self.y_offset, np.float32), np.asarray(self.y_scale, np.float32)

    def px_per_unit(self, n_outputs):
        """Pixels (or target units) per network output unit, per output column."""
        if self.kind == "image":
            scale = 1.0 if self.y_scale is None else np.asarray(self.y_scale, np.float64)
            return np.full(n_outputs, self.image_size / 2.0) * scale
        return self.y_scale


def _column_scaling(targets):
    """Per-column ``(mean, std)`` of ``targets`` ignoring NaN, with 0 for an unlabelled column and
    1 for a constant one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column never labelled
        mean, std = np.nan_to_num(np.nanmean(targets, axis=0)), np.nan_to_num(np.nanstd(targets, axis=0))
    return mean, np.where(std > 0, std, 1.0)


# ----------------------------------------------------------------------------- data
class KeypointDataset(torch.utils.data.Dataset):
    """Images and targets for training, with optional paired augmentation.

    One affine matrix per sample and epoch moves the image and its keypoints
    together; a flip also swaps left/right keypoint pairs. The random draws
    depend only on ``(seed, epoch, index)``, so they are reproducible with any
    number of DataLoader workers.

    Parameters
    ----------
    X : ndarray (n, 1, S, S) or (n, p), float32
        Standardised network inputs.
    y : ndarray (n, D), float32
        Targets as the network outputs them (NaN where unlabelled): [-1, 1] units,
        or with ``target_scaling`` units standardised as ``(unit - offset) / scale``.
    augment : dict or None
        Ranges as in ``AUGMENT_DEFAULTS``; None for no augmentation.
    flip_pairs : sequence of (int, int)
        Keypoint index pairs swapped by a horizontal flip.
    seed : int
    target_scaling : (ndarray, ndarray) or None
        ``(offset, scale)`` of standardised targets
        (:meth:`KeypointFrame.target_scaling`): augmentation moves the points in
        units and standardises them again.
    """

    def __init__(self, X, y, augment=None, flip_pairs=(), seed=0, target_scaling=None):
        self.X, self.y = X, y
        self.augment = augment
        self.flip_pairs = tuple(flip_pairs)
        self.seed = int(seed)
        self.target_scaling = target_scaling
        self.epoch = 0

    def __len__(self):
        return len(self.X)

    def __getitem__(self, key):
        epoch, i = sample_epoch_index(key, len(self.X), self.epoch)
        x, y = self.X[i], self.y[i]
        if self.augment is None:
            return torch.from_numpy(x), torch.from_numpy(y)
        a = self.augment
        rng = sample_rng(self.seed, epoch, i)
        size = x.shape[-1]
        M, flipped = random_affine(rng, size, a["rotation"], a["scale"], a["shift"],
                                   flip=a["flip"] and bool(self.flip_pairs))
        img = warp_image(x[0], M, size)
        units = y.astype(np.float64)
        if self.target_scaling is not None:
            offset, scale = self.target_scaling
            units = units * scale + offset
        pts = warp_points(from_unit(units.reshape(-1, 2), size), M)
        if flipped:
            pts = swap_pairs(pts, self.flip_pairs)
        c = 1.0 + rng.uniform(-a["contrast"], a["contrast"]) if a["contrast"] else 1.0
        b = rng.uniform(-a["brightness"], a["brightness"]) if a["brightness"] else 0.0
        img = (img * np.float32(c) + np.float32(b))[None]
        out = to_unit(pts, size).ravel()
        if self.target_scaling is not None:
            out = (out - offset) / scale
        return torch.from_numpy(img), torch.from_numpy(out.astype(np.float32))


class PixelMAE(Callback):
    """Record ``train_mae_px`` and ``valid_mae_px`` (mean absolute error in pixels
    of the network frame) in the history after each epoch.

    The sums stay on the network's device (float64 total, integer count) and are read once
    per epoch, so on a GPU no batch waits for them."""

    def __init__(self, px_per_unit):
        self.px_per_unit = px_per_unit

    def on_epoch_begin(self, net, **kwargs):
        self._sums = {}
        self._scale = None

    def on_batch_end(self, net, batch, training, y_pred=None, **kwargs):
        if isinstance(y_pred, (tuple, list)):
            y_pred = y_pred[0]  # (coordinates, heatmaps) of a network trained with a heatmap loss
        target = batch[1].to(y_pred.device, non_blocking=True)
        if self._scale is None or self._scale.dtype != y_pred.dtype or self._scale.device != y_pred.device:
            self._scale = torch.as_tensor(self.px_per_unit, dtype=y_pred.dtype, device=y_pred.device)
        mask = ~torch.isnan(target)
        err = (y_pred.detach() - torch.nan_to_num(target)).abs() * self._scale
        # boolean indexing makes a GPU wait (the output size is read back); masking adds the same
        # values in another order, so the CPU keeps indexing and its numbers stay as they were
        total = (torch.where(mask, err, 0.0).sum() if err.is_cuda else err[mask].sum()).double()
        count = mask.sum()
        if training in self._sums:
            self._sums[training][0] += total
            self._sums[training][1] += count
        else:
            self._sums[training] = [total, count]

    def on_epoch_end(self, net, **kwargs):
        for training, key in ((True, "train_mae_px"), (False, "valid_mae_px")):
            if training in self._sums:
                total, count = (float(v) if v.is_floating_point() else int(v) for v in self._sums[training])
                if count:
                    net.history.record(key, total / count)
        self.on_train_end(net)

    def on_train_end(self, net, **kwargs):
        self._sums, self._scale = {}, None  # no device tensors in a pickled model
