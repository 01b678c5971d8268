"""Command-line front end over skkp's public API: ``skkp demo``, ``skkp train``, ``skkp predict``."""
import argparse
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
    """``(X, y, groups, schema, photos)``: ``photos`` is True when X holds whole photos (images of
    several sizes, or ``--crop``), which a FaceKeypointRegressor crops around their landmarks."""
    import numpy as np

    from .datasets import load_kaggle_facial_keypoints, load_landmarks_csv

    if args.kaggle:
        data = load_kaggle_facial_keypoints(args.kaggle, errors=args.errors)
        return data.images, data.keypoints, None, "kaggle15", False
    if not (args.landmarks and args.images):
        raise CLIError("give --landmarks CSV with --images DIR, or --kaggle CSV")
    data = load_landmarks_csv(args.landmarks, args.images, gray=True, errors=args.errors)
    y = data.keypoints
    schema = "ibug68" if y.shape[1] == 136 else None
    if args.points:
        idx = _parse_points(args.points, y.shape[1] // 2)
        y = y[:, np.ravel([[2 * i, 2 * i + 1] for i in idx])]
        schema = None
        if data.keypoints.shape[1] == 136:  # an iBUG 68 CSV: the points keep their iBUG names
            from .schemas import IBUG68_NOSE, IBUG68_SCHEMA

            schema = "ibug68_nose" if idx == list(IBUG68_NOSE) else IBUG68_SCHEMA.subset(idx, "ibug68_points")
    photos = args.crop or len({im.shape[:2] for im in data.images}) > 1
    X = list(data.images) if photos else np.stack(data.images)
    return X, y, data.groups, schema, photos  # person ids from the file names: validation holds out people


def _cmd_train(args):
    import contextlib
    import os

    from .distributed import data_parallel, launched_by_torchrun

    if not launched_by_torchrun():
        return _train(args, contextlib.nullcontext, main=True)
    # `torchrun --nproc_per_node=N -m skkp train ...`: N processes train one model (skkp.distributed);
    # process 0 prints and saves, the others train quietly
    if os.environ["RANK"] == "0":
        return _train(args, data_parallel, main=True)
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        return _train(args, data_parallel, main=False)


def _train(args, parallel, main):
    """``skkp train``: fit inside the context ``parallel()``; only the ``main`` process writes files."""
    from .keypoints import NoseKeypointRegressor

    if args.points:
        _parse_points(args.points)  # the syntax, before reading any data
    if main:
        _check_writable(args.model, "--model")
    X, y, groups, schema, photos = _load_training_data(args)
    options = {name: value for name, value in (("architecture", args.architecture), ("image_size", args.image_size),
                                               ("max_epochs", args.epochs), ("batch_size", args.batch_size),
                                               ("lr", args.lr)) if value is not None}
    if args.init:
        print(f"Starting from {args.init} (fine-tuning).")
    model = NoseKeypointRegressor(**options, schema=schema, device=args.device, random_state=args.seed,
                                  verbose=int(not args.quiet), init=args.init)
    if photos:
        from .detection import FaceDetector
        from .faces import FaceKeypointRegressor

        print(f"Training on {len(X)} photos with {y.shape[1] // 2} keypoints: each face is cropped to "
              f"{args.image_size}x{args.image_size} around its landmarks (margin {args.margin}), and the "
              f"{args.detector} face detector's boxes are calibrated to those crops.")
        model = FaceKeypointRegressor(model, detector=FaceDetector(args.detector, model=args.detector_model),
                                      margin=args.margin, size=args.image_size, random_state=args.seed)
    else:
        print(f"Training on {len(X)} images of {X.shape[1]}x{X.shape[2]} with {y.shape[1] // 2} keypoints.")
    with parallel() as processes:
        model.fit(X, y, groups=groups)
    crop_model = _crop_model(model)
    if processes is not None:
        print(f"Trained data-parallel by {processes.world_size} processes ({processes.backend}, batch_size "
              f"{crop_model.batch_size} split between them).")
    if crop_model.fit_interrupted_ and not args.save_partial:
        from ._training import epochs_done

        print(f"skkp train: interrupted after {epochs_done(crop_model.history_)} epoch(s); {args.model} was not "
              f"written (pass --save-partial to keep a partly trained model).", file=sys.stderr)
        return 130
    if not main:
        return 0
    _save_model(model, args.model)
    print(f"Saved the model to {args.model}.")
    if photos:
        print(f"The detector found the labelled face in {100 * model.detection_rate_:.0f}% of the photos searched; "
              f"box calibration: {model.calibration_}. skkp predict PHOTOS_DIR|VIDEO --model {args.model} uses both.")
    print(_baseline_line(crop_model))
    curves = Path(args.model).with_name(Path(args.model).stem + "_history.png")
    try:
        from .plotting import plot_history

        plot_history(crop_model.history_, curves, title=f"skkp train: {Path(args.model).name}")
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


def _crop_model(model):
    """The model that predicts on face crops: the regressor inside a FaceKeypointRegressor."""
    from .faces import FaceKeypointRegressor

    return model.regressor_ if isinstance(model, FaceKeypointRegressor) else model


def _cmd_predict(args):
    from ._cli_predict import predict

    return predict(args)


def _cmd_export(args):
    import zipfile

    from .onnx import export

    from .faces import FaceKeypointRegressor

    if Path(args.model).is_file() and zipfile.is_zipfile(args.model):
        from .io import load

        model = load(args.model)  # a keypoint model, a FaceParser, or a FaceKeypointRegressor
    else:  # a shipped name or a joblib file; says which file is missing
        from ._cli_predict import load_keypoint_model

        model = load_keypoint_model(args.model, allow_onnx=False)
    note = ""
    if isinstance(model, FaceKeypointRegressor):
        calibration = model.calibration_
        model = getattr(model.regressor_, "estimator", model.regressor_)  # unwrap a FrozenEstimator
        note = (f" It holds the crop model only: the face detector and its box calibration ({calibration}) are not "
                f"in the ONNX file, so skkp predict --model on it frames faces from detector boxes refined on the "
                f"points.")
    _check_writable(args.out, "OUT")
    path = export(model, args.out)
    print(f"Wrote {path} ({path.stat().st_size / 1e6:.2f} MB); read it with skkp.onnx.load, or skkp predict --model "
          f"{path}.{note}")
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
                                   "different sizes (or --crop) are whole photos: a FaceKeypointRegressor crops "
                                   "each face square around its landmarks, learns how the face detector's boxes "
                                   "map onto those crops, and is saved with them, ready for skkp predict "
                                   "PHOTOS_DIR|VIDEO_FILE. Network options default to the estimator's own defaults. "
                                   "Started by torchrun (torchrun --nproc_per_node=N -m skkp train ...), the N "
                                   "processes train one model data-parallel, batch_size split between them; "
                                   "process 0 saves it (docs/scaling.md).",
                       formatter_class=_DefaultsFormatter)
    t.add_argument("--images", help="folder of images named in the landmark CSV")
    t.add_argument("--landmarks", help="CSV: image file name, then x0,y0,x1,y1,... per row")
    t.add_argument("--kaggle", help="Kaggle facial keypoints training.csv (instead of --images/--landmarks)")
    t.add_argument("--points", help="keypoint indices to train on, e.g. 27-35 for the iBUG-68 nose")
    t.add_argument("--crop", action="store_true",
                   help="the images are whole photos (as when their sizes differ): train a FaceKeypointRegressor "
                        "that crops each face around its landmarks and calibrates the face detector to those crops")
    t.add_argument("--detector", default="auto", choices=["auto", "skimage", "opencv-haar", "yunet"],
                   help="photos: the face detector calibrated and saved with the model")
    t.add_argument("--detector-model", default=None, help="photos: the YuNet ONNX file for --detector yunet")
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

    r = sub.add_parser("predict", help="keypoints on a folder of photos or a video (faces detected), or on face crops",
                       description="Predict keypoints with a saved model. `skkp predict PHOTOS_DIR` (or one photo) "
                                   "finds every face of every photo (any size, colour or gray) and writes "
                                   "OUT/points.csv (image, face, box, score, x0, y0, ...), with an overlay per photo "
                                   "under --overlays. `skkp predict VIDEO_FILE` follows one face through the "
                                   "frames (detected on the first frame and whenever the track is lost, otherwise "
                                   "framed on the previous frame's points), smooths its points over time with a "
                                   "One Euro filter, and writes OUT/points.csv (one row per frame) and "
                                   "OUT/overlay.avi. A model saved from photos (skkp train on photos, "
                                   "FaceKeypointRegressor) frames faces with its own detector and box calibration; "
                                   "a crop model frames them from the detector's box, refined on its points. "
                                   "`--images DIR` predicts on images already framed like the training images "
                                   "(face crops), one row per image.",
                       formatter_class=_DefaultsFormatter)
    r.add_argument("photos", nargs="?", metavar="PHOTOS_DIR|VIDEO_FILE",
                   help="a folder of photos, one photo, or a video file: faces are detected")
    r.add_argument("--model", required=True,
                   help="model saved by `skkp train`, skkp.save or joblib.dump, an .onnx file from `skkp export`, "
                        "or a shipped model's name")
    r.add_argument("--images", help="folder of face crops (instead of PHOTOS_DIR)")
    r.add_argument("--out", default=None,
                   help="with PHOTOS_DIR or VIDEO_FILE: output folder (default skkp-predictions); with --images: "
                        "the CSV (default predictions.csv)")
    r.add_argument("--overlays", action=argparse.BooleanOptionalAction, default=None,
                   help="draw the boxes and points: OUT/overlays/NAME.png per photo (off by default), "
                        "OUT/overlay.avi for a video (on by default)")
    r.add_argument("--detector", default="auto", choices=["auto", "skimage", "opencv-haar", "yunet"],
                   help="face detector for a crop model (a model saved from photos brings its own)")
    r.add_argument("--detector-model", default=None, help="the YuNet ONNX file for --detector yunet")
    r.add_argument("--margin", type=float, default=0.25,
                   help="crop margin of a crop model's training crops (a model saved from photos knows its own)")
    r.add_argument("--refine", type=int, default=None,
                   help="times each detected face is re-framed on its predicted points (default: 2 for a crop "
                        "model, the saved model's own otherwise)")
    r.add_argument("--max-faces", type=int, default=0, help="photos: keep the best N faces per photo (0: all)")
    r.add_argument("--min-score", type=float, default=0.0,
                   help="photos: drop detections scored lower (see skkp.detect_faces)")
    r.add_argument("--smooth", choices=["one-euro", "none"], default="one-euro",
                   help="video: smoothing of the points over time (skkp.video.OneEuroFilter)")
    r.add_argument("--min-cutoff", type=float, default=0.5,
                   help="video: One Euro cut-off in Hz for a still face (lower: smoother, more lag)")
    r.add_argument("--beta", type=float, default=10.0,
                   help="video: One Euro speed coefficient (higher: less lag when the face moves)")
    r.add_argument("--detect-every", type=int, default=30,
                   help="video: frames between detector checks of the track (0: only when it is lost)")
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
