"""NoseKeypointRegressor: a scikit-learn estimator that regresses keypoints from images."""
import numbers
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNetRegressor
from skorch.callbacks import EarlyStopping, LRScheduler, ProgressBar
from skorch.helper import predefined_split

from ._version import __version__
from ._keypoint_data import (KeypointDataset, PixelMAE, SetEpoch, from_unit, rescale_points, resize_images,
                             to_unit)
from ._skorch_utils import isolated_rng, prepare_for_pickle
from ._training import resolve_device
from ._validation import check_groups, check_images, check_keypoint_targets
from .schemas import infer_flip_pairs
from .datasets import KEYPOINT_SCHEMAS
from .losses import MaskedKeypointLoss
from .nets import ARCHITECTURES, build_keypoint_net

#: Architectures that train faster in the ``channels_last`` memory format on CPU
#: (measured by benchmarks/bench_keypoint_speed.py; results/keypoint_speed.json).
CHANNELS_LAST_ARCHITECTURES = ("cnn", "heatmap", "inception")

#: Augmentation used when ``augment=True``; a dict passed as ``augment`` overrides these keys.
AUGMENT_DEFAULTS = {"rotation": 15.0, "scale": (0.9, 1.1), "shift": 0.05, "flip": False,
                    "brightness": 0.2, "contrast": 0.2}


# ----------------------------------------------------------------------------- schemas
def _resolve_schema(schema, n_keypoints):
    """A named schema, a KeypointSchema, or (schema=None) the only schema with K points."""
    schemas = KEYPOINT_SCHEMAS
    if schema is None:
        matches = [s for s in schemas.values() if s.n_keypoints == n_keypoints]
        return matches[0] if len(matches) == 1 else None
    if isinstance(schema, str):
        if schema not in schemas:
            raise ValueError(f"schema must be one of {sorted(schemas)} or a KeypointSchema, got {schema!r}.")
        schema = schemas[schema]
    if schema.n_keypoints != n_keypoints:
        raise ValueError(f"schema {schema.name!r} has {schema.n_keypoints} keypoints but y has "
                         f"{n_keypoints}.")
    return schema


# ----------------------------------------------------------------------------- estimator
def _group_split(groups, fraction, rng):
    """(valid_idx, train_idx): whole groups, in random order, until ``fraction`` of the rows are held
    out; no validation when that would leave no group to train on."""
    names, inverse = np.unique(groups, return_inverse=True)
    chosen, n_valid, target = [], 0, fraction * len(groups)
    for g in rng.permutation(len(names)):
        if n_valid >= target:
            break
        chosen.append(g)
        n_valid += int(np.sum(inverse == g))
    valid = np.isin(inverse, chosen)
    if valid.all():
        valid[:] = False
    return np.flatnonzero(valid), np.flatnonzero(~valid)


class NoseKeypointRegressor(RegressorMixin, BaseEstimator):
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
        CNN, a plain CNN, or a one-hidden-layer MLP on raw pixels (the MLP also
        accepts any 2-D feature matrix).
    image_size : int, default=96
        Side of the square network input.
    max_epochs : int, default=60
    batch_size : int, default=64
    lr : float, default=2e-3
        Learning rate of the Adam optimiser.
    weight_decay : float, default=0.0
        L2 penalty on every weight, on top of the network's own per-layer penalties.
    loss : {"mse", "l1", "smooth_l1"}, default="l1"
        Per-coordinate training loss (unlabelled coordinates are masked out).
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
        DataLoader worker processes for training.
    device : {"auto", "cpu", "cuda"}, default="auto"
    random_state : int, RandomState or None, default=None
        Seeds initialisation, the validation split, shuffling and augmentation.
        The global torch and numpy random states are left untouched.
    verbose : int, default=0
        0 silent; 1 a per-epoch log of train/valid loss and MAE in pixels with a
        progress bar.
    net_kwargs : dict or None, default=None
        Extra keyword arguments for ``skorch.NeuralNetRegressor`` (callbacks,
        ``optimizer__*``, ``module__*`` for the network's constructor, ...).

    Attributes
    ----------
    net_ : skorch.NeuralNetRegressor
    n_keypoints_ : int or None
        K, when y holds keypoints; None for a plain regression on features.
    keypoint_names_ : list of str or None
    flip_pairs_ : tuple of (int, int)
    history_ : skorch.History
    n_features_in_ : int
        Values per input sample (H * W * channels for images).
    image_shape_ : (int, int) or None
        Image shape seen in fit.
    device_ : str

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
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "loss": [StrOptions({"mse", "l1", "smooth_l1"})],
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
    }

    def __init__(self, architecture="heatmap", image_size=96, max_epochs=60, batch_size=64, lr=2e-3,
                 weight_decay=0.0, loss="l1", lr_schedule="cosine", validation_fraction=0.1,
                 early_stopping=None, augment=True, schema=None, keypoint_names=None, flip_pairs=None,
                 num_workers=0, device="auto", random_state=None, verbose=0, net_kwargs=None):
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

    # ------------------------------------------------------------------ input handling
    def _check_X(self, X, fitting):
        checked = check_images(X, allow_features=self.architecture == "mlp")
        if not fitting:
            if checked.kind != self.input_kind_:
                raise ValueError(f"X holds {checked.kind}s but the model was fitted on {self.input_kind_}s.")
            if checked.kind == "features" and checked.data.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {checked.data.shape[1]} features, but {type(self).__name__} is "
                                 f"expecting {self.n_features_in_} features as input.")
            if checked.kind == "image" and checked.n_channels_in != self.n_channels_in_:
                raise ValueError(f"X has {checked.n_channels_in} channel(s) per image but the model was "
                                 f"fitted on images with {self.n_channels_in_} channel(s).")
        return checked

    def _network_input(self, checked):
        """Resize images to image_size and standardise with the statistics of fit."""
        data = checked.data
        if checked.kind == "image":
            data = resize_images(data, self.image_size)
        return ((data - self.x_mean_) / self.x_std_).astype(np.float32)

    def _augment_config(self):
        if self.augment is True:
            return dict(AUGMENT_DEFAULTS)
        if self.augment is False:
            return None
        unknown = set(self.augment) - set(AUGMENT_DEFAULTS)
        if unknown:
            raise ValueError(f"augment has unknown keys {sorted(unknown)}; valid keys are "
                             f"{sorted(AUGMENT_DEFAULTS)}.")
        return {**AUGMENT_DEFAULTS, **self.augment}

    def _resolve_names(self, n_keypoints, targets):
        schema = _resolve_schema(self.schema, n_keypoints) if n_keypoints else None
        names = list(schema.names) if schema is not None else None
        if self.keypoint_names is not None:
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
            (n, H, W, 3), uint8 or float; with ``architecture="mlp"`` also any
            feature matrix (n, p).
        y : array-like of shape (n, 2K) or (n, K, 2)
            Pixel coordinates ``x0, y0, x1, y1, ...`` in the frame of ``X``; NaN
            marks an unlabelled point. With a plain feature matrix any (n,) or
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
        self._validate_params()
        checked = self._check_X(X, fitting=True)
        is_image = checked.kind == "image"
        targets = check_keypoint_targets(y, checked.data.shape[0], allow_any_width=not is_image)
        group_labels = check_groups(groups, checked.data.shape[0])
        n_keypoints = targets.shape[1] // 2 if is_image else None
        names, pairs = self._resolve_names(n_keypoints, targets)
        augment = self._augment_config() if is_image else None
        device = resolve_device(self.device)

        unlabelled = np.isnan(targets).all(axis=1)
        if unlabelled.all():
            raise ValueError("y has no labelled coordinate: every row is entirely NaN.")
        if unlabelled.any():
            warnings.warn(f"{int(unlabelled.sum())} of {len(targets)} rows of y have no labelled keypoint "
                          f"(all NaN); they are left out of training.", UserWarning, stacklevel=2)

        # Everything decided from the data is fixed before any training starts.
        self.input_kind_ = checked.kind
        self.n_channels_in_ = checked.n_channels_in
        self.image_shape_ = checked.image_shape
        self.n_features_in_ = (int(np.prod(checked.image_shape)) * checked.n_channels_in if is_image
                               else checked.data.shape[1])
        self.n_outputs_ = targets.shape[1]
        self.y_ndim_ = np.asarray(y).ndim
        self.n_keypoints_ = n_keypoints
        self.keypoint_names_ = names
        self.flip_pairs_ = pairs
        self.device_ = device

        data = checked.data
        if is_image:
            data = resize_images(data, self.image_size)
            net_targets = to_unit(rescale_points(targets, checked.image_shape, (self.image_size,) * 2),
                                   self.image_size)
            self.x_mean_, self.x_std_ = np.float32(data.mean()), np.float32(data.std() or 1.0)
            self.y_offset_ = None
        else:
            self.x_mean_ = data.mean(axis=0)
            std = data.std(axis=0)
            self.x_std_ = np.where(std > 0, std, 1.0).astype(np.float32)
            mean_y = np.nanmean(targets, axis=0)
            std_y = np.nanstd(targets, axis=0)
            self.y_offset_ = np.nan_to_num(mean_y)
            self.y_scale_ = np.where(np.nan_to_num(std_y) > 0, np.nan_to_num(std_y), 1.0)
            net_targets = (targets - self.y_offset_) / self.y_scale_
        inputs = ((data - self.x_mean_) / self.x_std_).astype(np.float32)
        net_targets = net_targets.astype(np.float32)
        keep = ~unlabelled
        inputs, net_targets = inputs[keep], net_targets[keep]

        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        if group_labels is None:
            order = rng.permutation(len(inputs))
            n_valid = int(round(self.validation_fraction * len(inputs)))
            if n_valid >= len(inputs):
                n_valid = 0
            valid_idx, train_idx = np.sort(order[:n_valid]), np.sort(order[n_valid:])
        else:
            valid_idx, train_idx = _group_split(group_labels[keep], self.validation_fraction, rng)
            n_valid = len(valid_idx)
        if self.early_stopping is not None and n_valid == 0:
            raise ValueError("early_stopping needs a validation set: set validation_fraction > 0 "
                             f"(with {len(inputs)} labelled samples, {self.validation_fraction} gives none).")

        train_ds = KeypointDataset(inputs[train_idx], net_targets[train_idx], augment, pairs, seed)
        valid_ds = KeypointDataset(inputs[valid_idx], net_targets[valid_idx]) if n_valid else None
        px_per_unit = (np.full(self.n_outputs_, self.image_size / 2.0) if is_image else self.y_scale_)
        with isolated_rng(device):
            torch.manual_seed(seed)
            self.net_ = self._build_net(inputs, train_ds, valid_ds, px_per_unit, device)
            self.net_.fit(train_ds, y=None)
        # Keep no training data (epoch setter, validation split) inside the fitted model.
        prepare_for_pickle(self.net_, drop=("set_epoch",))
        return self

    def _build_net(self, inputs, train_ds, valid_ds, px_per_unit, device):
        kwargs = dict(self.net_kwargs or {})
        module_kwargs = {k[len("module__"):]: kwargs.pop(k) for k in list(kwargs) if k.startswith("module__")}
        channels_last = module_kwargs.pop("channels_last", self.architecture in CHANNELS_LAST_ARCHITECTURES)
        module = build_keypoint_net(self.architecture, self.n_outputs_, self.image_size,
                                    n_features=int(np.prod(inputs.shape[1:])), channels_last=channels_last,
                                    **module_kwargs)
        callbacks = [("set_epoch", SetEpoch(train_ds)), ("pixel_mae", PixelMAE(px_per_unit))]
        if self.lr_schedule == "cosine":
            callbacks.append(("lr_schedule", LRScheduler(torch.optim.lr_scheduler.CosineAnnealingLR,
                                                         T_max=self.max_epochs)))
        if self.early_stopping is not None:
            callbacks.append(("early_stopping", EarlyStopping(patience=self.early_stopping, load_best=True)))
        if self.verbose:
            callbacks.append(("progress_bar", ProgressBar()))
        for i, cb in enumerate(kwargs.pop("callbacks", None) or []):  # skorch wants all named or none
            callbacks.append(cb if isinstance(cb, tuple) else (f"{type(cb).__name__}_{i}", cb))
        # Per-layer L2 penalties of the network (coefficient c on ||w||^2 adds 2c*w to the gradient).
        groups = [(name, {"weight_decay": 2.0 * coef + self.weight_decay})
                  for name, coef in getattr(module, "l2_penalties", {}).items()]
        n_train = len(train_ds)
        params = dict(
            module=module,
            criterion=MaskedKeypointLoss,
            criterion__kind=self.loss,
            optimizer=torch.optim.Adam,
            optimizer__weight_decay=self.weight_decay,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            train_split=predefined_split(valid_ds) if valid_ds is not None else None,
            iterator_train__shuffle=True,
            # a last batch of one sample would break batch normalisation
            iterator_train__drop_last=n_train > 1 and n_train % min(self.batch_size, n_train) == 1,
            iterator_train__num_workers=self.num_workers,
            iterator_train__persistent_workers=False,
            callbacks=callbacks,
            device=device,
            verbose=int(self.verbose),
        )
        if groups:
            params["optimizer__param_groups"] = groups
        params.update(kwargs)
        return NeuralNetRegressor(**params)

    # ------------------------------------------------------------------ predict / score
    def predict(self, X):
        """Predict keypoints for images ``X``.

        Returns
        -------
        y_pred : ndarray of shape (n, 2K)
            Pixel coordinates in the frame of the images passed in (or the same
            shape as the ``y`` seen in fit for plain feature regression).
        """
        check_is_fitted(self, "net_")
        checked = self._check_X(X, fitting=False)
        inputs = self._network_input(checked)
        out = self._forward(inputs)
        if self.input_kind_ == "image":
            pred = rescale_points(from_unit(out, self.image_size), (self.image_size,) * 2,
                                   checked.image_shape)
            return pred.reshape(len(pred), -1, 2) if self.y_ndim_ == 3 else pred
        pred = out * self.y_scale_ + self.y_offset_
        return pred.ravel() if self.y_ndim_ == 1 else pred

    def _forward(self, inputs):
        """Network outputs for standardised inputs, in evaluation mode, ``batch_size`` at a time
        (larger CPU batches were slower: their activations leave the caches)."""
        batch_size = self.batch_size
        module = self.net_.module_
        device = self.net_.device
        module.eval()
        outs = []
        with torch.inference_mode():
            for start in range(0, len(inputs), batch_size):
                batch = torch.from_numpy(inputs[start:start + batch_size]).to(device)
                outs.append(module(batch).float().cpu().numpy())
        return np.concatenate(outs).astype(np.float64)

    def score(self, X, y, sample_weight=None):
        """Coefficient of determination R^2 over labelled coordinates (NaN skipped).

        Averaged uniformly over the output columns, as ``sklearn.metrics.r2_score``.
        """
        from sklearn.metrics import r2_score

        y_pred = np.asarray(self.predict(X), dtype=np.float64)
        y_true = np.asarray(y, dtype=np.float64).reshape(y_pred.shape)
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

    @property
    def history_(self):
        """skorch ``History`` of the last fit: one dict per epoch (losses, MAE in pixels, timings)."""
        check_is_fitted(self, "net_")
        return self.net_.history

    # ------------------------------------------------------------------ sklearn / persistence
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = self.architecture == "mlp"
        tags.input_tags.three_d_array = True
        tags.regressor_tags.poor_score = True
        return tags

    def __getstate__(self):
        state = super().__getstate__()
        state["_skkp_version"] = __version__
        return state

    def __setstate__(self, state):
        saved = state.pop("_skkp_version", None)
        if saved is not None and saved != __version__:
            warnings.warn(f"This {type(self).__name__} was saved with skkp {saved} and is loaded with skkp "
                          f"{__version__}; results may differ. Refit or use skkp {saved}.",
                          UserWarning, stacklevel=2)
        super().__setstate__(state)
