"""The device side of training, shared by both skorch estimators: mixed precision (the ``amp``
parameter), pinned memory and non-blocking host-to-device copies.

- :func:`resolve_amp` turns ``amp`` and a device into an autocast dtype (or None);
- :class:`AmpStepMixin` gives a skorch net class training, validation and evaluation steps
  that run the forward pass under autocast, compute the loss in float32, scale the
  gradients for float16 and copy batches to a CUDA device without blocking;
- :func:`loader_options` are the DataLoader settings for a device (workers, pinned memory);
- :class:`DeferredLossMixin` reads the batch losses back to the host once per epoch instead of
  once per batch on accelerators (skorch's ``loss.item()`` makes the host wait for the GPU
  after every batch).

On the CPU with ``amp`` off (the default there) every step does exactly what skorch's own
does, so results are bit-identical to skorch's steps.
"""
import contextlib

import numpy as np
import torch
from skorch.dataset import get_len, unpack_data
from skorch.utils import TeeGenerator

#: Autocast dtypes by the name ``amp`` takes.
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_AMP_VALUES = "'auto', True, False, 'bf16' or 'fp16'"


def cuda_supports_bf16(device):
    """Whether the CUDA ``device`` computes in bfloat16 natively: NVIDIA compute capability 8.0
    and newer (A100, H100/H200, RTX 30xx and later) and ROCm GPUs. Older GPUs only emulate it."""
    if torch.version.hip:
        return True
    return tuple(torch.cuda.get_device_capability(torch.device(str(device)))) >= (8, 0)


def resolve_amp(amp, device, name="amp"):
    """The autocast dtype for ``amp`` on ``device`` (a resolved device such as ``"cpu"`` or
    ``"cuda:0"``), or None for full float32 precision.

    ``"auto"`` is bf16 on CUDA GPUs with native bf16, fp16 on older CUDA GPUs, and off
    elsewhere (the CPU); ``True`` is the same on CUDA and bf16 on other devices; ``"bf16"`` and
    ``"fp16"`` ask for that dtype; ``False`` is off.

    Examples
    --------
    >>> resolve_amp("auto", "cpu") is None, resolve_amp("bf16", "cpu")
    (True, torch.bfloat16)
    """
    if isinstance(amp, np.bool_):
        amp = bool(amp)
    if not (isinstance(amp, bool) or (isinstance(amp, str) and amp in ("auto", "bf16", "fp16"))):
        raise ValueError(f"{name} must be {_AMP_VALUES}, got {amp!r}.")
    device = torch.device(str(device))
    if amp is False or (amp == "auto" and device.type != "cuda"):
        return None
    if amp is True or amp == "auto":
        return torch.float16 if device.type == "cuda" and not cuda_supports_bf16(device) else torch.bfloat16
    if not torch.amp.is_autocast_available(device.type):
        raise ValueError(f"{name}={amp!r}: this torch has no autocast for {device.type!r} devices; use {name}=False.")
    if amp == "bf16" and device.type == "cuda" and not cuda_supports_bf16(device):
        raise ValueError(f"{name}='bf16' needs a GPU with native bfloat16 (compute capability 8.0 or newer); "
                         f"this one only emulates it. Use {name}='fp16' or 'auto'.")
    return AMP_DTYPES[amp]


def autocast(device, dtype):
    """``torch.autocast`` on ``device``'s type in ``dtype``; a context that does nothing when
    ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(str(device)).type, dtype=dtype)


def to_float32(out):
    """Network outputs (a tensor, or tensors in tuples, lists or dicts) with every reduced-precision
    floating tensor cast to float32; float32 tensors are returned as they are."""
    if torch.is_tensor(out):
        return out.float() if out.is_floating_point() and out.dtype != torch.float64 else out
    if isinstance(out, (tuple, list)):
        return type(out)(to_float32(o) for o in out)
    if isinstance(out, dict):
        return {k: to_float32(v) for k, v in out.items()}
    return out


def to_device_async(data, device):
    """``data`` (tensors, also in tuples, lists or dicts) copied to a CUDA ``device`` with
    ``non_blocking=True``: from pinned memory the copy overlaps with the GPU's work instead of
    waiting for it. On other devices ``data`` is returned as it is (skorch moves it)."""
    device = torch.device(str(device))
    if device.type != "cuda":
        return data
    if torch.is_tensor(data):
        return data.to(device, non_blocking=True)
    if isinstance(data, (tuple, list)):
        return type(data)(to_device_async(d, device) for d in data)
    if isinstance(data, dict):
        return {k: to_device_async(v, device) for k, v in data.items()}
    return data


def host_to_device(array_batch, device):
    """A tensor of host memory (e.g. ``torch.from_numpy``) on ``device``: on CUDA pinned first and
    copied without blocking (a copy from pageable memory waits for the GPU's queue)."""
    device = torch.device(str(device))
    if device.type != "cuda":
        return array_batch.to(device)
    return array_batch.pin_memory().to(device, non_blocking=True)


def loader_options(device, num_workers=0):
    """skorch DataLoader parameters for training on ``device``.

    ``num_workers`` processes prepare (augment) training batches. They persist from epoch to
    epoch (starting them took 0.1-0.2 s per epoch here); the epoch reaches them with each
    sample's index (:class:`EpochKeyedSampler`), and augmentation draws depend only on
    ``(seed, epoch, index)``, so any number of workers gives the same batches. On CUDA the
    batches come in pinned memory, which makes their copies to the GPU asynchronous.
    """
    cuda = torch.device(str(device)).type == "cuda"
    return {"iterator_train__num_workers": int(num_workers), "iterator_train__persistent_workers": int(num_workers) > 0,
            "iterator_train__pin_memory": cuda, "iterator_valid__pin_memory": cuda}


def sample_epoch_index(key, n, epoch):
    """``(epoch, index)`` of the DataLoader key of a dataset of ``n`` samples whose current epoch is
    ``epoch``: a key ``>= n`` carries its epoch (``(epoch + 1) * n + index``, from
    :class:`EpochKeyedSampler`), a smaller one is a plain index of the current epoch.

    Examples
    --------
    >>> sample_epoch_index(3, 10, 4), sample_epoch_index(33, 10, 0)
    ((4, 3), (2, 3))
    """
    key = int(key)
    return (epoch, key) if key < n else (key // n - 1, key % n)


class EpochKeyedSampler(torch.utils.data.Sampler):
    """The training order ``order`` (a sampler of ``dataset``) with each index keyed with the
    dataset's epoch, ``(epoch + 1) * len(dataset) + index``, read from ``dataset.epoch`` in the
    main process when the epoch's iteration starts. Persistent DataLoader workers hold copies of
    the dataset made at the first epoch; the key tells them the epoch (see
    :func:`sample_epoch_index`).

    A non-persistent DataLoader draws a base seed from its ``generator`` when each epoch's
    iteration starts, before the shuffle draws; a persistent one only in the first epoch. So
    from the second epoch on, this sampler draws that number itself (and throws it away): the
    shuffle then follows the generator exactly as with ``num_workers=0``.
    """

    def __init__(self, dataset, order, generator=None):
        self.dataset, self.order, self.generator = dataset, order, generator
        self._epochs = 0

    def __len__(self):
        return len(self.order)

    def __iter__(self):
        if self._epochs and self.generator is not None:
            torch.empty((), dtype=torch.int64).random_(generator=self.generator)  # the skipped base seed
        self._epochs += 1
        n, epoch = len(self.dataset), int(self.dataset.epoch)
        for i in self.order:
            yield (epoch + 1) * n + int(i)


class PersistentWorkersMixin:
    """A skorch net class whose training DataLoader keeps its workers from epoch to epoch
    (``iterator_train__persistent_workers``) over a dataset with an ``epoch`` attribute: the
    shuffle (or sequential order) goes through an :class:`EpochKeyedSampler`, made anew with each
    DataLoader. Where the epoch cannot travel with the indices (a dataset without ``epoch``, e.g.
    a ``Subset``, or a loader given its own ``sampler`` or ``batch_sampler``), the workers are
    started anew each epoch instead, so they still see it. Other loaders are skorch's."""

    def get_iterator(self, dataset, training=False):
        kwargs = self.get_params_for("iterator_train") if training else {}
        if not (training and kwargs.get("persistent_workers") and kwargs.get("num_workers", 0) > 0):
            return super().get_iterator(dataset, training=training)
        if hasattr(dataset, "epoch") and "sampler" not in kwargs and "batch_sampler" not in kwargs:
            generator = kwargs.get("generator")
            order = (torch.utils.data.RandomSampler(dataset, generator=generator) if kwargs.pop("shuffle", False)
                     else torch.utils.data.SequentialSampler(dataset))  # what DataLoader(shuffle=...) builds
            kwargs["sampler"] = EpochKeyedSampler(dataset, order, generator)
        else:
            kwargs["persistent_workers"] = False
        if "batch_sampler" not in kwargs:
            kwargs.setdefault("batch_size", self.batch_size)
            if kwargs["batch_size"] == -1:
                kwargs["batch_size"] = len(dataset)
        return self.iterator_train(dataset, **kwargs)


def new_grad_scaler(device_type):
    """A ``GradScaler`` for float16 training on ``device_type``."""
    return torch.amp.GradScaler(device_type)


class AmpStepMixin:
    """Training, validation and evaluation steps for a skorch net class (put it left of the
    skorch class) with the ``amp`` parameter (see :func:`resolve_amp`).

    - the forward pass runs under ``torch.autocast``; its outputs are cast to float32 before
      the loss, so losses (soft-argmax coordinates, OHEM cross-entropy) are computed in float32,
      and callbacks and predictions see float32;
    - with float16 a ``GradScaler`` (``grad_scaler_``) scales the loss; gradients are unscaled
      before ``on_grad_computed`` (so clipping callbacks see true gradients), and steps with
      infinite gradients are skipped. Its scale is saved in checkpoints. bfloat16 needs no
      scaler, and no host-device synchronisation per step (GradScaler's skip check is one);
    - batches go to a CUDA device with non-blocking copies (see :func:`to_device_async`).

    With ``amp`` off the steps are skorch's own, operation for operation.
    """

    def __init__(self, *args, amp=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.amp = amp

    def amp_dtype(self):
        """The autocast dtype of this net's ``amp`` on its device, or None."""
        return resolve_amp(getattr(self, "amp", False), self.device)

    def get_grad_scaler(self):
        """The ``GradScaler`` of float16 training (made on first use, and again when the device type
        changed, keeping its scale), or None when no scaling is needed."""
        if self.amp_dtype() is not torch.float16:
            return None
        device_type = torch.device(str(self.device)).type
        scaler = getattr(self, "grad_scaler_", None)
        if scaler is None or getattr(scaler, "_device", device_type) != device_type:
            new = new_grad_scaler(device_type)
            if scaler is not None and scaler.state_dict():
                new.load_state_dict(scaler.state_dict())
            self.grad_scaler_ = scaler = new
        return scaler

    def initialize_optimizer(self, *args, **kwargs):
        out = super().initialize_optimizer(*args, **kwargs)
        self.grad_scaler_ = None  # a new optimiser starts a new scale
        return out

    def _forward_amp(self, Xi, dtype, **fit_params):
        with autocast(self.device, dtype):
            y_pred = self.infer(Xi, **fit_params)
        return y_pred if dtype is None else to_float32(y_pred)

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        Xi, yi = unpack_data(to_device_async(batch, self.device))
        dtype = self.amp_dtype()
        y_pred = self._forward_amp(Xi, dtype, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        scaler = self.get_grad_scaler() if dtype is torch.float16 else None
        (loss if scaler is None else scaler.scale(loss)).backward()
        return {"loss": loss, "y_pred": y_pred}

    def train_step(self, batch, **fit_params):
        scaler = self.get_grad_scaler()
        if scaler is None:
            return super().train_step(batch, **fit_params)
        # GradScaler.step takes no closure: one forward and backward, then the scaled step
        self._zero_grad_optimizer()
        step = self.train_step_single(batch, **fit_params)
        optimizers = [getattr(self, name + "_") for name in self._optimizers]
        for optimizer in optimizers:
            scaler.unscale_(optimizer)
        self.notify("on_grad_computed", named_parameters=TeeGenerator(self.get_all_learnable_params()),
                    batch=batch, training=True)
        for optimizer in optimizers:
            scaler.step(optimizer)
        scaler.update()
        return step

    def validation_step(self, batch, **fit_params):
        self._set_training(False)
        Xi, yi = unpack_data(to_device_async(batch, self.device))
        with torch.no_grad():
            y_pred = self._forward_amp(Xi, self.amp_dtype(), **fit_params)
            loss = self.get_loss(y_pred, yi, X=Xi, training=False)
        return {"loss": loss, "y_pred": y_pred}

    def evaluation_step(self, batch, training=False):
        self.check_is_fitted()
        Xi, _ = unpack_data(to_device_async(batch, self.device))
        with torch.set_grad_enabled(training):
            self._set_training(training)
            return self._forward_amp(Xi, self.amp_dtype())


def defers_loss_reads(device):
    """Whether training on ``device`` reads the batch losses back once per epoch
    (:class:`DeferredLossMixin`): on every device but the CPU, where reading a loss costs no wait."""
    return torch.device(str(device)).type != "cpu"


class DeferredLossMixin:
    """skorch's epoch loop (``run_single_epoch``) without a host-device synchronisation per batch.

    skorch records each batch's loss with ``loss.item()``, which makes the host wait until the
    GPU has finished that batch; the next batch's work is only queued after it, so the GPU idles
    while Python prepares it. On devices where :func:`defers_loss_reads` is true, the batch's
    ``<prefix>_loss`` is recorded as a detached 0-d device tensor, and at the end of the epoch's
    loop all of them are read in one copy and replaced by floats, before any ``on_epoch_end``
    callback runs, so epoch scores, logs and the saved history hold the same floats as skorch's
    loop. Callbacks that read a batch loss in ``on_batch_end`` see the tensor (``float()`` of it
    works, and waits). On the CPU the loop is skorch's own.
    """

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        if iterator is None or not defers_loss_reads(self.device):
            return super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)
        key, rows, losses = prefix + "_loss", [], []
        try:
            for batch in iterator:
                self.notify("on_batch_begin", batch=batch, training=training)
                step = step_fn(batch, **fit_params)
                losses.append(step["loss"].detach().reshape(()))
                self.history.record_batch(key, losses[-1])
                rows.append(self.history[-1]["batches"][-1])
                self.history.record_batch(prefix + "_batch_size",
                                          get_len(batch[0]) if isinstance(batch, (tuple, list)) else get_len(batch))
                self.notify("on_batch_end", batch=batch, training=training, **step)
        finally:  # also when interrupted: the history never keeps device tensors
            if losses:  # one read for the epoch; float32 losses give the floats .item() gives
                for row, value in zip(rows, torch.stack([v.float() for v in losses]).tolist()):
                    row[key] = value
        self.history.record(prefix + "_batch_count", len(rows))
