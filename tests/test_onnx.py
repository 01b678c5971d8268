"""skkp.onnx: export to ONNX and predict on onnxruntime with the estimators' results."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import skkp.onnx  # noqa: E402
from skkp import FaceParser, MaskEdgeKeypoints, NoseKeypointRegressor  # noqa: E402
from skkp.datasets import make_noses  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURES = ("heatmap", "inception", "cnn", "mlp")


def _resized(images, shape):
    """The same images at another (H, W) (so not the network's size)."""
    return np.stack([cv2.resize(im, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR) for im in images])


@pytest.fixture(scope="module")
def noses():
    X, y = make_noses(48, image_size=32, random_state=0)
    return X, y


@pytest.fixture(scope="module")
def exported(noses, tmp_path_factory, one_torch_thread):
    """{architecture: (estimator, path)} for each architecture, fitted on 32x32 noses."""
    X, y = noses
    folder = tmp_path_factory.mktemp("onnx")
    out = {}
    for arch in ARCHITECTURES:
        model = NoseKeypointRegressor(architecture=arch, image_size=32, max_epochs=1, batch_size=16,
                                      random_state=0, device="cpu").fit(X, y)
        out[arch] = model, skkp.onnx.export(model, folder / f"{arch}.onnx")
    return out


@pytest.fixture(scope="module")
def parser(tmp_path_factory, one_torch_thread):
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, size=(32, 40, 48, 3)).astype(np.uint8)
    y = (X[..., 0] > 127).astype(np.uint8)
    est = FaceParser(image_size=32, width=0.125, classes=["bg", "fg"], max_epochs=1, batch_size=4,
                     random_state=0, device="cpu").fit(X, y)
    path = skkp.onnx.export(est, tmp_path_factory.mktemp("onnx_parser") / "parser.onnx")
    return est, path, X


# ----------------------------------------------------------------------------- keypoints
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_keypoint_predictions_match_the_estimator(exported, noses, arch):
    model, path = exported[arch]
    m = skkp.onnx.load(path)
    assert isinstance(m, skkp.onnx.OnnxKeypointModel)
    X = _resized(noses[0][:20], (40, 45))  # another size than image_size=32: resized, mapped back
    for layout in (X, X[:, None].astype(np.float32) / 255.0):  # uint8 (n, H, W); float 0-1 (n, 1, H, W)
        got, want = m.predict(layout), model.predict(layout)
        assert got.shape == want.shape == (20, 14) and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)
    np.testing.assert_allclose(m.predict(noses[0][:5]), model.predict(noses[0][:5]), rtol=0, atol=1e-3)


@pytest.mark.parametrize("arch", ["heatmap", "mlp"])
def test_dynamic_batch(exported, noses, arch):
    model, path = exported[arch]
    m = skkp.onnx.load(path)
    assert m.session.get_inputs()[0].shape[0] == "batch"
    X = _resized(noses[0][:7], (36, 36))
    full = m.predict(X)
    np.testing.assert_allclose(full, model.predict(X), rtol=0, atol=1e-3)
    np.testing.assert_allclose(m.predict(X[3:4]), full[3:4], rtol=0, atol=1e-4)
    assert m.predict(X[:1]).shape == (1, 14)


def test_mlp_on_a_feature_matrix(tmp_path):
    rng = np.random.RandomState(0)
    F = rng.normal(3.0, 2.0, size=(60, 10))
    for y in (F[:, :2] @ np.array([1.0, -2.0]) + 5.0, F[:, :3] * 10.0):  # (n,) and (n, 3) targets
        model = NoseKeypointRegressor(architecture="mlp", max_epochs=2, random_state=0, device="cpu").fit(F, y)
        m = skkp.onnx.load(skkp.onnx.export(model, tmp_path / "features.onnx"))
        assert m.input_kind_ == "features" and m.n_features_in_ == 10
        got, want = m.predict(F[:7]), model.predict(F[:7])
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
        with pytest.raises(ValueError, match="X has 9 features, but OnnxKeypointModel is expecting 10"):
            m.predict(F[:, :9])
        with pytest.raises(ValueError, match="X holds images but the model was fitted on features"):
            m.predict(np.zeros((2, 32, 32)))


def test_feature_names_of_a_dataframe(tmp_path):
    pd = pytest.importorskip("pandas")
    rng = np.random.RandomState(1)
    F = pd.DataFrame(rng.normal(size=(40, 4)), columns=["a", "b", "c", "d"])
    model = NoseKeypointRegressor(architecture="mlp", max_epochs=1, random_state=0, device="cpu").fit(F, F["a"] * 2)
    m = skkp.onnx.load(skkp.onnx.export(model, tmp_path / "df.onnx"))
    assert list(m.feature_names_in_) == ["a", "b", "c", "d"]
    np.testing.assert_allclose(m.predict(F), model.predict(F), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="feature names should match"):
        m.predict(F.rename(columns={"a": "z"}))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        m.predict(F.to_numpy())


def test_networks_elsewhere_are_exported_from_a_cpu_float32_copy():
    import torch

    net = torch.nn.Linear(2, 2).double()
    copy = skkp.onnx._cpu_module(net, torch)
    assert copy is not net and copy.weight.dtype == torch.float32 and net.weight.dtype == torch.float64
    cpu = torch.nn.Linear(2, 2)
    assert skkp.onnx._cpu_module(cpu, torch) is cpu


def test_keypoints_as_n_k_2_and_colour_images(noses, tmp_path):
    X, y = noses
    colour = np.repeat(X[..., None], 3, axis=-1)
    model = NoseKeypointRegressor(architecture="mlp", image_size=32, max_epochs=1, random_state=0,
                                  device="cpu").fit(colour, y.reshape(len(y), -1, 2))
    m = skkp.onnx.load(skkp.onnx.export(model, tmp_path / "k2.onnx"))
    Xc = _resized(colour[:6], (48, 40))
    got = m.predict(Xc)
    assert got.shape == (6, 7, 2)
    np.testing.assert_allclose(got, model.predict(Xc), rtol=0, atol=1e-3)
    np.testing.assert_allclose(m.predict(np.moveaxis(Xc, -1, 1)), got, rtol=0, atol=1e-9)  # (n, 3, H, W)
    with pytest.raises(ValueError, match="1 channel.*3 channel"):
        m.predict(X[:2])


def test_opset_and_metadata_round_trip(exported, noses, tmp_path):
    model, _ = exported["cnn"]
    path = skkp.onnx.export(model, str(tmp_path / "cnn17.onnx"), opset=17)
    assert isinstance(path, Path) and path.is_file()
    proto = onnx.load(str(path))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    props = {p.key: p.value for p in proto.metadata_props}
    meta = json.loads(props[skkp.onnx.METADATA_KEY])
    assert meta["format"] == "skkp-onnx" and meta["estimator"] == "NoseKeypointRegressor"
    assert meta["skkp_version"] == skkp.__version__ and meta["opset"] == 17
    assert meta["image_size"] == 32 and meta["architecture"] == "cnn" and meta["input_kind"] == "image"
    assert np.float32(meta["x_mean"]) == np.float32(model.frame_.x_mean)
    assert np.float32(meta["x_std"]) == np.float32(model.frame_.x_std)
    for key in ("pixel_scale", "n_channels_in", "y_ndim", "n_keypoints", "keypoint_names", "n_outputs",
                "n_features_in"):
        assert meta[key] == getattr(model, key + "_"), key
    assert meta["image_shape"] == list(model.image_shape_)
    assert meta["flip_pairs"] == [list(p) for p in model.flip_pairs_]
    assert meta["graph"]["input"]["name"] == "image" and meta["graph"]["output"]["name"] == "units"
    m = skkp.onnx.load(path)
    assert m.metadata == meta and m.keypoint_names_ == model.keypoint_names_
    X = _resized(noses[0][:4], (50, 50))
    np.testing.assert_allclose(m.predict(X), model.predict(X), rtol=0, atol=1e-3)


def test_export_leaves_the_estimator_unchanged(exported, noses):
    model, path = exported["inception"]
    before = model.predict(noses[0][:4])
    model.net_.module_.train()
    skkp.onnx.export(model, path)
    assert model.net_.module_.training  # its mode is restored
    model.net_.module_.eval()
    np.testing.assert_array_equal(model.predict(noses[0][:4]), before)


def test_predictor_without_torch(exported, noses, tmp_path):
    """Loading and predicting import neither torch nor skorch."""
    model, path = exported["heatmap"]
    X = _resized(noses[0][:3], (40, 40))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "want.npy", model.predict(X))
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        import skkp.onnx
        m = skkp.onnx.load({str(path)!r})
        got = m.predict(np.load({str(tmp_path / "X.npy")!r}))
        assert np.abs(got - np.load({str(tmp_path / "want.npy")!r})).max() < 1e-3
        loaded = sorted(k for k in sys.modules if k.split(".")[0] in ("torch", "skorch"))
        assert not loaded, loaded
        print("ok")
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


# ----------------------------------------------------------------------------- parser
def test_parser_matches_the_estimator(parser):
    est, path, X = parser
    m = skkp.onnx.load(path)
    assert isinstance(m, skkp.onnx.OnnxFaceParser)
    assert m.class_names_ == ["bg", "fg"] and m.n_classes_ == 2
    for images in (X[:7], _resized(X[:3], (37, 29))[..., 0], X[:1, :32, :32]):  # RGB, gray, network size
        want, got = est.predict(images), m.predict(images)
        assert got.shape == want.shape and got.dtype == np.uint8
        assert (got == want).mean() >= 0.999
        p_want, p_got = est.predict_proba(images), m.predict_proba(images)
        assert p_got.shape == p_want.shape and p_got.dtype == np.float32
        np.testing.assert_allclose(p_got, p_want, rtol=0, atol=1e-4)
    probs = est.predict_proba(X[:7])
    assert 0.01 < probs.std() and ((probs > 1e-4) & (probs < 1 - 1e-4)).mean() > 0.5  # not saturated
    np.testing.assert_array_equal(m.transform(X[:2]), m.predict(X[:2]))
    assert m.predict(X[:1]).shape == (1, 40, 48)  # batch 1 of a graph with a dynamic batch


def test_a_top_down_parser_exports_with_its_stride_2_head(parser, tmp_path):
    _, _, X = parser
    y = (X[..., 0] > 127).astype(np.uint8)
    est = FaceParser(image_size=32, width=0.125, classes=["bg", "fg"], max_epochs=1, batch_size=4,
                     random_state=0, device="cpu", top_down=True).fit(X[:8], y[:8])
    m = skkp.onnx.load(skkp.onnx.export(est, tmp_path / "td.onnx"))
    np.testing.assert_allclose(m.predict_proba(X[:4]), est.predict_proba(X[:4]), rtol=0, atol=1e-4)


def test_parser_metadata(parser):
    est, path, _ = parser
    meta = skkp.onnx.load(path).metadata
    assert meta["estimator"] == "FaceParser" and meta["class_names"] == est.class_names_
    assert meta["image_size"] == 32 and meta["n_classes"] == 2
    assert meta["graph"]["input"] == {**meta["graph"]["input"], "name": "image", "dtype": "uint8",
                                      "shape": ["batch", 32, 32, 3]}
    np.testing.assert_allclose(meta["mean"], [0.485, 0.456, 0.406])


def test_raw_onnxruntime_use_of_the_parser_graph(parser):
    """The graph alone (as a user without skkp would run it) gives the estimator's logits."""
    import torch

    est, path, X = parser
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = X[:3, :32, :32]
    logits = session.run(None, {"image": images})[0]
    with torch.no_grad():
        want = next(iter(est._network_logits(images)))[1].numpy()
    np.testing.assert_allclose(logits, want, rtol=0, atol=1e-4)


# ----------------------------------------------------------------------------- errors
def test_export_errors(exported, tmp_path):
    model, _ = exported["mlp"]
    with pytest.raises(TypeError, match="estimator must be a fitted skkp"):
        skkp.onnx.export(object(), tmp_path / "x.onnx")
    with pytest.raises(TypeError, match="MaskEdgeKeypoints"):
        skkp.onnx.export(MaskEdgeKeypoints(), tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="not fitted"):
        skkp.onnx.export(NoseKeypointRegressor(), tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="not fitted"):
        skkp.onnx.export(FaceParser(), tmp_path / "x.onnx")
    with pytest.raises(TypeError, match="path must be a str or path-like"):
        skkp.onnx.export(model, 3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        skkp.onnx.export(model, tmp_path / "no" / "x.onnx")
    with pytest.raises(TypeError, match="opset must be an int"):
        skkp.onnx.export(model, tmp_path / "x.onnx", opset="17")
    with pytest.raises(ValueError, match="opset must be >= 13"):
        skkp.onnx.export(model, tmp_path / "x.onnx", opset=11)
    with pytest.raises(ValueError, match="opset must be at most"):
        skkp.onnx.export(model, tmp_path / "x.onnx", opset=99)
    assert not (tmp_path / "x.onnx").exists()


def test_export_refuses_a_graph_that_disagrees(exported, tmp_path, monkeypatch):
    monkeypatch.setattr(skkp.onnx, "_VERIFY_TOL", -1.0)
    with pytest.raises(RuntimeError, match="disagrees"):
        skkp.onnx.export(exported["mlp"][0], tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_load_errors(exported, tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "plain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "plain.onnx"))
    with pytest.raises(ValueError, match="not an skkp ONNX file"):
        skkp.onnx.load(tmp_path / "plain.onnx")
    (tmp_path / "text.onnx").write_text("not a model")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        skkp.onnx.load(tmp_path / "text.onnx")
    with pytest.raises(FileNotFoundError):
        skkp.onnx.load(tmp_path / "missing.onnx")
    with pytest.raises(TypeError, match="path must be"):
        skkp.onnx.load(None)
    path = exported["cnn"][1]
    with pytest.raises(TypeError, match="providers must be"):
        skkp.onnx.load(path, providers="CPUExecutionProvider")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="OnnxFaceParser runs FaceParser"):
        skkp.onnx.OnnxFaceParser(session)
    with pytest.raises(TypeError, match="onnxruntime.InferenceSession"):
        skkp.onnx.OnnxKeypointModel(str(path))
    assert skkp.onnx.OnnxKeypointModel(session).n_outputs_ == 14
    proto = onnx.load(str(path))
    meta = json.loads(proto.metadata_props[0].value)
    for change, message in (({"format_version": 99}, "upgrade skkp"), ({"format": "other"}, "not skkp's"),
                            ({"estimator": "Other"}, "cannot run")):
        proto.metadata_props[0].value = json.dumps({**meta, **change})
        onnx.save(proto, str(tmp_path / "changed.onnx"))
        with pytest.raises(ValueError, match=message):
            skkp.onnx.load(tmp_path / "changed.onnx")


def test_predict_errors_are_the_estimators(exported, parser, noses):
    model, path = exported["cnn"]
    m = skkp.onnx.load(path)
    colour = np.repeat(noses[0][:2, ..., None], 3, axis=-1)
    for bad in (colour, np.zeros((2, 10, 10)), np.zeros(5), "images"):
        with pytest.raises((TypeError, ValueError)) as want:
            model.predict(bad)
        with pytest.raises(want.type) as got:
            m.predict(bad)
        assert str(got.value).replace("OnnxKeypointModel", "NoseKeypointRegressor") == str(want.value)
    with pytest.raises(ValueError, match=r"must be images of shape \(n, H, W, 3\)"):
        skkp.onnx.load(parser[1]).predict(np.zeros((2, 64)))



def test_missing_onnxruntime_names_the_extra(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "skkp\[onnx\]"'):
        skkp.onnx.load(exported["cnn"][1])
    with pytest.raises(ImportError, match=r'pip install "skkp\[onnx\]"'):
        skkp.onnx.export(exported["mlp"][0], exported["mlp"][1])


def test_fallback_to_the_torch_export_exporter(exported, noses, tmp_path, monkeypatch):
    """When the TorchScript exporter fails (or is gone), the torch.export-based one is used."""
    pytest.importorskip("onnxscript")
    import torch

    real = torch.onnx.export

    def no_torchscript(*args, dynamo=True, **kwargs):
        if not dynamo:
            raise RuntimeError("TorchScript exporter unavailable")
        return real(*args, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_torchscript)
    model, _ = exported["mlp"]
    m = skkp.onnx.load(skkp.onnx.export(model, tmp_path / "dynamo.onnx"))
    assert m.metadata["exporter"] == "dynamo"
    X = _resized(noses[0][:7], (40, 40))
    np.testing.assert_allclose(m.predict(X), model.predict(X), rtol=0, atol=1e-3)
    np.testing.assert_allclose(m.predict(X[:1]), model.predict(X[:1]), rtol=0, atol=1e-3)


def test_to_onnx_method_writes_the_same_model(exported, parser, noses, tmp_path):
    model, model_path = exported["cnn"]
    est, parser_path, X_parser = parser
    for estimator, path, X in ((model, model_path, noses[0][:4]), (est, parser_path, X_parser[:2])):
        written = estimator.to_onnx(tmp_path / f"{type(estimator).__name__}.onnx")
        np.testing.assert_array_equal(skkp.onnx.load(written).predict(X), skkp.onnx.load(path).predict(X))
