"""The skkp command: help, train on a landmark CSV + image folder, predict a folder."""
import csv
import subprocess
import sys

import cv2
import joblib
import numpy as np
import pytest
from skorch.callbacks import Callback

from skkp.cli import build_parser, main
from skkp.datasets import make_noses

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_help_documents_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "train", "predict"):
        assert command in out
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "usage: skkp " + command in capsys.readouterr().out


def test_console_script_is_installed():
    proc = subprocess.run([sys.executable, "-m", "skkp.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "demo" in proc.stdout


@pytest.fixture()
def landmark_folder(tmp_path):
    """Nose images of two sizes written as PNGs, with a landmark CSV in the ytf68 layout."""
    images, points = make_noses(24, image_size=48, random_state=0)
    folder = tmp_path / "images"
    folder.mkdir()
    rows = []
    for i, (img, pts) in enumerate(zip(images, points)):
        if i % 2:  # every other image at 64 px, landmarks scaled with it
            img = cv2.resize(img, (64, 64), interpolation=cv2.INTER_LINEAR)
            pts = (pts + 0.5) * 64 / 48 - 0.5
        cv2.imwrite(str(folder / f"Person_{i // 4}_{i % 4}.png"), img)
        rows.append([f"Person_{i // 4}_{i % 4}.png"] + [f"{v:.3f}" for v in pts])
    csv_path = tmp_path / "landmarks.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image"] + [f"{a}{k}" for k in range(7) for a in "xy"])
        writer.writerows(rows)
    return folder, csv_path


def test_train_then_predict(landmark_folder, tmp_path, capsys):
    folder, csv_path = landmark_folder
    model_path = tmp_path / "model.joblib"
    code = main(["train", "--images", str(folder), "--landmarks", str(csv_path), "--model", str(model_path),
                 "--architecture", "cnn", "--image-size", "32", "--epochs", "1", "--points", "0-4", "--quiet"])
    assert code == 0 and model_path.exists()
    assert (tmp_path / "model_history.png").stat().st_size > 1000  # the training curves
    model = joblib.load(model_path)
    assert model.n_keypoints_ == 5  # --points 0-4 kept five of the seven points
    out_csv, overlays = tmp_path / "pred.csv", tmp_path / "overlays"
    assert main(["predict", "--model", str(model_path), "--images", str(folder), "--out", str(out_csv),
                 "--overlay-dir", str(overlays), "--quiet"]) == 0
    with open(out_csv) as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["image"] + [f"{a}{k}" for k in range(5) for a in "xy"]
    assert len(rows) == 25 and len(list(overlays.glob("*.png"))) == 24
    # predictions are in the pixels of each image: the 64-px images get larger coordinates on average
    values = {r[0]: np.array(r[1:], dtype=float) for r in rows[1:]}
    big = np.mean([v.mean() for k, v in values.items() if int(k.split("_")[-1][0]) % 2])
    small = np.mean([v.mean() for k, v in values.items() if not int(k.split("_")[-1][0]) % 2])
    assert big > small
    assert "Wrote predictions for 24 images" in capsys.readouterr().out


def _one_line_error(capsys, code, *words):
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def test_train_reports_bad_rows_in_one_line(landmark_folder, tmp_path, capsys):
    folder, csv_path = landmark_folder
    with open(csv_path, "a") as fh:
        fh.write("missing.png," + ",".join(["1"] * 14) + "\n")
    code = main(["train", "--images", str(folder), "--landmarks", str(csv_path), "--model",
                 str(tmp_path / "m.joblib"), "--epochs", "1", "--quiet"])
    _one_line_error(capsys, code, "missing.png", "line 26")


def test_predict_on_empty_folder_fails_clearly(tmp_path, capsys):
    _one_line_error(capsys, main(["predict", "--model", "x.joblib", "--images", str(tmp_path)]), "no images")


@pytest.mark.parametrize("points, words", [("5-9", ["outside 0-6"]), ("a-b", ["--points", "27-35"]),
                                           (",", ["no point"])])
def test_bad_points_fail_before_training(landmark_folder, tmp_path, capsys, points, words):
    folder, csv_path = landmark_folder
    code = main(["train", "--images", str(folder), "--landmarks", str(csv_path), "--model",
                 str(tmp_path / "m.joblib"), "--points", points, "--epochs", "1", "--quiet"])
    _one_line_error(capsys, code, *words)
    assert "Training on" not in capsys.readouterr().out and not (tmp_path / "m.joblib").exists()


def test_unwritable_model_path_fails_before_training(landmark_folder, tmp_path, capsys):
    folder, csv_path = landmark_folder
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["train", "--images", str(folder), "--landmarks", str(csv_path), "--model",
                 str(blocker / "m.joblib"), "--epochs", "1", "--quiet"])
    out = capsys.readouterr()
    assert code == 2 and "--model" in out.err and "Training on" not in out.out


@pytest.mark.parametrize("content, words", [(b"image,x0,y0\na.png,1,2\n", ["not a model"]), (b"", ["not a model"])])
def test_predict_with_a_file_that_is_not_a_model(landmark_folder, tmp_path, capsys, content, words):
    folder, _ = landmark_folder
    bad = tmp_path / "model.joblib"
    bad.write_bytes(content)
    _one_line_error(capsys, main(["predict", "--model", str(bad), "--images", str(folder)]), *words)


def test_predict_with_another_estimator_and_out_under_a_file(landmark_folder, tmp_path, capsys):
    from skkp import MaskEdgeKeypoints

    folder, _ = landmark_folder
    other = tmp_path / "edges.joblib"
    joblib.dump(MaskEdgeKeypoints(), other)
    _one_line_error(capsys, main(["predict", "--model", str(other), "--images", str(folder)]),
                    "MaskEdgeKeypoints", "not a fitted NoseKeypointRegressor")


class _Interrupt(Callback):  # module level: the --save-partial model is pickled with it
    def on_epoch_end(self, net, **kwargs):
        raise KeyboardInterrupt


def test_ctrl_c_in_train_exits_130_and_keeps_the_old_model(landmark_folder, tmp_path, capsys, monkeypatch):
    import skkp.keypoints

    original = skkp.keypoints.NoseKeypointRegressor._net_params

    def with_interrupt(self, *args, **kwargs):
        params = original(self, *args, **kwargs)
        params["callbacks"] = params["callbacks"] + [("interrupt", _Interrupt())]
        return params

    monkeypatch.setattr(skkp.keypoints.NoseKeypointRegressor, "_net_params", with_interrupt)
    folder, csv_path = landmark_folder
    model_path = tmp_path / "m.joblib"
    model_path.write_bytes(b"the previous model")
    argv = ["train", "--images", str(folder), "--landmarks", str(csv_path), "--model", str(model_path),
            "--architecture", "cnn", "--image-size", "32", "--epochs", "5", "--quiet"]
    with pytest.warns(UserWarning, match="interrupted .* after 1 of 5 epochs"):
        assert main(argv) == 130
    assert model_path.read_bytes() == b"the previous model"
    assert "not written" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="interrupted"):
        assert main(argv + ["--save-partial"]) == 0
    assert joblib.load(model_path).fit_interrupted_


def test_parser_defaults_and_required_arguments(capsys):
    parser = build_parser()
    args = parser.parse_args(["train", "--images", "imgs", "--landmarks", "pts.csv", "--points", "27-35"])
    assert (args.command, args.images, args.landmarks, args.points) == ("train", "imgs", "pts.csv", "27-35")
    from skkp import NoseKeypointRegressor

    defaults = NoseKeypointRegressor().get_params()  # the CLI trains with the estimator's own defaults
    assert (args.model, args.architecture, args.image_size, args.epochs, args.batch_size, args.lr, args.errors) == \
        ("model.skkp", defaults["architecture"], defaults["image_size"], defaults["max_epochs"],
         defaults["batch_size"], defaults["lr"], "raise")
    args = parser.parse_args(["predict", "--model", "m.joblib", "--images", "imgs"])
    assert args.out is None and args.overlay_dir is None  # None: predictions.csv with --images
    assert parser.parse_args(["demo"]).func is not args.func  # each command runs its own handler
    for argv in ([], ["predict", "--images", "imgs"], ["train", "--errors", "ignore"], ["nope"]):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(argv)
        assert exc.value.code == 2, argv
    assert "usage: skkp" in capsys.readouterr().err


def test_version_and_help_show_defaults(capsys):
    import skkp

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"skkp {skkp.__version__}"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # help wraps at the terminal width
    assert "{cnn,heatmap,inception,mlp}" in out and "(default: heatmap)" in out and "(default: auto)" in out


def test_train_prints_the_mean_predictor_baseline_and_ibug_names(tmp_path, capsys):
    from skkp.datasets import IBUG68_SCHEMA, landmarks68_template

    rng = np.random.RandomState(0)
    folder = tmp_path / "faces"
    folder.mkdir()
    rows = []
    for i in range(24):
        pts = landmarks68_template(48) + rng.normal(0, 1.0, (68, 2))
        img = np.zeros((48, 48), np.uint8)
        for x, y in pts:
            cv2.circle(img, (int(round(x)), int(round(y))), 1, 255, -1)
        cv2.imwrite(str(folder / f"P{i // 3}_{i % 3}.png"), img)
        rows.append([f"P{i // 3}_{i % 3}.png"] + [f"{v:.2f}" for v in pts.ravel()])
    csv_path = tmp_path / "points.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image"] + [f"{a}{k}" for k in range(68) for a in "xy"])
        writer.writerows(rows)
    model_path = tmp_path / "nose.joblib"
    code = main(["train", "--images", str(folder), "--landmarks", str(csv_path), "--points", "27-35",
                 "--model", str(model_path), "--architecture", "cnn", "--image-size", "32", "--epochs", "1",
                 "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "the mean predictor scores" in out and ("better than the baseline" in out or "WORSE" in out)
    assert joblib.load(model_path).keypoint_names_ == list(IBUG68_SCHEMA.names[27:36])


def test_train_fine_tunes_a_saved_model_into_the_safe_format(landmark_folder, tmp_path, capsys):
    import zipfile

    import skkp

    folder, csv_path = landmark_folder
    first, second = tmp_path / "first.skkp", tmp_path / "second.skkp"
    common = ["--images", str(folder), "--landmarks", str(csv_path), "--architecture", "cnn", "--image-size", "32",
              "--epochs", "1", "--quiet"]
    assert main(["train", *common, "--model", str(first)]) == 0
    assert zipfile.is_zipfile(first)  # skkp.save, not a pickle
    assert main(["train", *common, "--points", "0-4", "--init", str(first), "--model", str(second)]) == 0
    assert "Starting from" in capsys.readouterr().out
    model = skkp.load(second)  # images of two sizes are photos: a FaceKeypointRegressor around the crop model
    assert model.regressor_.started_from_ == f"{first} (new output layer)" and model.n_keypoints_ == 5
    out_csv = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(second), "--images", str(folder), "--out", str(out_csv), "--quiet"]) == 0
    assert len(out_csv.read_text().splitlines()) == 25
    # a bad --init is one line, before training
    _one_line_error(capsys, main(["train", *common, "--init", "no_such_model", "--model", str(tmp_path / "x.skkp")]),
                    "neither a shipped model")


def test_predict_with_a_shipped_model(tmp_path):
    folder = tmp_path / "crops"
    folder.mkdir()
    images, _ = make_noses(2, image_size=96, random_state=0)
    for i, img in enumerate(images):
        cv2.imwrite(str(folder / f"{i}.png"), img)
    out_csv = tmp_path / "pred.csv"
    assert main(["predict", "--model", "ibug68_nose", "--images", str(folder), "--out", str(out_csv), "--quiet"]) == 0
    rows = out_csv.read_text().splitlines()
    assert len(rows) == 3 and len(rows[0].split(",")) == 1 + 18


def test_export_then_predict_with_onnx(landmark_folder, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    folder, csv_path = landmark_folder
    model_path, onnx_path = tmp_path / "m.skkp", tmp_path / "m.onnx"
    assert main(["train", "--images", str(folder), "--landmarks", str(csv_path), "--model", str(model_path),
                 "--architecture", "cnn", "--image-size", "32", "--epochs", "1", "--quiet"]) == 0
    assert main(["export", str(model_path), str(onnx_path)]) == 0 and onnx_path.stat().st_size > 1000
    torch_csv, onnx_csv = tmp_path / "torch.csv", tmp_path / "onnx.csv"
    for model, out in ((model_path, torch_csv), (onnx_path, onnx_csv)):
        assert main(["predict", "--model", str(model), "--images", str(folder), "--out", str(out), "--quiet"]) == 0
    a = np.loadtxt(torch_csv, delimiter=",", skiprows=1, usecols=range(1, 15))
    b = np.loadtxt(onnx_csv, delimiter=",", skiprows=1, usecols=range(1, 15))
    np.testing.assert_allclose(a, b, atol=0.011)  # the CSV holds two decimals
    _one_line_error(capsys, main(["export", str(tmp_path / "nope.skkp"), str(onnx_path)]), "not found")


def test_predict_on_a_folder_of_photos_detects_the_faces(tmp_path, capsys):
    skimage_data = pytest.importorskip("skimage.data")
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "astronaut.jpg"), cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(photos / "small_gray.png"), cv2.resize(cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2GRAY),
                                                           (256, 256)))
    (photos / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "out"
    code = main(["predict", str(photos), "--model", "ibug68_face", "--out", str(out), "--overlays", "--max-faces", "1",
                 "--quiet"])
    captured = capsys.readouterr()
    assert code == 0 and "Skipped 1 unreadable file(s): broken.jpg" in captured.err
    with open(out / "points.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["image"] for r in rows] == ["astronaut.jpg", "small_gray.png"] and len(rows[0]) == 7 + 136
    for row, scale in zip(rows, (1.0, 0.5)):
        xs = np.array([float(row[f"x{i}"]) for i in range(68)]) / scale
        ys = np.array([float(row[f"y{i}"]) for i in range(68)]) / scale
        # the astronaut's face lies about within x 175-280, y 80-185 of the 512 px photo; eyes above the mouth
        assert 160 < xs.min() and xs.max() < 290 and ys.min() > 70 and ys[36:48].mean() < ys[48:68].mean()
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["astronaut.png", "small_gray.png"]
    _one_line_error(capsys, main(["predict", str(tmp_path / "nowhere"), "--model", "ibug68_face"]), "not found")
    _one_line_error(capsys, main(["predict", "--model", "ibug68_face"]), "PHOTOS_DIR")


def test_train_on_real_photos_saves_a_calibrated_face_model_that_predict_uses(ytf68_dir, tmp_path, capsys):
    """Whole ytf68 frames (sizes differ): train crops them, calibrates the detector, saves both; predict
    PHOTOS_DIR then frames faces with that calibration."""
    import skkp
    from skkp.faces import FaceKeypointRegressor

    lines = (ytf68_dir / "keypoints.csv").read_text().splitlines()
    (tmp_path / "subset.csv").write_text("\n".join([lines[0]] + lines[1:1 + 30 * 97:97]) + "\n")
    model_path = tmp_path / "nose.skkp"
    code = main(["train", "--images", str(ytf68_dir / "images"), "--landmarks", str(tmp_path / "subset.csv"),
                 "--points", "27-35", "--architecture", "cnn", "--image-size", "32", "--epochs", "1",
                 "--detector", "skimage", "--model", str(model_path), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "Training on 30 photos" in out and "box calibration" in out
    model = skkp.load(model_path)
    assert isinstance(model, FaceKeypointRegressor) and model.detector_.backend == "skimage"
    assert model.calibration_.n_boxes >= 15 and model.detection_rate_ >= 0.5 and model.n_keypoints_ == 9
    photos = tmp_path / "photos"
    photos.mkdir()
    names = [line.split(",")[0] for line in lines[1 + 5:1 + 30 * 97:97 * 6]]
    for name in names:
        (photos / name).write_bytes((ytf68_dir / "images" / name).read_bytes())
    assert main(["predict", str(photos), "--model", str(model_path), "--out", str(tmp_path / "out"), "--quiet",
                 "--max-faces", "1"]) == 0
    with open(tmp_path / "out" / "points.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= len(names) - 2 and len(rows[0]) == 7 + 18
    # the boxes written are the calibrated ones: the nose box is much smaller than the detector's face box
    raw = skkp.detect_faces([cv2.imread(str(photos / rows[0]["image"]))[:, :, ::-1]], backend="skimage")[0][0]
    assert float(rows[0]["w"]) < 0.6 * raw[2]
