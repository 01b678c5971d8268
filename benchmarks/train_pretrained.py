"""Train the models shipped in skkp/pretrained/ on ytf68, and score the same recipe on held-out people.

    python benchmarks/train_pretrained.py --split   # the recipe on the 250/63 person split: held-out scores (JSON)
    python benchmarks/train_pretrained.py --all     # the shipped models, on every person of ytf68
    python benchmarks/train_pretrained.py --smoke   # tiny sizes, for the tests

Crops: 96x96 gray, the landmark-extent box with margin 0.25 (5% position / 10% scale jitter), as in
bench_ytf68_keypoints.py. Recipe: NoseKeypointRegressor(schema=..., random_state=0), the defaults.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import YTF68_DIR, metadata, set_threads, ytf68_csv  # noqa: E402

import skkp  # noqa: E402
from skkp.datasets import crop_faces, load_landmarks_csv, make_noses  # noqa: E402
from skkp.metrics import mean_absolute_error_px, normalized_mean_error  # noqa: E402
from skkp.schemas import IBUG68_NOSE  # noqa: E402

MODELS = {"ibug68_face": ("ibug68", None), "ibug68_nose": ("ibug68_nose", list(IBUG68_NOSE))}
SHIPPED = Path(__file__).resolve().parents[1] / "skkp" / "pretrained" / "models"


def crops(data, idx, seed):
    c = crop_faces([data.images[i] for i in idx], keypoints=data.keypoints[idx], size=96, margin=0.25, gray=True,
                   jitter=0.05, random_state=np.random.RandomState(seed))
    return c.images, c.keypoints


def columns(points):
    return slice(None) if points is None else np.ravel([[2 * i, 2 * i + 1] for i in points])


def probe_images():
    """Fixed synthetic inputs on which each shipped model's predictions are recorded (no real face is stored)."""
    return make_noses(3, image_size=96, random_state=0)[0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", action="store_true", help="score the recipe on held-out people")
    p.add_argument("--all", action="store_true", help="train the shipped models on every person")
    p.add_argument("--smoke", action="store_true", help="tiny sizes; writes into a temporary folder")
    p.add_argument("--models", nargs="+", default=sorted(MODELS), choices=sorted(MODELS))
    p.add_argument("--json", default=None, help="where --split writes its scores")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if not (YTF68_DIR / "keypoints.csv").is_file():
        print(f"ytf68 not found at {YTF68_DIR}; nothing to do")
        return 0
    set_threads(args)
    extra = dict(max_epochs=1, image_size=32) if args.smoke else {}
    with ytf68_csv(YTF68_DIR, 120 if args.smoke else None) as csv_path:
        data = load_landmarks_csv(csv_path, YTF68_DIR / "images", gray=True)
    groups = np.asarray(data.groups)
    out = {"meta": metadata(), "setup": {"n_images": len(groups), "n_people": len(set(groups)),
                                         "crop": "96x96 gray, margin 0.25, jitter 5% position / 10% scale"},
           "models": {}}
    if args.split:
        from sklearn.model_selection import GroupShuffleSplit

        train, test = next(GroupShuffleSplit(1, test_size=0.2, random_state=0).split(groups, groups=groups))
        X_tr, y_tr = crops(data, train, 0)
        X_te, y_te = crops(data, test, 1)
        eyes = np.linalg.norm(y_te[:, 72:74] - y_te[:, 90:92], axis=1)
        out["setup"]["people_train_test"] = [len(set(groups[train])), len(set(groups[test]))]
        for name in args.models:
            schema, points = MODELS[name]
            t0 = time.perf_counter()
            model = skkp.NoseKeypointRegressor(schema=schema, random_state=0, **extra).fit(X_tr, y_tr[:, columns(points)])
            pred = model.predict(X_te)
            nose = pred[:, columns(IBUG68_NOSE)] if points is None else pred
            out["models"][name] = {
                "fit_seconds": time.perf_counter() - t0, "epochs": len(model.history_),
                "mae_px": mean_absolute_error_px(y_te[:, columns(points)], pred),
                "nme": normalized_mean_error(y_te[:, columns(points)], pred, normalizer=eyes),
                "nose_mae_px": mean_absolute_error_px(y_te[:, columns(IBUG68_NOSE)], nose),
                "nose_nme": normalized_mean_error(y_te[:, columns(IBUG68_NOSE)], nose, normalizer=eyes)}
            print(name, out["models"][name], flush=True)
        text = json.dumps(out, indent=2)
        if args.json:
            Path(args.json).write_text(text + "\n")
        print(text)
    if args.all:
        folder = Path(tempfile.mkdtemp()) if args.smoke else SHIPPED
        folder.mkdir(parents=True, exist_ok=True)
        X, y = crops(data, np.arange(len(groups)), 0)
        for name in args.models:
            schema, points = MODELS[name]
            t0 = time.perf_counter()
            model = skkp.NoseKeypointRegressor(schema=schema, random_state=0, **extra).fit(X, y[:, columns(points)])
            path = skkp.save(model, folder / f"{name}.skkp")
            card = {"name": name, "schema": schema, "n_images": len(groups), "n_people": len(set(groups)),
                    "fit_seconds": time.perf_counter() - t0, "epochs": len(model.history_),
                    "command": "python benchmarks/train_pretrained.py --all", "meta": metadata(),
                    "probe_predictions": model.predict(probe_images()).round(4).tolist()}
            (folder / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
            print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) in {card['fit_seconds']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
