"""Shared helpers for the benchmark scripts: metadata, timing, JSON output.

Every script takes ``--smoke`` (tiny sizes, for CI) and ``--json PATH``.
Timings: a warm-up call, then the median and spread of repeats.
"""
import argparse
import contextlib
import csv
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Benchmarks measure the skkp of the checkout they are in (another installed copy may differ from
#: the commit that metadata() records), so its root comes first on the import path.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: ytf68's folder: ``$SKKP_YTF68`` where set (e.g. a copy on another machine), else ../shared/data/ytf68.
YTF68_DIR = Path(os.environ.get("SKKP_YTF68") or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ytf68")


def parser(description):
    """An argparse parser with the common ``--smoke``, ``--json`` and ``--repeats`` options."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for CI: checks the script runs")
    p.add_argument("--json", default=None, help="where to write the results (default: print only)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats after one warm-up")
    return p


def add_threads_option(p):
    """Add ``--threads`` (torch intra-op threads) to the parser ``p``; see :func:`set_threads`."""
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's; 1 with --smoke)")
    return p


def set_threads(args):
    """Use ``args.threads`` torch threads, or one with ``--smoke`` (tiny networks run fastest on one
    thread, and more threads crawl on a busy CI machine); else leave torch's default."""
    if args.threads or args.smoke:
        import torch
        torch.set_num_threads(args.threads or 1)


@contextlib.contextmanager
def ytf68_csv(data_dir, n_rows=None):
    """Path of ytf68's ``keypoints.csv``; with ``n_rows``, of a temporary copy of its first rows.

    The copy keeps whole people: it holds the header and the first rows of the file
    until at least ``n_rows`` rows are in, then the rest of the last person's frames
    (rows of one person are contiguous in the file), so a split by person still
    sees every frame of a person on one side. Images stay in ``data_dir/images``.
    For ``--smoke``: the readers then load only those rows' images.
    """
    csv_path = Path(data_dir) / "keypoints.csv"
    if n_rows is None:
        yield csv_path
        return
    from skkp.datasets import person_id

    with open(csv_path, newline="") as f:
        reader = csv.reader(f)
        rows = [next(reader)]
        for row in reader:
            if not row:
                continue
            if len(rows) > n_rows and person_id(row[0]) != person_id(rows[-1][0]):
                break
            rows.append(row)
    with tempfile.TemporaryDirectory(prefix="skkp-ytf68-") as tmp:
        subset = Path(tmp) / "keypoints.csv"
        with open(subset, "w", newline="") as f:
            csv.writer(f).writerows(rows)
        yield subset


def epochs_table(spec):
    """An ``--epochs`` value ``arch=N,...`` as ``{arch: N}``, in its order."""
    return {arch: int(n) for arch, n in (item.split("=") for item in spec.split(",") if item)}


def data_dir_or_none():
    """ytf68's folder (``$SKKP_YTF68`` or ../shared/data/ytf68), or None after saying it is absent."""
    data_dir = Path(os.environ.get("SKKP_YTF68") or YTF68_DIR)  # read at call time (tests set it)
    if not (data_dir / "keypoints.csv").is_file():
        print(f"ytf68 not found at {data_dir}; skipping (set SKKP_YTF68 to its folder).")
        return None
    return data_dir


def person_split(data_dir, n_rows=None, gray=False):
    """``(data, groups, train, test)``: ytf68 (its first ``n_rows`` faces with ``n_rows``, see
    :func:`ytf68_csv`) split 80/20 by person as every ytf68 benchmark does (GroupShuffleSplit,
    test_size=0.2, random_state=0)."""
    import numpy as np
    from sklearn.model_selection import GroupShuffleSplit

    from skkp.datasets import load_landmarks_csv

    with ytf68_csv(data_dir, n_rows) as csv_path:
        data = load_landmarks_csv(csv_path, Path(data_dir) / "images", gray=gray)
    groups = np.asarray(data.groups)
    train, test = next(GroupShuffleSplit(1, test_size=0.2, random_state=0).split(groups, groups=groups))
    return data, groups, train, test


#: How the splits of :func:`person_split` are described in the result files.
PERSON_SPLIT = "GroupShuffleSplit by person, test_size=0.2, random_state=0"


def add_table_option(p, page):
    """``--table JSON``: print the markdown a docs page quotes from a result file (see :func:`print_table`)."""
    p.add_argument("--table", default=None, metavar="JSON",
                   help=f"print the markdown table of {page} from a result file, and exit")
    return p


def print_table(path, summary_lines):
    """Print ``summary_lines(result)`` for the result file ``path``; returns 0 (an exit code)."""
    print("\n".join(summary_lines(json.loads(Path(path).read_text()))))
    return 0


def ytf68_run(args, summary_lines):
    """The start of a ytf68 benchmark with ``--table``: None after printing the docs table
    (:func:`print_table`) or saying the data are absent; else ytf68's folder, with the torch
    threads set (:func:`set_threads`)."""
    if args.table:
        print_table(args.table, summary_lines)
        return None
    data_dir = data_dir_or_none()
    if data_dir is not None:
        set_threads(args)
    return data_dir


def _git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def metadata(device="cpu"):
    """Machine, versions and time of the run."""
    import numpy
    import sklearn
    import torch
    import skkp

    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "versions": {"skkp": skkp.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
                     "sklearn": sklearn.__version__},
        "device": str(device),
        "argv": sys.argv[1:],
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        meta["gpu"] = torch.cuda.get_device_name(0)
    try:
        import cv2
        meta["versions"]["opencv"] = cv2.__version__
    except ImportError:
        pass
    return meta


def timeit(fn, repeats=5, warmup=1):
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times.

    Returns a dict with the median, min, max and all times in seconds.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "times_s": times}


def write_results(results, path):
    """Print ``results`` as JSON and write it to ``path`` when given."""
    text = json.dumps(results, indent=2, default=float)
    print(text)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")


# ----------------------------------------------------------------------------- the plain PyTorch reference
def synchronize(device):
    """Wait for the work queued on a CUDA ``device`` (before reading a clock); nothing elsewhere."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def plain_train(net, loss_fn, optimizer, loader, epochs, device="cpu", amp_dtype=None, scheduler=None):
    """The reference skkp's ``fit`` is compared with: a minimal PyTorch training loop.

    ``net`` (already on ``device``) trains ``epochs`` passes over ``loader``: non-blocking copies of
    the batches, the forward pass under autocast in ``amp_dtype`` (None: float32) with the loss on
    float32 outputs, a ``GradScaler`` for float16, and ``scheduler.step()`` after every batch when
    given. Nothing is read back per batch. Returns the seconds of training (the device is
    synchronised before the clock stops).
    """
    import torch

    device_type = torch.device(str(device)).type
    scaler = torch.amp.GradScaler(device_type) if amp_dtype == torch.float16 else None
    net.train()
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            optimizer.zero_grad()
            if amp_dtype is None:
                loss = loss_fn(net(xb), yb)
            else:
                with torch.autocast(device_type, dtype=amp_dtype):
                    out = net(xb)
                out = tuple(o.float() for o in out) if isinstance(out, (tuple, list)) else out.float()
                loss = loss_fn(out, yb)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            if scheduler is not None:
                scheduler.step()
    synchronize(device)
    return time.perf_counter() - t0


def plain_predict(net, X, batch_size, device="cpu", amp_dtype=None):
    """Seconds for the network alone to run over the float32 array ``X`` in evaluation mode,
    ``batch_size`` at a time, outputs left on the device (the reference for predict speed)."""
    import torch

    device_type = torch.device(str(device)).type
    net.eval()
    synchronize(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(X), batch_size):
            xb = torch.from_numpy(X[i:i + batch_size]).to(device, non_blocking=True)
            if amp_dtype is None:
                net(xb)
            else:
                with torch.autocast(device_type, dtype=amp_dtype):
                    net(xb)
    synchronize(device)
    return time.perf_counter() - t0
