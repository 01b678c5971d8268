"""The training recipe of the direct-regression networks (skkp._recipes): they must learn, not only run.

Before the recipe was fixed, cnn and inception stayed at the mean predictor (ratios 0.91 and 1.05
below, where these tests ask for 1.8), the mlp reached 1.89 where the test asks for 2.05, and
after one epoch all three were 2-4 times worse than the mean predictor.
"""
import numpy as np
import pytest
import torch

from skkp import NoseKeypointRegressor
from skkp._keypoint_data import KeypointDataset, KeypointFrame
from skkp._recipes import ARCHITECTURE_RECIPES, DecoupledL2Adam, l2_param_groups
from skkp._validation import check_images
from skkp.datasets import make_noses
from skkp.metrics import mean_absolute_error_px
from skkp.nets import ARCHITECTURES, InceptionKeypointNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def noses32():
    X, y = make_noses(512, view="frontal", image_size=32, random_state=0)
    X_test, y_test = make_noses(100, view="frontal", image_size=32, random_state=1)
    return X, y, X_test, y_test


# (training images, epochs, least improvement over the mean predictor); measured after the fix at
# 2.22x (cnn), 2.50x (inception), 2.21x (mlp), before it at 0.91x, 1.05x, 1.89x. About 3, 8, 8 s on one core.
SMALL_FITS = {"cnn": (256, 8, 1.8), "inception": (256, 8, 1.8), "mlp": (512, 60, 2.05)}


@pytest.mark.parametrize("arch", sorted(SMALL_FITS))
def test_direct_regression_networks_beat_the_mean_predictor(noses32, arch):
    X, y, X_test, y_test = noses32
    n, epochs, factor = SMALL_FITS[arch]
    mean_mae = mean_absolute_error_px(y_test, np.broadcast_to(y[:n].mean(axis=0), y_test.shape))
    model = NoseKeypointRegressor(architecture=arch, image_size=32, max_epochs=epochs, random_state=0, device="cpu")
    model.fit(X[:n], y[:n])
    mae = mean_absolute_error_px(y_test, model.predict(X_test))
    assert mean_mae / mae >= factor, f"{arch}: {mae:.2f} px against {mean_mae:.2f} px for the mean predictor"


@pytest.mark.parametrize("arch", sorted(SMALL_FITS))
def test_one_epoch_does_not_fall_below_the_mean_predictor(noses32, arch):
    """The old recipe threw the outputs far off in the first steps: after one epoch its error was
    2-4 times the mean predictor's (ratios 0.39 cnn, 0.46 inception, 0.28 mlp); now 1.0."""
    X, y, X_test, y_test = noses32
    mean_mae = mean_absolute_error_px(y_test, np.broadcast_to(y[:256].mean(axis=0), y_test.shape))
    model = NoseKeypointRegressor(architecture=arch, image_size=32, max_epochs=1, random_state=0, device="cpu")
    mae = mean_absolute_error_px(y_test, model.fit(X[:256], y[:256]).predict(X_test))
    assert mean_mae / mae >= 0.95, f"{arch}: {mae:.2f} px against {mean_mae:.2f} px for the mean predictor"


@pytest.mark.parametrize("arch, lr", [("heatmap", 2e-3), ("cnn", 5e-4), ("inception", 5e-4), ("mlp", 5e-4)])
def test_lr_auto_is_the_architectures_and_round_trips(arch, lr):
    from sklearn.base import clone

    model = NoseKeypointRegressor(architecture=arch, image_size=32, max_epochs=1, random_state=0, device="cpu")
    assert model.get_params()["lr"] == "auto" and clone(model).get_params()["lr"] == "auto"
    X, y = make_noses(16, image_size=32, random_state=0)
    assert model.fit(X, y).net_.lr == lr == ARCHITECTURE_RECIPES[arch]["lr"]
    assert model.set_params(lr=1e-3).fit(X, y).net_.lr == 1e-3


def test_every_architecture_has_a_recipe():
    assert set(ARCHITECTURE_RECIPES) == set(ARCHITECTURES)
    assert not ARCHITECTURE_RECIPES["heatmap"]["standardise_targets"]  # the default's recipe is unchanged


@pytest.mark.parametrize("arch", ["cnn", "mlp"])
def test_an_untrained_direct_regression_network_predicts_the_mean_shape(noses32, arch):
    """Standardised targets and a zero output layer: before any real step, predict gives the mean
    training shape (lr=1e-12 makes the one epoch's steps negligible)."""
    X, y, X_test, _ = noses32
    model = NoseKeypointRegressor(architecture=arch, image_size=32, max_epochs=1, lr=1e-12, random_state=0,
                                  device="cpu", augment=False).fit(X[:64], y[:64])
    np.testing.assert_allclose(model.predict(X_test[:5]), np.broadcast_to(y[:64].mean(axis=0), (5, y.shape[1])),
                               atol=1e-3)


def test_frame_standardises_targets_per_coordinate_and_maps_them_back(noses32):
    X, y, _, _ = noses32
    checked = check_images(X[:200])
    frame = KeypointFrame(24, standardise_targets=True).fit(checked, y[:200])
    t = frame.targets(y[:200], checked)
    np.testing.assert_allclose(t.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(t.std(axis=0), 1, atol=1e-4)
    np.testing.assert_allclose(frame.points(t.astype(np.float64), checked), y[:200], atol=1e-4)
    # pixels per output unit (PixelMAE, the mean predictor's MAE) follow the scaling
    np.testing.assert_allclose(frame.px_per_unit(y.shape[1]), 12.0 * np.asarray(frame.y_scale))
    # NaN (unlabelled) coordinates stay NaN and do not disturb the statistics
    y_nan = y[:200].copy()
    y_nan[::2, :2] = np.nan
    frame_nan = KeypointFrame(24, standardise_targets=True).fit(checked, y_nan)
    assert np.isfinite(frame_nan.y_offset).all() and np.isnan(frame_nan.targets(y_nan, checked)[::2, :2]).all()


def test_augmentation_moves_standardised_targets_with_the_image():
    """The dataset un-standardises, warps and re-standardises: the same points as augmenting units."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(4, 1, 32, 32)).astype(np.float32)
    units = rng.uniform(-0.5, 0.5, size=(4, 6)).astype(np.float32)
    offset, scale = units.mean(axis=0), units.std(axis=0)
    aug = {"rotation": 15.0, "scale": (0.9, 1.1), "shift": 0.05, "flip": False, "brightness": 0.0, "contrast": 0.0}
    plain = KeypointDataset(X, units, aug, (), seed=3)
    scaled = KeypointDataset(X, (units - offset) / scale, aug, (), seed=3, target_scaling=(offset, scale))
    for i in range(4):
        img_a, y_a = plain[i]
        img_b, y_b = scaled[i]
        assert torch.equal(img_a, img_b)
        np.testing.assert_allclose(y_b.numpy() * scale + offset, y_a.numpy(), atol=1e-5)


def test_keras_l2_penalty_becomes_decoupled_decay_of_2c():
    """Keras' kernel_regularizer=l2(c) adds c * ||w||^2 to the (batch-mean) loss: gradient 2c * w.
    DecoupledL2Adam takes l2_decay = 2c and applies exactly the gradient-descent step of that
    penalty, w <- w - lr * 2c * w, outside Adam's normalisation; the Adam update of the data
    gradient is the same as plain Adam's."""
    c, lr = 0.05, 0.01
    w0 = torch.tensor([0.3, -1.2, 2.0])
    penalised = w0.clone().requires_grad_(True)
    (c * penalised.pow(2).sum()).backward()
    torch.testing.assert_close(penalised.grad, 2 * c * w0)  # the Keras penalty's gradient

    groups = l2_param_groups(InceptionKeypointNet(14, image_size=32))
    assert [g[1]["l2_decay"] for g in groups] == [2 * 0.05, 2 * 0.02, 2 * 0.01]

    data_grad = torch.tensor([0.5, 0.1, -0.2])
    w = torch.nn.Parameter(w0.clone())
    opt = DecoupledL2Adam([{"params": [w], "l2_decay": 2 * c}], lr=lr)
    w.grad = data_grad.clone()
    opt.step()
    # reference: the penalty's gradient-descent step, then a plain Adam step on the data gradient
    ref = torch.nn.Parameter(w0 - lr * 2 * c * w0)
    adam = torch.optim.Adam([ref], lr=lr)
    ref.grad = data_grad.clone()
    adam.step()
    torch.testing.assert_close(w.data, ref.data)
    # no decay without l2_decay: DecoupledL2Adam is then Adam
    v, u = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    o1, o2 = DecoupledL2Adam([v], lr=lr), torch.optim.Adam([u], lr=lr)
    v.grad, u.grad = data_grad.clone(), data_grad.clone()
    o1.step()
    o2.step()
    assert torch.equal(v.data, u.data)


def test_inception_penalties_are_not_in_adams_gradient():
    """The old conversion put 2c into Adam's weight_decay (coupled): the fitted optimiser must carry
    the penalties as l2_decay only, and the user's weight_decay on every group."""
    X, y = make_noses(16, image_size=32, random_state=0)
    model = NoseKeypointRegressor(architecture="inception", image_size=32, max_epochs=1, weight_decay=1e-4,
                                  random_state=0, device="cpu").fit(X, y)
    groups = model.net_.optimizer_.param_groups
    assert isinstance(model.net_.optimizer_, DecoupledL2Adam)
    assert sorted(g.get("l2_decay", 0.0) for g in groups) == [0.0, 0.02, 0.04, 0.1]
    assert all(g["weight_decay"] == 1e-4 for g in groups)
