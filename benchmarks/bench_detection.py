"""Face detection on ytf68: detection rate, box IoU before and after calibration, time per image.

Every available backend of :mod:`skkp.detection` (``"opencv-haar"`` where this OpenCV has
it, ``"skimage"``, and ``"yunet"`` with ``--yunet-model PATH``) runs on ytf68 frames
(faces of 40-150 px in frames of up to 256 px). The people are split 250/63 as in the
other ytf68 benchmarks (GroupShuffleSplit by person, test_size=0.2, random_state=0):

- the box calibration (:func:`skkp.detection.calibrate_detections`, as
  ``FaceKeypointRegressor.fit`` learns it) is fitted on frames of the training people
  (every ``--train-step``-th row, to bound the time), and every number below is measured
  on all frames of the held-out people;
- target box: the landmark-extent box of the 68 annotated points (min/max, as
  :func:`skkp.datasets.crop_faces` frames a face);
- a face is *detected* when a detection's box has IoU > 0.3 with the target box:
  ``detection_rate_raw`` judges the raw detector boxes, ``detection_rate`` the calibrated
  ones; ``top1_rate`` asks it of the best-scoring detection only (the one
  ``FaceKeypointRegressor.predict`` uses);
- ``iou_raw`` / ``iou_calibrated``: IoU with the target of the raw and of the calibrated
  box of the best-scoring detection, over the frames where it is the face (top-1, IoU > 0.3
  after calibration); ``false_alarms_per_image``: the other detections per frame;
- ``ms_per_image``: median over ``--repeats`` passes over ``--n-timed`` held-out frames
  after a warm-up, divided by their number (scikit-image's cascade runs on OpenMP: the
  thread count is recorded).

``keypoints`` (skimage backend, ``--no-keypoints`` to skip) puts the 68 points of the
shipped ``ibug68_face`` model on the held-out frames framed five ways: the landmark box
itself (the best a detector could do), the calibrated detection
(``FaceKeypointRegressor.predict`` with ``refine=0``), the same reframed once and twice
on the predicted points (``refine=1``, ``refine=2``), and the raw detection box. The
shipped model was trained on every ytf68 person, these included: the numbers compare
framings, not how well the model generalises (docs/pretrained.md has that).

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_detection.py --threads 1 \
          --json benchmarks/results/detection.json
Docs: python benchmarks/bench_detection.py --table benchmarks/results/detection.json  (docs/photos.md)
CI:   python benchmarks/bench_detection.py --smoke
"""
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (PERSON_SPLIT, add_table_option, add_threads_option, metadata, parser,  # noqa: E402
                     person_split, ytf68_run, timeit, write_results)

from skkp.datasets import crop_faces, uncrop_keypoints  # noqa: E402
from skkp.detection import (FaceDetector, available_backends, box_iou, calibrate_detections,  # noqa: E402
                            keypoint_boxes, xywh_to_xyxy)

MATCH_IOU = 0.3
#: backend runs: (name, FaceDetector parameters); the defaults first
CONFIGS = [("skimage", {}), ("skimage", {"min_neighbors": 2}), ("skimage", {"scale_factor": 1.2}),
           ("opencv-haar", {}), ("yunet", {})]


def _stats(values):
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return None
    return {"mean": float(v.mean()), "median": float(np.median(v)), "p10": float(np.percentile(v, 10)),
            "p90": float(np.percentile(v, 90))}


def evaluate(detections, targets, calibration):
    """Detection numbers of per-image ``detections`` (best first) against the (n, 4) target boxes."""
    raw_any, cal_any, top_iou, iou_raw, iou_cal, extra = [], [], [], [], [], []
    for det, target in zip(detections, targets):
        raw = box_iou(det, target[None])[:, 0]
        cal = box_iou(calibration.apply(det), target[None])[:, 0]
        raw_any.append(bool((raw > MATCH_IOU).any()))
        cal_any.append(bool((cal > MATCH_IOU).any()))
        top_iou.append(cal[0] if len(det) else 0.0)
        extra.append(len(det) - int(top_iou[-1] > MATCH_IOU))
        if top_iou[-1] > MATCH_IOU:
            iou_raw.append(raw[0])
            iou_cal.append(cal[0])
    top_iou = np.array(top_iou)
    return {"n_images": len(targets), "detection_rate_raw": float(np.mean(raw_any)),
            "detection_rate": float(np.mean(cal_any)), "top1_rate": float(np.mean(top_iou > MATCH_IOU)),
            "top1_rate_iou_0.5": float(np.mean(top_iou > 0.5)), "no_detection_rate":
            float(np.mean([len(d) == 0 for d in detections])),
            "iou_raw": _stats(iou_raw), "iou_calibrated": _stats(iou_cal),
            "false_alarms_per_image": float(np.mean(extra))}


def nme68(pred, true):
    """Per-face mean point error over the outer-eye distance (points 36, 45); NaN where not predicted."""
    p, t = pred.reshape(len(pred), 68, 2), true.reshape(len(true), 68, 2)
    eyes = np.linalg.norm(t[:, 45] - t[:, 36], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no face found
        return np.nanmean(np.linalg.norm(p - t, axis=2), axis=1) / eyes


def keypoint_framings(images, keypoints, train_images, train_keypoints, test_detections, detector, calibration):
    """NME of the shipped 68-point model under four framings of the held-out faces."""
    from sklearn.frozen import FrozenEstimator

    from skkp.faces import FaceKeypointRegressor
    from skkp.pretrained import load_model

    model = load_model("ibug68_face", device="cpu")

    def framed(boxes_xywh):
        crops = crop_faces(images, boxes=xywh_to_xyxy(boxes_xywh)[:, :4], size=96, margin=0.25)
        return uncrop_keypoints(model.predict(crops.images), crops.transforms)

    t0 = time.perf_counter()
    faces = FaceKeypointRegressor(FrozenEstimator(model), detector=detector, refine=0)
    faces.fit(train_images, train_keypoints)
    fit_s = time.perf_counter() - t0
    assert faces.calibration_ == calibration, (faces.calibration_, calibration)  # the same calibration as above
    has_face = np.array([len(d) > 0 for d in test_detections])
    top = np.array([d[0, :4] if len(d) else [np.nan] * 4 for d in test_detections])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # frames without a detection: counted below
        t0 = time.perf_counter()
        detected = faces.predict(images, boxes=test_detections)
        predict_s = time.perf_counter() - t0
        refined = {r: faces.set_params(refine=r).predict(images, boxes=test_detections) for r in (1, 2)}
    raw = np.full(len(images), np.nan)
    idx = np.flatnonzero(has_face)
    if idx.size:
        crops = crop_faces([images[i] for i in idx], boxes=xywh_to_xyxy(top[idx]), size=96, margin=0.25)
        raw[idx] = nme68(uncrop_keypoints(model.predict(crops.images), crops.transforms), keypoints[idx])
    rows = {"landmark_box": nme68(framed(keypoint_boxes(keypoints)), keypoints),
            "calibrated_detection": nme68(detected, keypoints),
            "calibrated_detection_refine_1": nme68(refined[1], keypoints),
            "calibrated_detection_refine_2": nme68(refined[2], keypoints), "raw_detection": raw}
    out = {"model": "skkp.pretrained.load_model('ibug68_face') (trained on every ytf68 person)",
           "frames_with_a_detection": int(has_face.sum()), "n_images": len(images),
           "calibration_fit_s": fit_s, "predict_s_boxes_given": predict_s, "framings": {}}
    for name, nme in rows.items():
        on = has_face if name != "landmark_box" else np.ones(len(images), bool)
        vals = nme[on & np.isfinite(nme)]
        out["framings"][name] = {
            "over": "all frames" if name == "landmark_box" else "frames with a detection",
            "nme": float(np.mean(vals)) if vals.size else None,
            "nme_median": float(np.median(vals)) if vals.size else None,
            "failure_rate_0.10": float(np.mean(vals > 0.10)) if vals.size else None}
    return out


DOCS_START = "<!-- detection results: generated by python benchmarks/bench_detection.py --table -->"
DOCS_END = "<!-- end of detection results -->"
FRAMINGS = {"landmark_box": "the landmark-extent box itself (the labels)",
            "calibrated_detection": "calibrated detection (`refine=0`)",
            "calibrated_detection_refine_1": "calibrated detection, `refine=1`",
            "calibrated_detection_refine_2": "calibrated detection, `refine=2`",
            "raw_detection": "raw detection box, no calibration"}


def summary_lines(result):
    """The markdown tables docs/photos.md quotes, from a result of this script."""
    pct = lambda x: "n/a" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    s, meta = result["settings"], result["meta"]
    lines = ["| backend, parameters | found (raw box) | found (calibrated) | best-scoring box is the face "
             "| median IoU, raw -> calibrated | false alarms per frame | ms per frame |",
             "|---|---|---|---|---|---|---|"]
    for row in result["backends"]:
        h = row["held_out"]
        params = ", ".join(f"{k}={v}" for k, v in row["params"].items()) or "defaults"
        iou = (f"{h['iou_raw']['median']:.2f} -> {h['iou_calibrated']['median']:.2f}" if h["iou_raw"] else "n/a")
        lines.append(f"| `{row['backend']}`, {params} | {pct(h['detection_rate_raw'])} | {pct(h['detection_rate'])} "
                     f"| {pct(h['top1_rate'])} | {iou} | {h['false_alarms_per_image']:.2f} "
                     f"| {row['ms_per_image']:.0f} |")
    first = result["backends"][0]
    c = first["calibration"]
    lines += ["", f"Calibration of `{first['backend']}` (defaults), fitted on {c['n_boxes']} frames of the training "
              f"people: dx = {c['dx']:+.3f}, dy = {c['dy']:+.3f}, scale_x = {c['scale_x']:.3f}, "
              f"scale_y = {c['scale_y']:.3f}."]
    kp = first.get("keypoints")
    if kp:
        lines += ["", "| framing of the held-out faces (shipped `ibug68_face`, 68 points) | NME | median NME "
                  "| failure rate (NME > 0.10) |", "|---|---|---|---|"]
        for key, label in FRAMINGS.items():
            f = kp["framings"].get(key)
            if f:
                lines.append(f"| {label} | {pct(f['nme'])} | {pct(f['nme_median'])} | {pct(f['failure_rate_0.10'])} |")
        lines += ["", f"NME over the {kp['frames_with_a_detection']} of {kp['n_images']} held-out frames with a "
                  f"detection (the landmark box: all frames); the shipped model was trained on every ytf68 "
                  f"person, so these compare framings, not generalisation."]
    lines += ["", f"*{s['n_held_out_frames']} held-out frames of {s['people_train_test'][1]} people, calibration "
              f"on {s['n_calibration_frames']} frames of {s['people_train_test'][0]} others "
              f"({s['split']}); run {meta['date']} at commit `{meta['commit']}` on {meta['cpu_count']} CPUs, "
              f"OMP_NUM_THREADS={s['omp_num_threads']}, {meta['torch_threads']} torch thread(s), "
              f"OpenCV {meta['versions'].get('opencv')}.*"]
    return lines


def main(argv=None):
    p = add_threads_option(parser(__doc__.splitlines()[0]))
    p.add_argument("--yunet-model", default=None, help="a YuNet ONNX file, to include backend 'yunet'")
    p.add_argument("--train-step", type=int, default=4, help="calibrate on every n-th training-people frame")
    p.add_argument("--n-timed", type=int, default=40, help="held-out frames timed per backend")
    p.add_argument("--no-keypoints", action="store_true", help="skip the 68-point framing comparison")
    add_table_option(p, "docs/photos.md")
    args = p.parse_args(argv)
    data_dir = ytf68_run(args, summary_lines)
    if data_dir is None:
        return 0
    data, groups, train, test = person_split(data_dir, 12 if args.smoke else None)
    train = train[::1 if args.smoke else args.train_step]
    targets = keypoint_boxes(data.keypoints)
    n_timed, repeats = (4, 1) if args.smoke else (args.n_timed, args.repeats)
    available = available_backends()
    configs = [(b, kw) for b, kw in CONFIGS if b in available and (b != "yunet" or args.yunet_model)]
    if args.smoke:
        configs = configs[:1]

    results = []
    for backend, kwargs in configs:
        params = dict(kwargs, **({"model": args.yunet_model} if backend == "yunet" else {}))
        if args.smoke:
            params.setdefault("min_size", 40)  # fewer scales: seconds, not minutes
        detector = FaceDetector(backend, **params)
        t0 = time.perf_counter()
        found = [detector.detect(data.images[i]) for i in np.r_[train, test]]
        detect_s = time.perf_counter() - t0
        train_det, test_det = found[:len(train)], found[len(train):]
        calibration, match = calibrate_detections(train_det, targets[train], MATCH_IOU)
        timed = [data.images[i] for i in test[:n_timed]]
        timing = timeit(lambda: [detector.detect(im) for im in timed], repeats=repeats)
        row = {"backend": backend, "params": kwargs, "calibration": calibration.to_dict(),
               "train_detection_rate": float(np.mean(match >= 0)),
               "held_out": evaluate(test_det, targets[test], calibration),
               "ms_per_image": 1000 * timing["median_s"] / len(timed), "timing": timing,
               "detect_s_total": detect_s}
        if backend == "skimage" and not kwargs and not args.no_keypoints:
            row["keypoints"] = keypoint_framings([data.images[i] for i in test], data.keypoints[test],
                                                 [data.images[i] for i in train], data.keypoints[train],
                                                 test_det, detector, calibration)
        print(backend, kwargs, {k: row[k] for k in ("calibration", "ms_per_image")}, row["held_out"], flush=True)
        results.append(row)

    heights = [im.shape[0] for im in data.images]
    sides = np.maximum(targets[:, 2], targets[:, 3])
    out = {
        "benchmark": "detection",
        "meta": metadata("cpu"),
        "settings": {
            "data": data_dir.name, "n_images": len(data.images), "n_people": len(set(groups)),
            "split": PERSON_SPLIT,
            "people_train_test": [len(set(groups[train])), len(set(groups[test]))],
            "n_calibration_frames": len(train), "n_held_out_frames": len(test),
            "target_box": "min/max box of the 68 landmarks", "match_iou": MATCH_IOU,
            "frame_heights_px": [int(min(heights)), int(max(heights))],
            "face_sides_px": [float(sides.min()), float(np.median(sides)), float(sides.max())],
            "available_backends": list(available), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "n_timed": len(test[:n_timed]), "smoke": args.smoke},
        "backends": results,
    }
    write_results(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
