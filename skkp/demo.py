"""End-to-end demos on built-in synthetic data, used by ``skkp demo``."""
import time
from pathlib import Path

import cv2
import numpy as np

from .io import save


def prediction_sheet(images, y_pred, y_true, title="", ncols=6, tile=144):
    """One PNG-ready picture: each image enlarged to ``tile`` pixels with its predicted points
    (orange) and true points (blue, joined to the prediction), its MAE below it, and a legend.

    Examples
    --------
    >>> from skkp.datasets import make_noses
    >>> X, y = make_noses(2, image_size=32, random_state=0)
    >>> prediction_sheet(X, y + 1, y, ncols=2, tile=64).shape[1]
    134
    """
    from .metrics import mean_absolute_error_px
    from .plotting import add_caption, draw_keypoints, image_grid

    tiles = []
    for image, pred, true in zip(images, y_pred, y_true):
        k = tile / image.shape[1]
        big = cv2.resize(np.asarray(image), (tile, int(round(image.shape[0] * k))), interpolation=cv2.INTER_NEAREST)
        up = lambda pts: (np.asarray(pts, float) + 0.5) * k - 0.5  # noqa: E731  (pixel centres scale about -0.5)
        drawn = draw_keypoints(big, up(pred), truth=up(true), radius=max(2.0, tile / 40))
        tiles.append(add_caption(drawn, f"MAE {mean_absolute_error_px(true[None], pred[None]):.2f} px"))
    grid = image_grid(tiles, ncols=min(ncols, len(tiles)))
    legend = add_caption(np.full((1, grid.shape[1], 3), 255, np.uint8),
                         f"{title}   orange: prediction, blue: truth".strip(), height=28)[1:]
    return np.concatenate([legend, grid])


def versus_baseline(error, baseline_error):
    """How an error compares with a baseline's, worded as a win or a loss.

    Examples
    --------
    >>> versus_baseline(1.0, 5.0), versus_baseline(5.65, 2.63)
    ('5.0x better than the baseline', 'WORSE than the baseline: 2.1x its error')
    """
    if error < baseline_error:
        return f"{baseline_error / error:.1f}x better than the baseline"
    if error > baseline_error:
        return f"WORSE than the baseline: {error / baseline_error:.1f}x its error"
    return "no better than the baseline"


def keypoint_demo(out_dir="skkp-demo", n_train=1500, n_test=300, image_size=96, max_epochs=12,
                  architecture="heatmap", random_state=0, verbose=1, print_fn=print):
    """Train a :class:`~skkp.NoseKeypointRegressor` on synthetic frontal noses.

    Prints the held-out MAE in pixels of the model and of the per-coordinate
    mean predictor, saves the fitted model (:func:`skkp.save`) and a PNG of
    predictions (green) and truth (red) drawn on held-out images.

    Parameters
    ----------
    out_dir : str or Path
        Where ``nose_model.skkp`` and ``nose_predictions.png`` are written.
    n_train, n_test : int
        Numbers of synthetic training and held-out images.
    image_size : int
        Side of the synthetic images.
    max_epochs : int
    architecture : str
    random_state : int
    verbose : int
    print_fn : callable
        Receives the report lines.

    Returns
    -------
    dict
        ``mae_px``, ``mean_predictor_mae_px``, ``fit_seconds``, ``model_path``, ``png_path``.

    Examples
    --------
    >>> import tempfile
    >>> r = keypoint_demo(tempfile.mkdtemp(), n_train=64, n_test=16, image_size=32, max_epochs=1,
    ...                   verbose=0, print_fn=lambda *a: None)
    >>> sorted(r)[:2]
    ['fit_seconds', 'mae_px']
    """
    from .datasets import make_noses
    from .keypoints import NoseKeypointRegressor
    from .metrics import mean_absolute_error_px
    from .plotting import save_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(random_state)
    X_train, y_train = make_noses(n_train, view="frontal", image_size=image_size, random_state=rng)
    X_test, y_test = make_noses(n_test, view="frontal", image_size=image_size, random_state=rng)
    print_fn(f"Training a {architecture!r} keypoint model on {n_train} synthetic frontal noses "
             f"({image_size}x{image_size}, {y_train.shape[1] // 2} points)...")
    model = NoseKeypointRegressor(architecture=architecture, image_size=image_size, max_epochs=max_epochs,
                                  random_state=random_state, verbose=verbose)
    t0 = time.perf_counter()
    model.fit(X_train, y_train)
    fit_seconds = time.perf_counter() - t0
    y_pred = model.predict(X_test)
    mae = mean_absolute_error_px(y_test, y_pred)
    baseline = mean_absolute_error_px(y_test, np.broadcast_to(y_train.mean(axis=0), y_test.shape))
    print_fn(f"Held-out MAE: model {mae:.2f} px, mean predictor {baseline:.2f} px "
             f"({versus_baseline(mae, baseline)}), trained in {fit_seconds:.0f} s.")
    model_path = out / "nose_model.skkp"
    save(model, model_path)
    png_path = out / "nose_predictions.png"
    save_png(png_path, prediction_sheet(X_test[:12], y_pred[:12], y_test[:12],
                                        title=f"held-out MAE {mae:.2f} px (mean predictor {baseline:.2f} px)"))
    print_fn(f"Saved the model to {model_path} and predictions (orange, truth blue) to {png_path}.")
    return {"mae_px": mae, "mean_predictor_mae_px": baseline, "fit_seconds": fit_seconds,
            "model_path": str(model_path), "png_path": str(png_path)}


def parser_demo(out_dir="skkp-demo", n_train=384, n_test=64, image_size=64, max_epochs=25, width=0.25,
                random_state=0, verbose=1, print_fn=print):
    """Train a small :class:`~skkp.parsing.FaceParser` on synthetic faces.

    Prints held-out mean IoU, mean F1 (without background) and pixel accuracy
    of the model and of a per-pixel majority ("mean shape") baseline, saves the
    fitted model (:func:`skkp.save`) and a PNG whose rows show image, true labels and
    predicted labels of held-out faces side by side.

    Parameters
    ----------
    out_dir : str or Path
        Where ``parser_model.skkp`` and ``parser_predictions.png`` are written.
    n_train, n_test : int
        Numbers of synthetic training and held-out faces.
    image_size : int
        Side of the synthetic images and of the network input.
    max_epochs : int
    width : float
        Channel multiplier of the network.
    random_state : int
    verbose : int
    print_fn : callable
        Receives the report lines.

    Returns
    -------
    dict
        ``mean_iou``, ``mean_f1``, ``pixel_accuracy``, ``baseline_mean_iou``,
        ``fit_seconds``, ``model_path``, ``png_path``.

    Examples
    --------
    >>> import tempfile
    >>> r = parser_demo(tempfile.mkdtemp(), n_train=8, n_test=4, image_size=32, max_epochs=1,
    ...                 width=0.125, verbose=0, print_fn=lambda *a: None)
    >>> sorted(r)[:3]
    ['baseline_mean_iou', 'fit_seconds', 'mean_f1']
    """
    from .datasets import CELEBAMASK_CLASSES, make_faces
    from .metrics import parsing_report
    from .parsing import FaceParser
    from .plotting import colorize_labels, image_grid, save_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(random_state)
    X_train, y_train = make_faces(n_train, image_size=image_size, random_state=rng)
    X_test, y_test = make_faces(n_test, image_size=image_size, random_state=rng)
    print_fn(f"Training a face parser (width {width}) on {n_train} synthetic faces "
             f"({image_size}x{image_size}, {len(CELEBAMASK_CLASSES)} classes)...")
    model = FaceParser(image_size=image_size, width=width, max_epochs=max_epochs, batch_size=16, lr=0.05,
                       warmup_steps=50, scale_range=(0.75, 1.5), random_state=random_state, verbose=verbose)
    t0 = time.perf_counter()
    model.fit(X_train, y_train)
    fit_seconds = time.perf_counter() - t0
    y_pred = model.predict(X_test)
    report = parsing_report(y_test, y_pred, CELEBAMASK_CLASSES)
    counts = np.stack([(y_train == k).sum(axis=0) for k in range(len(CELEBAMASK_CLASSES))])
    prior = np.broadcast_to(counts.argmax(axis=0).astype(np.uint8), y_test.shape)
    baseline = parsing_report(y_test, prior, CELEBAMASK_CLASSES)
    print_fn(f"Held-out: mean IoU {report['mean_iou']:.3f} (majority-label baseline "
             f"{baseline['mean_iou']:.3f}), mean F1 without background {report['mean_f1']:.3f}, "
             f"pixel accuracy {report['pixel_accuracy']:.3f}; trained in {fit_seconds:.0f} s.")
    model_path = out / "parser_model.skkp"
    save(model, model_path)
    rows = []
    for i in range(min(6, n_test)):
        rows += [X_test[i], colorize_labels(y_test[i]), colorize_labels(y_pred[i])]
    scale = max(1, 128 // image_size)
    tiles = [np.kron(t, np.ones((scale, scale, 1), dtype=t.dtype)) for t in rows]
    png_path = out / "parser_predictions.png"
    save_png(png_path, image_grid(tiles, ncols=3))
    print_fn(f"Saved the model to {model_path} and image | truth | prediction rows to {png_path}.")
    return {"mean_iou": report["mean_iou"], "mean_f1": report["mean_f1"],
            "pixel_accuracy": report["pixel_accuracy"], "baseline_mean_iou": baseline["mean_iou"],
            "fit_seconds": fit_seconds, "model_path": str(model_path), "png_path": str(png_path)}


def pretrained_demo(out_dir="skkp-demo", print_fn=print):
    """68 points from the shipped face model on scikit-image's astronaut photo, in seconds.

    The face is found by :func:`skkp.detect_faces`; its box is then refined twice on the
    predicted landmarks (:func:`skkp.faces.predict_in_boxes`), since the model was trained on crops framed by the
    68 points (margin 0.25).

    Returns
    -------
    dict
        ``points`` (136,) in photo pixels, ``seconds``, ``png_path``.
    """
    try:
        from skimage import data
    except ImportError:
        raise ImportError('the pretrained demo reads its photo from scikit-image: pip install scikit-image') from None
    from . import pretrained
    from .detection import detect_faces, xywh_to_xyxy
    from .faces import predict_in_boxes
    from .plotting import add_caption, draw_keypoints, save_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    photo = data.astronaut()
    face = pretrained.load_model("ibug68_face")
    faces = detect_faces([photo])[0]
    if not len(faces):
        raise RuntimeError("no face found on the astronaut photo: the detector is broken")
    # the best-scoring face, framed from its box, then twice on its predicted points
    points = predict_in_boxes(face, [photo], xywh_to_xyxy(faces[:1, :4]), size=96, margin=0.25, refine=2)
    seconds = time.perf_counter() - t0
    x0, y0 = 130, 40
    view = cv2.resize(photo[y0:y0 + 180, x0:x0 + 200], None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    picture = draw_keypoints(view, (points[0].reshape(-1, 2) - [x0, y0] + 0.5) * 2 - 0.5, radius=3)
    png_path = out / "pretrained_face.png"
    save_png(png_path, add_caption(picture, "skkp.pretrained 'ibug68_face': 68 points, no training", height=28))
    print_fn(f"Found the face on scikit-image's astronaut photo and placed the 68 points of the pretrained face "
             f"model in {seconds:.1f} s, no training: {png_path}. (skkp demo --train trains a model.)")
    return {"points": points[0], "seconds": seconds, "png_path": str(png_path)}
