"""MixtureOfExpertsRegressor: recovery of a known model, and its outputs."""

import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import SplineTransformer

from skmoe import MixtureOfExpertsRegressor


@pytest.fixture(scope="module")
def fitted_truth_model(three_expert_truth):
    truth, X, y, X_test, y_test = three_expert_truth
    moe = MixtureOfExpertsRegressor(
        n_experts=3,
        estimator=LinearRegression(),
        n_init=3,
        tol=1e-8,
        max_iter=500,
        random_state=0,
    )
    return moe.fit(X, y)


def test_recovers_held_out_log_likelihood(three_expert_truth, fitted_truth_model):
    truth, _, _, X_test, y_test = three_expert_truth
    true_ll = truth.log_likelihood(X_test, y_test).mean()
    fitted_ll = fitted_truth_model.log_likelihood(X_test, y_test).mean()
    assert abs(fitted_ll - true_ll) <= 0.01 * abs(true_ll)


def test_recovers_expert_coefficients(three_expert_truth, fitted_truth_model):
    """Expert coefficients, intercepts and noise match the truth up to a permutation.

    Tolerance 0.05 (absolute) on each coefficient and intercept: with 5000 rows
    and noise std <= 0.5 the standard errors are around 0.01.
    """
    truth = three_expert_truth[0]
    experts = fitted_truth_model.experts_
    coef = np.array([e.coef_ for e in experts])
    intercept = np.array([e.intercept_ for e in experts])
    best = min(
        itertools.permutations(range(3)),
        key=lambda p: np.abs(coef[list(p)] - truth.coef).sum(),
    )
    best = list(best)
    assert_allclose(coef[best], truth.coef, atol=0.05)
    assert_allclose(intercept[best], truth.intercept, atol=0.05)
    assert_allclose(np.sqrt(fitted_truth_model.noise_variance_[best]), truth.noise_std, rtol=0.1)


def test_single_expert_is_the_bare_expert():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = X @ [1.0, -2.0, 0.5, 0.0] + rng.normal(size=200)
    moe = MixtureOfExpertsRegressor(n_experts=1, estimator=Ridge(alpha=3.0)).fit(X, y)
    assert_allclose(moe.predict(X), Ridge(alpha=3.0).fit(X, y).predict(X), rtol=1e-12)
    assert_allclose(moe.predict_gate(X), 1.0)
    residual_var = np.mean((y - moe.predict(X)) ** 2)
    assert_allclose(moe.noise_variance_, [residual_var], rtol=1e-10)


def test_predict_std_is_the_mixture_standard_deviation():
    rng = np.random.default_rng(1)
    X = rng.uniform(-3, 3, size=(300, 1))
    y = np.where(X[:, 0] < 0, -2 * X[:, 0], 3 * X[:, 0]) + 0.1 * rng.normal(size=300)
    moe = MixtureOfExpertsRegressor(2, estimator=LinearRegression(), random_state=0).fit(X, y)
    mean, std = moe.predict(X, return_std=True)
    gate, means = moe.predict_gate(X), moe.predict_experts(X)
    # Law of total variance: E[Var] + Var[E].
    expected_var = gate @ moe.noise_variance_ + (gate * (means - mean[:, None]) ** 2).sum(axis=1)
    assert_allclose(std**2, expected_var, rtol=1e-10)
    assert_allclose(mean, (gate * means).sum(axis=1), rtol=1e-12)


def test_pipeline_experts_get_the_responsibility_weights():
    """A Pipeline expert is refit with weights reaching its final step.

    Two regimes with a constant offset: a spline expert fitted without the
    weights would average the regimes and never separate them.
    """
    rng = np.random.default_rng(3)
    X = rng.uniform(0, 1, size=(1000, 1))
    regime = rng.uniform(size=1000) < 0.5
    y = np.sin(6 * X[:, 0]) + np.where(regime, 3.0, -3.0) + 0.05 * rng.normal(size=1000)
    expert = make_pipeline(SplineTransformer(n_knots=6), Ridge(alpha=1e-3))
    moe = MixtureOfExpertsRegressor(2, estimator=expert, gate_features=[], random_state=0).fit(
        X, y
    )
    offsets = np.sort(moe.predict_experts(X).mean(axis=0) - np.sin(6 * X[:, 0]).mean())
    assert_allclose(offsets, [-3.0, 3.0], atol=0.05)
    assert np.all(moe.noise_variance_ < 0.01)


def test_gate_and_expert_features_are_separate_columns():
    """The gate sees only column 0 (a regime switch), the experts only columns 1-2."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(2000, 3))
    y = np.where(X[:, 0] > 0, 2 * X[:, 1], -2 * X[:, 2]) + 0.1 * rng.normal(size=2000)
    moe = MixtureOfExpertsRegressor(
        2,
        estimator=LinearRegression(),
        gate_features=[0],
        expert_features=[1, 2],
        random_state=0,
    ).fit(X, y)
    assert moe.gate_.coef_.shape == (1, 2)
    right = int(np.argmax(moe.gate_.coef_[0]))  # the expert the gate trusts for x0 > 0
    assert_allclose(moe.experts_[right].coef_, [2.0, 0.0], atol=0.02)
    assert_allclose(moe.experts_[1 - right].coef_, [0.0, -2.0], atol=0.02)
