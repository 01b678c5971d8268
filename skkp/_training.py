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
- training without skorch's silent catch of Ctrl-C (:func:`train`: a warning names the
  epochs done) and a stop with a clear error on a non-finite loss (:class:`FiniteLoss`);
- the device side (:mod:`skkp._device`): the ``amp`` parameter (autocast, float32 losses,
  gradient scaling) through :class:`~skkp._device.AmpStepMixin` on the skorch net classes
  :class:`SkkpNet` and :class:`SkkpNetRegressor`, pinned memory and workers
  (:func:`~skkp._device.loader_options`), and no host-device synchronisation per batch in
  skkp's own callbacks;
- pickling (:func:`prepare_for_pickle`), the skkp version stamp and its warning,
  the ``device_`` refresh when a GPU-fitted model is loaded on a CPU machine, and
  ``history_``.
"""
import contextvars
import re
import sys
import threading
import warnings

import numpy as np
import torch
from skorch import NeuralNet, NeuralNetRegressor
from skorch.callbacks import Callback, EarlyStopping, LRScheduler, ProgressBar
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._device import AmpStepMixin, DeferredLossMixin, PersistentWorkersMixin, autocast, loader_options, resolve_amp
from ._version import __version__

#: Held while a network is initialised: weight initialisation draws from torch's
#: process-wide generator, so two fits in threads must not interleave there.
_INIT_LOCK = threading.Lock()

#: The :class:`skkp.distributed.DataParallel` of the enclosing ``skkp.distributed.data_parallel()``
#: block, or None: fits inside one train their share of each batch with the other processes.
DATA_PARALLEL = contextvars.ContextVar("skkp_data_parallel", default=None)


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
        if DATA_PARALLEL.get() is not None:  # every process of a data-parallel fit draws process 0's
            seed = DATA_PARALLEL.get().agree_seed(seed)
        return seed, np.random.RandomState(seed)
    rng = check_random_state(random_state)
    return int(rng.randint(np.iinfo(np.int32).max)), rng


def loader_generators(seed):
    """skorch parameters giving the training and validation DataLoaders generators of their
    own (shuffling, and each iterator's base seed), so they draw nothing from torch's
    process-wide generator."""
    return {"iterator_train__generator": torch.Generator().manual_seed(seed),
            "iterator_valid__generator": torch.Generator().manual_seed(seed + 1)}


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


class FiniteLoss(Callback):
    """Stop training with a ``ValueError`` naming the epoch and batch as soon as the
    training loss is NaN or infinite (as scikit-learn's MLP stops on non-finite
    weights), instead of training on and predicting NaN.

    It reads the number skorch has already copied to the host for the history (the batch's
    ``train_loss``), so it adds no synchronisation of its own. Where the losses are read back
    once per epoch (on a GPU, :class:`skkp._device.DeferredLossMixin`), it checks them when the
    epoch's loop ends, before the other callbacks' epoch-end hooks that come after it."""

    def on_batch_end(self, net, batch=None, training=None, loss=None, **kwargs):
        if not training or loss is None:
            return
        batches = net.history[-1]["batches"]
        value = batches[-1].get("train_loss") if batches else None
        if torch.is_tensor(value):
            return  # not read back yet: checked at the epoch's end
        if value is None:  # called outside skorch's loop, which records it first
            value = float(loss.detach())
        if not np.isfinite(value):
            self._raise(net, value, len(batches))

    def on_epoch_end(self, net, **kwargs):
        batches = net.history[-1]["batches"] if len(net.history) else []
        for i, row in enumerate(batches):
            value = row.get("train_loss")
            if value is not None and not np.isfinite(float(value)):
                self._raise(net, value, i + 1)

    @staticmethod
    def _raise(net, value, n_batch):
        raise ValueError(f"The training loss became {float(value)} in epoch {len(net.history)}, batch {n_batch}; the "
                         f"network diverged. Lower lr (now {net.lr}) or check the inputs and targets.")


def train(net, dataset, epochs=None):
    """``net.partial_fit(dataset, epochs=epochs)`` without skorch's silent catch of Ctrl-C:
    returns True when training was interrupted (KeyboardInterrupt), with the callbacks'
    end-of-training hooks run. ``epochs=None`` trains ``net.max_epochs`` epochs."""
    net.notify("on_train_begin", X=dataset, y=None)
    interrupted = False
    try:
        net.fit_loop(dataset, y=None, epochs=epochs, _routing_method="partial_fit")
    except KeyboardInterrupt:
        interrupted = not stopped_early(net)  # skorch's EarlyStopping ends training with KeyboardInterrupt
    net.notify("on_train_end", X=dataset, y=None)
    return interrupted


def stopped_early(net):
    """Whether an ``EarlyStopping`` callback of ``net`` has run out of patience."""
    return any(isinstance(cb, EarlyStopping) and getattr(cb, "misses_", 0) >= cb.patience
               for _, cb in getattr(net, "callbacks_", []))


def epochs_done(history):
    """Epochs that finished training (an interrupted last epoch has no ``train_loss``)."""
    return sum("train_loss" in row for row in history)


def check_finite_output(out, what, n_images):
    """Raise ``ValueError`` when a network output (a tensor or an array) holds NaN or
    infinity: a diverged or broken model must not return silent garbage."""
    # The sum is finite exactly when every value is (NaN or infinity propagate), barring an overflow
    # of the sum itself, which only values near 1e38 can cause; one reduction instead of a boolean
    # tensor as large as the output (FaceParser's logits: 0.24 s against 0.01 s per 16 x 19 x 448 x 448)
    finite = torch.isfinite(out.sum()) if torch.is_tensor(out) else np.isfinite(out.sum())
    if not bool(finite):
        raise ValueError(f"The network produced NaN or infinite {what} for some of these {n_images} images: "
                         f"the model is broken (e.g. it diverged in training). Refit it, with a lower lr.")


def initialize_net(net_class, params, device, seed, setup=None, attempts=5):
    """``net_class(**params).initialize()`` (then ``setup(net)``) with torch seeded by ``seed``,
    under :data:`_INIT_LOCK` and inside :func:`isolated_rng`.

    The lock keeps other skkp fits out, but any code in another thread may draw from
    torch's global generator meanwhile. So, when the process runs other Python threads, the
    net is built twice and kept only when both builds agree (same weights, same generator
    state afterwards); otherwise it is built again, up to ``attempts`` times. With no other
    thread nothing else can draw, and one build is enough (a ResNet18 parser takes about
    0.2 s to build). ``setup`` (which must not draw random numbers, e.g. loading weights
    from a file) runs once, on the net that is kept.
    """
    with _INIT_LOCK:
        n_builds = 1 if threading.active_count() == 1 else 2
        for _ in range(attempts):
            builds = []
            for _ in range(n_builds):
                with isolated_rng(device):
                    torch.manual_seed(seed)
                    builds.append((net_class(**params).initialize(), torch.get_rng_state()))
            (net, state), (other, other_state) = builds[0], builds[-1]
            same = other is net or torch.equal(state, other_state) and all(
                torch.equal(a, b) for a, b in zip(net.module_.state_dict().values(),
                                                  other.module_.state_dict().values()))
            if same:
                if setup is not None:
                    setup(net)
                return net
    raise RuntimeError(f"Could not initialise the network reproducibly in {attempts} attempts: another thread "
                       f"kept drawing from torch's global random generator.")


def give_private_generators(net, seed):
    """Give every module that can take one (e.g. :class:`skkp.nets.GeneratorDropout`) its own
    generator seeded from ``seed``, so training draws nothing from torch's global generator."""
    device = next(net.module_.parameters()).device
    for i, module in enumerate(net.module_.modules()):
        if hasattr(type(module), "generator"):
            module.generator = torch.Generator(device=device).manual_seed(seed + 7919 * (i + 1))


class SkkpNet(DeferredLossMixin, PersistentWorkersMixin, AmpStepMixin, NeuralNet):
    """skorch's ``NeuralNet`` with the ``amp`` parameter and non-blocking copies
    (:class:`~skkp._device.AmpStepMixin`) and, on GPUs, one loss read-back per epoch
    (:class:`~skkp._device.DeferredLossMixin`); :class:`skkp.FaceParser` trains one."""


class SkkpNetRegressor(DeferredLossMixin, PersistentWorkersMixin, AmpStepMixin, NeuralNetRegressor):
    """skorch's ``NeuralNetRegressor`` with the ``amp`` parameter, non-blocking copies and, on
    GPUs, one loss read-back per epoch; :class:`skkp.NoseKeypointRegressor` trains one."""


class TimeLeft(Callback):
    """Record ``time_left_s`` each epoch: the mean epoch duration so far times the epochs
    still to run, so the per-epoch log says how long training will still take."""

    def on_epoch_end(self, net, **kwargs):
        durations = [row["dur"] for row in net.history if "dur" in row]
        if durations:
            net.history.record("time_left_s", round(float(np.mean(durations)) * (net.max_epochs - len(net.history)), 1))


class BatchProgressBar(ProgressBar):
    """skorch's progress bar, showing the batch losses as numbers where they are still device
    tensors (on a GPU, :class:`skkp._device.DeferredLossMixin` reads them once per epoch): the
    bar reads each one, a wait per batch that only a terminal with ``verbose`` pays."""

    def _get_postfix_dict(self, net):
        return {k: float(v) if torch.is_tensor(v) else v for k, v in super()._get_postfix_dict(net).items()}


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def print_plain(text):
    """skorch's log line without its ANSI colour codes (for logs that are not a terminal)."""
    print(_ANSI.sub("", str(text)), flush=True)


def log_options(verbose):
    """``(callbacks, skorch params)`` for the per-epoch log: with ``verbose``, a time-left
    column, and on a terminal a progress bar; elsewhere (a log file, a pipe) plain lines
    without colour codes or bar redraws."""
    if not verbose:
        return [], {}
    if sys.stdout.isatty():
        return [("time_left", TimeLeft()), ("progress_bar", BatchProgressBar())], {}
    return [("time_left", TimeLeft())], {"callbacks__print_log__sink": print_plain}


def prepare_for_pickle(net):
    """Make a fitted skorch ``net`` safe and small to pickle, in place.

    Learning-rate schedulers hold the optimizer with its parameters, which skorch
    pickles without its CUDA -> CPU mapping, so a GPU-fitted model would not load
    on a CPU-only machine; skorch rebuilds them at the next ``fit``. The train
    split (which holds the validation data) and the modules' private generators
    are removed.
    """
    for _, callback in net.callbacks_:
        if isinstance(callback, LRScheduler):
            callback.lr_scheduler_ = None
    for module in net.module_.modules():
        module.__dict__.pop("generator", None)
    net.train_split = None
    return net


#: Callbacks that belong to one whole ``fit`` (a schedule over ``max_epochs``, early stopping,
#: the checkpoint of that fit): ``partial_fit`` trains without them.
PLANNED_CALLBACKS = ("lr_schedule", "early_stopping", "checkpoint")


def make_incremental(net):
    """Remove the :data:`PLANNED_CALLBACKS` from a skorch ``net``, in place: ``partial_fit``
    trains one epoch at a time at the constant learning rate ``net.lr``."""
    names = [name for name, _ in net.callbacks_]
    if any(name in PLANNED_CALLBACKS for name in names):
        net.callbacks = [cb for cb in net.callbacks if not (isinstance(cb, tuple) and cb[0] in PLANNED_CALLBACKS)]
        net.initialize_callbacks()
    return net


class NeuralEstimatorMixin:
    """What every skkp estimator that trains a skorch net shares (see the module doc).

    Subclasses build their skorch parameters and datasets, then call :meth:`_fit_net`
    (a new network, or one started from given weights through ``setup``) or
    :meth:`_continue_net` (one more epoch of the fitted network, for ``partial_fit``).
    """

    def _checkpoint_seed(self, seed, rng, *arrays):
        """``(checkpointer, seed, rng)`` for a fit with ``checkpoint=``: a matching saved state
        there gives back its seed (a ``random_state=None`` fit resumes with the same draws)."""
        if getattr(self, "checkpoint", None) is None:
            return None, seed, rng
        from ._checkpoint import Checkpointer, fingerprint

        checkpointer = Checkpointer(self.checkpoint, fingerprint(self, *arrays), seed)
        checkpointer.state = checkpointer.saved_state()
        if checkpointer.state is not None and checkpointer.state["seed"] != seed:
            seed = checkpointer.seed = int(checkpointer.state["seed"])
            rng = np.random.RandomState(seed)
        return checkpointer, seed, rng

    def _fit_net(self, net_class, params, train_ds, device, seed, setup=None, checkpointer=None):
        """Build and initialise ``net_class(**params)`` (:func:`initialize_net`), then train it on
        ``train_ds`` with private generators only; ``setup(net)`` runs after
        initialisation (e.g. to load weights). With a ``checkpointer``
        (:meth:`_checkpoint_seed`) the state is written after each epoch, and a saved
        one is resumed. Sets ``net_``, ``device_`` and ``fit_interrupted_`` (a Ctrl-C
        during training warns, naming the epochs done; a non-finite training loss
        raises ``ValueError``)."""
        callbacks = [("finite_loss", FiniteLoss())] + list(params.get("callbacks") or [])
        if checkpointer is not None:
            callbacks.append(("checkpoint", checkpointer))
        parallel = DATA_PARALLEL.get()
        if parallel is not None:
            device = parallel.device(device)
        net = initialize_net(net_class, dict(params, callbacks=callbacks, device=device), device, seed, setup)
        # training draws only from generators of its own (data order, augmentation, dropout), so
        # fits in threads, or other threads drawing random numbers, do not change it
        give_private_generators(net, seed)
        epochs = None  # all of max_epochs
        if checkpointer is not None and checkpointer.state is not None:
            epochs = checkpointer.restore(net, checkpointer.state)
        if parallel is not None:
            interrupted = parallel.train(net, train_ds, epochs, seed)
        else:
            interrupted = train(net, train_ds, epochs)
        if checkpointer is not None:
            checkpointer.state = None  # the model does not carry the saved state around
        self.net_ = prepare_for_pickle(net)
        self.device_ = str(device)
        self.fit_interrupted_ = interrupted
        if interrupted:
            warnings.warn(f"{type(self).__name__}.fit was interrupted (KeyboardInterrupt) after "
                          f"{epochs_done(net.history)} of {net.max_epochs} epochs; the model keeps the weights it had then (fit_interrupted_ "
                          f"is True). Refit to train it fully.", UserWarning, stacklevel=3)
        return self

    def _continue_net(self, train_ds, seed):
        """One more epoch of ``self.net_`` on ``train_ds`` (``partial_fit``): constant learning
        rate, optimiser state kept, private generators seeded by ``seed``."""
        net = make_incremental(self.net_)
        if hasattr(net, "amp"):  # follows set_params(amp=...) since the last fit
            net.amp = self.amp
        # pinned memory only where the net now is (a GPU model may have been loaded on a CPU machine)
        for key, value in loader_options(net.device, getattr(self, "num_workers", 0)).items():
            setattr(net, key, value)
        n, batch_size = len(train_ds), int(net.batch_size)
        # plain attributes: skorch reads iterator_train__* from them when it builds the loader
        net.iterator_train__drop_last = drop_last_for_batchnorm(n, batch_size)
        for key, generator in loader_generators(seed).items():
            setattr(net, key, generator)
        give_private_generators(net, seed)
        parallel = DATA_PARALLEL.get()
        if parallel is not None:
            interrupted = parallel.train(net, train_ds, 1, seed)
        else:
            interrupted = train(net, train_ds, epochs=1)
        self.net_ = prepare_for_pickle(net)
        self.fit_interrupted_ = interrupted
        if interrupted:
            warnings.warn(f"{type(self).__name__}.partial_fit was interrupted (KeyboardInterrupt); the model keeps "
                          f"the weights it had then (fit_interrupted_ is True).", UserWarning, stacklevel=3)
        return self

    def _inference_autocast(self):
        """Autocast context for predicting with the fitted network: ``amp`` on the network's
        device (off on the CPU unless asked for); callers cast the outputs to float32."""
        device = self.net_.device
        return autocast(device, resolve_amp(getattr(self, "amp", "auto"), device))

    def to_onnx(self, path, opset=None):
        """Write the fitted model to an ONNX file with its preprocessing (:func:`skkp.onnx.export`);
        :func:`skkp.onnx.load` reads it back for onnxruntime, without torch.

        Returns
        -------
        pathlib.Path
        """
        from .onnx import export  # lazily: onnx is an extra

        return export(self, path, opset=opset)

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
