"""FaceParser: per-pixel face parsing with a multi-head ResNet18, as a scikit-learn estimator."""
import numbers
import os

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import LRScheduler
from skorch.helper import predefined_split
from torch.optim.lr_scheduler import LambdaLR

from ._device import host_to_device, loader_options, resolve_amp
from ._parsing_data import ParsingDataset, ValidMeanIoU, to_network_frame
from ._training import (EpochSetter, NeuralEstimatorMixin, SkkpNet, check_finite_output, draw_seed,
                        drop_last_for_batchnorm, epochs_done, loader_generators, log_options, merge_callbacks,
                        resolve_device, validation_split)
from ._validation import check_flag, check_groups, check_parsing_X, check_parsing_X_y
from .losses import MultiHeadLoss, OhemCrossEntropy
from .metrics import mean_iou
from .nets import transfer_weights
from .resnet import MultiHeadParsingNet, check_stages, load_backbone_weights, upsample_bilinear
from .schemas import CELEBAMASK_CLASSES, IGNORE_INDEX, check_class_names, flip_lut

__all__ = ["FaceParser", "WarmupPolyLR"]

#: float32 values per band of upsampled logits in predict (16 MB)
_BAND_ELEMENTS = 1 << 22

#: FaceParser's named ``heads``: the backbone stages (1-4: strides 4, 8, 16, 32) that get a head.
#: "study" is the reference network's three heads; "stride4" adds a finer one, which measured best
#: on ytf68 held-out people (benchmarks/results/parser_ytf68.json).
_HEADS = {"stride4": (1, 2, 3, 4), "study": (2, 3, 4)}


def _stages_of_heads(heads):
    """The sorted backbone stages of a FaceParser ``heads`` value: a name of :data:`_HEADS` or
    distinct stages 1-4; ValueError naming ``heads`` otherwise.

    Examples
    --------
    >>> _stages_of_heads("stride4"), _stages_of_heads("study"), _stages_of_heads([4, 1])
    ((1, 2, 3, 4), (2, 3, 4), (1, 4))
    """
    if isinstance(heads, str):
        if heads not in _HEADS:
            raise ValueError(f"heads must be one of {sorted(_HEADS)} or a tuple of distinct backbone stages from "
                             f"1, 2, 3, 4; got {heads!r}")
        return _HEADS[heads]
    try:
        stages = tuple(heads)
        if not all(isinstance(k, numbers.Integral) and not isinstance(k, bool) for k in stages):
            raise TypeError
        return check_stages(stages)
    except (TypeError, ValueError):
        raise ValueError(f"heads must be one of {sorted(_HEADS)} or a tuple of distinct backbone stages from 1, 2, "
                         f"3, 4 (e.g. (1, 2, 3, 4)); got {heads!r}") from None


def _heads_named(stages):
    """``heads`` for backbone ``stages``: its name in :data:`_HEADS` where it has one, else the stages."""
    stages = tuple(stages)
    return next((name for name, named in _HEADS.items() if named == tuple(sorted(stages))), stages)


def _heads_of_older_parsers(net_kwargs):
    """``heads`` of a FaceParser saved before the parameter existed: the reference three heads
    (then the only default), unless its ``net_kwargs`` chose ``module__head_stages``."""
    stages = (net_kwargs or {}).get("module__head_stages") if isinstance(net_kwargs, dict) else None
    return "study" if stages is None else _heads_named(stages)


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


class FaceParser(NeuralEstimatorMixin, TransformerMixin, BaseEstimator):
    """Face parsing: label every pixel of a face image with one of ``classes``.

    A ResNet18 backbone (torchvision-compatible names, optional ImageNet weights
    from a local file) with parsing heads on several of its stages (``heads``:
    by default stages 1-4, strides 4 to 32) whose upsampled logits are summed. Training: OHEM cross-entropy on each head and on the sum;
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
    scale_range : (float, float), default=(0.75, 1.25)
        Random scale of the augmentation, relative to ``image_size``. On ytf68
        it scored as well as the study's (0.75, 2.0) on crops framed as loosely
        as a calibrated face detector frames them and better on crops framed
        more tightly; (0.9, 1.1) suits crops framed exactly like the training
        crops (docs/face_parser.md, "Which scale range").
    validation_fraction : float, default=0.1
        Fraction of the images held out (whole groups with ``fit(..., groups=)``)
        to report ``valid_loss`` and ``valid_miou`` each epoch; 0 trains on
        everything.
    backbone_weights : str, path-like or None, default=None
        Local torchvision ``resnet18`` state dict (``.pth``) to start from;
        needs ``width=1.0``.
    num_workers : int, default=0
        DataLoader worker processes that prepare (augment) training batches. Results do not
        depend on it: each image's augmentation is drawn from ``(seed, epoch, index)``.
    device : {"auto", "cpu", "cuda"}, default="auto"
        On CUDA the network is kept in the ``channels_last`` memory format, and batches come
        in pinned memory and are copied without blocking.
    random_state : int, RandomState or None, default=None
        Seeds initialisation, batch order and augmentation. The global NumPy
        and torch random states are left untouched.
    verbose : int, default=0
        skorch's per-epoch table when > 0.
    net_kwargs : dict or None, default=None
        Extra arguments for :class:`skorch.NeuralNet` (``callbacks`` are added
        to the built-in ones).
    warm_start : bool, default=False
        When True and the parser is fitted, ``fit`` starts from its current
        weights (a new optimiser and schedule) instead of ``backbone_weights`` or
        random ones; the classes, ``width`` and ``heads`` must not change.
    checkpoint : str, path-like or None, default=None
        A directory for the training state after every epoch; a fit with the
        same parameters and data resumes from it (see
        :class:`~skkp.NoseKeypointRegressor`'s ``checkpoint``).
    amp : {"auto", True, False, "bf16", "fp16"}, default="auto"
        Automatic mixed precision for training and predict, as in
        :class:`~skkp.NoseKeypointRegressor`: "auto" is bfloat16 on CUDA GPUs that have
        it natively, float16 with a gradient scaler on older ones, off on the CPU; the
        OHEM losses are computed and probabilities returned in float32.
    heads : {"stride4", "study"} or tuple of int, default="stride4"
        The backbone stages that get a parsing head (stage 1-4 = stride 4, 8, 16,
        32). "study" is the reference network's three heads, stages
        (2, 3, 4); "stride4", stages (1, 2, 3, 4), adds a finer head for small parts
        (eyes, brows) for about a fifth more compute. On ytf68 held-out people
        (``benchmarks/bench_parser_ytf68.py``, 128 px, width 0.5, 20 CPU minutes)
        "stride4" measured mean F1 0.619 against 0.519 for "study" (that run also
        narrowed the random scale from 0.75-1.25 to 0.9-1.1). A tuple names the
        stages itself, e.g. ``(1, 2, 3, 4)``. ``net_kwargs={"module__head_stages": ...}``
        is still accepted when it names the same stages; different stages there raise
        a ``ValueError``. Files saved by :func:`skkp.save` before this parameter
        existed load with "study", the heads they were trained with.
    boundary_weight : float, default=2.0
        Boundary-aware loss: a labelled pixel with another label among its 8
        neighbours counts ``1 + boundary_weight`` times in the OHEM mean
        (:class:`skkp.losses.OhemCrossEntropy`); 0 is the study's plain OHEM loss.
        On ytf68 held-out people (128 px, width 0.5, 10 epochs, two seeds) 2
        measured mean F1 0.638 and 0.623 against 0.623 and 0.608 for 0
        (docs/benchmarks.md). Files saved before this parameter existed load
        with 0, the loss they were trained with.
    top_down : bool, default=True
        Add a parsing head at stride 2 on features fused top-down (feature-pyramid
        style) from the stem and the ``heads`` stages (:class:`skkp.resnet.TopDownHead`),
        for boundaries finer than the stride-4 head can place. Its logits join the
        others' sum. About a quarter more compute (training and predict, one CPU
        thread, 128 px, width 0.5). On ytf68 held-out people (128 px, width 0.5, 25
        epochs, trained without the doubly labelled images, scored on the singly
        labelled rows) it measured mean F1 0.726 and 0.715 on two person splits,
        against 0.713 and 0.707 without it (docs/benchmarks.md). Files saved before
        this parameter existed load with False, the network they were trained with.

    Attributes
    ----------
    net_ : skorch.NeuralNet
        The trained network.
    classes_ : ndarray of shape (n_classes,)
        Label values ``0 .. n_classes - 1``.
    class_names_ : list of str
    n_classes_ : int
    history_ : skorch.History
        Per-epoch ``train_loss`` (and ``valid_loss``, ``valid_miou`` with a
        validation split).
    device_ : str
    started_from_ : str
        ``"random"``, ``"backbone_weights"`` or ``"warm_start"``: where the weights
        of the last ``fit`` started.
    head_stages_ : tuple of int
        The backbone stages with a head in the fitted network, e.g. ``(1, 2, 3, 4)``.

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

    _parameter_constraints = {
        "image_size": [Interval(numbers.Integral, 32, None, closed="left")],
        "classes": ["array-like", None],
        "width": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "warmup_steps": [Interval(numbers.Integral, 0, None, closed="left")],
        "ohem_thresh": [Interval(numbers.Real, 0, 1, closed="right")],
        "min_kept": [Interval(numbers.Integral, 0, None, closed="left"),
                     Interval(numbers.Real, 0, 1, closed="left")],
        "boundary_weight": [Interval(numbers.Real, 0, None, closed="left")],
        "augment": ["boolean"],
        "scale_range": [tuple, list, None],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "backbone_weights": [str, os.PathLike, None],
        "num_workers": [Interval(numbers.Integral, 0, None, closed="left")],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "net_kwargs": [dict, None],
        "warm_start": ["boolean"],
        "checkpoint": [str, os.PathLike, None],
        "amp": [StrOptions({"auto", "bf16", "fp16"}), "boolean"],
        "heads": [StrOptions(set(_HEADS)), tuple, list],
        "top_down": ["boolean"],
    }

    def __init__(self, image_size=448, classes=None, width=1.0, max_epochs=30, batch_size=16, lr=1e-2,
                 warmup_steps=100, ohem_thresh=0.7, min_kept=1 / 16, augment=True, scale_range=(0.75, 1.25),
                 validation_fraction=0.1, backbone_weights=None, num_workers=0, device="auto", random_state=None,
                 verbose=0, net_kwargs=None, warm_start=False, checkpoint=None, amp="auto", heads="stride4",
                 boundary_weight=2.0, top_down=True):
        self.image_size = image_size
        self.classes = classes
        self.width = width
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.warmup_steps = warmup_steps
        self.ohem_thresh = ohem_thresh
        self.min_kept = min_kept
        self.boundary_weight = boundary_weight
        self.augment = augment
        self.scale_range = scale_range
        self.validation_fraction = validation_fraction
        self.backbone_weights = backbone_weights
        self.num_workers = num_workers
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.net_kwargs = net_kwargs
        self.warm_start = warm_start
        self.checkpoint = checkpoint
        self.amp = amp
        self.heads = heads
        self.top_down = top_down

    def __setstate__(self, state):
        if "heads" not in state:  # pickled before the parameter existed: the heads it was built with
            net = state.get("net_")
            state["heads"] = (_heads_of_older_parsers(state.get("net_kwargs")) if net is None else
                              _heads_named(getattr(net.module_.backbone, "stages", (2, 3, 4))))
        state.setdefault("top_down", False)  # pickled before the parameter existed: no such head
        super().__setstate__(state)

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        """``_parameter_constraints``, then what they cannot say; returns the class names."""
        self._validate_params()
        if self.scale_range is not None:
            try:
                lo, hi = (float(v) for v in self.scale_range)
            except (TypeError, ValueError):
                raise ValueError(f"scale_range must be a pair (low, high) or None; got {self.scale_range!r}") \
                    from None
            if not 0 < lo <= hi:
                raise ValueError(f"scale_range must satisfy 0 < low <= high; got {self.scale_range!r}")
        self._head_stages()
        return check_class_names(CELEBAMASK_CLASSES if self.classes is None else self.classes)

    def _head_stages(self):
        """The stages of ``heads``, checked against a ``module__head_stages`` in ``net_kwargs``."""
        stages = _stages_of_heads(self.heads)
        given = (self.net_kwargs or {}).get("module__head_stages")
        if given is not None:
            try:
                same = _stages_of_heads(given) == stages
            except ValueError:
                same = False
            if not same:
                raise ValueError(f"heads={self.heads!r} (stages {stages}) and net_kwargs module__head_stages="
                                 f"{given!r} disagree: set the heads with the heads parameter only.")
        return stages

    @property
    def head_stages_(self):
        """The backbone stages with a head in the fitted network."""
        check_is_fitted(self, "net_")
        return tuple(self.net_.module_.backbone.stages)

    def _has_top_down(self):
        """Whether the fitted network has the top-down head."""
        return getattr(self.net_.module_, "top_down", None) is not None

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, groups=None):
        """Train on images ``X`` and label maps ``y``.

        Parameters
        ----------
        X : array-like of shape (n, H, W, 3) RGB or (n, H, W) gray
            Pixel values as in :func:`skkp._validation.pixel_scale` (uint8 or
            integers on the 0-255 scale, floats on the 0-1 or 0-255 scale).
        y : array-like of int, shape (n, H, W)
            Labels in ``[0, n_classes)``; 255 (:data:`skkp.schemas.IGNORE_INDEX`)
            = not labelled (ignored).
        groups : array-like of shape (n,) or None, default=None
            Group label per image (e.g. the person): the validation split then
            holds out whole groups.

        Returns
        -------
        self
        """
        return self._fit(X, y, groups, incremental=False)

    def partial_fit(self, X, y):
        """Train one more epoch on ``X, y`` at the constant learning rate ``lr``.

        The first call (on an unfitted parser) builds the network as ``fit``
        would, without a validation split or warm-up; later calls (also after
        ``fit``) continue from the current weights and optimiser state with the
        same classes. No schedule applies: the number of calls is not known.

        Parameters
        ----------
        X, y : as in :meth:`fit`

        Returns
        -------
        self
        """
        if not hasattr(self, "net_"):
            return self._fit(X, y, None, incremental=True)
        names = self._check_params()
        if list(names) != list(self.class_names_):
            raise ValueError(f"classes changed from {list(self.class_names_)} to {list(names)} since the first "
                             f"fit; partial_fit keeps the classes it started with.")
        X, y = check_parsing_X_y(X, y, n_classes=self.n_classes_, ignore_index=IGNORE_INDEX)
        images, labels = to_network_frame(X, y, int(self.image_size))
        seed = (draw_seed(self.random_state)[0] + epochs_done(self.net_.history)) % np.iinfo(np.int32).max
        train_ds = ParsingDataset(images, labels, augment=bool(self.augment), seed=seed + 1, lut=flip_lut(names),
                                  scale=self.scale_range)
        return self._continue_net(train_ds, seed)

    def _fit(self, X, y, groups, incremental):
        names = self._check_params()
        device = resolve_device(self.device)
        resolve_amp(self.amp, device)  # an amp this device cannot run is an error before any work
        X, y = check_parsing_X_y(X, y, n_classes=len(names), ignore_index=IGNORE_INDEX)
        group_labels = check_groups(groups, X.shape[0])
        start = None
        if self.warm_start and hasattr(self, "net_"):
            if list(names) != list(self.class_names_):
                raise ValueError(f"warm_start=True keeps the fitted classes {list(self.class_names_)}, but "
                                 f"classes are now {list(names)}: refit with warm_start=False.")
            if self.head_stages_ != self._head_stages():
                raise ValueError(f"warm_start=True keeps the fitted heads (stages {self.head_stages_}), but heads "
                                 f"is now {self.heads!r}: refit with warm_start=False.")
            if self._has_top_down() != bool(self.top_down):
                raise ValueError(f"warm_start=True keeps the fitted network (top_down={self._has_top_down()}), but "
                                 f"top_down is now {self.top_down!r}: refit with warm_start=False.")
            start = self.net_.module_
        S = int(self.image_size)
        seed, rng = draw_seed(self.random_state)
        checkpointer = None
        if not incremental:
            checkpointer, seed, rng = self._checkpoint_seed(seed, rng, X, y, group_labels)
        fraction = 0.0 if incremental else self.validation_fraction
        valid_idx, train_idx = validation_split(X.shape[0], fraction, rng, group_labels)
        n = len(train_idx)
        if n == 1 and S < 64:
            raise ValueError("training on a single image needs image_size >= 64 "
                             "(BatchNorm needs more than one value per channel)")
        images, labels = to_network_frame(X, y, S)

        bs = min(int(self.batch_size), n)
        drop_last = drop_last_for_batchnorm(n, bs)
        n_batches = n // bs if drop_last else -(-n // bs)
        total = int(self.max_epochs) * n_batches
        warmup = min(int(self.warmup_steps), total // 2)
        schedule = None if incremental else WarmupPolyLR(total, warmup, power=0.9, warmup="linear",
                                                         warmup_factor=0.1)
        train_ds = ParsingDataset(images[train_idx], labels[train_idx], augment=bool(self.augment), seed=seed + 1,
                                  lut=flip_lut(names), scale=self.scale_range)
        valid_ds = ParsingDataset(images[valid_idx], labels[valid_idx]) if len(valid_idx) else None

        params = self._net_params(names, bs, drop_last, schedule, valid_ds, device, seed)

        def setup(net):
            if start is not None:  # warm start: every layer must fit (same width and classes)
                transfer_weights(start, net.module_)
            elif self.backbone_weights is not None:
                load_backbone_weights(net.module_, self.backbone_weights)

        self._fit_net(SkkpNet, params, train_ds, device, seed, setup=setup, checkpointer=checkpointer)
        self.class_names_ = names
        self.classes_ = np.arange(len(names))
        self.n_classes_ = len(names)
        self.started_from_ = "warm_start" if start is not None else (
            "backbone_weights" if self.backbone_weights is not None else "random")
        return self

    def _net_params(self, names, batch_size, drop_last, schedule, valid_ds, device, seed):
        """The skorch NeuralNet's parameters: network, loss, optimiser, schedule, callbacks."""
        params = dict(
            # channels_last on CUDA: PyTorch's channels-last tutorial reports the largest convolution
            # gains on NVIDIA tensor cores in reduced precision (amp); on the CPU the default layout
            # stays (not measured faster there). benchmarks/bench_gpu.py times both layouts on a GPU.
            module=MultiHeadParsingNet, module__n_classes=len(names), module__width=float(self.width),
            module__head_stages=self._head_stages(), module__top_down=bool(self.top_down),
            module__channels_last=torch.device(str(device)).type == "cuda",
            criterion=MultiHeadLoss,
            criterion__loss=OhemCrossEntropy(self.ohem_thresh, self.min_kept, IGNORE_INDEX,
                                             boundary_weight=float(self.boundary_weight)),
            optimizer=_SGD, optimizer__momentum=0.9, optimizer__weight_decay=5e-4,
            lr=float(self.lr), max_epochs=1 if schedule is None else int(self.max_epochs), batch_size=batch_size,
            iterator_train__shuffle=True, **loader_generators(seed),
            iterator_train__drop_last=drop_last, **loader_options(device, self.num_workers),
            train_split=predefined_split(valid_ds) if valid_ds is not None else None, device=device,
            amp=self.amp, predict_nonlinearity=None, verbose=int(self.verbose),
        )
        extra = dict(self.net_kwargs or {})
        builtin = [("augment_epoch", EpochSetter())]
        if schedule is not None:  # None: partial_fit's constant learning rate
            builtin.insert(0, ("lr_schedule", LRScheduler(LambdaLR, lr_lambda=schedule, step_every="batch")))
        if valid_ds is not None:
            builtin.append(("valid_miou", ValidMeanIoU(len(names))))
        log_callbacks, log_params = log_options(self.verbose)
        params.update(log_params)
        callbacks = merge_callbacks(builtin + log_callbacks, extra.pop("callbacks", None))
        params.update(extra)
        params["callbacks"] = callbacks
        return params

    def _unfitted_net(self, device):
        """An initialised net of the fitted shape, for :func:`skkp.load` to fill with saved weights."""
        params = self._net_params(self.class_names_, int(self.batch_size), False, WarmupPolyLR(1, 0), None, device, 0)
        return SkkpNet(**params).initialize()

    # ------------------------------------------------------------------ inference
    def _network_logits(self, X, flip_average=False):
        """Yield ``(i0, logits)``: (B, C, S, S) float32 logits at the network resolution for images
        ``i0 .. i0 + B - 1``, checked finite. A plain loop, not a DataLoader, which would draw its
        seed from (and so advance) the caller's global torch generator. The resized images go to
        the device as uint8, and the network normalises them there. With ``flip_average`` the
        logits are the mean of each image's and its mirror image's."""
        swap = self._mirror_classes(flip_average, self.net_.device)
        images, _ = to_network_frame(X, None, int(self.image_size))
        module, device, bs = self.net_.module_, self.net_.device, int(self.batch_size)
        module.eval()
        with torch.inference_mode():
            for start in range(0, len(images), bs):
                # uint8 (B, S, S, 3): the network normalises it on its device
                batch = host_to_device(torch.from_numpy(np.ascontiguousarray(images[start:start + bs])), device)
                with self._inference_autocast():
                    logits = module(batch).float()
                    if swap is not None:  # the mirror image's logits, mirrored back, l_/r_ classes swapped
                        mirrored = module(batch.flip(2)).float()
                        logits = (logits + mirrored[:, swap].flip(-1)) / 2
                check_finite_output(logits, "logits", len(batch))
                yield start, logits

    def _mirror_classes(self, flip_average, device):
        """None without ``flip_average``; else the class order that turns a mirror image's logits
        into the image's (l_x <-> r_x), an int64 tensor on ``device``."""
        if not check_flag(flip_average, "flip_average"):
            return None
        return torch.as_tensor(flip_lut(self.class_names_)[:self.n_classes_].astype(np.int64), device=device)

    def _input_frame_chunks(self, X, flip_average=False):
        """Yield ``(start, n, chunks)`` per network batch of images ``start .. start + n - 1``;
        ``chunks`` yields ``(j, rows, logits)``: (C, r, W) logits of image ``start + j`` at the input
        resolution, a band of output rows at a time, so memory stays bounded by the output plus a
        constant (about 16 MB of float32 per band) whatever the image size."""
        h, w = X.shape[1:3]
        band = max(1, _BAND_ELEMENTS // (self.n_classes_ * w))

        def chunks(logits):
            for j, image_logits in enumerate(logits):
                for r0 in range(0, h, band):
                    rows = slice(r0, min(r0 + band, h))
                    yield j, rows, upsample_bilinear(image_logits, (h, w), rows=rows)  # the heads' resize

        for start, logits in self._network_logits(X, flip_average):
            yield start, len(logits), chunks(logits)

    def predict_proba(self, X, flip_average=False):
        """Class probabilities per pixel.

        The result itself takes ``n * n_classes * H * W * 4`` bytes (about 1.2 GB for
        one 4000x4000 image with 19 classes); :meth:`predict` needs only the label maps.

        Parameters
        ----------
        X : array-like of shape (n, H, W, 3) or (n, H, W)
        flip_average : bool, default=False
            Flip test-time averaging: also run the network on the mirror images and average
            its logits with theirs, mirrored back with the ``l_x``/``r_x`` classes swapped (as
            :meth:`NoseKeypointRegressor.predict <skkp.NoseKeypointRegressor.predict>` does with
            points). Twice the inference time; the result is mirror-consistent.

        Returns
        -------
        proba : ndarray of shape (n, n_classes, H, W), float32
        """
        check_is_fitted(self)
        X = check_parsing_X(X)
        out = np.empty((X.shape[0], self.n_classes_) + X.shape[1:3], dtype=np.float32)
        for start, _, chunks in self._input_frame_chunks(X, flip_average):
            for j, rows, logits in chunks:
                out[start + j, :, rows] = torch.softmax(logits, dim=0).cpu().numpy()
        return out

    def predict(self, X, flip_average=False):
        """Label map per image, at the input resolution.

        Memory beyond the label maps is bounded (logits are resized and reduced a band
        of rows at a time), so large photos do not exhaust the machine.

        Parameters
        ----------
        X : array-like of shape (n, H, W, 3) or (n, H, W)
        flip_average : bool, default=False
            Flip test-time averaging: also run the network on the mirror images and average
            its logits with theirs, mirrored back with the ``l_x``/``r_x`` classes swapped (as
            :meth:`NoseKeypointRegressor.predict <skkp.NoseKeypointRegressor.predict>` does with
            points). Twice the inference time; the result is mirror-consistent.

        Returns
        -------
        labels : ndarray of shape (n, H, W), uint8
        """
        check_is_fitted(self)
        X = check_parsing_X(X)
        out = np.empty(X.shape[:3], dtype=np.uint8)
        for start, n, chunks in self._input_frame_chunks(X, flip_average):
            labels = torch.empty((n,) + X.shape[1:3], dtype=torch.uint8, device=self.net_.device)
            for j, rows, logits in chunks:
                # max(...).indices is argmax (the first largest class), 3.5x faster on the CPU
                labels[j, rows] = logits.max(dim=0).indices
            out[start:start + n] = labels.cpu().numpy()  # one copy back (on a GPU, one wait) per batch
        return out

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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.target_tags.required = True
        return tags
