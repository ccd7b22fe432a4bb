"""Experts fitted on a Dask cluster (worker processes) through joblib."""

import numpy as np
import pytest
from joblib import parallel_config
from numpy.testing import assert_array_equal
from sklearn.exceptions import ConvergenceWarning
from sklearn.tree import DecisionTreeRegressor

from skmoe import MixtureOfExpertsRegressor

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_dask_fit_equals_local_fit_and_ships_data_once(client, monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 5))
    y = X[:, 0] * X[:, 1] + rng.normal(size=2000)
    make = lambda: MixtureOfExpertsRegressor(  # noqa: E731
        3,
        estimator=DecisionTreeRegressor(max_depth=3, max_features=0.6),
        max_iter=5,
        random_state=0,
    )

    scattered = []
    scatter = distributed.Client.scatter

    def recording_scatter(self, data, *args, **kwargs):
        scattered.extend(data if isinstance(data, list) else [data])
        return scatter(self, data, *args, **kwargs)

    monkeypatch.setattr(distributed.Client, "scatter", recording_scatter)
    on_cluster = make()
    with pytest.warns(ConvergenceWarning), parallel_config(backend="dask"):
        on_cluster.fit(X, y)
    local = make()
    with pytest.warns(ConvergenceWarning):
        local.fit(X, y)

    assert_array_equal(on_cluster.predict(X), local.predict(X))
    assert_array_equal(on_cluster.log_likelihood_history_, local.log_likelihood_history_)
    # X went to the cluster once for the whole fit (6 M-steps x 3 experts),
    # not once per task or per EM iteration.
    shipped_X = [a for a in scattered if getattr(a, "shape", None) == X.shape]
    assert len(shipped_X) == 1
    assert len(on_cluster.log_likelihood_history_) == 6
