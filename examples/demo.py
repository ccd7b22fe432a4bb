"""skmoe demonstration: a mixture of experts against its single expert.

Generates tabular data whose target follows different linear laws in
different regions of the input space (a gated mixture of experts, which one
linear model cannot represent), fits a mixture of ridge experts and a single
ridge regression, and prints how they compare on held-out data. Then does
the same for classification with logistic experts.

Run:  python examples/demo.py
"""

import time

import numpy as np
from scipy.special import expit, softmax
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor


def regression_data(n=20_000, seed=0):
    """Three regimes chosen by a softmax gate on the inputs; a linear law in each."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    gate = softmax(X[:, :2] @ np.array([[3.0, -3.0, 0.0], [0.0, 3.0, -3.0]]), axis=1)
    regime = (gate.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1)
    coef = rng.normal(scale=2.0, size=(3, 5))
    y = np.einsum("nd,nd->n", X, coef[regime]) + np.array([1.0, -1.0, 3.0])[regime]
    return X, y + 0.3 * rng.normal(size=n)


def classification_data(n=20_000, seed=1):
    """Two logistic experts with opposite slopes, switched by the sign of x0."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    right = rng.uniform(size=n) < expit(4.0 * X[:, 0])
    logit = np.where(right, 3.0, -3.0) * X[:, 1] + X[:, 2]
    return X, (rng.uniform(size=n) < expit(logit)).astype(int)


def timed_fit(model, X, y):
    start = time.perf_counter()
    model.fit(X, y)
    return time.perf_counter() - start


def main():
    print("Regression: 20,000 rows, 5 features, 3 gated linear regimes")
    X_train, X_test, y_train, y_test = train_test_split(*regression_data(), random_state=0)
    single, moe = Ridge(), MixtureOfExpertsRegressor(3, estimator=Ridge(), random_state=0)
    print(f"{'model':<34}{'fit (s)':>9}{'held-out R2':>13}{'mean log p(y|x)':>17}")
    for name, model in [("Ridge (single expert)", single), ("MixtureOfExperts(3 x Ridge)", moe)]:
        seconds = timed_fit(model, X_train, y_train)
        # A single ridge regression has no noise model, so no log-likelihood.
        ll = f"{moe.log_likelihood(X_test, y_test).mean():.3f}" if model is moe else "-"
        print(f"{name:<34}{seconds:>9.2f}{model.score(X_test, y_test):>13.3f}{ll:>17}")
    print(f"EM: {moe.n_iter_} iterations, converged={moe.converged_}, "
          f"expert shares {np.round(moe.expert_share_, 2)}")

    print("\nClassification: 20,000 rows, 3 features, 2 gated logistic experts")
    X_train, X_test, y_train, y_test = train_test_split(*classification_data(), random_state=0)
    single = LogisticRegression()
    moe = MixtureOfExpertsClassifier(2, estimator=LogisticRegression(), random_state=0)
    print(f"{'model':<34}{'fit (s)':>9}{'held-out acc':>13}")
    for name, model in [("LogisticRegression (single)", single),
                        ("MixtureOfExperts(2 x Logistic)", moe)]:
        seconds = timed_fit(model, X_train, y_train)
        print(f"{name:<34}{seconds:>9.2f}{model.score(X_test, y_test):>13.3f}")


if __name__ == "__main__":
    main()
