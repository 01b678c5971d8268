"""Variants of the keypoint defaults on ytf68 noses: one parameter changed at a time.

Same data and split as bench_ytf68_keypoints.py (96 px crops with jitter, people
split 250/63, the 9 nose points). Each variant is
``NoseKeypointRegressor(random_state=0, **variant)``; it reports held-out MAE in
pixels, nose NME by the outer-eye distance, failure rate at NME > 0.10, the last
epoch's training MAE (on augmented images) and validation MAE (held-out frames
of training people), and training time.

Each variant is also scored on the held-out rows ytf68 does not label twice
(``unique_rows``) and on those it does (``conflicting_rows``: 236 of the 672,
pairs of rows naming one image with different points, so that no prediction can
match both; see ``bench_label_floor.py``). A variant with ``image_size`` other
than 96 gets crops of that size cut from the original frames with the same
framing; its pixel errors are reported at 96 px (``mae_px``) and at its own size.
Each fitted model is also scored with test-time shift averaging (``shift_average``:
the mean of its points on the crop and on four copies shifted by 2 px).
The pseudo-parameter ``"pretrain_68": true`` first fits the defaults on all 68
points of the same training people (``schema="ibug68"``) and starts the nose
model from that fit (``init=``), as a user would start from a shipped 68-point
model; the shipped ones have seen the held-out people, so they are not used here.
``"distill": N`` first fits N teachers (the variant with random_state 1..N), then
fits the variant (random_state 0) on the mean of the teachers' points on the
training crops instead of the labels (their time is added).

Run:  python benchmarks/bench_ytf68_variants.py --threads 1 \\
          --variant '{"max_epochs": 40, "batch_size": 32}' --json results.json
CI:   python benchmarks/bench_ytf68_variants.py --smoke
"""
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import YTF68_DIR, add_threads_option, metadata, parser, set_threads, write_results  # noqa: E402
from bench_ytf68_keypoints import evaluate, load_split, nose_columns, run_model  # noqa: E402

from skkp import NoseKeypointRegressor, load  # noqa: E402


SHIFTS = [(0, 0), (2, 0), (-2, 0), (0, 2), (0, -2)]


def shift_average(model, X, shifts=SHIFTS):
    """Test-time augmentation: the mean of the points predicted on copies of ``X`` shifted by
    ``shifts`` pixels (edges replicated), each moved back by its shift."""
    import cv2

    preds = []
    for dx, dy in shifts:
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        moved = np.stack([cv2.warpAffine(np.asarray(x, np.float32), m, (x.shape[1], x.shape[0]),
                                         flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) for x in X])
        preds.append(model.predict(moved).reshape(len(X), -1, 2) - (dx, dy))
    return np.mean(preds, axis=0).reshape(len(X), -1)


def _scores(pred, y_te68, cols, conflicts):
    res = evaluate(y_te68, pred, cols)
    for name, rows in (("unique_rows", ~conflicts), ("conflicting_rows", conflicts)):
        res[name] = evaluate(y_te68[rows], pred[rows], cols) if rows.any() else None
    return res


def model_scores(model, X_te, y_te68, cols, conflicts, size):
    """A fitted model's scores on the test crops of ``size`` px, all rows and the unique and
    conflicting rows apart, plain and with :func:`shift_average` (2 px at 96 px, scaled to ``size``);
    pixel errors in px of a 96 px crop. Also the loss it was trained with (what "auto" resolved to)."""
    step = size / 96
    res = _scores(model.predict(X_te), y_te68, cols, conflicts)
    res["shift_average"] = _scores(shift_average(model, X_te, [(dx * step, dy * step) for dx, dy in SHIFTS]),
                                   y_te68, cols, conflicts)
    res["loss"] = model.net_.criterion_.kind
    return _at_96(res, size)


def _at_96(res, size):
    """``res`` with every ``mae_px`` in pixels of a 96 px crop (the original kept as ``mae_px_at_own_size``)."""
    if size == 96 or not isinstance(res, dict):
        return res
    out = {k: _at_96(v, size) for k, v in res.items()}
    if "mae_px" in res:
        out["mae_px_at_own_size"], out["mae_px"] = res["mae_px"], res["mae_px"] * 96 / size
    return out


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--variant", action="append", default=[], help="JSON dict of estimator parameters (repeatable)")
    p.add_argument("--save-dir", type=Path, default=None,
                   help="also write each fitted model there (skkp.save), for later test-time evaluations")
    p.add_argument("--append", action="store_true", help="add the variants to those already in --json")
    p.add_argument("--rescore", type=Path, default=None,
                   help="fit nothing: score again the models saved in this folder by an earlier run (variant<i>.skkp "
                        "for the i-th variant of its JSON, given with --json) and update that JSON")
    p.add_argument("--merge", nargs="+", type=Path, default=None,
                   help="fit nothing: write the variants of these result files (each run's metadata kept with its "
                        "variants) into --json")
    p.add_argument("--note", default=None, help="with --merge: how the runs were made, kept in the JSON")
    add_threads_option(p)
    args = p.parse_args()
    set_threads(args)
    if args.merge:
        merged = [json.loads(path.read_text()) for path in args.merge]
        for res in merged:
            for v in res["variants"]:
                v.setdefault("meta", res["meta"])
        write_results({**merged[0], "meta": metadata(), "merged_from": [str(path) for path in args.merge],
                       **({"note": args.note} if args.note else {}),
                       "variants": [v for res in merged for v in res["variants"]]}, args.json)
        return
    if not (YTF68_DIR / "keypoints.csv").is_file():
        print(f"ytf68 not found at {YTF68_DIR}; nothing to do.")
        return
    variants = [json.loads(v) for v in args.variant] or [{"max_epochs": 40}]
    # smoke: read only the first faces (whole people), then keep at most 96 / 32 of them
    if args.smoke:
        variants = [{**v, "max_epochs": 1} for v in variants[:1]]
    cols = nose_columns()
    split = {}

    def data(size):  # the same people and framing at every size (the crop jitter is drawn from one seed)
        if size not in split:
            crops, n_people, conflicts = load_split(YTF68_DIR, n_rows=160 if args.smoke else None, size=size,
                                                    with_conflicts=True)
            (X_tr, y_tr68), (X_te, y_te68) = crops["train"], crops["test"]
            if args.smoke:
                X_tr, y_tr68, X_te, y_te68, conflicts = X_tr[:96], y_tr68[:96], X_te[:32], y_te68[:32], conflicts[:32]
            split[size] = X_tr, y_tr68, X_te, y_te68, conflicts, n_people
        return split[size]

    if args.rescore:
        results = json.loads(Path(args.json).read_text())
        for i, res in enumerate(results["variants"]):
            size = res["params"].get("image_size", 96)
            _, _, X_te, y_te68, conflicts, _ = data(size)
            res.update(model_scores(load(args.rescore / f"variant{i}.skkp"), X_te, y_te68, cols, conflicts, size))
        write_results(results, args.json)
        return

    X_tr, _, X_te, _, conflicts, n_people = data(96)
    results = {"benchmark": "ytf68_variants", "meta": metadata(),
               "setup": {"n_train": len(X_tr), "n_test": len(X_te), "people_train_test": n_people,
                         "n_test_conflicting_rows": int(conflicts.sum()),
                         "shift_average": f"test-time mean over shifts {SHIFTS} px (at 96 px)"},
               "variants": []}
    if args.append and args.json and Path(args.json).is_file():
        results["variants"] = json.loads(Path(args.json).read_text())["variants"]
    if args.save_dir:
        args.save_dir.mkdir(parents=True, exist_ok=True)
    for i, params in enumerate(variants):
        size = params.get("image_size", 96)
        X_tr, y_tr68, X_te, y_te68, conflicts, _ = data(size)
        params, pretrain = dict(params), None
        if params.pop("pretrain_68", False):
            t0 = time.perf_counter()
            start = NoseKeypointRegressor(schema="ibug68", random_state=0, image_size=size,
                                          max_epochs=params.get("max_epochs", 60)).fit(X_tr, y_tr68)
            pretrain = {"fit_seconds": time.perf_counter() - t0, "epochs": len(start.history_),
                        "model": "NoseKeypointRegressor(schema='ibug68', random_state=0) on the training crops"}
            params["init"] = start
        n_teachers, distill = params.pop("distill", 0), None
        y_fit = y_tr68[:, cols]
        if n_teachers:
            t0 = time.perf_counter()
            teachers = [NoseKeypointRegressor(**{**params, "random_state": seed}).fit(X_tr, y_fit)
                        for seed in range(1, n_teachers + 1)]
            y_fit = np.mean([t.predict(X_tr) for t in teachers], axis=0)
            distill = {"fit_seconds": time.perf_counter() - t0, "teachers": n_teachers,
                       "teachers_mean_on_test": evaluate(y_te68, np.mean([t.predict(X_te) for t in teachers], axis=0),
                                                         cols)}
        res = run_model({"random_state": 0, **params}, X_tr, y_fit, X_te, y_te68, cols, None, 1,
                        save_to=args.save_dir and args.save_dir / f"variant{i}.skkp",
                        keep_model=True)
        res.update(model_scores(res.pop("model"), X_te, y_te68, cols, conflicts, size))
        if pretrain:
            res["params"]["init"] = "pretrain_68"
            res["pretrain_68"] = pretrain
        if distill:
            res["params"]["distill"] = n_teachers
            res["distill"] = distill
        res["valid_mae_px_last_epoch"] = res["valid_mae_px_by_epoch"][-1]
        res["meta"] = metadata()
        results["variants"].append(res)
        print(json.dumps({k: res[k] for k in ("params", "mae_px", "nme", "unique_rows", "fit_seconds")}), flush=True)
    write_results(results, args.json)


if __name__ == "__main__":
    main()
