"""Starting responsibilities for EM."""

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import KMeans
from sklearn.utils.validation import check_array

from ._stats import weighted_mean_scale


# Above this many rows, k-means runs on a random sample of this many.
KMEANS_MAX_ROWS = 100_000


def initial_responsibilities(init, X_cluster, n_experts, sample_weight, random_state):
    """Return an (n_samples, n_experts) matrix of starting responsibilities.

    Parameters
    ----------
    init : {"kmeans", "random"} or array-like of shape (n_samples, n_experts)
        ``"kmeans"``: one-hot k-means clusters of the standardised ``X_cluster``
        (weighted by ``sample_weight``; centres found on ``KMEANS_MAX_ROWS``
        random rows when there are more); ``"random"``: rows drawn from a flat
        Dirichlet; an array: used as given (rows are renormalised).
    X_cluster : ndarray or CSR matrix of shape (n_samples, n_columns)
        Columns that k-means clusters on: a scratch array, standardised in
        place, so that k-means makes no copy of the data. Missing values
        (a tree gate's inputs) are filled with their column's mean.
    """
    n_samples = X_cluster.shape[0]
    if isinstance(init, str) and init == "kmeans":
        if sp.issparse(X_cluster):
            # k-means is blind to shifts: scaling alone keeps the matrix sparse.
            _, scale = weighted_mean_scale(X_cluster, sample_weight)
            X_cluster = X_cluster @ sp.diags(1.0 / scale)
        else:
            missing = np.isnan(X_cluster)
            if missing.any():
                X_cluster[missing] = np.take(np.nanmean(X_cluster, axis=0), missing.nonzero()[1])
                X_cluster[np.isnan(X_cluster)] = 0.0  # columns missing throughout
            mean, scale = weighted_mean_scale(X_cluster, sample_weight)
            X_cluster -= mean
            X_cluster /= scale
        kmeans = KMeans(n_clusters=n_experts, n_init=1, copy_x=False, random_state=random_state)
        if n_samples > KMEANS_MAX_ROWS:
            # A start needs rough clusters, not exact ones: find the centres on
            # a sample and assign every row to its nearest.
            rows = np.sort(random_state.choice(n_samples, KMEANS_MAX_ROWS, replace=False))
            kmeans.fit(X_cluster[rows], sample_weight=sample_weight[rows])
            labels = kmeans.predict(X_cluster)
        else:
            labels = kmeans.fit_predict(X_cluster, sample_weight=sample_weight)
        resp = np.zeros((n_samples, n_experts))
        resp[np.arange(n_samples), labels] = 1.0
        return resp
    if isinstance(init, str) and init == "random":
        return random_state.dirichlet(np.ones(n_experts), size=n_samples)

    resp = check_array(init, dtype=np.float64, input_name="init")
    if resp.shape != (n_samples, n_experts):
        raise ValueError(
            f"init has shape {resp.shape}, but starting responsibilities need shape "
            f"(n_samples, n_experts) = {(n_samples, n_experts)}."
        )
    if np.any(resp < 0) or np.any(resp.sum(axis=1) <= 0):
        raise ValueError(
            "init must be non-negative with a positive sum in every row "
            "(each row is a probability vector over the experts)."
        )
    return resp / resp.sum(axis=1, keepdims=True)
