"""The regressor's predictive distribution: intervals, quantiles, density, sampling."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.stats import norm
from sklearn.linear_model import LinearRegression

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor


def crossing_heteroscedastic(n_samples, rng):
    """Two regimes whose means cross at x = 1/3, with noise 0.3 and 1.0."""
    X = rng.uniform(-3, 3, size=(n_samples, 1))
    first = rng.uniform(size=n_samples) < 0.5
    y = np.where(first, 2 * X[:, 0], 1 - X[:, 0])
    return X, y + np.where(first, 0.3, 1.0) * rng.normal(size=n_samples)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X, y = crossing_heteroscedastic(3000, rng)
    X_test, y_test = crossing_heteroscedastic(20_000, rng)
    model = MixtureOfExpertsRegressor(
        2, estimator=LinearRegression(), n_init=3, random_state=0
    ).fit(X, y)
    return model, X_test, y_test


def test_intervals_cover_their_confidence(fitted):
    model, X_test, y_test = fitted
    bounds = model.predict_interval(X_test, confidence=0.9)
    assert bounds.shape == (20_000, 2)
    coverage = np.mean((y_test >= bounds[:, 0]) & (y_test <= bounds[:, 1]))
    assert 0.88 <= coverage <= 0.92, coverage


def test_density_is_the_gated_mixture_of_gaussians(fitted):
    """A NumPy reference from the model's parts, and log_likelihood's values."""
    model, X_test, y_test = fitted
    X, y = X_test[:500], y_test[:500]
    gate, means = model.predict_gate(X), model.predict_experts(X)
    reference = np.log(
        np.sum(gate * norm.pdf(y[:, None], means, np.sqrt(model.noise_variance_)), axis=1)
    )
    distribution = model.predict_distribution(X)
    assert_allclose(distribution.logpdf(y), reference, rtol=1e-10)
    assert_allclose(model.log_likelihood(X, y), reference, rtol=1e-10)
    assert_allclose(distribution.pdf(y), np.exp(reference), rtol=1e-10)
    assert_allclose(distribution.weights, gate)
    assert_allclose(distribution.means, means)
    assert_allclose(distribution.scales, np.tile(np.sqrt(model.noise_variance_), (500, 1)))
    mean, std = model.predict(X, return_std=True)
    assert_allclose(distribution.mean(), mean)
    assert_allclose(distribution.std(), std)
    assert_allclose(
        distribution.var(), np.sum(gate * (means**2 + model.noise_variance_), axis=1) - mean**2
    )


def test_density_integrates_to_one(fitted):
    model, X_test, _ = fitted
    distribution = model.predict_distribution(X_test[:20])
    grid = np.linspace(-40, 40, 40_001)
    density = distribution.pdf(np.tile(grid, (20, 1)))
    assert_allclose(density.sum(axis=1) * (grid[1] - grid[0]), 1.0, rtol=1e-8)


def test_cdf_of_ppf_is_q(fitted):
    model, X_test, _ = fitted
    distribution = model.predict_distribution(X_test[:300])
    levels = np.array([1e-9, 1e-4, 0.05, 0.3, 0.5, 0.7, 0.95, 1 - 1e-4, 1 - 1e-9])
    q = np.tile(levels, (300, 1))
    quantiles = distribution.ppf(q)
    assert_allclose(distribution.cdf(quantiles), q, rtol=0, atol=1e-8)
    assert np.all(np.diff(quantiles, axis=1) > 0)
    assert_allclose(distribution.ppf(q[:, 3]), quantiles[:, 3])  # one q per row
    assert_allclose(distribution.ppf(0.3), quantiles[:, 3])  # a scalar
    edges = distribution.ppf(np.tile([0.0, 1.0], (300, 1)))
    assert np.all(edges[:, 0] == -np.inf) and np.all(edges[:, 1] == np.inf)


def test_quantiles_agree_with_monte_carlo(fitted):
    model, X_test, _ = fitted
    # Rows where the regimes' means cross (bimodal: one peak, wide shoulders)
    # and where they are far apart (two peaks).
    X = np.array([[1 / 3], [2.5], [-2.5]])
    levels = [0.05, 0.25, 0.5, 0.75, 0.95]
    exact = model.predict_quantiles(X, levels)
    draws = model.predict_distribution(X).sample(400_000, random_state=0)
    assert draws.shape == (3, 400_000)
    empirical = np.quantile(draws, levels, axis=1).T
    # Monte-Carlo error of a quantile: sqrt(q(1-q)/N) / density, a few 1e-2 here.
    assert_allclose(empirical, exact, atol=0.05)


def test_predict_quantiles_and_intervals_are_consistent(fitted):
    model, X_test, _ = fitted
    quantiles = model.predict_quantiles(X_test[:50], [0.05, 0.5, 0.95])
    assert quantiles.shape == (50, 3)
    assert_allclose(model.predict_interval(X_test[:50], 0.9), quantiles[:, [0, 2]])
    assert model.predict_quantiles(X_test[:50], 0.5).shape == (50, 1)


def test_top_k_distribution_mixes_only_the_routed_experts():
    rng = np.random.default_rng(1)
    X = rng.uniform(-3, 3, size=(1500, 1))
    regime = np.digitize(X[:, 0], [-1.0, 1.0])
    y = np.array([-2.0, 0.5, 3.0])[regime] * X[:, 0] + 0.2 * rng.normal(size=1500)
    model = MixtureOfExpertsRegressor(
        3, estimator=LinearRegression(), top_k=2, random_state=0
    ).fit(X, y)
    distribution = model.predict_distribution(X[:100])
    assert np.all((distribution.weights > 0).sum(axis=1) <= 2)
    assert_allclose(distribution.weights.sum(axis=1), 1.0)
    grid = np.linspace(-20, 20, 20_001)
    density = distribution.pdf(np.tile(grid, (100, 1)))
    assert_allclose(density.sum(axis=1) * (grid[1] - grid[0]), 1.0, rtol=1e-6)
    q = np.full(100, 0.8)
    assert_allclose(distribution.cdf(distribution.ppf(q)), q, atol=1e-8)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda d: d.ppf(1.5), r"q must hold probabilities in \[0, 1\]"),
        (lambda d: d.interval(1.0), r"confidence must be in \(0, 1\), got 1.0"),
        (
            lambda d: d.cdf(np.zeros(3)),
            r"y has shape \(3,\); give a scalar, one value per row "
            r"\(shape \(10,\)\)",
        ),
    ],
)
def test_bad_arguments_are_refused(fitted, call, message):
    model, X_test, _ = fitted
    with pytest.raises(ValueError, match=message):
        call(model.predict_distribution(X_test[:10]))


def test_responsibilities_are_the_posterior_over_experts(fitted):
    model, X_test, y_test = fitted
    X, y = X_test[:200], y_test[:200]
    joint = model.predict_gate(X) * norm.pdf(
        y[:, None], model.predict_experts(X), np.sqrt(model.noise_variance_)
    )
    assert_allclose(
        model.predict_responsibilities(X, y),
        joint / joint.sum(axis=1, keepdims=True),
        rtol=1e-8,
        atol=1e-12,
    )


def test_classifier_responsibilities_sum_to_one():
    rng = np.random.default_rng(2)
    X = rng.uniform(-3, 3, size=(400, 1))
    y = (np.abs(X[:, 0]) + 0.3 * rng.normal(size=400) > 1.5).astype(int)
    model = MixtureOfExpertsClassifier(2, random_state=0).fit(X, y)
    resp = model.predict_responsibilities(X, y)
    assert resp.shape == (400, 2)
    assert_allclose(resp.sum(axis=1), 1.0)
