"""Command-line front end over skkp's public API: ``skkp demo``, ``skkp train``, ``skkp predict``."""
import argparse
import csv
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


class CLIError(Exception):
    """A user error: printed as one line naming the file or argument, exit code 2."""


def _parse_points(text, n_points=None):
    """'27-35' or '0,1,5' -> list of point indices (checked against ``n_points`` when given)."""
    out = []
    try:
        for part in text.split(","):
            if "-" in part:
                a, b = part.split("-")
                out.extend(range(int(a), int(b) + 1))
            elif part.strip():
                out.append(int(part))
    except ValueError:
        raise CLIError(f"--points must be indices like 27-35 or 0,1,5; got {text!r}") from None
    if not out:
        raise CLIError(f"--points selects no point: {text!r}")
    if n_points is not None and not all(0 <= i < n_points for i in out):
        raise CLIError(f"--points {text!r} asks for points outside 0-{n_points - 1} (the CSV has {n_points} points)")
    return out


def _check_writable(path, what):
    """Fail now, not after training, when ``path`` cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise CLIError(f"{what} {path} is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        with open(path, "ab"):
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        raise CLIError(f"{what} {path} cannot be written: {exc.strerror or exc}") from None


def _cmd_demo(args):
    from . import demo

    if args.parser:
        demo.parser_demo(args.out, random_state=args.seed, verbose=int(not args.quiet))
    elif args.train or args.quick:
        kwargs = dict(n_train=200, n_test=50, image_size=48, max_epochs=2) if args.quick else {}
        demo.keypoint_demo(args.out, random_state=args.seed, verbose=int(not args.quiet), **kwargs)
    else:
        demo.pretrained_demo(args.out)
    return 0


def _load_training_data(args):
    import numpy as np

    from .datasets import crop_faces, load_kaggle_facial_keypoints, load_landmarks_csv

    if args.kaggle:
        data = load_kaggle_facial_keypoints(args.kaggle, errors=args.errors)
        return data.images, data.keypoints, None, "kaggle15"
    if not (args.landmarks and args.images):
        raise CLIError("give --landmarks CSV with --images DIR, or --kaggle CSV")
    data = load_landmarks_csv(args.landmarks, args.images, gray=True, errors=args.errors)
    y = data.keypoints
    if args.points:
        idx = _parse_points(args.points, y.shape[1] // 2)
        sel = np.ravel([[2 * i, 2 * i + 1] for i in idx])
    shapes = {im.shape[:2] for im in data.images}
    if args.crop or len(shapes) > 1:
        # Square crops around the full landmark extent (any detector box would do the same job).
        crops = crop_faces(data.images, keypoints=y, size=args.image_size, margin=args.margin)
        X, y = crops.images, crops.keypoints
    else:
        X = np.stack(data.images)
    schema = None
    if args.points:
        y = y[:, sel]
        if data.keypoints.shape[1] == 136:  # an iBUG 68 CSV: the points keep their iBUG names
            from .schemas import IBUG68_NOSE, IBUG68_SCHEMA

            schema = "ibug68_nose" if idx == list(IBUG68_NOSE) else IBUG68_SCHEMA.subset(idx, "ibug68_points")
    elif data.keypoints.shape[1] == 136:
        schema = "ibug68"
    return X, y, data.groups, schema  # person ids from the file names: validation holds out people


def _cmd_train(args):
    from .keypoints import NoseKeypointRegressor

    if args.points:
        _parse_points(args.points)  # the syntax, before reading any data
    _check_writable(args.model, "--model")
    X, y, groups, schema = _load_training_data(args)
    print(f"Training on {len(X)} images of {X.shape[1]}x{X.shape[2]} with {y.shape[1] // 2} keypoints.")
    options = {name: value for name, value in (("architecture", args.architecture), ("image_size", args.image_size),
                                               ("max_epochs", args.epochs), ("batch_size", args.batch_size),
                                               ("lr", args.lr)) if value is not None}
    if args.init:
        print(f"Starting from {args.init} (fine-tuning).")
    model = NoseKeypointRegressor(**options, schema=schema, device=args.device, random_state=args.seed,
                                  verbose=int(not args.quiet), init=args.init)
    model.fit(X, y, groups=groups)
    if model.fit_interrupted_ and not args.save_partial:
        from ._training import epochs_done

        print(f"skkp train: interrupted after {epochs_done(model.history_)} epoch(s); {args.model} was not written "
              f"(pass --save-partial to keep a partly trained model).", file=sys.stderr)
        return 130
    _save_model(model, args.model)
    print(f"Saved the model to {args.model}.")
    print(_baseline_line(model))
    curves = Path(args.model).with_name(Path(args.model).stem + "_history.png")
    try:
        from .plotting import plot_history

        plot_history(model.history_, curves, title=f"skkp train: {Path(args.model).name}")
        print(f"Training curves (loss and MAE per epoch) in {curves}.")
    except ImportError:
        print('Training curves not drawn: pip install "skkp[plot]" for matplotlib.')
    return 0


def _baseline_line(model):
    """The last epoch's held-out MAE next to the mean predictor's, worded as a win or a loss."""
    last = model.history_[-1]
    valid, baseline = last.get("valid_mae_px"), model.mean_predictor_valid_mae_px_
    if valid is None or baseline is None:
        return (f"Train MAE {last.get('train_mae_px', float('nan')):.2f} px (no validation split: "
                f"nothing held out to compare with the mean predictor).")
    from .demo import versus_baseline

    return (f"Held-out MAE {valid:.2f} px; the mean predictor scores {baseline:.2f} px on the same held-out "
            f"images: {versus_baseline(valid, baseline)}.")


def _read_image(path, gray=True):
    import cv2

    from .datasets._imread import read_image

    try:
        return read_image(str(path), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


#: Model-file suffixes written with joblib (pickle: only for files you trust); any other in skkp's safe format.
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")


def _save_model(model, path):
    """``skkp.save`` (the safe format), or joblib for a .joblib/.pkl file name."""
    if Path(path).suffix.lower() in PICKLE_SUFFIXES:
        import joblib

        joblib.dump(model, path)
    else:
        from .io import save

        save(model, path)


def _load_keypoint_model(path, allow_onnx=True):
    """A fitted NoseKeypointRegressor from a shipped model's name, a file in skkp's safe format, or a
    joblib file (or, with ``allow_onnx``, a keypoint model exported to .onnx); or a CLIError naming
    the file."""
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
    if not isinstance(model, NoseKeypointRegressor) or not hasattr(model, "net_"):
        raise CLIError(f"{path} holds a {type(model).__name__}, not a fitted NoseKeypointRegressor")
    return model


def _photo_faces(model, photo, size, margin, refine, max_faces=None, min_score=0.0):
    """``[(box xywh, score, points (2K,))]`` for every face :func:`skkp.detect_faces` finds on ``photo``
    (best first), framed from its box and refined on its points (:func:`skkp.faces.predict_in_boxes`)."""
    from .detection import detect_faces, xywh_to_xyxy
    from .faces import predict_in_boxes

    found = detect_faces([photo])[0]  # best first
    return [(face[:4], float(face[4]), predict_in_boxes(model, [photo], xywh_to_xyxy(face[None, :4]), size, margin,
                                                         refine)[0])
            for face in found[found[:, 4] >= min_score][:max_faces]]


def _cmd_predict_photos(args):
    """``skkp predict PHOTOS_DIR``: detect every face of every photo, then its points."""
    import cv2
    from tqdm import tqdm

    from .plotting import draw_keypoints, save_png

    folder = Path(args.photos)
    if not folder.is_dir():
        raise CLIError(f"photo folder {folder} not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CLIError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {folder}")
    model = _load_keypoint_model(args.model)
    out = Path(args.out or "skkp-predictions")
    try:
        (out / "overlays" if args.overlays else out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"--out {out} cannot be made: {exc.strerror or exc}") from None
    n_points = model.n_outputs_ // 2
    unreadable, faceless, n_faces = [], [], 0
    with open(out / "points.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "face", "x", "y", "w", "h", "score"] + [f"{a}{i}" for i in range(n_points) for a in "xy"])
        for path in tqdm(files, desc="predict", disable=args.quiet):
            try:
                bgr = _read_image(path, gray=False)
            except CLIError as exc:
                unreadable.append(f"{path.name} ({exc})")
                continue
            photo = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            faces = _photo_faces(model, photo, int(model.image_size), args.margin, args.refine,
                                 args.max_faces or None, args.min_score)
            if not faces:
                faceless.append(path.name)
            for i, (box, score, points) in enumerate(faces):
                writer.writerow([path.name, i] + [f"{v:.1f}" for v in box] + [f"{score:.2f}"]
                                + [f"{v:.2f}" for v in points])
            n_faces += len(faces)
            if args.overlays:
                picture = photo.copy()
                for box, _, points in faces:
                    x, y, w, h = (int(round(v)) for v in box)
                    cv2.rectangle(picture, (x, y), (x + w, y + h), (0, 114, 178), 1)
                    picture = draw_keypoints(picture, points)
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


def _cmd_predict(args):
    import numpy as np
    from tqdm import tqdm

    from .plotting import draw_keypoints, save_png

    if args.photos:
        return _cmd_predict_photos(args)
    if not args.images:
        raise CLIError("give a PHOTOS_DIR (faces are detected) or --images DIR of face crops")
    folder = Path(args.images)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise CLIError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {folder}")
    model = _load_keypoint_model(args.model)
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


def _cmd_export(args):
    import zipfile

    from .onnx import export

    if Path(args.model).is_file() and zipfile.is_zipfile(args.model):
        from .io import load

        model = load(args.model)  # a keypoint model or a FaceParser
    else:  # a shipped name or a joblib file; says which file is missing
        model = _load_keypoint_model(args.model, allow_onnx=False)
    _check_writable(args.out, "OUT")
    path = export(model, args.out)
    print(f"Wrote {path} ({path.stat().st_size / 1e6:.2f} MB); read it with skkp.onnx.load, or skkp predict --model {path}.")
    return 0


class _DefaultsFormatter(argparse.HelpFormatter):
    """Help that shows each option's default, where it has one."""

    def _get_help_string(self, action):
        help_text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in help_text:
            help_text += " (default: %(default)s)"
        return help_text


def _learning_rate(text):
    """``--lr``: a positive number, or ``auto`` (the estimator's per-architecture learning rate)."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _estimator_defaults():
    """NoseKeypointRegressor's defaults and architecture names, read off its source (so that
    ``skkp --help`` and ``--version`` do not import torch)."""
    import ast

    here = Path(__file__).parent
    tree = ast.parse((here / "keypoints.py").read_text())
    init = next(node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == "__init__")
    values = dict(zip([a.arg for a in init.args.args[1:]], (ast.literal_eval(d) for d in init.args.defaults)))
    nets = ast.parse((here / "nets.py").read_text())
    table = next(node.value for node in nets.body if isinstance(node, ast.Assign)
                 and any(getattr(t, "id", None) == "ARCHITECTURES" for t in node.targets))
    values["architectures"] = sorted(ast.literal_eval(key) for key in table.keys)
    return values


def build_parser():
    """The argparse parser of the ``skkp`` command."""
    from ._version import __version__

    p = argparse.ArgumentParser(prog="skkp", description="scikit-learn estimators for facial keypoints.")
    p.add_argument("--version", action="version", version=f"skkp {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="68 points on a real photo in seconds; --train trains a model",
                       description="Find the face on a real photo (scikit-image's astronaut) and place the 68 "
                                   "points of the shipped face model, in seconds, without training. With "
                                   "--train, train a keypoint model on synthetic frontal noses instead (about "
                                   "a minute on a free 2-core machine), print held-out MAE of the model and of "
                                   "the mean predictor, save the model (skkp's safe format) and a PNG of "
                                   "predictions. With --parser, train a small face parser on synthetic faces.")
    d.add_argument("--out", default="skkp-demo", help="output folder (default: skkp-demo)")
    d.add_argument("--train", action="store_true", help="train a keypoint model on synthetic noses (about a minute)")
    d.add_argument("--parser", action="store_true", help="train a small face parser instead")
    d.add_argument("--pretrained", action="store_true", help="the default: the shipped face model on a photo")
    d.add_argument("--quick", action="store_true", help="--train with a few seconds of training, to check the install")
    d.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    d.add_argument("--quiet", action="store_true", help="no per-epoch log")
    d.set_defaults(func=_cmd_demo)

    t = sub.add_parser("train", help="train a keypoint model on an image folder + landmark CSV, or a Kaggle CSV",
                       description="Train a NoseKeypointRegressor (from scratch, or fine-tuned from --init) and "
                                   "save it in skkp's safe format (joblib for a .joblib name). Images of "
                                   "different sizes (or --crop) are cropped square around their landmarks. "
                                   "Network options default to the estimator's own defaults.",
                       formatter_class=_DefaultsFormatter)
    t.add_argument("--images", help="folder of images named in the landmark CSV")
    t.add_argument("--landmarks", help="CSV: image file name, then x0,y0,x1,y1,... per row")
    t.add_argument("--kaggle", help="Kaggle facial keypoints training.csv (instead of --images/--landmarks)")
    t.add_argument("--points", help="keypoint indices to train on, e.g. 27-35 for the iBUG-68 nose")
    t.add_argument("--crop", action="store_true", help="crop faces around their landmarks first")
    defaults = _estimator_defaults()
    t.add_argument("--margin", type=float, default=0.25, help="crop margin, a fraction of the face size")
    t.add_argument("--model", default="model.skkp",
                   help="where to save the model: skkp's safe format, or joblib for a .joblib/.pkl name")
    t.add_argument("--init", default=None,
                   help="fine-tune: start from a shipped model (ibug68_face, ibug68_nose) or a saved model file")
    t.add_argument("--architecture", choices=defaults["architectures"], default=defaults["architecture"],
                   help="network; the default is the estimator's")
    t.add_argument("--image-size", type=int, default=defaults["image_size"], help="network input size")
    t.add_argument("--epochs", type=int, default=defaults["max_epochs"], help="training epochs")
    t.add_argument("--batch-size", type=int, default=defaults["batch_size"], help="images per batch")
    t.add_argument("--lr", type=_learning_rate, default=defaults["lr"],
                   help="Adam learning rate, or auto: the architecture's own")
    t.add_argument("--device", default="auto", help="auto, cpu or cuda")
    t.add_argument("--errors", choices=["raise", "skip"], default="raise",
                   help="on a bad row: stop with an error, or skip it and report the count")
    t.add_argument("--seed", type=int, default=0, help="random_state of the estimator")
    t.add_argument("--save-partial", action="store_true",
                   help="after Ctrl-C, still save the partly trained model (else: exit 130, write nothing)")
    t.add_argument("--quiet", action="store_true", help="no per-epoch log")
    t.set_defaults(func=_cmd_train)

    r = sub.add_parser("predict", help="predict keypoints for a folder of photos (faces detected) or of face crops",
                       description="Predict keypoints with a saved model. `skkp predict PHOTOS_DIR` finds every face "
                                   "of every photo (any size, colour or gray) with skkp.detect_faces, frames it as "
                                   "the model's training crops (refined on the predicted points) and writes "
                                   "OUT/points.csv (image, face, box, score, x0, y0, ...), with an overlay per photo "
                                   "under --overlays. `--images DIR` predicts on images already framed like the "
                                   "training images (face crops), one row per image.")
    r.add_argument("photos", nargs="?", metavar="PHOTOS_DIR", help="folder of photos: faces are detected")
    r.add_argument("--model", required=True,
                   help="model saved by `skkp train`, skkp.save or joblib.dump, an .onnx file from `skkp export`, "
                        "or a shipped model's name")
    r.add_argument("--images", help="folder of face crops (instead of PHOTOS_DIR)")
    r.add_argument("--out", default=None,
                   help="with PHOTOS_DIR: output folder (default skkp-predictions); with --images: the CSV "
                        "(default predictions.csv)")
    r.add_argument("--overlays", action="store_true", help="with PHOTOS_DIR: write OUT/overlays/NAME.png")
    r.add_argument("--margin", type=float, default=0.25, help="with PHOTOS_DIR: crop margin of the model's training crops")
    r.add_argument("--refine", type=int, default=2,
                   help="with PHOTOS_DIR: times each face is re-framed on its predicted points")
    r.add_argument("--max-faces", type=int, default=0, help="with PHOTOS_DIR: keep the best N faces per photo (0: all)")
    r.add_argument("--min-score", type=float, default=0.0,
                   help="with PHOTOS_DIR: drop detections scored lower (see skkp.detect_faces)")
    r.add_argument("--overlay-dir", help="with --images: also write PNGs with the points drawn into this folder")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=_cmd_predict)

    e = sub.add_parser("export", help="export a model to ONNX, with its preprocessing, for onnxruntime",
                       description="Write a fitted model (a file from skkp train / skkp.save / joblib, or a shipped "
                                   "model's name) to an ONNX file that skkp.onnx.load and skkp predict read "
                                   "without torch. Needs pip install \"skkp[onnx]\".")
    e.add_argument("model", metavar="MODEL_FILE", help="the model to export")
    e.add_argument("out", metavar="OUT", help="the .onnx file to write")
    e.set_defaults(func=_cmd_export)
    return p


def main(argv=None):
    """Run the ``skkp`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"skkp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as exc:  # bad data or arguments found by skkp's checks
        print(f"skkp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"skkp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
