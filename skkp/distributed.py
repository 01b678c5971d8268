"""Data-parallel training: one skkp model trained by several processes, with PyTorch's
``DistributedDataParallel`` (DDP), in processes started by ``torchrun``.

Every process runs the same script on the same data; inside :func:`data_parallel` each
``fit`` of :class:`skkp.NoseKeypointRegressor` or :class:`skkp.FaceParser` trains one
model together with the other processes and ends with the same fitted model on every
process::

    # train.py, run with: torchrun --nproc_per_node=2 train.py
    import skkp
    from skkp.distributed import data_parallel

    X, y = ...                                   # the whole data set, in every process
    with data_parallel() as dp:
        model = skkp.NoseKeypointRegressor(random_state=0).fit(X, y)
    if dp.rank == 0:
        skkp.save(model, "model.skkp")

The command line does the same: ``torchrun --nproc_per_node=2 -m skkp train ...``.

What a fit does inside the block (``N`` processes):

- **The same batches as one process.** ``batch_size`` is the global batch: each step, the
  ``batch_size`` samples that a single-process fit would take next (same shuffle, same
  augmentation of each sample) are split into ``N`` parts of ``ceil(batch_size / N)``, one
  per process (:class:`ShardedBatchSampler`). DDP averages the gradients, so a step is the
  step of one process on the whole batch, and ``lr``, ``max_epochs`` and the schedule keep
  their meaning. With one process the fit is the plain fit, bit for bit. What differs:
  BatchNorm normalises each part over its own samples (its running statistics are averaged
  over the processes after each epoch), and sums run in another order.
- **Validation on process 0.** The held-out split (same on every process) is scored by
  process 0 only; each epoch every process records process 0's ``valid_*`` values and the
  mean over processes of its ``train_*`` values, so early stopping and the history agree
  everywhere. Only process 0 prints the per-epoch log.
- **One model.** After training, process 0's weights and BatchNorm statistics are copied
  to every process; the fitted estimator is a plain one (``net_.module_`` is the bare
  network, no ``module.`` prefix), to predict, pickle or :func:`skkp.save` anywhere.
- **Devices.** ``gloo`` on CPUs; ``nccl`` on GPUs, one process per GPU: a fit with
  ``device="auto"`` or ``"cuda"`` uses ``cuda:LOCAL_RANK``.

``partial_fit`` inside the block trains its epoch the same way. Not supported: ``checkpoint=``
(``ValueError`` before training). Each process must be given the same data and parameters
(checked, ``ValueError`` in every process).
"""
import atexit
import contextlib
import datetime
import hashlib
import numbers
import os
import sys

import numpy as np
import torch
from skorch.callbacks import Callback, EarlyStopping, PrintLog, ProgressBar
from torch.utils.data import RandomSampler, Sampler, SequentialSampler

from ._training import DATA_PARALLEL, give_private_generators, train

__all__ = ["DataParallel", "ShardedBatchSampler", "data_parallel", "launched_by_torchrun"]

#: Environment variables torchrun sets in every process it starts, all needed here.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: skkp's callbacks that write this epoch's metrics: the epoch's metrics are agreed after them.
_METRIC_CALLBACKS = ("finite_loss", "set_epoch", "augment_epoch", "pixel_mae", "valid_miou")


def launched_by_torchrun():
    """Whether this process was started by ``torchrun`` (all of :data:`TORCHRUN_VARIABLES` set).

    Examples
    --------
    >>> import os
    >>> launched_by_torchrun() == all(v in os.environ for v in TORCHRUN_VARIABLES)
    True
    """
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


class ShardedBatchSampler(Sampler):
    """Process ``rank``'s part of each batch of ``sampler``'s order.

    Each epoch, the order of ``sampler`` (drawn the same way in every process) is cut into
    global batches of ``batch_size * world_size`` samples; process ``rank`` takes the
    ``rank``-th slice of ``batch_size`` of each. A shorter last batch is split evenly
    (``ceil(m / world_size)`` each, its first samples repeated to fill the slices), so every
    process runs the same number of steps; it is left out when that would give one sample
    per process (BatchNorm cannot normalise one sample), as
    :func:`skkp._training.drop_last_for_batchnorm` does for one process.

    Parameters
    ----------
    sampler : torch Sampler
        The single-process order, e.g. ``RandomSampler(dataset, generator=g)`` with the
        same seeded ``g`` in every process.
    batch_size : int
        Samples per process and step.
    rank, world_size : int

    Examples
    --------
    >>> parts = [list(ShardedBatchSampler(range(7), 2, rank, 2)) for rank in (0, 1)]
    >>> parts
    [[[0, 1], [4, 5]], [[2, 3], [6, 4]]]
    >>> len(ShardedBatchSampler(range(7), 2, 0, 2))
    2
    """

    def __init__(self, sampler, batch_size, rank, world_size):
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.last_order_digest = None

    def _split(self, n):
        """(full global batches, per-process size of the last partial one, 0 when none or left out)."""
        full, rest = divmod(n, self.batch_size * self.world_size)
        last = -(-rest // self.world_size)
        return full, (last if last > 1 else 0)

    def __len__(self):
        full, last = self._split(len(self.sampler))
        return full + (last > 0)

    def __iter__(self):
        order = [int(i) for i in self.sampler]  # drawn in full, as one process's DataLoader does
        self.last_order_digest = hashlib.sha1(np.asarray(order, np.int64).tobytes()).hexdigest()
        step = self.batch_size * self.world_size
        full, last = self._split(len(order))
        for start in range(0, full * step, step):
            part = start + self.rank * self.batch_size
            yield order[part:part + self.batch_size]
        if last:
            chunk = order[full * step:]
            chunk = (chunk * self.world_size)[:last * self.world_size]  # repeat its first samples to fill
            yield chunk[self.rank * last:(self.rank + 1) * last]


class _EpochAgreement(Callback):
    """Inside a data-parallel fit: after each epoch's training batches, average the BatchNorm
    statistics over the processes; at the epoch's end, give every process process 0's
    ``valid_*`` values and the mean ``train_*`` values (and check that every process
    shuffled alike)."""

    def __init__(self, parallel, batch_sampler):
        self.parallel = parallel
        self.batch_sampler = batch_sampler

    def on_epoch_begin(self, net, **kwargs):
        self._batches = 0

    def on_batch_end(self, net, training=None, **kwargs):
        if training:
            self._batches += 1
            if self._batches == len(self.batch_sampler):
                self.parallel._average_buffers(net.module_.module)

    def on_epoch_end(self, net, **kwargs):
        import torch.distributed as dist

        row = net.history[-1]
        mine = {"train": {k: v for k, v in row.items() if k.startswith("train_") and not k.endswith("_best")
                          and k != "train_batch_count" and isinstance(v, numbers.Real)},
                "valid": {k: v for k, v in row.items() if k.startswith("valid_")} if self.parallel.rank == 0 else {},
                "order": self.batch_sampler.last_order_digest}
        everyone = [None] * self.parallel.world_size
        dist.all_gather_object(everyone, mine)
        if len({p["order"] for p in everyone}) != 1:
            raise RuntimeError("The processes of this data-parallel fit shuffled the training set differently "
                               "(their data loader generators diverged); the fit cannot continue.")
        for key in set.intersection(*(set(p["train"]) for p in everyone)):
            net.history.record(key, float(np.mean([p["train"][key] for p in everyone])))
        for key, value in everyone[0]["valid"].items():
            net.history.record(key, value)
        if "train_loss" in row:  # the mean over processes decides what is best, the same everywhere
            earlier = [r["train_loss"] for r in net.history[:-1] if "train_loss" in r]
            net.history.record("train_loss_best", all(row["train_loss"] < e for e in earlier))


class DataParallel:
    """The processes of a :func:`data_parallel` block, as seen by one of them.

    Attributes
    ----------
    rank : int
        This process (0 to ``world_size - 1``); 0 is the one that validates and should save.
    world_size : int
    local_rank : int
        This process on its machine (its GPU with ``nccl``).
    backend : str
        ``"gloo"`` or ``"nccl"``.
    """

    def __init__(self, rank, world_size, local_rank, backend):
        self.rank, self.world_size, self.local_rank, self.backend = rank, world_size, local_rank, backend

    def __repr__(self):
        return (f"DataParallel(rank={self.rank}, world_size={self.world_size}, local_rank={self.local_rank}, "
                f"backend={self.backend!r})")

    # ------------------------------------------------------------------ hooks of skkp._training
    def agree_seed(self, seed):
        """Process 0's ``seed`` (``random_state=None`` draws a different one in each process)."""
        import torch.distributed as dist

        box = [int(seed)]
        dist.broadcast_object_list(box, src=0)
        return int(box[0])

    def device(self, device):
        """The device of this process's fit for the estimator's resolved ``device``: ``cuda:LOCAL_RANK``
        for a GPU; a ``ValueError`` for a device that the process group cannot serve."""
        device = str(device)
        if device.startswith("cuda"):
            mine = f"cuda:{self.local_rank}"
            if device not in ("cuda", mine):
                raise ValueError(f"device={device!r} in data-parallel process {self.rank}, which trains on {mine} "
                                 f"(one GPU per process, LOCAL_RANK={self.local_rank}): use device='auto' or 'cuda'.")
            return mine
        if self.backend == "nccl":
            raise ValueError(f"device={device!r}, but data_parallel(backend='nccl') exchanges gradients between "
                             f"GPUs: use device='auto' or 'cuda', or data_parallel(backend='gloo') to train on CPUs.")
        return device

    def train(self, net, dataset, epochs, seed):
        """:func:`skkp._training.train` of this process's share, with DDP; returns whether training
        was interrupted. ``net`` is the initialised skorch net, left as a plain one afterwards."""
        from torch.nn.parallel import DistributedDataParallel

        if any(name == "checkpoint" for name, _ in net.callbacks_):
            raise ValueError("checkpoint= is not supported in a data-parallel fit (skkp.distributed.data_parallel): "
                             "set checkpoint=None, or train in one process to use checkpoints.")
        module = net.module_
        if str(net.device).startswith("cuda") and str(next(module.parameters()).device) != f"cuda:{self.local_rank}":
            raise ValueError(f"the model is on {next(module.parameters()).device}, but data-parallel process "
                             f"{self.rank} trains on cuda:{self.local_rank}.")
        batch_size = int(net.__dict__.get("iterator_train__batch_size", net.batch_size))
        batch_size = len(dataset) if batch_size == -1 else batch_size
        per_process = -(-batch_size // self.world_size)
        self._check_same_everywhere(net, dataset, seed, batch_size, epochs)
        if per_process < 2 and self.world_size > 1:
            raise ValueError(f"batch_size={batch_size} gives {per_process} sample per process and step on "
                             f"{self.world_size} processes; BatchNorm needs at least 2: use batch_size >= "
                             f"{2 * self.world_size}.")
        generator = net.__dict__.get("iterator_train__generator")
        shuffle = net.__dict__.get("iterator_train__shuffle", False)
        order = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        batches = ShardedBatchSampler(order, per_process, self.rank, self.world_size)
        if len(batches) == 0:
            raise ValueError(f"{len(dataset)} training samples are too few for {self.world_size} processes "
                             f"(each step needs at least 2 per process).")

        # this process's loader, log and validation, put back after training
        # workers started anew each epoch: this order's plain indices do not tell persistent ones the epoch
        loader = {"iterator_train__batch_sampler": batches, "iterator_train__batch_size": 1,
                  "iterator_train__shuffle": False, "iterator_train__drop_last": False,
                  "iterator_train__persistent_workers": False}
        saved = {key: net.__dict__.get(key, _MISSING) for key in loader}
        saved_callbacks, saved_split = net.callbacks_, net.train_split
        callbacks = [(n, cb) for n, cb in net.callbacks_
                     if self.rank == 0 or not isinstance(cb, (PrintLog, ProgressBar))]
        at = max([i + 1 for i, (n, _) in enumerate(callbacks) if n in _METRIC_CALLBACKS], default=0)
        callbacks.insert(at, ("data_parallel", _EpochAgreement(self, batches)))
        if self.rank > 0:
            net.train_split = None  # process 0 validates
            # dropout masks of its own (process 0 keeps those of a one-process fit)
            give_private_generators(net, int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0] >> 1))
        for key, value in loader.items():
            setattr(net, key, value)
        net.callbacks_ = callbacks
        index = self.local_rank if str(net.device).startswith("cuda") else None
        net.module_ = DistributedDataParallel(module, device_ids=None if index is None else [index],
                                              **_NO_BUFFER_SYNC_IN_FORWARD)
        try:
            interrupted = train(net, dataset, epochs)
        finally:
            net.module_ = module
            net.callbacks_, net.train_split = saved_callbacks, saved_split
            for key, value in saved.items():
                if value is _MISSING:
                    net.__dict__.pop(key, None)
                else:
                    setattr(net, key, value)
            for _, cb in net.callbacks_:  # best weights kept by early stopping: the bare network's names
                weights = getattr(cb, "best_model_weights_", None) if isinstance(cb, EarlyStopping) else None
                if weights:
                    cb.best_model_weights_ = type(weights)((k.removeprefix("module."), v) for k, v in weights.items())
        if not interrupted:  # (after a Ctrl-C the processes may have stopped at different steps)
            self._broadcast_module(module)
        return interrupted

    # ------------------------------------------------------------------ collectives
    def _check_same_everywhere(self, net, dataset, seed, batch_size, epochs):
        """ValueError (in every process alike) unless all processes train on the same data and settings."""
        import torch.distributed as dist

        digest = hashlib.sha1()
        for i in {0, len(dataset) - 1} if len(dataset) else ():
            for part in dataset[i]:
                digest.update(np.ascontiguousarray(torch.as_tensor(part).cpu().numpy()).tobytes())
        mine = {"samples": len(dataset), "seed": int(seed), "batch_size": batch_size,
                "epochs": epochs if epochs is not None else int(net.max_epochs), "lr": float(net.lr),
                "data": digest.hexdigest()}
        everyone = [None] * self.world_size
        dist.all_gather_object(everyone, mine)
        differ = sorted(k for k in mine if len({repr(p[k]) for p in everyone}) > 1)
        if differ:
            raise ValueError(f"The data-parallel processes were given different training data or parameters "
                             f"({', '.join(differ)} differ: {[{k: p[k] for k in differ} for p in everyone]}); "
                             f"every process must fit the same estimator on the same X and y.")

    def _average_buffers(self, module):
        """Average the floating-point buffers (BatchNorm running statistics) over the processes."""
        import torch.distributed as dist

        for buffer in module.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer.data, op=dist.ReduceOp.SUM)
                buffer.data.div_(self.world_size)

    def _broadcast_module(self, module):
        """Process 0's weights and buffers, in every process."""
        import torch.distributed as dist

        with torch.no_grad():
            for tensor in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(tensor.data, src=0)


_MISSING = object()


def _no_buffer_sync_in_forward():
    """DDP's option that keeps each process's BatchNorm statistics its own during an epoch (they
    are averaged after it): ``forward_sync_buffers=False`` where torch has it, else the older
    ``broadcast_buffers=False``."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    name = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(
        DistributedDataParallel.__init__).parameters else "broadcast_buffers"
    return {name: False}


_NO_BUFFER_SYNC_IN_FORWARD = _no_buffer_sync_in_forward()


def _check_backend(backend):
    if backend == "auto":
        import torch.distributed as dist

        return "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'auto', 'gloo' (CPUs) or 'nccl' (GPUs), got {backend!r}.")
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("backend='nccl' needs GPUs, and CUDA is not available here: use backend='gloo'.")
    return backend


@contextlib.contextmanager
def data_parallel(backend="auto", timeout=None):
    """Train skkp estimators data-parallel over the processes ``torchrun`` started.

    Joins the ``torch.distributed`` process group of torchrun's environment
    variables (started by the first block, unless the script started it; it stays
    open for later blocks and closes when the process exits); every ``fit`` inside
    the block trains one model together with the other processes (see the module
    documentation).

    Parameters
    ----------
    backend : {"auto", "gloo", "nccl"}, default="auto"
        ``"nccl"`` when CUDA is available, else ``"gloo"``. Use ``"gloo"`` to
        train on the CPUs of a GPU machine.
    timeout : float or None, default=None
        Seconds a collective waits for the other processes before failing;
        None keeps torch's default (10 minutes). Used by the block that starts
        the process group.

    Yields
    ------
    DataParallel
        This process's ``rank``, ``world_size``, ``local_rank`` and ``backend``.

    Raises
    ------
    ValueError
        Outside torchrun (no ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
        ``MASTER_PORT``), or for a bad ``backend`` or ``timeout``.

    Examples
    --------
    Launched with ``torchrun --nproc_per_node=2 train.py``, ``train.py`` holds
    ``with data_parallel() as dp: model.fit(X, y)``. Run without torchrun:

    >>> import os
    >>> saved = {v: os.environ.pop(v) for v in TORCHRUN_VARIABLES if v in os.environ}
    >>> try:
    ...     with data_parallel():
    ...         pass
    ... except ValueError as exc:
    ...     print(str(exc)[:58])
    skkp.distributed.data_parallel needs the environment that
    >>> os.environ.update(saved)
    """
    import torch.distributed as dist

    backend = _check_backend(backend)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or timeout <= 0):
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}.")
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise ValueError(f"skkp.distributed.data_parallel needs the environment that torchrun gives each process it "
                         f"starts ({', '.join(missing)} not set): run the script with "
                         f"`torchrun --nproc_per_node=N script.py` (or "
                         f"`torchrun --nproc_per_node=N -m skkp train ...`).")
    try:
        rank, world_size, local_rank = (int(os.environ[v]) for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    except ValueError:
        raise ValueError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers, got "
                         f"{[os.environ[v] for v in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK')]}.") from None
    if DATA_PARALLEL.get() is not None:
        raise ValueError("data_parallel blocks cannot be nested.")
    if not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        kwargs = {} if timeout is None else {"timeout": datetime.timedelta(seconds=float(timeout))}
        dist.init_process_group(backend=backend, init_method="env://", **kwargs)
        # kept open for later blocks (under torchrun a second group on the same store hangs), closed at exit
        atexit.register(_close_process_group)
    else:
        backend = dist.get_backend()
    parallel = DataParallel(dist.get_rank(), dist.get_world_size(), local_rank, backend)
    token = DATA_PARALLEL.set(parallel)
    try:
        yield parallel
    finally:
        DATA_PARALLEL.reset(token)


def _close_process_group(timeout=60.0):
    """Wait for every process, then close the group (registered with atexit).

    Without the wait the first process to finish tore gloo's connections down while another still used them, and
    that one sometimes aborted at exit ("terminate called without an active exception"). A process that exits on
    an uncaught exception does not wait: the others may be blocked in a collective that needs it, and closing
    its connections ends theirs. A peer that died before reaching the wait makes it fail, which is not an error
    here: the group is closed either way.
    """
    import torch.distributed as dist

    if not dist.is_initialized():
        return
    if getattr(sys, "last_value", None) is None:  # a clean exit (Python sets it for an uncaught exception)
        try:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=datetime.timedelta(seconds=timeout))
            else:
                dist.barrier()
        except Exception:  # a peer is gone: nothing left to wait for
            pass
    dist.destroy_process_group()
