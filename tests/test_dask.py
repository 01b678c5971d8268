"""GridSearchCV over a skkp estimator on a real dask.distributed cluster (2 worker processes)."""
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import joblib  # noqa: E402
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


def test_grid_search_on_a_local_cluster_matches_one_process():
    X, y = make_noses(32, image_size=32, random_state=0)
    local = _search().set_params(n_jobs=1).fit(X, y)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        client.register_plugin(TorchThreads())
        import torch

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
