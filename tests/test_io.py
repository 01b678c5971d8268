"""skkp.save / skkp.load: the safe file format, round trips, and tampered files."""
import io
import json
import pickle
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

import skkp
from skkp import FaceParser, MaskEdgeKeypoints, NoseKeypointRegressor
from skkp.datasets import make_faces, make_noses

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def noses():
    return make_noses(40, image_size=32, random_state=0)


@pytest.fixture(scope="module")
def models(noses):
    X, y = noses
    faces, labels = make_faces(8, 40, random_state=0)
    keypoints = NoseKeypointRegressor(architecture="cnn", image_size=32, max_epochs=2, random_state=0,
                                      device="cpu").fit(X, y)
    parser = FaceParser(image_size=32, width=0.125, max_epochs=1, batch_size=4, random_state=0,
                        device="cpu").fit(faces, labels)
    edges = MaskEdgeKeypoints(n_points=5, parts=["nose", "skin"]).fit(labels)
    return {"keypoints": (keypoints, X), "parser": (parser, faces), "edges": (edges, labels)}


@pytest.mark.parametrize("name", ["keypoints", "parser", "edges"])
def test_round_trip_gives_the_same_predictions_and_state(models, name, tmp_path):
    est, X = models[name]
    path = skkp.save(est, tmp_path / "m.skkp")
    again = skkp.load(path)
    assert type(again) is type(est) and again.get_params() == est.get_params()
    predict = (lambda e: e.transform(X)) if name == "edges" else (lambda e: e.predict(X[:4]))
    np.testing.assert_array_equal(predict(again), predict(est))
    if name != "edges":
        assert again.history_[:, "train_loss"] == est.history_[:, "train_loss"]
        assert again.device_ == "cpu"
    for key, value in vars(est).items():
        if key.endswith("_") and key != "net_":
            assert type(getattr(again, key)) is type(value), key


def test_keypoint_attributes_come_back_with_their_types(models, tmp_path):
    est, _ = models["keypoints"]
    again = skkp.load(skkp.save(est, tmp_path / "k.skkp"))
    assert again.flip_pairs_ == est.flip_pairs_ and isinstance(again.image_shape_, tuple)
    assert again.keypoint_names_ == est.keypoint_names_
    np.testing.assert_array_equal(again.frame_.x_mean, est.frame_.x_mean)
    assert again.score(*make_noses(8, image_size=32, random_state=1)) == pytest.approx(
        est.score(*make_noses(8, image_size=32, random_state=1)))


def test_unfitted_estimator_round_trips_its_parameters(tmp_path):
    est = FaceParser(image_size=64, classes=["bg", "skin"], scale_range=(0.8, 1.2))
    again = skkp.load(skkp.save(est, tmp_path / "p.skkp"))
    assert again.get_params() == est.get_params() and not hasattr(again, "net_")


def test_loads_in_a_fresh_cpu_process_without_unpickling(models, tmp_path):
    est, X = models["keypoints"]
    path = skkp.save(est, tmp_path / "k.skkp")
    np.save(tmp_path / "X.npy", X[:4])
    code = textwrap.dedent(f"""
        import sys, numpy as np
        import skkp, skkp.io, skkp.keypoints, skkp.parsing, skkp.edges
        def refuse(event, args):  # every unpickler looking up a class or function raises this event
            if event == "pickle.find_class":
                raise AssertionError(f"skkp.load unpickled {{args}}")
        sys.addaudithook(refuse)
        est = skkp.load({str(path)!r}, device="cpu")
        np.save({str(tmp_path / 'p.npy')!r}, est.predict(np.load({str(tmp_path / 'X.npy')!r})))
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env={**_python_env(),
                                                                              "CUDA_VISIBLE_DEVICES": ""})
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), est.predict(X[:4]))


def _python_env():
    import os

    return {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES",)}


def test_weights_stored_once(models, tmp_path):
    est, _ = models["keypoints"]
    size = skkp.save(est, tmp_path / "k.skkp").stat().st_size
    params = sum(p.numel() * 4 for p in est.net_.module_.parameters())
    assert params < size < 1.2 * params + 200_000  # weights (and BatchNorm buffers) once, no optimiser state


@pytest.mark.parametrize("net_kwargs, heads", [(None, "study"), ({"module__head_stages": (2, 3, 4)}, "study"),
                                               ({"module__head_stages": [1, 3, 4]}, (1, 3, 4))])
def test_parsers_saved_before_heads_existed_load_with_the_heads_they_were_trained_with(tmp_path, net_kwargs, heads):
    """A file from before ``heads`` has no such parameter and the network of its time (three
    heads, or what net_kwargs module__head_stages chose): it loads with those, not today's default."""
    faces, labels = make_faces(4, 40, random_state=0)
    old = FaceParser(image_size=32, width=0.125, max_epochs=1, batch_size=4, random_state=0, device="cpu",
                     heads=heads, net_kwargs=net_kwargs, top_down=False).fit(faces, labels)
    path = skkp.save(old, tmp_path / "old.skkp")

    def without_heads(doc):
        del doc["params"]["heads"], doc["params"]["boundary_weight"], doc["params"]["top_down"]
        return doc

    _rewrite(path, document=without_heads)
    again = skkp.load(path)
    assert again.heads == heads and again.head_stages_ == old.head_stages_
    assert again.boundary_weight == 0.0  # trained, before the parameter existed, with the plain OHEM loss
    assert again.top_down is False and again.net_.module_.top_down is None
    np.testing.assert_array_equal(again.predict(faces), old.predict(faces))
    np.testing.assert_array_equal(again.predict_proba(faces), old.predict_proba(faces))
    assert skkp.load(skkp.save(again, tmp_path / "new.skkp")).heads == heads


def test_mlps_saved_before_input_standardisation_load_without_it(noses, tmp_path):
    """A file from before ``input_standardised_`` holds an MLP trained on raw pixels: it loads with
    that network, not with today's per-image standardisation, and predicts what it did."""
    X, y = noses
    old = NoseKeypointRegressor(architecture="mlp", image_size=32, max_epochs=2, random_state=0, device="cpu",
                                net_kwargs={"module__standardise_input": False}).fit(X, y)
    assert old.input_standardised_ is False
    path = skkp.save(old, tmp_path / "old.skkp")

    def as_before(doc):
        doc["params"]["net_kwargs"] = None
        del doc["fitted"]["input_standardised_"]
        return doc

    _rewrite(path, document=as_before)
    again = skkp.load(path)
    assert again.net_.module_.standardise_input is False
    np.testing.assert_array_equal(again.predict(X), old.predict(X))
    new = skkp.load(skkp.save(NoseKeypointRegressor(architecture="mlp", image_size=32, max_epochs=1, random_state=0,
                                                    device="cpu").fit(X, y), tmp_path / "new.skkp"))
    assert new.input_standardised_ is True and new.net_.module_.standardise_input is True


def test_a_parser_round_trips_its_heads(models, tmp_path):
    est, _ = models["parser"]
    assert est.heads == "stride4" and est.head_stages_ == (1, 2, 3, 4)
    again = skkp.load(skkp.save(est, tmp_path / "p.skkp"))
    assert again.heads == "stride4" and len(again.net_.module_.heads) == 4


def test_a_top_down_parser_round_trips_its_head(tmp_path):
    faces, labels = make_faces(4, 40, random_state=0)
    est = FaceParser(image_size=32, width=0.125, max_epochs=1, batch_size=4, random_state=0, device="cpu",
                     top_down=True).fit(faces, labels)
    again = skkp.load(skkp.save(est, tmp_path / "td.skkp"))
    assert again.top_down is True and again.net_.module_.top_down is not None
    np.testing.assert_array_equal(again.predict_proba(faces), est.predict_proba(faces))


# ----------------------------------------------------------------------------- tampered files
def _rewrite(path, document=None, arrays=None):
    with zipfile.ZipFile(path) as archive:
        doc = json.loads(archive.read("skkp.json"))
        raw = archive.read("arrays.npz")
    if document is not None:
        doc = document(doc)
    if arrays is not None:
        raw = arrays(raw)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("skkp.json", json.dumps(doc))
        archive.writestr("arrays.npz", raw)


class _Boom:
    def __reduce__(self):
        return (print, ("EXECUTED",))


def test_a_pickle_renamed_to_skkp_is_refused_and_not_run(tmp_path, capsys):
    path = tmp_path / "evil.skkp"
    path.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(ValueError, match="not an skkp model file"):
        skkp.load(path)
    assert "EXECUTED" not in capsys.readouterr().out


def test_an_object_array_inside_is_refused_and_not_run(models, tmp_path, capsys):
    est, _ = models["keypoints"]
    path = skkp.save(est, tmp_path / "k.skkp")

    def with_pickled_object(raw):
        with np.load(io.BytesIO(raw)) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays["a0"] = np.array([_Boom()], dtype=object)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    _rewrite(path, arrays=with_pickled_object)
    with pytest.raises(ValueError, match="objects are never unpickled"):
        skkp.load(path)
    assert "EXECUTED" not in capsys.readouterr().out


@pytest.mark.parametrize("change, match", [
    (lambda d: {**d, "class": "os.system"}, "names the class 'os.system'"),
    (lambda d: {**d, "class": "Pipeline"}, "may only hold one of"),
    (lambda d: {**d, "format_version": 99}, "format 99.*upgrade skkp"),
    (lambda d: {**d, "format": "other"}, "not an skkp model file"),
    (lambda d: {**d, "fitted": {**d["fitted"], "__class__": 1}}, "invalid attribute name"),
    (lambda d: {**d, "weights": {**d["weights"], "head.0.weight": d["weights"]["features.0.weight"]}},
     "weights that do not fit"),
    (lambda d: {**d, "weights": dict(list(d["weights"].items())[1:])}, "weights that do not fit"),
])
def test_tampered_json_gives_a_clear_error(models, tmp_path, change, match):
    est, _ = models["keypoints"]
    path = skkp.save(est, tmp_path / "k.skkp")
    _rewrite(path, document=change)
    with pytest.raises(ValueError, match=match):
        skkp.load(path)


def test_truncated_file_gives_a_clear_error(models, tmp_path):
    est, _ = models["keypoints"]
    path = skkp.save(est, tmp_path / "k.skkp")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not an skkp model file|cannot be read|damaged"):
        skkp.load(path)
    with pytest.raises(ValueError, match="not a file"):
        skkp.load(tmp_path / "missing.skkp")


def test_what_the_format_cannot_hold_is_a_type_error(noses, tmp_path):
    X, y = noses
    est = NoseKeypointRegressor(architecture="mlp", image_size=32, max_epochs=1, device="cpu", random_state=0,
                                net_kwargs={"callbacks": [Callback()]}).fit(X, y)
    with pytest.raises(TypeError, match="parameter net_kwargs.*callback"):
        skkp.save(est, tmp_path / "x.skkp")
    with pytest.raises(TypeError, match="one of skkp's"):
        skkp.save(object(), tmp_path / "x.skkp")


def test_loading_leaves_the_global_torch_generator_alone(models, tmp_path):
    est, _ = models["parser"]
    path = skkp.save(est, tmp_path / "p.skkp")
    state = torch.get_rng_state().clone()
    skkp.load(path)
    assert torch.equal(torch.get_rng_state(), state)


# ----------------------------------------------------------------------------- estimators inside estimators
def test_face_keypoint_regressor_round_trips_with_its_regressor_detector_and_calibration(noses, tmp_path):
    from sklearn.frozen import FrozenEstimator

    from skkp.detection import BoxCalibration, FaceDetector
    from skkp.faces import FaceKeypointRegressor

    X, y = noses
    photos = np.full((len(X), 70, 90), 30, np.uint8)
    photos[:, 10:42, 40:72] = X
    points = y.reshape(len(X), -1, 2) + [40, 10]
    inner = NoseKeypointRegressor(architecture="cnn", image_size=32, max_epochs=1, random_state=0, device="cpu")
    with pytest.warns(UserWarning, match="identity"):  # the cascade finds no face in these pictures
        model = FaceKeypointRegressor(inner, detector=FaceDetector("skimage", min_size=30), size=32,
                                      random_state=0).fit(photos, points)
    model.calibration_ = BoxCalibration(dx=0.01, dy=0.1, scale_x=0.9, scale_y=0.8, n_boxes=7)  # as if learnt
    again = skkp.load(skkp.save(model, tmp_path / "face.skkp"))
    assert type(again) is FaceKeypointRegressor and again.calibration_ == model.calibration_
    assert again.detector_.get_params() == model.detector_.get_params() and again.y_ndim_ == 3
    assert again.get_params()["regressor__max_epochs"] == 1 and not hasattr(again.regressor, "net_")
    boxes = np.tile([40.0, 10, 32, 32], (4, 1))
    np.testing.assert_array_equal(again.predict(photos[:4], boxes=boxes), model.predict(photos[:4], boxes=boxes))
    # a fitted model in a FrozenEstimator is both the parameter and the fitted regressor: stored once
    frozen = FaceKeypointRegressor.from_regressor(model.regressor_, detector="skimage", calibration=model.calibration_)
    path = skkp.save(frozen, tmp_path / "frozen.skkp")
    assert path.stat().st_size < 1.1 * (tmp_path / "face.skkp").stat().st_size
    back = skkp.load(path)
    assert isinstance(back.regressor_, FrozenEstimator) and back.regressor_ is back.regressor
    np.testing.assert_array_equal(back.predict(photos[:4], boxes=boxes), frozen.predict(photos[:4], boxes=boxes))


def test_what_a_face_model_cannot_hold_is_a_type_error_and_tampering_a_value_error(models, tmp_path):
    from skkp.faces import FaceKeypointRegressor

    est, _ = models["keypoints"]
    with pytest.raises(TypeError, match="parameter detector is a function"):
        skkp.save(FaceKeypointRegressor.from_regressor(est, detector=lambda image: []), tmp_path / "x.skkp")
    with pytest.raises(TypeError, match="parameter regressor is a _NotSkkp.*skkp estimators"):
        skkp.save(FaceKeypointRegressor(regressor=_NotSkkp()), tmp_path / "x.skkp")
    path = skkp.save(FaceKeypointRegressor.from_regressor(est, detector="skimage"), tmp_path / "f.skkp")

    def foreign_inner(doc):
        doc["fitted"]["detector_"]["estimator"]["class"] = "subprocess.Popen"
        return doc

    _rewrite(path, document=foreign_inner)
    with pytest.raises(ValueError, match="names the class 'subprocess.Popen'"):
        skkp.load(path)


class _NotSkkp:
    def fit(self, X, y):
        return self

    def predict(self, X):
        return X

    def get_params(self, deep=True):
        return {}
