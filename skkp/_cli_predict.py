"""``skkp predict``: keypoints on a folder of photos, one photo, a video, or a folder of face crops.

The command's options are defined with the others in :mod:`skkp.cli`; this module holds what it does.
"""
import csv
import sys
from pathlib import Path

from .cli import IMAGE_SUFFIXES, CLIError, _check_writable, _crop_model


def _read_image(path, gray=True):
    import cv2

    from .datasets._imread import read_image

    try:
        return read_image(str(path), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def load_keypoint_model(path, allow_onnx=True):
    """A fitted NoseKeypointRegressor or FaceKeypointRegressor from a shipped model's name, a file in
    skkp's safe format, or a joblib file (or, with ``allow_onnx``, a keypoint model exported to .onnx);
    or a CLIError naming the file."""
    import zipfile

    from .pretrained import list_models, load_model

    if path in list_models() and not Path(path).exists():
        return load_model(path)
    if not Path(path).is_file():
        raise CLIError(f"model file {path} not found (nor is it a shipped model: {', '.join(list_models())})")
    if allow_onnx and Path(path).suffix.lower() == ".onnx":
        from . import onnx

        model = onnx.load(path)
        if not isinstance(model, onnx.OnnxKeypointModel):
            raise CLIError(f"{path} holds an exported {type(model).__name__}, not a keypoint model")
        return model
    from .faces import FaceKeypointRegressor
    from .keypoints import NoseKeypointRegressor

    try:
        if zipfile.is_zipfile(path):
            from .io import load

            model = load(path)
        else:
            import joblib

            model = joblib.load(path)
    except Exception as exc:  # a CSV, an empty or truncated file, a pickle of something else
        raise CLIError(f"{path} is not a model saved by skkp train, skkp.save or joblib.dump "
                       f"({type(exc).__name__}: {exc})") from None
    fitted = hasattr(model, "regressor_") if isinstance(model, FaceKeypointRegressor) else hasattr(model, "net_")
    if not isinstance(model, (NoseKeypointRegressor, FaceKeypointRegressor)) or not fitted:
        raise CLIError(f"{path} holds a {type(model).__name__}, not a fitted NoseKeypointRegressor or "
                       f"FaceKeypointRegressor")
    return model


def _photo_model(model, args):
    """A fitted FaceKeypointRegressor for photos and videos: a saved one as it is (its detector and
    box calibration), or a crop model framed from detector boxes and refined on its points
    (:meth:`skkp.faces.FaceKeypointRegressor.from_regressor`). ``--refine`` overrides either."""
    from .faces import FaceKeypointRegressor

    if isinstance(model, FaceKeypointRegressor):
        if args.refine is not None:
            model.set_params(refine=args.refine)
        return model
    from .detection import FaceDetector

    detector = FaceDetector(args.detector, model=args.detector_model)
    try:
        detector.backend_  # noqa: B018  (a missing YuNet file or OpenCV backend fails here, in one line)
    except (ValueError, ImportError, OSError) as exc:
        raise CLIError(f"--detector {args.detector}: {exc}") from None
    return FaceKeypointRegressor.from_regressor(model, detector=detector, margin=args.margin,
                                                refine=2 if args.refine is None else args.refine)


def _photo_faces(model, photo, max_faces=None, min_score=0.0):
    """``[(box xywh, score, points (2K,))]`` for every face of ``photo`` that the photo ``model``'s
    detector finds with at least ``min_score`` (best first, at most ``max_faces``)."""
    found = model.detector_.detect(photo)
    found = found[found[:, 4] >= min_score][:max_faces]
    points, boxes = model.predict_faces([photo], boxes=[found])
    return [(box[:4], float(box[4]), p.reshape(-1)) for p, box in zip(points[0], boxes[0])]


def _photo_files(path):
    """The image files of a folder (sorted), or the one image file given."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise CLIError(f"photo folder or video file {path} not found")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CLIError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {path}")
    return files


def _make_out_dir(out, what="--out"):
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"{what} {out} cannot be made: {exc.strerror or exc}") from None


def _point_header(n_points):
    return [f"{a}{i}" for i in range(n_points) for a in "xy"]


def _predict_photos(args, files):
    """``skkp predict PHOTOS_DIR``: detect every face of every photo, then its points."""
    import cv2
    from tqdm import tqdm

    from .plotting import save_png

    model = _photo_model(load_keypoint_model(args.model), args)
    out = Path(args.out or "skkp-predictions")
    _make_out_dir(out / "overlays" if args.overlays else out)
    unreadable, faceless, n_faces = [], [], 0
    with open(out / "points.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "face", "x", "y", "w", "h", "score"] + _point_header(model.n_keypoints_))
        for path in tqdm(files, desc="predict", disable=args.quiet):
            try:
                bgr = _read_image(path, gray=False)
            except CLIError as exc:
                unreadable.append(f"{path.name} ({exc})")
                continue
            photo = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            faces = _photo_faces(model, photo, args.max_faces or None, args.min_score)
            if not faces:
                faceless.append(path.name)
            for i, (box, score, points) in enumerate(faces):
                writer.writerow([path.name, i] + [f"{v:.1f}" for v in box] + [f"{score:.2f}"]
                                + [f"{v:.2f}" for v in points])
            n_faces += len(faces)
            if args.overlays:
                picture = photo.copy()
                for box, _, points in faces:
                    picture = _draw_face(picture, box, points)
                save_png(out / "overlays" / (path.stem + ".png"), picture)
    print(f"Wrote {n_faces} face(s) from {len(files) - len(unreadable)} image(s) to {out / 'points.csv'}"
          + (f"; overlays in {out / 'overlays'}" if args.overlays else "") + ".")
    if faceless:
        print(f"No face found in {len(faceless)} image(s): {', '.join(faceless[:10])}"
              + (" ..." if len(faceless) > 10 else ""))
    if unreadable:
        print(f"Skipped {len(unreadable)} unreadable file(s): " + "; ".join(unreadable[:10])
              + (" ..." if len(unreadable) > 10 else ""), file=sys.stderr)
    return 0


def _draw_face(picture, box, points):
    """``picture`` (RGB) with the face box and its points drawn on a copy."""
    import cv2
    import numpy as np

    from .plotting import draw_keypoints

    if not np.isfinite(box).all():
        return picture
    x, y, w, h = (int(round(v)) for v in box)
    picture = picture.copy()
    cv2.rectangle(picture, (x, y), (x + w, y + h), (0, 114, 178), 1)
    radius = max(1.0, min(w, h) / 60)  # points sized by the face, so they stay apart on small faces
    return draw_keypoints(picture, points, radius=radius) if np.isfinite(points).any() else picture


def _predict_video(args, path):
    """``skkp predict VIDEO_FILE``: follow one face through the frames, smooth its points, write a CSV
    row per frame and an overlay video."""
    import cv2
    from tqdm import tqdm

    from .video import FaceTracker, OneEuroFilter, read_video

    try:
        frames, fps = read_video(path)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    model = _photo_model(load_keypoint_model(args.model), args)
    smoother = None
    if args.smooth == "one-euro":
        try:
            smoother = OneEuroFilter(min_cutoff=args.min_cutoff, beta=args.beta)
        except ValueError as exc:
            raise CLIError(f"--min-cutoff/--beta: {exc}") from None
    if args.detect_every < 0:
        raise CLIError(f"--detect-every must be >= 0, got {args.detect_every}")
    out = Path(args.out or "skkp-predictions")
    _make_out_dir(out)
    overlays = args.overlays is not False  # on by default for a video
    writer, statuses = None, {"detected": 0, "tracked": 0, "none": 0}
    capture = cv2.VideoCapture(str(path))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None  # for the progress bar; 0 when unknown
    capture.release()
    tracker = FaceTracker(model, smoother=smoother, detect_every=args.detect_every)
    with open(out / "points.csv", "w", newline="") as fh:
        rows = csv.writer(fh)
        rows.writerow(["frame", "time_s", "status", "x", "y", "w", "h"] + _point_header(model.n_keypoints_))
        try:
            for i, frame in enumerate(tqdm(frames, total=total, desc="predict", disable=args.quiet)):
                found = tracker.update(frame, i / fps)
                statuses[found.status] += 1
                rows.writerow([i, f"{i / fps:.3f}", found.status] + [f"{v:.1f}" for v in found.box]
                              + [f"{v:.2f}" for v in found.points])
                if overlays:
                    if writer is None:
                        writer = cv2.VideoWriter(str(out / "overlay.avi"), cv2.VideoWriter_fourcc(*"MJPG"), fps,
                                                 (frame.shape[1], frame.shape[0]))
                        if not writer.isOpened():
                            raise CLIError(f"cannot write {out / 'overlay.avi'} (OpenCV has no MJPG video writer)")
                    picture = _draw_face(frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB),
                                         found.box, found.points)
                    writer.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        finally:
            if writer is not None:
                writer.release()
    n = sum(statuses.values())
    print(f"Wrote {n} frame(s) of {path.name} ({fps:.1f} fps) to {out / 'points.csv'}"
          + (f" and {out / 'overlay.avi'}" if overlays else "") + f": the face was detected in {statuses['detected']}, "
          f"tracked in {statuses['tracked']}, not found in {statuses['none']}.")
    return 0


def predict(args):
    import numpy as np
    from tqdm import tqdm

    from .plotting import draw_keypoints, save_png

    if args.photos:
        path = Path(args.photos)
        if path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
            return _predict_video(args, path)
        return _predict_photos(args, _photo_files(path))
    if not args.images:
        raise CLIError("give a PHOTOS_DIR or VIDEO_FILE (faces are detected) or --images DIR of face crops")
    folder = Path(args.images)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise CLIError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {folder}")
    model = _crop_model(load_keypoint_model(args.model))
    n_points = model.n_outputs_ // 2
    out = Path(args.out or "predictions.csv")
    _check_writable(out, "--out")
    if args.overlay_dir:
        try:
            Path(args.overlay_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CLIError(f"--overlay-dir {args.overlay_dir} cannot be made: {exc.strerror or exc}") from None
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image"] + [f"{a}{i}" for i in range(n_points) for a in "xy"])
        for path in tqdm(files, desc="predict", disable=args.quiet):
            img = _read_image(path)
            pred = np.asarray(model.predict(img[None])).reshape(-1)
            writer.writerow([path.name] + [f"{v:.2f}" for v in pred])
            if args.overlay_dir:
                save_png(Path(args.overlay_dir) / (path.stem + ".png"), draw_keypoints(img, pred))
    print(f"Wrote predictions for {len(files)} images to {out}.")
    return 0
