"""Running skkp on a dask cluster: one torch thread budget per worker.

scikit-learn's searches (``GridSearchCV``, ``cross_val_score``) run their fits through joblib,
and joblib's ``"dask"`` backend sends them to a ``dask.distributed`` cluster. Each dask worker
runs as many tasks at once as it has threads, and every skkp fit would start torch's default
number of threads (all cores of the machine) on top: register :class:`TorchThreads` on the
client so each worker's torch uses one thread per task (or the number you give), no more::

    from dask.distributed import Client
    import joblib
    from skkp.parallel import TorchThreads

    client = Client("scheduler-address:8786")
    client.register_plugin(TorchThreads())
    with joblib.parallel_backend("dask"):
        search.fit(X, y)

Needs ``pip install "dask[distributed]"``.
"""
try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover - without dask the class still documents itself
    WorkerPlugin = object

__all__ = ["TorchThreads"]


class TorchThreads(WorkerPlugin):
    """Dask worker plugin: ``torch.set_num_threads`` on every worker, now and on workers that join later.

    Parameters
    ----------
    n_threads : int or None, default=None
        Torch intra-op threads per worker process; None gives one, right for workers
        that run one task per thread (``nthreads`` tasks on ``nthreads`` cores). Give
        more only to workers that run fewer tasks than they have cores.

    Examples
    --------
    >>> TorchThreads(2).n_threads
    2
    """

    name = "skkp-torch-threads"

    def __init__(self, n_threads=None):
        if n_threads is not None and (not isinstance(n_threads, int) or n_threads < 1):
            raise ValueError(f"n_threads must be a positive int or None, got {n_threads!r}.")
        self.n_threads = n_threads

    def setup(self, worker):
        import torch

        torch.set_num_threads(self.n_threads or 1)
