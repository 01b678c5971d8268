"""End-to-end demos on built-in synthetic data, used by ``skkp demo``."""
import time
from pathlib import Path

import joblib
import numpy as np


def keypoint_demo(out_dir="skkp-demo", n_train=1500, n_test=300, image_size=96, max_epochs=12,
                  architecture="cnn", random_state=0, verbose=1, print_fn=print):
    """Train a :class:`~skkp.NoseKeypointRegressor` on synthetic frontal noses.

    Prints the held-out MAE in pixels of the model and of the per-coordinate
    mean predictor, saves the fitted model with joblib and a PNG of
    predictions (green) and truth (red) drawn on held-out images.

    Parameters
    ----------
    out_dir : str or Path
        Where ``nose_model.joblib`` and ``nose_predictions.png`` are written.
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
    from .plotting import draw_keypoints, image_grid, save_png

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
             f"({baseline / mae:.1f}x better), trained in {fit_seconds:.0f} s.")
    model_path = out / "nose_model.joblib"
    joblib.dump(model, model_path)
    tiles = [draw_keypoints(X_test[i], y_pred[i], truth=y_test[i]) for i in range(min(12, n_test))]
    png_path = out / "nose_predictions.png"
    save_png(png_path, image_grid([np.kron(t, np.ones((2, 2, 1), dtype=t.dtype)) for t in tiles], ncols=6))
    print_fn(f"Saved the model to {model_path} and predictions (green, truth red) to {png_path}.")
    return {"mae_px": mae, "mean_predictor_mae_px": baseline, "fit_seconds": fit_seconds,
            "model_path": str(model_path), "png_path": str(png_path)}
