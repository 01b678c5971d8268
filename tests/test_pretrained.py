"""skkp.pretrained: the shipped models load, reproduce their recorded predictions, and are real."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skkp import pretrained

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_models_are_listed_and_import_no_torch():
    assert pretrained.list_models() == ["ibug68_face", "ibug68_nose"]
    code = "import sys, skkp.pretrained as p; p.list_models(); p.model_card('ibug68_nose'); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("name, k", [("ibug68_face", 68), ("ibug68_nose", 9)])
def test_each_model_loads_and_reproduces_its_recorded_predictions(name, k):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from train_pretrained import probe_images
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    model = pretrained.load_model(name, device="cpu")
    card = pretrained.model_card(name)
    assert model.n_keypoints_ == k and len(model.keypoint_names_) == k and model.image_size == 96
    np.testing.assert_allclose(model.predict(probe_images()), card["probe_predictions"], atol=2e-3)
    assert (Path(pretrained.__file__).parent / "models" / f"{name}.skkp").stat().st_size < 2.2e6


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match=r"one of the shipped models \['ibug68_face', 'ibug68_nose'\]"):
        pretrained.load_model("dlib68")
    with pytest.raises(ValueError, match="shipped models"):
        pretrained.model_card(None)


def test_models_find_real_noses(ytf68_dir):
    """On ytf68 crops (people the shipped models were trained on, so this is a sanity check of the
    files, not a held-out score: that is in docs/pretrained.md) the nose points land within a few px."""
    from skkp.datasets import crop_faces, load_landmarks_csv
    from skkp.metrics import mean_absolute_error_px

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from _common import ytf68_csv
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    with ytf68_csv(ytf68_dir, 40) as csv_path:
        data = load_landmarks_csv(csv_path, ytf68_dir / "images", gray=True)
    crops = crop_faces(data.images, keypoints=data.keypoints, size=96, margin=0.25, gray=True)
    nose_cols = np.ravel([[2 * i, 2 * i + 1] for i in range(27, 36)])
    truth = crops.keypoints[:, nose_cols]
    nose = pretrained.load_model("ibug68_nose", device="cpu").predict(crops.images)
    face = pretrained.load_model("ibug68_face", device="cpu").predict(crops.images)
    mean_shape = np.broadcast_to(truth.mean(axis=0), truth.shape)
    assert mean_absolute_error_px(truth, nose) < 0.5 * mean_absolute_error_px(truth, mean_shape)
    assert mean_absolute_error_px(truth, face[:, nose_cols]) < 0.5 * mean_absolute_error_px(truth, mean_shape)


def test_training_script_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_pretrained.py"), "--smoke", "--split",
                           "--all", "--json", str(tmp_path / "s.json")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote" in proc.stdout or "not found" in proc.stdout


def test_pretrained_demo_puts_points_on_the_face(tmp_path):
    pytest.importorskip("skimage")
    from skkp.cli import main

    assert main(["demo", "--out", str(tmp_path)]) == 0  # the default demo: no training
    assert (tmp_path / "pretrained_face.png").stat().st_size > 10_000
    from skkp.demo import pretrained_demo

    points = pretrained_demo(tmp_path, print_fn=lambda *a: None)["points"].reshape(68, 2)
    # the astronaut's face lies about within x 175-280, y 80-185 of the 512 px photo; eyes above mouth
    assert (points[:, 0] > 160).all() and (points[:, 0] < 290).all() and (points[:, 1] > 70).all()
    assert points[36:48, 1].mean() < points[48:68, 1].mean() < points[8, 1]
