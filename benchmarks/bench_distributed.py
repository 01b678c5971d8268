"""Data-parallel training: one process against two DDP processes, same model, data and epochs.

The data: nose crops of ../shared/data/ytf68 split by person (96x96 gray, as in
bench_ytf68_keypoints.py; held-out people are scored), or synthetic noses (``make_noses``) with
``--data synthetic`` or when ytf68 is absent. The model: ``NoseKeypointRegressor(image_size=64,
max_epochs=E, random_state=seed)``, the default architecture (heatmap). For each seed it is fitted

- in one process with one torch thread (this process), and
- data-parallel by ``torchrun --nproc_per_node=2`` (gloo on 127.0.0.1, one thread per process;
  this script is the worker, ``--worker``), inside ``skkp.distributed.data_parallel``; process 0
  saves the model, which is scored here.

Reported per seed and as medians: held-out MAE (pixels of the 96-px crops) and NME (outer-eye
distance) of both, the fit's wall-clock seconds (process 0's, inside the processes) and the whole
torchrun launch's, and the ratio of the fit times. The machine is shared: the load average before
and after each fit is recorded.

    python benchmarks/bench_distributed.py --json benchmarks/results/distributed.json
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import YTF68_DIR, metadata, parser, write_results

HERE = Path(__file__).resolve().parent


def load_data(kind, smoke):
    """``(X_train, y_train, X_test, y_test68 or y_test, columns, description)``."""
    if kind == "ytf68":
        from bench_ytf68_keypoints import load_split, nose_columns

        crops, people = load_split(YTF68_DIR, n_rows=200 if smoke else None)
        (X_tr, y_tr68), (X_te, y_te68) = crops["train"], crops["test"]
        if smoke:
            X_tr, y_tr68, X_te, y_te68 = X_tr[:64], y_tr68[:64], X_te[:32], y_te68[:32]
        cols = nose_columns()
        return X_tr, y_tr68[:, cols], X_te, y_te68, cols, {
            "data": "ytf68 nose points (iBUG 27-35), 96x96 gray crops, margin 0.25, jitter 5%/10%",
            "split": "GroupShuffleSplit by person, test_size=0.2, random_state=0", "people_train_test": people}
    from skkp.datasets import make_noses

    n_train, n_test = (64, 32) if smoke else (2000, 500)
    X_tr, y_tr = make_noses(n_train, image_size=96, random_state=0)
    X_te, y_te = make_noses(n_test, image_size=96, random_state=1)
    return X_tr, y_tr, X_te, y_te, None, {"data": "make_noses, 96x96, train random_state=0, test random_state=1"}


def scores(y_true, y_pred, cols):
    from skkp.metrics import mean_absolute_error_px

    if cols is None:
        return {"mae_px": mean_absolute_error_px(y_true, y_pred)}
    from bench_ytf68_keypoints import evaluate

    out = evaluate(y_true, y_pred, cols)
    return {"mae_px": out["mae_px"], "nme": out["nme"]}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fit_data_parallel(workdir, n_processes, timeout):
    """Run this script as the worker under torchrun; returns process 0's report and the launch's seconds."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n_processes}",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(Path(__file__).resolve()),
           "--worker", str(workdir)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    launch = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    report = json.loads((Path(workdir) / "report.json").read_text())
    return report, launch


def worker(workdir):
    """The torchrun side: fit inside data_parallel, process 0 saves the model and its report."""
    import torch

    import skkp
    from skkp.distributed import data_parallel

    workdir = Path(workdir)
    data = np.load(workdir / "data.npz")
    params = json.loads((workdir / "params.json").read_text())
    with data_parallel() as dp:
        model = skkp.NoseKeypointRegressor(**params)
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(data["X"], data["y"])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if dp.rank == 0:
        skkp.save(model, workdir / "model.skkp")
        (workdir / "report.json").write_text(json.dumps({
            "fit_seconds": wall, "fit_cpu_seconds_process_0": cpu, "world_size": dp.world_size,
            "backend": dp.backend, "torch_threads_per_process": torch.get_num_threads(),
            "epochs": len(model.history_), "valid_mae_px_by_epoch": [round(v, 3) for v in
                                                                     model.history_[:, "valid_mae_px"]]}))


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.set_defaults(repeats=2)
    p.add_argument("--data", choices=["ytf68", "synthetic"], default=None,
                   help="default: ytf68 when present, else synthetic")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--processes", type=int, default=2, help="DDP processes (one torch thread each)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # the torchrun side, see worker()
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.worker)

    import torch

    import skkp

    torch.set_num_threads(1)  # the single-process reference: one thread, as each DDP process
    kind = args.data or ("ytf68" if (YTF68_DIR / "keypoints.csv").is_file() else "synthetic")
    X_tr, y_tr, X_te, y_te, cols, setup = load_data(kind, args.smoke)
    epochs, size, repeats = (1, 32, 1) if args.smoke else (args.epochs, args.image_size, args.repeats)
    base = {"image_size": size, "max_epochs": epochs, "device": "cpu"}
    out = {"benchmark": "distributed", "meta": metadata(), "setup": {
        **setup, "n_train": len(X_tr), "n_test": len(X_te),
        "model": f"NoseKeypointRegressor(image_size={size}, max_epochs={epochs}, random_state=seed, device='cpu'), "
                 f"other parameters at their defaults (heatmap, batch_size 64, lr 2e-3, cosine schedule)",
        "single": "this process, torch.set_num_threads(1)",
        "data_parallel": f"python -m torch.distributed.run --nproc_per_node={args.processes} "
                         f"--master_addr=127.0.0.1 (gloo, OMP_NUM_THREADS=1), skkp.distributed.data_parallel()",
        "seeds": list(range(repeats))}}
    mean = np.broadcast_to(np.nanmean(y_tr, axis=0), (len(X_te), y_tr.shape[1]))
    out["mean_predictor"] = scores(y_te, mean, cols)
    runs = []
    with tempfile.TemporaryDirectory(prefix="skkp-bench-ddp-") as tmp:
        np.savez(Path(tmp) / "data.npz", X=X_tr, y=y_tr)
        for seed in range(repeats):
            params = dict(base, random_state=seed)
            (Path(tmp) / "params.json").write_text(json.dumps(params))
            load = os.getloadavg()[0]
            model = skkp.NoseKeypointRegressor(**params)
            t0, c0 = time.perf_counter(), time.process_time()
            model.fit(X_tr, y_tr)
            single = {"fit_seconds": time.perf_counter() - t0, "fit_cpu_seconds": time.process_time() - c0,
                      **scores(y_te, model.predict(X_te), cols), "load_average_before_after": [load,
                                                                                                os.getloadavg()[0]]}
            load = os.getloadavg()[0]
            report, launch = fit_data_parallel(tmp, args.processes, timeout=3600)
            parallel = {**report, "launch_seconds": launch,
                        **scores(y_te, skkp.load(Path(tmp) / "model.skkp").predict(X_te), cols),
                        "load_average_before_after": [load, os.getloadavg()[0]]}
            row = {"seed": seed, "single": single, "data_parallel": parallel,
                   "fit_time_ratio": parallel["fit_seconds"] / single["fit_seconds"],
                   "mae_difference_px": parallel["mae_px"] - single["mae_px"]}
            runs.append(row)
            print(json.dumps(row), flush=True)
    out["runs"] = runs
    out["median"] = {
        "single_mae_px": float(np.median([r["single"]["mae_px"] for r in runs])),
        "data_parallel_mae_px": float(np.median([r["data_parallel"]["mae_px"] for r in runs])),
        "single_fit_seconds": float(np.median([r["single"]["fit_seconds"] for r in runs])),
        "data_parallel_fit_seconds": float(np.median([r["data_parallel"]["fit_seconds"] for r in runs])),
        "data_parallel_launch_seconds": float(np.median([r["data_parallel"]["launch_seconds"] for r in runs])),
        "fit_time_ratio": float(np.median([r["fit_time_ratio"] for r in runs]))}
    if cols is not None:
        out["median"]["single_nme"] = float(np.median([r["single"]["nme"] for r in runs]))
        out["median"]["data_parallel_nme"] = float(np.median([r["data_parallel"]["nme"] for r in runs]))
    write_results(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
