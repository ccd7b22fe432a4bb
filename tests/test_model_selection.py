"""Choosing the number of experts by cross-validated log-likelihood."""

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skmoe import (
    MixtureOfExpertsClassifier,
    MixtureOfExpertsClassifierCV,
    MixtureOfExpertsRegressor,
    MixtureOfExpertsRegressorCV,
)
from skmoe.metrics import log_likelihood_scorer


def three_regimes(seed, n_samples=450):
    """Piecewise-linear data with three regimes cut along x."""
    rng = np.random.RandomState(seed)
    X = rng.uniform(-3, 3, size=(n_samples, 1))
    regime = np.digitize(X[:, 0], [-1.0, 1.0])
    y = np.array([-2.0, 1.0, 3.0])[regime] * X[:, 0] + np.array([0.0, 2.0, -2.0])[regime]
    return X, y + 0.2 * rng.randn(n_samples)


def linear_mixture(**params):
    return MixtureOfExpertsRegressor(estimator=LinearRegression(), random_state=0, **params)


@pytest.mark.parametrize("seed", [0, 1])
def test_regressor_cv_finds_the_number_of_regimes(seed):
    X, y = three_regimes(seed)
    search = MixtureOfExpertsRegressorCV(linear_mixture(n_init=2), n_experts=(1, 2, 3), cv=3)
    search.fit(X, y)
    assert search.n_experts_ == 3
    assert search.best_params_ == {"n_experts": 3}
    scores = search.cv_results_["mean_test_score"]
    assert search.best_score_ == scores.max()
    # The refitted model is the chosen candidate, fitted on all rows.
    assert search.best_estimator_.n_experts == 3
    np.testing.assert_allclose(search.predict(X), search.best_estimator_.predict(X))
    np.testing.assert_allclose(
        search.log_likelihood(X, y), search.best_estimator_.log_likelihood(X, y)
    )


def test_regressor_cv_keeps_one_expert_for_a_line():
    """On data with one regime, no mixture beats the single expert held out."""
    rng = np.random.RandomState(0)
    X = rng.uniform(-3, 3, size=(300, 2))
    y = X @ [1.5, -1.0] + 0.5 * rng.randn(300)
    search = MixtureOfExpertsRegressorCV(linear_mixture(), n_experts=(1, 2, 3), cv=3).fit(X, y)
    assert search.n_experts_ == 1
    single = cross_val_score(
        linear_mixture(n_experts=1), X, y, cv=3, scoring=log_likelihood_scorer
    )
    assert search.best_score_ == pytest.approx(single.mean())


def test_cv_searches_the_gate_too():
    X, y = three_regimes(0, n_samples=300)
    search = MixtureOfExpertsRegressorCV(
        linear_mixture(), n_experts=(1, 3), gate=["softmax", "tree"], cv=3
    ).fit(X, y)
    assert set(search.best_params_) == {"n_experts", "gate"}
    assert len(search.cv_results_["params"]) == 4


def test_classifier_cv_needs_two_experts_for_a_band():
    """Class 1 lies outside a band: one logistic expert cannot draw two boundaries."""
    rng = np.random.RandomState(0)
    X = rng.uniform(-3, 3, size=(600, 1))
    y = (np.abs(X[:, 0]) + 0.3 * rng.randn(600) > 1.5).astype(int)
    mixture = MixtureOfExpertsClassifier(
        estimator=make_pipeline(StandardScaler(), LogisticRegression(C=1e4)), random_state=0
    )
    search = MixtureOfExpertsClassifierCV(mixture, n_experts=(1, 2), cv=3).fit(X, y)
    assert search.n_experts_ == 2
    np.testing.assert_array_equal(search.classes_, [0, 1])
    np.testing.assert_allclose(search.predict_proba(X), search.best_estimator_.predict_proba(X))
    assert search.score(X, y) > 0.85


@pytest.mark.parametrize("n_experts", [(), (0, 2), (1.5, 2)])
def test_cv_refuses_bad_candidates(n_experts):
    X, y = three_regimes(0, n_samples=60)
    with pytest.raises(ValueError, match="n_experts must hold positive integers"):
        MixtureOfExpertsRegressorCV(n_experts=n_experts).fit(X, y)


def test_scorer_is_the_weighted_mean_log_likelihood():
    X, y = three_regimes(0, n_samples=200)
    model = linear_mixture(n_experts=3).fit(X, y)
    rows = model.log_likelihood(X, y)
    assert log_likelihood_scorer(model, X, y) == pytest.approx(rows.mean())
    weights = np.arange(200.0)
    assert log_likelihood_scorer(model, X, y, sample_weight=weights) == pytest.approx(
        np.average(rows, weights=weights)
    )


def test_cv_can_choose_for_point_predictions():
    """Two noise levels around one line: the log-likelihood wants two experts, R2 one."""
    rng = np.random.RandomState(0)
    X = rng.uniform(-3, 3, size=(600, 1))
    noisy = rng.uniform(size=600) < 0.5
    y = 2.0 * X[:, 0] + np.where(noisy, 3.0, 0.1) * rng.randn(600)
    params = dict(n_experts=(1, 2), cv=3)
    by_likelihood = MixtureOfExpertsRegressorCV(linear_mixture(), **params).fit(X, y)
    by_r2 = MixtureOfExpertsRegressorCV(linear_mixture(), scoring="r2", **params).fit(X, y)
    assert by_likelihood.n_experts_ == 2
    assert by_r2.n_experts_ == 1
    assert by_r2.best_score_ == pytest.approx(by_r2.cv_results_["mean_test_score"][0])
