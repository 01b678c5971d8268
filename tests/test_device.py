"""The device side of training (skkp._device): amp, pinned memory, workers, and no host-device
synchronisation per batch in skkp's own code. Everything here runs on the CPU; the GPU itself is
measured by benchmarks/bench_gpu.py."""
import pickle
import sys

import numpy as np
import pytest
import torch
from skorch import NeuralNet, NeuralNetRegressor
from skorch.callbacks import Callback
from sklearn.base import clone
from torch.overrides import TorchFunctionMode

import skkp
from skkp import FaceParser, NoseKeypointRegressor
from skkp._checkpoint import fingerprint
from skkp._device import autocast, loader_options, resolve_amp, to_device_async, to_float32
from skkp.datasets import make_faces, make_noses

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # bit-exact comparisons
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CASES = {
    "keypoints": (lambda **kw: NoseKeypointRegressor(**{"architecture": "cnn", "image_size": 32, "max_epochs": 2,
                                                        "batch_size": 8, "device": "cpu", "random_state": 0,
                                                        **kw}),
                  lambda: make_noses(24, image_size=32, random_state=0)),
    "parser": (lambda **kw: FaceParser(**{"image_size": 32, "width": 0.125, "max_epochs": 2, "batch_size": 4,
                                          "device": "cpu", "random_state": 0, **kw}),
               lambda: make_faces(10, 40, random_state=0)),
}


@pytest.fixture(params=sorted(CASES), scope="module")
def case(request):
    make, data = CASES[request.param]
    X, y = data()
    return make, X, y


def _output(est, X):
    return est.predict(X) if isinstance(est, NoseKeypointRegressor) else est.predict_proba(X)


def _assert_same_weights(a, b):
    sa, sb = a.net_.module_.state_dict(), b.net_.module_.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def _losses(est):
    return [(r["train_loss"], r["valid_loss"]) for r in est.history_]


# ----------------------------------------------------------------------------- amp off: skorch's own steps
class _PlainRegressorNet(NeuralNetRegressor):
    """skorch's own steps, as before skkp had the amp parameter (which it takes and ignores)."""

    def __init__(self, *args, amp=None, **kwargs):
        super().__init__(*args, **kwargs)


class _PlainNet(NeuralNet):
    def __init__(self, *args, amp=None, **kwargs):
        super().__init__(*args, **kwargs)


def test_amp_off_and_auto_on_the_cpu_are_bit_identical_to_skorchs_steps(case, monkeypatch):
    make, X, y = case
    off = make(amp=False).fit(X, y)
    auto = make(amp="auto").fit(X, y)
    monkeypatch.setattr("skkp.keypoints.SkkpNetRegressor", _PlainRegressorNet)
    monkeypatch.setattr("skkp.parsing.SkkpNet", _PlainNet)
    plain = make().fit(X, y)
    assert type(plain.net_) in (_PlainRegressorNet, _PlainNet)
    for est in (off, auto):
        np.testing.assert_array_equal(_output(est, X), _output(plain, X))
        assert _losses(est) == _losses(plain)


class _AutocastSpy(Callback):
    """Records, for every forward pass of the network, whether autocast was on, its dtype and
    the network's output."""

    def __init__(self):
        self.seen = []

    def on_train_begin(self, net, **kwargs):
        if not getattr(net.module_, "_spied", False):
            net.module_._spied = True
            net.module_.register_forward_hook(lambda module, args, output: self.seen.append(
                (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), output)))


@pytest.mark.parametrize("amp,expected", [("auto", None), (False, None), ("bf16", torch.bfloat16),
                                          (True, torch.bfloat16)])
def test_autocast_runs_only_when_asked_for_on_the_cpu(amp, expected):
    make, data = CASES["keypoints"]
    X, y = data()
    spy = _AutocastSpy()
    make(amp=amp, max_epochs=1, net_kwargs={"callbacks": [spy]}).fit(X, y)
    enabled, dtype, output = spy.seen[0]
    assert enabled == (expected is not None)
    assert output.dtype == (torch.float32 if expected is None else expected)  # the network's own output


# ----------------------------------------------------------------------------- amp on, on the CPU
def test_bf16_keypoint_training_on_the_cpu_is_close_to_float32():
    X, y = make_noses(160, image_size=32, random_state=0)
    Xt, yt = make_noses(60, image_size=32, random_state=1)
    kwargs = dict(architecture="heatmap", image_size=32, max_epochs=6, batch_size=16, device="cpu", random_state=0)
    full = NoseKeypointRegressor(amp=False, **kwargs).fit(X, y)
    half = NoseKeypointRegressor(amp="bf16", **kwargs).fit(X, y)
    assert np.isfinite(half.history_[:, "train_loss"]).all()
    pred_full, pred_half = full.predict(Xt), half.predict(Xt)
    assert pred_half.dtype == np.float64 and np.isfinite(pred_half).all()
    mae_full, mae_half = np.abs(pred_full - yt).mean(), np.abs(pred_half - yt).mean()
    assert mae_half < 1.25 * mae_full, (mae_half, mae_full)  # bf16 training learns as well
    # the same weights predicting under bf16 autocast: within a fraction of a pixel
    full.set_params(amp="bf16")
    assert np.abs(full.predict(Xt) - pred_full).max() < 0.5


def test_bf16_parser_training_on_the_cpu_is_finite_and_predicts_float32():
    make, data = CASES["parser"]
    X, y = data()
    full = make(amp=False).fit(X, y)
    half = make(amp="bf16").fit(X, y)
    assert np.isfinite(np.array(_losses(half))).all()
    assert abs(half.history_[-1, "train_loss"] - full.history_[-1, "train_loss"]) < 0.1 * full.history_[-1, "train_loss"]
    proba = half.predict_proba(X)
    assert proba.dtype == np.float32 and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    labels = full.predict(X)
    full.set_params(amp="bf16")  # the same weights, predicting under bf16 autocast
    assert np.mean(full.predict(X) == labels) > 0.95


def test_fp16_on_the_cpu_trains_with_a_gradient_scaler_whose_state_is_checkpointed(case, tmp_path):
    make, X, y = case
    est = make(amp="fp16", checkpoint=str(tmp_path)).fit(X, y)
    assert np.isfinite(np.array(_losses(est))).all()
    assert np.isfinite(_output(est, X)).all()
    scaler = est.net_.grad_scaler_
    assert isinstance(scaler, torch.amp.GradScaler)
    scale = scaler.get_scale()
    assert scale > 0 and np.log2(scale) == int(np.log2(scale))
    saved = torch.load(tmp_path / "last.pt", weights_only=True)["grad_scaler"]
    assert saved == scaler.state_dict()
    # a resumed fit takes the scale from the checkpoint
    from skkp._checkpoint import Checkpointer

    net = est.net_
    net.grad_scaler_ = None
    Checkpointer(tmp_path, "x", 0).restore(net, torch.load(tmp_path / "last.pt", weights_only=True))
    assert net.grad_scaler_.state_dict() == saved
    assert make(amp=False).fit(X, y).net_.grad_scaler_ is None  # no scaler without fp16


# ----------------------------------------------------------------------------- the parameter itself
@pytest.mark.parametrize("bad", ["yes", "float16", 1, None, "BF16"])
def test_invalid_amp_is_a_value_error_naming_amp_before_training(case, bad):
    make, X, y = case

    class Started(Callback):
        def on_train_begin(self, net, **kwargs):
            raise AssertionError("training started")

    with pytest.raises(ValueError, match="'amp' parameter"):
        make(amp=bad, net_kwargs={"callbacks": [Started()]}).fit(X, y)
    with pytest.raises(ValueError, match="amp must be"):
        resolve_amp(bad, "cpu")


def test_resolve_amp_on_the_cpu():
    assert resolve_amp("auto", "cpu") is None and resolve_amp(False, "cpu") is None
    assert resolve_amp(True, "cpu") is torch.bfloat16 and resolve_amp(np.bool_(True), "cpu") is torch.bfloat16
    assert resolve_amp("bf16", "cpu") is torch.bfloat16 and resolve_amp("fp16", "cpu") is torch.float16
    assert resolve_amp("auto", "mps") is None


@pytest.mark.parametrize("capability,auto,bf16_ok", [((9, 0), torch.bfloat16, True), ((8, 0), torch.bfloat16, True),
                                                      ((7, 5), torch.float16, False)])
def test_resolve_amp_on_cuda_devices_follows_native_bf16(monkeypatch, capability, auto, bf16_ok):
    # only the device query is replaced: what "auto" means for a given GPU, not any GPU result
    asked = []
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: asked.append(device) or capability)
    for device in ("cuda", "cuda:1"):
        assert resolve_amp("auto", device) is auto and resolve_amp(True, device) is auto
        assert resolve_amp("fp16", device) is torch.float16 and resolve_amp(False, device) is None
    assert torch.device("cuda:1") in asked
    if bf16_ok:
        assert resolve_amp("bf16", "cuda") is torch.bfloat16
    else:
        with pytest.raises(ValueError, match="amp='bf16' needs a GPU with native bfloat16"):
            resolve_amp("bf16", "cuda")


def test_amp_round_trips_through_get_params_clone_pickle_and_skkp_save(case, tmp_path):
    make, X, y = case
    est = make(amp="bf16", max_epochs=1).fit(X, y)
    assert est.get_params()["amp"] == "bf16" and clone(est).amp == "bf16"
    assert est.net_.amp == "bf16"
    again = pickle.loads(pickle.dumps(est))
    _assert_same_weights(again, est)
    # the same weights under bf16 autocast: CPUs with native bf16 kernels (AMX) gave outputs that
    # differ in bf16's last bits between two copies of one model, so closeness is at bf16's precision
    np.testing.assert_allclose(_output(again, X), _output(est, X), rtol=2e-2, atol=2e-2)
    skkp.save(est, tmp_path / "m.skkp")
    loaded = skkp.load(tmp_path / "m.skkp")
    assert loaded.amp == "bf16" and loaded.net_.amp == "bf16"
    _assert_same_weights(loaded, est)
    np.testing.assert_allclose(_output(loaded, X), _output(est, X), rtol=2e-2, atol=2e-2)
    for value in (True, False, "fp16", "auto"):
        skkp.save(make(amp=value), tmp_path / "u.skkp")
        back = skkp.load(tmp_path / "u.skkp").amp
        assert back == value and type(back) is type(value)


def test_amp_is_neutral_in_the_checkpoint_fingerprint(case):
    make, X, y = case
    prints = {fingerprint(make(amp=a), X, y) for a in ("auto", False, True, "bf16", "fp16")}
    assert len(prints) == 1
    assert fingerprint(make(lr=0.5), X, y) not in prints


def test_partial_fit_follows_a_changed_amp(case):
    make, X, y = case
    spy = _AutocastSpy()
    est = make(amp=False, max_epochs=1, net_kwargs={"callbacks": [spy]}).fit(X, y)
    assert spy.seen and not any(enabled for enabled, _, _ in spy.seen)
    n_fit = len(spy.seen)
    est.set_params(amp="bf16").partial_fit(X, y)
    assert len(spy.seen) > n_fit and all(enabled and dtype is torch.bfloat16 for enabled, dtype, _ in spy.seen[n_fit:])


# ----------------------------------------------------------------------------- loaders and copies
def test_pinned_memory_only_on_cuda_and_workers_for_training():
    assert loader_options("cpu", 2) == {"iterator_train__num_workers": 2, "iterator_train__persistent_workers": True,
                                        "iterator_train__pin_memory": False, "iterator_valid__pin_memory": False}
    assert loader_options("cpu", 0)["iterator_train__persistent_workers"] is False  # (torch refuses it without workers)
    cuda = loader_options("cuda:0")
    assert cuda["iterator_train__pin_memory"] and cuda["iterator_valid__pin_memory"]
    t = torch.ones(2)
    assert to_device_async((t, [t]), "cpu")[0] is t  # no copies off CUDA
    assert to_float32((t.bfloat16(), {"a": t.half()}, t.double()))[1]["a"].dtype == torch.float32
    assert to_float32(t.double()).dtype == torch.float64
    with autocast("cpu", None):
        assert not torch.is_autocast_enabled("cpu")


def test_fitted_nets_use_pinned_memory_only_on_cuda(case):
    make, X, y = case
    net = make(max_epochs=1, num_workers=0).fit(X, y).net_
    assert net.iterator_train__pin_memory is False and net.iterator_valid__pin_memory is False


def test_parser_keeps_the_default_layout_on_the_cpu():
    make, data = CASES["parser"]
    X, y = data()
    est = make(max_epochs=1).fit(X, y)
    assert est.net_.module_.channels_last is False
    assert est.net_.module_.backbone.conv1.weight.is_contiguous()


@pytest.mark.skipif(sys.platform == "win32", reason="worker start-up is slow there; the rule is the same")
def test_two_dataloader_workers_give_the_same_model_as_none(case):
    make, X, y = case
    kwargs = dict(augment=True, max_epochs=3)
    serial = make(num_workers=0, **kwargs).fit(X, y)
    workers = make(num_workers=2, **kwargs).fit(X, y)
    # the same workers all fit long: each epoch's augmentation and shuffle still as without workers
    assert workers.net_.iterator_train__num_workers == 2 and workers.net_.iterator_train__persistent_workers
    np.testing.assert_array_equal(_output(workers, X), _output(serial, X))
    assert _losses(workers) == _losses(serial)


def test_workers_persist_only_where_the_epoch_travels_with_the_indices(case):
    make, X, y = case
    net = make(num_workers=2, max_epochs=1).fit(X, y).net_
    from skkp._device import EpochKeyedSampler
    from skkp._keypoint_data import KeypointDataset

    ds = KeypointDataset(np.zeros((8, 1, 4, 4), np.float32), np.zeros((8, 2), np.float32))
    keyed = net.get_iterator(ds, training=True)
    assert keyed.persistent_workers and isinstance(keyed.sampler, EpochKeyedSampler)
    ds.epoch = 2
    assert sorted(keyed.sampler) == [3 * 8 + i for i in range(8)]  # (epoch + 1) * n + index
    plain = net.get_iterator(torch.utils.data.Subset(ds, range(4)), training=True)  # no epoch to key with
    assert not plain.persistent_workers
    assert not net.get_iterator(ds, training=False).persistent_workers


# ----------------------------------------------------------------------------- host-device synchronisation
#: Tensor methods that copy a value to the host: on a GPU each waits for all queued work.
_HOST_READS = {"item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__"}


class _HostReads(TorchFunctionMode):
    """Counts host reads made from skkp's own code (the first caller outside torch is in skkp),
    per phase: ``phase`` is set by the callback below."""

    def __init__(self):
        super().__init__()
        self.phase, self.counts = "setup", {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in _HOST_READS:
            frame, in_optimizer = sys._getframe(1), False
            while frame is not None and "/torch/" in frame.f_code.co_filename:
                in_optimizer |= "/torch/optim/" in frame.f_code.co_filename.replace("\\", "/")
                frame = frame.f_back
            if in_optimizer:  # torch's optimizer's own bookkeeping (Adam's CPU step count), as in a plain loop
                return func(*args, **(kwargs or {}))
            where = frame.f_code.co_filename if frame is not None else ""
            if "/skkp/" in where.replace("\\", "/") and "/tests/" not in where:
                self.counts.setdefault(self.phase, []).append(f"{name} {where.rsplit('/', 1)[-1]}:{frame.f_lineno}")
        return func(*args, **(kwargs or {}))


class _Phase(Callback):
    def __init__(self, mode):
        self.mode = mode

    def on_batch_begin(self, net, training=None, **kwargs):
        self.mode.phase = "train_batches" if training else "valid_batches"

    def on_batch_end(self, net, **kwargs):  # the last callback: skkp's have run for this batch
        self.mode.phase = "between_batches"


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_skkp_reads_nothing_back_per_batch_beyond_skorchs_loss(case, device):
    make, X, y = case
    mode = _HostReads()
    est = make(max_epochs=2, validation_fraction=0.3, device=device, net_kwargs={"callbacks": [_Phase(mode)]})
    with mode:
        est.fit(X, y)
    n_train = sum(len([b for b in r["batches"] if "train_loss" in b]) for r in est.history_)
    n_valid = sum(len([b for b in r["batches"] if "valid_loss" in b]) for r in est.history_)
    if isinstance(est, NoseKeypointRegressor):
        expected_train, expected_valid = 0, 0  # FiniteLoss and PixelMAE read nothing per batch
    else:  # OHEM's top-k size depends on the data: one read of the counts of every head and their sum
        expected_train, expected_valid = n_train, n_valid
    reads = mode.counts
    assert len(reads.get("train_batches", [])) == expected_train, reads.get("train_batches")
    assert len(reads.get("valid_batches", [])) == expected_valid, reads.get("valid_batches")
    assert all("losses.py" in r for r in reads.get("train_batches", []) + reads.get("valid_batches", []))
    # the callbacks' epoch-end totals: a few reads per epoch, not per batch
    assert len(reads.get("between_batches", [])) <= 8 * len(est.history_), reads.get("between_batches")


# ----------------------------------------------------------------------------- batch losses read once per epoch
class _BatchLossTypes(Callback):
    """What a callback sees as the batch's loss in on_batch_end, and a Ctrl-C after ``stop_at`` batches."""

    def __init__(self, stop_at=None):
        self.seen, self.stop_at = [], stop_at

    def on_batch_end(self, net, training=None, **kwargs):
        self.seen.append(type(net.history[-1]["batches"][-1][("train" if training else "valid") + "_loss"]))
        if self.stop_at is not None and len(self.seen) == self.stop_at:
            raise KeyboardInterrupt


def _deferred(monkeypatch):
    """Read the losses back once per epoch on the CPU too, as on a GPU."""
    monkeypatch.setattr("skkp._device.defers_loss_reads", lambda device: True)


def test_losses_read_once_per_epoch_give_skorchs_history_and_model(case, monkeypatch):
    make, X, y = case
    per_batch = make(validation_fraction=0.3).fit(X, y)
    _deferred(monkeypatch)
    spy = _BatchLossTypes()
    deferred = make(validation_fraction=0.3, net_kwargs={"callbacks": [spy]}).fit(X, y)
    assert set(spy.seen) == {torch.Tensor}  # not read back during the epoch
    assert _losses(deferred) == _losses(per_batch)
    for a, b in zip(deferred.history_, per_batch.history_):
        assert a["batches"] == b["batches"]
        assert all(type(v) is float for r in a["batches"] for k, v in r.items() if k.endswith("_loss"))
    np.testing.assert_array_equal(_output(deferred, X), _output(per_batch, X))


def test_losses_read_once_per_epoch_still_stop_a_diverged_fit_naming_the_batch(case, monkeypatch):
    make, X, y = case
    _deferred(monkeypatch)
    with pytest.raises(ValueError, match=r"training loss became \S+ in epoch 1, batch \d+; the network diverged"):
        make(lr=1e30, max_epochs=3).fit(X, y)


def test_the_progress_bar_shows_losses_not_yet_read_back_as_numbers(monkeypatch):
    from skkp._training import BatchProgressBar

    make, data = CASES["keypoints"]
    X, y = data()
    _deferred(monkeypatch)
    shown = []

    class Spy(BatchProgressBar):
        def _get_postfix_dict(self, net):
            shown.append(super()._get_postfix_dict(net))
            return shown[-1]

    make(max_epochs=1, net_kwargs={"callbacks": [Spy()]}).fit(X, y)
    assert shown and all(type(v) is float for d in shown for v in d.values())
    assert any("train_loss" in d for d in shown)


def test_a_ctrl_c_mid_epoch_leaves_floats_in_the_history(case, monkeypatch):
    make, X, y = case
    _deferred(monkeypatch)
    with pytest.warns(UserWarning, match="interrupted"):
        est = make(max_epochs=3, net_kwargs={"callbacks": [_BatchLossTypes(stop_at=2)]}).fit(X, y)
    losses = [b["train_loss"] for r in est.history_ for b in r["batches"]]
    assert len(losses) == 2 and all(type(v) is float and np.isfinite(v) for v in losses)
    pickle.dumps(est)


# ----------------------------------------------------------------------------- on a real GPU (skipped without one)
@needs_cuda
def test_on_cuda_auto_trains_in_mixed_precision_with_pinned_memory(case):
    make, X, y = case
    est = make(device="cuda", max_epochs=3).fit(X, y)
    net = est.net_
    assert net.amp_dtype() is resolve_amp("auto", "cuda") is not None
    assert net.iterator_train__pin_memory and net.iterator_valid__pin_memory
    assert np.isfinite(np.array(_losses(est))).all()
    mixed = _output(est, X)
    full = _output(est.set_params(amp=False), X)
    assert np.isfinite(mixed).all() and mixed.dtype == full.dtype
    if isinstance(est, NoseKeypointRegressor):
        assert np.abs(mixed - full).max() < 0.5  # pixels
    else:
        assert net.module_.channels_last and np.abs(mixed - full).max() < 0.05  # probabilities
