"""The shared skorch skeleton (skkp._training): every neural estimator gets all of it."""
import contextlib
import io
import pickle
import threading
import warnings

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from skkp import FaceParser, NoseKeypointRegressor
from skkp._training import (EpochSetter, draw_seed, drop_last_for_batchnorm, merge_callbacks, validation_split)
from skkp.datasets import make_faces, make_noses


def _keypoint_data():
    return make_noses(24, image_size=32, random_state=0)


def _parsing_data():
    return make_faces(10, 40, random_state=0)


CASES = {
    "keypoints": (lambda **kw: NoseKeypointRegressor(**{"architecture": "cnn", "image_size": 32, "max_epochs": 2,
                                                        "batch_size": 8, "device": "cpu", **kw}), _keypoint_data),
    "parser": (lambda **kw: FaceParser(**{"image_size": 32, "width": 0.125, "max_epochs": 2, "batch_size": 4,
                                          "device": "cpu", **kw}), _parsing_data),
}


@pytest.fixture(params=sorted(CASES), scope="module")
def case(request):
    make, data = CASES[request.param]
    X, y = data()
    return make, X, y


@pytest.fixture(scope="module")
def fitted(case):
    make, X, y = case
    return make(random_state=0).fit(X, y), X


def test_history_has_one_row_per_epoch_with_validation(case, fitted):
    est, _ = fitted
    assert len(est.history_) == 2
    assert np.isfinite(est.history_[:, "train_loss"]).all()
    assert np.isfinite(est.history_[:, "valid_loss"]).all()
    key = "valid_mae_px" if isinstance(est, NoseKeypointRegressor) else "valid_miou"
    assert np.isfinite(est.history_[:, key]).all()


def test_version_stamp_and_warning_on_mismatch(fitted, monkeypatch):
    est, X = fitted
    data = pickle.dumps(est)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pickle.loads(data)  # same version: silent
    monkeypatch.setattr("skkp._training.__version__", "0.0.1-other")
    with pytest.warns(UserWarning, match="saved with skkp .* loaded with skkp 0.0.1-other"):
        pickle.loads(data)


def test_device_refreshed_from_the_loaded_net(fitted):
    est, _ = fitted
    state = est.__getstate__()
    state["device_"] = "cuda"  # as written on a GPU machine; the net itself is on the CPU here
    clone = type(est).__new__(type(est))
    clone.__setstate__(state)
    assert clone.device_ == "cpu"


def test_no_network_tensors_outside_skorchs_device_mapped_state(fitted):
    # skorch maps module_/optimizer_/criterion_ to the CPU when unpickling without CUDA; a parameter
    # pickled anywhere else (a module instance as a parameter, a callback) would break loading a GPU
    # model on a CPU machine, and would store the weights twice
    est, _ = fitted
    net = est.net_
    params = list(net.module_.parameters())
    owned = {p.data_ptr() for p in params} | {
        t.data_ptr() for s in net.optimizer_.state.values() for t in s.values() if torch.is_tensor(t)}
    state = net.__getstate__()
    state.pop("__cuda_dependent_attributes__")
    found = []

    class Spy(pickle.Pickler):
        def persistent_id(self, obj):
            if torch.is_tensor(obj):
                found.append(obj)
            return None

    Spy(io.BytesIO()).dump(state)
    assert not [t for t in found if t.data_ptr() in owned]
    # weights + Adam/SGD state at most 3x the parameter bytes
    assert len(pickle.dumps(est)) < 3 * sum(p.numel() * 4 for p in params) + 200_000


def test_same_seed_same_model_and_global_rng_untouched(case):
    make, X, y = case
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    a = make(random_state=3).fit(X, y).predict(X[:3])
    b = make(random_state=3).fit(X, y).predict(X[:3])
    make(random_state=None).fit(X, y)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_groups_hold_out_whole_groups(case):
    make, X, y = case
    groups = np.repeat(np.arange(len(X) // 2), 2)
    est = make(random_state=0, validation_fraction=0.3).fit(X, y, groups=groups)
    valid = est.history_[-1, "valid_loss"]
    assert np.isfinite(valid)
    with pytest.raises(ValueError, match="groups"):
        make(random_state=0).fit(X, y, groups=groups[:-1])


def test_epoch_setter_counts_from_zero_for_both(case):
    make, X, y = case
    seen = []

    class Record(Callback):
        def on_epoch_begin(self, net, dataset_train=None, **kwargs):
            seen.append(dataset_train.epoch)

    make(random_state=0, max_epochs=3, net_kwargs={"callbacks": [Record()]}).fit(X, y)
    assert seen == [0, 1, 2]


def test_epoch_setter_unwraps_subsets_and_holds_no_data():
    class Net:
        history = [{}, {}]

    ds = torch.utils.data.TensorDataset(torch.zeros(4))
    ds.epoch = -1
    EpochSetter().on_epoch_begin(Net(), dataset_train=torch.utils.data.Subset(ds, [0, 1]))
    assert ds.epoch == 1
    assert vars(EpochSetter()) == {}


def test_seed_draw_and_split_rules():
    assert draw_seed(5)[0] == draw_seed(5)[0]
    state = np.random.get_state()[1].copy()
    s1, s2 = draw_seed(None)[0], draw_seed(None)[0]
    assert s1 != s2
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    valid, train = validation_split(10, 0.3, np.random.RandomState(0))
    assert len(valid) == 3 and sorted(np.r_[valid, train]) == list(range(10))
    valid, train = validation_split(8, 0.3, np.random.RandomState(0), groups=np.array(list("aabbbccd")))
    groups = np.array(list("aabbbccd"))
    assert not set(groups[valid]) & set(groups[train])
    assert drop_last_for_batchnorm(9, 4) and not drop_last_for_batchnorm(8, 4) and not drop_last_for_batchnorm(1, 4)


def test_merge_callbacks_names_unnamed_ones():
    a, b = Callback(), Callback()
    merged = merge_callbacks([("x", a)], [b, ("mine", a)])
    assert [name for name, _ in merged] == ["x", "Callback_0", "mine"]


# ----------------------------------------------------------------------------- faults are never silent
class _Interrupt(Callback):
    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == 2:
            raise KeyboardInterrupt


def test_ctrl_c_warns_with_the_epochs_done(case):
    make, X, y = case
    with pytest.warns(UserWarning, match=r"interrupted \(KeyboardInterrupt\) after 2 of 5 epochs"):
        est = make(random_state=0, max_epochs=5, net_kwargs={"callbacks": [_Interrupt()]}).fit(X, y)
    assert est.fit_interrupted_ and len(est.history_) == 2
    assert est.predict(X[:2]).shape[0] == 2  # the partial model is usable, and says what it is
    assert not make(random_state=0, max_epochs=1).fit(X, y).fit_interrupted_


def test_non_finite_training_loss_stops_with_the_epoch(case):
    make, X, y = case
    with pytest.raises(ValueError, match=r"training loss became \S+ in epoch \d+, batch \d+; the network diverged"):
        make(random_state=0, lr=1e30).fit(X, y)


def test_non_finite_outputs_at_predict_raise(fitted):
    est, X = fitted
    broken = pickle.loads(pickle.dumps(est))
    with torch.no_grad():
        for p in broken.net_.module_.parameters():
            p.fill_(float("nan"))
    with pytest.raises(ValueError, match="NaN or infinite"):
        broken.predict(X[:2])


def test_ragged_lists_of_images_get_a_clear_error(case):
    make, X, y = case
    ragged = [X[0], X[1][:-2]]
    with pytest.raises(ValueError, match="list of 2 arrays of different shapes.*crop_faces"):
        make(random_state=0).fit(ragged, y[:2])
    est = make(random_state=0, max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="different shapes"):
        est.predict(ragged)


# ----------------------------------------------------------------------------- threads
@pytest.mark.usefixtures("one_torch_thread")  # bit-exact comparisons: one intra-op thread per fit
def test_fits_in_threads_match_serial_fits(case):
    import threading

    make, X, y = case
    serial = {s: make(random_state=s).fit(X, y).predict(X[:4]) for s in (1, 2, 3)}
    results = {}

    def fit(s):
        results[s] = make(random_state=s).fit(X, y).predict(X[:4])

    threads = [threading.Thread(target=fit, args=(s,)) for s in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in serial:
        np.testing.assert_array_equal(results[s], serial[s])


@pytest.mark.usefixtures("one_torch_thread")
def test_another_thread_drawing_random_numbers_during_training_changes_nothing(case):
    import threading

    make, X, y = case
    serial = make(random_state=1).fit(X, y).predict(X[:4])
    training, stop = threading.Event(), threading.Event()

    class Started(Callback):
        def on_train_begin(self, net, **kwargs):
            training.set()

    def noise():  # foreign code drawing from torch's global generator all through training
        training.wait(60)
        while not stop.is_set():
            torch.rand(64)

    noisy = threading.Thread(target=noise)
    noisy.start()
    try:
        threaded = make(random_state=1, net_kwargs={"callbacks": [Started()]}).fit(X, y).predict(X[:4])
    finally:
        stop.set()
        noisy.join()
    np.testing.assert_array_equal(threaded, serial)


class _DrawsMoreEachBuild(Callback):
    """Stands in for another thread drawing from torch's global generator while the net is built:
    each build (skorch initialises the callbacks then) draws a different number of values."""

    def __init__(self):
        self.builds = 0

    def initialize(self):
        self.builds += 1
        torch.rand(self.builds)
        return super().initialize()


@contextlib.contextmanager
def _another_thread():
    """An idle second Python thread for the duration (so fits check for foreign draws)."""
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        yield
    finally:
        stop.set()
        other.join()


def test_initialisation_disturbed_by_other_draws_is_an_error_not_a_different_model(case):
    make, X, y = case
    spy = _DrawsMoreEachBuild()
    with _another_thread(), pytest.raises(RuntimeError, match="initialise the network reproducibly in 5 attempts"):
        make(random_state=1, net_kwargs={"callbacks": [spy]}).fit(X, y)
    assert spy.builds == 10  # five attempts of two builds each, every pair disagreeing


def test_with_no_other_thread_the_network_is_built_once_into_the_same_model(case, monkeypatch):
    make, X, y = case
    with _another_thread():
        checked = make(random_state=1).fit(X, y)
    monkeypatch.setattr(threading, "active_count", lambda: 1)  # as in a script: the main thread alone
    builds = []

    class CountBuilds(Callback):
        def initialize(self):
            builds.append(1)
            return super().initialize()

    once = make(random_state=1, net_kwargs={"callbacks": [CountBuilds()]}).fit(X, y)
    assert len(builds) == 1
    out = (lambda est: est.predict(X) if isinstance(est, NoseKeypointRegressor) else est.predict_proba(X))
    np.testing.assert_array_equal(out(once), out(checked))


@pytest.mark.usefixtures("one_torch_thread")
def test_predict_from_four_threads_while_another_model_fits(case, fitted):
    import threading

    make, X, y = case
    est, _ = fitted
    expected = est.predict(X)
    answers, errors = [], []

    def predict():
        try:
            for _ in range(3):
                answers.append(est.predict(X))
        except Exception as exc:  # reported below, with the thread's error
            errors.append(exc)

    threads = [threading.Thread(target=predict) for _ in range(4)]
    threads.append(threading.Thread(target=lambda: make(random_state=5).fit(X, y)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(answers) == 12
    for a in answers:
        np.testing.assert_array_equal(a, expected)


def test_private_generators_are_not_pickled(fitted):
    from skkp.nets import GeneratorDropout

    est, _ = fitted
    assert all("generator" not in vars(m) for m in est.net_.module_.modules())
    assert pickle.loads(pickle.dumps(est)) is not None
    assert GeneratorDropout.generator is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fitted_on_gpu_loads_and_predicts_on_a_cpu_only_process(case, tmp_path):
    import subprocess
    import sys
    import textwrap

    make, X, y = case
    est = make(random_state=0, device="cuda").fit(X, y)
    with open(tmp_path / "gpu.pkl", "wb") as f:
        pickle.dump(est, f)
    np.save(tmp_path / "X.npy", X[:4])
    code = textwrap.dedent(f"""
        import pickle, numpy as np, torch
        assert not torch.cuda.is_available()
        est = pickle.load(open({str(tmp_path / 'gpu.pkl')!r}, "rb"))
        assert est.device_ == "cpu"
        np.save({str(tmp_path / 'p.npy')!r}, est.predict(np.load({str(tmp_path / 'X.npy')!r})))
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300, env={**__import__("os").environ,
                                                                                 "CUDA_VISIBLE_DEVICES": ""})
    # full precision on the GPU too: amp="auto" (bf16 there) is compared with float32 in tests/test_device.py
    on_cpu, on_gpu = np.load(tmp_path / "p.npy"), est.set_params(amp=False).predict(X[:4])
    if isinstance(est, NoseKeypointRegressor):
        np.testing.assert_allclose(on_cpu, on_gpu, atol=1e-2)
    else:
        assert np.mean(on_cpu == on_gpu) > 0.99


def test_verbose_log_off_a_terminal_is_plain_lines_with_time_left(case, capsys):
    make, X, y = case
    make(random_state=0, verbose=1).fit(X, y)
    out = capsys.readouterr().out
    assert "time_left_s" in out and "\x1b[" not in out and "\r" not in out


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), "both"])
@pytest.mark.parametrize("kind", ["tensor", "array"])
def test_check_finite_output_catches_one_bad_value(bad, kind):
    from skkp._training import check_finite_output

    out = torch.linspace(-1e30, 1e30, 4000).reshape(2, 2000)  # large finite values pass
    check_finite_output(out if kind == "tensor" else out.numpy(), "logits", 2)
    broken = out.clone()
    if bad == "both":  # +inf and -inf, whose sum is NaN
        broken[0, 5], broken[1, 7] = float("inf"), -float("inf")
    else:
        broken[1, 1234] = bad
    with pytest.raises(ValueError, match="NaN or infinite logits for some of these 2 images"):
        check_finite_output(broken if kind == "tensor" else broken.numpy(), "logits", 2)
