"""Data with known truth, generated from the model skmoe fits."""

from dataclasses import dataclass

import numpy as np
import pytest
from scipy.special import expit, logsumexp, softmax
from scipy.stats import norm


@dataclass
class LinearGaussianMixture:
    """A softmax-gated mixture of linear-Gaussian experts: the true model."""

    gate_coef: np.ndarray  # (d, K)
    gate_intercept: np.ndarray  # (K,)
    coef: np.ndarray  # (K, d)
    intercept: np.ndarray  # (K,)
    noise_std: np.ndarray  # (K,)

    def sample(self, n, rng):
        X = rng.normal(size=(n, self.coef.shape[1]))
        gate = softmax(X @ self.gate_coef + self.gate_intercept, axis=1)
        expert = (gate.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1)
        means = X @ self.coef.T + self.intercept
        y = means[np.arange(n), expert] + self.noise_std[expert] * rng.normal(size=n)
        return X, y

    def log_likelihood(self, X, y):
        """log p(y | x) per row under the true parameters."""
        log_gate = np.log(softmax(X @ self.gate_coef + self.gate_intercept, axis=1))
        means = X @ self.coef.T + self.intercept
        return logsumexp(log_gate + norm.logpdf(y[:, None], means, self.noise_std), axis=1)


@pytest.fixture(scope="session")
def three_expert_truth():
    """3 linear experts, d=5, softmax gate; 5000 training and 5000 held-out rows."""
    rng = np.random.default_rng(42)
    truth = LinearGaussianMixture(
        gate_coef=np.array(
            [
                [3.0, -3.0, 0.0],
                [0.0, 3.0, -3.0],
                [1.0, 0.0, -1.0],
                [0.0, 0.0, 0.0],
                [0.5, -0.5, 0.0],
            ]
        ),
        gate_intercept=np.array([0.0, 0.5, -0.5]),
        coef=np.array(
            [
                [2.0, -1.0, 0.5, 0.0, 1.0],
                [-1.5, 2.0, 0.0, 1.0, -0.5],
                [0.0, 0.5, -2.0, -1.0, 0.0],
            ]
        ),
        intercept=np.array([1.0, -1.0, 3.0]),
        noise_std=np.array([0.3, 0.5, 0.4]),
    )
    X, y = truth.sample(5000, rng)
    X_test, y_test = truth.sample(5000, rng)
    return truth, X, y, X_test, y_test


@pytest.fixture(scope="session")
def two_logistic_experts():
    """Classes from a gate over two logistic experts with opposite slopes.

    A single logistic regression cannot represent the sign flip at x0 = 0.
    """
    rng = np.random.default_rng(7)
    n = 6000
    X = rng.normal(size=(n, 3))
    right = rng.uniform(size=n) < expit(4.0 * X[:, 0])
    logit = np.where(right, 3.0 * X[:, 1] + 1.0 * X[:, 2], -3.0 * X[:, 1] + 1.0 * X[:, 2])
    y = (rng.uniform(size=n) < expit(logit)).astype(int)
    return X[:4000], y[:4000], X[4000:], y[4000:]
