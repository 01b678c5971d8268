"""skkp.detection: face detection backends, box conventions and the detector-to-landmark calibration."""
import pickle

import cv2
import numpy as np
import pytest
from sklearn.base import clone

from skkp import detection
from skkp.detection import (BoxCalibration, FaceDetector, apply_box_calibration, available_backends, box_iou,
                            calibrate_detections, detect_faces, fit_box_calibration, keypoint_boxes, xywh_to_xyxy,
                            xyxy_to_xywh)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

skimage_data = pytest.importorskip("skimage.data")
ASTRONAUT_FACE = np.array([174.0, 66.0, 99.0, 99.0])  # x, y, w, h found by the skimage backend (min_size=60)


@pytest.fixture(scope="module")
def astronaut():
    return skimage_data.astronaut()


# ----------------------------------------------------------------------------- boxes
def test_box_conventions_round_trip_and_keep_extra_columns():
    xywh = np.array([[10.0, 20.0, 30.0, 40.0, 0.5], [0.0, 0.0, 1.0, 2.0, 1.0]])
    xyxy = xywh_to_xyxy(xywh)
    assert xyxy.tolist() == [[10, 20, 40, 60, 0.5], [0, 0, 1, 2, 1.0]]
    np.testing.assert_array_equal(xyxy_to_xywh(xyxy), xywh)
    assert xywh_to_xyxy(np.zeros((0, 4))).shape == (0, 4)
    with pytest.raises(ValueError, match="boxes must have shape"):
        xywh_to_xyxy([1, 2, 3])


def test_keypoint_boxes_is_the_extent_of_the_labelled_points():
    pts = np.array([[10, 20, 50, 25, np.nan, np.nan, 30, 60], [np.nan] * 8])
    boxes = keypoint_boxes(pts)
    assert boxes[0].tolist() == [10, 20, 40, 40]
    assert np.isnan(boxes[1]).all()
    np.testing.assert_array_equal(keypoint_boxes(pts.reshape(2, 4, 2)), boxes)


def test_box_iou():
    iou = box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 5, 10, 10], [10, 0, 5, 5], [0, 0, 0, 0]])
    np.testing.assert_allclose(iou, [[1.0, 25 / 175, 0.0, 0.0]])
    assert box_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)


# ----------------------------------------------------------------------------- calibration
def test_calibration_recovers_a_known_map_exactly_even_with_outliers():
    rng = np.random.RandomState(0)
    det = np.c_[rng.uniform(0, 300, (40, 2)), np.repeat(rng.uniform(30, 120, (40, 1)), 2, axis=1),
                rng.uniform(0, 1, 40)]  # square boxes with a score column
    truth = BoxCalibration(dx=-0.05, dy=0.18, scale_x=1.25, scale_y=1.1)
    ref = truth.apply(det)[:, :4]
    ref[:12] = rng.uniform(0, 300, (12, 4)) + [0, 0, 10, 10]  # 30% outliers: other faces, bad labels
    cal = fit_box_calibration(det, ref)
    assert (cal.dx, cal.dy, cal.scale_x, cal.scale_y, cal.n_boxes) == (-0.05, 0.18, 1.25, 1.1, 40)
    # applying it maps the inliers onto their targets, keeps the score, and never writes to its input
    before = det.copy()
    out = apply_box_calibration(cal, det)
    np.testing.assert_allclose(out[12:, :4], ref[12:], atol=1e-9)
    np.testing.assert_array_equal(out[:, 4], det[:, 4])
    np.testing.assert_array_equal(det, before)


def test_calibration_object_dict_identity_and_errors():
    box = [[5.0, 5.0, 20.0, 10.0]]
    assert BoxCalibration().apply(box).tolist() == box
    cal = BoxCalibration(dx=0.5, scale_y=2.0)
    assert apply_box_calibration(cal.to_dict(), box).tolist() == cal.apply(box).tolist() == [[15.0, 0.0, 20.0, 20.0]]
    with pytest.raises(ValueError, match="unknown keys"):
        apply_box_calibration({"dx": 0, "shift": 1}, box)
    with pytest.raises(TypeError, match="calibration must be"):
        apply_box_calibration([0, 0, 1, 1], box)
    with pytest.raises(ValueError, match="scale_x and scale_y must be > 0"):
        BoxCalibration(scale_x=0.0)
    with pytest.raises(ValueError, match="one box each"):
        fit_box_calibration([[0, 0, 1, 1]], [[0, 0, 1, 1], [0, 0, 2, 2]])
    with pytest.raises(ValueError, match="at least one pair"):
        fit_box_calibration([[0, 0, 0, 1]], [[0, 0, 1, 1]])


def test_calibrate_detections_matches_a_detector_of_another_scale_and_skips_false_alarms():
    rng = np.random.RandomState(1)
    faces = np.c_[rng.uniform(50, 200, (12, 2)), np.repeat(rng.uniform(20, 40, (12, 1)), 2, axis=1)]
    truth = BoxCalibration(dy=0.4, scale_x=0.4, scale_y=0.4)  # e.g. nose points inside face boxes
    inverse = BoxCalibration(dy=-1.0, scale_x=2.5, scale_y=2.5)  # truth.apply(inverse.apply(f)) == f
    dets = [inverse.apply(f[None]) for f in faces]
    assert box_iou(dets[0], faces[:1])[0, 0] < 0.3  # raw boxes alone would not match
    dets[3] = np.r_[dets[3], [[0.0, 0.0, 8.0, 8.0]]]  # a false alarm elsewhere
    dets[5] = dets[5][:0]  # a missed face
    cal, match = calibrate_detections(dets, faces)
    np.testing.assert_allclose([cal.dx, cal.dy, cal.scale_x, cal.scale_y], [truth.dx, truth.dy, 0.4, 0.4], atol=1e-9)
    assert cal.n_boxes == 11
    assert match.tolist() == [0] * 5 + [-1] + [0] * 6
    none, match = calibrate_detections([np.zeros((0, 5))] * 2, faces[:2])
    assert none == BoxCalibration() and match.tolist() == [-1, -1]
    with pytest.raises(ValueError, match="one array of boxes per image"):
        calibrate_detections(dets[:2], faces)


# ----------------------------------------------------------------------------- images in
def test_images_are_checked_and_a_single_image_is_refused(astronaut):
    one = np.zeros((40, 50), np.uint8)
    with pytest.raises(ValueError, match=r"one \(H, W\) image; pass a list"):
        detect_faces(one)
    with pytest.raises(ValueError, match="looks like one"):
        detect_faces(astronaut)
    with pytest.raises(TypeError, match="images must be a list"):
        detect_faces("photo.jpg")
    with pytest.raises(ValueError, match="alpha"):
        detect_faces([np.zeros((40, 40, 4), np.uint8)])
    with pytest.raises(ValueError, match="NaN"):
        detect_faces([np.full((40, 40), np.nan)])
    with pytest.raises(ValueError, match="negative"):
        detect_faces([np.full((40, 40), -1.0)])
    with pytest.raises(TypeError, match="numbers"):
        detect_faces([np.zeros((40, 40), bool)])
    with pytest.raises(ValueError, match=r"images\[0\] is empty"):
        detect_faces([np.zeros((0, 40), np.uint8)])
    with pytest.raises(ValueError, match="real numbers"):
        detect_faces([np.zeros((40, 40), np.complex64)])
    assert detect_faces([]) == []
    # a 1-pixel image is an image without a face, for every backend that runs here
    assert [b.shape for b in detect_faces([np.zeros((1, 1), np.uint8), np.zeros((1, 1, 3), np.uint8)])] == [(0, 5)] * 2


def test_layouts_and_pixel_scales_give_the_same_boxes(astronaut):
    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    ref = detect_faces([small], backend="skimage", min_size=40)[0]
    assert len(ref) >= 1
    ragged = np.empty(2, dtype=object)  # images of different sizes in an object array
    ragged[0], ragged[1] = small, np.zeros((30, 40), np.uint8)
    for images in ([small.astype(np.float64) / 255], small[None], ragged, (small,),
                   [cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)[..., None]]):
        got = detect_faces(images, backend="skimage", min_size=40)[0]
        np.testing.assert_allclose(got[0, :4], ref[0, :4], atol=3)


# ----------------------------------------------------------------------------- skimage backend
def test_skimage_finds_the_astronaut_face_at_any_position(astronaut):
    found = detect_faces([astronaut], backend="skimage", min_size=60)[0]
    assert found.shape == (1, 5) and found[0, 4] > 0
    assert box_iou(found, [ASTRONAUT_FACE])[0, 0] > 0.95
    # pasted into a larger grey picture at a known offset, the face moves with it
    canvas = np.full((700, 620, 3), 128, np.uint8)
    canvas[150:662, 90:602] = astronaut
    moved = detect_faces([canvas], backend="skimage", min_size=60, max_side=None)[0]
    assert box_iou(moved[:1], [ASTRONAUT_FACE + [90, 150, 0, 0]])[0, 0] > 0.8


def test_skimage_finds_several_faces_and_none_in_a_blank_image(astronaut):
    face = astronaut[40:200, 150:300]  # the face with some hair and neck around it
    canvas = np.full((200, 420, 3), 90, np.uint8)
    canvas[20:180, 10:160] = face
    canvas[20:180, 250:400] = face[:, ::-1]
    found = detect_faces([canvas, np.zeros((120, 160), np.uint8)], backend="skimage", min_size=60)
    assert len(found[1]) == 0 and found[1].shape == (0, 5)
    boxes = found[0]
    assert len(boxes) == 2
    assert np.all(np.diff(boxes[:, 4]) <= 0)  # best first
    centres = np.sort(boxes[:, 0] + boxes[:, 2] / 2)
    assert centres[0] < 160 < 250 < centres[1]


def test_large_images_are_searched_downscaled(astronaut):
    big = cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_LINEAR)
    boxes = FaceDetector("skimage", min_size=120, max_side=512).detect(big)
    assert box_iou(boxes[:1], [ASTRONAUT_FACE * 2])[0, 0] > 0.8


def test_grouping_does_not_depend_on_the_window_order():
    rng = np.random.RandomState(0)
    base = np.array([[100.0, 100, 50, 50], [300, 80, 30, 30]])
    windows = np.concatenate([b + rng.randint(-3, 4, (8, 4)) * [1, 1, 0, 0] for b in base]
                             + [[[10.0, 10, 24, 24]]])  # one lone window: below min_neighbors
    a = detection._group_windows(windows, 3, 24)
    b = detection._group_windows(windows[rng.permutation(len(windows))], 3, 24)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 2
    assert a[0, 4] == pytest.approx(8 * 50 / 24) and a[1, 4] == pytest.approx(8 * 30 / 24)


def test_auto_resolves_to_an_installed_backend():
    detector = FaceDetector()
    assert detector.backend_ == ("opencv-haar" if "opencv-haar" in available_backends() else "skimage")
    assert detector.backend_ in available_backends()


# ----------------------------------------------------------------------------- opencv-haar
@pytest.mark.skipif("opencv-haar" in available_backends(), reason="this OpenCV has the Haar cascades")
def test_opencv_haar_says_clearly_when_this_opencv_lacks_it():
    with pytest.raises(ValueError, match=r"CascadeClassifier|haarcascade_frontalface_default\.xml") as info:
        detect_faces([np.zeros((64, 64), np.uint8)], backend="opencv-haar")
    assert cv2.__version__ in str(info.value)


@pytest.mark.skipif("opencv-haar" not in available_backends(), reason="this OpenCV has no Haar cascades")
def test_opencv_haar_finds_the_astronaut(astronaut):
    boxes = detect_faces([astronaut], backend="opencv-haar", min_size=60)[0]
    assert box_iou(boxes[:1], [ASTRONAUT_FACE])[0, 0] > 0.5


def test_opencv_haar_wrapper_with_a_stand_in_classifier(monkeypatch, tmp_path):
    """The wrapper's own logic (model file, neighbour counts as scores, best first), whatever OpenCV is installed."""
    class FakeCascade:
        def __init__(self, path):
            self.path = path

        def empty(self):
            return False

        def detectMultiScale2(self, gray, scaleFactor, minNeighbors, minSize, maxSize):
            assert gray.ndim == 2 and minSize == (30, 30) and minNeighbors == 3
            return np.array([[1, 2, 30, 30], [40, 5, 50, 50]]), np.array([4, 9])

    xml = tmp_path / "cascade.xml"
    xml.write_text("<opencv_storage/>")
    monkeypatch.setattr(cv2, "CascadeClassifier", FakeCascade, raising=False)
    boxes = FaceDetector("opencv-haar", model=xml, min_size=30).detect(np.zeros((80, 100, 3), np.uint8))
    assert boxes.tolist() == [[40, 5, 50, 50, 9], [1, 2, 30, 30, 4]]
    with pytest.raises(ValueError, match="is not a file"):
        FaceDetector("opencv-haar", model=tmp_path / "missing.xml").detect(np.zeros((80, 100), np.uint8))


# ----------------------------------------------------------------------------- yunet
def test_yunet_needs_the_model_file_and_never_downloads(tmp_path):
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="needs model="):
        detect_faces([image], backend="yunet")
    with pytest.raises(ValueError, match="is not a file"):
        detect_faces([image], backend="yunet", model=tmp_path / "yunet.onnx")
    with pytest.raises(TypeError, match="model"):
        FaceDetector("yunet", model=3).detect(image)
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx file")
    if hasattr(cv2, "FaceDetectorYN"):
        with pytest.raises(ValueError, match="could not be loaded"):
            detect_faces([image], backend="yunet", model=bad)


def test_yunet_wrapper_with_a_stand_in_detector(monkeypatch, tmp_path):
    calls = {}

    class FakeYN:
        @staticmethod
        def create(model, config, input_size, score_threshold, nms_threshold, top_k):
            calls["create"] = (model, score_threshold)
            return FakeYN()

        def setInputSize(self, size):
            calls["size"] = size

        def detect(self, bgr):
            calls["shape"] = bgr.shape
            row = lambda x, w, s: [x, 10, w, w] + [0.0] * 10 + [s]  # noqa: E731
            return 1, np.array([row(5, 20, 0.7), row(40, 30, 0.95), row(0, 8, 0.99)], np.float32)

    onnx = tmp_path / "yunet.onnx"
    onnx.write_bytes(b"\0")
    monkeypatch.setattr(cv2, "FaceDetectorYN", FakeYN, raising=False)
    detector = FaceDetector("yunet", model=str(onnx), min_size=10, score_threshold=0.5)
    boxes = detector.detect(np.zeros((60, 90), np.uint8))
    assert calls == {"create": (str(onnx), 0.5), "size": (90, 60), "shape": (60, 90, 3)}
    np.testing.assert_allclose(boxes, [[40, 10, 30, 30, 0.95], [5, 10, 20, 20, 0.7]], rtol=1e-6)  # 8 px < min_size


# ----------------------------------------------------------------------------- callables
def test_a_callable_backend_is_validated_and_named_in_errors():
    image = np.zeros((50, 60), np.uint8)

    def four_columns(img):
        assert img.dtype == np.uint8 and img.shape == (50, 60)
        return [[1, 2, 10, 10], [20, 2, 12, 12]]

    assert detect_faces([image], backend=four_columns)[0].tolist() == [[1, 2, 10, 10, 1], [20, 2, 12, 12, 1]]
    assert detect_faces([image], backend=lambda img: [[1, 2, 10, 10, 0.2], [3, 3, 5, 5, 0.9]])[0][0, 4] == 0.9
    assert detect_faces([image], backend=lambda img: None)[0].shape == (0, 5)
    assert detect_faces([image], backend=lambda img: [])[0].shape == (0, 5)

    def three_columns(img):
        return [[1, 2, 3]]

    with pytest.raises(ValueError, match="three_columns.*shape"):
        detect_faces([image], backend=three_columns)
    with pytest.raises(ValueError, match="NaN or infinity"):
        detect_faces([image], backend=lambda img: [[np.nan, 0, 1, 1]])
    with pytest.raises(ValueError, match="x0, y0, x1, y1"):
        detect_faces([image], backend=lambda img: [[10, 10, 5, -5]])
    with pytest.raises(TypeError, match="must return an array-like"):
        detect_faces([image], backend=lambda img: [["a", "b", "c", "d"]])


# ----------------------------------------------------------------------------- the detector object
def test_detector_parameters_are_checked_and_it_clones_and_pickles(astronaut):
    with pytest.raises(ValueError, match="backend"):
        FaceDetector("dlib").detect(astronaut)
    with pytest.raises(ValueError, match="scale_factor"):
        FaceDetector(scale_factor=1.0).detect(astronaut)
    with pytest.raises(ValueError, match="max_size=10 must be >= min_size=24"):
        FaceDetector(max_size=10).detect(astronaut)
    detector = FaceDetector("skimage", min_size=60)
    first = detector(astronaut)
    assert detector.get_params()["min_size"] == 60
    again = pickle.loads(pickle.dumps(detector))
    assert "_cache" in vars(detector) and "_cache" not in vars(again)  # pickling leaves the original alone
    np.testing.assert_array_equal(again.detect(astronaut), first)
    copy = clone(detector).set_params(min_size=200)
    assert len(copy.detect(astronaut)) == 0 and detector.min_size == 60
    detector.set_params(max_size=80)  # a changed parameter rebuilds the backend
    smaller = detector.detect(astronaut)
    assert len(smaller) == 1 and smaller[0, 2] <= 80 < first[0, 2]


def ytf68_rows(ytf68_dir, folder, step, n):
    """Every ``step``-th of the first ``step * n`` ytf68 rows, read through a small CSV (fast)."""
    from skkp.datasets import load_landmarks_csv

    lines = (ytf68_dir / "keypoints.csv").read_text().splitlines()
    (folder / "subset.csv").write_text("\n".join([lines[0]] + lines[1:1 + step * n:step]) + "\n")
    return load_landmarks_csv(folder / "subset.csv", ytf68_dir / "images")


def test_ytf68_faces_are_found(ytf68_dir, tmp_path):
    data = ytf68_rows(ytf68_dir, tmp_path, 97, 8)
    found = detect_faces(data.images, backend="skimage")
    iou = [box_iou(b[:1], keypoint_boxes(kp[None]))[0, 0] if len(b) else 0.0 for b, kp in zip(found, data.keypoints)]
    assert np.mean(np.array(iou) > 0.3) >= 0.6
