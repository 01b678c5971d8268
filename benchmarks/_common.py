"""Shared helpers for the benchmark scripts: metadata, timing, JSON output.

Every script takes ``--smoke`` (tiny sizes, for CI) and ``--json PATH``.
Timings: a warm-up call, then the median and spread of repeats.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
YTF68_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ytf68"


def parser(description):
    """An argparse parser with the common ``--smoke``, ``--json`` and ``--repeats`` options."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for CI: checks the script runs")
    p.add_argument("--json", default=None, help="where to write the results (default: print only)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats after one warm-up")
    return p


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
