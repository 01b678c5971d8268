"""Checkpoints for ``fit(..., checkpoint=DIR)``: the whole training state after each epoch.

:class:`Checkpointer` writes, after every epoch, into the directory:

- ``last.pt``: network weights, optimiser state, learning-rate schedule, early-stopping
  counters, the gradient scaler of float16 training, the history and the state of every
  private random generator (data order, dropout), so a fit that was interrupted (Ctrl-C, a killed process) resumes after its last
  finished epoch and ends with the same weights as an uninterrupted run;
- ``best.pt``: the weights of the epoch with the best monitored loss (``valid_loss``, or
  ``train_loss`` without a validation split);
- ``history.json``: the per-epoch history, readable by anything.

Files are written with ``torch.save`` and read with ``torch.load(weights_only=True)``: reading
one runs no code. A ``last.pt`` is only resumed when its fingerprint (the estimator's
parameters and a hash of the training data) matches the new fit; otherwise it is ignored with
a warning and overwritten.
"""
import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import Callback, EarlyStopping, LRScheduler
from skorch.history import History

LAST, BEST, HISTORY = "last.pt", "best.pt", "history.json"
CHECKPOINT_VERSION = 1
#: Parameters that do not change what a fit computes (on one device). ``amp``, like ``device``,
#: chooses how the arithmetic is done, not the recipe: a fit may resume on another device or
#: precision (and then ends close to, not bit-identical with, an uninterrupted run).
_NEUTRAL = ("checkpoint", "verbose", "device", "num_workers", "amp")


def _describe(value):
    """A stable text for a parameter value; a fitted estimator is described by its weights."""
    net = getattr(value, "net_", None)
    if net is not None:
        h = hashlib.sha256()
        for key, tensor in net.module_.state_dict().items():
            h.update(key.encode())
            h.update(tensor.detach().cpu().numpy().tobytes())
        return f"{type(value).__name__}(weights={h.hexdigest()})"
    return repr(value)


def fingerprint(estimator, *arrays):
    """Hex digest of the estimator's parameters (except :data:`_NEUTRAL`) and the training arrays."""
    h = hashlib.sha256(type(estimator).__name__.encode())
    params = estimator.get_params(deep=False)
    for key in sorted(params):
        if key not in _NEUTRAL:
            h.update(f"{key}={_describe(params[key])};".encode())
    for array in arrays:
        if array is None:
            h.update(b"None;")
            continue
        array = np.asarray(array)
        if array.dtype == object:
            array = array.astype(str)
        array = np.ascontiguousarray(array)
        h.update(f"{array.shape}{array.dtype.str};".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def _plain(value):
    """History values as plain Python (numpy scalars would need unpickling to read back)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _grad_scaler_state(net):
    """The state of the net's float16 gradient scaler (plain numbers), or None without one."""
    scaler = getattr(net, "grad_scaler_", None)
    return scaler.state_dict() or None if scaler is not None else None


def _generators(net):
    """Every private generator of a fit, in a fixed order: the loaders', then the modules'."""
    out = [getattr(net, "iterator_train__generator", None), getattr(net, "iterator_valid__generator", None)]
    out += [m.__dict__.get("generator") for m in net.module_.modules()]
    return out


class Checkpointer(Callback):
    """Write the training state to ``directory`` after each epoch; resume from it (see the module doc).

    Parameters
    ----------
    directory : str or path-like
    fingerprint : str
        Of the fit (:func:`fingerprint`): a ``last.pt`` with another one is not resumed.
    seed : int
        The fit's seed, stored so that a resumed fit with ``random_state=None`` draws the same.
    """

    def __init__(self, directory, fingerprint, seed):
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.seed = int(seed)
        self._resumed = None

    # ------------------------------------------------------------------ reading
    def saved_state(self):
        """The matching ``last.pt`` as a dict, or None (with a warning when a different one is there)."""
        path = self.directory / LAST
        if not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated by a kill during the write of a previous version, or foreign
            warnings.warn(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); training starts "
                          f"afresh and overwrites it.", UserWarning, stacklevel=4)
            return None
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION or \
                state.get("fingerprint") != self.fingerprint:
            warnings.warn(f"checkpoint {path} is of another fit (other parameters or data); training starts "
                          f"afresh and overwrites it.", UserWarning, stacklevel=4)
            return None
        return state

    def restore(self, net, state):
        """Put ``state`` into an initialised ``net``; the schedule and early stopping follow at
        ``on_train_begin``. Returns the number of epochs still to train: 0 when the saved run
        finished, or stopped early."""
        net.module_.load_state_dict(state["module"])
        net.optimizer_.load_state_dict(state["optimizer"])
        net.history = History(state["history"])
        scaler = net.get_grad_scaler() if hasattr(net, "get_grad_scaler") else None
        if scaler is not None and state.get("grad_scaler"):
            scaler.load_state_dict(state["grad_scaler"])
        for generator, saved in zip(_generators(net), state["generators"]):
            if generator is not None and saved is not None:
                generator.set_state(saved)
        self._resumed = state
        stopped = any(isinstance(cb, EarlyStopping) and
                      state["early_stopping"].get(name, {}).get("misses", 0) >= cb.patience
                      for name, cb in net.callbacks_)
        done = sum("train_loss" in row for row in state["history"])
        return 0 if stopped else max(0, net.max_epochs - done)

    def on_train_begin(self, net, **kwargs):
        state, self._resumed = self._resumed, None
        if state is None:
            return
        for name, callback in net.callbacks_:
            if isinstance(callback, LRScheduler) and state["schedulers"].get(name) is not None:
                scheduler = callback.lr_scheduler_
                scheduler.load_state_dict(state["schedulers"][name])
                for group, lr in zip(net.optimizer_.param_groups, scheduler.get_last_lr()):
                    group["lr"] = lr  # creating the scheduler stepped it once more
            if isinstance(callback, EarlyStopping) and state["early_stopping"].get(name) is not None:
                saved = state["early_stopping"][name]
                callback.misses_ = saved["misses"]
                callback.dynamic_threshold_ = saved["threshold"]
                callback.best_epoch_ = saved["best_epoch"]
                if callback.load_best and (self.directory / BEST).is_file():
                    callback.best_model_weights_ = torch.load(self.directory / BEST, map_location="cpu",
                                                              weights_only=True)

    # ------------------------------------------------------------------ writing
    def on_epoch_end(self, net, **kwargs):
        self.directory.mkdir(parents=True, exist_ok=True)
        history = _plain(list(net.history))
        row = history[-1]
        monitor = "valid_loss_best" if "valid_loss_best" in row else "train_loss_best"
        module = {k: v.detach().cpu().clone() for k, v in net.module_.state_dict().items()}
        if row.get(monitor):
            self._write(BEST, module)
        state = {
            "version": CHECKPOINT_VERSION, "fingerprint": self.fingerprint, "seed": self.seed,
            "module": module, "optimizer": net.optimizer_.state_dict(), "history": history,
            "generators": [None if g is None else g.get_state() for g in _generators(net)],
            "grad_scaler": _grad_scaler_state(net),
            "schedulers": {name: _plain(cb.lr_scheduler_.state_dict()) for name, cb in net.callbacks_
                           if isinstance(cb, LRScheduler) and cb.lr_scheduler_ is not None},
            "early_stopping": {name: {"misses": int(cb.misses_), "threshold": float(cb.dynamic_threshold_),
                                      "best_epoch": int(cb.best_epoch_)}
                               for name, cb in net.callbacks_ if isinstance(cb, EarlyStopping)},
        }
        self._write(LAST, state)
        tmp = self.directory / (HISTORY + ".tmp")
        tmp.write_text(json.dumps(history, indent=1))
        os.replace(tmp, self.directory / HISTORY)

    def _write(self, name, obj):
        tmp = self.directory / (name + ".tmp")
        torch.save(obj, tmp)
        os.replace(tmp, self.directory / name)  # a kill mid-write leaves the previous file whole
