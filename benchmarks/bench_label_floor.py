"""Where the floor of the ytf68 nose benchmark lies, and the left/right offset of ytf68's labels.

Everything is in pixels of the 96 px crops of bench_ytf68_keypoints.py (gray, the box of the 68
points with a margin of 0.25) and in NME (divided by the outer-eye distance, points 36 and 45).

(a) Floor. Pairs of consecutive video frames of one person (``<Person_Name>_<frame>.jpg`` with
    frame numbers differing by 1; file names that occur twice in keypoints.csv and names that are
    not video frames are left out). Each frame is cut on its own landmark box, then OpenCV's ECC
    (``cv2.findTransformECC``, affine, on the central 64x64 px of the crop) estimates from the
    pixels alone the warp between the two crops, from two starting points; a pair counts when ECC
    converges from both, they agree within 0.25 px on every point, the correlation reaches
    ``--min-cc`` and the warp is plausible (scales 0.85-1.15, the crop centre moved under 12 px).
    Frame B's labels go through B's crop and the warp into A's crop; their disagreement with A's
    labels, divided by sqrt(2), is the per-frame label noise: the error of a model that found every
    point exactly. Also: the two label rows of each file name listed twice (one image), and the
    held-out rows by kind (names listed once; for names listed twice, the row nearer to the
    prediction of the model of (c) and the farther one).
(b) Offset of the labels from a mirror-consistent labelling, from the training people only:
    cross-fitting (the default estimator with ``--crossfit-epochs`` epochs, cheaper than the 60 of
    the default: trained on one half of the training people and applied to the other half, on each
    crop and on its mirror; the model of (c) applied to the held-out people checks it) and, without
    any model, ECC between each training crop and its own mirror. Half the mean of (mirrored
    points mirrored back - points) per point is the shift that makes the labels mirror-consistent.
(c) Before/after on the held-out people with the protocol of bench_ytf68_keypoints.py
    (``NoseKeypointRegressor(random_state=0)`` on the 9 nose points): the model trained on the
    labels as they are, and the model trained on labels shifted by the estimate of (b) with flip
    augmentation; each scored plainly and with flip test-time averaging
    (``predict(X, flip_average=True)``), against the labels as they are and against the corrected
    labels (labels + the training-people offset: a constant per point).

Two full trainings and two half ones: about 40 minutes on a free 2-core machine. ``--cache DIR``
keeps the fitted models and reuses them when parameters, data size and correction match.

    python benchmarks/bench_label_floor.py --threads 1 --cache /tmp/skkp-floor \\
        --json benchmarks/results/label_floor.json
    python benchmarks/bench_label_floor.py --table benchmarks/results/label_floor.json
"""
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (PERSON_SPLIT, add_table_option, add_threads_option, data_dir_or_none, metadata,  # noqa: E402
                     parser, person_split, print_table, set_threads, write_results)

NOSE = list(range(27, 36))
#: Point groups of iBUG 68 whose disagreement is reported.
POINT_GROUPS = {"nose 27-35": NOSE, "eyes 36-47": list(range(36, 48)), "brows 17-26": list(range(17, 27)),
                "jaw 0-16": list(range(17)), "mouth 48-67": list(range(48, 68)), "all 68": list(range(68))}
#: A video frame: a person's name (words of letters) and a frame number.
FRAME_RE = re.compile(r"^(?P<person>[A-Za-z][A-Za-z'.-]*(?:_[A-Za-z'.-]+)*)_(?P<frame>\d+)\.jpg$")
SIZE, MARGIN = 96, 0.25
#: ECC's alignment region: the central 64x64 px of the 96 px crop (the landmark box itself).
ECC_BOX = slice(16, 80)
ECC_SECOND_START = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -2.0]])  # 2 px off in x and y
INIT_TOLERANCE_PX, MAX_SHIFT_PX, SCALE_RANGE = 0.25, 12.0, (0.85, 1.15)


# ----------------------------------------------------------------------------- helpers
def frame_index(names):
    """``{(person, frame number): row}`` for the rows that are video frames named once."""
    counts = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    out = {}
    for i, n in enumerate(names):
        m = FRAME_RE.match(n)
        if m and counts[n] == 1:
            out[(m["person"], int(m["frame"]))] = i
    return out


def consecutive_pairs(names):
    """Row pairs ``(a, b)`` of consecutive frames (frame(b) = frame(a) + 1) of one person."""
    index = frame_index(names)
    return sorted((a, index[(p, f + 1)]) for (p, f), a in index.items() if (p, f + 1) in index)


def duplicate_pairs(names):
    """Row pairs ``(a, b)`` of the file names listed twice."""
    rows = {}
    for i, n in enumerate(names):
        rows.setdefault(n, []).append(i)
    return sorted(tuple(r[:2]) for r in rows.values() if len(r) > 1)


def ecc_points(template, image, points):
    """``points`` of ``image`` mapped into ``template``'s frame by an affine ECC warp, or the reason
    it was refused: ``(mapped, correlation, None)`` or ``(None, correlation, reason)``."""
    import cv2

    mask = np.zeros(template.shape, np.uint8)
    mask[ECC_BOX, ECC_BOX] = 1
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6)
    a, b = np.float32(template), np.float32(image)
    mapped, cc = [], None
    for start in (np.eye(2, 3), ECC_SECOND_START):
        try:
            c, warp = cv2.findTransformECC(a, b, np.float32(start), cv2.MOTION_AFFINE, criteria, mask, 5)
        except cv2.error:
            return None, cc, "ECC did not converge"
        cc = c if cc is None else cc
        full = np.vstack([warp.astype(np.float64), [0.0, 0.0, 1.0]])
        inv = np.linalg.inv(full)[:2]  # the warp maps template -> image coordinates
        mapped.append(points @ inv[:, :2].T + inv[:, 2])
        scales = np.linalg.svd(warp[:, :2], compute_uv=False)
        centre = np.full(2, (SIZE - 1) / 2.0)
        moved = np.linalg.norm(warp[:, :2] @ centre + warp[:, 2] - centre)
        if not (SCALE_RANGE[0] <= scales.min() and scales.max() <= SCALE_RANGE[1]) or moved > MAX_SHIFT_PX:
            return None, cc, "implausible warp"
    if np.abs(mapped[0] - mapped[1]).max() > INIT_TOLERANCE_PX:
        return None, cc, "the two starts disagree"
    return mapped[0], cc, None


def bootstrap_means(values, people, n_boot, seed=0):
    """Means of ``values`` (rows first) over ``n_boot`` resamplings of whole people: (n_boot, ...)."""
    values = np.asarray(values, dtype=np.float64)
    uniq, person = np.unique(np.asarray(people), return_inverse=True)
    rng = np.random.RandomState(seed)
    counts = rng.multinomial(len(uniq), np.full(len(uniq), 1.0 / len(uniq)), size=n_boot)
    w = counts[:, person].astype(np.float64)
    flat = values.reshape(len(values), -1)
    return (w @ flat / w.sum(1, keepdims=True)).reshape((n_boot,) + values.shape[1:])


def mean_ci(values, people, n_boot):
    """``{"mean", "ci95"}`` of the mean of ``values``, the interval from resampling people."""
    values = np.asarray(values, dtype=np.float64)
    boots = bootstrap_means(values, people, n_boot)
    return {"mean": float(values.mean()), "ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))]}


def per_point_ci(values, people, n_boot):
    """Per-point mean offsets (n, K, 2) -> ``{"x": [...], "y": [...], "x_ci95": [[lo, hi], ...], ...}``."""
    values = np.asarray(values, dtype=np.float64)
    boots = bootstrap_means(values, people, n_boot)
    out = {}
    for c, name in enumerate("xy"):
        out[name] = [round(float(v), 4) for v in values[:, :, c].mean(0)]
        out[f"{name}_ci95"] = [[round(float(np.percentile(boots[:, k, c], 2.5)), 4),
                                round(float(np.percentile(boots[:, k, c], 97.5)), 4)] for k in range(values.shape[1])]
    return out


def outer_eye(points68):
    p = np.asarray(points68).reshape(len(points68), 68, 2)
    return np.linalg.norm(p[:, 36] - p[:, 45], axis=1)


def disagreement(diff, iod, people, n_boot):
    """Label disagreement (n, 68, 2) per point group: mean point distance, MAE per coordinate, nose NME,
    and the split into global shift (mean offset of the 68 points) and shape."""
    dist = np.linalg.norm(diff, axis=-1)
    out = {"pairs": int(len(diff)), "groups": {}}
    for name, idx in POINT_GROUPS.items():
        out["groups"][name] = {"mean_distance_px": mean_ci(dist[:, idx].mean(1), people, n_boot),
                               "mae_px": mean_ci(np.abs(diff[:, idx]).mean((1, 2)), people, n_boot),
                               "nme": mean_ci(dist[:, idx].mean(1) / iod, people, n_boot)}
    shift = diff.mean(1, keepdims=True)
    shape = diff - shift
    nose_shape = np.linalg.norm(shape[:, NOSE], axis=-1).mean(1)
    out["global_shift"] = {
        "mean_px": [float(v) for v in shift[:, 0].mean(0)],
        "rms_px": float(np.sqrt((shift[:, 0] ** 2).sum(1).mean())),
        "share_of_squared_disagreement_68": float((shift[:, 0] ** 2).sum(1).mean() / (diff ** 2).sum(-1).mean()),
        "share_of_squared_disagreement_nose": float(
            (shift[:, 0] ** 2).sum(1).mean() / (diff[:, NOSE] ** 2).sum(-1).mean()),
        "nose_without_shift_mean_distance_px": mean_ci(nose_shape, people, n_boot),
        "nose_without_shift_nme": mean_ci(nose_shape / iod, people, n_boot)}
    return out


# ----------------------------------------------------------------------------- (a) the floor
def align_consecutive_frames(data, max_pairs=None):
    """ECC between the crops of each pair of consecutive frames: a list of ``(a, b, correlation,
    labels of a - labels of b mapped into a's crop, reason refused or None)``."""
    from skkp.datasets import crop_faces

    pairs = consecutive_pairs([str(n) for n in data.filenames])[:max_pairs]
    used = sorted({i for p in pairs for i in p})
    if not used:
        return []
    crops = crop_faces([data.images[i] for i in used], keypoints=data.keypoints[used], size=SIZE, margin=MARGIN,
                       gray=True)
    at = {i: j for j, i in enumerate(used)}
    kp = crops.keypoints.reshape(len(used), 68, 2)
    out = []
    for a, b in pairs:
        mapped, cc, reason = ecc_points(crops.images[at[a]], crops.images[at[b]], kp[at[b]])
        out.append((a, b, cc, None if mapped is None else kp[at[a]] - mapped, reason, outer_eye(kp[[at[a]]])[0]))
    return out


def label_floor(aligned, groups, rows, min_cc, n_boot, sensitivity=(0.8, 0.85, 0.95)):
    """The disagreement of consecutive frames' labels among the pairs of ``rows`` that ECC aligned with a
    correlation of at least ``min_cc``, and the per-frame floor (disagreement / sqrt 2)."""
    aligned = [r for r in aligned if r[0] in rows]
    counts = {"candidate_pairs": len(aligned)}
    for *_, cc, diff, reason, _iod in aligned:
        reason = reason or (f"correlation under {min_cc}" if cc < min_cc else None)
        if reason:
            counts[reason] = counts.get(reason, 0) + 1
    keep = [r for r in aligned if r[4] is None and r[2] >= min_cc]
    counts["used_pairs"] = len(keep)
    out = {"counts": counts}
    if not keep:
        return out
    diffs = np.array([r[3] for r in keep])
    iod = np.array([r[5] for r in keep])
    people = groups[[r[0] for r in keep]]
    out["disagreement"] = disagreement(diffs, iod, people, n_boot)
    out["people"] = int(len(set(people)))
    out["correlation_median"] = float(np.median([r[2] for r in keep]))
    out["outer_eye_px_median"] = float(np.median(iod))
    nose = out["disagreement"]["groups"]["nose 27-35"]
    out["floor_per_frame"] = {"nose_mean_distance_px": nose["mean_distance_px"]["mean"] / np.sqrt(2),
                              "nose_mae_px": nose["mae_px"]["mean"] / np.sqrt(2),
                              "nose_nme": nose["nme"]["mean"] / np.sqrt(2),
                              "nose_nme_ci95": [v / np.sqrt(2) for v in nose["nme"]["ci95"]]}
    out["nose_floor_nme_by_min_cc"] = {}
    for t in sensitivity:
        sel = [r for r in aligned if r[4] is None and r[2] >= t]
        if sel:
            d = np.array([np.linalg.norm(r[3][NOSE], axis=-1).mean() / r[5] for r in sel])
            out["nose_floor_nme_by_min_cc"][str(t)] = {"pairs": len(sel), "nme": float(d.mean() / np.sqrt(2))}
    return out


def duplicate_labels(data, groups, rows, n_boot):
    """The two label rows of each file name listed twice, in the crop of the first row."""
    from skkp.datasets import crop_faces

    pairs = [(a, b) for a, b in duplicate_pairs([str(n) for n in data.filenames]) if a in rows]
    if not pairs:
        return {"names_twice": 0}
    first = [a for a, _ in pairs]
    crops = crop_faces([data.images[a] for a in first], keypoints=data.keypoints[first], size=SIZE, margin=MARGIN,
                       gray=True)
    M = crops.transforms
    second = np.array([data.keypoints[b].reshape(68, 2) @ M[j, :, :2].T + M[j, :, 2] for j, (_, b) in enumerate(pairs)])
    diff = crops.keypoints.reshape(-1, 68, 2) - second
    out = disagreement(diff, outer_eye(crops.keypoints), groups[first], n_boot)
    return {"names_twice": len(pairs), "rows": 2 * len(pairs), "disagreement": out}


# ----------------------------------------------------------------------------- (b) the offset
def mirror_ecc_offset(crop_images, keypoints68, people, min_cc, n_boot, sensitivity=(0.5, 0.6, 0.7, 0.8, 0.9),
                      scales=None):
    """Model-free: each crop ECC-aligned with its own mirror; the mirrored labels (pairs swapped) mapped
    back. Returns the per-point correction (half the mean of mapped - labels) over the accepted crops.
    With ``scales`` (crop pixels per pixel of the original image), also the fit ``x = a + b * scale`` of
    each crop's mean x correction: an offset fixed in pixels of the original images would give a = 0, one
    fixed relative to the face (the crop) b = 0."""
    from skkp.augment import flip_points
    from skkp.schemas import IBUG68_SCHEMA

    D, keep, ccs, counts = [], [], [], {"crops": len(crop_images)}
    for i, (img, pts) in enumerate(zip(crop_images, keypoints68)):
        mirrored = flip_points(pts[None], SIZE, IBUG68_SCHEMA.flip_pairs)[0]
        mapped, cc, reason = ecc_points(img, np.ascontiguousarray(img[:, ::-1]), mirrored)
        if reason:
            counts[reason] = counts.get(reason, 0) + 1
            continue
        D.append((mapped - pts) / 2.0)
        keep.append(i)
        ccs.append(cc)
    D, ccs = np.array(D).reshape(-1, 68, 2), np.array(ccs)
    by_cc = {str(t): {"crops": int((ccs >= t).sum()), "x_all68": float(D[ccs >= t][:, :, 0].mean()),
                      "x_nose": float(D[ccs >= t][:, NOSE, 0].mean())} for t in sensitivity if (ccs >= t).any()}
    counts[f"correlation under {min_cc}"] = int((ccs < min_cc).sum())
    D, keep = D[ccs >= min_cc], np.asarray(keep, dtype=int)[ccs >= min_cc]
    counts["used"] = len(keep)
    out = {"counts": counts, "x_by_min_cc": by_cc}
    if len(keep) < 2:
        return out
    iod = outer_eye(keypoints68[keep])
    people = np.asarray(people)[keep]
    out["nose_px"] = per_point_ci(D[:, NOSE], people, n_boot)
    out["nose_nme"] = per_point_ci(D[:, NOSE] / iod[:, None, None], people, n_boot)
    out["all68_mean_px"] = {"x": mean_ci(D[:, :, 0].mean(1), people, n_boot),
                            "y": mean_ci(D[:, :, 1].mean(1), people, n_boot)}
    out["people"] = int(len(set(people)))
    if scales is not None:
        k = np.asarray(scales)[keep]
        (a, b), *_ = np.linalg.lstsq(np.c_[np.ones_like(k), k], D[:, :, 0].mean(1), rcond=None)
        out["x_vs_scale"] = {"a_px": float(a), "b_px_per_scale": float(b),
                             "scale_p10_p90": [float(np.percentile(k, 10)), float(np.percentile(k, 90))]}
    return out


def label_geometry(keypoints68, people, n_boot):
    """Model-free and image-free: x of the midline nose points minus the midpoint of the nostril
    wings 31/35. A mirror-consistent labelling of symmetric poses averages 0 here; yaw does not
    cancel unless the poses are symmetric about frontal."""
    mid = (keypoints68[:, 31, 0] + keypoints68[:, 35, 0]) / 2.0
    return {f"x{k} - (x31 + x35)/2": mean_ci(keypoints68[:, k, 0] - mid, people, n_boot)
            for k in (27, 28, 29, 30, 33)}


def fit_model(name, params, X, y, cache, extra=None):
    """Fit ``NoseKeypointRegressor(**params)``; with ``cache``, reuse ``cache/name.skkp`` when its record
    (parameters, training size, ``extra``) matches. Returns (model, record)."""
    import skkp
    from skkp import NoseKeypointRegressor

    record = {"params": params, "n_train": int(len(X)), "extra": extra}
    if cache:
        path, info = Path(cache) / f"{name}.skkp", Path(cache) / f"{name}.json"
        if path.is_file() and info.is_file():
            saved = json.loads(info.read_text())
            same_extra = json.dumps(saved.get("extra"), sort_keys=True) == json.dumps(extra, sort_keys=True)
            if saved.get("params") == params and saved.get("n_train") == len(X) and same_extra:
                print(f"{name}: reusing {path}", flush=True)
                return skkp.load(path, device="cpu"), {**saved, "from_cache": True}
    model = NoseKeypointRegressor(**params)
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(X, y)
    record.update(fit_seconds=time.perf_counter() - t0, fit_cpu_seconds=time.process_time() - c0,
                  epochs=len(model.history_), from_cache=False)
    print(f"{name}: trained in {record['fit_seconds']:.0f} s", flush=True)
    if cache:
        Path(cache).mkdir(parents=True, exist_ok=True)
        skkp.save(model, Path(cache) / f"{name}.skkp")
        (Path(cache) / f"{name}.json").write_text(json.dumps(record, indent=1))
    return model, record


def mirror_discrepancy(model, X):
    """(n, K, 2): half of (prediction on the mirrored crop, mirrored back) - (prediction on the crop)."""
    plain = model.predict(X)
    both = model.predict(X, flip_average=True)  # (plain + back) / 2
    return (both - plain).reshape(len(X), -1, 2)


def crossfit_offset(X, y, people, params, cache, n_boot):
    """Model-based: the default estimator trained on one half of the training people, its mirror
    discrepancy measured on the other half, and the other way round."""
    from sklearn.model_selection import GroupKFold

    halves, D, who = [], [], []
    for k, (fit_idx, apply_idx) in enumerate(GroupKFold(2).split(X, groups=people)):
        model, record = fit_model(f"crossfit_{k}", params, X[fit_idx], y[fit_idx], cache)
        d = mirror_discrepancy(model, X[apply_idx])
        halves.append({"fit_people": int(len(set(people[fit_idx]))), "applied_to": int(len(apply_idx)),
                       "x": [round(float(v), 4) for v in d[:, :, 0].mean(0)],
                       "y": [round(float(v), 4) for v in d[:, :, 1].mean(0)], "fit": record})
        D.append(d)
        who.append(people[apply_idx])
    D, who = np.concatenate(D), np.concatenate(who)
    return {"params": params, "halves": halves, "nose_px": per_point_ci(D, who, n_boot),
            "flip_pairs": [list(p) for p in model.flip_pairs_]}, D.mean(0)


# ----------------------------------------------------------------------------- (c) before/after
def score(y_true68, pred, cols, rows=slice(None)):
    """MAE (px), NME, failure rate and the mean signed error per point (pred - truth) on ``rows``."""
    from skkp.metrics import failure_rate, mean_absolute_error_px, normalized_mean_error

    truth, pred = y_true68[rows][:, cols], pred[rows]
    iod = outer_eye(y_true68[rows])
    signed = (pred - truth).reshape(len(truth), -1, 2).mean(0)
    return {"n": int(len(truth)), "mae_px": float(mean_absolute_error_px(truth, pred)),
            "nme": float(normalized_mean_error(truth, pred, normalizer=iod)),
            "failure_rate_0.10": float(failure_rate(truth, pred, threshold=0.10, normalizer=iod)),
            "signed_x_px": [round(float(v), 4) for v in signed[:, 0]],
            "signed_y_px": [round(float(v), 4) for v in signed[:, 1]]}


def score_model(model, X_te, y_te68, corrected_te68, cols, subsets):
    out = {}
    for mode, flip in (("plain", False), ("flip_average", True)):
        pred = model.predict(X_te, flip_average=flip)
        for labels, truth in (("labels_as_they_are", y_te68), ("corrected_labels", corrected_te68)):
            out[f"{mode}, {labels}"] = {k: score(truth, pred, cols, r) for k, r in subsets.items() if len(r)}
    return out


def jittered_crops(data, train, test, seed=0):
    """The crops of bench_ytf68_keypoints.load_split: the same jitter draws, train first."""
    from skkp.datasets import crop_faces

    rng = np.random.RandomState(seed)
    out = []
    for idx in (train, test):
        c = crop_faces([data.images[i] for i in idx], keypoints=data.keypoints[idx], size=SIZE, margin=MARGIN,
                       gray=True, jitter=0.05, random_state=rng)
        out.append((c.images, c.keypoints))
    return out


# ----------------------------------------------------------------------------- the docs' table
DOCS_START = "<!-- label floor results: generated by python benchmarks/bench_label_floor.py --table -->"
DOCS_END = "<!-- end of label floor results -->"


def _pct(x):
    return f"{100 * x:.1f}%"


def _ci(c, fmt="{:.2f}"):
    return f"{fmt.format(c['mean'])} ({fmt.format(c['ci95'][0])} to {fmt.format(c['ci95'][1])})"


def _points(values):
    return " ".join(f"{v:+.2f}" for v in values)


def floor_estimate(result):
    """The floor of the whole held-out set as labelled: the per-frame label noise on the rows whose labels
    fit their image, the error the default model makes on the rows whose labels do not (the farther row of
    each name listed twice; no model places points on the image the other row describes)."""
    fl = result["floor"]["all_people"]["floor_per_frame"]
    rows = result["before_after"]["raw"]["scores"]["plain, labels_as_they_are"]
    far = rows.get("names_twice_farther_row")
    n, n_far = rows["all"]["n"], (far or {}).get("n", 0)
    mix = (lambda a, b: ((n - n_far) * a + n_far * b) / n) if far else (lambda a, b: a)
    return {"nme": mix(fl["nose_nme"], far["nme"] if far else 0), "mae_px": mix(fl["nose_mae_px"], far["mae_px"] if far
                                                                                  else 0), "n_far": n_far, "n": n}


def summary_lines(result):
    """The markdown docs/keypoints.md quotes, from a result of this script."""
    s, meta = result["setup"], result["meta"]
    fl, held = result["floor"]["all_people"], result["floor"]["held_out_people"]
    c = fl["counts"]
    refused = ", ".join(f"{v} {k}" for k, v in c.items() if k not in ("candidate_pairs", "used_pairs"))
    lines = [f"**(a) The floor.** ECC aligned {c['used_pairs']} of the {c['candidate_pairs']} pairs of consecutive "
             f"frames ({fl['people']} people; refused: {refused}). Label disagreement of the two frames in px of "
             f"the 96 px crop, and per frame (/ sqrt 2), with 95% intervals over people:", "",
             "| points | disagreement, mean distance (px) | MAE per coordinate (px) | NME | per frame: MAE (px) "
             "| per frame: NME |", "|---|---|---|---|---|---|"]
    r2 = np.sqrt(2)
    for name, g in fl["disagreement"]["groups"].items():
        lines.append(f"| {name} | {_ci(g['mean_distance_px'])} | {g['mae_px']['mean']:.2f} | {_pct(g['nme']['mean'])} "
                     f"| {g['mae_px']['mean'] / r2:.2f} | {_pct(g['nme']['mean'] / r2)} |")
    gs, f, fh = fl["disagreement"]["global_shift"], fl["floor_per_frame"], held.get("floor_per_frame")
    sens = ", ".join(f"{_pct(v['nme'])} at {t} ({v['pairs']} pairs)" for t, v in fl["nose_floor_nme_by_min_cc"].items())
    lines += ["", f"A shift of the whole face (the mean offset of the 68 points, rms {gs['rms_px']:.2f} px) makes "
              f"{_pct(gs['share_of_squared_disagreement_68'])} of the squared disagreement over the 68 points and "
              f"{_pct(gs['share_of_squared_disagreement_nose'])} over the nose; without it the nose points disagree by "
              f"{gs['nose_without_shift_mean_distance_px']['mean']:.2f} px ({_pct(gs['nose_without_shift_nme']['mean'])}). "
              f"The nose floor per frame is **{_pct(f['nose_nme'])} NME** ({_pct(f['nose_nme_ci95'][0])} to "
              f"{_pct(f['nose_nme_ci95'][1])}) and {f['nose_mae_px']:.2f} px MAE at correlation >= {s['min_cc']}"
              + (f", {_pct(fh['nose_nme'])} and {fh['nose_mae_px']:.2f} px on the held-out people alone "
                 f"({held['counts']['used_pairs']} pairs)" if fh else "")
              + f"; it depends on the pairs kept: {sens}."]
    dup, rows = result["duplicates"]["all_people"], result["before_after"]["raw"]["scores"]["plain, labels_as_they_are"]
    if dup.get("names_twice"):
        d = dup["disagreement"]
        lines += ["", f"{dup['names_twice']} file names are listed twice in keypoints.csv ({dup['rows']} of "
                  f"{s['n_rows']} rows), each time with other labels for the same image: the two rows disagree by "
                  f"{d['groups']['nose 27-35']['mean_distance_px']['mean']:.2f} px on the nose "
                  f"({_pct(d['groups']['nose 27-35']['nme']['mean'])} NME), mostly a shift of the whole face "
                  f"(rms {d['global_shift']['rms_px']:.2f} px). The held-out rows by kind, scored with the default "
                  f"model trained on the labels as they are:", "",
                  "| held-out rows | n | MAE (px) | nose NME | failure (NME > 0.10) |", "|---|---|---|---|---|"]
        for key, label in (("all", "all"), ("unique_names", "names listed once"),
                           ("names_twice_nearer_row", "names listed twice: the row nearer the prediction"),
                           ("names_twice_farther_row", "names listed twice: the farther row")):
            if key in rows:
                r = rows[key]
                lines.append(f"| {label} | {r['n']} | {r['mae_px']:.2f} | {_pct(r['nme'])} | "
                             f"{_pct(r['failure_rate_0.10'])} |")
        fe = floor_estimate(result)
        lines += ["", f"Per-frame noise on the {fe['n'] - fe['n_far']} rows whose labels fit their image and the "
                  f"farther rows as they score give a floor of about **{fe['mae_px']:.2f} px MAE and {_pct(fe['nme'])} "
                  f"NME** for the held-out set as labelled."]
    off = result["offset"]
    cf, me, hc = off["crossfit"], off["mirror_ecc"], off["held_out_check"]
    lines += ["", "**(b) The offset** (training people only; the correction, in px of the 96 px crop, is added to the "
              "labels to make them mirror-consistent; 95% intervals over people):", "",
              "| point | cross-fitted models: x | y | mirror ECC, no model: x | y | correction x as NME | check: "
              "default model on held-out people, x |", "|---|---|---|---|---|---|---|"]
    for k, point in enumerate(NOSE):
        ecc = (f"{me['nose_px']['x'][k]:+.2f} ({me['nose_px']['x_ci95'][k][0]:+.2f} to "
               f"{me['nose_px']['x_ci95'][k][1]:+.2f}) | {me['nose_px']['y'][k]:+.2f}") if "nose_px" in me else "n/a | n/a"
        lines.append(f"| {point} | {cf['nose_px']['x'][k]:+.2f} ({cf['nose_px']['x_ci95'][k][0]:+.2f} to "
                     f"{cf['nose_px']['x_ci95'][k][1]:+.2f}) | {cf['nose_px']['y'][k]:+.2f} | {ecc} | "
                     f"{100 * off['correction_nme_x'][k]:+.2f}% | {hc['x'][k]:+.2f} |")
    halves = "; ".join(f"half {i + 1}: {_points(h['x'])}" for i, h in enumerate(cf["halves"]))
    by_cc = ", ".join(f"{v['x_nose']:+.2f} px at {t} ({v['crops']} crops)" for t, v in me.get("x_by_min_cc", {}).items())
    lines += ["", f"Cross-fitting: `NoseKeypointRegressor(random_state=0, max_epochs="
              f"{cf['params'].get('max_epochs', 60)})` on each half of the training people, applied to the other half "
              f"({halves}). Mirror ECC: {me['counts']['used']} of {me['counts']['crops']} training crops of names "
              f"listed once aligned with their own mirror at correlation >= {s['min_cc_mirror']}"
              + (f" (all 68 points: x {_ci(me['all68_mean_px']['x'], '{:+.2f}')} px); its nose mean moves with the "
                 f"crops kept (pose): {by_cc}." if "all68_mean_px" in me else ".")]
    if "x_vs_scale" in me:
        v = me["x_vs_scale"]
        spread = v["scale_p10_p90"][1] - v["scale_p10_p90"][0]
        lines[-1] += (f" Per crop, x = a + b * scale (crop px per px of the original image, {v['scale_p10_p90'][0]:.2f} "
                      f"to {v['scale_p10_p90'][1]:.2f} from the 10th to the 90th percentile) fits a = {v['a_px']:+.2f} px, "
                      f"b = {v['b_px_per_scale']:+.2f} px" + (": the offset is fixed relative to the face, not in pixels of the "
                                                                "original images." if abs(v["b_px_per_scale"]) * spread
                                                                < abs(v["a_px"]) / 3 else
                                                                " (an offset fixed relative to the face has b = 0, one "
                                                                "fixed in pixels of the original images a = 0)."))
    geo = off.get("label_geometry", {})
    if geo:
        lines[-1] += (" Without images, the midline points' x minus the midpoint of the nostril wings 31/35 average "
                      + ", ".join(f"{k.split(' ')[0][1:]}: {v['mean']:+.2f}" for k, v in geo.items())
                      + " px; head roll and yaw move these differences as much as labelling would, and this check "
                        "cannot tell them apart, so it gives no estimate.")
    rows_x = hc.get("x_mean_by_rows", {})
    if "unique_names" in rows_x and "names_twice" in rows_x:
        lines[-1] += (f" The held-out check, mean over the nose points: {rows_x['unique_names']:+.2f} px on names listed "
                      f"once, {rows_x['names_twice']:+.2f} px on names listed twice.")
    lines += ["", "**(c) Before/after** on the held-out people (the default estimator; corrected labels = labels + the "
              "correction above, a constant per point, so scoring against them is scoring predictions minus the "
              "correction against the labels as they are):", "",
              "| trained on | predict | scored against | MAE (px) | nose NME | failure | names listed once: MAE / "
              "NME | signed error x, points 27-35 (px) | signed error y (px) |", "|---|---|---|---|---|---|---|---|---|"]
    for key, label in (("raw", "labels as they are"), ("corrected_flip", "corrected labels, flip augmentation")):
        for mode, r in result["before_after"].get(key, {}).get("scores", {}).items():
            predict, against = mode.split(", ")
            a, u = r["all"], r["unique_names"]
            lines.append(f"| {label} | {predict.replace('_', ' ')} | {against.replace('_', ' ')} | {a['mae_px']:.2f} | "
                         f"{_pct(a['nme'])} | {_pct(a['failure_rate_0.10'])} | {u['mae_px']:.2f} / {_pct(u['nme'])} | "
                         f"{_points(a['signed_x_px'])} | {_points(a['signed_y_px'])} |")
    times = ", ".join(f"{k} {v['fit']['fit_seconds']:.0f} s" for k, v in result["before_after"].items())
    lines += ["", f"*{s['n_train']} training and {s['n_test']} held-out crops, people "
              f"{s['people_train_test'][0]}/{s['people_train_test'][1]} ({s['split']}). Training on "
              f"{s['torch_threads']} torch thread(s) of a shared 2-core machine: {times}. Run {meta['date']} at "
              f"commit `{meta['commit']}`: `python benchmarks/bench_label_floor.py --threads 1 --json "
              f"benchmarks/results/label_floor.json`.*"]
    return lines


# ----------------------------------------------------------------------------- main
def main(argv=None):
    p = add_threads_option(parser(__doc__.splitlines()[0]))
    p.add_argument("--min-cc", type=float, default=0.9, help="ECC correlation a pair of frames needs")
    p.add_argument("--min-cc-mirror", type=float, default=0.7, help="ECC correlation a crop and its mirror need")
    p.add_argument("--crossfit-epochs", type=int, default=30, help="epochs of the cross-fitted models")
    p.add_argument("--bootstrap", type=int, default=1000, help="resamplings of people for the intervals")
    p.add_argument("--cache", default=None, help="folder to keep fitted models in and reuse them from")
    add_table_option(p, "docs/keypoints.md")
    args = p.parse_args(argv)
    if args.table:
        return print_table(args.table, summary_lines)
    data_dir = data_dir_or_none()
    if data_dir is None:
        return 0
    set_threads(args)
    import torch

    from skkp.schemas import IBUG68_NOSE_SCHEMA

    smoke = args.smoke
    n_boot = 20 if smoke else args.bootstrap
    data, groups, train, test = person_split(data_dir, 200 if smoke else None, gray=True)
    names = np.array([str(n) for n in data.filenames])
    uniq, counts = np.unique(names, return_counts=True)
    twice = np.isin(names, uniq[counts > 1])
    cols = np.ravel([[2 * i, 2 * i + 1] for i in NOSE])
    results = {"benchmark": "label_floor", "meta": metadata(),
               "setup": {"n_rows": len(names), "n_train": len(train), "n_test": len(test), "split": PERSON_SPLIT,
                         "people_train_test": [len(set(groups[train])), len(set(groups[test]))],
                         "crop": "96x96 gray, the 68-point box with margin 0.25", "min_cc": args.min_cc,
                         "min_cc_mirror": args.min_cc_mirror,
                         "ecc": "cv2.findTransformECC, MOTION_AFFINE, central 64x64 px, gaussFiltSize 5, from the "
                                "identity and from 2 px off; kept when both converge and agree within 0.25 px",
                         "bootstrap": n_boot, "torch_threads": torch.get_num_threads()}}
    t0 = time.perf_counter()
    everyone, held_out = set(range(len(names))), set(test.tolist())

    # (a) the floor: consecutive frames, on every person and on the held-out people alone
    aligned = align_consecutive_frames(data, 12 if smoke else None)
    results["floor"] = {k: label_floor(aligned, groups, rows, args.min_cc, n_boot)
                        for k, rows in (("all_people", everyone), ("held_out_people", held_out))}
    results["duplicates"] = {k: duplicate_labels(data, groups, rows, n_boot)
                             for k, rows in (("all_people", everyone), ("held_out_people", held_out))}
    print("floor", json.dumps(results["floor"]["all_people"].get("floor_per_frame")),
          f"{time.perf_counter() - t0:.0f} s", flush=True)

    # (b) the offset, from the training people only
    (X_tr, y_tr68), (X_te, y_te68) = jittered_crops(data, train, test)
    y_tr = y_tr68[:, cols]
    once = train[~twice[train]][:40 if smoke else None]
    images, points, scales = crop_faces_plain(data, once)
    me = mirror_ecc_offset(images, points, groups[once], args.min_cc_mirror, n_boot, scales=scales)
    print("mirror ECC", json.dumps(me.get("all68_mean_px")), f"{time.perf_counter() - t0:.0f} s", flush=True)
    params = {"random_state": 0, "max_epochs": 1 if smoke else args.crossfit_epochs,
              **({"image_size": 32} if smoke else {})}
    cf, correction = crossfit_offset(X_tr, y_tr, groups[train], params, args.cache, n_boot)
    iod_tr = outer_eye(y_tr68)
    results["offset"] = {"crossfit": cf, "mirror_ecc": me,
                         "label_geometry": label_geometry(y_tr68.reshape(-1, 68, 2), groups[train], n_boot),
                         "correction_px": {"x": correction[:, 0].tolist(), "y": correction[:, 1].tolist()},
                         "correction_nme_x": (correction[:, 0] / np.median(iod_tr)).tolist(),
                         "outer_eye_px_median_train": float(np.median(iod_tr))}
    print("correction x", np.round(correction[:, 0], 2), f"{time.perf_counter() - t0:.0f} s", flush=True)

    # (c) before/after on the held-out people
    corrected_te68 = y_te68.copy()
    corrected_te68[:, cols] += correction.ravel()
    default = {"random_state": 0, **({"max_epochs": 1, "image_size": 32} if smoke else {})}
    runs = {"raw": (default, y_tr, None),
            "corrected_flip": ({**default, "augment": {"flip": True}}, y_tr + correction.ravel(),
                               {"correction_px": np.round(correction, 6).tolist()})}
    results["before_after"], subsets = {}, None
    for name, (params, target, extra) in runs.items():
        model, record = fit_model(name, params, X_tr, target, args.cache, extra)
        if tuple(map(tuple, model.flip_pairs_)) != IBUG68_NOSE_SCHEMA.flip_pairs:
            raise RuntimeError(f"unexpected flip pairs {model.flip_pairs_}")
        if subsets is None:  # from the model trained on the labels as they are
            subsets = heldout_subsets(model.predict(X_te), y_te68, cols, names[test])
        results["before_after"][name] = {"fit": record,
                                         "scores": score_model(model, X_te, y_te68, corrected_te68, cols, subsets)}
        if name == "raw":
            d = mirror_discrepancy(model, X_te)
            results["offset"]["held_out_check"] = {
                "x": d[:, :, 0].mean(0).tolist(), "y": d[:, :, 1].mean(0).tolist(),
                "x_mean_by_rows": {k: float(d[r][:, :, 0].mean()) for k, r in subsets.items() if len(r)}}
        print(name, {m: (round(r["all"]["mae_px"], 3), round(r["all"]["nme"], 4))
                     for m, r in results["before_after"][name]["scores"].items()}, flush=True)
    results["total_seconds"] = time.perf_counter() - t0
    write_results(results, args.json)
    return 0


def heldout_subsets(pred, y68, cols, names):
    """Held-out rows by kind: every row, names listed once, and for the names listed twice the row
    nearer to ``pred`` and the farther one (by nose NME)."""
    rows = {}
    for i, n in enumerate(names):
        rows.setdefault(n, []).append(i)
    nme = np.linalg.norm((pred - y68[:, cols]).reshape(len(pred), -1, 2), axis=-1).mean(1) / outer_eye(y68)
    twice = [r for r in rows.values() if len(r) > 1]
    return {"all": np.arange(len(names)), "unique_names": np.array([r[0] for r in rows.values() if len(r) == 1]),
            "names_twice": np.array(sorted(i for r in twice for i in r), dtype=int),
            "names_twice_nearer_row": np.array([min(r, key=lambda i: nme[i]) for r in twice], dtype=int),
            "names_twice_farther_row": np.array([max(r, key=lambda i: nme[i]) for r in twice], dtype=int)}


def crop_faces_plain(data, rows):
    """Crops without jitter (the ECC parts): (images, keypoints (n, 68, 2), crop px per image px)."""
    from skkp.datasets import crop_faces

    c = crop_faces([data.images[i] for i in rows], keypoints=data.keypoints[rows], size=SIZE, margin=MARGIN, gray=True)
    return c.images, c.keypoints.reshape(len(rows), 68, 2), c.transforms[:, 0, 0]


if __name__ == "__main__":
    sys.exit(main())
