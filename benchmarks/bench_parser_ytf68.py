"""FaceParser on real faces: ytf68 crops with label maps painted from 68 landmarks.

Faces are cut as square crops around the landmark extent (with a margin), the
label maps come from :func:`skkp.datasets.landmarks_to_mask`, and people are
split 80/20 (never the same person on both sides). The parser trains within a
CPU time budget: a short calibration run measures the time per image, the
number of epochs is chosen so that the warm-up/poly schedule ends inside the
budget, and a guard stops training if the budget runs out anyway.

Reported: mean F1 without background (target >= 0.80), mean IoU with
background, pixel accuracy, per-class F1, training time, inference images/s
(with a plain PyTorch forward loop over the same network as reference), and a
"mean-shape prior" baseline (the per-pixel majority label of the training maps)
that shows how much the crop alignment alone gives. The same model is also scored with
``predict(X, flip_average=True)`` (test-time flip), and both are also scored on the held-out
rows whose image ytf68 labels once: it lists 583 images twice with two different sets of points
(about 10 px apart at 128 px), of which at most one can fit the image. ``--duplicates drop``
leaves those rows out of training and test; ``--save``/``--load`` keep a fitted parser and score
it again without training.

Run:  python benchmarks/bench_parser_ytf68.py --json benchmarks/results/parser_ytf68.json
CI:   python benchmarks/bench_parser_ytf68.py --smoke
"""
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from skorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (add_threads_option, data_dir_or_none, metadata, parser, set_threads, timeit,  # noqa: E402
                     write_results, ytf68_csv)
from bench_edges_ytf68 import edge_errors  # noqa: E402

from skkp.augment import normalize_image  # noqa: E402
from skkp.datasets import crop_faces, landmarks_to_masks, load_landmarks_csv  # noqa: E402
from skkp.losses import OhemCrossEntropy  # noqa: E402
from skkp.metrics import parsing_report  # noqa: E402
from skkp.parsing import FaceParser  # noqa: E402
from skkp.datasets._readers import _conflicting_rows  # noqa: E402
from skkp.io import load, save  # noqa: E402
from skkp.schemas import IGNORE_INDEX  # noqa: E402

#: The classes landmark masks can hold, in CelebAMask-HQ's order.
CLASSES = ("background", "skin", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "mouth", "u_lip", "l_lip")
TARGET_MEAN_F1 = 0.80


class FitBudget(Callback):
    """Keep training inside ``seconds``: after each epoch, shorten the LR schedule to
    the epochs that still fit (so the poly decay ends inside the budget), and stop
    when no further epoch fits or, as a last guard, when a batch after the first
    epoch ends past the budget."""

    def __init__(self, seconds):
        self.seconds = seconds

    def on_train_begin(self, net, **kwargs):
        self.start_ = time.perf_counter()
        self.hit_ = False
        self.replans_ = 0

    def _stop(self):
        self.hit_ = True
        raise KeyboardInterrupt  # skorch ends fit cleanly on KeyboardInterrupt

    def on_batch_end(self, net, training=True, **kwargs):
        if training and len(net.history) > 1 and time.perf_counter() - self.start_ > self.seconds:
            lr_schedule = dict(net.callbacks_)["lr_schedule"]  # runs before this callback
            if lr_schedule.batch_idx_ < lr_schedule.lr_scheduler_.lr_lambdas[0].total_steps:
                self._stop()  # not on the very last step: the schedule did not finish

    def on_epoch_end(self, net, **kwargs):
        elapsed = time.perf_counter() - self.start_
        done = len(net.history)
        epoch_s = max(net.history[-1, "dur"], elapsed / done) * 1.05  # the slower estimate, a margin
        fit = done + int((self.seconds - elapsed) / epoch_s)
        schedule = dict(net.callbacks_)["lr_schedule"].lr_scheduler_.lr_lambdas[0]
        per_epoch = net.history[-1, "train_batch_count"]
        planned = schedule.total_steps // per_epoch
        if fit <= done:
            self._stop()
        if fit < planned:
            schedule.total_steps = fit * per_epoch
            self.replans_ += 1


def read_faces(data_dir, n_rows=None):
    """ytf68's images and landmarks (``load_landmarks_csv``'s Bunch): all faces, or with ``n_rows``
    only about the first ``n_rows`` (whole people; see :func:`_common.ytf68_csv`), read without
    loading the other images."""
    with ytf68_csv(data_dir, n_rows) as csv_path, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the conflicting rows: returned, kept or dropped on purpose
        return load_landmarks_csv(csv_path, data_dir / "images")


def crop_and_paint(data, size, margin, jitter=0.0, seed=0):
    """``(crops, label maps, landmarks in the crops)`` of :func:`read_faces`' faces; ``jitter`` moves
    and scales each crop at random (``crop_faces``'s jitter, seeded by ``seed``)."""
    crops = crop_faces(data.images, data.keypoints, size=size, margin=margin, gray=False, jitter=jitter,
                       random_state=seed)
    return crops.images, landmarks_to_masks(crops.keypoints, (size, size), classes=CLASSES), crops.keypoints


def load_crops(data_dir, size, margin, n_rows=None, with_conflicts=False, jitter=0.0, seed=0):
    """The ytf68 faces as (n, size, size, 3) crops, label maps, person ids and the 68 landmarks in the crops
    (:func:`read_faces`, then :func:`crop_and_paint`). ``with_conflicts`` also returns the mask of the
    rows whose image ytf68 labels twice with different points.
    """
    data = read_faces(data_dir, n_rows)
    images, masks, landmarks = crop_and_paint(data, size, margin, jitter, seed)
    out = images, masks, np.asarray(data.groups), landmarks
    return out + (_conflicting_rows(data.filenames, data.keypoints),) if with_conflicts else out


def split_by_person(groups, test_fraction, seed):
    """Boolean test mask: a random ``test_fraction`` of the people, all their images."""
    people = np.unique(groups)
    rng = np.random.RandomState(seed)
    test_people = rng.choice(people, size=max(1, int(round(test_fraction * len(people)))), replace=False)
    return np.isin(groups, test_people)


def plain_forward(module, images, batch_size, device):
    """Reference: the same network in a bare PyTorch loop on pre-normalised tensors."""
    x = torch.from_numpy(np.stack([normalize_image(im) for im in images]))
    module.eval()

    def run():
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                module(x[i:i + batch_size].to(device)).argmax(1).cpu()
    return run


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--budget-min", type=float, default=None,
                   help="training time budget in minutes (default 20; 2 with --smoke, which trains 2 epochs)")
    p.add_argument("--crop-size", type=int, default=128, help="side of the face crops in pixels")
    p.add_argument("--margin", type=float, default=0.25, help="crop margin, fraction of the face size")
    p.add_argument("--image-size", type=int, default=None,
                   help="network input side, FaceParser.image_size (default 128; 64 with --smoke)")
    p.add_argument("--width", type=float, default=None,
                   help="network channel multiplier (default 0.5; 0.125 with --smoke)")
    p.add_argument("--head-stages", type=int, nargs="+", default=[1, 2, 3, 4],
                   help="backbone stages with a head, FaceParser's heads (1 2 3 4 = heads='stride4', the default; "
                        "2 3 4 = heads='study', the reference three)")
    p.add_argument("--top-down", choices=["on", "off"], default="on",
                   help="FaceParser's top_down head at stride 2 (on: the default)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--class-weight", choices=["none", "balanced"], default="none",
                   help="balanced: weigh each class's pixels in the OHEM loss by 1/sqrt(its pixel frequency in the "
                        "training masks), scaled to a mean of 1")
    p.add_argument("--boundary-weight", type=float, default=None,
                   help="FaceParser.boundary_weight: pixels next to another label count 1 + this in the OHEM mean "
                        "(default: FaceParser's, 2.0; 0 is the study's plain OHEM loss)")
    p.add_argument("--lr", type=float, default=0.05, help="base SGD learning rate (short CPU budgets favour 0.05)")
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--scale-range", type=float, nargs=2, default=(0.9, 1.1),
                   help="FaceParser.scale_range (default 0.9 1.1, the protocol of every committed run, best on crops "
                        "framed alike; FaceParser defaults to 0.75 1.25, which holds up better on crops framed by a "
                        "detector: --test-jitter)")
    p.add_argument("--max-epochs", type=int, default=None, help="fix the epochs instead of fitting the budget")
    p.add_argument("--device", default="cpu")
    p.add_argument("--num-workers", type=int, default=0, help="FaceParser.num_workers (augmentation workers)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-train", type=int, default=None, help="subsample the training images (smoke: 64)")
    p.add_argument("--max-test", type=int, default=None, help="subsample the test images (smoke: 16)")
    p.add_argument("--save", default=None, help="also save the fitted parser there (skkp.save)")
    p.add_argument("--load", default=None,
                   help="score a parser saved by an earlier run (--save) instead of training one; give the "
                        "--seed, --duplicates and crop options of that run (the same split); its train_s is then the sum of "
                        "the saved epochs' durations")
    p.add_argument("--duplicates", choices=["keep", "drop"], default="keep",
                   help="rows of images ytf68 labels twice with different points: keep (the standard protocol) "
                        "or drop them from training and test (the unique rows are scored either way)")
    p.add_argument("--test-jitter", type=float, default=0.0,
                   help="cut the held-out crops moved by up to this fraction of the face box and scaled by up to "
                        "1 +- twice it (as a face detector's boxes would frame them; crop_faces' jitter), the label "
                        "maps painted from the moved landmarks; training crops stay unjittered (default 0)")
    add_threads_option(p)
    args = p.parse_args(argv)
    set_threads(args)
    if args.image_size is None:
        args.image_size = 64 if args.smoke else 128
    if args.width is None:
        args.width = 0.125 if args.smoke else 0.5

    data_dir = data_dir_or_none()
    if data_dir is None:
        return 0
    budget_s = 60.0 * (args.budget_min if args.budget_min is not None else (2.0 if args.smoke else 20.0))

    t0 = time.perf_counter()
    max_train = args.max_train or (64 if args.smoke else None)  # smoke: checks the pipeline runs
    max_test = args.max_test or (16 if args.smoke else None)
    # smoke: read only the first faces (whole people), enough for both subsamples
    n_rows = 2 * (max_train + max_test) if args.smoke else None
    data = read_faces(data_dir, n_rows)
    images, masks, landmarks = crop_and_paint(data, args.crop_size, args.margin)
    groups, conflicts = np.asarray(data.groups), _conflicting_rows(data.filenames, data.keypoints)
    load_s = time.perf_counter() - t0
    test = split_by_person(groups, 0.2, args.seed)
    keep = ~conflicts if args.duplicates == "drop" else np.ones(len(groups), bool)
    train_idx, test_idx = np.flatnonzero(~test & keep), np.flatnonzero(test & keep)
    rng = np.random.RandomState(args.seed)
    if max_train and max_train < len(train_idx):
        train_idx = np.sort(rng.choice(train_idx, max_train, replace=False))
    if max_test and max_test < len(test_idx):
        test_idx = np.sort(rng.choice(test_idx, max_test, replace=False))
    X_train, y_train = images[train_idx], masks[train_idx]
    X_test, y_test = images[test_idx], masks[test_idx]
    if args.test_jitter:  # the held-out faces framed afresh; the rows and people stay the same
        images_j, masks_j, landmarks = crop_and_paint(data, args.crop_size, args.margin, args.test_jitter, args.seed)
        X_test, y_test = images_j[test_idx], masks_j[test_idx]

    params = dict(image_size=args.image_size, classes=CLASSES, width=args.width, batch_size=args.batch_size,
                  heads=tuple(args.head_stages),
                  lr=args.lr, warmup_steps=args.warmup_steps, scale_range=tuple(args.scale_range),
                  device=args.device, random_state=args.seed, num_workers=args.num_workers,
                  top_down=args.top_down == "on",
                  validation_fraction=0.0)  # train on every crop, as the committed results did; test set is held out
    if args.boundary_weight is not None:
        params["boundary_weight"] = args.boundary_weight

    calibration_s = 0.0
    if args.load:
        epochs = None
    elif args.max_epochs or (args.smoke and args.budget_min is None):
        epochs = args.max_epochs or 2
    else:  # calibration: time per training image, from the second of two short epochs
        n_cal = min(len(X_train), 4 * args.batch_size)
        t0 = time.perf_counter()
        cal = FaceParser(max_epochs=2, **params).fit(X_train[:n_cal], y_train[:n_cal])
        calibration_s = time.perf_counter() - t0
        per_image_s = cal.net_.history[-1, "dur"] / n_cal
        # an upper bound: FitBudget shortens the schedule when epochs turn out slower
        epochs = max(1, int(1.5 * budget_s / (per_image_s * len(X_train))))

    limit = FitBudget(budget_s)
    net_kwargs = {"callbacks": [("fit_budget", limit)]}
    class_weight = None
    if args.class_weight == "balanced":
        freq = np.bincount(y_train.ravel(), minlength=len(CLASSES))[:len(CLASSES)] / y_train.size
        class_weight = 1.0 / np.sqrt(np.maximum(freq, 1e-6))
        class_weight = class_weight / class_weight.mean()
        probe = FaceParser(**params)
        net_kwargs["criterion__loss"] = OhemCrossEntropy(probe.ohem_thresh, probe.min_kept, IGNORE_INDEX,
                                                         boundary_weight=probe.boundary_weight,
                                                         weight=class_weight.tolist())
    if args.load:  # an earlier run's parser: its own settings, epochs and training time
        est = load(args.load)
        params.update({k: v for k, v in est.get_params().items() if k in params and k != "heads"})
        epochs = len(est.history_)
        train_s = float(np.sum(est.history_[:, "dur"]))
        limit.hit_, limit.replans_ = None, 0
    else:
        est = FaceParser(max_epochs=epochs, verbose=1, net_kwargs=net_kwargs, **params)
        t0 = time.perf_counter()
        est.fit(X_train, y_train)
        train_s = time.perf_counter() - t0

    if args.save:  # without the budget callback, which is no parameter the safe format holds
        save(est.set_params(net_kwargs=None), args.save)
    pred = est.predict(X_test)
    report = parsing_report(y_test, pred, list(CLASSES))
    # test-time flip: logits of each crop averaged with its mirror image's (mirrored back, l_/r_ swapped)
    flip_pred = est.predict(X_test, flip_average=True)
    flip_report = parsing_report(y_test, flip_pred, list(CLASSES))
    # the test rows whose image ytf68 labels once (the others are pairs naming one image with two
    # different sets of points, at most one of which can match the image)
    unique = ~conflicts[test_idx]
    unique_report = parsing_report(y_test[unique], pred[unique], list(CLASSES))
    unique_flip = parsing_report(y_test[unique], flip_pred[unique], list(CLASSES))
    prior = np.apply_along_axis(lambda v: np.bincount(v, minlength=len(CLASSES)).argmax(), 0,
                                y_train.reshape(len(y_train), -1)).reshape(y_train.shape[1:])
    baseline = parsing_report(y_test, np.broadcast_to(prior, y_test.shape), list(CLASSES))
    # issue 5's real-face check: edge points of the predicted maps against the annotated contours
    edges_pred = edge_errors(list(pred), landmarks[test_idx], classes=CLASSES)
    edges_truth = edge_errors(list(y_test), landmarks[test_idx], classes=CLASSES)

    # diagnostics: each head alone (finest first) against their sum
    module = est.net_.module_.eval()
    S, crop = args.image_size, args.crop_size
    x = torch.from_numpy(np.stack([normalize_image(cv2.resize(im, (S, S), interpolation=cv2.INTER_AREA
                                                              if S < crop else cv2.INTER_LINEAR))
                                   for im in X_test]))
    head_labels = {}
    with torch.no_grad():
        for i in range(0, len(x), 32):
            for k, o in enumerate(module.head_logits(x[i:i + 32].to(est.net_.device))):
                o = torch.nn.functional.interpolate(o, size=(crop, crop), mode="bilinear", align_corners=False)
                head_labels.setdefault(k, []).append(o.argmax(1).cpu().numpy())
    head_f1 = [parsing_report(y_test, np.concatenate(h), list(CLASSES))["mean_f1"] for h in head_labels.values()]

    n_speed = min(len(X_test), 64)
    speed = timeit(lambda: est.predict(X_test[:n_speed]), repeats=args.repeats)
    ref = timeit(plain_forward(est.net_.module_, X_test[:n_speed], args.batch_size, est.net_.device),
                 repeats=args.repeats)

    history = est.net_.history
    results = {
        "benchmark": "parser_ytf68",
        "smoke": bool(args.smoke),
        "metadata": metadata(est.device_),
        "config": {**{k: v for k, v in params.items() if k not in ("classes", "heads")}, "classes": list(CLASSES),
                   "crop_size": args.crop_size, "margin": args.margin, "test_jitter": args.test_jitter,
                   "budget_s": budget_s,
                   "class_weight": None if class_weight is None else dict(zip(CLASSES, class_weight.round(3).tolist())),
                   "boundary_weight": est.boundary_weight, "duplicates": args.duplicates,
                   "loaded_from": args.load,
                   "head_stages": list(est.head_stages_)},
        "data": {"n_train": int(len(X_train)), "n_test": int(len(X_test)),
                 "people_train": int(len(np.unique(groups[train_idx]))),
                 "people_test": int(len(np.unique(groups[test_idx]))), "load_s": load_s},
        "training": {"epochs_planned": int(epochs), "epochs_done": sum("train_loss" in row for row in history),
                     "stopped_by_budget": None if limit.hit_ is None else bool(limit.hit_),
                     "schedule_shortened": limit.replans_ > 0, "train_s": train_s, "calibration_s": calibration_s,
                     "train_loss": [row["train_loss"] for row in history if "train_loss" in row]},
        "quality": {"mean_f1_no_background": report["mean_f1"], "mean_iou": report["mean_iou"],
                    "pixel_accuracy": report["pixel_accuracy"],
                    "per_class_f1": {k: v["f1"] for k, v in report["per_class"].items()},
                    "target_mean_f1": TARGET_MEAN_F1, "target_met": bool(report["mean_f1"] >= TARGET_MEAN_F1),
                    "head_alone_mean_f1": head_f1,
                    "flip_average": {"mean_f1_no_background": flip_report["mean_f1"],
                                     "mean_iou": flip_report["mean_iou"],
                                     "per_class_f1": {k: v["f1"] for k, v in flip_report["per_class"].items()}},
                    "unique_rows": {"n_test": int(unique.sum()), "mean_f1_no_background": unique_report["mean_f1"],
                                    "mean_iou": unique_report["mean_iou"],
                                    "per_class_f1": {k: v["f1"] for k, v in unique_report["per_class"].items()},
                                    "flip_average_mean_f1_no_background": unique_flip["mean_f1"]},
                    "prior_baseline_mean_f1": baseline["mean_f1"], "prior_baseline_mean_iou": baseline["mean_iou"]},
        "edge_points_held_out": {"from_face_parser_predictions": edges_pred,
                                 "from_landmark_masks": edges_truth},
        "speed": {"n_images": n_speed, "predict": speed, "images_per_s": n_speed / speed["median_s"],
                  "plain_torch_images_per_s": n_speed / ref["median_s"],
                  "predict_over_plain_time_ratio": speed["median_s"] / ref["median_s"]},
    }
    write_results(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
