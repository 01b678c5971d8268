"""How good can a parser be on ytf68's landmark-painted masks? Two ceilings, no training.

1. Output stride: the true label maps are average-pooled to 1/s (the best a
   head at stride s can hold per cell), upsampled bilinearly to 128 px and
   argmaxed. This shows what a head at stride 2, 4, 8 or 16 loses on parts as
   small as eyes (about 12x4 pixels at 128 px).
2. Boundary precision: the 68 landmarks get independent Gaussian noise of a
   few pixels before the masks are painted, as if a model placed every part
   boundary with that error. Mean F1 (background excluded) against the clean
   masks says what localisation error a given F1 needs.

3. The labels themselves: ytf68 lists some images twice, with two different sets of
   68 points (bench_label_floor.py's duplicate rows). Both sets are painted into the
   crop cut on the first one; the second's masks scored against the first's say how
   far two labellings of one image agree, the F1 a perfect model would reach against
   one of them if it had learnt the other.

4. Consecutive video frames: the pairs of frames of one person that bench_label_floor.py
   aligns with ECC (file names listed once, correlation >= 0.9). Frame B's points, mapped
   into frame A's crop, are painted beside A's own: their masks' agreement is that of two
   labellings of (nearly) one face, each with its own annotation noise. Moving A's points by
   that difference divided by sqrt(2) (noise of one labelling, same structure) estimates the
   F1 of a model that found every point exactly, scored against labels as noisy as ytf68's.

All use the crops of bench_parser_ytf68.py (128 px, margin 0.25, all 3240 faces).

Run:  python benchmarks/bench_parser_ceiling.py --json benchmarks/results/parser_ceiling.json
CI:   python benchmarks/bench_parser_ceiling.py --smoke
"""
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_dir_or_none, metadata, parser, write_results, ytf68_csv  # noqa: E402
from bench_label_floor import SIZE as FLOOR_SIZE, align_consecutive_frames, duplicate_pairs  # noqa: E402
from bench_parser_ytf68 import CLASSES, load_crops  # noqa: E402

from skkp.datasets import crop_faces, landmarks_to_masks, load_landmarks_csv  # noqa: E402
from skkp.metrics import parsing_report  # noqa: E402


def stride_ceiling(masks, stride):
    """Mean F1 of label maps average-pooled by ``stride``, upsampled bilinearly and argmaxed."""
    pred = []
    for i in range(0, len(masks), 256):
        onehot = F.one_hot(torch.from_numpy(masks[i:i + 256].astype(np.int64)), len(CLASSES))
        low = F.avg_pool2d(onehot.permute(0, 3, 1, 2).float(), stride)
        up = F.interpolate(low, size=masks.shape[1:], mode="bilinear", align_corners=False)
        pred.append(up.argmax(1).numpy().astype(np.uint8))
    return parsing_report(masks, np.concatenate(pred), list(CLASSES))


def noise_ceiling(masks, landmarks, sigma, rng):
    """Mean F1 of masks painted from landmarks with Gaussian noise ``sigma`` px, and that noise's mean point error."""
    noisy = landmarks + rng.normal(0.0, sigma, landmarks.shape)
    pred = landmarks_to_masks(noisy, masks.shape[1:], classes=CLASSES)
    err = float(np.linalg.norm((noisy - landmarks).reshape(len(landmarks), -1, 2), axis=-1).mean())
    return parsing_report(masks, pred, list(CLASSES)), err


def load_rows(data_dir, n_rows=None):
    """ytf68's rows as listed (images and 68 points), file names listed twice included."""
    with ytf68_csv(data_dir, n_rows) as csv_path, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the warning names the doubly listed rows: measured here
        return load_landmarks_csv(csv_path, data_dir / "images")


def duplicate_label_ceiling(data, size, margin):
    """Mean F1 of the masks of one labelling of an image against another labelling's (ytf68's
    file names listed twice), both in the crop cut on the first; and their mean point distance."""
    pairs = [(a, b) for a, b in duplicate_pairs([str(n) for n in data.filenames])
             if not np.array_equal(data.keypoints[a], data.keypoints[b], equal_nan=True)]  # two labellings
    if not pairs:
        return None, 0, float("nan")
    a, b = (np.array(rows) for rows in zip(*pairs))
    crops = crop_faces([data.images[i] for i in a], data.keypoints[a], size=size, margin=margin, gray=False)
    other = data.keypoints[b].reshape(len(b), -1, 2)
    other = other @ crops.transforms[:, :, :2].transpose(0, 2, 1) + crops.transforms[:, None, :, 2]
    first = landmarks_to_masks(crops.keypoints, (size, size), classes=CLASSES)
    second = landmarks_to_masks(other.reshape(len(b), -1), (size, size), classes=CLASSES)
    dist = float(np.linalg.norm(other - crops.keypoints.reshape(len(a), -1, 2), axis=-1).mean())
    return parsing_report(first, second, list(CLASSES)), len(pairs), dist


def frame_pair_ceiling(data, size, margin, min_cc=0.9):
    """Masks of consecutive frames' labels in one crop (see the module's 4.): ``(report of frame B's
    masks against A's, report of A's points moved by the difference / sqrt 2 against A's, pairs,
    mean point distance in px at ``size``)``. Names listed twice are left out of the pairs."""
    keep = [r for r in align_consecutive_frames(data) if r[4] is None and r[2] >= min_cc]
    if not keep:
        return None, None, 0, float("nan")
    a = np.array([r[0] for r in keep])
    crops = crop_faces([data.images[i] for i in a], data.keypoints[a], size=size, margin=margin, gray=False)
    points = crops.keypoints.reshape(len(a), -1, 2)
    # A's labels minus B's mapped into A's crop, in the 96 px crops of bench_label_floor: the same
    # box (the 68 points with the same margin), so at ``size`` px the difference scales by size / 96
    diff = np.array([r[3] for r in keep]) * (size / FLOOR_SIZE)
    first = landmarks_to_masks(points.reshape(len(a), -1), (size, size), classes=CLASSES)
    second = landmarks_to_masks((points - diff).reshape(len(a), -1), (size, size), classes=CLASSES)
    one = landmarks_to_masks((points - diff / np.sqrt(2)).reshape(len(a), -1), (size, size), classes=CLASSES)
    dist = float(np.linalg.norm(diff, axis=-1).mean())
    return (parsing_report(first, second, list(CLASSES)), parsing_report(first, one, list(CLASSES)), len(a),
            dist)


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    data_dir = data_dir_or_none()
    if data_dir is None:
        return 0
    _, masks, _, landmarks = load_crops(data_dir, 128, 0.25, n_rows=32 if args.smoke else None)
    if args.smoke:  # the first 32 faces (the read may hold a few more, the rest of the last person)
        masks, landmarks = masks[:32], landmarks[:32]

    def summary(report):
        return {"mean_f1": report["mean_f1"], "mean_iou": report["mean_iou"],
                "per_class_f1": {k: v["f1"] for k, v in report["per_class"].items()}}

    strides = {}
    for s in (2, 4, 8, 16):
        strides[str(s)] = summary(stride_ceiling(masks, s))
        print(f"stride {s}: mean F1 {strides[str(s)]['mean_f1']:.3f}", flush=True)
    rng = np.random.RandomState(args.seed)
    noise = {}
    for sigma in (0.5, 1.0, 1.5, 2.0):
        report, err = noise_ceiling(masks, landmarks, sigma, rng)
        noise[str(sigma)] = {"mean_point_error_px": err, **summary(report)}
        print(f"landmark noise sigma {sigma} px (mean error {err:.2f} px): mean F1 {report['mean_f1']:.3f}", flush=True)
    rows = load_rows(data_dir, n_rows=64 if args.smoke else None)  # read once for measures 3 and 4
    report, n_pairs, dist = duplicate_label_ceiling(rows, 128, 0.25)
    duplicates = None if report is None else {"n_pairs": n_pairs, "mean_point_distance_px": dist, **summary(report)}
    if duplicates:
        print(f"two labellings of one image ({n_pairs} images, points {dist:.2f} px apart): "
              f"mean F1 {report['mean_f1']:.3f}", flush=True)
    pair, one, n_pairs, dist = frame_pair_ceiling(rows, 128, 0.25)
    frames = None if pair is None else {
        "n_pairs": n_pairs, "min_correlation": 0.9, "mean_point_distance_px": dist,
        "two_labellings": summary(pair), "one_labelling_estimate": summary(one)}
    if frames:
        print(f"consecutive frames ({n_pairs} aligned pairs, points {dist:.2f} px apart): mean F1 "
              f"{pair['mean_f1']:.3f}; one labelling's noise (difference / sqrt 2): {one['mean_f1']:.3f}", flush=True)
    results = {"benchmark": "parser_ceiling", "smoke": bool(args.smoke), "metadata": metadata(),
               "data": {"n_faces": int(len(masks)), "size": 128, "margin": 0.25, "classes": list(CLASSES)},
               "stride_ceiling": strides, "landmark_noise": noise, "duplicate_labels": duplicates,
               "consecutive_frames": frames}
    write_results(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
