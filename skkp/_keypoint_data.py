"""Data side of the keypoint estimator: coordinate frames, the training dataset with
paired augmentation, and the callbacks that feed it and log pixel errors."""
import cv2
import numpy as np
import torch
from skorch.callbacks import Callback

from .augment import random_affine, swap_pairs, warp_image, warp_points


# ----------------------------------------------------------------------------- coordinate frames
def to_unit(points, size):
    """Pixel coordinates of a ``size`` x ``size`` image -> [-1, 1] (pixel edges at +-1)."""
    return (points + 0.5) * (2.0 / size) - 1.0


def from_unit(units, size):
    return (units + 1.0) * (size / 2.0) - 0.5


def rescale_points(y, shape_from, shape_to):
    """Map (n, 2K) pixel coordinates between image frames of (H, W) shapes."""
    out = np.array(y, dtype=np.float64, copy=True)
    (h0, w0), (h1, w1) = shape_from, shape_to
    out[:, 0::2] = (out[:, 0::2] + 0.5) * (w1 / w0) - 0.5
    out[:, 1::2] = (out[:, 1::2] + 0.5) * (h1 / h0) - 0.5
    return out


def resize_images(images, size):
    """(n, 1, H, W) float32 -> (n, 1, size, size)."""
    h, w = images.shape[2:]
    if (h, w) == (size, size):
        return images
    interp = cv2.INTER_AREA if (h > size and w > size) else cv2.INTER_LINEAR
    return np.stack([cv2.resize(im[0], (size, size), interpolation=interp) for im in images])[:, None]


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
        Targets in network units (NaN where unlabelled).
    augment : dict or None
        Ranges as in ``AUGMENT_DEFAULTS``; None for no augmentation.
    flip_pairs : sequence of (int, int)
        Keypoint index pairs swapped by a horizontal flip.
    seed : int
    """

    def __init__(self, X, y, augment=None, flip_pairs=(), seed=0):
        self.X, self.y = X, y
        self.augment = augment
        self.flip_pairs = tuple(flip_pairs)
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        x, y = self.X[i], self.y[i]
        if self.augment is None:
            return torch.from_numpy(x), torch.from_numpy(y)
        a = self.augment
        rng = np.random.RandomState(np.random.SeedSequence([self.seed, self.epoch, i]).generate_state(1)[0])
        size = x.shape[-1]
        M, flipped = random_affine(rng, size, a["rotation"], a["scale"], a["shift"],
                                   flip=a["flip"] and bool(self.flip_pairs))
        img = warp_image(x[0], M, size)
        pts = warp_points(from_unit(y.reshape(-1, 2).astype(np.float64), size), M)
        if flipped:
            pts = swap_pairs(pts, self.flip_pairs)
        c = 1.0 + rng.uniform(-a["contrast"], a["contrast"]) if a["contrast"] else 1.0
        b = rng.uniform(-a["brightness"], a["brightness"]) if a["brightness"] else 0.0
        img = (img * np.float32(c) + np.float32(b))[None]
        return torch.from_numpy(img), torch.from_numpy(to_unit(pts, size).astype(np.float32).ravel())


class SetEpoch(Callback):
    """Tell the training dataset which epoch starts, so augmentation differs per epoch."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, net, **kwargs):
        self.dataset.epoch = len(net.history) - 1


class PixelMAE(Callback):
    """Record ``train_mae_px`` and ``valid_mae_px`` (mean absolute error in pixels
    of the network frame) in the history after each epoch."""

    def __init__(self, px_per_unit):
        self.px_per_unit = px_per_unit

    def on_epoch_begin(self, net, **kwargs):
        self._sums = {True: [0.0, 0], False: [0.0, 0]}

    def on_batch_end(self, net, batch, training, y_pred=None, **kwargs):
        target = batch[1].to(y_pred.device)
        mask = ~torch.isnan(target)
        err = (y_pred.detach() - torch.nan_to_num(target)).abs() * torch.as_tensor(
            self.px_per_unit, dtype=y_pred.dtype, device=y_pred.device)
        self._sums[training][0] += float(err[mask].sum())
        self._sums[training][1] += int(mask.sum())

    def on_epoch_end(self, net, **kwargs):
        for training, key in ((True, "train_mae_px"), (False, "valid_mae_px")):
            total, count = self._sums[training]
            if count:
                net.history.record(key, total / count)
