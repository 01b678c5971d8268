"""The one skorch skeleton both neural estimators use.

:class:`NeuralEstimatorMixin` gives :class:`skkp.NoseKeypointRegressor` and
:class:`skkp.FaceParser` the same training plumbing, written once:

- the seed draw (:func:`draw_seed`) and torch RNG isolation (:func:`isolated_rng`):
  ``random_state`` decides everything, the caller's global NumPy and torch states
  are never touched;
- the validation split (:func:`validation_split`, whole groups when ``groups`` is given);
- the BatchNorm-safe ``drop_last`` rule (:func:`drop_last_for_batchnorm`);
- built-in plus user callbacks (:func:`merge_callbacks`) and the one
  :class:`EpochSetter` that tells an augmenting dataset which epoch starts;
- pickling (:func:`prepare_for_pickle`), the skkp version stamp and its warning,
  the ``device_`` refresh when a GPU-fitted model is loaded on a CPU machine, and
  ``history_``.
"""
import warnings

import numpy as np
import torch
from skorch.callbacks import Callback, LRScheduler
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._version import __version__


def resolve_device(device, name="device"):
    """Map ``"auto"`` to ``"cuda"`` when available, else ``"cpu"``; check other values."""
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{name} must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}.")
    device = str(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" or device == "cuda" or device.startswith("cuda:") or device == "mps":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"{name}={device!r} was requested but CUDA is not available on this machine; "
                             f"use device='auto' or 'cpu'.")
        return device
    raise ValueError(f"{name} must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}.")


def draw_seed(random_state):
    """``(seed, rng)`` for one fit: an int seed for torch and the datasets, and a NumPy
    generator for the validation split.

    An int or RandomState draws the seed from ``check_random_state(random_state)``
    (which then also makes the split); ``None`` takes fresh OS entropy, so the
    global NumPy generator is neither used nor advanced.

    Examples
    --------
    >>> draw_seed(0)[0] == draw_seed(0)[0]
    True
    """
    if random_state is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        return seed, np.random.RandomState(seed)
    rng = check_random_state(random_state)
    return int(rng.randint(np.iinfo(np.int32).max)), rng


def isolated_rng(device):
    """Context in which torch's global generators (CPU, and ``device`` if CUDA) may be
    seeded and used without changing the caller's random state."""
    device = torch.device(str(device))
    return torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else [])


def drop_last_for_batchnorm(n_samples, batch_size):
    """Whether to drop the last training batch: only when it would hold a single
    sample, which BatchNorm cannot normalise.

    Examples
    --------
    >>> drop_last_for_batchnorm(65, 64), drop_last_for_batchnorm(64, 64)
    (True, False)
    """
    return n_samples > 1 and n_samples % min(batch_size, n_samples) == 1


def _group_split(groups, fraction, rng):
    """Whole groups, in random order, until ``fraction`` of the rows are held out;
    nothing held out when that would leave no group to train on."""
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


def validation_split(n_samples, fraction, rng, groups=None):
    """``(valid_idx, train_idx)``, both sorted: a random ``fraction`` of the rows, or
    whole groups (people) adding up to about that fraction when ``groups`` is given.

    Nothing is held out when the fraction rounds to every row (or to none).

    Examples
    --------
    >>> valid, train = validation_split(10, 0.2, np.random.RandomState(0))
    >>> len(valid), len(train)
    (2, 8)
    """
    if groups is not None:
        return _group_split(groups, fraction, rng)
    order = rng.permutation(n_samples)
    n_valid = int(round(fraction * n_samples))
    if n_valid >= n_samples:
        n_valid = 0
    return np.sort(order[:n_valid]), np.sort(order[n_valid:])


def merge_callbacks(builtin, user):
    """Built-in ``(name, callback)`` pairs followed by the user's callbacks, all named
    (skorch wants all callbacks named or none); an unnamed one gets ``ClassName_i``."""
    out = list(builtin)
    for i, cb in enumerate(user or []):
        out.append(cb if isinstance(cb, tuple) else (f"{type(cb).__name__}_{i}", cb))
    return out


class EpochSetter(Callback):
    """Tell the training dataset which epoch starts (0 for the first), so per-sample
    augmentation seeded by ``(seed, epoch, index)`` differs from epoch to epoch.

    Reads skorch's ``dataset_train`` (unwrapping ``Subset``), so it holds no data and
    pickles empty; any dataset with an ``epoch`` attribute is told.
    """

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        ds = dataset_train
        while isinstance(ds, torch.utils.data.Subset):
            ds = ds.dataset
        if hasattr(ds, "epoch"):
            ds.epoch = len(net.history) - 1  # skorch has already opened this epoch's row


def prepare_for_pickle(net):
    """Make a fitted skorch ``net`` safe and small to pickle, in place.

    Learning-rate schedulers hold the optimizer with its parameters, which skorch
    pickles without its CUDA -> CPU mapping, so a GPU-fitted model would not load
    on a CPU-only machine; skorch rebuilds them at the next ``fit``. The train
    split (which holds the validation data) is removed.
    """
    for _, callback in net.callbacks_:
        if isinstance(callback, LRScheduler):
            callback.lr_scheduler_ = None
    net.train_split = None
    return net


class NeuralEstimatorMixin:
    """What every skkp estimator that trains a skorch net shares (see the module doc).

    Subclasses build their skorch parameters and datasets, then call :meth:`_fit_net`.
    """

    def _fit_net(self, net_class, params, train_ds, device, seed, setup=None):
        """Build, initialise and train ``net_class(**params)`` on ``train_ds`` with torch
        seeded by ``seed`` inside an isolated RNG; ``setup(net)`` runs after
        initialisation (e.g. to load weights). Sets ``net_`` and ``device_``."""
        with isolated_rng(device):
            torch.manual_seed(seed)
            net = net_class(**params).initialize()
            if setup is not None:
                setup(net)
            net.partial_fit(train_ds, y=None)
        self.net_ = prepare_for_pickle(net)
        self.device_ = str(device)
        return self

    @property
    def history_(self):
        """skorch ``History`` of the last fit: one dict per epoch (losses, metrics, timings)."""
        check_is_fitted(self, "net_")
        return self.net_.history

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
        if "net_" in state:  # skorch falls back to the CPU when CUDA is missing
            self.device_ = str(self.net_.device)
