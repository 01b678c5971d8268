"""skkp.faces.FaceKeypointRegressor: keypoints on whole photos (detect, calibrate, crop, regress, map back)."""
import warnings

import cv2
import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator

from skkp.datasets import crop_faces, make_noses
from skkp.detection import BoxCalibration, FaceDetector, box_iou, keypoint_boxes
from skkp.faces import FaceKeypointRegressor

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: the map from the test detector's boxes to the landmark-extent boxes
TRUTH = BoxCalibration(dx=0.05, dy=0.15, scale_x=0.9, scale_y=1.2)
#: a face shape in its unit box: its extent is exactly [0, 1] x [0, 1]
TEMPLATE = np.array([[0.5, 0.0], [0.0, 0.3], [1.0, 0.3], [0.5, 0.6], [0.2, 1.0], [0.8, 1.0]])


class MeanRegressor(RegressorMixin, BaseEstimator):
    """Predicts the mean training target: exact when every crop shows the same face shape."""

    def fit(self, X, y):
        self.mean_ = np.mean(np.asarray(y, dtype=float).reshape(len(y), -1), axis=0)
        self.n_fit_, self.crop_shape_ = len(X), np.shape(X)[1:]
        return self

    def predict(self, X):
        return np.tile(self.mean_, (len(X), 1))


class Exploding(RegressorMixin, BaseEstimator):
    def fit(self, X, y):
        raise AssertionError("training started before the inputs were checked")

    def predict(self, X):
        raise AssertionError


def rect_detector(image):
    """Finds the bright squares the test scenes use as faces, one box (x, y, w, h) each."""
    _, _, stats, _ = cv2.connectedComponentsWithStats((image > 127).astype(np.uint8))
    return stats[1:, :4]


def scene(rng, n_faces=1, shape=None):
    """A dark picture with bright detector squares and the landmarks TRUTH puts in them."""
    h, w = shape or (int(rng.randint(120, 200)), int(rng.randint(120, 220)))
    image = np.full((h, w), 20, np.uint8)
    points = []
    for k in range(n_faces):
        side = int(rng.randint(30, 50))
        x = int(rng.randint(5, w // n_faces - side - 5)) + k * (w // n_faces)
        y = int(rng.randint(5, h - side - 5))
        image[y:y + side, x:x + side] = 200
        face = TRUTH.apply([[x, y, side, side]])[0]
        points.append(face[:2] + TEMPLATE * face[2:])
    return image, np.array(points)


def scenes(n, seed, **kwargs):
    rng = np.random.RandomState(seed)
    images, points = zip(*(scene(rng, **kwargs) for _ in range(n)))
    return list(images), np.array([p[0] for p in points])


# ----------------------------------------------------------------------------- exactness
def test_points_map_back_from_the_crop_exactly():
    """The crop frame of a box, computed here from crop_faces' definition, and predict's map back."""
    size, margin = 40, 0.3
    crop_points = np.array([[0.0, 0.0], [39.0, 39.0], [12.25, 30.5]])
    model = FaceKeypointRegressor(FrozenEstimator(MeanRegressor().fit(np.zeros((1, size, size)), crop_points[None])),
                                  detector=rect_detector, size=size, margin=margin, refine=0)
    images, points = scenes(4, seed=0)
    model.fit(images, points[:, :3])  # three points, as the regressor predicts; fit only calibrates
    model.calibration_ = BoxCalibration()  # boxes are used as given
    boxes = np.array([[30.0, 20.0, 50.0, 40.0], [10.5, 7.25, 33.0, 61.0], [0.0, 0.0, 20.0, 20.0], [60, 70, 45, 45]])
    pred = model.predict(images, boxes=boxes)
    for box, got in zip(boxes, pred):
        side = max(box[2], box[3]) * (1 + 2 * margin)
        left, top = box[:2] + box[2:] / 2 - side / 2
        k = size / side  # crop pixel u shows image x = (u + 0.5) / k + left
        np.testing.assert_allclose(got, (crop_points + 0.5) / k + [left, top], rtol=0, atol=1e-9)
    # and crop_faces itself: image -> crop -> image is the identity
    pts = np.array([[35.0, 22.0, 70.5, 50.0, 41.0, 58.0]])
    out = crop_faces([images[0]], pts, size=size, margin=margin)
    from skkp.datasets import uncrop_keypoints
    np.testing.assert_allclose(uncrop_keypoints(out.keypoints, out.transforms), pts, atol=1e-12)


@pytest.mark.parametrize("refine", [0, 1])
def test_fit_learns_the_calibration_and_predict_is_exact(refine):
    images, points = scenes(12, seed=1)
    model = FaceKeypointRegressor(MeanRegressor(), detector=rect_detector, size=48, jitter=0.0, refine=refine)
    model.fit(images, points)
    cal = model.calibration_
    assert (cal.dx, cal.dy, cal.scale_x, cal.scale_y, cal.n_boxes) == (0.05, 0.15, 0.9, 1.2, 12)
    assert model.detection_rate_ == 1.0 and model.n_keypoints_ == 6 and model.y_ndim_ == 3
    assert model.regressor_.n_fit_ == 12 and model.regressor_.crop_shape_ == (48, 48)
    new_images, new_points = scenes(5, seed=2)  # other sizes, positions and scales
    pred = model.predict(new_images)
    assert pred.shape == (5, 6, 2)
    np.testing.assert_allclose(pred, new_points, atol=1e-8)
    assert model.score(new_images, new_points.reshape(5, -1)) == pytest.approx(1.0)
    flat = FaceKeypointRegressor(MeanRegressor(), detector=rect_detector, jitter=0.0)
    flat.fit(images, points.reshape(12, -1))
    assert flat.predict(new_images).shape == (5, 12)


def test_several_faces_no_face_and_given_boxes():
    images, points = scenes(10, seed=3)
    model = FaceKeypointRegressor(MeanRegressor(), detector=rect_detector, size=48, jitter=0.0).fit(images, points)
    rng = np.random.RandomState(4)
    two, two_points = scene(rng, n_faces=2, shape=(150, 260))
    blank = np.full((90, 100), 20, np.uint8)
    with pytest.warns(UserWarning, match="no face found in 1 of 3 images"):
        pred, boxes = model.predict([two, blank, images[0]], return_boxes=True)
    assert np.isnan(pred[1]).all() and np.isnan(boxes[1]).all()
    by_x = lambda faces: faces[np.argsort(faces[:, :, 0].mean(axis=1))]  # noqa: E731
    assert any(np.allclose(pred[0], p, atol=1e-8) for p in two_points)  # the first of equal scores
    np.testing.assert_allclose(boxes[2, :4], keypoint_boxes(points[:1])[0], atol=1e-9)
    every, every_boxes = model.predict_faces([two, blank])
    assert [len(p) for p in every] == [2, 0] and every[0].shape == (2, 6, 2) and every_boxes[1].shape == (0, 5)
    np.testing.assert_allclose(by_x(every[0]), by_x(two_points), atol=1e-8)
    np.testing.assert_allclose(every[0][0], pred[0])
    # boxes given instead of detected: one row per image (NaN = none), or a list per image
    det = np.array([rect_detector(im)[0] for im in images[:3]], dtype=float)
    np.testing.assert_allclose(model.predict(images[:3], boxes=det), points[:3], atol=1e-8)
    det[1] = np.nan
    with pytest.warns(UserWarning, match="1 of 3"):
        assert np.isnan(model.predict(images[:3], boxes=det)[1]).all()
    listed, _ = model.predict_faces([two, blank], boxes=[rect_detector(two), []])
    np.testing.assert_allclose(by_x(listed[0]), by_x(two_points), atol=1e-8)
    with pytest.raises(ValueError, match="one entry per image"):
        model.predict([two, blank], boxes=[rect_detector(two)])
    with pytest.raises(ValueError, match="positive width"):
        model.predict([blank], boxes=[[[0, 0, -3, 5]]])
    with pytest.raises(TypeError, match="boxes must be None"):
        model.predict([blank], boxes="auto")


def test_missed_training_faces_still_train_and_no_detection_at_all_warns():
    images, points = scenes(8, seed=5)
    images[2] = np.full_like(images[2], 20)  # the detector misses this face, its landmarks still train
    model = FaceKeypointRegressor(MeanRegressor(), detector=rect_detector, jitter=0.0).fit(images, points)
    assert model.detection_rate_ == 7 / 8 and model.calibration_.n_boxes == 7 and model.regressor_.n_fit_ == 8
    with pytest.warns(UserWarning, match="found no face.*identity"):
        blind = FaceKeypointRegressor(MeanRegressor(), detector=lambda im: None).fit(images, points)
    assert blind.calibration_ == BoxCalibration() and blind.detection_rate_ == 0.0
    points = points.copy()
    points[3] = np.nan
    with pytest.warns(UserWarning, match="1 of 8 rows of keypoints have no labelled point"):
        model.fit(images, points)
    assert model.regressor_.n_fit_ == 7


# ----------------------------------------------------------------------------- estimator API
def test_prefit_regressor_in_a_frozen_estimator_only_calibrates():
    images, points = scenes(6, seed=6)
    crops = crop_faces(images, points, size=32, margin=0.25)
    inner = MeanRegressor().fit(crops.images, crops.keypoints)
    model = FaceKeypointRegressor(FrozenEstimator(inner), detector=rect_detector, size=32).fit(images, points)
    assert model.regressor_.estimator is inner and inner.n_fit_ == 6
    np.testing.assert_allclose(model.predict(images), points, atol=1e-8)
    with pytest.raises(NotFittedError):
        FaceKeypointRegressor(FrozenEstimator(MeanRegressor()), detector=rect_detector).fit(images, points)


def test_params_clone_and_inputs_left_alone():
    from skkp import NoseKeypointRegressor

    detector = FaceDetector(rect_detector)
    model = FaceKeypointRegressor(NoseKeypointRegressor(max_epochs=3), detector=detector)
    params = model.get_params()
    assert params["regressor__max_epochs"] == 3 and params["detector__backend"] is rect_detector
    model.set_params(regressor__max_epochs=1, detector__min_size=10, margin=0.3)
    assert model.regressor.max_epochs == 1 and detector.min_size == 10
    copy = clone(model)
    assert copy.get_params()["regressor__max_epochs"] == 1 and copy.regressor is not model.regressor
    images, points = scenes(4, seed=7)
    kept_images, kept_points = [im.copy() for im in images], points.copy()
    fitted = FaceKeypointRegressor(MeanRegressor(), detector=detector).fit(images, points)
    fitted.predict(images)
    assert all(np.array_equal(a, b) for a, b in zip(images, kept_images)) and np.array_equal(points, kept_points)
    assert "_cache" not in vars(detector) and fitted.detector_ is not detector  # the user's detector is cloned


def test_inputs_are_checked_before_any_training(tmp_path):
    images, points = scenes(3, seed=8)
    good = dict(regressor=Exploding(), detector=rect_detector)
    cases = [
        (dict(regressor="cnn"), (images, points), ValueError, "regressor"),
        (dict(detector="dlib"), (images, points), ValueError, "detector"),
        (dict(margin=-0.1), (images, points), ValueError, "margin"),
        (dict(size=8), (images, points), ValueError, "size"),
        (dict(match_iou=1.5), (images, points), ValueError, "match_iou"),
        (dict(jitter=(0.1,)), (images, points), ValueError, "jitter"),
        (dict(detector="yunet"), (images, points), ValueError, "model="),
        ({}, ("photos/", points), TypeError, "images must be a list"),
        ({}, ([], points), ValueError, "images is empty"),
        ({}, (images[0], points), ValueError, "one \\(H, W\\) image"),
        ({}, (images, points[:2]), ValueError, "keypoints has 2 rows but there are 3 images"),
        ({}, (images, None), ValueError, "keypoints is None"),
        ({}, (images, points.reshape(3, -1)[:, :5]), ValueError, "even number"),
        ({}, (images, np.full_like(points, np.nan)), ValueError, "no labelled point"),
    ]
    for params, args, error, message in cases:
        with pytest.raises(error, match=message):
            FaceKeypointRegressor(**{**good, **params}).fit(*args)
    with pytest.raises(ValueError, match="groups"):
        FaceKeypointRegressor(**good).fit(images, points, groups=[1, 2])
    with pytest.raises(NotFittedError):
        FaceKeypointRegressor().predict(images)
    six = FaceKeypointRegressor(FrozenEstimator(type("K", (MeanRegressor,), {"n_keypoints_": 9})().fit([0], [[0, 0]])),
                                detector=rect_detector)
    with pytest.raises(ValueError, match="predicts 9 keypoints but keypoints has 6"):
        six.fit(images, points)


def test_end_to_end_with_a_tiny_network_on_pasted_noses():
    from skkp import NoseKeypointRegressor

    rng = np.random.RandomState(0)
    noses, nose_points = make_noses(48, image_size=32, random_state=0)
    images, points, boxes = [], [], []
    for nose, pts in zip(noses, nose_points.reshape(48, -1, 2)):
        h, w = rng.randint(60, 110, size=2)
        x, y = rng.randint(0, w - 32), rng.randint(0, h - 32)
        photo = np.zeros((h, w), np.uint8)
        photo[y:y + 32, x:x + 32] = np.maximum(nose, 1)  # the "detector" finds the non-zero square
        images.append(photo)
        points.append(pts + [x, y])
        boxes.append([x, y, 32, 32])
    points, boxes = np.array(points), np.array(boxes, float)

    def paste_detector(image):
        ys, xs = np.nonzero(image)
        return [[xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]] if len(xs) else []

    inner = NoseKeypointRegressor(architecture="cnn", image_size=32, max_epochs=1, random_state=0, device="cpu")
    model = FaceKeypointRegressor(inner, detector=paste_detector, size=32, refine=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every face found, nothing to warn about
        model.fit(images[:40], points[:40])
    assert model.detection_rate_ == 1.0 and model.regressor_ is not inner and not hasattr(inner, "net_")
    # the nose landmarks fill part of the pasted square: the calibration shrinks it onto them
    cal = model.calibration_
    assert cal.scale_x < 1 and cal.scale_y < 1 and cal.n_boxes == 40
    expected = np.median(box_iou(cal.apply(boxes[40:]), keypoint_boxes(points[40:])).diagonal())
    assert expected > 0.5  # the noses vary in scale and position inside their square
    pred = model.predict(images[40:])
    assert pred.shape == (8, 7, 2) and np.isfinite(pred).all()
    # noses sit anywhere in 60-110 px pictures: a wrong map back would be off by tens of pixels
    assert np.linalg.norm(pred - points[40:], axis=2).mean() < 6
    # boxes given in the detector's convention give the same points
    np.testing.assert_allclose(model.predict(images[40:], boxes=boxes[40:]), pred)
    assert np.isfinite(model.score(images[40:], points[40:]))
    assert np.isfinite(model.set_params(refine=2).predict(images[40:])).all()
    assert model.set_params(regressor__max_epochs=2).regressor.max_epochs == 2


def test_real_faces_with_the_pretrained_model(ytf68_dir, tmp_path):
    from skkp.datasets import load_landmarks_csv
    from skkp.pretrained import load_model

    lines = (ytf68_dir / "keypoints.csv").read_text().splitlines()
    (tmp_path / "subset.csv").write_text("\n".join([lines[0]] + lines[1:1 + 24 * 131:131]) + "\n")
    data = load_landmarks_csv(tmp_path / "subset.csv", ytf68_dir / "images")
    model = FaceKeypointRegressor(FrozenEstimator(load_model("ibug68_face", device="cpu")), detector="skimage")
    model.fit(data.images[:16], data.keypoints[:16])
    assert model.detection_rate_ >= 0.6
    assert model.calibration_.dy > 0  # the cascade box sits higher than the landmarks (it misses the chin)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a face the cascade misses
        pred = model.predict(data.images[16:])
    true = data.keypoints[16:].reshape(-1, 68, 2)
    eyes = np.linalg.norm(true[:, 45] - true[:, 36], axis=1)
    nme = np.nanmean(np.linalg.norm(pred.reshape(-1, 68, 2) - true, axis=2), axis=1) / eyes
    found = np.isfinite(nme)
    assert found.mean() >= 0.6 and np.median(nme[found]) < 0.15


def test_from_regressor_frames_faces_from_the_detector_without_labels():
    images, points = scenes(4, seed=9)
    crops = crop_faces(images, points, size=40, margin=0.25)
    inner = MeanRegressor().fit(crops.images, crops.keypoints)
    inner.n_outputs_, inner.image_size = 12, 40
    # the detector's box is the landmark box here: no calibration needed, the crops match the training crops
    exact = lambda image: TRUTH.apply(rect_detector(image))  # noqa: E731
    model = FaceKeypointRegressor.from_regressor(inner, detector=exact, refine=0)
    assert model.size == 40 and model.calibration_ == BoxCalibration() and np.isnan(model.detection_rate_)
    np.testing.assert_allclose(model.predict(images).reshape(4, 6, 2), points, atol=1e-8)
    # with the raw detector box and a known calibration instead
    calibrated = FaceKeypointRegressor.from_regressor(inner, detector=rect_detector, calibration=TRUTH.to_dict())
    np.testing.assert_allclose(calibrated.predict(images).reshape(4, 6, 2), points, atol=1e-8)
    with pytest.raises(TypeError, match="fitted keypoint model"):
        FaceKeypointRegressor.from_regressor(MeanRegressor())  # unfitted: no n_outputs_
    with pytest.raises(ValueError, match="margin"):
        FaceKeypointRegressor.from_regressor(inner, margin=-1)


def test_calibration_searches_at_most_max_calibration_images_and_auto_is_resolved():
    images, points = scenes(12, seed=10)
    searched = []

    def counting(image):
        searched.append(1)
        return rect_detector(image)

    model = FaceKeypointRegressor(MeanRegressor(), detector=counting, jitter=0.0, max_calibration_images=5,
                                  random_state=0).fit(images, points)
    assert len(searched) == 5 and model.calibration_.n_boxes == 5 and model.regressor_.n_fit_ == 12
    every = FaceKeypointRegressor(MeanRegressor(), detector=rect_detector).fit(images, points).calibration_
    assert every.n_boxes == 12 and model.calibration_.to_dict() == {**every.to_dict(), "n_boxes": 5}  # the same map
    with pytest.raises(ValueError, match="max_calibration_images"):
        FaceKeypointRegressor(MeanRegressor(), detector=counting, max_calibration_images=0).fit(images, points)
    # "auto" becomes the backend it picked, so a saved model keeps detecting the way it was calibrated
    with pytest.warns(UserWarning, match="identity"):
        auto = FaceKeypointRegressor(MeanRegressor(), detector="auto", jitter=0.0).fit(images[:2], points[:2])
    assert auto.detector_.backend in ("skimage", "opencv-haar") and auto.detector == "auto"


class ShiftedMean(MeanRegressor):
    """MeanRegressor plus ``shift`` pixels on every coordinate: a parameter for searches to tune."""

    def __init__(self, shift=0.0):
        self.shift = shift

    def predict(self, X):
        return super().predict(X) + self.shift


def test_searches_pipelines_and_cross_validation_reach_the_inner_estimators():
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    images, points = scenes(12, seed=11)
    model = FaceKeypointRegressor(ShiftedMean(), detector=FaceDetector(rect_detector), jitter=0.0)
    blind = lambda image: []  # noqa: E731  (a detector that finds nothing: NaN predictions, the worst score)
    search = GridSearchCV(model, {"regressor__shift": [3.0, 0.0], "detector__backend": [blind, rect_detector]}, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the blind detector's warnings
        search.fit(images, points)
    assert search.best_params_ == {"regressor__shift": 0.0, "detector__backend": rect_detector}
    assert search.best_score_ == pytest.approx(1.0)
    scores = cross_val_score(model, images, points, cv=3)
    assert scores == pytest.approx([1.0] * 3)
    pipe = make_pipeline(FunctionTransformer(lambda ims: [np.asarray(im) for im in ims]), model).fit(images, points)
    np.testing.assert_allclose(pipe.predict(images[:3]), points[:3], atol=1e-8)


def test_joblib_round_trip_in_a_fresh_process(tmp_path):
    import subprocess
    import sys

    import joblib

    from skkp import NoseKeypointRegressor

    noses, nose_points = make_noses(24, image_size=32, random_state=0)
    photos = np.full((24, 60, 80), 30, np.uint8)
    photos[:, 10:42, 30:62] = noses
    inner = NoseKeypointRegressor(architecture="cnn", image_size=32, max_epochs=1, random_state=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # what the cascade makes of synthetic noses does not matter
        model = FaceKeypointRegressor(inner, detector=FaceDetector("skimage", min_size=30), size=32,
                                      random_state=0).fit(photos, nose_points.reshape(24, -1, 2) + [30, 10])
    boxes = np.tile([30.0, 10, 32, 32], (3, 1))
    expected = model.predict(photos[:3], boxes=boxes)
    joblib.dump((model, photos[:3], boxes), tmp_path / "m.joblib")
    code = ("import joblib, numpy as np, sys; m, x, b = joblib.load(sys.argv[1]); "
            "np.save(sys.argv[2], m.predict(x, boxes=b))")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.joblib"), str(tmp_path / "p.npy")], check=True,
                   timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), expected)


def test_auto_jitter_matches_how_far_the_detector_boxes_stray():
    images, points = scenes(30, seed=12)
    exact = FaceKeypointRegressor(MeanRegressor(), detector=rect_detector, jitter="auto").fit(images, points)
    assert exact.jitter_ == (0.05, 0.1)  # calibrated boxes are the landmark boxes: the smallest jitter
    rng = np.random.RandomState(0)

    def sloppy(image):  # the right square, moved and resized by up to 20% of its side
        box = rect_detector(image).astype(float)
        side = box[:, 2:3]
        return np.c_[box[:, :2] + rng.uniform(-0.2, 0.2, (len(box), 2)) * side,
                     box[:, 2:] * rng.uniform(0.8, 1.2, (len(box), 1))]

    model = FaceKeypointRegressor(MeanRegressor(), detector=sloppy, jitter="auto", random_state=0).fit(images, points)
    shift, scale = model.jitter_
    assert 0.1 < shift < 0.4 and 0.1 <= scale < 0.4
    assert model.get_params()["jitter"] == "auto"
    with pytest.raises(ValueError, match="jitter"):
        FaceKeypointRegressor(MeanRegressor(), detector=rect_detector, jitter="wide").fit(images, points)
