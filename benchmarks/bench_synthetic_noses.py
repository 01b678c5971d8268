"""Accuracy on synthetic noses: each architecture of NoseKeypointRegressor against the mean predictor.

For each nose view, ``make_noses`` gives a training and a held-out set (96x96);
each architecture trains with its defaults for its number of epochs (``--epochs``,
``arch=N,...``). Reported: MAE in pixels of the per-coordinate mean predictor
(must be >= 4 px, so the task is not trivial) and of each trained model (goal:
>= 4x better than the mean predictor), with training CPU and wall seconds.

    python benchmarks/bench_synthetic_noses.py --threads 1 --json benchmarks/results/synthetic_noses.json
"""
import time

import numpy as np

from _common import add_threads_option, epochs_table, metadata, parser, set_threads, write_results
from skkp import NoseKeypointRegressor
from skkp.datasets import make_noses
from skkp.metrics import mean_absolute_error_px

#: Epochs per architecture: about the same few CPU-minutes per view, except inception (the slowest).
EPOCHS = "heatmap=8,cnn=15,inception=8,mlp=400"


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n-train", type=int, default=1500)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--epochs", default=EPOCHS, help="arch=N,... (the architectures run in this order)")
    p.add_argument("--architectures", default=None, help="a subset of --epochs' architectures, comma-separated")
    p.add_argument("--views", default="frontal,side,bottom")
    add_threads_option(p)
    args = p.parse_args()
    set_threads(args)
    size = 96
    epochs = epochs_table(args.epochs)
    if args.architectures:
        epochs = {arch: epochs.get(arch, 8) for arch in args.architectures.split(",") if arch}
    if args.smoke:
        args.n_train, args.n_test, size = 64, 32, 32
        epochs = {arch: 1 for arch in epochs}
    results = {"benchmark": "synthetic_noses", "meta": metadata(),
               "setup": {"n_train": args.n_train, "n_test": args.n_test, "image_size": size, "epochs": epochs,
                         "goal": "model MAE <= mean predictor MAE / 4"},
               "mean_predictor": {}, "architectures": {arch: {"epochs": n, "views": {}} for arch, n in epochs.items()}}
    for view in args.views.split(","):
        X_tr, y_tr = make_noses(args.n_train, view=view, image_size=size, random_state=1)
        X_te, y_te = make_noses(args.n_test, view=view, image_size=size, random_state=2)
        baseline = mean_absolute_error_px(y_te, np.broadcast_to(y_tr.mean(axis=0), y_te.shape))
        results["mean_predictor"][view] = {"mae_px": baseline}
        for arch, n_epochs in epochs.items():
            model = NoseKeypointRegressor(architecture=arch, image_size=size, max_epochs=n_epochs, random_state=0,
                                          device="cpu")
            t0, c0 = time.perf_counter(), time.process_time()
            model.fit(X_tr, y_tr)
            fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
            mae = mean_absolute_error_px(y_te, model.predict(X_te))
            row = {"mean_predictor_mae_px": baseline, "model_mae_px": mae, "improvement": baseline / mae,
                   "fit_seconds": fit_s, "fit_cpu_seconds": fit_cpu,
                   "targets_met": bool(baseline >= 4 and baseline / mae >= 4)}
            results["architectures"][arch]["views"][view] = row
            print(arch, view, row, flush=True)
    write_results(results, args.json)


if __name__ == "__main__":
    main()
