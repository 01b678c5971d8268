"""Data side of the face parser: images and label maps in the network's frame, the
training dataset with paired augmentation, and the callback that logs held-out mIoU."""
import numpy as np
import torch
from skorch.callbacks import Callback

from ._device import sample_epoch_index
from .augment import random_parsing_transform, resize_stack, sample_rng
from .metrics import mean_iou
from .schemas import IGNORE_INDEX


def to_network_frame(images, labels, size):
    """Checked uint8 images (n, H, W, 3) and label maps (n, H, W) resized to ``size``
    (labels by nearest neighbour); ``labels`` may be None."""
    return resize_stack(images, size), None if labels is None else resize_stack(labels, size, labels=True)


class ParsingDataset(torch.utils.data.Dataset):
    """Images (n, S, S, 3) uint8 and labels (n, S, S) uint8 -> uint8 tensors (S, S, 3) and (S, S).

    The network normalises the images on its device and the loss reads the labels as integers
    (:class:`skkp.resnet.MultiHeadParsingNet`, :class:`skkp.losses.OhemCrossEntropy`), so
    batches cross to the GPU as uint8 and the host does no float work per pixel.

    With ``augment``, sample ``i`` of epoch ``e`` is transformed with a generator
    seeded by ``(seed, e, i)``: reproducible, independent of the batch order.
    Without labels every target is a dummy 0 (prediction).
    """

    def __init__(self, images, labels=None, augment=False, seed=0, lut=None, scale=(0.75, 2.0)):
        self.images = images
        self.labels = labels
        self.augment = augment
        self.seed = int(seed)
        self.lut = lut
        self.scale = scale
        self.epoch = 0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, key):
        epoch, i = sample_epoch_index(key, len(self.images), self.epoch)
        image = self.images[i]
        if self.labels is None:
            return torch.from_numpy(np.ascontiguousarray(image)), torch.zeros((), dtype=torch.uint8)
        labels = self.labels[i]
        if self.augment:
            image, labels = random_parsing_transform(sample_rng(self.seed, epoch, i), image, labels,
                                                     image.shape[0], lut=self.lut, scale=self.scale, flip=True,
                                                     jitter=0.5, ignore_index=IGNORE_INDEX)
            image = np.rint(np.clip(image, 0.0, 255.0)).astype(np.uint8)  # as a saved photo would hold it
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(labels))


class ValidMeanIoU(Callback):
    """Record ``valid_miou`` (mean IoU over classes, from one confusion matrix of the
    validation set, in the network frame) in the history after each epoch.

    The confusion matrix is counted on the network's device (a scatter-add, which unlike
    boolean indexing or a CUDA ``bincount`` needs no host-device synchronisation) and read
    once per epoch."""

    def __init__(self, n_classes):
        self.n_classes = int(n_classes)

    def on_epoch_begin(self, net, **kwargs):
        self._cm = None

    def on_batch_end(self, net, batch, training, y_pred=None, **kwargs):
        if training or y_pred is None or isinstance(y_pred, (tuple, list)):
            return
        target = batch[1].to(y_pred.device, non_blocking=True).long()
        pred = y_pred.argmax(dim=1)
        k = self.n_classes
        # ignored pixels go to an extra bin k * k, dropped at the end of the epoch
        cell = torch.where(target != IGNORE_INDEX, target * k + pred, k * k).flatten()
        if self._cm is None:
            self._cm = torch.zeros(k * k + 1, dtype=torch.int64, device=y_pred.device)
        self._cm.scatter_add_(0, cell, torch.ones_like(cell))

    def on_epoch_end(self, net, **kwargs):
        if self._cm is not None:
            k = self.n_classes
            cm = self._cm[:k * k].reshape(k, k).cpu().numpy()
            net.history.record("valid_miou", float(mean_iou(cm=cm)))
        self._cm = None  # no device tensors in a pickled model

    def on_train_end(self, net, **kwargs):
        self._cm = None
