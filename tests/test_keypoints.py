"""NoseKeypointRegressor: input layouts, frames, errors, randomness, sklearn integration."""
import subprocess
import sys
import warnings

import cv2
import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import skkp
from skkp._keypoint_data import KeypointDataset, from_unit, to_unit
from skkp.keypoints import NoseKeypointRegressor

S = 32


def blobs(n, size=S, seed=0, n_points=2):
    """Images with bright Gaussian blobs; keypoint i is the centre of blob i (blobs get dimmer with i)."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[:size, :size]
    X = np.zeros((n, size, size), np.float32)
    y = rng.uniform(0.2 * size, 0.8 * size, (n, 2 * n_points))
    for i in range(n):
        for k in range(n_points):
            X[i] += (1.0 - 0.4 * k) * np.exp(-((xx - y[i, 2 * k]) ** 2 + (yy - y[i, 2 * k + 1]) ** 2) / 6.0)
    return (np.clip(X, 0, 1) * 255).astype(np.uint8), y


def small(**kw):
    params = dict(architecture="cnn", image_size=S, max_epochs=2, batch_size=16, random_state=0, device="cpu",
                  augment=False)
    params.update(kw)
    return NoseKeypointRegressor(**params)


@pytest.fixture(scope="module")
def data():
    return blobs(96)


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return small(architecture="mlp", max_epochs=15, lr=3e-3).fit(X, y)


# ------------------------------------------------------------------ layouts and frames
@pytest.mark.parametrize("layout", ["flat", "hw", "hw1", "1hw", "rgb"])
def test_input_layouts_give_the_same_predictions(fitted, data, layout):
    X, _ = data
    ref = fitted.predict(X[:5])
    variants = {"flat": X[:5].reshape(5, -1), "hw": X[:5], "hw1": X[:5, :, :, None], "1hw": X[:5, None]}
    if layout == "rgb":
        model = clone(fitted).fit(np.repeat(X[..., None], 3, axis=-1), data[1])
        gray = clone(fitted).fit(X, data[1])
        np.testing.assert_allclose(model.predict(np.repeat(X[:5, :, :, None], 3, -1)), gray.predict(X[:5]),
                                   atol=0.05)
        return
    np.testing.assert_allclose(fitted.predict(variants[layout]), ref, atol=1e-4)


def test_learns_and_reports_history(fitted, data):
    X, y = data
    err = np.abs(fitted.predict(X) - y).mean()
    baseline = np.abs(y - y.mean(0)).mean()
    assert err < 0.5 * baseline
    assert fitted.n_keypoints_ == 2 and fitted.predict(X).shape == (len(X), 4)
    hist = fitted.history_
    assert len(hist) == 15
    assert {"train_loss", "valid_loss", "train_mae_px", "valid_mae_px"} <= set(hist[-1])
    assert hist[-1, "train_mae_px"] < hist[0, "train_mae_px"]


def test_predictions_are_in_the_frame_of_the_images_passed(fitted, data):
    X, _ = data
    big = np.stack([cv2.resize(im, (2 * S, 2 * S), interpolation=cv2.INTER_LINEAR) for im in X[:8]])
    p_small, p_big = fitted.predict(X[:8]), fitted.predict(big)
    # up- then down-sampling blurs the input a little, so allow small differences on average
    assert np.abs(p_big - ((p_small + 0.5) * 2 - 0.5)).mean() < 0.5
    assert np.corrcoef(p_big.ravel(), p_small.ravel())[0, 1] > 0.99


def test_fit_on_other_size_maps_targets_into_network_frame(data):
    X, y = data
    big = np.stack([cv2.resize(im, (2 * S, 2 * S), interpolation=cv2.INTER_LINEAR) for im in X])
    y_big = (y + 0.5) * 2 - 0.5
    model = small(architecture="mlp", max_epochs=15, lr=3e-3).fit(big, y_big)
    assert np.abs(model.predict(big) - y_big).mean() < 0.5 * np.abs(y_big - y_big.mean(0)).mean()


def test_y_as_points_array_round_trips_shape(data):
    X, y = data
    model = small(max_epochs=1).fit(X, y.reshape(len(y), 2, 2))
    assert model.predict(X[:3]).shape == (3, 2, 2)


def test_unit_frame_round_trip():
    pts = np.array([[-0.5, 0.0, 31.5, 15.2]])
    np.testing.assert_allclose(to_unit(pts, 32), [[-1.0, -31 / 32, 1.0, 15.7 / 16 - 1]])
    np.testing.assert_allclose(from_unit(to_unit(pts, 32), 32), pts)


# ------------------------------------------------------------------ architectures
@pytest.mark.parametrize("arch", ["mlp", "cnn", "inception"])
def test_each_architecture_fits_images(arch, data):
    X, y = data
    model = small(architecture=arch, max_epochs=1).fit(X[:40], y[:40])
    pred = model.predict(X[:4])
    assert pred.shape == (4, 4) and np.isfinite(pred).all()


def test_inception_reference_layout():
    model = small(architecture="inception", image_size=96, max_epochs=1)
    X, y = blobs(8, size=96)
    model.fit(X, y)
    module = model.net_.module_
    assert module.n_flat == 2880
    assert [m.branch3[0].out_channels for m in module.features] == [64, 64, 128, 128, 256]
    assert [m.branch5[0].kernel_size for m in module.features] == [(5, 5)] * 5
    # L2 penalties 0.05, 0.02, 0.01 become decoupled decay 2c on the first three dense layers, and
    # nothing in Adam's gradient (weight_decay stays the estimator's, 0)
    decays = sorted(g.get("l2_decay", 0.0) for g in model.net_.optimizer_.param_groups)
    assert decays == [0.0, 0.02, 0.04, 0.1]
    assert all(g["weight_decay"] == 0.0 for g in model.net_.optimizer_.param_groups)


def test_heatmap_net_options():
    from skkp.nets import HeatmapKeypointNet

    default = HeatmapKeypointNet(n_outputs=6, image_size=48)
    # the layer names of the original two-conv stages are kept, so saved models still load
    assert {"enc2.0.0.weight", "enc2.1.0.weight", "enc4.1.0.weight"} <= set(default.state_dict())
    fine = HeatmapKeypointNet(n_outputs=6, image_size=48, width=8, depth=3, heatmap_stride=2).eval()
    assert len(fine.enc3) == 3
    out = fine(torch.zeros(2, 1, 48, 48))
    assert out.shape == (2, 6) and bool(out.abs().max() <= 1)
    for kwargs in ({"heatmap_stride": 8}, {"depth": 0}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            HeatmapKeypointNet(n_outputs=6, **kwargs)


@pytest.mark.parametrize("arch", ["heatmap", "cnn"])
def test_wing_loss_is_measured_in_pixels_of_the_network_input(arch, data):
    X, y = data
    model = small(architecture=arch, loss="wing", max_epochs=1).fit(X[:40], y[:40])
    # heatmap outputs are [-1, 1] image units (S / 2 px each); cnn's standardised targets are y_scale of those
    np.testing.assert_allclose(model.net_.criterion_.px_per_unit.numpy(),
                               model.frame_.px_per_unit(model.n_outputs_), rtol=1e-6)
    assert np.isfinite(model.predict(X[:4])).all()


def test_heatmap_loss_through_net_kwargs(data):
    X, y = data
    plain = small(architecture="heatmap", max_epochs=2).fit(X[:40], y[:40])
    model = small(architecture="heatmap", max_epochs=2,
                  net_kwargs={"module__return_heatmaps": True, "criterion__heatmap_weight": 1.0}).fit(X[:40], y[:40])
    assert model.net_.criterion_.heatmap_weight == 1.0
    assert np.isfinite(model.history_[:, "train_mae_px"]).all()
    assert not np.allclose(plain.history_[:, "train_loss"], model.history_[:, "train_loss"])
    assert model.predict(X[:4]).shape == (4, 4)


def test_mlp_accepts_plain_features():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 5))
    y = X @ rng.normal(size=5)
    model = NoseKeypointRegressor(architecture="mlp", max_epochs=30, lr=1e-2, random_state=0).fit(X, y)
    assert model.predict(X).shape == (60,)
    assert model.score(X, y) > 0.8
    assert model.n_keypoints_ is None


def test_mlp_standardises_each_image_but_not_features(data):
    """Per-image contrast normalisation is on for images (an image and a brighter, higher-contrast
    copy get the same points), off for feature matrices, and a fine-tuned MLP keeps its source's setting."""
    X, y = data
    model = small(architecture="mlp").fit(X[:40], y[:40])
    assert model.input_standardised_ is True and model.net_.module_.standardise_input is True
    brighter = np.clip(X[:8].astype(np.float32) * 0.5 + 60, 0, 255).astype(np.uint8)
    np.testing.assert_allclose(model.predict(brighter), model.predict(X[:8]), atol=0.05)
    raw = small(architecture="mlp", net_kwargs={"module__standardise_input": False}).fit(X[:40], y[:40])
    assert raw.input_standardised_ is False and raw.net_.module_.standardise_input is False
    assert np.abs(raw.predict(brighter) - raw.predict(X[:8])).max() > 0.05
    tuned = small(architecture="mlp", init=raw, max_epochs=1).fit(X[40:80], y[40:80])
    assert tuned.input_standardised_ is False and tuned.net_.module_.standardise_input is False
    features = NoseKeypointRegressor(architecture="mlp", max_epochs=1, random_state=0).fit(
        np.random.RandomState(0).normal(size=(20, 5)), np.arange(20.0))
    assert features.input_standardised_ is False and features.net_.module_.standardise_input is False


# ------------------------------------------------------------------ errors before training
@pytest.mark.parametrize("X_fn, y_fn, match", [
    (lambda X: X[:10], lambda y: y[:9], "inconsistent numbers of samples"),
    (lambda X: X[:10], lambda y: y[:10, :3], "even number"),
    (lambda X: np.where(np.arange(S) == 3, np.nan, X[:10].astype(float)), lambda y: y[:10], "NaN"),
    (lambda X: np.full((10, S, S), np.inf), lambda y: y[:10], "infinity"),
    (lambda X: X[:10].reshape(10, -1)[:, :1000], lambda y: y[:10], "not flattened square images"),
    (lambda X: X[:0], lambda y: y[:0], "0 sample"),
    (lambda X: X[:10, :12, :12], lambda y: y[:10], "at least 16x16"),
    (lambda X: X[:10], lambda y: np.full((10, 4), np.inf), "infinity"),
    (lambda X: X[:10], lambda y: np.full((10, 4), np.nan), "no labelled"),
    (lambda X: np.zeros((10, 5, S, S)), lambda y: y[:10], "1 or 3 channels"),
])
def test_bad_input_raises_before_training(data, X_fn, y_fn, match):
    X, y = data
    model = small()
    with pytest.raises(ValueError, match=match):
        model.fit(X_fn(X), y_fn(y))
    assert not hasattr(model, "net_")


@pytest.mark.parametrize("param, value", [("lr", -1.0), ("architecture", "resnet9000"), ("max_epochs", 0),
                                          ("validation_fraction", 1.0), ("image_size", 8)])
def test_bad_parameters_raise(data, param, value):
    with pytest.raises(ValueError, match=param):
        small(**{param: value}).fit(*data)


def test_bad_device_and_augment_keys(data):
    with pytest.raises(ValueError, match="device"):
        small(device="tpu").fit(*data)
    with pytest.raises(ValueError, match="augment has unknown keys"):
        small(augment={"rotate": 5}).fit(*data)


def test_wrong_type_of_X_is_a_type_error(data):
    with pytest.raises(TypeError, match="X must"):
        small().fit("not an array", data[1])
    with pytest.raises(TypeError, match="X must hold numbers"):
        small().fit(np.array([["a"] * 256] * 4), data[1][:4])


def test_predict_errors(fitted, data):
    X, _ = data
    with pytest.raises(NotFittedError):
        small().predict(X)
    with pytest.raises(ValueError, match="channel"):
        fitted.predict(np.repeat(X[:2, :, :, None], 3, axis=-1))


def test_inputs_are_not_modified(data):
    X, y = data
    X, y = X[:32].copy(), y[:32].copy()
    y[0, :2] = np.nan
    X.setflags(write=False)
    y.setflags(write=False)
    X0, y0 = X.copy(), y.copy()
    model = small(augment=True, max_epochs=1).fit(X, y)
    model.predict(X)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


# ------------------------------------------------------------------ missing labels
def test_missing_labels_are_masked_out_of_training(data):
    X, y = data
    y_missing = y.copy()
    y_missing[::2, 2:] = np.nan  # the second point is unlabelled in half of the rows
    model = small(architecture="mlp", max_epochs=15, lr=3e-3).fit(X, y_missing)
    pred = model.predict(X)
    assert np.isfinite(pred).all()
    assert np.abs(pred - y).mean() < 0.6 * np.abs(y - y.mean(0)).mean()
    assert np.isfinite(model.score(X, y_missing))


def test_groups_hold_out_whole_groups_for_validation(data):
    from skorch.callbacks import Callback

    from skkp._training import _group_split

    class Sizes(Callback):
        def on_train_begin(self, net, X=None, y=None, **kwargs):
            self.train_, self.valid_ = len(X), len(net.train_split.keywords["valid_ds"])

    X, y = data
    groups = np.repeat(np.arange(12), 8)  # 12 people with 8 frames each
    sizes = Sizes()
    model = small(max_epochs=1, net_kwargs={"callbacks": [sizes]}).fit(X, y, groups=groups)
    # 10% of 96 rows is 9.6: whole groups of 8 give 16 held-out rows (a row split would give 10)
    assert (sizes.train_, sizes.valid_) == (80, 16)
    assert np.isfinite(model.history_[-1, "valid_mae_px"])

    rng = np.random.RandomState(0)
    valid, train = _group_split(np.array(list("aabbbccd")), 0.3, rng)
    held = set(np.array(list("aabbbccd"))[valid])
    assert held and not held & set(np.array(list("aabbbccd"))[train]) and len(valid) >= 0.3 * 8
    assert _group_split(np.zeros(5), 0.5, rng)[0].size == 0  # one group: nothing left to train on
    with pytest.raises(ValueError, match="groups"):
        small().fit(X, y, groups=groups[:-1])


def test_rows_without_any_label_are_reported(data):
    X, y = data
    y = y.copy()
    y[:3] = np.nan
    with pytest.warns(UserWarning, match="3 of 96 rows"):
        small(max_epochs=1).fit(X, y)


# ------------------------------------------------------------------ augmentation
def test_augmentation_moves_image_and_points_together():
    X, y = blobs(20, n_points=2, seed=3)
    images = (X[:, None] / 255.0).astype(np.float32)
    ds = KeypointDataset(images, to_unit(y, S).astype(np.float32),
                         {"rotation": 25, "scale": (0.8, 1.2), "shift": 0.1, "flip": True, "brightness": 0,
                          "contrast": 0}, flip_pairs=[(0, 1)], seed=1)
    flips = 0
    for i in range(len(ds)):
        img, pts = ds[i]
        pts = from_unit(pts.numpy().reshape(2, 2), S)
        img = img.numpy()[0]
        inside = [2 <= p[0] < S - 2 and 2 <= p[1] < S - 2 for p in pts]
        values = [img[int(round(p[1])), int(round(p[0]))] for p in pts]
        for ok, v in zip(inside, values):
            if ok:
                assert v > 0.3, "a keypoint does not sit on its blob after augmentation"
        if all(inside) and values[0] < values[1]:
            flips += 1  # the flip swapped the pair: point 0 now names the dimmer blob
    # flips are drawn with probability 1/2: some samples flipped (and were swapped), some not
    assert 0 < flips < len(ds)
    # Different epochs draw different transforms; the same epoch is reproducible.
    a0 = ds[0][1].clone()
    ds.epoch = 1
    assert not torch.equal(a0, ds[0][1])
    ds.epoch = 0
    assert torch.equal(a0, ds[0][1])


def test_flip_swaps_left_right_pairs():
    X, y = blobs(1, n_points=2, seed=4)
    images = (X[:, None] / 255.0).astype(np.float32)
    ds = KeypointDataset(images, to_unit(y, S).astype(np.float32),
                         {"rotation": 0, "scale": None, "shift": 0, "flip": True, "brightness": 0,
                          "contrast": 0}, flip_pairs=[(0, 1)], seed=0)
    seen_flip = False
    for epoch in range(20):
        ds.epoch = epoch
        img, pts = ds[0]
        pts = from_unit(pts.numpy().reshape(2, 2), S)
        if not np.allclose(pts[0], y[0, :2], atol=1e-4):
            seen_flip = True
            # after the flip, point 0 is the mirror of the old point 1 (the dimmer blob)
            np.testing.assert_allclose(pts[0], [S - 1 - y[0, 2], y[0, 3]], atol=1e-4)
            np.testing.assert_allclose(pts[1], [S - 1 - y[0, 0], y[0, 1]], atol=1e-4)
            img = img.numpy()[0]
            bright = img[int(round(pts[1][1])), int(round(pts[1][0]))]
            dim = img[int(round(pts[0][1])), int(round(pts[0][0]))]
            assert bright > dim
    assert seen_flip


# ------------------------------------------------------------------ randomness
def test_same_seed_same_predictions_and_global_rng_untouched(data):
    X, y = data
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    p1 = small(augment=True, max_epochs=2).fit(X, y).predict(X)
    assert torch.equal(torch_state, torch.get_rng_state())
    assert np.array_equal(np_state[1], np.random.get_state()[1])
    p2 = small(augment=True, max_epochs=2).fit(X, y).predict(X)
    np.testing.assert_array_equal(p1, p2)
    p3 = small(augment=True, max_epochs=2, random_state=1).fit(X, y).predict(X)
    assert not np.allclose(p1, p3)


# ------------------------------------------------------------------ schemas
def test_keypoint_names_from_parameters(data):
    X, y = data
    model = small(max_epochs=1, keypoint_names=["bright", "dim"], flip_pairs=[(0, 1)]).fit(X, y)
    assert model.keypoint_names_ == ["bright", "dim"] and model.flip_pairs_ == ((0, 1),)
    with pytest.raises(ValueError, match="keypoint_names has 3 names"):
        small(keypoint_names=["a", "b", "c"]).fit(X, y)
    with pytest.raises(ValueError, match="flip_pairs"):
        small(flip_pairs=[(0, 5)]).fit(X, y)


# ------------------------------------------------------------------ sklearn integration
def test_clone_and_nested_set_params(fitted):
    c = clone(fitted)
    assert not hasattr(c, "net_") and c.get_params() == fitted.get_params()
    pipe = make_pipeline(FunctionTransformer(), small())
    pipe.set_params(nosekeypointregressor__lr=0.5, nosekeypointregressor__net_kwargs={"optimizer__eps": 1e-6})
    assert pipe[-1].lr == 0.5
    X, y = blobs(16)
    pipe.set_params(nosekeypointregressor__max_epochs=1).fit(X, y)
    assert pipe[-1].net_.lr == 0.5  # the nested value reached the skorch net (the schedule then decays it)
    assert pipe[-1].net_.optimizer_.param_groups[0]["eps"] == 1e-6


def test_pipeline_with_function_transformer(data):
    X, y = data
    pipe = make_pipeline(FunctionTransformer(lambda Z: np.asarray(Z, np.float32) / 255.0), small(max_epochs=1))
    assert pipe.fit(X, y).predict(X[:3]).shape == (3, 4)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_grid_search(data, n_jobs):
    X, y = data
    grid = GridSearchCV(small(max_epochs=1), {"architecture": ["mlp", "cnn"], "lr": [1e-3, 3e-3]}, cv=2,
                        n_jobs=n_jobs, scoring="neg_mean_absolute_error")
    grid.fit(X[:48], y[:48])
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_estimator_.predict(X[:2]).shape == (2, 4)


def test_cross_val_score_with_mae(data):
    X, y = data
    scores = cross_val_score(small(max_epochs=1), X[:48], y[:48], cv=KFold(3),
                             scoring="neg_mean_absolute_error")
    assert scores.shape == (3,) and (scores < 0).all()


def test_joblib_round_trip_in_fresh_process(fitted, data, tmp_path):
    X, _ = data
    path, xpath = tmp_path / "model.joblib", tmp_path / "X.npy"
    joblib.dump(fitted, path)
    np.save(xpath, X[:10])
    # the same torch thread count as here: convolutions summed over other threads differ in the last bits
    code = ("import joblib, numpy as np, sys, torch; torch.set_num_threads(int(sys.argv[4])); "
            "m = joblib.load(sys.argv[1]); np.save(sys.argv[3], m.predict(np.load(sys.argv[2])))")
    out = tmp_path / "pred.npy"
    subprocess.run([sys.executable, "-c", code, str(path), str(xpath), str(out), str(torch.get_num_threads())],
                   check=True)
    np.testing.assert_array_equal(np.load(out), fitted.predict(X[:10]))


def test_saved_model_records_version_and_warns_on_mismatch(fitted, tmp_path, monkeypatch):
    path = tmp_path / "m.joblib"
    joblib.dump(fitted, path)
    assert fitted.__getstate__()["_skkp_version"] == skkp.__version__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        joblib.load(path)
    monkeypatch.setattr("skkp._training.__version__", "0.0.1-other")
    with pytest.warns(UserWarning, match="saved with skkp"):
        joblib.load(path)


def test_saved_model_holds_no_training_data(data, tmp_path):
    X, y = data
    sizes = []
    for n in (24, 96):
        model = small(max_epochs=1).fit(X[:n], y[:n])
        assert model.net_.train_split is None
        joblib.dump(model, tmp_path / f"m{n}.joblib")
        sizes.append((tmp_path / f"m{n}.joblib").stat().st_size)
    # 72 more images of 32x32 float32 would add 295 kB if the model kept its training data
    assert abs(sizes[1] - sizes[0]) < 20_000


def test_keypoint_names_and_flip_pairs_from_schemas():
    from skkp.datasets import KEYPOINT_SCHEMAS, make_noses

    X, y = make_noses(24, view="frontal", image_size=32, random_state=0)
    model = small(max_epochs=1).fit(X, y)
    assert model.keypoint_names_ == list(KEYPOINT_SCHEMAS["nose_frontal"].names)
    assert model.flip_pairs_ == KEYPOINT_SCHEMAS["nose_frontal"].flip_pairs
    # 9 points match two layouts (bottom nose view, iBUG-68 nose): no guess without schema=
    y9 = np.tile(y[:, :2], 9)
    assert small(max_epochs=1).fit(X, y9).keypoint_names_ is None
    named = small(max_epochs=1, schema="ibug68_nose").fit(X, y9)
    assert named.keypoint_names_[0] == KEYPOINT_SCHEMAS["ibug68"].names[27]
    with pytest.raises(ValueError, match="has 68 keypoints but y has 9"):
        small(schema="ibug68").fit(X, y9)


def test_flip_pairs_inferred_from_mirror_symmetry():
    from skkp.datasets import make_noses
    from skkp.schemas import infer_flip_pairs

    X, y = make_noses(60, view="bottom", image_size=32, random_state=0)
    assert infer_flip_pairs(y) == ((3, 4), (5, 6), (7, 8))
    assert infer_flip_pairs(make_noses(60, view="side", image_size=32, random_state=0)[1]) == ()
    # reorder the points: the pairs follow the points, whatever their order
    order = [8, 0, 3, 1, 2, 4, 5, 6, 7]
    y_perm = y.reshape(len(y), 9, 2)[:, order].reshape(len(y), -1)
    inv = {old: new for new, old in enumerate(order)}
    assert set(infer_flip_pairs(y_perm)) == {tuple(sorted((inv[i], inv[j]))) for i, j in ((3, 4), (5, 6), (7, 8))}
    # 9 points match no single schema, so the estimator reads the pairs off the data
    assert small(max_epochs=1).fit(X, y).flip_pairs_ == ((3, 4), (5, 6), (7, 8))
    assert small(max_epochs=1, flip_pairs=[]).fit(X, y).flip_pairs_ == ()


def test_dataloader_workers_give_the_same_model(data):
    X, y = data
    p0 = small(augment=True, max_epochs=1).fit(X[:48], y[:48]).predict(X[:4])
    p2 = small(augment=True, max_epochs=1, num_workers=2).fit(X[:48], y[:48]).predict(X[:4])
    np.testing.assert_array_equal(p0, p2)


# ----------------------------------------------------------------------------- input vocabulary
def test_single_colour_image_points_to_x_none(data):
    X, y = data
    model = small().fit(X, y)
    single = np.repeat(X[0][..., None], 3, axis=-1)  # one (H, W, 3) image
    with pytest.raises(ValueError, match=r"X\[None\]"):
        model.predict(single)
    with pytest.raises(ValueError, match=r"X\[None\]"):
        small().fit(single, y[:1])
    with pytest.raises(ValueError, match="3 channel"):  # a colour stack for a gray-fitted model is refused too
        model.predict(single[None])
    assert model.predict(X[0][None]).shape == (1, y.shape[1])


def test_one_pixel_rule_uint8_and_float_scales_predict_alike(data):
    X, y = data
    X8 = X
    assert X8.dtype == np.uint8
    model = small().fit(X8, y)
    assert model.pixel_scale_ == 255.0
    ref = model.predict(X8[:6])
    np.testing.assert_allclose(model.predict(X8[:6].astype(np.float64)), ref, atol=1e-4)   # floats on 0-255
    np.testing.assert_allclose(model.predict(X8[:6] / 255.0), ref, atol=1e-4)              # floats on 0-1
    with pytest.raises(ValueError, match="0-255 scale"):
        model.predict(X8[:6].astype(np.uint16) * 256)


def test_dataframe_column_names_become_keypoint_and_feature_names(data):
    pd = pytest.importorskip("pandas")
    X, y = data
    y_df = pd.DataFrame(y, columns=["tip_x", "tip_y", "base_x", "base_y"])
    model = small().fit(X, y_df)
    assert model.keypoint_names_ == ["tip", "base"]
    assert list(small(keypoint_names=["a", "b"]).fit(X, y_df).keypoint_names_) == ["a", "b"]
    assert small().fit(X, pd.DataFrame(y)).keypoint_names_ is None  # unnamed columns: no names invented

    flat = X.reshape(len(X), -1)
    X_df = pd.DataFrame(flat, columns=[f"px{i}" for i in range(flat.shape[1])])
    fitted = small().fit(X_df, y)
    assert list(fitted.feature_names_in_[:2]) == ["px0", "px1"]
    renamed = X_df.rename(columns={"px0": "other"})
    with pytest.raises(ValueError, match="feature names"):
        fitted.predict(renamed)
    with pytest.warns(UserWarning, match="feature names"):  # scikit-learn's warning for a plain array
        from_array = fitted.predict(flat)
    np.testing.assert_allclose(fitted.predict(X_df), from_array)


def test_score_checks_y_like_fit(fitted, data):
    X, y = data
    for bad, exc, match in [(y[:, :2], ValueError, "2 target columns but the model was fitted on 4"),
                            (y[:-1], ValueError, "inconsistent numbers of samples"),
                            (None, ValueError, "requires y"),
                            (np.where(y > 0, np.inf, y), ValueError, "infinity"),
                            (y.astype(str), TypeError, "y must hold numbers")]:
        with pytest.raises(exc, match=match):
            fitted.score(X, bad)
    assert np.isfinite(fitted.score(X, y))
