"""FaceKeypointRegressor: keypoints on whole photos (detect the faces, crop, regress, map back)."""
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._validation import check_groups, check_keypoint_targets
from .datasets import crop_faces, uncrop_keypoints
from .datasets._crop import _parse_jitter
from .detection import (BACKENDS, BoxCalibration, FaceDetector, _as_calibration, _box_array, _image_list,
                        calibrate_detections, keypoint_boxes, xywh_to_xyxy)

__all__ = ["FaceKeypointRegressor", "framing_jitter", "predict_in_boxes"]


def predict_in_boxes(regressor, faces, boxes, size=96, margin=0.25, refine=1):
    """Keypoints of one face per image, in that image's pixels, with a fitted crop ``regressor``.

    Face ``i`` is cropped from ``faces[i]`` around ``boxes[i]`` (x0, y0, x1, y1) as
    :func:`~skkp.datasets.crop_faces` does (``size``, ``margin``), its points are predicted
    and mapped back; then, ``refine`` times, it is cropped again around the extent of the
    points just predicted (kept where that extent is empty or not finite), since keypoint
    models are trained on crops framed by their points.

    Returns
    -------
    points : ndarray of shape (n, 2K)

    Examples
    --------
    >>> from skkp.datasets import make_noses
    >>> class Centre:  # a stand-in regressor: the crop's centre as the one point
    ...     def predict(self, crops):
    ...         return np.full((len(crops), 2), (crops.shape[-1] - 1) / 2)
    >>> images = make_noses(1, image_size=64, random_state=0)[0]
    >>> predict_in_boxes(Centre(), images, np.array([[10.0, 20.0, 30.0, 40.0]]), size=32, refine=0)
    array([[20., 30.]])
    """
    frame = np.asarray(boxes, dtype=np.float64)
    for step in range(refine + 1):
        crops = crop_faces(faces, boxes=frame, size=size, margin=margin, gray=True)
        pred = np.asarray(regressor.predict(crops.images), dtype=np.float64).reshape(len(frame), -1)
        points = uncrop_keypoints(pred, crops.transforms)
        if step < refine:
            extent = xywh_to_xyxy(keypoint_boxes(points))
            ok = np.isfinite(extent).all(1) & (extent[:, 2:] > extent[:, :2]).all(1)
            frame = np.where(ok[:, None], extent, frame)
    return points


def framing_jitter(calibrated_boxes, landmark_boxes, quantile=0.8):
    """The crop jitter ``(shift, scale)`` of :func:`~skkp.datasets.crop_faces` that covers how
    calibrated detector boxes sit around the landmark boxes of the same faces.

    ``shift`` is the ``quantile`` of the centre offsets (the larger of x and y) and ``scale``
    the ``quantile`` of the side ratios (``|ratio - 1|``, as ``exp(|log ratio|) - 1``), both in
    units of the landmark box's side, as ``crop_faces`` measures them; at least ``(0.05, 0.1)``
    and at most ``(0.5, 0.9)``. Training crops jittered this much look like the crops a detector
    gives at predict time.

    Parameters
    ----------
    calibrated_boxes, landmark_boxes : array of shape (n, 4)
        ``x, y, w, h`` of the same n faces.
    quantile : float, default=0.8

    Returns
    -------
    (float, float)

    Examples
    --------
    >>> framing_jitter([[12, 10, 20, 20], [10, 10, 24, 24]], [[10, 10, 20, 20], [10, 10, 20, 20]], quantile=1.0)
    (0.1, 0.2)
    """
    det = np.asarray(calibrated_boxes, dtype=np.float64).reshape(-1, 4)
    ref = np.asarray(landmark_boxes, dtype=np.float64).reshape(-1, 4)
    side = ref[:, 2:].max(axis=1)
    offset = np.abs((det[:, :2] + det[:, 2:] / 2) - (ref[:, :2] + ref[:, 2:] / 2)).max(axis=1) / side
    ratio = np.abs(np.log(det[:, 2:].max(axis=1) / side))
    shift = float(np.clip(np.quantile(offset, quantile), 0.05, 0.5))
    scale = float(np.clip(np.expm1(np.quantile(ratio, quantile)), 0.1, 0.9))
    return round(shift, 4), round(scale, 4)


class FaceKeypointRegressor(RegressorMixin, BaseEstimator):
    """Keypoints on photos of any size: find each face, crop it, regress, map the points back.

    A meta-estimator in the spirit of :class:`sklearn.compose.TransformedTargetRegressor`:
    the inner ``regressor`` sees square face crops (:func:`skkp.datasets.crop_faces`), the
    user sees images and points in each image's own pixels.

    ``fit`` crops every training face from the extent of its keypoints (with random
    ``jitter``) and fits a clone of ``regressor`` on the crops. It also runs the detector
    on the training images and learns the calibration from detector boxes to
    landmark-extent boxes on the images where exactly one detection is the labelled face
    (:func:`skkp.detection.calibrate_detections`: calibrated IoU > ``match_iou``); rows the
    detector misses still train the regressor. ``predict`` detects, calibrates, crops,
    predicts and maps the points back into each image.

    Parameters
    ----------
    regressor : estimator or None, default=None
        Regresses keypoints from (n, size, size) gray uint8 crops; None is
        ``NoseKeypointRegressor()``. To use a model that is already fitted (e.g.
        ``skkp.pretrained.load_model("ibug68_face")``, trained on crops of ``margin=0.25``,
        ``size=96``), wrap it in :class:`sklearn.frozen.FrozenEstimator`: ``fit`` then only
        learns the box calibration (and does not train, nor crop).
    detector : {"auto", "opencv-haar", "skimage", "yunet"}, FaceDetector or callable, default="auto"
        Finds the faces: a backend name, a :class:`skkp.detection.FaceDetector` (cloned) or
        a callable ``image -> boxes (x, y, w, h[, score])`` (see
        :class:`~skkp.detection.FaceDetector`).
    margin : float, default=0.25
        Border around the face box on each side, as a fraction of its side (as
        :func:`~skkp.datasets.crop_faces`).
    size : int, default=96
        Side of the crops the regressor sees.
    jitter : "auto", float or (float, float), default="auto"
        Random shift and scale of the training crops (``jitter`` of
        :func:`~skkp.datasets.crop_faces`), so the regressor tolerates imperfect boxes.
        ``"auto"`` measures, on the training faces the detector found, how far its calibrated
        boxes sit from the landmark boxes (:func:`framing_jitter`) and jitters that much
        (0.05 when it found none), so training crops look like the crops it will give. On
        ytf68 noses from whole frames it measured (0.19, 0.16) and took the end-to-end nose
        NME from 11.0% (fixed 0.05) to 9.2%, and the failure rate from 28% to 19%
        (docs/photos.md).
    match_iou : float, default=0.3
        A detection is the labelled face when its calibrated box has an IoU above it with the
        landmark-extent box (see :func:`skkp.detection.calibrate_detections`).
    max_calibration_images : int or None, default=500
        The detector runs on at most this many training images (drawn at random) to learn
        the calibration, a robust median that needs few faces, since detection costs more
        than training per image (about 0.17 s per ytf68 frame for ``"skimage"``); None
        runs it on every image.
    refine : int, default=1
        After predicting, re-frame each face on the extent of its predicted points and
        predict again, this many times: crops then match the training crops more closely
        (on ytf68 with the shipped 68-point model, one reframing cut the failure rate from
        25% to 20%, a second to 18%: docs/photos.md). 0 predicts once from the calibrated box.
    random_state : int, RandomState or None, default=None
        Seeds the crop jitter and the choice of calibration images (the regressor has its
        own ``random_state``).

    Attributes
    ----------
    regressor_ : estimator
        The fitted inner regressor (the FrozenEstimator itself when one was given).
    detector_ : FaceDetector
    calibration_ : skkp.detection.BoxCalibration
        Detector box -> landmark-extent box; the identity (with a warning) when no
        training face was detected.
    detection_rate_ : float
        Fraction of the training images searched for the calibration in which the face was
        detected (a calibrated detection with IoU > ``match_iou`` with its landmark-extent
        box); NaN for a model made by :meth:`from_regressor`.
    jitter_ : float or (float, float)
        The jitter the training crops had (``jitter``, or what ``"auto"`` measured).
    fit_interrupted_ : bool
        True when the regressor's training was interrupted (Ctrl-C), as
        ``NoseKeypointRegressor.fit_interrupted_``.
    n_keypoints_ : int
    y_ndim_ : int
        2 or 3: ``predict`` returns (n, 2K) or (n, K, 2) like the keypoints given to ``fit``.

    Notes
    -----
    ``score`` is R^2 over the labelled coordinates in image pixels, on the images where a
    face was found (``predict`` warns about the others).

    Examples
    --------
    >>> import numpy as np
    >>> from skkp import NoseKeypointRegressor
    >>> from skkp.datasets import make_noses
    >>> noses, points = make_noses(32, image_size=32, random_state=0)
    >>> photos = np.zeros((32, 80, 100), np.uint8)
    >>> photos[:, 20:52, 30:62] = noses  # every nose at x=30, y=20 of a larger picture
    >>> detector = lambda image: [[30, 20, 32, 32]]  # (x, y, w, h) of the face
    >>> inner = NoseKeypointRegressor(architecture="cnn", image_size=32, max_epochs=1, random_state=0)
    >>> model = FaceKeypointRegressor(inner, detector=detector, size=32, random_state=0)
    >>> points = points.reshape(32, 7, 2) + [30, 20]  # (n, K, 2) in pixels of the photos
    >>> model.fit(photos, points).predict(photos[:2]).shape
    (2, 7, 2)
    >>> model.detection_rate_
    1.0
    """

    _parameter_constraints = {
        "regressor": [HasMethods(["fit", "predict"]), None],
        "detector": [StrOptions(set(BACKENDS)), callable],
        "margin": [Interval(numbers.Real, 0, None, closed="left")],
        "size": [Interval(numbers.Integral, 16, None, closed="left")],
        "jitter": [Interval(numbers.Real, 0, None, closed="left"), tuple, list, StrOptions({"auto"})],
        "match_iou": [Interval(numbers.Real, 0, 1, closed="neither")],
        "max_calibration_images": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "refine": [Interval(numbers.Integral, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, regressor=None, detector="auto", margin=0.25, size=96, jitter="auto", match_iou=0.3,
                 max_calibration_images=500, refine=1, random_state=None):
        self.regressor = regressor
        self.detector = detector
        self.margin = margin
        self.size = size
        self.jitter = jitter
        self.match_iou = match_iou
        self.max_calibration_images = max_calibration_images
        self.refine = refine
        self.random_state = random_state

    @classmethod
    def from_regressor(cls, regressor, *, detector="auto", calibration=None, margin=0.25, size=None, refine=2):
        """A fitted FaceKeypointRegressor around a fitted crop model, for photos without labels.

        ``fit`` learns the box calibration from labelled photos; without them, this frames
        each face from its detector box mapped by ``calibration`` (the identity by default:
        the detector's own box) and then re-frames it ``refine`` times on the extent of the
        points just predicted, which brings the crop close to the training framing.
        :func:`skkp.detection.fit_box_calibration` gives a calibration from a few labelled
        faces; ``skkp predict PHOTOS_DIR`` uses this for plain keypoint models.

        Parameters
        ----------
        regressor : fitted estimator
            Predicts ``2K`` coordinates from (n, size, size) crops framed like
            :func:`~skkp.datasets.crop_faces` with ``margin`` (e.g. a
            :class:`~skkp.NoseKeypointRegressor`, a shipped model, an
            :func:`skkp.onnx.load` model); it is wrapped in a ``FrozenEstimator``.
        detector : str, FaceDetector or callable, default="auto"
        calibration : BoxCalibration, dict or None, default=None
            Detector box -> crop box; None is the identity.
        margin : float, default=0.25
            The margin of the regressor's training crops.
        size : int or None, default=None
            Crop side; None takes the regressor's ``image_size`` (else 96).
        refine : int, default=2

        Returns
        -------
        FaceKeypointRegressor
            Fitted: ``predict`` and ``predict_faces`` work; ``fit`` would learn a
            calibration instead.

        Examples
        --------
        >>> from skimage import data
        >>> from skkp.pretrained import load_model
        >>> model = FaceKeypointRegressor.from_regressor(load_model("ibug68_face", device="cpu"),
        ...                                              detector=FaceDetector("skimage", min_size=60))
        >>> model.predict([data.astronaut()]).shape
        (1, 136)
        """
        n_outputs = getattr(regressor, "n_outputs_", None)
        if not hasattr(regressor, "predict") or not isinstance(n_outputs, numbers.Integral) or n_outputs % 2:
            raise TypeError(f"regressor must be a fitted keypoint model with predict and n_outputs_ (2K "
                            f"coordinates), got {type(regressor).__name__}.")
        if size is None:
            size = int(getattr(regressor, "image_size", 96))
        frozen = FrozenEstimator(regressor)
        model = cls(frozen, detector=detector, margin=margin, size=size, refine=refine)
        model._validate_params()
        model.regressor_ = frozen
        model.detector_ = model._make_detector()
        model.calibration_ = BoxCalibration() if calibration is None else _as_calibration(calibration)
        model.detection_rate_ = float("nan")
        model.jitter_ = None  # no training crops
        model.fit_interrupted_ = False
        model.n_keypoints_ = int(n_outputs) // 2
        model.y_ndim_ = 2
        return model

    # ------------------------------------------------------------------ fit
    def _make_detector(self):
        """A FaceDetector for ``detector``, with ``"auto"`` resolved to the backend it picks here, so a
        saved model keeps detecting with the backend its calibration was learnt for."""
        det = self.detector
        det = clone(det) if isinstance(det, FaceDetector) else FaceDetector(det)
        backend = det.backend_  # builds the backend now: a missing model file fails before any work
        if det.backend == "auto":
            det.set_params(backend=backend)
        return det

    def _regressor(self, n_keypoints):
        if self.regressor is None:
            from .keypoints import NoseKeypointRegressor

            return NoseKeypointRegressor()
        if isinstance(self.regressor, FrozenEstimator):
            check_is_fitted(self.regressor)
            k = getattr(self.regressor, "n_keypoints_", None)
            if k is not None and k != n_keypoints:
                raise ValueError(f"regressor predicts {k} keypoints but keypoints has {n_keypoints}: the "
                                 f"calibration needs the points the regressor was trained on (its crops are "
                                 f"framed on their extent).")
        return self.regressor

    def fit(self, images, keypoints, groups=None):
        """Learn the box calibration and fit the regressor on face crops.

        Parameters
        ----------
        images : list of arrays, 1-D object array, or array (n, H, W[, 3])
            Photos of any sizes, (H, W) gray or (H, W, 3) RGB, uint8 or numbers as in
            :func:`skkp._validation.pixel_scale`.
        keypoints : array of shape (n, 2K) or (n, K, 2)
            Pixels of each image, ``x0, y0, x1, y1, ...``; NaN marks a missing point. Rows
            with no labelled point are left out (with a warning).
        groups : array-like of shape (n,) or None, default=None
            Passed to the regressor's ``fit`` (e.g. the person, for its validation split).

        Returns
        -------
        self
        """
        self._validate_params()
        if self.jitter != "auto":
            _parse_jitter(self.jitter)
        imgs = _image_list(images, "images")
        if not imgs:
            raise ValueError("images is empty: expected at least one image.")
        if keypoints is None:
            raise ValueError("keypoints is None; FaceKeypointRegressor needs the keypoints of each image "
                             "(n, 2K) or (n, K, 2).")
        n_rows = np.shape(keypoints)[0] if np.ndim(keypoints) else None
        if n_rows is not None and n_rows != len(imgs):
            raise ValueError(f"keypoints has {n_rows} rows but there are {len(imgs)} images.")
        flat = check_keypoint_targets(keypoints, len(imgs), name="keypoints")
        group_labels = check_groups(groups, len(imgs))
        n_keypoints = flat.shape[1] // 2
        regressor = self._regressor(n_keypoints)
        keep = ~np.isnan(flat).all(axis=1)
        if not keep.any():
            raise ValueError("keypoints has no labelled point: every row is entirely NaN.")
        if not keep.all():
            warnings.warn(f"{int((~keep).sum())} of {len(flat)} rows of keypoints have no labelled point; "
                          f"those images are left out.", UserWarning, stacklevel=2)
        idx = np.flatnonzero(keep)
        detector = self._make_detector()
        rng = check_random_state(self.random_state)

        # the calibration first: detector errors come before any training
        searched = idx
        if self.max_calibration_images is not None and len(idx) > self.max_calibration_images:
            searched = np.sort(rng.choice(idx, self.max_calibration_images, replace=False))
        detections = [detector.detect(imgs[i]) for i in searched]
        calibration, match = calibrate_detections(detections, keypoint_boxes(flat[searched]), self.match_iou)
        if calibration.n_boxes == 0:
            warnings.warn(f"the detector ({detector.backend_}) found no face matching the keypoints in any of "
                          f"the {len(searched)} training images searched; the box calibration is the identity.",
                          UserWarning, stacklevel=2)

        jitter = self.jitter
        if jitter == "auto":
            found = np.flatnonzero(match >= 0)
            jitter = 0.05 if not found.size else framing_jitter(
                np.array([calibration.apply(detections[i][match[i]][None, :4])[0] for i in found]),
                keypoint_boxes(flat[searched[found]]))
        if isinstance(regressor, FrozenEstimator):
            fitted = regressor
        else:
            crops = crop_faces([imgs[i] for i in idx], keypoints=flat[idx], size=self.size, margin=self.margin,
                               gray=True, jitter=jitter, random_state=rng)
            extra = {} if group_labels is None else {"groups": group_labels[idx]}
            fitted = clone(regressor).fit(crops.images, crops.keypoints, **extra)

        self.regressor_ = fitted
        self.jitter_ = jitter
        self.fit_interrupted_ = bool(getattr(fitted, "fit_interrupted_", False))
        self.detector_ = detector
        self.calibration_ = calibration
        self.detection_rate_ = float(np.mean(match >= 0))
        self.n_keypoints_ = n_keypoints
        self.y_ndim_ = 3 if np.ndim(keypoints) == 3 else 2
        return self

    # ------------------------------------------------------------------ predict
    def _given_boxes(self, boxes, n):
        """User boxes -> list of n (m_i, 5) arrays (score 1 where none given), by decreasing score."""
        per_image = None
        if isinstance(boxes, np.ndarray) and boxes.dtype != object and boxes.ndim == 2:
            per_image = [row[None] for row in _box_array(boxes, "boxes")]
            if len(per_image) != n:
                raise ValueError(f"boxes as an array must have one row per image: {n} rows, got {len(per_image)}.")
            per_image = [b if np.isfinite(b).all() else b[:0] for b in per_image]  # a NaN row: no face
        elif isinstance(boxes, (list, tuple, np.ndarray)):
            if len(boxes) != n:
                raise ValueError(f"boxes must hold one entry per image ({n}), got {len(boxes)}.")
            per_image = []
            for i, b in enumerate(boxes):
                arr = np.zeros((0, 4)) if b is None else np.asarray(b, dtype=np.float64)
                per_image.append(_box_array(arr.reshape(1, -1) if arr.ndim == 1 and arr.size else arr,
                                            f"boxes[{i}]"))
        else:
            raise TypeError(f"boxes must be None, an array (n_images, 4) or a list of (n_faces, 4) arrays, "
                            f"got {type(boxes).__name__}.")
        out = []
        for i, b in enumerate(per_image):
            if b.shape[1] not in (4, 5):
                raise ValueError(f"boxes[{i}] must have 4 or 5 columns (x, y, w, h[, score]), got {b.shape[1]}.")
            if not np.isfinite(b).all() or (b[:, 2:4] <= 0).any():
                raise ValueError(f"boxes[{i}] must be finite with positive width and height (x, y, w, h).")
            b = b if b.shape[1] == 5 else np.c_[b, np.ones(len(b))]
            out.append(b[np.argsort(-b[:, 4], kind="stable")])
        return out

    def _face_boxes(self, imgs, boxes):
        raw = [self.detector_.detect(im) for im in imgs] if boxes is None else self._given_boxes(boxes, len(imgs))
        return [self.calibration_.apply(b) for b in raw]

    def _points(self, imgs, per_image):
        """Keypoints (m_i, 2K) of the faces framed by the (m_i, 5) boxes of each image."""
        owner = np.concatenate([np.full(len(b), i) for i, b in enumerate(per_image)]).astype(int)
        if owner.size == 0:
            return [np.zeros((0, 2 * self.n_keypoints_)) for _ in imgs]
        points = predict_in_boxes(self.regressor_, [imgs[i] for i in owner],
                                  xywh_to_xyxy(np.concatenate(per_image))[:, :4], self.size, self.margin, self.refine)
        return [points[owner == i] for i in range(len(imgs))]

    def _layout(self, points):
        return points.reshape(len(points), self.n_keypoints_, 2) if self.y_ndim_ == 3 else points

    def predict(self, images, boxes=None, return_boxes=False):
        """Keypoints of the best-scoring face of each image, in that image's pixels.

        Parameters
        ----------
        images : list of arrays, 1-D object array, or array (n, H, W[, 3])
            As in :meth:`fit`.
        boxes : None, array (n, 4) or (n, 5), or list of n arrays (m_i, 4) or (m_i, 5)
            Face boxes ``x, y, w, h[, score]`` instead of running the detector: in the
            detector's convention (e.g. :func:`skkp.detection.detect_faces` with the same
            backend), since ``calibration_`` is applied to them. A NaN row of an (n, 4)
            array means no face.
        return_boxes : bool, default=False
            Also return the calibrated box ``x, y, w, h, score`` of each face used.

        Returns
        -------
        keypoints : ndarray of shape (n, 2K) or (n, K, 2)
            NaN rows for images where no face was found (with a warning saying how many).
        boxes : ndarray of shape (n, 5)
            Only with ``return_boxes``; NaN rows where no face was found.
        """
        check_is_fitted(self, "regressor_")
        imgs = _image_list(images, "images")
        found = self._face_boxes(imgs, boxes)
        best = [b[:1] for b in found]
        points = self._points(imgs, best)
        out = np.full((len(imgs), 2 * self.n_keypoints_), np.nan)
        chosen = np.full((len(imgs), 5), np.nan)
        for i, (p, b) in enumerate(zip(points, best)):
            if len(b):
                out[i], chosen[i] = p[0], b[0]
        missing = sum(len(b) == 0 for b in best)
        if missing:
            warnings.warn(f"no face found in {missing} of {len(imgs)} images; their keypoints are NaN.",
                          UserWarning, stacklevel=2)
        out = self._layout(out)
        return (out, chosen) if return_boxes else out

    def predict_faces(self, images, boxes=None):
        """Keypoints of every face found in each image.

        Parameters
        ----------
        images, boxes
            As in :meth:`predict`.

        Returns
        -------
        keypoints : list of ndarray of shape (n_faces, 2K) or (n_faces, K, 2)
            Per image, one row per face, by decreasing detection score.
        boxes : list of ndarray of shape (n_faces, 5)
            The matching calibrated boxes ``x, y, w, h, score``.
        """
        check_is_fitted(self, "regressor_")
        imgs = _image_list(images, "images")
        found = self._face_boxes(imgs, boxes)
        return [self._layout(p) for p in self._points(imgs, found)], found

    def score(self, images, keypoints, sample_weight=None):
        """R^2 of the keypoints predicted on ``images`` (image pixels), over labelled coordinates.

        Images without a detected face are left out (``predict`` warns); averaged uniformly
        over the coordinate columns, as :func:`sklearn.metrics.r2_score`.
        """
        from sklearn.metrics import r2_score

        pred = self.predict(images).reshape(-1, 2 * self.n_keypoints_)
        true = check_keypoint_targets(keypoints, len(pred), name="keypoints")
        if true.shape[1] != pred.shape[1]:
            raise ValueError(f"keypoints has {true.shape[1] // 2} points but the model predicts {self.n_keypoints_}.")
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        scores = []
        for j in range(true.shape[1]):
            m = np.isfinite(true[:, j]) & np.isfinite(pred[:, j])
            if m.sum() >= 2:
                scores.append(r2_score(true[m, j], pred[m, j], sample_weight=None if w is None else w[m]))
        return float(np.mean(scores)) if scores else float("nan")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = False
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        return tags
