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
The pseudo-parameter ``"pretrain_68": true`` first fits the defaults on all 68
points of the same training people (``schema="ibug68"``) and starts the nose
model from that fit (``init=``), as a user would start from a shipped 68-point
model; the shipped ones have seen the held-out people, so they are not used here.

Run:  python benchmarks/bench_ytf68_variants.py --threads 1 \\
          --variant '{"max_epochs": 40, "batch_size": 32}' --json results.json
CI:   python benchmarks/bench_ytf68_variants.py --smoke
"""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import YTF68_DIR, add_threads_option, metadata, parser, set_threads, write_results  # noqa: E402
from bench_ytf68_keypoints import load_split, nose_columns, run_model  # noqa: E402

from skkp import NoseKeypointRegressor  # noqa: E402


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--variant", action="append", default=[], help="JSON dict of estimator parameters (repeatable)")
    p.add_argument("--save-dir", type=Path, default=None,
                   help="also write each fitted model there (skkp.save), for later test-time evaluations")
    add_threads_option(p)
    args = p.parse_args()
    set_threads(args)
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

    X_tr, _, X_te, _, conflicts, n_people = data(96)
    results = {"benchmark": "ytf68_variants", "meta": metadata(),
               "setup": {"n_train": len(X_tr), "n_test": len(X_te), "people_train_test": n_people,
                         "n_test_conflicting_rows": int(conflicts.sum())},
               "variants": []}
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
        res = run_model({"random_state": 0, **params}, X_tr, y_tr68[:, cols], X_te, y_te68, cols, None, 1,
                        conflicts=conflicts, save_to=args.save_dir and args.save_dir / f"variant{i}.skkp")
        if pretrain:
            res["params"]["init"] = "pretrain_68"
            res["pretrain_68"] = pretrain
        if size != 96:
            res["mae_px_at_own_size"] = res["mae_px"]
            res["mae_px"] = res["mae_px"] * 96 / size
        res["valid_mae_px_last_epoch"] = res["valid_mae_px_by_epoch"][-1]
        results["variants"].append(res)
        print(json.dumps({k: res[k] for k in ("params", "mae_px", "nme", "unique_rows", "fit_seconds")}), flush=True)
    write_results(results, args.json)


if __name__ == "__main__":
    main()
