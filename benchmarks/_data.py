"""Data generated from the model skmoe fits: a softmax gate over linear experts.

The truth (gate and expert parameters) is drawn from its own seed, so training
and held-out samples, and samples of different sizes, share one truth.
"""

from dataclasses import dataclass

import numpy as np
from scipy.special import softmax


@dataclass
class GatedLinearTruth:
    """``x ~ N(0, I)``, regime ``k ~ softmax(x A + a)``, then a linear law of regime ``k``.

    Regression: ``y = x B_k + b_k + noise``. Classification: ``y ~
    Categorical(softmax(x B_k + b_k))``; ``coef`` has one column per class.
    """

    gate_coef: np.ndarray  # (d, K)
    gate_intercept: np.ndarray  # (K,)
    coef: np.ndarray  # (K, d, C); C = 1 for regression
    intercept: np.ndarray  # (K, C)
    noise_std: float  # regression only

    def _regimes(self, n, rng):
        X = rng.normal(size=(n, self.gate_coef.shape[0]))
        gate = softmax(X @ self.gate_coef + self.gate_intercept, axis=1)
        regime = (gate.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1)
        # Guard against cumsum rounding just below 1 sending a row past the last regime.
        regime = np.minimum(regime, gate.shape[1] - 1)
        out = np.einsum("nd,ndc->nc", X, self.coef[regime]) + self.intercept[regime]
        return X, out

    def sample_regression(self, n, rng):
        X, mean = self._regimes(n, rng)
        return X, mean[:, 0] + self.noise_std * rng.normal(size=n)

    def sample_classification(self, n, rng):
        X, logits = self._regimes(n, rng)
        proba = softmax(logits, axis=1)
        return X, (proba.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1).clip(
            max=proba.shape[1] - 1
        )


def make_truth(n_features, n_experts, n_outputs=1, seed=0, gate_scale=3.0, noise_std=0.3):
    """A random truth whose regimes are well separated by the gate (``gate_scale``)."""
    rng = np.random.default_rng(seed)
    return GatedLinearTruth(
        gate_coef=rng.normal(scale=gate_scale / np.sqrt(n_features), size=(n_features, n_experts)),
        gate_intercept=rng.normal(scale=0.5, size=n_experts),
        coef=rng.normal(scale=2.0, size=(n_experts, n_features, n_outputs)),
        intercept=rng.normal(scale=2.0, size=(n_experts, n_outputs)),
        noise_std=noise_std,
    )
