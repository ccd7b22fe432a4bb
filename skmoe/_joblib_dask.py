"""Fitting experts on a Dask cluster through joblib, shipping the data once.

With ``joblib.parallel_config(backend="dask")`` the experts' refits run on a
Dask cluster. joblib's Dask backend scatters large arguments anew on every
``Parallel`` call, which for EM would mean sending ``X`` to the cluster once
per iteration. Scattering the training data up front, when the fit starts,
lets every iteration refer to the copy already on the workers.
"""

from contextlib import nullcontext

from joblib import parallel_config
from joblib.parallel import get_active_backend


def ship_once(*arrays):
    """A context in which joblib's Dask backend has ``arrays`` on its workers.

    Outside the Dask backend this does nothing. The arrays must be the very
    objects later passed to the tasks: the backend finds them by identity.
    """
    backend, n_jobs = get_active_backend()
    if type(backend).__name__ != "DaskDistributedBackend":
        return nullcontext()
    scattered = type(backend)(client=backend.client, scatter=list(arrays))
    return parallel_config(backend=scattered, n_jobs=n_jobs)
