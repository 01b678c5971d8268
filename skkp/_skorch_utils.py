"""Small helpers shared by the estimators that wrap skorch nets."""
import torch
from skorch.callbacks import LRScheduler


def isolated_rng(device):
    """Context in which torch's global generators (CPU, and ``device`` if CUDA) may be
    seeded and used without changing the caller's random state."""
    device = torch.device(str(device))
    return torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else [])


def prepare_for_pickle(net, drop=()):
    """Make a fitted skorch ``net`` safe and small to pickle, in place.

    Learning-rate schedulers hold the optimizer with its parameters, which skorch
    pickles without its CUDA -> CPU mapping, so a GPU-fitted model would not load
    on a CPU-only machine; skorch rebuilds them at the next ``fit``. Callbacks
    named in ``drop`` (e.g. ones holding training data) and the train split are
    removed.
    """
    for _, callback in net.callbacks_:
        if isinstance(callback, LRScheduler):
            callback.lr_scheduler_ = None
    if drop:
        net.callbacks_ = [(n, cb) for n, cb in net.callbacks_ if n not in drop]
        net.callbacks = [(n, cb) for n, cb in (net.callbacks or []) if n not in drop]
    net.train_split = None
    return net
