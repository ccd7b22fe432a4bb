"""EM reaches the best optimum on hard cases (#11).

For each family of data on which EM is known to stall in a poor local
optimum, ``init="auto", n_init=10`` (at ``tol=1e-6``) must reach, within 1e-4
relative, the best mean training log-likelihood of a list of single starts
run to tight convergence: the oracle start (the one-hot true labels),
k-means and random Dirichlet responsibilities. Every fit of a family has the
same expert (``LinearRegression``, or the classifier's default
``WeightedLogisticRegression``, whose penalty is blind to the tiny scale of
the feature) and the same default gate. The data are small versions of the
cases of ``benchmarks/bench_optimum.py``, which runs the long list (30 random
and 10 k-means starts) at larger sizes.
"""

import warnings

import numpy as np
import pytest
from scipy.special import expit
from sklearn.linear_model import LinearRegression

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor

REL_GAP = 1e-4
# The list of starts: the oracle start, then these seeds of k-means and of
# random responsibilities (the benchmark runs 10 and 30, at tol=1e-10).
N_KMEANS, N_RANDOM = 1, 2
TIGHT = dict(tol=1e-7, max_iter=300)


def _hard_case(family, seed=0):
    """``(X, y, true_labels, n_experts)`` of a small hard case."""
    rng = np.random.default_rng(seed)
    n = 80 if family == "small_n" else 200
    # Noise that keeps the regression cases' |mean log-likelihood| at 0.65-0.9,
    # where a relative gap of 1e-4 is about the default tol (an absolute 1e-4).
    noise = {"small_n": 0.4, "scaled": 0.4, "piecewise": 0.5}.get(family, 0.3)
    noise = noise * rng.normal(size=n)
    labels = rng.integers(2, size=n)  # regimes independent of X, unless redrawn below
    if family == "parallel":  # two parallel lines: regimes differ only in y
        X = rng.uniform(0, 1, size=(n, 1))
        y = 2 * X[:, 0] + 1.2 * labels + noise
    elif family == "crossing":  # opposite slopes crossing at x = 0
        X = rng.uniform(-1, 1, size=(n, 1))
        y = np.where(labels == 1, 2.0, -2.0) * X[:, 0] + noise
    elif family == "scaled":  # x0 in [0, 1e-3] with slopes of +-3000; x1 in [0, 1e4] switches
        # (scikit-learn >= 1.9 LinearRegression cuts x0, 1e-7 of x1's scale: only the gate sees it)
        X = np.column_stack([rng.uniform(0, 1e-3, n), rng.uniform(0, 1e4, n)])
        labels = (rng.uniform(size=n) < expit((X[:, 1] - 5e3) / 500)).astype(int)
        y = np.where(labels == 1, -3000.0, 3000.0) * X[:, 0] + 3 * labels + noise
    elif family == "small_n":  # 12 features: x0 switches, x1 has opposite slopes
        X = rng.normal(size=(n, 12))
        labels = (rng.uniform(size=n) < expit(3 * X[:, 0])).astype(int)
        y = np.where(labels == 1, 1.0, -1.0) * (2 * X[:, 1] + 1) + noise
    elif family == "piecewise":  # the easy control: separated in X
        X = rng.uniform(-3, 3, size=(n, 1))
        labels = (X[:, 0] > 0).astype(int)
        y = np.where(labels == 1, 3.0, -2.0) * X[:, 0] + noise
    elif family == "narrow_classification":  # P(y=1) rises then falls, slope 1500
        X = rng.uniform(0, 0.01, size=(n, 1))
        labels = (X[:, 0] > 0.005).astype(int)
        logit = np.where(labels == 1, -1500 * (X[:, 0] - 0.0075), 1500 * (X[:, 0] - 0.0025))
        y = (rng.uniform(size=n) < expit(logit)).astype(int)
    return X, y, labels, labels.max() + 1


def _fit(X, y, n_experts, **params):
    if y.dtype.kind == "f":
        model = MixtureOfExpertsRegressor(n_experts, estimator=LinearRegression(), **params)
    else:
        # The default expert: a logit whose weak penalty is on the standardised slope.
        model = MixtureOfExpertsClassifier(n_experts, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence and collapse warnings are expected
        return model.fit(X, y).log_likelihood_


@pytest.mark.parametrize(
    "family",
    ["parallel", "crossing", "scaled", "small_n", "piecewise", "narrow_classification"],
)
def test_n_init_10_reaches_the_best_of_a_long_list_of_starts(family):
    X, y, labels, n_experts = _hard_case(family)
    # tol=1e-6: the claim is about the basin; at the default tol=1e-4 (an
    # absolute change) EM may stop up to ~1e-3 short on a slow tail, which
    # is above 1e-4 relative for log-likelihoods near -0.34 (the benchmark
    # reports both tolerances).
    reached = _fit(
        X, y, n_experts, init="auto", n_init=10, random_state=0, tol=1e-6, max_iter=1000
    )
    oracle = _fit(X, y, n_experts, init=np.eye(n_experts)[labels], **TIGHT)
    starts = {"oracle": oracle}
    for seed in range(N_RANDOM):
        starts[f"random#{seed}"] = _fit(X, y, n_experts, init="random", random_state=seed, **TIGHT)
    for seed in range(N_KMEANS):
        starts[f"kmeans#{seed}"] = _fit(X, y, n_experts, init="kmeans", random_state=seed, **TIGHT)
    best = max(starts.values())
    found_by = [name for name, ll in starts.items() if ll >= best - 1e-7 * abs(best)]
    assert (best - reached) / abs(best) <= REL_GAP, (
        f"n_init=10 reached {reached:.6f}; the long list {best:.6f} (found by {found_by})"
    )
    assert (oracle - reached) / abs(oracle) <= REL_GAP, (reached, oracle)
