"""Video: jitter of the points on a still face, and error on a moving one, with and without smoothing.

Test videos are built from ytf68 frames of held-out people (GroupShuffleSplit by person,
test_size=0.2, random_state=0; the first frame of each of ``--people`` people):

- ``still``: the frame repeated for ``--frames`` frames at 30 fps, each with its own sensor
  noise (Gaussian, sigma 2 grey levels) and written to an MJPG AVI file and read back with
  :func:`skkp.video.read_video` (compression noise as in a real file). The face does not
  move, so every movement of the points is jitter: the mean frame-to-frame movement of the
  68 points, in pixels and over the outer-eye distance (NME units).
- ``moving``: the same frame swaying sideways, ``x(t) = 8 px * sin(2 pi 0.5 Hz t)`` (up to
  25 px/s, sub-pixel shifts by ``cv2.warpAffine``), through the same codec. Its true points
  are the labels moved along, so the error is measured (NME): the lag a smoother adds.

The model is the shipped ``ibug68_face`` in a ``FaceKeypointRegressor`` whose box calibration is
fitted on frames of the training people; it was trained on every ytf68 person, so the
numbers compare smoothing settings, not how well the model generalises. The tracker is
:class:`skkp.video.FaceTracker` (detection on the first frame, then each crop framed on the
previous frame's points) without smoothing and with :class:`skkp.video.OneEuroFilter` at the
settings listed; "(the default)" marks ``skkp predict VIDEO``'s. Medians over the people.

Run:  python benchmarks/bench_video.py --threads 2 --json benchmarks/results/video.json
Docs: python benchmarks/bench_video.py --table benchmarks/results/video.json
CI:   python benchmarks/bench_video.py --smoke
"""
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (PERSON_SPLIT, add_table_option, add_threads_option, metadata, parser,  # noqa: E402
                     person_split, ytf68_run, write_results)

from skkp.video import OneEuroFilter, read_video, track_video  # noqa: E402

FPS = 30.0
#: smoothing settings compared: (label, OneEuroFilter parameters or None)
SETTINGS = [("none", None)] + [(f"one-euro min_cutoff={c:g} beta={b:g}", {"min_cutoff": c, "beta": b})
                               for c, b in ((1.0, 0.0), (1.0, 2.0), (1.0, 5.0), (1.0, 10.0), (0.5, 10.0),
                                            (0.25, 10.0), (0.5, 20.0), (1.0, 20.0), (2.0, 10.0))]


def make_video(frame, n, seed, sway_px=0.0, folder=None):
    """``n`` RGB frames of ``frame`` with noise (and a sideways sway), through an MJPG file; the x shifts."""
    rng = np.random.RandomState(seed)
    shifts = sway_px * np.sin(2 * np.pi * 0.5 * np.arange(n) / FPS)
    h, w = frame.shape[:2]
    path = Path(folder) / f"video_{seed}_{int(sway_px)}.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (w, h))
    for dx in shifts:
        moved = cv2.warpAffine(frame, np.float32([[1, 0, dx], [0, 1, 0]]), (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        noisy = np.clip(moved + rng.normal(0, 2.0, moved.shape), 0, 255).astype(np.uint8)
        writer.write(cv2.cvtColor(noisy, cv2.COLOR_RGB2BGR))
    writer.release()
    frames, fps = read_video(path)
    return list(frames), shifts


def run(model, frames, smoothing, detect_every):
    smoother = None if smoothing is None else OneEuroFilter(**smoothing)
    t0 = time.perf_counter()
    found = list(track_video(model, frames, FPS, smoother=smoother, detect_every=detect_every))
    seconds = time.perf_counter() - t0
    return np.array([f.points for f in found]), [f.status for f in found], seconds / len(frames)


def main(argv=None):
    p = add_threads_option(parser(__doc__.splitlines()[0]))
    p.add_argument("--people", type=int, default=20, help="held-out people (one video each)")
    p.add_argument("--frames", type=int, default=60, help="frames per video (30 fps)")
    p.add_argument("--detect-every", type=int, default=30)
    add_table_option(p, "docs/photos.md")
    args = p.parse_args(argv)
    data_dir = ytf68_run(args, summary_lines)
    if data_dir is None:
        return 0
    settings_run = SETTINGS
    if args.smoke:
        args.people, args.frames, settings_run = 2, 8, SETTINGS[::2]
    from sklearn.frozen import FrozenEstimator

    from skkp.detection import FaceDetector
    from skkp.faces import FaceKeypointRegressor
    from skkp.pretrained import load_model

    data, groups, train, test = person_split(data_dir, 60 if args.smoke else None)
    model = FaceKeypointRegressor(FrozenEstimator(load_model("ibug68_face", device="cpu")),
                                  detector=FaceDetector("skimage"), max_calibration_images=12 if args.smoke else 200,
                                  random_state=0)
    model.fit([data.images[i] for i in train], data.keypoints[train])
    firsts = [test[groups[test] == person][0] for person in sorted(set(groups[test]))][:args.people]
    per_video = {label: {"still_jitter_px": [], "still_jitter_nme": [], "moving_error_nme": [],
                         "moving_jitter_nme": [], "frames_without_face": 0, "ms_per_frame": []}
                 for label, _ in settings_run}
    with tempfile.TemporaryDirectory(prefix="skkp-video-") as folder:
        for k, i in enumerate(firsts):
            frame, labels = data.images[i], data.keypoints[i].reshape(68, 2)
            eyes = float(np.linalg.norm(labels[45] - labels[36]))
            still, _ = make_video(frame, args.frames, seed=k, folder=folder)
            moving, shifts = make_video(frame, args.frames, seed=1000 + k, sway_px=8.0, folder=folder)
            truth = labels[None] + np.c_[shifts, np.zeros_like(shifts)][:, None, :]
            for label, smoothing in settings_run:
                row = per_video[label]
                pts, status, s_per_frame = run(model, still, smoothing, args.detect_every)
                pts = pts.reshape(len(pts), 68, 2)
                row["frames_without_face"] += status.count("none")
                step = np.linalg.norm(np.diff(pts, axis=0), axis=2).mean(axis=1)  # per frame pair, NaN if lost
                row["still_jitter_px"].append(float(np.nanmean(step)))
                row["still_jitter_nme"].append(float(np.nanmean(step)) / eyes)
                row["ms_per_frame"].append(1000 * s_per_frame)
                pts, status, _ = run(model, moving, smoothing, args.detect_every)
                pts = pts.reshape(len(pts), 68, 2)
                row["frames_without_face"] += status.count("none")
                err = np.linalg.norm(pts - truth, axis=2).mean(axis=1) / eyes
                row["moving_error_nme"].append(float(np.nanmean(err)))
                wobble = np.diff(pts - truth, axis=0)  # movement that is not the face's
                row["moving_jitter_nme"].append(float(np.nanmean(np.linalg.norm(wobble, axis=2).mean(axis=1))) / eyes)
            print(k, {label: round(per_video[label]["still_jitter_px"][-1], 3) for label, _ in settings_run}, flush=True)
    settings = []
    for label, smoothing in settings_run:
        row = per_video[label]
        settings.append({"label": label, "one_euro": smoothing,
                         **{f"{key}_median": float(np.nanmedian(row[key])) for key in
                            ("still_jitter_px", "still_jitter_nme", "moving_error_nme", "moving_jitter_nme",
                             "ms_per_frame")},
                         "frames_without_face": row["frames_without_face"], "per_video": row})
    none = settings[0]
    for s in settings:
        s["still_jitter_ratio_to_none"] = s["still_jitter_px_median"] / none["still_jitter_px_median"]
    eyes_px = [float(np.linalg.norm(data.keypoints[i, 90:92] - data.keypoints[i, 72:74])) for i in firsts]
    out = {"benchmark": "video", "meta": metadata("cpu"),
           "settings": {"people": len(firsts), "frames": args.frames, "fps": FPS, "detect_every": args.detect_every,
                        "noise": "Gaussian sigma 2 grey levels per frame, then MJPG (OpenCV default quality)",
                        "sway": "x(t) = 8 px * sin(2 pi 0.5 Hz t)", "outer_eye_px_median": float(np.median(eyes_px)),
                        "split": PERSON_SPLIT,
                        "model": "ibug68_face (shipped; trained on every ytf68 person) with a calibration fitted on "
                                 "frames of the training people", "calibration": model.calibration_.to_dict(),
                        "smoke": args.smoke},
           "results": settings}
    write_results(out, args.json)
    return 0


DOCS_START = "<!-- video results: generated by python benchmarks/bench_video.py --table -->"
DOCS_END = "<!-- end of video results -->"


def summary_lines(result):
    """The markdown table docs/photos.md quotes, from a result of this script."""
    s, meta = result["settings"], result["meta"]
    lines = ["| smoothing | jitter on a still face, px | jitter, % of eye distance | vs none "
             "| error on the swaying face (NME) | ms per frame |", "|---|---|---|---|---|---|"]
    defaults = OneEuroFilter()
    for r in result["results"]:
        default = r["one_euro"] is not None and all(getattr(defaults, k) == v for k, v in r["one_euro"].items())
        lines.append(f"| {r['label']}{' (the default)' if default else ''} | {r['still_jitter_px_median']:.3f} | {100 * r['still_jitter_nme_median']:.2f}% "
                     f"| {r['still_jitter_ratio_to_none']:.2f}x | {100 * r['moving_error_nme_median']:.2f}% "
                     f"| {r['ms_per_frame_median']:.1f} |")
    lines += ["", f"*Medians over {s['people']} videos of {s['frames']} frames at {s['fps']:.0f} fps, one per held-out "
              f"person (outer-eye distance {s['outer_eye_px_median']:.0f} px); {s['noise']}; sway {s['sway']}; "
              f"run {meta['date']} at commit `{meta['commit']}` on {meta['torch_threads']} torch thread(s).*"]
    return lines


if __name__ == "__main__":
    sys.exit(main())
