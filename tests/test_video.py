"""skkp.video: the One Euro filter, the face tracker, reading videos, and `skkp predict VIDEO_FILE`."""
import csv

import cv2
import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin

from skkp.cli import main
from skkp.faces import FaceKeypointRegressor
from skkp.video import FaceTracker, OneEuroFilter, read_video, track_video

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: the face points in the unit square of the bright square that stands for a face
TEMPLATE = np.array([[0.5, 0.1], [0.2, 0.35], [0.8, 0.35], [0.5, 0.6], [0.25, 0.9], [0.75, 0.9]])


def square_detector(image):
    """The bright squares of the test frames, as (x, y, w, h) boxes."""
    _, _, stats, _ = cv2.connectedComponentsWithStats((image > 127).astype(np.uint8))
    return stats[1:, :4]


class SquareRegressor(RegressorMixin, BaseEstimator):
    """Finds the bright square in each crop and puts TEMPLATE into it: exact, wherever the crop is."""

    n_outputs_ = 2 * len(TEMPLATE)

    def fit(self, X, y):
        return self

    def predict(self, X):
        out = np.full((len(X), self.n_outputs_), np.nan)
        for i, crop in enumerate(np.asarray(X)):
            ys, xs = np.nonzero(crop > 127)
            if xs.size:
                lo, side = np.array([xs.min(), ys.min()]) - 0.5, np.array([np.ptp(xs), np.ptp(ys)]) + 1.0
                out[i] = (lo + TEMPLATE * side).ravel()
        return out


def frame_with_square(x, y, side=40, shape=(120, 160)):
    """A textured dark frame with a bright square at (x, y) and its true points."""
    rng = np.random.RandomState(0)  # the same background texture in every frame
    image = rng.randint(10, 60, size=shape).astype(np.uint8)
    image[int(y):int(y) + side, int(x):int(x) + side] = 220
    return image, (np.array([int(x), int(y)], float) - 0.5 + TEMPLATE * side).ravel()


def square_model(detector=square_detector):
    return FaceKeypointRegressor.from_regressor(SquareRegressor(), detector=detector, size=64, refine=0)


# ----------------------------------------------------------------------------- One Euro filter
def test_one_euro_smooths_a_still_point_and_follows_a_moving_one():
    rng = np.random.RandomState(0)
    fps, n = 30.0, 300
    still = 50 + rng.normal(0, 1.0, size=(n, 2))
    f = OneEuroFilter(min_cutoff=1.0, beta=2.0)
    smooth = np.array([f(p[None], t=i / fps, scale=50.0)[0] for i, p in enumerate(still)])
    step = lambda p: np.linalg.norm(np.diff(p, axis=0), axis=1).mean()  # noqa: E731  (frame-to-frame jitter)
    assert step(smooth[30:]) < step(still[30:]) / 3
    # a point moving at one face size (50 px) per second: a higher beta lags less
    ramp = np.c_[np.arange(n) * 50 / fps, np.zeros(n)]
    lags = []
    for beta in (0.0, 2.0, 20.0):
        f = OneEuroFilter(min_cutoff=1.0, beta=beta)
        out = np.array([f(p[None], t=i / fps, scale=50.0)[0] for i, p in enumerate(ramp)])
        lags.append(np.abs(out[-1, 0] - ramp[-1, 0]))
    assert lags[0] > lags[1] > lags[2] and lags[2] < 2.0
    # scale makes it resolution-free: twice the pixels and twice the face size, twice the output
    a, b = OneEuroFilter(beta=2.0), OneEuroFilter(beta=2.0)
    for i, p in enumerate(still[:20] + ramp[:20]):
        pa, pb = a(p[None], i / fps, scale=50.0), b(2 * p[None], i / fps, scale=100.0)
    np.testing.assert_allclose(pb, 2 * pa)


def test_one_euro_resets_on_nan_and_checks_its_arguments():
    f = OneEuroFilter()
    f([1.0, 2.0], t=0.0)
    f([3.0, 2.0], t=0.1)
    assert np.isnan(f([np.nan, 2.0], t=0.2)).any()
    np.testing.assert_array_equal(f([9.0, 9.0], t=0.3), [9.0, 9.0])  # after a NaN the next value passes as it is
    with pytest.raises(ValueError, match="t must increase"):
        f([9.0, 9.0], t=0.3)
    for kwargs, name in (({"min_cutoff": 0}, "min_cutoff"), ({"beta": -1}, "beta"), ({"d_cutoff": np.inf}, "d_cutoff"),
                         ({"beta": "2"}, "beta")):
        with pytest.raises(ValueError, match=name):
            OneEuroFilter(**kwargs)


# ----------------------------------------------------------------------------- tracker
def test_tracker_follows_a_moving_face_and_finds_it_again_after_a_cut_and_a_gap():
    path = [(20 + 2 * i, 30 + i) for i in range(10)]  # moving 2 px right, 1 px down per frame
    path += [(100, 60)] * 3  # a cut: the face is elsewhere
    path += [None] * 2  # no face
    path += [(40, 20)] * 3  # back
    calls = []

    def counting_detector(image):
        calls.append(1)
        return square_detector(image)

    tracker = FaceTracker(square_model(counting_detector), detect_every=0)
    statuses = []
    for i, where in enumerate(path):
        if where is None:
            image, truth = np.random.RandomState(0).randint(10, 60, size=(120, 160)).astype(np.uint8), None
        else:
            image, truth = frame_with_square(*where)
        found = tracker.update(image, t=i / 25)
        statuses.append(found.status)
        if truth is None:
            assert np.isnan(found.points).all() and np.isnan(found.box).all()
        else:
            np.testing.assert_allclose(found.points, truth, atol=0.5)  # the crop resamples the frame
    assert statuses == (["detected"] + ["tracked"] * 9 + ["detected"] + ["tracked"] * 2 + ["none"] * 2
                        + ["detected"] + ["tracked"] * 2)
    assert len(calls) == 1 + 1 + 2 + 1  # the detector ran only to (re)find the face


def test_tracker_checks_with_the_detector_and_drops_a_face_it_stops_seeing():
    seen = {"faces": True}

    def switchable(image):
        return square_detector(image) if seen["faces"] else []

    tracker = FaceTracker(square_model(switchable), detect_every=3)
    image, _ = frame_with_square(40, 40)
    statuses = [tracker.update(image, t=i / 25).status for i in range(4)]
    assert statuses == ["detected", "tracked", "tracked", "tracked"]
    seen["faces"] = False  # the detector stops seeing the face: one missed check is forgiven, two are not
    statuses = [tracker.update(image, t=(4 + i) / 25).status for i in range(6)]
    assert statuses == ["tracked", "tracked", "tracked", "tracked", "tracked", "none"]
    # a second face appearing does not move the track; a detector that sees faces, none where the track is,
    # moves it to the best of them
    seen["faces"] = True
    tracker = FaceTracker(square_model(switchable), detect_every=2)
    tracker.update(image, t=0)
    both = image.copy()
    both[60:100, 100:140] = 220
    assert [tracker.update(both, t=i / 25).status for i in (1, 2, 3)] == ["tracked"] * 3
    only_second = {"box": [[100, 60, 40, 40]]}
    tracker = FaceTracker(square_model(lambda im: only_second["box"]), detect_every=2, min_similarity=-1)
    assert tracker.update(both, t=0).status == "detected"
    assert tracker.update(both, t=0.04).box[0] > 90  # following the square at x=100
    only_second["box"] = [[40, 40, 40, 40]]  # now the detector sees only the first square
    found = tracker.update(both, t=0.08)
    assert found.status == "detected" and found.box[0] < 50


def test_tracker_smooths_and_checks_its_arguments():
    image, truth = frame_with_square(40, 40)
    noisy = [frame_with_square(40 + dx, 40)[0] for dx in (0, 1, 0, 1, 0, 1, 0, 1)]  # a 1-px flicker
    raw = [f.points for f in track_video(square_model(), noisy, fps=25)]
    smooth = [f.points for f in track_video(square_model(), noisy, fps=25, smoother=OneEuroFilter(1.0, 0.0))]
    jitter = lambda p: np.abs(np.diff(np.array(p)[:, 0])).mean()  # noqa: E731
    assert jitter(raw) == pytest.approx(1.0, abs=0.1) and jitter(smooth) < 0.5
    with pytest.raises(TypeError, match="FaceKeypointRegressor"):
        FaceTracker(SquareRegressor())
    with pytest.raises(TypeError, match="smoother"):
        FaceTracker(square_model(), smoother="one-euro")
    for kwargs, name in (({"detect_every": -1}, "detect_every"), ({"min_iou": 0}, "min_iou"),
                         ({"min_similarity": 2}, "min_similarity")):
        with pytest.raises(ValueError, match=name):
            FaceTracker(square_model(), **kwargs)
    with pytest.raises(ValueError, match="fps"):
        list(track_video(square_model(), noisy, fps=0))
    with pytest.raises(ValueError, match="frame"):
        FaceTracker(square_model()).update(np.zeros((0, 4), np.uint8), t=0)


# ----------------------------------------------------------------------------- files and the command line
def write_video(path, frames, fps=25.0):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def test_read_video_round_trip_and_errors(tmp_path):
    frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(5)]
    got, fps = read_video(write_video(tmp_path / "v.avi", frames, fps=12.0))
    got = list(got)
    assert fps == 12.0 and len(got) == 5 and got[0].shape == (48, 64, 3)
    assert [int(round(g.mean())) for g in got] == pytest.approx([40 * i for i in range(5)], abs=3)
    with pytest.raises(ValueError, match="not found"):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "text.mp4").write_text("this is not a video")
    with pytest.raises(ValueError, match="cannot be opened as a video|no frame"):
        read_video(tmp_path / "text.mp4")


def test_predict_on_a_video_writes_a_row_per_frame_and_an_overlay_video(tmp_path, capsys):
    skimage_data = pytest.importorskip("skimage.data")
    photo = cv2.resize(skimage_data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    frames = [np.roll(photo, shift, axis=1) for shift in range(0, 16, 2)]  # the face slides right 2 px a frame
    video = write_video(tmp_path / "walk.avi", frames)
    out = tmp_path / "out"
    assert main(["predict", str(video), "--model", "ibug68_face", "--out", str(out), "--quiet"]) == 0
    with open(out / "points.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["status"] for r in rows] == ["detected"] + ["tracked"] * 7
    assert [r["frame"] for r in rows] == [str(i) for i in range(8)] and len(rows[0]) == 7 + 136
    xs = np.array([[float(r[f"x{i}"]) for i in range(68)] for r in rows]).mean(axis=1)
    assert 80 < xs[0] < 150 and 8 < xs[-1] - xs[0] < 20  # it follows the face's 14 px slide
    overlay, fps = read_video(out / "overlay.avi")
    assert fps == 25.0 and len(list(overlay)) == 8
    assert "detected in 1, tracked in 7, not found in 0" in capsys.readouterr().out
    # without smoothing or overlays
    assert main(["predict", str(video), "--model", "ibug68_face", "--out", str(tmp_path / "raw"), "--smooth", "none",
                 "--no-overlays", "--quiet"]) == 0
    assert not (tmp_path / "raw" / "overlay.avi").exists()
    # a file that is not a video: one line, exit 2
    (tmp_path / "notes.mov").write_text("not a video")
    assert main(["predict", str(tmp_path / "notes.mov"), "--model", "ibug68_face", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "notes.mov" in err and "video" in err
    assert main(["predict", str(video), "--model", "ibug68_face", "--out", str(out), "--beta", "-1"]) == 2
    assert "--beta" in capsys.readouterr().err
