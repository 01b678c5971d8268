"""FaceParser: augmentation, schedule, sklearn integration, determinism and errors."""
import inspect
import re
import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from skkp.augment import (IMAGENET_MEAN, color_jitter, normalize_image, random_parsing_transform,
                          scale_crop_matrix)
from skkp.datasets import CELEBAMASK_CLASSES, make_faces
from skkp._parsing_data import ParsingDataset
from skkp.parsing import FaceParser, WarmupPolyLR
from skkp.schemas import flip_lut
from skkp.resnet import ResNet18Backbone

L_EYE, R_EYE = CELEBAMASK_CLASSES.index("l_eye"), CELEBAMASK_CLASSES.index("r_eye")
TINY = dict(image_size=32, width=0.125, max_epochs=1, batch_size=4, random_state=0, device="cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny networks run fastest on one thread


@pytest.fixture(scope="module")
def faces():
    return make_faces(8, 40, random_state=0)


@pytest.fixture(scope="module")
def fitted(faces):
    X, y = faces
    return FaceParser(**TINY).fit(X, y)


# --------------------------------------------------------------------------- augmentation
def _two_eyes(size=32):
    """A face whose subject-left eye (l_eye) sits on the image right, in distinct colours."""
    labels = np.zeros((size, size), np.uint8)
    image = np.zeros((size, size, 3), np.uint8)
    labels[10:16, 20:28], image[10:16, 20:28] = L_EYE, (255, 0, 0)   # image right: l_eye, red
    labels[10:16, 4:12], image[10:16, 4:12] = R_EYE, (0, 0, 255)     # image left: r_eye, blue
    image[0:3, 0:3] = (0, 255, 0)                                    # a marker, top-left
    return image, labels


def test_flip_lut_swaps_left_and_right_classes_only():
    lut = flip_lut(CELEBAMASK_CLASSES)
    name = {i: c for i, c in enumerate(CELEBAMASK_CLASSES)}
    pairs = {(name[i], name[int(lut[i])]) for i in range(19) if lut[i] != i}
    assert pairs == {("l_eye", "r_eye"), ("r_eye", "l_eye"), ("l_brow", "r_brow"), ("r_brow", "l_brow"),
                     ("l_ear", "r_ear"), ("r_ear", "l_ear")}
    assert lut[CELEBAMASK_CLASSES.index("ear_r")] == CELEBAMASK_CLASSES.index("ear_r")  # earring
    assert lut[CELEBAMASK_CLASSES.index("neck_l")] == CELEBAMASK_CLASSES.index("neck_l")  # necklace
    assert lut[255] == 255
    assert list(flip_lut(["bg", "left_hand", "right_hand", "l_only"])[:4]) == [0, 2, 1, 3]


def test_flip_turns_l_eye_pixels_into_r_eye_and_back():
    image, labels = _two_eyes()
    lut = flip_lut(CELEBAMASK_CLASSES)
    seen = set()
    for seed in range(12):
        img, lab = random_parsing_transform(np.random.RandomState(seed), image, labels, 32, lut=lut,
                                            scale=None, jitter=0)
        flipped = bool((img[0:3, -3:] == (0, 255, 0)).all())
        seen.add(flipped)
        if not flipped:
            np.testing.assert_array_equal(lab, labels)
            continue
        # the red eye (l_eye, image right) moved to the image left and is now labelled r_eye
        red = (img[..., 0] > 200) & (img[..., 2] < 50)
        assert red[10:16, 4:12].all() and (lab[10:16, 4:12] == R_EYE).all()
        blue = (img[..., 2] > 200) & (img[..., 0] < 50)
        assert blue[10:16, 20:28].all() and (lab[10:16, 20:28] == L_EYE).all()
        np.testing.assert_array_equal(lab, lut[labels[:, ::-1]])
    assert seen == {True, False}


def test_training_dataset_flips_consistently_over_epochs():
    image, labels = _two_eyes()
    ds = ParsingDataset(image[None], labels[None], augment=True, seed=3,
                         lut=flip_lut(CELEBAMASK_CLASSES), scale=(1.0, 1.0))
    mirrored = set()
    for epoch in range(10):
        ds.epoch = epoch
        x, t = ds[0]
        t = t.numpy()
        # whatever happened, the subject's left eye is on the image right
        cols_l, cols_r = np.nonzero(t == L_EYE)[1], np.nonzero(t == R_EYE)[1]
        assert cols_l.min() > 16 > cols_r.max()
        assert x.dtype == torch.uint8 and x.shape == (32, 32, 3)  # (H, W, RGB): the network normalises it
        green = x[0:3, -3:, 1].float().mean() > x[0:3, 0:3, 1].float().mean()
        mirrored.add(bool(green))
    assert mirrored == {True, False}
    ds.epoch = 4
    a, b = ds[0], ds[0]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # seeded per (epoch, sample)


def test_augmentation_moves_image_and_labels_together():
    size = 48
    labels = np.zeros((60, 40), np.uint8)
    labels[5:30, 5:20], labels[30:55, 20:35], labels[10:25, 25:38] = 1, 2, 3
    palette = np.array([(20, 20, 20), (200, 40, 40), (40, 200, 40), (40, 40, 200)], np.uint8)
    image = palette[labels]
    pad = 255 * np.asarray(IMAGENET_MEAN)
    scales, n_pad = [], 0
    for seed in range(8):
        rng = np.random.RandomState(seed)
        img, lab = random_parsing_transform(rng, image, labels, size, lut=np.arange(256), jitter=0)
        assert img.shape == (size, size, 3) and lab.shape == (size, size)
        valid = lab != 255
        # the colour of (almost) every labelled pixel is closest to the colour of its label
        dist = np.abs(img[valid][:, None, :] - palette[None].astype(np.float32)).sum(axis=-1)
        assert np.mean(dist.argmin(axis=1) == lab[valid]) > 0.97
        # pure padding in the image is ignored (255) in the labels
        pure_pad = np.abs(img - pad).max(axis=-1) < 1e-3
        assert (lab[pure_pad] == 255).all()
        n_pad += pure_pad.sum()
        scales.append(scale_crop_matrix(np.random.RandomState(seed), labels.shape, size)[0, 0])
    f = np.array(scales) * max(labels.shape) / size
    assert f.min() >= 0.75 and f.max() <= 2.0 and f.max() - f.min() > 0.3
    assert n_pad > 0


def test_color_jitter_and_normalisation():
    rng = np.random.RandomState(0)
    img = rng.randint(0, 256, (8, 8, 3)).astype(np.uint8)
    np.testing.assert_allclose(color_jitter(rng, img, 0, 0, 0), img)
    out = color_jitter(np.random.RandomState(1), img, 0.5, 0.5, 0.5)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 255 and not np.allclose(out, img)
    gray = np.repeat(img[..., :1], 3, axis=-1)
    g = color_jitter(np.random.RandomState(2), gray)
    np.testing.assert_allclose(g[..., 0], g[..., 2], atol=1e-3)  # grey stays grey
    z = normalize_image(np.full((2, 2, 3), 255 * np.asarray(IMAGENET_MEAN)))
    assert z.shape == (3, 2, 2) and np.abs(z).max() < 1e-5


# --------------------------------------------------------------------------- optimisation
def test_warmup_poly_values():
    f = WarmupPolyLR(total_steps=20, warmup_steps=4, power=0.9, warmup_factor=0.1)
    np.testing.assert_allclose([f(t) for t in range(5)], [0.1, 0.325, 0.55, 0.775, 1.0])
    assert f(12) == pytest.approx((1 - 8 / 16) ** 0.9)
    assert f(19) == pytest.approx((1 / 16) ** 0.9) and f(20) == 0.0
    e = WarmupPolyLR(total_steps=20, warmup_steps=4, warmup="exp", warmup_factor=0.01)
    np.testing.assert_allclose([e(0), e(2), e(4)], [0.01, 0.1, 1.0])


def test_lr_schedule_per_batch_in_training(faces):
    X, y = faces  # 8 images, batch 3 -> 3 batches per epoch, 4 epochs -> 12 iterations
    est = FaceParser(**{**TINY, "max_epochs": 4, "batch_size": 3, "lr": 0.05, "warmup_steps": 3,
                        "validation_fraction": 0.0}).fit(X, y)
    lrs = np.array([lr for epoch in est.net_.history[:, "batches", :, "event_lr"] for lr in epoch])
    T, w = 12, 3
    expected = [0.05 * (0.1 + 0.9 * t / w) if t < w else 0.05 * (1 - (t - w) / (T - w)) ** 0.9
                for t in range(T)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-6)
    assert lrs[w] == pytest.approx(0.05) and 0 < lrs[-1] < lrs[-2]


def test_optimizer_momentum_and_no_decay_on_bn_and_bias(fitted):
    opt = fitted.net_.optimizer_
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    module = fitted.net_.module_
    assert set(decay) == {id(p) for p in module.parameters()}
    for name, p in module.named_parameters():
        expected = 0.0 if (".bn" in name or name.startswith("bn") or name.endswith("bias")
                           or "downsample.1" in name or "conv.1" in name
                           or re.search(r"laterals\.\d+\.1\.", name)) else 5e-4  # top-down head's BatchNorms
        assert decay[id(p)] == expected, name
    assert all(g["momentum"] == 0.9 for g in opt.param_groups)


def test_backbone_weights_are_loaded_before_training(tmp_path, faces):
    X, y = faces
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        src = ResNet18Backbone()
    path = tmp_path / "resnet18.pth"
    torch.save(src.state_dict(), path)
    est = FaceParser(**{**TINY, "width": 1.0, "lr": 1e-9, "batch_size": 8}, backbone_weights=str(path))
    est.fit(X[:4], y[:4])
    got = est.net_.module_.backbone
    for name in ("conv1.weight", "layer2.0.downsample.0.weight", "layer4.1.conv2.weight"):
        torch.testing.assert_close(got.state_dict()[name], src.state_dict()[name], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="width=1.0"):
        FaceParser(**TINY, backbone_weights=str(path)).fit(X[:4], y[:4])


# --------------------------------------------------------------------------- estimator
def test_shapes_dtypes_and_attributes(fitted, faces):
    X, y = faces
    assert fitted.n_classes_ == 19 and list(fitted.classes_) == list(range(19))
    assert fitted.class_names_ == list(CELEBAMASK_CLASSES)
    Xo = X[:3, :36, :30]  # any input size; outputs come back at that size
    pred = fitted.predict(Xo)
    proba = fitted.predict_proba(Xo)
    assert pred.shape == (3, 36, 30) and pred.dtype == np.uint8
    assert proba.shape == (3, 19, 36, 30) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(pred, proba.argmax(axis=1))
    np.testing.assert_array_equal(fitted.transform(Xo), pred)
    gray = X[:2].mean(axis=-1).astype(np.uint8)
    assert fitted.predict(gray).shape == (2, 40, 40)
    assert fitted.predict(gray[..., None]).shape == (2, 40, 40)
    from skkp.metrics import mean_iou
    assert fitted.score(X, y) == pytest.approx(mean_iou(y, fitted.predict(X), n_classes=fitted.n_classes_))


def test_learns_a_simple_segmentation():
    rng = np.random.RandomState(0)
    n, s = 12, 32
    yy, xx = np.mgrid[:s, :s]
    X = np.empty((n, s, s, 3), np.uint8)
    y = np.empty((n, s, s), np.uint8)
    for i in range(n):
        cx, cy, r = rng.uniform(10, 22), rng.uniform(10, 22), rng.uniform(6, 10)
        disk = (xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2
        y[i] = disk
        X[i] = np.where(disk[..., None], (200, 60, 60), (40, 40, 160)) + rng.randint(0, 30, (s, s, 3))
    est = FaceParser(image_size=32, classes=["background", "disk"], width=0.25, max_epochs=20, batch_size=4,
                     lr=0.05, warmup_steps=2, augment=False, random_state=0, device="cpu").fit(X, y)
    loss = est.net_.history[:, "train_loss"]
    assert np.mean(loss[-3:]) < np.mean(loss[:3])  # OHEM keeps the hardest pixels: it falls slowly
    all_background = np.mean([np.mean(y == 0), 0.0])  # mean IoU of predicting background everywhere
    assert est.score(X, y) > max(0.8, all_background + 0.3)


def test_clone_and_set_params(fitted):
    c = clone(fitted)
    assert c.get_params() == fitted.get_params() and not hasattr(c, "net_")
    c.set_params(width=0.25, net_kwargs={"iterator_valid__batch_size": 2})
    assert c.width == 0.25 and fitted.width == 0.125


def test_pipeline_with_nested_params(faces):
    X, y = faces
    pipe = Pipeline([("bright", FunctionTransformer(np.asarray)), ("parser", FaceParser(**TINY))])
    pipe.set_params(parser__max_epochs=1, parser__lr=0.02)
    pipe.fit(X, y)
    assert pipe.predict(X[:2]).shape == (2, 40, 40)
    assert pipe.named_steps["parser"].lr == 0.02
    from skkp.metrics import mean_iou
    assert pipe.score(X, y) == pytest.approx(mean_iou(y, pipe.predict(X), n_classes=len(CELEBAMASK_CLASSES)))


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_grid_search(faces, n_jobs):
    X, y = faces
    # (with batch_size=2 one fold's 4-image model diverges in eval mode: its predict now raises, and
    # GridSearchCV scores that candidate NaN, instead of the silent all-background answer of before)
    gs = GridSearchCV(FaceParser(**TINY), {"lr": [0.01, 0.03]}, cv=2, n_jobs=n_jobs)
    gs.fit(X, y)
    scores = gs.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all() and scores[0] != scores[1]  # lr reached training
    assert gs.best_params_["lr"] == (0.01, 0.03)[int(np.argmax(scores))]
    assert gs.predict(X[:1]).shape == (1, 40, 40)


def test_joblib_round_trip_in_fresh_process(fitted, faces, tmp_path):
    X, _ = faces
    path = tmp_path / "parser.joblib"
    joblib.dump(fitted, path)
    np.save(tmp_path / "X.npy", X)
    code = textwrap.dedent(f"""
        import joblib, numpy as np, torch
        torch.set_num_threads(1)  # same thread count as this process: same float reductions
        est = joblib.load({str(path)!r})
        np.save({str(tmp_path / 'pred.npy')!r}, est.predict_proba(np.load({str(tmp_path / 'X.npy')!r})))
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "pred.npy"), fitted.predict_proba(X))


def test_deterministic_and_leaves_global_rng_alone(fitted, faces):
    X, y = faces
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    again = FaceParser(**TINY).fit(X, y)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), np_state))
    np.testing.assert_array_equal(again.predict_proba(X), fitted.predict_proba(X))
    other = FaceParser(**{**TINY, "random_state": 1}).fit(X, y)
    assert not np.array_equal(other.predict_proba(X), fitted.predict_proba(X))


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("make, exc, match", [
    (lambda X, y: (X, np.where(y == 0, 19, y)), ValueError, r"outside the 19 classes.*\[19\]"),
    (lambda X, y: (X, y[:, :30]), ValueError, r"shape \(n, H, W\) = \(8, 40, 40\)"),
    (lambda X, y: (X[:7], y), ValueError, "matching X"),
    (lambda X, y: (X.astype(str), y), TypeError, "pixel values"),
    (lambda X, y: (X > 0, y), TypeError, "dtype bool"),
    (lambda X, y: (X, y + 0.5), ValueError, "integer class labels"),
    (lambda X, y: (X[:0], y[:0]), ValueError, "empty"),
    (lambda X, y: (X.reshape(8, -1), y), ValueError, "tabular"),
    (lambda X, y: (X.astype(float) * 2, y), ValueError, "0-255 scale"),
    (lambda X, y: (X.astype(float) - 1, y), ValueError, "negative pixel values"),
    (lambda X, y: (X[0], y), ValueError, r"X\[None\]"),
    (lambda X, y: (X, None), ValueError, "requires y"),
])
def test_bad_input_raises_before_training(faces, make, exc, match):
    X, y = faces
    Xb, yb = make(X.copy(), y.copy())
    with pytest.raises(exc, match=match):
        FaceParser(**TINY).fit(Xb, yb)


@pytest.mark.parametrize("param, value", [("image_size", 16), ("width", 0), ("max_epochs", 0),
                                          ("batch_size", 1.5), ("lr", -1), ("ohem_thresh", 0),
                                          ("min_kept", 2.5), ("device", "tpu"), ("classes", ["a"]),
                                          ("classes", ["a", "a"]), ("scale_range", (2, 1)),
                                          ("net_kwargs", [1])])
def test_bad_params(faces, param, value):
    X, y = faces
    with pytest.raises(ValueError, match=param):
        FaceParser(**{**TINY, param: value}).fit(X[:2], np.minimum(y[:2], 0))


@pytest.mark.skipif(torch.cuda.is_available(), reason="only meaningful without CUDA")
def test_cuda_requested_but_missing(faces):
    X, y = faces
    with pytest.raises(ValueError, match="CUDA is not available"):
        FaceParser(**{**TINY, "device": "cuda"}).fit(X[:2], y[:2])


def test_inputs_are_not_modified_and_float_input_accepted(faces):
    X, y = faces
    Xf, yi = X[:4].astype(np.float64), y[:4].astype(np.int64)
    Xc, yc = Xf.copy(), yi.copy()
    est = FaceParser(**TINY).fit(Xf, yi)
    est.predict(Xf)
    np.testing.assert_array_equal(Xf, Xc)
    np.testing.assert_array_equal(yi, yc)
    # one pixel rule: floats in [0, 1] are on the 0-1 scale, so they parse like the same uint8 images
    np.testing.assert_array_equal(est.predict(Xf / 255.0), est.predict(X[:4]))
    np.testing.assert_array_equal(est.predict(Xf), est.predict(X[:4]))


def test_predict_before_fit_raises(faces):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        FaceParser().predict(faces[0])


# --------------------------------------------------------------------------- sklearn's checks


# --------------------------------------------------------------------------- memory of predict
def test_predict_works_in_bands_of_rows_with_the_same_answer(fitted, faces, monkeypatch):
    import skkp.parsing

    X, _ = faces
    big = np.repeat(np.repeat(X[:2], 5, axis=1), 4, axis=2)  # 200 x 160 images
    labels, proba = fitted.predict(big), fitted.predict_proba(big)
    np.testing.assert_array_equal(labels, proba.argmax(axis=1))
    sizes = []
    real = skkp.parsing.upsample_bilinear

    def spy(x, size, rows=None):
        out = real(x, size, rows=rows)
        sizes.append(out.numel())
        return out

    monkeypatch.setattr(skkp.parsing, "_BAND_ELEMENTS", 19 * 160 * 7)  # bands of 7 rows
    monkeypatch.setattr(skkp.parsing, "upsample_bilinear", spy)
    np.testing.assert_array_equal(fitted.predict(big), labels)
    np.testing.assert_allclose(fitted.predict_proba(big), proba, atol=1e-6)
    assert max(sizes) == 19 * 160 * 7  # no resized logits larger than one band were ever made
    assert len(sizes) == 2 * 2 * int(np.ceil(200 / 7))


# --------------------------------------------------------------------------- heads
def test_default_heads_are_stride4_and_study_keeps_the_reference_three(fitted, faces):
    X, y = faces
    assert FaceParser().heads == "stride4"
    assert fitted.head_stages_ == (1, 2, 3, 4) and len(fitted.net_.module_.heads) == 4
    # the four stage heads and the top-down head (default top_down=True)
    assert [tuple(o.shape) for o in fitted.net_.module_.head_logits(torch.zeros(1, 3, 32, 32))] == [(1, 19, 32, 32)] * 5
    study = FaceParser(**TINY, heads="study", top_down=False).fit(X[:4], y[:4])
    assert study.head_stages_ == (2, 3, 4) and len(study.net_.module_.heads) == 3
    assert len(study.net_.module_.eval().head_logits(torch.zeros(1, 3, 32, 32))) == 3  # the reference network
    assert study.predict(X[:1]).shape == (1, 40, 40)


def test_heads_as_stages(faces):
    X, y = faces
    est = FaceParser(**TINY, heads=[4, 1]).fit(X[:4], y[:4])
    assert est.head_stages_ == (1, 4) and len(est.net_.module_.heads) == 2
    assert est.heads == [4, 1]  # the parameter itself is left as given


@pytest.mark.parametrize("heads", ["foo", "", (0,), (5,), (), (2, 2), (1.0, 2), (True, 2), "2,3,4", 3, None,
                                   np.array([2, 3, 4])])
def test_bad_heads_raise_before_training(faces, heads, monkeypatch):
    import skkp.parsing

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(skkp.parsing.FaceParser, "_fit_net", no_training)
    X, y = faces
    with pytest.raises(ValueError, match="heads"):
        FaceParser(**TINY, heads=heads).fit(X[:4], y[:4])


def test_heads_clone_and_get_params_round_trip():
    est = FaceParser(heads="study")
    assert est.get_params()["heads"] == "study" and clone(est).heads == "study"
    assert clone(est.set_params(heads=(1, 2))).get_params()["heads"] == (1, 2)
    assert list(inspect.signature(FaceParser).parameters)[-4:] == ["amp", "heads", "boundary_weight",
                                                                   "top_down"]  # appended


def test_heads_and_net_kwargs_head_stages(faces):
    X, y = faces
    with pytest.raises(ValueError, match=r"heads='study' .* module__head_stages=\(1, 2, 3, 4\) disagree"):
        FaceParser(**TINY, heads="study", net_kwargs={"module__head_stages": (1, 2, 3, 4)}).fit(X[:4], y[:4])
    with pytest.raises(ValueError, match="disagree"):
        FaceParser(**TINY, net_kwargs={"module__head_stages": (2, 3, 4)}).fit(X[:4], y[:4])
    same = FaceParser(**TINY, net_kwargs={"module__head_stages": (4, 3, 2, 1)}).fit(X[:4], y[:4])  # agrees
    assert same.head_stages_ == (1, 2, 3, 4)


def test_warm_start_refuses_changed_heads(faces):
    X, y = faces
    est = FaceParser(**TINY, heads="study", warm_start=True).fit(X[:4], y[:4])
    with pytest.raises(ValueError, match="fitted heads"):
        est.set_params(heads="stride4").fit(X[:4], y[:4])


def test_parsers_pickled_before_heads_existed_keep_their_heads(faces):
    X, y = faces
    old = FaceParser(**TINY, heads="study").fit(X[:4], y[:4])
    state = old.__getstate__()
    del state["heads"]
    again = FaceParser.__new__(FaceParser)
    again.__setstate__(state)
    assert again.heads == "study"
    np.testing.assert_array_equal(again.predict(X[:2]), old.predict(X[:2]))
    unfitted = FaceParser.__new__(FaceParser)
    unfitted.__setstate__({k: v for k, v in FaceParser(net_kwargs={"module__head_stages": [1, 2, 3, 4]})
                           .__getstate__().items() if k != "heads"})
    assert unfitted.heads == "stride4"


def test_boundary_weight_reaches_the_loss_and_is_checked_before_training(faces):
    X, y = faces
    default = FaceParser(**TINY).fit(X[:4], y[:4])
    assert default.boundary_weight == 2.0 and default.net_.criterion_.loss.boundary_weight == 2.0
    plain = FaceParser(**TINY, boundary_weight=0).fit(X[:4], y[:4])
    assert plain.net_.criterion_.loss.boundary_weight == 0.0
    assert not np.allclose(plain.history_[:, "train_loss"], default.history_[:, "train_loss"])
    bad = FaceParser(**TINY, boundary_weight=-1.0)
    with pytest.raises(ValueError, match="boundary_weight"):
        bad.fit(X[:4], y[:4])
    assert not hasattr(bad, "net_")


def test_top_down_adds_the_stride_2_head_and_is_checked(faces, monkeypatch):
    import skkp.parsing

    X, y = faces
    est = FaceParser(**TINY, top_down=True).fit(X[:4], y[:4])
    assert est.net_.module_.top_down is not None and len(est.net_.module_.eval().head_logits(torch.zeros(1, 3, 32, 32))) == 5
    assert est.predict(X[:2]).shape == X[:2].shape[:3]
    assert FaceParser().top_down is True  # the default: measured better on ytf68
    assert FaceParser(**TINY, top_down=False).fit(X[:4], y[:4]).net_.module_.top_down is None
    with pytest.raises(ValueError, match="top_down"):  # warm start keeps the network it has
        est.set_params(warm_start=True, top_down=False).fit(X[:4], y[:4])

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(skkp.parsing.FaceParser, "_fit_net", no_training)
    for bad in ("yes", 1, None):
        with pytest.raises((ValueError, TypeError), match="top_down"):
            FaceParser(**TINY, top_down=bad).fit(X[:4], y[:4])


def test_parsers_pickled_before_top_down_existed_have_no_such_head(faces):
    X, y = faces
    old = FaceParser(**TINY, top_down=False).fit(X[:4], y[:4])
    state = old.__getstate__()
    del state["top_down"]
    del state["net_"].module_.top_down  # a network object of that time has no such attribute
    again = FaceParser.__new__(FaceParser)
    again.__setstate__(state)
    assert again.top_down is False
    np.testing.assert_array_equal(again.predict(X[:2]), old.predict(X[:2]))


# --------------------------------------------------------------------------- test-time flip
def test_flip_average_makes_predictions_mirror_consistent(fitted, faces):
    """With flip_average the mirror image gets the mirrored labels, l_/r_ swapped (the average is
    symmetric by construction); without it the network alone is not (so the check can fail)."""
    X, _ = faces
    X = X[:4, :32, :32]  # the network size: no resizing, whose rounding would blur the comparison
    lut = flip_lut(fitted.class_names_)
    swap = lut[:fitted.n_classes_]
    mirror = X[:, :, ::-1]
    plain = fitted.predict_proba(mirror)
    assert np.abs(plain - fitted.predict_proba(X)[:, swap, :, ::-1]).max() > 1e-3
    proba = fitted.predict_proba(X, flip_average=True)
    np.testing.assert_allclose(fitted.predict_proba(mirror, flip_average=True), proba[:, swap, :, ::-1],
                               rtol=0, atol=1e-6)
    labels = fitted.predict(X, flip_average=True)
    np.testing.assert_array_equal(fitted.predict(mirror, flip_average=True), lut[labels][:, :, ::-1])
    np.testing.assert_array_equal(labels, proba.argmax(axis=1))


def test_flip_average_averages_the_logits_of_the_image_and_its_mirror(fitted, faces):
    X, _ = faces
    X = X[:3, :32, :32]
    swap = flip_lut(fitted.class_names_)[:fitted.n_classes_]
    logits = lambda images, flip=False: np.concatenate([lg.numpy() for _, lg in fitted._network_logits(images, flip)])
    want = (logits(X) + logits(X[:, :, ::-1])[:, swap, :, ::-1]) / 2
    np.testing.assert_allclose(logits(X, True), want, rtol=0, atol=1e-5)
    e = np.exp(want - want.max(axis=1, keepdims=True))
    np.testing.assert_allclose(fitted.predict_proba(X, flip_average=True), e / e.sum(axis=1, keepdims=True),
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_flip_average_must_be_a_bool(fitted, faces, value):
    X, _ = faces
    for method in (fitted.predict, fitted.predict_proba):
        with pytest.raises(ValueError, match="flip_average must be True or False"):
            method(X[:2], flip_average=value)
