"""Keypoints on videos: read the frames, follow one face from frame to frame, smooth its points.

:class:`FaceTracker` runs a fitted :class:`~skkp.faces.FaceKeypointRegressor` on a video the way
face-landmark tools do: it detects the face on the first frame (and whenever the track is lost),
and otherwise frames each frame's crop on the points of the previous frame, which is cheaper than
detecting and closer to the framing the keypoint model was trained on. :class:`OneEuroFilter`
smooths the points over time. :func:`read_video` reads the frames with OpenCV.

Numpy and OpenCV only; the model brings its own dependencies.
"""
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .detection import box_iou, keypoint_boxes, xywh_to_xyxy

__all__ = ["FaceTracker", "OneEuroFilter", "TrackedFrame", "read_video", "track_video"]


def _check_positive(value, name, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} finite number, "
                         f"got {value!r}.")
    return float(value)


class OneEuroFilter:
    """The One Euro filter (Casiez, Roussel and Vogel, CHI 2012) for keypoints over time.

    An exponential smoother whose cut-off frequency rises with the speed of the points: a
    still face is smoothed hard (``min_cutoff``: little jitter), a moving one lightly (``beta``:
    little lag). Each point gets its own cut-off from its own speed (the length of its 2-D
    velocity), so its x and y are smoothed alike. Speeds are measured in face sizes per second
    (pixels per second divided by the ``scale`` given with each frame, e.g. the face box's
    side), so the parameters do not depend on the resolution of the video.

    Parameters
    ----------
    min_cutoff : float, default=0.5
        Cut-off frequency in Hz at rest: lower smooths more (and lags more).
    beta : float, default=10.0
        How fast the cut-off rises with speed, in Hz per (face size per second): higher
        follows fast movements with less lag. The defaults cut the jitter of the points on a
        still face several times while adding little lag on a swaying one
        (``benchmarks/bench_video.py``, docs/photos.md).
    d_cutoff : float, default=1.0
        Cut-off frequency in Hz of the speed estimate itself.

    Examples
    --------
    >>> f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    >>> f([[10.0, 10.0]], t=0.0)
    array([[10., 10.]])
    >>> f([[11.0, 10.0]], t=1 / 30).round(3)  # a 1-pixel jump at rest is mostly smoothed away
    array([[10.173, 10.   ]])
    """

    def __init__(self, min_cutoff=0.5, beta=10.0, d_cutoff=1.0):
        self.min_cutoff = _check_positive(min_cutoff, "min_cutoff")
        self.beta = _check_positive(beta, "beta", allow_zero=True)
        self.d_cutoff = _check_positive(d_cutoff, "d_cutoff")
        self.reset()

    def reset(self):
        """Forget the past: the next value passes unchanged (e.g. after the face was lost)."""
        self._x = self._dx = self._t = None

    @staticmethod
    def _alpha(cutoff, dt):
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, points, t, scale=1.0):
        """The smoothed ``points`` at time ``t``.

        Parameters
        ----------
        points : array-like of shape (K, 2) or (2K,)
            This frame's points; a NaN anywhere resets the filter (a face that was not found).
        t : float
            Time of the frame in seconds; must increase from call to call.
        scale : float, default=1.0
            Size of the face in pixels (speeds are divided by it).

        Returns
        -------
        ndarray of the shape of ``points``
        """
        x = np.asarray(points, dtype=np.float64)
        shape = x.shape
        x = x.reshape(-1, 2)
        if not np.isfinite(x).all():
            self.reset()
            return x.reshape(shape).copy()
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros(len(x)), float(t)
            return x.reshape(shape).copy()
        dt = float(t) - self._t
        if not dt > 0:
            raise ValueError(f"t must increase from call to call: got {t} after {self._t}.")
        scale = _check_positive(scale, "scale")
        speed = np.linalg.norm(x - self._x, axis=1) / dt / scale  # face sizes per second, per point
        a_d = self._alpha(self.d_cutoff, dt)
        self._dx = a_d * speed + (1.0 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * self._dx
        a = np.array([self._alpha(c, dt) for c in cutoff])[:, None]
        self._x = a * x + (1.0 - a) * self._x
        self._t = float(t)
        return self._x.reshape(shape).copy()

    def __repr__(self):
        return f"OneEuroFilter(min_cutoff={self.min_cutoff}, beta={self.beta}, d_cutoff={self.d_cutoff})"


@dataclass(frozen=True)
class TrackedFrame:
    """What :class:`FaceTracker` found in one frame.

    Attributes
    ----------
    points : ndarray of shape (2K,)
        ``x0, y0, x1, y1, ...`` in the frame's pixels (smoothed when the tracker smooths);
        NaN when no face was found.
    raw_points : ndarray of shape (2K,)
        The model's points before smoothing.
    box : ndarray of shape (4,)
        ``x, y, w, h`` of the crop box the points were predicted in (NaN without a face).
    status : str
        ``"detected"`` (found by the detector), ``"tracked"`` (framed on the previous frame's
        points) or ``"none"`` (no face).
    """

    points: np.ndarray
    raw_points: np.ndarray
    box: np.ndarray
    status: str


class FaceTracker:
    """Follow one face through the frames of a video with a fitted FaceKeypointRegressor.

    The first frame, and every frame after the track was lost, is searched by the model's
    detector (the best-scoring face is followed; ``predict_faces`` with the model's box
    calibration and ``refine``). Every other frame is cropped on the extent of the previous
    frame's points (with the model's ``margin``) and predicted once.

    A keypoint model predicts points in any crop, face or not, so the track is checked every
    frame and dropped (and the frame searched again) when:

    - the new points' box overlaps the previous one by less than ``min_iou``, or its centre
      leaves the frame;
    - the crop no longer looks like the last one: the correlation of the two crops, both
      32x32 gray and standardised, falls below ``min_similarity`` (a cut, an occlusion, the
      face gone);
    - every ``detect_every`` frames the detector checks the track: when it finds faces but
      none overlapping the track by ``min_iou``, the best of them is followed instead; when it
      finds no face at two checks in a row, the track is dropped (one miss is forgiven:
      detectors miss faces that are there).

    Parameters
    ----------
    model : fitted FaceKeypointRegressor
        E.g. ``skkp.load("face.skkp")`` or ``FaceKeypointRegressor.from_regressor(...)``.
    smoother : OneEuroFilter or None, default=None
        Smooths the points over time (reset whenever a new face is detected); None gives
        the model's points as they are.
    detect_every : int, default=30
        Frames between detector checks of a running track; 0 never checks.
    min_iou : float, default=0.3
    min_similarity : float, default=0.5
        In [-1, 1]; -1 turns the appearance check off.

    Examples
    --------
    >>> from skimage import data
    >>> from skkp.detection import FaceDetector
    >>> from skkp.faces import FaceKeypointRegressor
    >>> from skkp.pretrained import load_model
    >>> model = FaceKeypointRegressor.from_regressor(load_model("ibug68_face", device="cpu"),
    ...                                              detector=FaceDetector("skimage", min_size=60))
    >>> tracker = FaceTracker(model, smoother=OneEuroFilter())
    >>> frame = data.astronaut()
    >>> [tracker.update(frame, t=i / 25).status for i in range(3)]
    ['detected', 'tracked', 'tracked']
    >>> tracker.update(np.zeros_like(frame), t=3 / 25).status  # the face is gone
    'none'
    """

    #: detector checks in a row that find no face before a track is dropped
    MAX_MISSED_CHECKS = 2

    def __init__(self, model, smoother=None, detect_every=30, min_iou=0.3, min_similarity=0.5):
        from sklearn.utils.validation import check_is_fitted

        from .faces import FaceKeypointRegressor

        if not isinstance(model, FaceKeypointRegressor):
            raise TypeError(f"model must be a fitted FaceKeypointRegressor (for a crop model use "
                            f"FaceKeypointRegressor.from_regressor), got {type(model).__name__}.")
        check_is_fitted(model, "regressor_")
        if smoother is not None and not callable(smoother):
            raise TypeError(f"smoother must be a OneEuroFilter, a callable (points, t, scale) -> points, or "
                            f"None; got {type(smoother).__name__}.")
        if isinstance(detect_every, bool) or not isinstance(detect_every, numbers.Integral) or detect_every < 0:
            raise ValueError(f"detect_every must be an int >= 0, got {detect_every!r}.")
        if not (isinstance(min_iou, numbers.Real) and 0 < min_iou < 1):
            raise ValueError(f"min_iou must be a number in (0, 1), got {min_iou!r}.")
        if not (isinstance(min_similarity, numbers.Real) and -1 <= min_similarity <= 1):
            raise ValueError(f"min_similarity must be a number in [-1, 1], got {min_similarity!r}.")
        self.model, self.smoother = model, smoother
        self.detect_every, self.min_iou, self.min_similarity = int(detect_every), float(min_iou), float(min_similarity)
        self.reset()

    def reset(self):
        """Forget the face followed: the next frame is searched by the detector."""
        self._points = None  # the last frame's (smoothed) points
        self._look = None  # the last frame's crop, 32x32 standardised
        self._since_check = self._missed = 0
        if self.smoother is not None and hasattr(self.smoother, "reset"):
            self.smoother.reset()

    def _detect(self, image):
        """``(points (2K,), box (4,))`` of the best face the detector finds, or None; and every box found."""
        points, boxes = self.model.predict_faces([image])
        if not len(boxes[0]):
            return None, boxes[0]
        return (points[0][0].reshape(-1), boxes[0][0, :4]), boxes[0]

    def _appearance(self, image, box):
        """The crop of ``box`` (x, y, w, h) at 32x32, gray, standardised; None when it is flat."""
        from .datasets import crop_faces

        crop = crop_faces([image], boxes=xywh_to_xyxy(box[None]), size=32, margin=self.model.margin,
                          gray=True).images[0].astype(np.float64)
        std = crop.std()
        return None if std < 1e-6 else (crop - crop.mean()) / std

    def _lost(self, image, old_box, new_points):
        new_box = keypoint_boxes(new_points[None])
        if not np.isfinite(new_box).all() or (new_box[0, 2:] <= 0).any():
            return True
        cx, cy = new_box[0, :2] + new_box[0, 2:] / 2
        h, w = image.shape[:2]
        return not (0 <= cx < w and 0 <= cy < h) or box_iou(new_box, old_box[None])[0, 0] < self.min_iou

    def _follow(self, image):
        """``(points, box)`` framed on the last frame's points, or None when the track is lost here."""
        from .faces import predict_in_boxes

        box = keypoint_boxes(self._points[None])[0]
        look = self._appearance(image, box)
        if self.min_similarity > -1 and (look is None or self._look is None
                                         or float(np.mean(look * self._look)) < self.min_similarity):
            return None
        raw = predict_in_boxes(self.model.regressor_, [image], xywh_to_xyxy(box[None]), self.model.size,
                               self.model.margin, refine=0)[0]
        return None if self._lost(image, box, raw) else (raw, box)

    def update(self, frame, t):
        """Find the face in the next frame.

        Parameters
        ----------
        frame : ndarray of shape (H, W) or (H, W, 3) RGB
        t : float
            Time of the frame in seconds (for the smoother).

        Returns
        -------
        TrackedFrame
        """
        from .detection import _one_image

        image = _one_image(frame, "frame")
        found, status, searched = None, "tracked", False
        if self._points is not None:
            found = self._follow(image)
            self._since_check += 1
            if found is not None and self.detect_every and self._since_check >= self.detect_every:
                self._since_check, searched = 0, True
                best, every = self._detect(image)
                self._missed = 0 if len(every) else self._missed + 1
                elsewhere = len(every) and not (box_iou(every[:, :4], keypoint_boxes(found[0][None]))[:, 0]
                                                >= self.min_iou).any()
                if elsewhere or self._missed >= self.MAX_MISSED_CHECKS:
                    found, status = (best, "detected") if elsewhere else (None, "none")
                    self.reset()
            if found is None and status == "tracked":
                self.reset()
        if found is None and not searched:
            found, status = self._detect(image)[0], "detected"
        if found is not None and not np.isfinite(found[0]).all():
            found = None  # a model that gives no points for this face
        if found is None:
            self.reset()
            nan = np.full(2 * self.model.n_keypoints_, np.nan)
            return TrackedFrame(nan, nan, np.full(4, np.nan), "none")
        raw, box = found
        points = raw
        if self.smoother is not None:
            points = np.asarray(self.smoother(raw, t, scale=float(np.sqrt(box[2] * box[3]))),
                                dtype=np.float64).reshape(raw.shape)
        self._points = points
        self._look = self._appearance(image, keypoint_boxes(points[None])[0])
        return TrackedFrame(points, raw, np.asarray(box, dtype=np.float64), status)


def read_video(path):
    """The frames of a video file, as RGB uint8 arrays, and its frame rate.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    frames : iterator of ndarray of shape (H, W, 3)
        Read one at a time (a long video is never held in memory).
    fps : float
        Frames per second from the file (30.0 when the file does not say).

    Raises
    ------
    ValueError
        When the file is missing or OpenCV cannot open it as a video.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"video file {path} not found.")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise ValueError(f"{path} cannot be opened as a video (OpenCV {cv2.__version__} reads it with FFmpeg: "
                         f"check the file is a video and not damaged).")
    ok, first = capture.read()
    if not ok:
        capture.release()
        raise ValueError(f"{path} holds no frame that OpenCV can decode.")
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = float(fps) if fps and math.isfinite(fps) and fps > 0 else 30.0

    def frames():
        try:
            frame, ok_ = first, True
            while ok_:
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if frame.ndim == 3 else frame
                ok_, frame = capture.read()
        finally:
            capture.release()

    return frames(), fps


def track_video(model, frames, fps, smoother=None, detect_every=30, min_iou=0.3, min_similarity=0.5):
    """Keypoints of one face in each frame of a video (see :class:`FaceTracker`).

    Parameters
    ----------
    model : fitted FaceKeypointRegressor
    frames : iterable of ndarray (H, W) or (H, W, 3) RGB
        E.g. the first value of :func:`read_video`.
    fps : float
        Frames per second (frame ``i`` is at ``i / fps`` seconds).
    smoother, detect_every, min_iou, min_similarity
        As in :class:`FaceTracker`.

    Yields
    ------
    TrackedFrame
    """
    fps = _check_positive(fps, "fps")
    tracker = FaceTracker(model, smoother=smoother, detect_every=detect_every, min_iou=min_iou,
                          min_similarity=min_similarity)
    for i, frame in enumerate(frames):
        yield tracker.update(frame, i / fps)
