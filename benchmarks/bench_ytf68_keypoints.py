"""Real-face keypoint benchmark on ../shared/data/ytf68 (skipped when absent).

96x96 grayscale face crops from the landmark extent (margin 0.25) with a random
jitter of up to 5% of the box in position and 10% in scale, split 80/20 by
person. Target: the 9 nose points (iBUG 27-35). For each architecture the
estimator trains for ``--epochs`` (one number, or ``arch=N,...``), stopped early
if the next epoch would overrun the ``--budget`` (CPU-seconds of this process by
default, ``--clock wall`` for wall-clock seconds); reported: MAE in pixels at
96x96, nose NME normalised by the outer-eye distance (points 36 and 45), failure
rate at NME > 0.10, training CPU and wall time and inference images/s, plus the
per-coordinate mean predictor. ``--full-face`` adds a 68-point run with the best
architecture.

    python benchmarks/bench_ytf68_keypoints.py --json benchmarks/results/ytf68_keypoints.json
    python benchmarks/bench_ytf68_keypoints.py --architectures cnn --epochs cnn=18 --budget 900 --threads 1
"""
import time

import numpy as np
from skorch.callbacks import Callback

from _common import (YTF68_DIR, add_threads_option, epochs_table, metadata, parser, set_threads, timeit,
                     write_results, ytf68_csv)
from skkp import NoseKeypointRegressor, save
from skkp.datasets import IBUG68_NOSE, crop_faces, load_landmarks_csv
from skkp.metrics import failure_rate, mean_absolute_error_px, normalized_mean_error


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


class TimeBudget(Callback):
    """Stop training before the next epoch would overrun ``seconds`` of training time, measured by
    ``clock``: ``"cpu"`` (CPU-seconds of this process, all threads: what a shared machine gives
    the run) or ``"wall"``."""

    def __init__(self, seconds, clock="cpu"):
        self.seconds = seconds
        self.clock = clock

    def on_train_begin(self, net, **kwargs):
        self._t0 = CLOCKS[self.clock]()

    def on_epoch_end(self, net, **kwargs):
        used = CLOCKS[self.clock]() - self._t0
        per_epoch = used / len(net.history)
        if used + per_epoch > self.seconds:
            raise KeyboardInterrupt  # skorch ends fit cleanly on KeyboardInterrupt


def epochs_for(spec, arch):
    """Epochs for ``arch`` from ``--epochs``: one number for all, or ``arch=N,...`` (others: 200)."""
    if "=" not in spec:
        return int(spec)
    return epochs_table(spec).get(arch, 200)


def load_split(data_dir, seed=0, test_fraction=0.2, n_rows=None, duplicates="keep", size=96, with_conflicts=False):
    """``size`` px (96) gray crops of ytf68, split by person; with ``n_rows``, of about its first
    ``n_rows`` faces only (whole people, see :func:`_common.ytf68_csv`). ``duplicates="drop"``
    then leaves out the rows of images labelled twice with different points, on both sides of
    the same split of people; ``with_conflicts`` also returns the mask of such rows among the
    test rows (after any drop)."""
    import warnings

    from sklearn.model_selection import GroupShuffleSplit

    from skkp.datasets._readers import _conflicting_rows

    with ytf68_csv(data_dir, n_rows) as csv_path, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # ytf68's conflicting rows: kept or dropped below, on purpose
        data = load_landmarks_csv(csv_path, data_dir / "images", gray=True)
    train, test = next(GroupShuffleSplit(1, test_size=test_fraction, random_state=seed)
                       .split(data.keypoints, groups=data.groups))
    if duplicates == "drop":
        clean = ~_conflicting_rows(data.filenames, data.keypoints)
        train, test = train[clean[train]], test[clean[test]]
    rng = np.random.RandomState(seed)
    crops = {}
    for name, idx in (("train", train), ("test", test)):
        c = crop_faces([data.images[i] for i in idx], keypoints=data.keypoints[idx], size=size, margin=0.25,
                       gray=True, jitter=0.05, random_state=rng)
        crops[name] = (c.images, c.keypoints)
    n_people = (len(set(np.asarray(data.groups)[train])), len(set(np.asarray(data.groups)[test])))
    if with_conflicts:
        return crops, n_people, _conflicting_rows(data.filenames, data.keypoints)[test]
    return crops, n_people


def nose_columns():
    return np.ravel([[2 * i, 2 * i + 1] for i in IBUG68_NOSE])


def evaluate(y_true68, y_pred, cols):
    """Errors of predictions for the points ``cols`` of 68-point truth (NME by outer eyes)."""
    truth = y_true68[:, cols]
    inter_ocular = np.linalg.norm(y_true68[:, 72:74] - y_true68[:, 90:92], axis=1)
    return {"mae_px": mean_absolute_error_px(truth, y_pred),
            "nme": normalized_mean_error(truth, y_pred, normalizer=inter_ocular),
            "failure_rate_0.10": failure_rate(truth, y_pred, threshold=0.10, normalizer=inter_ocular)}


def run_model(params, X_tr, y_tr, X_te, y_te68, cols, budget, repeats, clock="wall", conflicts=None, save_to=None,
              keep_model=False):
    """Fit ``NoseKeypointRegressor(**params)`` and score it on the test crops; with the mask
    ``conflicts`` of test rows labelled twice, also on the ``unique_rows`` and the
    ``conflicting_rows`` apart; with ``save_to``, write the fitted model there; with
    ``keep_model``, return it too (key ``model``)."""
    params = dict(params)
    net_kwargs = dict(params.pop("net_kwargs", None) or {})
    if budget:
        net_kwargs["callbacks"] = [*net_kwargs.get("callbacks", []), TimeBudget(budget, clock)]
    model = NoseKeypointRegressor(**params, net_kwargs=net_kwargs or None)
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(X_tr, y_tr)
    fit_wall, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    pred = model.predict(X_te)
    res = evaluate(y_te68, pred, cols)
    if conflicts is not None:
        for name, rows in (("unique_rows", ~conflicts), ("conflicting_rows", conflicts)):
            res[name] = evaluate(y_te68[rows], pred[rows], cols) if rows.any() else None
    if save_to:
        save(model, save_to)
    speed = timeit(lambda: model.predict(X_te), repeats=repeats)
    res.update(params={**params, "net_kwargs": {k: v for k, v in net_kwargs.items() if k != "callbacks"}},
               epochs=len(model.history_), stopped_by_budget=bool(model.fit_interrupted_), fit_seconds=fit_wall,
               fit_cpu_seconds=fit_cpu, predict_images_per_s=len(X_te) / speed["median_s"],
               predict_timing=speed, valid_mae_px_by_epoch=[round(v, 3) for v in
                                                            model.history_[:, "valid_mae_px"]],
               train_mae_px_last_epoch=model.history_[-1].get("train_mae_px"))
    if keep_model:
        res["model"] = model
    return res


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--architectures", default="mlp,cnn,inception,heatmap")
    p.add_argument("--budget", type=float, default=900.0, help="seconds of training per architecture (see --clock)")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                   help="what --budget counts: CPU-seconds of this process (default) or wall-clock seconds")
    p.add_argument("--epochs", default="200",
                   help="epochs (the cosine schedule's length) for every architecture, or arch=N,... (others 200)")
    p.add_argument("--defaults", action="store_true",
                   help="also fit NoseKeypointRegressor(random_state=0) with no other argument")
    p.add_argument("--full-face", action="store_true",
                   help="also a 68-point run: the defaults with --defaults, else the best architecture")
    p.add_argument("--duplicates", choices=["keep", "drop"], default="keep",
                   help="rows of images ytf68 labels twice with different points: keep (the standard protocol) or "
                        "drop them from training and test")
    p.add_argument("--device", default="cpu", help="device of the architecture runs (e.g. cuda)")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers for augmentation")
    add_threads_option(p)
    args = p.parse_args()
    set_threads(args)
    if not (YTF68_DIR / "keypoints.csv").is_file():
        print(f"ytf68 not found at {YTF68_DIR}; nothing to do.")
        return
    # smoke: read only the first faces (whole people), then keep at most 128 / 32 of them
    crops, n_people, conflicts = load_split(YTF68_DIR, n_rows=200 if args.smoke else None,
                                            duplicates=args.duplicates, with_conflicts=True)
    (X_tr, y_tr68), (X_te, y_te68) = crops["train"], crops["test"]
    if args.smoke:
        X_tr, y_tr68, X_te, y_te68, conflicts = X_tr[:128], y_tr68[:128], X_te[:32], y_te68[:32], conflicts[:32]
        args.budget, args.epochs, args.repeats = 20, "1", 1
    cols = nose_columns()
    y_tr = y_tr68[:, cols]
    results = {"benchmark": "ytf68_keypoints", "meta": metadata(),
               "setup": {"n_train": len(X_tr), "n_test": len(X_te), "people_train_test": n_people,
                         "crop": "96x96 gray, margin 0.25, jitter 5% position / 10% scale",
                         "target": "iBUG 27-35 nose points", "budget_s": args.budget, "budget_clock": args.clock,
                         "split": "GroupShuffleSplit by person, test_size=0.2, random_state=0",
                         "duplicates": args.duplicates, "device": args.device,
                         "num_workers": args.num_workers}}
    results["mean_predictor"] = evaluate(y_te68, np.broadcast_to(y_tr.mean(0), (len(X_te), len(cols))), cols)
    print("mean predictor", results["mean_predictor"], flush=True)
    results["architectures"] = {}
    for arch in filter(None, args.architectures.split(",")):
        params = dict(architecture=arch, max_epochs=epochs_for(args.epochs, arch), random_state=0, device=args.device,
                      num_workers=args.num_workers)
        res = run_model(params, X_tr, y_tr, X_te, y_te68, cols, args.budget, args.repeats, args.clock)
        results["architectures"][arch] = res
        print(arch, {k: res[k] for k in ("mae_px", "nme", "failure_rate_0.10", "epochs", "stopped_by_budget",
                                         "fit_cpu_seconds", "fit_seconds")}, flush=True)
    defaults = {"random_state": 0, **({"max_epochs": 1} if args.smoke else {})}
    if args.defaults:
        res = run_model(defaults, X_tr, y_tr, X_te, y_te68, cols, None, args.repeats, conflicts=conflicts)
        results["defaults"] = res
        print("defaults", {k: res[k] for k in ("mae_px", "nme", "epochs", "fit_cpu_seconds")}, flush=True)
    if args.full_face:
        all_cols = np.arange(136)
        if args.defaults:
            params, budget = dict(defaults, schema="ibug68"), None
        else:
            best = min(results["architectures"], key=lambda a: results["architectures"][a]["nme"])
            params, budget = dict(architecture=best, max_epochs=epochs_for(args.epochs, best), random_state=0,
                                  device="cpu", schema="ibug68"), args.budget
        res = run_model(params, X_tr, y_tr68, X_te, y_te68, all_cols, budget, args.repeats, args.clock)
        results["full_face_68"] = res
        print("full face", res["params"], {k: res[k] for k in ("mae_px", "nme")}, flush=True)
    write_results(results, args.json)


if __name__ == "__main__":
    main()
