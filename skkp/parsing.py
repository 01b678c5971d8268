"""FaceParser: per-pixel face parsing with a three-head ResNet18, as a scikit-learn estimator."""
import math
import numbers

import cv2
import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from skorch.callbacks import Callback, LRScheduler
from torch.optim.lr_scheduler import LambdaLR

from ._skorch_utils import isolated_rng, prepare_for_pickle
from ._training import resolve_device
from ._validation import check_parsing_X, check_parsing_X_y
from .augment import normalize_image, random_parsing_transform
from .schemas import flip_lut
from .datasets._faces import CELEBAMASK_CLASSES
from .losses import MultiHeadLoss, OhemCrossEntropy
from .metrics import mean_iou
from .resnet import MultiHeadParsingNet, load_backbone_weights, upsample_bilinear

__all__ = ["FaceParser", "WarmupPolyLR"]

IGNORE_INDEX = 255


class WarmupPolyLR:
    """Learning-rate factor per iteration: warm-up, then poly decay to the last iteration.

    For use as ``torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupPolyLR(...))``
    stepped once per batch. Iteration ``t`` (0-based) gets

    - warm-up, ``t < warmup_steps``: linear ``f0 + (1 - f0) t / w`` or
      exponential ``f0 ** (1 - t / w)``, from ``f0 = warmup_factor`` up to 1;
    - then ``(1 - (t - w) / (total_steps - w)) ** power``, which reaches 0 at
      ``t = total_steps``.

    Parameters
    ----------
    total_steps : int
        Number of iterations of the whole training.
    warmup_steps : int, default=100
    power : float, default=0.9
    warmup : {"linear", "exp"}, default="linear"
    warmup_factor : float, default=0.1
        Factor at iteration 0.

    Examples
    --------
    >>> f = WarmupPolyLR(total_steps=10, warmup_steps=2)
    >>> [round(f(t), 3) for t in (0, 1, 2, 9)]
    [0.1, 0.55, 1.0, 0.154]
    """

    def __init__(self, total_steps, warmup_steps=100, power=0.9, warmup="linear", warmup_factor=0.1):
        if warmup not in ("linear", "exp"):
            raise ValueError(f"warmup must be 'linear' or 'exp'; got {warmup!r}")
        if not 0 < warmup_factor <= 1:
            raise ValueError(f"warmup_factor must be in (0, 1]; got {warmup_factor!r}")
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.power = float(power)
        self.warmup = warmup
        self.warmup_factor = float(warmup_factor)

    def __call__(self, step):
        w, f0 = self.warmup_steps, self.warmup_factor
        if step < w:
            if self.warmup == "linear":
                return f0 + (1.0 - f0) * step / w
            return f0 ** (1.0 - step / w)
        frac = (step - w) / max(self.total_steps - w, 1)
        return max(0.0, 1.0 - frac) ** self.power


class _SGD(torch.optim.SGD):
    """SGD whose weight decay skips 1-D parameters (BatchNorm weights and all biases)."""

    def __init__(self, params, lr, momentum=0.9, weight_decay=5e-4, **kwargs):
        params = list(params)
        if params and not isinstance(params[0], dict):
            params = [{"params": params}]
        groups = []
        for group in params:
            options = {k: v for k, v in group.items() if k != "params"}
            tensors = list(group["params"])
            decay = [p for p in tensors if p.ndim > 1]
            no_decay = [p for p in tensors if p.ndim <= 1]
            if decay:
                groups.append({**options, "params": decay})
            if no_decay:
                groups.append({**options, "params": no_decay, "weight_decay": 0.0})
        super().__init__(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, **kwargs)


class _ParsingDataset(torch.utils.data.Dataset):
    """Images (n, S, S, 3) uint8 and labels (n, S, S) uint8 -> normalised tensors.

    With ``augment``, sample ``i`` of epoch ``e`` is transformed with a generator
    seeded by ``(seed, e, i)``: reproducible, independent of the batch order.
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

    def __getitem__(self, i):
        image = self.images[i]
        if self.labels is None:
            return torch.from_numpy(normalize_image(image)), torch.zeros((), dtype=torch.long)
        labels = self.labels[i]
        if self.augment:
            state = np.random.SeedSequence([self.seed, self.epoch, int(i)]).generate_state(1)
            rng = np.random.RandomState(state)
            image, labels = random_parsing_transform(rng, image, labels, image.shape[0], lut=self.lut,
                                                     scale=self.scale, flip=True, jitter=0.5,
                                                     ignore_index=IGNORE_INDEX)
        return torch.from_numpy(normalize_image(image)), torch.from_numpy(labels.astype(np.int64))


class _EpochSetter(Callback):
    """Tell the training dataset which epoch it is, for per-epoch augmentation seeds."""

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        ds = dataset_train
        while isinstance(ds, torch.utils.data.Subset):
            ds = ds.dataset
        if isinstance(ds, _ParsingDataset):
            ds.epoch = len(net.history)


def _resize_stack(images, size, interpolation):
    """Resize each of (n, h, w[, c]) to (size, size); returns a new array."""
    n, h, w = images.shape[:3]
    if (h, w) == (size, size):
        return np.array(images, copy=True)
    out = np.empty((n, size, size) + images.shape[3:], dtype=images.dtype)
    for i in range(n):
        out[i] = cv2.resize(images[i], (size, size), interpolation=interpolation).reshape(out.shape[1:])
    return out


class FaceParser(TransformerMixin, BaseEstimator):
    """Face parsing: label every pixel of a face image with one of ``classes``.

    A ResNet18 backbone (torchvision-compatible names, optional ImageNet weights
    from a local file) with three heads on stages 2, 3 and 4 whose upsampled
    logits are summed. Training: OHEM cross-entropy on each head and on the sum;
    SGD (momentum 0.9, weight decay 5e-4 except on BatchNorm and bias
    parameters) with a linear warm-up and poly decay stepped per batch; paired
    augmentation (random scale and crop, horizontal flip that swaps left/right
    classes, colour jitter), reseeded per sample and epoch from ``random_state``.

    Images are resized to ``image_size`` x ``image_size`` for the network; the
    logits are resized back (bilinear) so predictions have the input resolution.

    Parameters
    ----------
    image_size : int, default=448
        Side of the square network input, >= 32.
    classes : sequence of str or None, default=None
        Class names, label ``i`` is ``classes[i]``; ``None`` means the 19
        CelebAMask-HQ classes (:data:`skkp.datasets.CELEBAMASK_CLASSES`). Names
        ``l_x``/``r_x`` are swapped by the flip augmentation.
    width : float, default=1.0
        Channel multiplier of the network (0.125-0.5 for quick CPU runs).
    max_epochs : int, default=30
    batch_size : int, default=16
    lr : float, default=1e-2
        Base learning rate of SGD.
    warmup_steps : int, default=100
        Iterations of linear warm-up from ``lr / 10``, capped at half of all
        iterations; then poly decay (power 0.9) to zero at the last iteration.
    ohem_thresh : float, default=0.7
        Pixels whose true class gets a probability below this are "hard".
    min_kept : int or float, default=1/16
        Least number of pixels per batch in the loss; a float is a fraction of
        the labelled pixels of the batch.
    augment : bool, default=True
        Apply the training augmentation.
    scale_range : (float, float), default=(0.75, 2.0)
        Random scale of the augmentation, relative to ``image_size``.
    backbone_weights : str, path-like or None, default=None
        Local torchvision ``resnet18`` state dict (``.pth``) to start from;
        needs ``width=1.0``.
    device : {"auto", "cpu", "cuda"}, default="auto"
    random_state : int, RandomState or None, default=None
        Seeds initialisation, batch order and augmentation. The global NumPy
        and torch random states are left untouched.
    verbose : int, default=0
        skorch's per-epoch table when > 0.
    net_kwargs : dict or None, default=None
        Extra arguments for :class:`skorch.NeuralNet` (``callbacks`` are added
        to the built-in ones).

    Attributes
    ----------
    net_ : skorch.NeuralNet
        The trained network.
    classes_ : ndarray of shape (n_classes,)
        Label values ``0 .. n_classes - 1``.
    class_names_ : list of str
    n_classes_ : int
    device_ : str

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randint(0, 255, size=(4, 40, 40, 3)).astype(np.uint8)
    >>> y = (X[..., 0] > 127).astype(np.uint8)
    >>> est = FaceParser(image_size=32, classes=["bg", "fg"], width=0.125, max_epochs=1,
    ...                  batch_size=2, random_state=0).fit(X, y)
    >>> est.predict(X).shape, est.predict_proba(X).shape
    ((4, 40, 40), (4, 2, 40, 40))
    """

    def __init__(self, image_size=448, classes=None, width=1.0, max_epochs=30, batch_size=16, lr=1e-2,
                 warmup_steps=100, ohem_thresh=0.7, min_kept=1 / 16, augment=True, scale_range=(0.75, 2.0),
                 backbone_weights=None, device="auto", random_state=None, verbose=0, net_kwargs=None):
        self.image_size = image_size
        self.classes = classes
        self.width = width
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.warmup_steps = warmup_steps
        self.ohem_thresh = ohem_thresh
        self.min_kept = min_kept
        self.augment = augment
        self.scale_range = scale_range
        self.backbone_weights = backbone_weights
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.net_kwargs = net_kwargs

    # ------------------------------------------------------------------ checks
    def _class_names(self):
        names = CELEBAMASK_CLASSES if self.classes is None else self.classes
        if isinstance(names, str) or not hasattr(names, "__len__"):
            raise ValueError(f"classes must be a sequence of class names; got {names!r}")
        names = [str(c) for c in names]
        if not 2 <= len(names) <= 255:
            raise ValueError(f"classes must hold between 2 and 255 names; got {len(names)}")
        if len(set(names)) != len(names):
            raise ValueError(f"classes must be unique; got {names}")
        return names

    def _check_params(self):
        def integer(name, low):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {v!r}")

        def positive(name):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0 or not math.isfinite(v):
                raise ValueError(f"{name} must be a positive number; got {v!r}")

        integer("image_size", 32)
        integer("max_epochs", 1)
        integer("batch_size", 1)
        integer("warmup_steps", 0)
        positive("width")
        positive("lr")
        if isinstance(self.ohem_thresh, bool) or not isinstance(self.ohem_thresh, numbers.Real) \
                or not 0 < self.ohem_thresh <= 1:
            raise ValueError(f"ohem_thresh must be in (0, 1]; got {self.ohem_thresh!r}")
        mk = self.min_kept
        if isinstance(mk, bool) or not isinstance(mk, numbers.Real) or mk < 0 or (
                not isinstance(mk, numbers.Integral) and mk >= 1):
            raise ValueError(f"min_kept must be an int >= 0 or a float in [0, 1); got {mk!r}")
        sr = self.scale_range
        if sr is not None:
            try:
                lo, hi = (float(v) for v in sr)
            except (TypeError, ValueError):
                raise ValueError(f"scale_range must be a pair (low, high) or None; got {sr!r}") from None
            if not 0 < lo <= hi:
                raise ValueError(f"scale_range must satisfy 0 < low <= high; got {sr!r}")
        if self.net_kwargs is not None and not isinstance(self.net_kwargs, dict):
            raise ValueError(f"net_kwargs must be a dict or None; got {type(self.net_kwargs).__name__}")

    # ------------------------------------------------------------------ fit
    def fit(self, X, y):
        """Train on images ``X`` and label maps ``y``.

        Parameters
        ----------
        X : array-like of shape (n, H, W, 3) RGB or (n, H, W) gray
            uint8, or numbers on the 0-255 scale.
        y : array-like of int, shape (n, H, W)
            Labels in ``[0, n_classes)``; 255 = not labelled (ignored).

        Returns
        -------
        self
        """
        self._check_params()
        names = self._class_names()
        device = resolve_device(self.device)
        X, y = check_parsing_X_y(X, y, n_classes=len(names), ignore_index=IGNORE_INDEX)
        n = X.shape[0]
        S = int(self.image_size)
        if n == 1 and S < 64:
            raise ValueError("training on a single image needs image_size >= 64 "
                             "(BatchNorm needs more than one value per channel)")
        images = _resize_stack(X, S, cv2.INTER_AREA if max(X.shape[1:3]) > S else cv2.INTER_LINEAR)
        labels = _resize_stack(y, S, cv2.INTER_NEAREST)

        if self.random_state is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        else:
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

        bs = min(int(self.batch_size), n)
        drop_last = n > 1 and n % bs == 1  # a lone last sample breaks BatchNorm
        n_batches = n // bs if drop_last else -(-n // bs)
        total = int(self.max_epochs) * n_batches
        warmup = min(int(self.warmup_steps), total // 2)
        schedule = WarmupPolyLR(total, warmup, power=0.9, warmup="linear", warmup_factor=0.1)
        dataset = _ParsingDataset(images, labels, augment=bool(self.augment), seed=seed + 1,
                                  lut=flip_lut(names), scale=self.scale_range)

        generator = torch.Generator().manual_seed(seed)
        kwargs = dict(
            module=MultiHeadParsingNet, module__n_classes=len(names), module__width=float(self.width),
            criterion=MultiHeadLoss,
            criterion__loss=OhemCrossEntropy(self.ohem_thresh, self.min_kept, IGNORE_INDEX),
            optimizer=_SGD, optimizer__momentum=0.9, optimizer__weight_decay=5e-4,
            lr=float(self.lr), max_epochs=int(self.max_epochs), batch_size=bs,
            iterator_train__shuffle=True, iterator_train__generator=generator,
            iterator_train__drop_last=drop_last, train_split=None, device=device,
            predict_nonlinearity=None, verbose=int(self.verbose),
        )
        extra = dict(self.net_kwargs or {})
        callbacks = [("lr_schedule", LRScheduler(LambdaLR, lr_lambda=schedule, step_every="batch")),
                     ("augment_epoch", _EpochSetter())] + list(extra.pop("callbacks", None) or [])
        kwargs.update(extra)
        kwargs["callbacks"] = callbacks

        with isolated_rng(device):
            torch.manual_seed(seed)
            net = NeuralNet(**kwargs).initialize()
            if self.backbone_weights is not None:
                load_backbone_weights(net.module_, self.backbone_weights)
            net.partial_fit(dataset, y=None)
        prepare_for_pickle(net)  # GPU-fitted models must load on CPU-only machines
        self.net_ = net
        self.class_names_ = names
        self.classes_ = np.arange(len(names))
        self.n_classes_ = len(names)
        self.device_ = device
        return self

    # ------------------------------------------------------------------ inference
    def _logits(self, X):
        """Yield (B, C, H, W) float32 logits at the input resolution, batch by batch, on the
        network's device."""
        X = check_parsing_X(X)
        h, w = X.shape[1:3]
        S = int(self.image_size)
        images = _resize_stack(X, S, cv2.INTER_AREA if max(h, w) > S else cv2.INTER_LINEAR)
        ds = _ParsingDataset(images)
        for out in self.net_.forward_iter(ds, training=False, device=self.net_.device):
            yield upsample_bilinear(out.float(), (h, w))  # the heads' resize, back to the input size

    def predict_proba(self, X):
        """Class probabilities per pixel.

        Parameters
        ----------
        X : array-like of shape (n, H, W, 3) or (n, H, W)

        Returns
        -------
        proba : ndarray of shape (n, n_classes, H, W), float32
        """
        check_is_fitted(self)
        return np.concatenate([torch.softmax(o, dim=1).cpu().numpy() for o in self._logits(X)])

    def predict(self, X):
        """Label map per image, at the input resolution.

        Parameters
        ----------
        X : array-like of shape (n, H, W, 3) or (n, H, W)

        Returns
        -------
        labels : ndarray of shape (n, H, W), uint8
        """
        check_is_fitted(self)
        return np.concatenate([o.argmax(dim=1).to(torch.uint8).cpu().numpy() for o in self._logits(X)])

    def transform(self, X):
        """Same as :meth:`predict`, so the parser can feed a label-map consumer in a Pipeline."""
        return self.predict(X)

    def score(self, X, y):
        """Mean IoU over classes (background included) from one confusion matrix of the set.

        Pixels labelled 255 are ignored; classes absent from both truth and
        prediction are left out of the mean.

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        X, y = check_parsing_X_y(X, y, n_classes=self.n_classes_, ignore_index=IGNORE_INDEX)
        return float(mean_iou(y, self.predict(X), self.n_classes_, ignore_index=IGNORE_INDEX))

    # ------------------------------------------------------------------ misc
    def __setstate__(self, state):
        self.__dict__.update(state)
        if "net_" in state:  # skorch falls back to the CPU when CUDA is missing
            self.device_ = str(self.net_.device)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.target_tags.required = True
        return tags
