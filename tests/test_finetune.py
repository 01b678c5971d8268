"""Fine-tuning (``init=``), ``warm_start`` and ``partial_fit`` on both skorch estimators."""
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import cross_val_score

import skkp
from skkp import FaceParser, NoseKeypointRegressor
from skkp.datasets import make_noses

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(architecture="cnn", image_size=32, max_epochs=1, random_state=0, device="cpu")
#: a learning rate so small that training leaves the weights where they started (to 1e-6)
FROZEN = dict(lr=1e-12, lr_schedule="constant", augment=False, validation_fraction=0.0)


@pytest.fixture(scope="module")
def noses():
    return make_noses(48, image_size=32, random_state=0)


@pytest.fixture(scope="module")
def source(noses):
    X, y = noses
    # three steps: the cnn's output layer starts at zero, so its first step moves only that layer
    return NoseKeypointRegressor(**dict(TINY, max_epochs=3)).fit(X, y)


def weights(model):
    return {k: v.detach().clone() for k, v in model.net_.module_.state_dict().items()}


def test_init_from_a_fitted_estimator_starts_from_its_weights_and_leaves_it_alone(noses, source):
    X, y = noses
    before, params = weights(source), source.get_params()
    model = NoseKeypointRegressor(**TINY, **FROZEN, init=source).fit(X[:20], y[:20])
    assert model.started_from_ == "estimator"
    after = weights(model)
    for key in ("features.0.weight", "head.0.weight", "head.3.weight"):
        torch.testing.assert_close(after[key], before[key], atol=1e-6, rtol=0)
    # the input statistics of the starting network are kept
    assert model.frame_.x_mean == source.frame_.x_mean and model.frame_.x_std == source.frame_.x_std
    # the source is neither trained nor changed
    for key, value in weights(source).items():
        assert torch.equal(value, before[key])
    assert source.get_params() == params


def test_random_start_differs_from_init(noses, source):
    X, y = noses
    model = NoseKeypointRegressor(**TINY, **FROZEN).fit(X[:20], y[:20])
    assert model.started_from_ == "random"
    assert not torch.allclose(weights(model)["features.0.weight"], weights(source)["features.0.weight"])


def test_a_new_layout_gets_a_new_output_layer_and_keeps_the_rest(noses, source):
    X, y = noses
    model = NoseKeypointRegressor(**TINY, **FROZEN, init=source).fit(X[:20], y[:20, :6])  # 3 of the 7 points
    assert model.started_from_ == "estimator (new output layer)"
    new, old = weights(model), weights(source)
    torch.testing.assert_close(new["features.0.weight"], old["features.0.weight"], atol=1e-6, rtol=0)
    assert new["head.3.weight"].shape == (6, old["head.3.weight"].shape[1])
    assert model.predict(X[:2]).shape == (2, 6)


@pytest.mark.parametrize("architecture", ["heatmap", "inception", "mlp"])
def test_every_architecture_fine_tunes_into_a_new_layout(noses, architecture):
    X, y = noses
    kw = dict(TINY, architecture=architecture)
    first = NoseKeypointRegressor(**kw).fit(X, y)
    model = NoseKeypointRegressor(**kw, init=first).fit(X[:20], y[:20, :8])
    assert model.started_from_.endswith("(new output layer)")
    assert np.isfinite(model.predict(X[:3])).all()


def test_init_by_path_and_in_a_search(noses, source, tmp_path):
    X, y = noses
    path = skkp.save(source, tmp_path / "nose.skkp")
    model = NoseKeypointRegressor(**TINY, **FROZEN, init=str(path)).fit(X[:20], y[:20])
    assert model.started_from_ == str(path)
    torch.testing.assert_close(weights(model)["features.0.weight"], weights(source)["features.0.weight"],
                               atol=1e-6, rtol=0)
    # clone keeps a path as it is, so searches and cross-validation fine-tune each fold
    assert clone(model).init == str(path)
    scores = cross_val_score(NoseKeypointRegressor(**TINY, init=path), X, y, cv=2)
    assert np.isfinite(scores).all()


def test_init_by_shipped_name():
    X, y = make_noses(24, image_size=96, random_state=0)
    model = NoseKeypointRegressor(init="ibug68_nose", max_epochs=1, random_state=0, device="cpu").fit(X, y)
    assert model.started_from_ == "ibug68_nose (new output layer)"  # 9 iBUG points -> 7 frontal points


def test_bad_init_is_refused_before_training(noses, source, tmp_path):
    X, y = noses
    junk = tmp_path / "junk.skkp"
    junk.write_bytes(b"not a model")
    parser_file = skkp.save(FaceParser(), tmp_path / "parser.skkp")
    cases = [
        (dict(init="no_such_model"), ValueError, "ibug68_face"),
        (dict(init=str(junk)), ValueError, "not an skkp model file"),
        (dict(init=str(parser_file)), ValueError, "FaceParser"),
        (dict(init=NoseKeypointRegressor()), ValueError, "clone"),
        (dict(init=3), ValueError, "init"),
        (dict(init=source, architecture="mlp"), ValueError, "architecture='cnn'"),
        (dict(init=source, image_size=48), ValueError, "image_size=32"),
        (dict(init=source, net_kwargs={"module__hidden": 64}), ValueError, "head.0.weight"),
    ]
    for kwargs, error, words in cases:
        model = NoseKeypointRegressor(**{**TINY, **kwargs})
        with pytest.raises(error, match=words):
            model.fit(X, y)
        assert not hasattr(model, "net_")


def test_warm_start_continues_from_the_fitted_weights(noses):
    X, y = noses
    model = NoseKeypointRegressor(**TINY, warm_start=True).fit(X, y)
    first = weights(model)
    model.set_params(**FROZEN).fit(X, y)
    assert model.started_from_ == "warm_start"
    torch.testing.assert_close(weights(model)["head.3.weight"], first["head.3.weight"], atol=1e-6, rtol=0)
    cold = clone(model).set_params(warm_start=False).fit(X, y)
    assert cold.started_from_ == "random"


def test_warm_start_refuses_changed_shapes(noses):
    X, y = noses
    model = NoseKeypointRegressor(**TINY, warm_start=True).fit(X, y)
    with pytest.raises(ValueError, match="architecture"):
        model.set_params(architecture="mlp").fit(X, y)
    model.set_params(architecture="cnn")
    with pytest.raises(ValueError, match="warm_start keeps the output layer"):
        model.fit(X, y[:, :6])
    assert model.predict(X[:1]).shape == (1, 14)  # still the first model


def test_partial_fit_adds_one_epoch_per_call_and_fixes_the_layout(noses):
    X, y = noses
    model = NoseKeypointRegressor(**{**TINY, "max_epochs": 60})
    for start in (0, 16, 32):
        model.partial_fit(X[start:start + 16], y[start:start + 16])
    assert len(model.history_) == 3
    assert "lr_schedule" not in dict(model.net_.callbacks_)
    stats = (model.frame_.x_mean, model.frame_.x_std)
    model.partial_fit(X[:16] * 0.5, y[:16])  # other pixel statistics: the first call's are kept
    assert (model.frame_.x_mean, model.frame_.x_std) == stats
    with pytest.raises(ValueError, match="first fitted on 14"):
        model.partial_fit(X[:16], y[:16, :6])
    with pytest.raises(ValueError, match="channel"):
        model.partial_fit(np.repeat(X[:16, ..., None], 3, axis=-1), y[:16])
    with pytest.raises(ValueError, match="at least 2 labelled samples"):
        model.partial_fit(X[:1], y[:1])
    assert len(model.history_) == 4


def test_partial_fit_is_reproducible_and_continues_a_fit(noses):
    X, y = noses
    a, b = (NoseKeypointRegressor(**TINY).partial_fit(X, y).partial_fit(X, y) for _ in range(2))
    np.testing.assert_array_equal(a.predict(X[:4]), b.predict(X[:4]))
    fitted = NoseKeypointRegressor(**TINY).fit(X, y)
    before = fitted.predict(X[:4])
    fitted.partial_fit(X, y)
    assert len(fitted.history_) == 2 and "lr_schedule" not in dict(fitted.net_.callbacks_)
    assert not np.allclose(fitted.predict(X[:4]), before)


def test_save_of_an_estimator_init_warns_and_keeps_the_weights(noses, source, tmp_path):
    X, y = noses
    model = NoseKeypointRegressor(**TINY, init=source).fit(X[:20], y[:20])
    with pytest.warns(UserWarning, match="init is an estimator object"):
        path = skkp.save(model, tmp_path / "m.skkp")
    again = skkp.load(path)
    assert again.init is None and again.started_from_ == "estimator"
    np.testing.assert_allclose(again.predict(X[:3]), model.predict(X[:3]), atol=1e-5)


# ----------------------------------------------------------------------------- FaceParser
PARSER = dict(image_size=32, classes=["bg", "fg"], width=0.125, max_epochs=1, batch_size=4, random_state=0,
              device="cpu")


@pytest.fixture(scope="module")
def masks():
    rng = np.random.RandomState(0)
    X = rng.randint(0, 255, size=(8, 40, 40, 3)).astype(np.uint8)
    return X, (X[..., 0] > 127).astype(np.uint8)


def test_parser_partial_fit_and_warm_start(masks):
    X, y = masks
    parser = FaceParser(**PARSER)
    for _ in range(2):
        parser.partial_fit(X, y)
    assert len(parser.history_) == 2 and "lr_schedule" not in dict(parser.net_.callbacks_)
    assert parser.predict(X).shape == (8, 40, 40)

    warm = FaceParser(**PARSER, warm_start=True).fit(X, y)
    first = weights(warm)
    warm.set_params(lr=1e-12, augment=False).fit(X, y)
    assert warm.started_from_ == "warm_start"
    torch.testing.assert_close(weights(warm)["backbone.conv1.weight"], first["backbone.conv1.weight"],
                               atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="width"):
        warm.set_params(width=0.25).fit(X, y)
    with pytest.raises(ValueError, match="classes"):
        warm.set_params(width=0.125, classes=["a", "b"]).partial_fit(X, y)


def test_a_new_layout_starts_from_the_nearest_points_of_the_init_model(noses, source):
    X, y = noses
    subset = [3, 0, 5]                      # points 3, 0 and 5 of the 7, in another order
    cols = np.ravel([[2 * i, 2 * i + 1] for i in subset])
    model = NoseKeypointRegressor(**TINY, **FROZEN, init=source).fit(X[:20], y[:20, cols])
    # each new point starts from the source point whose predictions lie nearest on the training images
    pred = source.predict(X[:20]).reshape(20, 7, 2)
    dist = np.linalg.norm(y[:20, cols].reshape(20, 3, 1, 2) - pred[:, None], axis=-1).mean(axis=0)
    nearest = dist.argmin(axis=1)
    assert model.init_points_ == [source.keypoint_names_[j] for j in nearest]
    # ... so before any real training the new model predicts what the source predicts for those points
    near_cols = np.ravel([[2 * j, 2 * j + 1] for j in nearest])
    # (to BatchNorm's running statistics, which the epoch at lr=1e-12 still moves)
    np.testing.assert_allclose(model.predict(X[:4]), source.predict(X[:4])[:, near_cols], atol=0.5)
    assert NoseKeypointRegressor(**TINY, init=source).fit(X[:20], y[:20]).init_points_ is None
