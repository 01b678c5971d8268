"""Fine-tuning benchmark on ../shared/data/ytf68 (skipped when absent): a user's few images in a new layout.

The 313 people are split into three disjoint groups (seed 0): A (60%) pretrains a 68-point face
model (and, for the nose case, a 9-point nose model) with the default recipe; B (20%) is the user's
pool, labelled in the Kaggle 15-point layout computed from the 68 points (eye centres, eye corners,
brow ends, nose tip, mouth corners and lip centres), which the A model never predicted; C (20%) tests.
For 25, 50, 100, 200 and 400 images drawn from B: the error on C of the default estimator trained
from scratch and of the same estimator with ``init=`` the A model (same epochs, so the same CPU time),
over ``--repeats`` draws; and a from-scratch model on all of A+B in the same layout, the reference a
fine-tuned model should come close to. The nose case: the A face model fine-tuned on 100 nose crops
(iBUG 27-35) of B versus the A nose model as it is.

Crops: 96x96 gray, the landmark-extent box with margin 0.25 and 5% position / 10% scale jitter (as in
bench_ytf68_keypoints.py). Errors: MAE in pixels at 96x96, and NME normalised by the outer eye corners
(iBUG 36 and 45) of the 68 labelled points.

    python benchmarks/bench_finetune.py --threads 2 --json benchmarks/results/finetune.json
"""
import json
import time
from pathlib import Path

import numpy as np

from _common import YTF68_DIR, add_threads_option, metadata, parser, set_threads, write_results, ytf68_csv
import skkp
from skkp.datasets import IBUG68_NOSE, crop_faces, load_landmarks_csv
from skkp.metrics import mean_absolute_error_px, normalized_mean_error

#: Kaggle's 15 points (skkp.schemas.KAGGLE_KEYPOINT_NAMES order) from the 68 iBUG points: an index,
#: or a tuple of indices whose mean is the point. "left" is the subject's left (the image's right).
KAGGLE15_FROM_IBUG68 = (tuple(range(42, 48)), tuple(range(36, 42)), 42, 45, 39, 36, 22, 26, 21, 17, 30, 54, 48,
                        51, 57)


def kaggle15(points68):
    """(n, 136) iBUG coordinates -> (n, 30) Kaggle 15-point coordinates."""
    p = points68.reshape(len(points68), 68, 2)
    out = [p[:, list(i)].mean(axis=1) if isinstance(i, tuple) else p[:, i] for i in KAGGLE15_FROM_IBUG68]
    return np.stack(out, axis=1).reshape(len(points68), 30)


def nose9(points68):
    return points68.reshape(len(points68), 68, 2)[:, list(IBUG68_NOSE)].reshape(len(points68), 18)


def three_way_split(groups, seed=0):
    """Person-disjoint index arrays (A, B, C) holding about 60/20/20% of the people."""
    people = np.unique(groups)
    order = np.random.RandomState(seed).permutation(len(people))
    a, b = int(0.6 * len(people)), int(0.8 * len(people))
    parts = [set(people[order[:a]]), set(people[order[a:b]]), set(people[order[b:]])]
    return [np.flatnonzero([g in part for g in groups]) for part in parts]


def crops(data, idx, seed, size):
    c = crop_faces([data.images[i] for i in idx], keypoints=data.keypoints[idx], size=size, margin=0.25, gray=True,
                   jitter=0.05, random_state=np.random.RandomState(seed))
    return c.images, c.keypoints


def timed_fit(model, X, y):
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(X, y)
    return model, {"fit_seconds": time.perf_counter() - wall, "fit_cpu_seconds": time.process_time() - cpu,
                   "epochs": len(model.history_)}


def scores(y_true, y_pred, eyes):
    return {"mae_px": mean_absolute_error_px(y_true, y_pred),
            "nme": normalized_mean_error(y_true, y_pred, normalizer=eyes)}


def pretrained(name, schema, X, y, extra, cache):
    """The A model ``name``: read from ``cache`` when there, else trained (and written there)."""
    path = None if cache is None else Path(cache) / f"{name}.skkp"
    if path is not None and path.is_file():
        return skkp.load(path), {**json.loads(path.with_suffix(".json").read_text()), "loaded_from": str(path)}
    model, info = timed_fit(skkp.NoseKeypointRegressor(schema=schema, random_state=0, **extra), X, y)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        skkp.save(model, path)
        path.with_suffix(".json").write_text(json.dumps(info))
    return model, info


def main(argv=None):
    p = add_threads_option(parser(__doc__.splitlines()[0]))
    p.set_defaults(repeats=3)
    p.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200, 400])
    p.add_argument("--cache", default=None, help="folder keeping the A models between runs")
    p.add_argument("--no-reference", action="store_true", help="skip the A+B from-scratch reference")
    p.add_argument("--variants", action="store_true", help="also fine-tuning variants at 100 images")
    p.add_argument("--variant-repeats", type=int, default=1, help="draws per variant")
    args = p.parse_args(argv)
    if not (YTF68_DIR / "keypoints.csv").is_file():
        print(f"ytf68 not found at {YTF68_DIR}; nothing to do")
        return 0
    set_threads(args)
    size = 32 if args.smoke else 96
    extra = dict(max_epochs=1, image_size=size) if args.smoke else {}
    sizes = [10, 20] if args.smoke else args.sizes
    repeats = 1 if args.smoke else args.repeats
    with ytf68_csv(YTF68_DIR, 160 if args.smoke else None) as csv_path:
        data = load_landmarks_csv(csv_path, YTF68_DIR / "images", gray=True)
    groups = np.asarray(data.groups)
    A, B, C = three_way_split(groups)
    (XA, yA), (XB, yB), (XC, yC) = crops(data, A, 0, size), crops(data, B, 1, size), crops(data, C, 2, size)
    eyes = np.linalg.norm(yC[:, 72:74] - yC[:, 90:92], axis=1)
    out = {"meta": metadata(), "setup": {
        "people_A_B_C": [len(set(groups[i])) for i in (A, B, C)], "images_A_B_C": [len(A), len(B), len(C)],
        "crop": f"{size}x{size} gray, margin 0.25, jitter 5% position / 10% scale",
        "layout": "kaggle15 from the 68 points", "nme_normalizer": "outer eye corners (iBUG 36, 45)",
        "recipe": "NoseKeypointRegressor(schema=..., random_state=seed) defaults; fine-tuned adds init=<A model>",
        "repeats": repeats}}

    face_a, out["pretrain_face68_A"] = pretrained("face68_A", "ibug68", XA, yA, extra, args.cache)
    print("face68_A", out["pretrain_face68_A"], flush=True)

    rows = []
    for n in sizes:
        for seed in range(repeats):
            pick = np.sort(np.random.RandomState(100 + seed).choice(len(XB), min(n, len(XB)), replace=False))
            Xn, yn = XB[pick], kaggle15(yB[pick])
            for start in ("scratch", "finetuned"):
                model = skkp.NoseKeypointRegressor(schema="kaggle15", random_state=seed,
                                                   init=face_a if start == "finetuned" else None, **extra)
                model, info = timed_fit(model, Xn, yn)
                row = {"n_images": n, "seed": seed, "start": start, **info,
                       **scores(kaggle15(yC), model.predict(XC), eyes)}
                rows.append(row)
                print(row, flush=True)
    out["runs"] = rows

    if not args.no_reference:
        out["reference_scratch_A_plus_B"] = reference(XA, yA, XB, yB, XC, yC, eyes, extra, args.cache)
        print("reference", out["reference_scratch_A_plus_B"], flush=True)

    # the seed's case: 9 nose points, the face model fine-tuned on 100 nose crops vs the A nose model as is
    nose_a, out["pretrain_nose9_A"] = pretrained("nose9_A", "ibug68_nose", XA, nose9(yA), extra, args.cache)
    n_nose = min(sizes[-1], 100) if args.smoke else 100
    nose = {"as_is_nose9_A": scores(nose9(yC), nose_a.predict(XC), eyes),
            "as_is_face68_A_readout": scores(nose9(yC), nose9(face_a.predict(XC)), eyes), "finetuned": []}
    for seed in range(repeats):
        pick = np.sort(np.random.RandomState(100 + seed).choice(len(XB), n_nose, replace=False))
        model, info = timed_fit(skkp.NoseKeypointRegressor(schema="ibug68_nose", random_state=seed, init=face_a,
                                                           **extra), XB[pick], nose9(yB[pick]))
        nose["finetuned"].append({"n_images": n_nose, "seed": seed, **info,
                                  **scores(nose9(yC), model.predict(XC), eyes)})
        print("nose", nose["finetuned"][-1], flush=True)
    out["nose"] = nose

    if args.variants:
        out["variants_at_100"] = variants(face_a, XB, yB, XC, yC, eyes, extra, 1 if args.smoke else args.variant_repeats)
    out["summary"] = summary(out)
    write_results(out, args.json)
    return 0


def reference(XA, yA, XB, yB, XC, yC, eyes, extra, cache):
    """From scratch on all of A+B in the new layout (read from ``cache`` when there)."""
    path = None if cache is None else Path(cache) / "reference_A_plus_B.json"
    if path is not None and path.is_file():
        return {**json.loads(path.read_text()), "loaded_from": str(path)}
    XAB, yAB = np.concatenate([XA, XB]), kaggle15(np.concatenate([yA, yB]))
    model, info = timed_fit(skkp.NoseKeypointRegressor(schema="kaggle15", random_state=0, **extra), XAB, yAB)
    result = {"n_images": len(XAB), **info, **scores(kaggle15(yC), model.predict(XC), eyes)}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result))
    return result


def variants(face_a, XB, yB, XC, yC, eyes, extra, repeats):
    """Fine-tuning settings other than the defaults, at 100 images (the first draws of the main table)."""
    n = min(100, len(XB))
    settings = {"lr=1e-3": dict(lr=1e-3), "lr=5e-4": dict(lr=5e-4), "max_epochs=120": dict(max_epochs=120),
                "batch_size=16": dict(batch_size=16)}
    rows = []
    for label, kwargs in settings.items():
        for seed in range(repeats):
            pick = np.sort(np.random.RandomState(100 + seed).choice(len(XB), n, replace=False))
            model = skkp.NoseKeypointRegressor(schema="kaggle15", random_state=seed, init=face_a, **{**extra, **kwargs})
            model, info = timed_fit(model, XB[pick], kaggle15(yB[pick]))
            rows.append({"variant": label, "seed": seed, **info, **scores(kaggle15(yC), model.predict(XC), eyes)})
            print(rows[-1], flush=True)
    return rows


def summary(out):
    """Medians over the draws per size and start, and the issue's ratios at 100 images."""
    table = {}
    for row in out["runs"]:
        table.setdefault(row["start"], {}).setdefault(row["n_images"], []).append(row)
    med = {start: {n: {k: float(np.median([r[k] for r in rs])) for k in ("mae_px", "nme", "fit_seconds",
                                                                           "fit_cpu_seconds")}
                   for n, rs in by_n.items()} for start, by_n in table.items()}
    result = {"median_by_size": med}
    if 100 in med.get("finetuned", {}):
        ft, sc = med["finetuned"][100], med["scratch"][100]
        result["at_100"] = {"finetuned_over_scratch_mae": ft["mae_px"] / sc["mae_px"],
                            "finetuned_fit_seconds": ft["fit_seconds"],
                            "finetuned_fit_cpu_seconds": ft["fit_cpu_seconds"]}
        ref = out.get("reference_scratch_A_plus_B")
        if ref:
            result["at_100"]["finetuned_over_reference_mae"] = ft["mae_px"] / ref["mae_px"]
    if out.get("nose", {}).get("finetuned"):
        result["nose_finetuned_median_mae_px"] = float(np.median([r["mae_px"] for r in out["nose"]["finetuned"]]))
    return result


if __name__ == "__main__":
    raise SystemExit(main())
