"""GridSearchCV over a skkp estimator on a real dask.distributed cluster (2 worker processes)."""
import os

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import joblib  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from skkp import NoseKeypointRegressor  # noqa: E402
from skkp.datasets import make_noses  # noqa: E402
from skkp.metrics import mae_px_scorer  # noqa: E402
from skkp.parallel import TorchThreads  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _search():
    return GridSearchCV(NoseKeypointRegressor(architecture="cnn", image_size=32, max_epochs=1, random_state=0,
                                              device="cpu"),
                        {"lr": [1e-3, 3e-3]}, scoring=mae_px_scorer, cv=2, n_jobs=-1)


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of two worker processes with one thread each on the loopback address, with
    TorchThreads registered; shared by this module's tests (a test that kills a worker waits for its
    replacement before it returns)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        client.register_plugin(TorchThreads())
        yield client


def test_grid_search_on_a_local_cluster_matches_one_process(client):
    import torch

    X, y = make_noses(32, image_size=32, random_state=0)
    local = _search().set_params(n_jobs=1).fit(X, y)
    client.wait_for_workers(2, timeout=60)
    assert set(client.run(torch.get_num_threads).values()) == {1}  # no oversubscription
    with joblib.parallel_backend("dask"):
        remote = _search().fit(X, y)
    assert len(client.scheduler_info()["workers"]) == 2
    for key in ("mean_test_score", "split0_test_score", "split1_test_score", "rank_test_score"):
        np.testing.assert_array_equal(remote.cv_results_[key], local.cv_results_[key])
    assert remote.best_params_ == local.best_params_
    # the refitted model came back to the client and predicts here
    np.testing.assert_array_equal(remote.best_estimator_.predict(X[:4]), local.best_estimator_.predict(X[:4]))


def test_torch_threads_checks_its_argument():
    with pytest.raises(ValueError, match="n_threads"):
        TorchThreads(0)



def _kill_when_busy(client, pids, sole_copy, killed, stop):
    """Once a fit runs, SIGKILL one worker process: with ``sole_copy``, one holding the only copy of some data
    (joblib scatters X to one worker) if there is one, else a busy one."""
    import signal
    import time

    while not stop.is_set():
        busy = [w for w, tasks in client.processing().items() if tasks and w in pids]
        if busy:
            victim = busy[0]
            if sole_copy:
                who_has = client.who_has()
                victim = next((w for w, keys in client.has_what().items()
                               if w in pids and any(len(who_has.get(k, ())) == 1 for k in keys)), victim)
            os.kill(pids[victim], signal.SIGKILL)
            killed.append(victim)
            return
        time.sleep(0.02)


def _search_in_thread(search, X, y, backend_kwargs, timeout):
    """``search.fit`` under joblib's dask backend in a thread: ``("ok", search)`` or ``("error", exc)``;
    fails the test if it has not returned after ``timeout`` seconds."""
    import threading

    outcome = []

    def run():
        try:
            with joblib.parallel_backend("dask", **backend_kwargs):
                outcome.append(("ok", search.fit(X, y)))
        except Exception as exc:  # noqa: BLE001 - the caller checks which
            outcome.append(("error", exc))

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(timeout)
    assert outcome, f"the search hung: no result {timeout} s after a worker was killed"
    return outcome[0]


def test_a_worker_killed_mid_search_fails_fast_or_finishes(client):
    """SIGKILL of a worker process during GridSearchCV on a LocalCluster never hangs the search.

    By default joblib scatters X to one worker; when that one dies, the search fails at once with
    ``FutureCancelledError`` (the scheduler logs that scattered data was lost), and otherwise dask
    reruns the lost fit elsewhere. With ``scatter=[X, y]`` every worker holds the data, and the search
    finishes on the others with the results of ``n_jobs=1``, as docs/scaling.md says."""
    import threading

    import torch

    X, y = make_noses(32, image_size=32, random_state=0)
    search = GridSearchCV(NoseKeypointRegressor(architecture="cnn", image_size=32, max_epochs=6, batch_size=16,
                                                random_state=0, device="cpu"),
                          {"lr": [1e-3, 3e-3]}, scoring=mae_px_scorer, cv=2, n_jobs=-1, refit=False)
    local = clone(search).set_params(n_jobs=1).fit(X, y)
    for scatter in (False, True):
        client.wait_for_workers(2, timeout=60)  # the nanny replaces a killed worker
        pids = client.run(os.getpid)
        killed, stop = [], threading.Event()
        killer = threading.Thread(target=_kill_when_busy, args=(client, pids, not scatter, killed, stop),
                                  daemon=True)
        killer.start()
        status, result = _search_in_thread(clone(search), X, y, {"scatter": [X, y]} if scatter else {},
                                           timeout=90)
        stop.set()
        killer.join(timeout=5)
        assert killed, "no worker was busy to be killed"
        assert killed[0] not in client.scheduler_info()["workers"]  # that worker is gone
        if status == "error":  # only allowed when joblib's only copy of X was lost
            assert not scatter, repr(result)
            assert isinstance(result, distributed.client.FutureCancelledError), repr(result)
            assert "cancelled" in str(result) and "fit_and_score" in str(result)
            continue
        for key in ("mean_test_score", "split0_test_score", "split1_test_score", "rank_test_score"):
            np.testing.assert_array_equal(result.cv_results_[key], local.cv_results_[key])
    assert status == "ok"  # with scatter=[X, y]
    client.wait_for_workers(2, timeout=60)
    assert set(client.run(torch.get_num_threads).values()) == {1}  # replacements got TorchThreads too
