"""Collect bench_parser_ytf68 runs into the table of random scale range against test framing.

Each training range is one run of ``bench_parser_ytf68.py --scale-range LO HI --save M.skkp`` (its
held-out crops framed as in training), scored again with ``--load M.skkp --test-jitter J``. This
script reads those JSON files, pairs each scoring with the training run of its scale range, adds
the mean box IoU that each jitter gives (how far a framing is from the landmark box, to compare
with a face detector's) and writes ``benchmarks/results/parser_scale_range.json``, which
``make_report.py`` turns into the table of docs/benchmarks.md and docs/face_parser.md:

    python benchmarks/collect_parser_scale.py --json benchmarks/results/parser_scale_range.json \\
        --note "..." trained_*.json scored_*.json
"""
import argparse
import json
from pathlib import Path

import numpy as np

COMMAND = "python benchmarks/bench_parser_ytf68.py --threads 1 --max-epochs 25 --scale-range LO HI --save M.skkp"
SCORE_COMMAND = "python benchmarks/bench_parser_ytf68.py --threads 1 --load M.skkp --test-jitter J"
PROTOCOL = ("Each range trained one parser: FaceParser's default network and loss (heads on stages 1-4, top-down "
            "head, boundary_weight 2), 128 px, width 0.5, batch 8, lr 0.05, 25 epochs, seed 0, all training rows as "
            "labelled; only the random scale differs.")


def box_iou_mean(jitter, n=200000, seed=0):
    """Mean IoU of a face box moved and scaled by ``crop_faces``' jitter with the box itself.

    ``crop_faces`` draws dx, dy, ds uniform in [-1, 1], moves the centre by (dx, dy) * jitter * side
    and scales the side by 1 + ds * 2 * jitter; Monte Carlo over ``n`` draws.

    >>> box_iou_mean(0.0)
    1.0
    >>> round(box_iou_mean(0.1), 2)
    0.77
    """
    dx, dy, ds = np.random.RandomState(seed).uniform(-1, 1, (3, n))
    side = 1 + 2 * jitter * ds
    overlap = [np.clip(np.minimum(0.5, jitter * d + side / 2) - np.maximum(-0.5, jitter * d - side / 2), 0, None)
               for d in (dx, dy)]
    inter = overlap[0] * overlap[1]
    return float(np.mean(inter / (1 + side ** 2 - inter)))


def collect(results, detection=None, note=""):
    """The parser_scale_range JSON from bench_parser_ytf68 results (dicts); ``detection`` is the
    detection benchmark's JSON, whose calibrated box IoU the table is read against."""
    trained = {tuple(r["config"]["scale_range"]): r for r in results if not r["config"].get("test_jitter")}
    runs = []
    for r in results:
        scale, jitter = tuple(r["config"]["scale_range"]), float(r["config"].get("test_jitter") or 0.0)
        if scale not in trained:
            raise ValueError(f"no training run (test jitter 0) for scale range {list(scale)}")
        t, q = trained[scale], r["quality"]
        runs.append({"scale_range": list(scale), "test_jitter": jitter,
                     "mean_f1": q["mean_f1_no_background"], "mean_iou": q["mean_iou"],
                     "flip_average_mean_f1": q["flip_average"]["mean_f1_no_background"],
                     "unique_rows_mean_f1": q["unique_rows"]["mean_f1_no_background"],
                     "per_class_f1": q["per_class_f1"], "prior_baseline_mean_f1": q["prior_baseline_mean_f1"],
                     "scored_at_commit": r["metadata"]["commit"], "scored_argv": r["metadata"]["argv"],
                     "trained_at_commit": t["metadata"]["commit"], "trained_argv": t["metadata"]["argv"],
                     "train_s": t["training"]["train_s"], "epochs": t["training"]["epochs_done"],
                     "train_torch_threads": t["metadata"]["torch_threads"]})
    runs.sort(key=lambda run: (-(run["scale_range"][1] - run["scale_range"][0]), run["test_jitter"]))
    jitters = sorted({run["test_jitter"] for run in runs if run["test_jitter"]})
    setup = {"command": COMMAND, "score_command": SCORE_COMMAND, "protocol": PROTOCOL,
             "default_scale_range": [0.75, 1.25], "study_scale_range": [0.75, 2.0],
             "framing_box_iou_mean": {f"{j:g}": box_iou_mean(j) for j in jitters},
             "framing_box_iou_method": "Monte Carlo, 200000 draws of crop_faces' jitter (centre moved by (dx, dy) * J "
                                       "* side, side scaled by 1 + ds * 2J, dx, dy, ds uniform in [-1, 1]); IoU of the "
                                       "moved box with the original one"}
    if detection is not None:
        iou = detection["backends"][0]["held_out"]["iou_calibrated"]["mean"]
        setup["detector_box_iou"] = (f"skkp's {detection['backends'][0]['backend']} detector, calibrated, gives a "
                                     f"mean IoU of {iou:.2f} with ytf68's landmark boxes on the held-out people: "
                                     f"detection.json")
    last = max(results, key=lambda r: r["metadata"]["date"])
    return {"benchmark": "parser_scale_range", "meta": last["metadata"],
            "n_test": last["data"]["n_test"], "n_test_unique": last["quality"]["unique_rows"]["n_test"],
            "setup": setup, "runs": runs, "note": note}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", help="bench_parser_ytf68 JSON files: training runs and their scorings")
    p.add_argument("--detection", default=str(Path(__file__).resolve().parent / "results" / "detection.json"))
    p.add_argument("--note", default="", help="what the table shows, for the docs")
    p.add_argument("--json", required=True)
    args = p.parse_args(argv)
    detection = Path(args.detection)
    out = collect([json.loads(Path(f).read_text()) for f in args.results],
                  json.loads(detection.read_text()) if detection.exists() else None, args.note)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.json}: {len(out['runs'])} runs")


if __name__ == "__main__":
    main()
