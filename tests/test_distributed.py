"""Data-parallel training (skkp.distributed): real 2-process gloo jobs on loopback started by torchrun,
and the one-process case, which must be the plain fit bit for bit."""
import csv
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import skkp
from skkp import FaceParser, NoseKeypointRegressor
from skkp.datasets import make_faces, make_noses
from skkp.distributed import TORCHRUN_VARIABLES, ShardedBatchSampler, data_parallel

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args, cwd, timeout=150):
    """``python -m torch.distributed.run --nproc_per_node=2 ... ARGS`` on loopback, one thread per process,
    importing this checkout's skkp; the whole process group is killed if it overruns ``timeout``."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for name in TORCHRUN_VARIABLES:
        env.pop(name, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", *args]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM first: torchrun then stops its workers, which run in sessions of their own (a SIGKILL of
        # torchrun's group would leave them running, holding the pipes open)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = "", ""
        pytest.fail(f"torchrun did not finish in {timeout} s:\n{err[-3000:]}")
    return proc.returncode, out, err


WORKER = textwrap.dedent("""
    import json, pickle, runpy, sys
    import numpy as np
    import skkp
    from skkp import NoseKeypointRegressor
    from skkp.datasets import make_noses
    from skkp.distributed import data_parallel

    out = sys.argv[1]
    X, y = make_noses(80, image_size=32, random_state=0)
    params = dict(architecture="cnn", image_size=32, max_epochs=2, batch_size=16, device="cpu")
    errors = {}
    with data_parallel() as dp:
        # random_state=None: every process must take process 0's seed (the data check compares them)
        model = NoseKeypointRegressor(**params, random_state=None, early_stopping=3).fit(X, y)
        model.partial_fit(X[:40], y[:40])
        for name, extra, n in (("batch_size", {"batch_size": 2}, 80), ("data", {}, 60 + 10 * dp.rank)):
            try:
                NoseKeypointRegressor(**{**params, "random_state": 0, **extra}).fit(X[:n], y[:n])
            except ValueError as exc:
                errors[name] = str(exc)
    state = {k: v.numpy() for k, v in model.net_.module_.state_dict().items()}
    np.savez(f"{out}/rank{dp.rank}.npz", predictions=model.predict(X[:8]), **state)
    history = [{k: v for k, v in row.items() if k not in ("batches", "dur")} for row in model.history_]
    json.dump({"history": history, "errors": errors, "world_size": dp.world_size, "backend": dp.backend,
               "device": model.device_}, open(f"{out}/rank{dp.rank}.json", "w"))
    if dp.rank == 0:
        skkp.save(model, f"{out}/model.skkp")
        pickle.dump(model, open(f"{out}/model.pkl", "wb"))
        print("API PART DONE", flush=True)
    # then, in the same processes (a second data_parallel block), what `-m skkp train ...` runs
    sys.argv = ["skkp", "train", "--images", f"{out}/images", "--landmarks", f"{out}/landmarks.csv",
                "--model", f"{out}/cli.skkp", "--architecture", "cnn", "--image-size", "32", "--epochs", "2",
                "--batch-size", "8"]
    runpy.run_module("skkp", run_name="__main__", alter_sys=True)
""")


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """One torchrun job of two processes: the Python API, then the command line (as ``torchrun ... -m skkp
    train``) in a second data_parallel block of the same processes. ``(folder, stdout, stderr)``."""
    import cv2

    tmp = tmp_path_factory.mktemp("ddp")
    images, points = make_noses(40, image_size=32, random_state=0)
    (tmp / "images").mkdir()
    rows = []
    for i, (img, pts) in enumerate(zip(images, points)):
        name = f"Person_{i // 4}_{i % 4}.png"
        cv2.imwrite(str(tmp / "images" / name), img)
        rows.append([name] + [f"{v:.3f}" for v in pts])
    with open(tmp / "landmarks.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["image"] + [f"{a}{k}" for k in range(7) for a in "xy"]] + rows)
    (tmp / "worker.py").write_text(WORKER)
    code, out, err = _torchrun([str(tmp / "worker.py"), str(tmp)], cwd=tmp)
    assert code == 0, err[-3000:]
    return tmp, out, err


def test_two_processes_train_one_model(job):
    import json

    tmp, out, _ = job
    assert out.count("API PART DONE") == 1
    ranks = [json.loads((tmp / f"rank{r}.json").read_text()) for r in (0, 1)]
    weights = [np.load(tmp / f"rank{r}.npz") for r in (0, 1)]
    assert ranks[0]["world_size"] == 2 and ranks[0]["backend"] == "gloo" and ranks[0]["device"] == "cpu"
    # the same fitted model on both processes, with the bare network's names
    assert weights[0].files == weights[1].files
    assert not any(k.startswith("module.") for k in weights[0].files)
    for key in weights[0].files:
        np.testing.assert_array_equal(weights[0][key], weights[1][key], err_msg=key)
    # one history: process 0's validation, the mean training loss; 2 epochs of fit + 1 of partial_fit
    assert ranks[0]["history"] == ranks[1]["history"]
    history = ranks[0]["history"]
    assert len(history) == 3 and all(np.isfinite(row["train_loss"]) for row in history)
    assert all(np.isfinite(row["valid_mae_px"]) for row in history[:2]) and "valid_loss" not in history[2]
    # 72 training samples in global batches of 16: 4 steps of 8 samples per process, then one of 4;
    # partial_fit's 40: 2 steps of 8, then one of 4
    assert [row["train_batch_count"] for row in history] == [5, 5, 3]
    # bad input fails alike in both processes, before training (no hang)
    for rank in ranks:
        assert "batch_size=2 gives 1 sample per process" in rank["errors"]["batch_size"]
        assert "different training data" in rank["errors"]["data"] and "samples" in rank["errors"]["data"]
    # the saved model is a plain estimator: it loads and predicts here, in one process
    X, _ = make_noses(80, image_size=32, random_state=0)
    for model in (skkp.load(tmp / "model.skkp"), pickle.loads((tmp / "model.pkl").read_bytes())):
        assert type(model.net_.module_).__name__ == "PlainCNN"
        np.testing.assert_array_equal(model.predict(X[:8]), weights[0]["predictions"])


def test_the_command_line_trains_and_saves_once(job):
    tmp, out, _ = job
    assert out.count("Trained data-parallel by 2 processes (gloo") == 1  # process 0 reports, once
    assert out.count("cli.skkp.") == 1 and out.count("  epoch ") == 1  # one save, one log
    model = skkp.load(tmp / "cli.skkp")
    assert model.n_keypoints_ == 7 and len(model.history_) == 2
    images, _ = make_noses(3, image_size=32, random_state=0)
    assert model.predict(images).shape == (3, 14)


EXIT_WORKER = textwrap.dedent("""
    import atexit, sys, time
    from pathlib import Path
    from skkp.distributed import data_parallel

    out = Path(sys.argv[1])
    # registered before data_parallel's own exit handler, so it runs after it (atexit is last in, first out)
    atexit.register(lambda: (out / f"exit{dp.rank}").write_text(repr(time.time())))
    with data_parallel() as dp:
        pass
    if dp.rank == 0:  # process 0 keeps working (saving a model, say) after process 1 is done
        time.sleep(1.5)
        (out / "work0").write_text(repr(time.time()))
""")


def test_processes_wait_for_each_other_before_closing_the_group(tmp_path):
    """Closing gloo's connections while another process still held them made that process abort at exit now
    and then; the exit handler now waits at a barrier, so process 1 leaves only after process 0's work."""
    (tmp_path / "worker.py").write_text(EXIT_WORKER)
    code, _, err = _torchrun([str(tmp_path / "worker.py"), str(tmp_path)], cwd=tmp_path, timeout=60)
    assert code == 0, err[-3000:]
    work0, exit1 = (float((tmp_path / name).read_text()) for name in ("work0", "exit1"))
    assert exit1 >= work0


FAILING_WORKER = textwrap.dedent("""
    import torch
    import torch.distributed as dist
    from skkp.distributed import data_parallel

    with data_parallel() as dp:
        pass
    if dp.rank == 1:
        raise RuntimeError("process 1 fails")
    dist.all_reduce(torch.ones(1))  # process 0 waits for process 1 in a collective
""")


def test_a_failing_process_does_not_wait_for_the_others(tmp_path):
    """A process that exits on an exception closes its connections at once, so the others, blocked in a
    collective that needs it, fail too instead of hanging until the exit barrier's timeout (60 s)."""
    (tmp_path / "worker.py").write_text(FAILING_WORKER)
    t0 = time.perf_counter()
    code, _, err = _torchrun([str(tmp_path / "worker.py")], cwd=tmp_path, timeout=45)
    assert code != 0 and "process 1 fails" in err
    assert time.perf_counter() - t0 < 40


@pytest.fixture()
def one_process(monkeypatch):
    """torchrun's environment for a world of one process (this one)."""
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1"),
                        ("MASTER_PORT", str(_free_port()))):
        monkeypatch.setenv(name, value)
    yield
    if torch.distributed.is_initialized():  # data_parallel keeps the group open for later blocks
        torch.distributed.destroy_process_group()


def test_one_process_is_the_plain_fit_bit_for_bit(one_process):
    X, y = make_noses(70, image_size=32, random_state=0)
    make = lambda: NoseKeypointRegressor(architecture="cnn", image_size=32, max_epochs=3, batch_size=16,  # noqa: E731
                                         early_stopping=2, device="cpu", random_state=0)
    plain = make().fit(X, y).partial_fit(X[:32], y[:32])
    with data_parallel() as dp:
        assert (dp.rank, dp.world_size, dp.backend) == (0, 1, "gloo")
        parallel = make().fit(X, y).partial_fit(X[:32], y[:32])
    np.testing.assert_array_equal(parallel.predict(X), plain.predict(X))
    assert parallel.history_[:, "valid_loss"] == plain.history_[:, "valid_loss"]
    assert parallel.history_[:, "train_loss"] == plain.history_[:, "train_loss"]
    Xf, yf = make_faces(10, 40, random_state=0)
    make = lambda: FaceParser(image_size=32, width=0.125, max_epochs=2, batch_size=4, device="cpu",  # noqa: E731
                              random_state=0)
    plain = make().fit(Xf, yf)
    with data_parallel():  # a second block: the same process group
        parallel = make().fit(Xf, yf)
    np.testing.assert_array_equal(parallel.predict_proba(Xf), plain.predict_proba(Xf))


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("n, batch_size", [(64, 16), (70, 16), (66, 16), (7, 4), (5, 64)])
def test_each_step_splits_the_batch_of_one_process(world_size, n, batch_size):
    """Concatenated over the processes, step k holds the samples of a one-process fit's batch k (a
    shorter last batch is padded with its own first samples, or left out at one sample per process)."""
    order = list(np.random.RandomState(n).permutation(n))
    per = -(-batch_size // world_size)
    parts = [list(ShardedBatchSampler(order, per, r, world_size)) for r in range(world_size)]
    assert len({len(p) for p in parts}) == 1 and len(parts[0]) == len(ShardedBatchSampler(order, per, 0, world_size))
    assert all(len({len(p[k]) for p in parts}) == 1 for k in range(len(parts[0])))  # equal steps everywhere
    single = [order[i:i + per * world_size] for i in range(0, n, per * world_size)]
    for k, step in enumerate(zip(*parts)):
        joined = [i for part in step for i in part]
        assert set(joined) == set(single[k]) and joined[:len(single[k])] == single[k]
    dropped = len(single) - len(parts[0])
    assert dropped in (0, 1) and (not dropped or -(-len(single[-1]) // world_size) == 1)


def test_bad_input_is_a_clear_error(one_process, monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="backend must be"):
        with data_parallel(backend="mpi"):
            pass
    with pytest.raises(ValueError, match="timeout must be"):
        with data_parallel(timeout=0):
            pass
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="backend='nccl' needs GPUs"):
            with data_parallel(backend="nccl"):
                pass
    X, y = make_noses(40, image_size=32, random_state=0)
    with data_parallel():
        with pytest.raises(ValueError, match="cannot be nested"):
            with data_parallel():
                pass
        with pytest.raises(ValueError, match="checkpoint= is not supported"):
            NoseKeypointRegressor(architecture="cnn", image_size=32, max_epochs=1, device="cpu",
                                  checkpoint=tmp_path).fit(X, y)
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(ValueError, match=r"WORLD_SIZE not set\): run the script with `torchrun"):
        with data_parallel():
            pass
