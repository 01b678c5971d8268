"""The shared skorch skeleton (skkp._training): every neural estimator gets all of it."""
import io
import pickle
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
