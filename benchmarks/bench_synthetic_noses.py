"""Accuracy on synthetic noses: a trained NoseKeypointRegressor against the mean predictor.

For each nose view, ``make_noses`` gives a training and a held-out set (96x96);
reported: MAE in pixels of the per-coordinate mean predictor (must be >= 4 px,
so the task is not trivial) and of the trained model (must beat it >= 3x), plus
training time.

    python benchmarks/bench_synthetic_noses.py --json benchmarks/results/synthetic_noses.json
"""
import time

import numpy as np

from _common import add_threads_option, metadata, parser, set_threads, write_results
from skkp import NoseKeypointRegressor
from skkp.datasets import make_noses
from skkp.metrics import mean_absolute_error_px


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=1500)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--architecture", default="heatmap")
    p.add_argument("--views", default="frontal,side,bottom")
    add_threads_option(p)
    args = p.parse_args()
    set_threads(args)
    size = 96
    if args.smoke:
        args.n_train, args.n_test, args.epochs, size = 64, 32, 1, 32
    results = {"benchmark": "synthetic_noses", "meta": metadata(),
               "setup": {"n_train": args.n_train, "n_test": args.n_test, "image_size": size,
                         "epochs": args.epochs, "architecture": args.architecture}, "views": {}}
    for view in args.views.split(","):
        X_tr, y_tr = make_noses(args.n_train, view=view, image_size=size, random_state=1)
        X_te, y_te = make_noses(args.n_test, view=view, image_size=size, random_state=2)
        baseline = mean_absolute_error_px(y_te, np.broadcast_to(y_tr.mean(axis=0), y_te.shape))
        model = NoseKeypointRegressor(architecture=args.architecture, image_size=size, max_epochs=args.epochs,
                                      random_state=0, device="cpu")
        t0 = time.perf_counter()
        model.fit(X_tr, y_tr)
        fit_s = time.perf_counter() - t0
        mae = mean_absolute_error_px(y_te, model.predict(X_te))
        results["views"][view] = {"mean_predictor_mae_px": baseline, "model_mae_px": mae,
                                  "improvement": baseline / mae, "fit_seconds": fit_s,
                                  "targets_met": bool(baseline >= 4 and baseline / mae >= 3)}
        print(view, results["views"][view], flush=True)
    write_results(results, args.json)


if __name__ == "__main__":
    main()
