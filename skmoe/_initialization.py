"""Starting responsibilities for EM."""

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import KMeans
from sklearn.tree import DecisionTreeRegressor
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
        return _one_hot(labels, n_experts)
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


def jittered(residual, random_state):
    """The residuals plus noise of a quarter of their spread, so that each start differs."""
    return residual + 0.25 * np.std(residual) * random_state.standard_normal(residual.shape)


def residual_responsibilities(residual, n_experts, sample_weight):
    """One-hot groups of equal weight by rank of the rows' residuals.

    ``residual`` is how far each row lies above one expert fitted to all
    rows. Regimes that differ in ``y`` at the same ``x`` (parallel or
    crossing lines) fall on different sides of that fit, which k-means on
    ``(x, y)`` does not see when ``x`` dominates the distances.
    """
    order = np.argsort(residual, kind="stable")
    weight = sample_weight[order]
    # The weighted rank of each row's middle, in [0, 1).
    rank = (np.cumsum(weight) - 0.5 * weight) / weight.sum()
    labels = np.empty(residual.shape[0], dtype=np.intp)
    labels[order] = np.minimum((rank * n_experts).astype(np.intp), n_experts - 1)
    return _one_hot(labels, n_experts)


def residual_tree_responsibilities(X, residual, n_experts, sample_weight, random_state):
    """One-hot leaves of a tree with ``n_experts`` leaves that splits ``X`` by residual.

    Where one expert is wrong in different directions in different regions
    of ``X``, each region wants its own expert: the tree finds the regions.
    A tree that cannot split leaves experts without rows; EM re-seeds them.
    """
    tree = DecisionTreeRegressor(
        max_leaf_nodes=max(n_experts, 2),
        min_samples_leaf=max(1, X.shape[0] // (4 * n_experts)),
        random_state=random_state,
    ).fit(X, residual, sample_weight=sample_weight)
    _, labels = np.unique(tree.apply(X), return_inverse=True)
    return _one_hot(np.minimum(labels, n_experts - 1), n_experts)


def _one_hot(labels, n_columns):
    resp = np.zeros((labels.shape[0], n_columns))
    resp[np.arange(labels.shape[0]), labels] = 1.0
    return resp
