"""Edge keypoints on real faces: ytf68 label maps painted from the 68 landmarks.

For every face, :func:`skkp.datasets.landmarks_to_mask` paints a label map from
its annotated landmarks, :func:`skkp.mask_edge_keypoints` puts 16 points on the
edge of the nose, the upper lip and the lower lip, and each point's distance to
the annotated contours is measured (distance to the nearest point of the
closed polyline):

- nose: the nose outline polygon, landmarks 27-35 in order, closed;
- lips: the outer lip 48-59 and the inner lip 60-67 (each lip's edge runs
  along both), closed polylines.

Reported per part: mean, median, 95th percentile and max in pixels and as a
fraction of the outer eye-corner distance (landmarks 36-45, as in NME), the
share of points within 1, 2 and 3 px, and how many faces gave no points. The
nose mask is wider than its landmark outline on purpose (the bridge is widened
by 6-9 % of the eye distance and the nostril wings by 15 %), so nose distances
measure that widening as much as the edge tracing; lip masks are painted from
the lip contours themselves, so lip distances measure the tracing.

``edge_errors`` is the measurement on its own, to apply to other label maps
of the same faces (e.g. FaceParser predictions).

Run:  python benchmarks/bench_edges_ytf68.py --json benchmarks/results/edges_ytf68.json
CI:   python benchmarks/bench_edges_ytf68.py --smoke
"""
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_dir_or_none, metadata, parser, timeit, write_results  # noqa: E402

from skkp.datasets import landmarks_to_mask, load_landmarks_csv  # noqa: E402
from skkp.edges import mask_edge_keypoints  # noqa: E402
from skkp.schemas import CELEBAMASK_CLASSES  # noqa: E402

N_POINTS = 16
PARTS = ("nose", "u_lip", "l_lip")
#: landmark contours (closed polylines) each part's edge points are compared with
CONTOURS = {
    "nose": [list(range(27, 36))],
    "u_lip": [list(range(48, 60)), list(range(60, 68))],
    "l_lip": [list(range(48, 60)), list(range(60, 68))],
}


def distance_to_polylines(points, polylines):
    """Distance of each point (m, 2) to the nearest of several closed polylines."""
    best = np.full(len(points), np.inf)
    for poly in polylines:
        p, q = poly, np.roll(poly, -1, axis=0)
        seg = q - p
        t = np.clip(((points[:, None] - p) * seg).sum(-1) / np.maximum((seg ** 2).sum(-1), 1e-12), 0, 1)
        foot = p + t[..., None] * seg
        best = np.minimum(best, np.hypot(*(points[:, None] - foot).transpose(2, 0, 1)).min(axis=1))
    return best


def edge_errors(label_maps, keypoints68, n_points=N_POINTS, classes=CELEBAMASK_CLASSES):
    """Distances of the nose/lip edge points of each label map to its annotated contours.

    Parameters
    ----------
    label_maps : list of (H, W) int arrays (CelebAMask-HQ classes)
    keypoints68 : (n, 136) landmarks of the same faces, in the maps' pixels
    classes : sequence of str
        Class names of the label values (the maps' class order).

    Returns
    -------
    dict: per part, summary statistics in pixels and in eye-distance units.
    """
    per_part = {p: {"px": [], "iod": [], "missing_faces": 0} for p in PARTS}
    for lab, kp in zip(label_maps, keypoints68):
        pts68 = np.asarray(kp, dtype=float).reshape(68, 2)
        iod = float(np.linalg.norm(pts68[45] - pts68[36]))
        pts = mask_edge_keypoints(lab, classes=classes, n_points=n_points, parts=list(PARTS), output="points")
        for k, part in enumerate(PARTS):
            mine = pts[k * n_points:(k + 1) * n_points]
            if np.isnan(mine).any():
                per_part[part]["missing_faces"] += 1
                continue
            d = distance_to_polylines(mine, [pts68[idx] for idx in CONTOURS[part]])
            per_part[part]["px"].append(d)
            per_part[part]["iod"].append(d / iod)
    summary = {}
    for part, acc in per_part.items():
        px = np.concatenate(acc["px"]) if acc["px"] else np.array([])
        iod = np.concatenate(acc["iod"]) if acc["iod"] else np.array([])
        if px.size == 0:
            summary[part] = {"n_faces": 0, "missing_faces": acc["missing_faces"]}
            continue
        summary[part] = {
            "n_faces": len(acc["px"]), "missing_faces": acc["missing_faces"], "n_points": int(px.size),
            "mean_px": float(px.mean()), "median_px": float(np.median(px)),
            "p95_px": float(np.percentile(px, 95)), "max_px": float(px.max()),
            "mean_iod": float(iod.mean()), "p95_iod": float(np.percentile(iod, 95)),
            "within_1px": float((px <= 1).mean()), "within_2px": float((px <= 2).mean()),
            "within_3px": float((px <= 3).mean()),
        }
    return summary


def _subset_csv(csv_path, n_rows, folder):
    """A copy of the first ``n_rows`` rows of the CSV (for --smoke)."""
    lines = Path(csv_path).read_text().splitlines()
    out = Path(folder) / "subset.csv"
    out.write_text("\n".join(lines[:n_rows + 1]) + "\n")
    return out


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args(argv)
    data_dir = data_dir_or_none()
    if data_dir is None:
        return 0
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = _subset_csv(data_dir / "keypoints.csv", 25, tmp) if args.smoke else data_dir / "keypoints.csv"
        data = load_landmarks_csv(csv_path, data_dir / "images", errors="skip")
    shapes = [img.shape[:2] for img in data.images]
    masks = [landmarks_to_mask(kp, shape) for kp, shape in zip(data.keypoints, shapes)]
    summary = edge_errors(masks, data.keypoints)
    timing = timeit(lambda: [mask_edge_keypoints(m, n_points=N_POINTS, parts=list(PARTS)) for m in masks[:200]],
                    repeats=1 if args.smoke else args.repeats)
    results = {
        "benchmark": "edges_ytf68",
        "meta": metadata("cpu"),
        "settings": {"data": str(data_dir.name), "n_faces": len(masks), "n_skipped": int(data.n_skipped),
                     "n_points": N_POINTS, "parts": list(PARTS),
                     "contours": {k: [[i[0], i[-1]] for i in v] for k, v in CONTOURS.items()},
                     "label_maps": "landmarks_to_mask(annotated landmarks, image shape)",
                     "image_sizes_px": [int(min(min(s) for s in shapes)), int(max(max(s) for s in shapes))],
                     "smoke": args.smoke},
        "landmark_masks": summary,
        "faces_per_s": min(200, len(masks)) / timing["median_s"],
        "face_parser_predictions": None,  # to be filled by the FaceParser run (held-out people)
    }
    write_results(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
