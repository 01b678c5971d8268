"""NoseKeypointRegressor: a scikit-learn estimator that regresses keypoints from images."""
import numbers
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names, check_is_fitted
from skorch.callbacks import EarlyStopping, LRScheduler
from skorch.helper import predefined_split

from ._keypoint_data import AUGMENT_DEFAULTS  # noqa: F401  (public: the augment=True ranges)
from ._device import host_to_device, loader_options, resolve_amp
from ._keypoint_data import KeypointDataset, KeypointFrame, PixelMAE, augment_config, names_from_columns
from ._recipes import DecoupledL2Adam, l2_param_groups, recipe
from ._training import (EpochSetter, NeuralEstimatorMixin, SkkpNetRegressor, check_finite_output, draw_seed,
                        drop_last_for_batchnorm, epochs_done, loader_generators, log_options, merge_callbacks,
                        resolve_device, validation_split)
from ._validation import check_fitted_input, check_flag, check_groups, check_images, check_keypoint_targets
from .augment import flip_points
from .losses import MaskedKeypointLoss
from .nets import ARCHITECTURES, build_keypoint_net, seed_output_layer, transfer_weights, zero_output_layer
from .schemas import get_schema, infer_flip_pairs

#: Architectures that train faster in the ``channels_last`` memory format on CPU
#: (measured by benchmarks/bench_keypoint_speed.py; results/keypoint_speed.json). They keep it on
#: CUDA too: PyTorch's channels-last tutorial reports the largest gains for convolutions on NVIDIA
#: tensor cores in reduced precision (amp); benchmarks/bench_gpu.py times both layouts there.
CHANNELS_LAST_ARCHITECTURES = ("cnn", "heatmap", "inception")


class NoseKeypointRegressor(NeuralEstimatorMixin, RegressorMixin, BaseEstimator):
    """Regress keypoint coordinates from grayscale face or nose images.

    A PyTorch network trained through skorch (``self.net_``). Inputs are images
    in any common layout; targets and predictions are pixel coordinates of the
    images passed in, as ``x0, y0, x1, y1, ...``. Images of another size than
    ``image_size`` are resized for the network and predictions mapped back.

    Parameters
    ----------
    architecture : {"heatmap", "inception", "cnn", "mlp"}, default="heatmap"
        Network: an encoder-decoder with a soft-argmax head (the most accurate
        on real faces, see docs/benchmarks.md), the reference Inception-style
        CNN, a plain CNN, or a one-hidden-layer MLP on the pixels, each image
        standardised to mean 0 and standard deviation 1 first (the MLP also
        accepts any 2-D feature matrix, which it takes as it is).
    image_size : int, default=96
        Side of the square network input.
    max_epochs : int, default=60
    batch_size : int, default=64
    lr : float or "auto", default="auto"
        Learning rate of the Adam optimiser; "auto" takes the architecture's
        (``skkp._recipes.ARCHITECTURE_RECIPES``): 2e-3 for ``heatmap``, 5e-4
        for ``cnn``, ``inception`` and ``mlp``, whose dense layers of thousands
        of inputs did not learn at 2e-3 (docs/keypoints.md).
    weight_decay : float, default=0.0
        L2 penalty on every weight, on top of the network's own per-layer penalties.
    loss : {"auto", "mse", "l1", "smooth_l1", "wing"}, default="auto"
        Per-coordinate training loss (unlabelled coordinates are masked out);
        "wing" is the Wing loss (Feng et al. 2018) with ``w=10``, ``eps=2`` in
        pixels of the network input. "auto" takes the architecture's
        (``skkp._recipes.ARCHITECTURE_RECIPES``): "wing" for ``heatmap``, which
        trained on ytf68 as labelled (wrong labels included) was more accurate on
        the held-out faces labelled once than with L1, and within seed noise of
        it on clean training labels (docs/benchmarks.md); "l1" for the others. Models saved
        before "auto" keep their "l1".
    lr_schedule : {"cosine", "constant"}, default="cosine"
        Learning rate over the epochs: cosine annealing from ``lr`` to 0 at
        ``max_epochs``, or constant.
    validation_fraction : float, default=0.1
        Fraction of the samples held out to report ``valid_loss`` and
        ``valid_mae_px`` each epoch; 0 trains on everything.
    early_stopping : int or None, default=None
        Stop after this many epochs without improvement of ``valid_loss`` and
        keep the best weights; None trains ``max_epochs`` epochs.
    augment : bool or dict, default=True
        Random rotation, scale, shift and brightness/contrast per sample and
        epoch during training; a dict overrides keys of ``AUGMENT_DEFAULTS``.
        Horizontal flips (swapping ``flip_pairs``) are off by default, since
        they cost accuracy on real faces (docs/benchmarks.md); enable them with
        ``augment={"flip": True}``. Never applied in ``predict``
        nor to plain feature matrices.
    schema : str, KeypointSchema or None, default=None
        Named keypoint layout (see ``skkp.datasets.KEYPOINT_SCHEMAS``) giving
        keypoint names and flip pairs. None uses the only schema with the same
        number of keypoints as ``y``, if exactly one exists.
    keypoint_names : sequence of str or None, default=None
        Names of the K keypoints (override the schema's).
    flip_pairs : "auto", sequence of (int, int) or None, default=None
        Left/right keypoint pairs swapped by a horizontal flip. None takes them
        from the schema when one applies, else as "auto": read off the mirror
        symmetry of the mean training shape (:func:`skkp.augment.infer_flip_pairs`; no
        flips when the shape is not symmetric). An explicit sequence overrides
        both; flips are only drawn when there is at least one pair.
    num_workers : int, default=0
        DataLoader worker processes that prepare (augment) training batches. Results do not
        depend on it: each sample's augmentation is drawn from ``(seed, epoch, index)``.
    device : {"auto", "cpu", "cuda"}, default="auto"
        On CUDA, batches come in pinned memory and are copied without blocking.
    random_state : int, RandomState or None, default=None
        Seeds initialisation, the validation split, shuffling and augmentation.
        The global torch and numpy random states are left untouched.
    verbose : int, default=0
        0 silent; 1 a per-epoch log of train/valid loss and MAE in pixels with a
        progress bar.
    net_kwargs : dict or None, default=None
        Extra keyword arguments for ``skorch.NeuralNetRegressor`` (callbacks,
        ``optimizer__*``, ``module__*`` for the network's constructor, ...).
    init : str, path-like, NoseKeypointRegressor or None, default=None
        Weights the network starts from (fine-tuning): None for a random start,
        the name of a shipped model (:func:`skkp.pretrained.list_models`), the
        path of a model saved by :func:`skkp.save`, or a fitted estimator (read,
        never changed). Its architecture, ``image_size`` and network options must
        match; when it predicts another number of keypoints, the output layer is
        new and the rest is kept. Its input statistics are kept too, so the
        network sees inputs standardised as in its own training. The defaults
        suit fine-tuning as they are (docs/finetune.md measures them).
        scikit-learn's ``clone`` (``GridSearchCV``, ``cross_val_score``) unfits
        an estimator passed here: pass a name or a path in searches.
    warm_start : bool, default=False
        When True and the model is fitted, ``fit`` starts from its current
        weights (a new optimiser and schedule), as in scikit-learn's
        ``MLPRegressor``; the architecture, ``image_size`` and number of outputs
        must not change. Takes precedence over ``init``.
    checkpoint : str, path-like or None, default=None
        A directory where ``fit`` writes, after every epoch, the whole training
        state (``last.pt``), the best weights (``best.pt``, by ``valid_loss``)
        and the history (``history.json``). A fit with the same parameters and
        data that finds ``last.pt`` there resumes after its last finished epoch
        (e.g. after Ctrl-C or a killed process) and ends as an uninterrupted run
        would (on the CPU, to the last bit); a checkpoint of another fit is
        ignored with a warning and overwritten. Files are read with
        ``torch.load(weights_only=True)``. Not used by ``partial_fit``.
    amp : {"auto", True, False, "bf16", "fp16"}, default="auto"
        Automatic mixed precision for training and predict: the network runs under
        ``torch.autocast`` while losses are computed and predictions returned in
        float32. "auto" uses bfloat16 on CUDA GPUs that have it natively (compute
        capability 8.0+), float16 with a gradient scaler on older ones, and is off
        on the CPU (results there are those of full precision, bit for bit); True is
        "auto" that also uses bfloat16 on the CPU; "bf16"/"fp16" force a dtype (both
        run on the CPU too, slowly); False is off everywhere. Like ``device``, it
        changes how the arithmetic is done, not the training recipe (a checkpoint
        resumes across it).

    Attributes
    ----------
    net_ : skorch.NeuralNetRegressor
    n_keypoints_ : int or None
        K, when y holds keypoints; None for a plain regression on features.
    keypoint_names_ : list of str or None
        From ``keypoint_names``, else y's ``NAME_x, NAME_y`` DataFrame columns,
        else the schema.
    flip_pairs_ : tuple of (int, int)
    history_ : skorch.History
    n_features_in_ : int
        Values per input sample (H * W * channels for images).
    feature_names_in_ : ndarray of str
        Column names of X, only when X was a DataFrame with string columns.
    image_shape_ : (int, int) or None
        Image shape seen in fit.
    pixel_scale_ : float or None
        Scale the training pixels were read on (255.0 or 1.0, see
        :func:`skkp._validation.pixel_scale`); None for plain features.
    frame_ : KeypointFrame
        The network frame (resize, input statistics, coordinate units) fitted
        on the training set and used again by ``predict``.
    mean_predictor_valid_mae_px_ : float or None
        ``valid_mae_px`` of the mean predictor (the mean training target for every
        validation image): the baseline the model's ``valid_mae_px`` must beat.
    device_ : str
    started_from_ : str
        Where the weights of the last ``fit`` started: ``"random"``,
        ``"warm_start"``, the shipped model's name, the file path, or
        ``"estimator"``; with ``" (new output layer)"`` when the output layer
        was new.
    input_standardised_ : bool
        Whether the network centres each image on its own mean and divides it by
        its own standard deviation first: True for ``mlp`` on images (see
        :class:`skkp.nets.MLPKeypointNet`), else False.
    init_points_ : list or None
        When fine-tuning into a new layout (else None): for each keypoint, the point
        of the ``init`` model (its name, or index) whose output weights it
        started from: the one whose predictions lay nearest on the training
        images, so training starts from a close guess.

    Notes
    -----
    ``score`` is the coefficient of determination R^2 over labelled coordinates,
    as for every scikit-learn regressor. Pixel metrics are in ``skkp.metrics``
    (e.g. ``scoring=skkp.metrics.mae_px_scorer``).

    Examples
    --------
    >>> from skkp import NoseKeypointRegressor
    >>> from skkp.datasets import make_noses
    >>> X, y = make_noses(64, image_size=32, random_state=0)
    >>> model = NoseKeypointRegressor(architecture="cnn", image_size=32, max_epochs=2,
    ...                               random_state=0).fit(X, y)
    >>> model.predict(X[:2]).shape
    (2, 14)
    """

    _parameter_constraints = {
        "architecture": [StrOptions(set(ARCHITECTURES))],
        "image_size": [Interval(numbers.Integral, 16, None, closed="left")],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "loss": [StrOptions({"auto", "mse", "l1", "smooth_l1", "wing"})],
        "lr_schedule": [StrOptions({"cosine", "constant"})],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "early_stopping": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "augment": ["boolean", dict],
        "schema": [str, object, None],
        "keypoint_names": ["array-like", None],
        "flip_pairs": ["array-like", None],
        "num_workers": [Interval(numbers.Integral, 0, None, closed="left")],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "net_kwargs": [dict, None],
        "init": [str, os.PathLike, BaseEstimator, None],
        "warm_start": ["boolean"],
        "checkpoint": [str, os.PathLike, None],
        "amp": [StrOptions({"auto", "bf16", "fp16"}), "boolean"],
    }

    def __init__(self, architecture="heatmap", image_size=96, max_epochs=60, batch_size=64, lr="auto",
                 weight_decay=0.0, loss="auto", lr_schedule="cosine", validation_fraction=0.1,
                 early_stopping=None, augment=True, schema=None, keypoint_names=None, flip_pairs=None,
                 num_workers=0, device="auto", random_state=None, verbose=0, net_kwargs=None, init=None,
                 warm_start=False, checkpoint=None, amp="auto"):
        self.architecture = architecture
        self.image_size = image_size
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.loss = loss
        self.lr_schedule = lr_schedule
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.augment = augment
        self.schema = schema
        self.keypoint_names = keypoint_names
        self.flip_pairs = flip_pairs
        self.num_workers = num_workers
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.net_kwargs = net_kwargs
        self.init = init
        self.warm_start = warm_start
        self.checkpoint = checkpoint
        self.amp = amp

    # ------------------------------------------------------------------ input handling
    def _check_X(self, X, fitting):
        checked = check_images(X, allow_features=self.architecture == "mlp")
        _check_feature_names(self, X, reset=fitting)
        if not fitting:
            check_fitted_input(self, checked)
        return checked

    def _resolve_names(self, n_keypoints, targets, y):
        """(keypoint names, flip pairs): names from ``keypoint_names``, else y's columns, else the schema."""
        schema = get_schema(self.schema, n_keypoints) if n_keypoints else None
        names = list(schema.names) if schema is not None else None
        names = names_from_columns(y, n_keypoints) or names
        if self.keypoint_names is not None:
            if isinstance(self.keypoint_names, str):
                raise TypeError(f"keypoint_names must be a sequence of str, got the string {self.keypoint_names!r}.")
            names = [str(n) for n in self.keypoint_names]
            if len(names) != n_keypoints:
                raise ValueError(f"keypoint_names has {len(names)} names but y has {n_keypoints} keypoints.")
        if not n_keypoints:
            return names, ()
        if isinstance(self.flip_pairs, str):
            if self.flip_pairs != "auto":
                raise ValueError(f"flip_pairs must be None, 'auto' or a sequence of index pairs, "
                                 f"got {self.flip_pairs!r}.")
            return names, infer_flip_pairs(targets)
        if self.flip_pairs is None:
            return names, tuple(schema.flip_pairs) if schema is not None else infer_flip_pairs(targets)
        pairs = tuple((int(i), int(j)) for i, j in self.flip_pairs)
        used = [i for p in pairs for i in p]
        if len(set(used)) != len(used) or any(not 0 <= i < n_keypoints for i in used):
            raise ValueError(f"flip_pairs must be disjoint pairs of keypoint indices in "
                             f"[0, {n_keypoints}), got {self.flip_pairs!r}.")
        return names, pairs

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, groups=None):
        """Train the network on images ``X`` and keypoints ``y``.

        Parameters
        ----------
        X : array-like
            Images (n, H*W), (n, H, W), (n, H, W, 1), (n, 1, H, W) or colour
            (n, H, W, 3); pixel values as in :func:`skkp._validation.pixel_scale`
            (uint8/integers on the 0-255 scale, floats on 0-1 or 0-255). With
            ``architecture="mlp"`` also any feature matrix (n, p). A DataFrame's
            column names become ``feature_names_in_``.
        y : array-like of shape (n, 2K) or (n, K, 2)
            Pixel coordinates ``x0, y0, x1, y1, ...`` in the frame of ``X``; NaN
            marks an unlabelled point. DataFrame columns named ``NAME_x, NAME_y``
            give ``keypoint_names_``. With a plain feature matrix any (n,) or
            (n, t) target is accepted.
        groups : array-like of shape (n,) or None, default=None
            Group label per sample (e.g. the person). When given, the
            validation split holds out whole groups (about
            ``validation_fraction`` of the samples), so ``valid_mae_px`` measures
            unseen people rather than near-duplicate frames of seen ones.

        Returns
        -------
        self
        """
        return self._fit(X, y, groups, incremental=False)

    def partial_fit(self, X, y):
        """Train one more epoch on ``X, y`` (constant learning rate ``lr``, no validation split).

        The first call (on an unfitted model) fixes what ``fit`` would: the input
        normalisation, the keypoint layout and names, and the network (started
        from ``init`` when given). Later calls continue from the current weights
        and optimiser state and need the same kind of input (channels, or
        features) and the same number of keypoints. A model fitted by ``fit``
        continues the same way.

        Parameters
        ----------
        X, y : as in :meth:`fit`
            At least two labelled samples per call.

        Returns
        -------
        self

        Examples
        --------
        >>> from skkp.datasets import make_noses
        >>> X, y = make_noses(32, image_size=32, random_state=0)
        >>> model = NoseKeypointRegressor(architecture="cnn", image_size=32, random_state=0)
        >>> for start in (0, 16):
        ...     model = model.partial_fit(X[start:start + 16], y[start:start + 16])
        >>> len(model.history_)
        2
        """
        if not hasattr(self, "net_"):
            return self._fit(X, y, None, incremental=True)
        self._validate_params()
        checked = self._check_X(X, fitting=False)
        targets = check_keypoint_targets(y, checked.data.shape[0], allow_any_width=self.input_kind_ != "image")
        if targets.shape[1] != self.n_outputs_:
            what = "keypoint coordinates" if self.input_kind_ == "image" else "target columns"
            raise ValueError(f"y has {targets.shape[1]} {what} but the model was first fitted on {self.n_outputs_}: "
                             f"partial_fit keeps the layout of its first call (refit with fit to change it).")
        keep = self._labelled_rows(targets, 2)
        inputs = self.frame_.inputs(checked)[keep]
        net_targets = self.frame_.targets(targets, checked)[keep]
        augment = augment_config(self.augment) if self.input_kind_ == "image" else None
        seed = (draw_seed(self.random_state)[0] + epochs_done(self.net_.history)) % np.iinfo(np.int32).max
        return self._continue_net(KeypointDataset(inputs, net_targets, augment, self.flip_pairs_, seed,
                                                  self.frame_.target_scaling()), seed)

    @staticmethod
    def _labelled_rows(targets, at_least=1):
        """Mask of the rows with a labelled coordinate; warns about the others, raises when fewer
        than ``at_least`` are left."""
        unlabelled = np.isnan(targets).all(axis=1)
        if unlabelled.all():
            raise ValueError("y has no labelled coordinate: every row is entirely NaN.")
        if unlabelled.any():
            warnings.warn(f"{int(unlabelled.sum())} of {len(targets)} rows of y have no labelled keypoint "
                          f"(all NaN); they are left out of training.", UserWarning, stacklevel=4)
        if (~unlabelled).sum() < at_least:
            raise ValueError(f"partial_fit needs at least {at_least} labelled samples per call (BatchNorm "
                             f"normalises over the batch), got {int((~unlabelled).sum())}.")
        return ~unlabelled

    def _fit(self, X, y, groups, incremental):
        self._validate_params()
        checked = self._check_X(X, fitting=True)
        is_image = checked.kind == "image"
        targets = check_keypoint_targets(y, checked.data.shape[0], allow_any_width=not is_image)
        group_labels = check_groups(groups, checked.data.shape[0])
        n_keypoints = targets.shape[1] // 2 if is_image else None
        names, pairs = self._resolve_names(n_keypoints, targets, y)
        augment = augment_config(self.augment) if is_image else None
        device = resolve_device(self.device)
        resolve_amp(self.amp, device)  # an amp this device cannot run is an error before any work
        n_features = int(np.prod(checked.image_shape)) * checked.n_channels_in if is_image else checked.data.shape[1]
        start = self._starting_point(checked, n_features, targets)
        keep = self._labelled_rows(targets, 2 if incremental else 1)

        # Everything decided from the data is fixed before any training starts.
        self.input_kind_ = checked.kind
        self.n_channels_in_ = checked.n_channels_in
        self.image_shape_ = checked.image_shape
        self.pixel_scale_ = checked.pixel_scale
        self.n_features_in_ = n_features
        self.n_outputs_ = targets.shape[1]
        self.y_ndim_ = np.asarray(y).ndim
        self.n_keypoints_ = n_keypoints
        self.keypoint_names_ = names
        self.flip_pairs_ = pairs
        self.started_from_ = "random" if start is None else start["label"]
        self.init_points_ = None if start is None else start["point_names"]
        # per-image input standardisation (the MLP on images); a starting model's weights expect its own setting
        standardise = (start["input_standardised"] if start is not None
                       else checked.kind == "image" and recipe(self.architecture)["standardise_input"])
        self.input_standardised_ = bool((self.net_kwargs or {}).get("module__standardise_input", standardise)) \
            if self.architecture == "mlp" else False

        self.frame_ = KeypointFrame(self.image_size, standardise_targets=recipe(self.architecture)["standardise_targets"])
        inputs = self.frame_.fit_inputs(checked, targets, reference=None if start is None else start["frame"])[keep]
        if start is not None and start["point_map"] is not None and start["module_frame"].y_scale is not None:
            # a new output point starts from an old point's output weights: give it that point's scaling too
            cols = np.ravel([[2 * j, 2 * j + 1] for j in start["point_map"]])
            self.frame_.y_offset = np.asarray(start["module_frame"].y_offset)[cols]
            self.frame_.y_scale = np.asarray(start["module_frame"].y_scale)[cols]
        net_targets = self.frame_.targets(targets, checked)[keep]

        seed, rng = draw_seed(self.random_state)
        checkpointer = None
        if not incremental:
            checkpointer, seed, rng = self._checkpoint_seed(seed, rng, checked.data, targets, group_labels)
        fraction = 0.0 if incremental else self.validation_fraction
        valid_idx, train_idx = validation_split(len(inputs), fraction, rng,
                                                None if group_labels is None else group_labels[keep])
        if self.early_stopping is not None and len(valid_idx) == 0 and not incremental:
            raise ValueError("early_stopping needs a validation set: set validation_fraction > 0 "
                             f"(with {len(inputs)} labelled samples, {self.validation_fraction} gives none).")
        self.mean_predictor_valid_mae_px_ = self._mean_predictor_mae(net_targets, train_idx, valid_idx)
        scaling = self.frame_.target_scaling()
        train_ds = KeypointDataset(inputs[train_idx], net_targets[train_idx], augment, pairs, seed, scaling)
        valid_ds = KeypointDataset(inputs[valid_idx], net_targets[valid_idx]) if len(valid_idx) else None
        params = self._net_params(len(train_ds), valid_ds, device, seed, incremental=incremental)

        def setup(net):
            if start is None and recipe(self.architecture)["zero_output"]:
                zero_output_layer(net.module_)  # start at the mean shape (targets are standardised)
            if start is not None:
                new = transfer_weights(start["module"], net.module_, new_output=start["new_output"])
                if new:
                    self.started_from_ += " (new output layer)"
                    if start["point_map"] is not None:
                        seed_output_layer(start["module"], net.module_, start["point_map"])
            self._set_l2_groups(net)
        return self._fit_net(SkkpNetRegressor, params, train_ds, device, seed, setup=setup, checkpointer=checkpointer)

    def _starting_point(self, checked, n_features, targets):
        """What ``warm_start`` (when fitted) or ``init`` gives the network to start from: a dict
        of the module, the input frame and a label; None for a random start. Every mismatch
        is an error here, before anything is changed or trained."""
        if self.warm_start and hasattr(self, "net_"):
            source, label, what = self, "warm_start", "the fitted model (warm_start=True)"
        elif self.init is not None:
            source, label = _load_init(self.init)
            what = f"init ({label})"
        else:
            return None
        module = source.net_.module_
        fitted_arch = next((k for k, v in ARCHITECTURES.items() if type(module) is v), type(module).__name__)
        if fitted_arch != self.architecture:
            raise ValueError(f"{what} is a {fitted_arch!r} network but architecture={self.architecture!r}: "
                             f"set architecture={fitted_arch!r} (or start from random weights).")
        if source.input_kind_ != checked.kind:
            raise ValueError(f"{what} was fitted on {source.input_kind_}s but X holds {checked.kind}s.")
        if source.frame_.image_size != self.image_size:
            raise ValueError(f"{what} takes {source.frame_.image_size}x{source.frame_.image_size} network inputs "
                             f"but image_size={self.image_size}: set image_size={source.frame_.image_size}.")
        if checked.kind == "features" and source.n_features_in_ != n_features:
            raise ValueError(f"X has {n_features} features but {what} was fitted on {source.n_features_in_}.")
        n_outputs = targets.shape[1]
        if label == "warm_start" and source.n_outputs_ != n_outputs:
            raise ValueError(f"y has {n_outputs} target columns but the fitted model has {source.n_outputs_}: "
                             f"warm_start keeps the output layer (use init= to start a new layout from it).")
        same_outputs = source.n_outputs_ == n_outputs
        point_map = None
        if not same_outputs and checked.kind == "image":
            point_map = _nearest_points(source, checked, targets)
        return {"module": module, "label": label, "new_output": not same_outputs, "point_map": point_map,
                "point_names": None if point_map is None else
                [source.keypoint_names_[j] if source.keypoint_names_ else j for j in point_map],
                "frame": source.frame_ if same_outputs else _inputs_only(source.frame_),
                "module_frame": source.frame_,
                "input_standardised": bool(getattr(source, "input_standardised_", False))}

    def _mean_predictor_mae(self, net_targets, train_idx, valid_idx):
        """MAE (in the units of ``valid_mae_px``) of predicting the mean training target for every
        validation sample: the baseline a trained model must beat; None without validation."""
        if not len(valid_idx) or not len(train_idx):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column never labelled in training
            mean = np.nanmean(net_targets[train_idx], axis=0)
        err = np.abs(net_targets[valid_idx] - mean) * self.frame_.px_per_unit(self.n_outputs_)
        return float(np.nanmean(err)) if np.isfinite(err).any() else None

    def _net_params(self, n_train, valid_ds, device, seed, incremental=False):
        kwargs = dict(self.net_kwargs or {})
        loss = recipe(self.architecture)["loss"] if self.loss == "auto" else self.loss
        module_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k.startswith("module__")}
        module_kwargs.setdefault("module__channels_last", self.architecture in CHANNELS_LAST_ARCHITECTURES)
        if self.architecture == "mlp":
            # models saved before input_standardised_ existed were trained without it
            module_kwargs.setdefault("module__standardise_input", getattr(self, "input_standardised_", False))
        callbacks = [("set_epoch", EpochSetter()),
                     ("pixel_mae", PixelMAE(self.frame_.px_per_unit(self.n_outputs_)))]
        if self.lr_schedule == "cosine" and not incremental:
            callbacks.append(("lr_schedule", LRScheduler(torch.optim.lr_scheduler.CosineAnnealingLR,
                                                         T_max=self.max_epochs)))
        if self.early_stopping is not None and not incremental:
            callbacks.append(("early_stopping", EarlyStopping(patience=self.early_stopping, load_best=True)))
        log_callbacks, log_params = log_options(self.verbose)
        callbacks += log_callbacks
        params = dict(
            # a function building the network: skorch calls it, so the fitted model holds the weights
            # once, in skorch's device-mapped state, not a second time as a module parameter
            module=build_keypoint_net,
            module__architecture=self.architecture,
            module__n_outputs=self.n_outputs_,
            module__image_size=self.image_size,
            # values per network input: the resized image, or the feature vector (the MLP's input size)
            module__n_features=self.image_size ** 2 if self.input_kind_ == "image" else self.n_features_in_,
            **module_kwargs,
            criterion=MaskedKeypointLoss,
            criterion__kind=loss,
            criterion__px_per_unit=tuple(float(v) for v in self.frame_.px_per_unit(self.n_outputs_))
            if loss == "wing" and self.frame_.px_per_unit(self.n_outputs_) is not None else None,
            optimizer=DecoupledL2Adam,  # Adam, with the network's per-layer L2 penalties decoupled
            optimizer__weight_decay=self.weight_decay,
            lr=recipe(self.architecture)["lr"] if self.lr == "auto" else self.lr,
            max_epochs=1 if incremental else self.max_epochs,
            batch_size=self.batch_size,
            train_split=predefined_split(valid_ds) if valid_ds is not None else None,
            iterator_train__shuffle=True,
            **loader_generators(seed),
            iterator_train__drop_last=drop_last_for_batchnorm(n_train, self.batch_size),
            **loader_options(device, self.num_workers),
            callbacks=merge_callbacks(callbacks, kwargs.pop("callbacks", None)),
            device=device,
            amp=self.amp,
            verbose=int(self.verbose),
            **log_params,
        )
        params.update(kwargs)
        return params

    def _unfitted_net(self, device):
        """An initialised net of the fitted shape (optimiser groups included), for :func:`skkp.load`
        to fill with saved weights."""
        net = SkkpNetRegressor(**self._net_params(0, None, device, 0)).initialize()
        self._set_l2_groups(net)
        return net

    def _set_l2_groups(self, net):
        """The network's per-layer L2 penalties (c on ||w||^2) as decoupled decay ``2c``
        (:class:`skkp._recipes.DecoupledL2Adam`), with ``weight_decay`` as on every weight."""
        groups = l2_param_groups(net.module_, self.weight_decay)
        if groups and "optimizer__param_groups" not in (self.net_kwargs or {}):
            net.optimizer__param_groups = groups  # skorch reads optimizer__* attributes
            net.initialize_optimizer()

    # ------------------------------------------------------------------ predict / score
    def predict(self, X, flip_average=False):
        """Predict keypoints for images ``X``.

        Parameters
        ----------
        X : array-like
            Images in any layout accepted by :meth:`fit`.
        flip_average : bool, default=False
            Flip test-time averaging: also predict on the mirrored images, mirror
            those points back (swapping ``flip_pairs_``) and return the mean of
            the two. Twice the inference time. The result is mirror-consistent:
            a labelling offset that mirrors into its opposite cancels out of it
            (ytf68's labels sit about 1 px right of a mirror-consistent labelling
            at 96 px, docs/keypoints.md), so score it against labels corrected
            for such an offset. Needs images and a layout with left/right pairs
            (a non-empty ``flip_pairs_``).

        Returns
        -------
        y_pred : ndarray of shape (n, 2K)
            Pixel coordinates in the frame of the images passed in (or the same
            shape as the ``y`` seen in fit for plain feature regression).
        """
        check_is_fitted(self, "net_")
        if check_flag(flip_average, "flip_average") and (self.input_kind_ != "image" or not self.flip_pairs_):
            raise ValueError("flip_average=True needs a model fitted on images with left/right flip_pairs_ "
                             f"(input kind {self.input_kind_!r}, flip_pairs_={self.flip_pairs_!r}).")
        checked = self._check_X(X, fitting=False)
        pred = self.frame_.points(self._forward(self.frame_.inputs(checked)), checked)
        if flip_average:
            pred = (pred + self._mirrored_prediction(checked)) / 2.0
        if self.input_kind_ == "image":
            return pred.reshape(len(pred), -1, 2) if self.y_ndim_ == 3 else pred
        return pred.ravel() if self.y_ndim_ == 1 else pred

    def _mirrored_prediction(self, checked):
        """Points predicted on the mirrored images, mirrored back into the frame of the originals
        (mirroring commutes with the network's resize, whose pixel centres are symmetric)."""
        mirrored = np.ascontiguousarray(self.frame_.inputs(checked)[..., ::-1])
        points = self.frame_.points(self._forward(mirrored), checked)
        return flip_points(points, checked.image_shape[1], self.flip_pairs_)

    def _forward(self, inputs):
        """Network outputs for standardised inputs, in evaluation mode, ``batch_size`` at a time
        (larger CPU batches were slower: their activations leave the caches), under ``amp``; read
        back to the host once, at the end."""
        batch_size = self.batch_size
        module = self.net_.module_
        device = self.net_.device
        module.eval()
        outs = []
        with torch.inference_mode(), self._inference_autocast():
            for start in range(0, len(inputs), batch_size):
                batch = host_to_device(torch.from_numpy(inputs[start:start + batch_size]), device)
                outs.append(module(batch).float())
        out = torch.cat(outs).cpu().numpy().astype(np.float64)
        check_finite_output(out, "keypoints", len(inputs))
        return out

    def score(self, X, y, sample_weight=None):
        """Coefficient of determination R^2 over labelled coordinates (NaN skipped).

        Averaged uniformly over the output columns, as ``sklearn.metrics.r2_score``.
        """
        from sklearn.metrics import r2_score

        y_pred = np.asarray(self.predict(X), dtype=np.float64)
        y_true = check_keypoint_targets(y, len(y_pred), allow_any_width=self.input_kind_ != "image")
        if y_true.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y_true.shape[1]} target columns but the model was fitted on {self.n_outputs_}.")
        y_true = y_true.reshape(y_pred.shape)
        if not np.isnan(y_true).any():
            return r2_score(y_true, y_pred, sample_weight=sample_weight)
        y_true, y_pred = y_true.reshape(len(y_true), -1), y_pred.reshape(len(y_pred), -1)
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        scores = []
        for j in range(y_true.shape[1]):
            m = ~np.isnan(y_true[:, j])
            if m.sum() >= 2:
                scores.append(r2_score(y_true[m, j], y_pred[m, j], sample_weight=None if w is None else w[m]))
        return float(np.mean(scores)) if scores else float("nan")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = self.architecture == "mlp"
        tags.input_tags.three_d_array = True
        tags.regressor_tags.poor_score = True
        return tags


def _inputs_only(frame):
    """A copy of a features frame without its target scaling (a new output layout gets its own)."""
    copy = KeypointFrame.__new__(KeypointFrame)
    copy.__dict__.update(vars(frame), y_offset=None, y_scale=None)
    return copy


def _nearest_points(source, checked, targets):
    """For each point of ``targets``, the index of the point of ``source`` (a fitted keypoint model)
    whose predictions on these images lie nearest on average: the new output layer starts there."""
    pred = source.frame_.points(source._forward(source.frame_.inputs(checked)), checked)
    new, old = targets.reshape(len(targets), -1, 2), pred.reshape(len(pred), -1, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a point never labelled
        dist = np.nanmean(np.linalg.norm(new[:, :, None, :] - old[:, None, :, :], axis=-1), axis=0)
    return [int(j) for j in np.argmin(np.nan_to_num(dist, nan=np.inf), axis=1)]


def _inner_regressor(model):
    """The crop model of a fitted FaceKeypointRegressor (unwrapping a FrozenEstimator); other models as they are."""
    from .faces import FaceKeypointRegressor

    if isinstance(model, FaceKeypointRegressor) and hasattr(model, "regressor_"):
        return getattr(model.regressor_, "estimator", model.regressor_)
    return model


def _load_init(init):
    """``(fitted NoseKeypointRegressor, label)`` for the ``init`` parameter; never changes ``init``. A
    FaceKeypointRegressor (or a file of one) gives its crop model."""
    from sklearn.utils.validation import NotFittedError

    if not isinstance(init, (str, os.PathLike, NoseKeypointRegressor)) and _inner_regressor(init) is not init:
        init = _inner_regressor(init)

    if isinstance(init, NoseKeypointRegressor):
        try:
            check_is_fitted(init, "net_")
        except NotFittedError:
            raise ValueError("init is an unfitted NoseKeypointRegressor. (scikit-learn's clone, used by "
                             "GridSearchCV and cross_val_score, unfits estimators given as parameters: pass init "
                             "as the path of a model saved by skkp.save, or a shipped model's name.)") from None
        return init, "estimator"
    if not isinstance(init, (str, os.PathLike)):
        raise TypeError(f"init must be None, a shipped model's name, a path or a fitted NoseKeypointRegressor, "
                        f"got a {type(init).__name__}.")
    from .io import load
    from .pretrained import list_models, load_model

    if isinstance(init, str) and init in list_models():
        return load_model(init, device="cpu"), init
    path = Path(init)
    if not path.is_file():
        raise ValueError(f"init={str(init)!r} is neither a shipped model {list_models()} nor an existing file.")
    model = _inner_regressor(load(path, device="cpu"))
    if not isinstance(model, NoseKeypointRegressor) or not hasattr(model, "net_"):
        raise ValueError(f"init={str(init)!r} holds a {type(model).__name__}"
                         f"{'' if hasattr(model, 'net_') else ' that is not fitted'}; a fitted "
                         f"NoseKeypointRegressor is needed.")
    return model, str(path)
