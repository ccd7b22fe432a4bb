"""Conditional computation: top-k routing, thresholded expert refits, load balancing."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.linear_model import LinearRegression
from sklearn.tree import DecisionTreeRegressor

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe.exceptions import ExpertCollapseWarning


class RecordingRegression(LinearRegression):
    """LinearRegression that remembers how many rows it was fitted on and asked about."""

    def fit(self, X, y, sample_weight=None):
        self.n_fit_rows_ = X.shape[0]
        return super().fit(X, y, sample_weight)

    def predict(self, X):
        self.n_predict_rows_ = getattr(self, "n_predict_rows_", 0) + X.shape[0]
        return super().predict(X)


@pytest.fixture(scope="module")
def four_regimes():
    """Four linear regimes cut by the signs of x0 and x1 (gate-friendly)."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(4000, 4))
    regime = 2 * (X[:, 0] > 0) + (X[:, 1] > 0)
    coef = rng.normal(scale=2.0, size=(4, 4))
    y = np.einsum("nd,nd->n", X, coef[regime]) + 0.2 * rng.normal(size=4000)
    return X, y


@pytest.fixture(scope="module")
def top2_model(four_regimes):
    X, y = four_regimes
    return MixtureOfExpertsRegressor(
        4, estimator=RecordingRegression(), top_k=2, random_state=0
    ).fit(X, y)


def test_top_k_gate_keeps_k_renormalised_probabilities(four_regimes, top2_model):
    X, _ = four_regimes
    sparse = top2_model.predict_gate(X)
    # Two routes per row; the second weight of a row deep in one region may underflow to 0.
    assert np.all((sparse > 0).sum(axis=1) <= 2)
    assert_allclose(sparse.sum(axis=1), 1.0)
    dense = top2_model.set_params(top_k=None).predict_gate(X)
    top2_model.set_params(top_k=2)
    keep = sparse > 0
    expected = np.where(keep, dense, 0.0)
    assert_allclose(sparse, expected / expected.sum(axis=1, keepdims=True), rtol=1e-12)
    # The kept experts are the two most probable under the dense gate.
    top_two = np.sort(dense, axis=1)[:, -2:].sum(axis=1)
    assert_allclose(expected.sum(axis=1), top_two, rtol=1e-12)


def test_top_k_prediction_evaluates_each_expert_only_on_its_rows(four_regimes, top2_model):
    X, _ = four_regimes
    for expert in top2_model.experts_:
        expert.n_predict_rows_ = 0
    top2_model.predict(X)
    assert sum(e.n_predict_rows_ for e in top2_model.experts_) == 2 * X.shape[0]
    for expert in top2_model.experts_:
        expert.n_predict_rows_ = 0
    top2_model.set_params(top_k=None).predict(X)
    top2_model.set_params(top_k=2)
    assert sum(e.n_predict_rows_ for e in top2_model.experts_) == 4 * X.shape[0]


def test_top_k_equal_to_n_experts_is_dense(four_regimes, top2_model):
    X, y = four_regimes
    dense = top2_model.set_params(top_k=None).predict(X)
    full = top2_model.set_params(top_k=4).predict(X)
    top2_model.set_params(top_k=2)
    assert_allclose(full, dense, rtol=1e-12)
    # Switching a sparse-trained model to dense prediction changes little here.
    assert abs(top2_model.score(X, y) - r2(y, dense)) < 0.01


def r2(y, prediction):
    return 1 - np.mean((y - prediction) ** 2) / np.var(y)


def test_top_k_training_fits_as_well_as_dense(four_regimes, top2_model):
    X, y = four_regimes
    dense = MixtureOfExpertsRegressor(4, estimator=LinearRegression(), random_state=0).fit(X, y)
    assert top2_model.score(X, y) > dense.score(X, y) - 0.02
    assert np.isfinite(top2_model.log_likelihood(X, y)).all()


def test_top_k_larger_than_n_experts_is_refused(four_regimes, top2_model):
    X, y = four_regimes
    with pytest.raises(ValueError, match="top_k=5 is larger than n_experts=4"):
        MixtureOfExpertsRegressor(4, top_k=5).fit(X, y)
    with pytest.raises(ValueError, match="top_k=5 is larger than n_experts=4"):
        top2_model.set_params(top_k=5).predict(X)
    top2_model.set_params(top_k=2)


def test_thresholded_refits_use_about_n_rows_in_total(four_regimes):
    """Each expert refits on the rows it is responsible for; the fit barely moves."""
    X, y = four_regimes
    params = dict(estimator=RecordingRegression(), random_state=0, tol=1e-8, max_iter=300)
    sparse = MixtureOfExpertsRegressor(4, min_responsibility=1e-3, **params).fit(X, y)
    exact = MixtureOfExpertsRegressor(4, min_responsibility=0.0, **params).fit(X, y)
    rows = [e.n_fit_rows_ for e in sparse.experts_]
    assert sum(rows) < 1.5 * X.shape[0], rows
    # Exact EM skips only rows whose responsibility underflowed to 0.
    assert sum(e.n_fit_rows_ for e in exact.experts_) > 2.5 * X.shape[0]
    # Measured: 9e-6 relative on this data.
    assert_allclose(sparse.log_likelihood_, exact.log_likelihood_, rtol=1e-4)


def test_classifier_expert_with_one_class_in_its_rows_still_fits():
    """Thresholded rows may hold a single class; the refit widens to all weighted rows."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 2))
    y = np.where(X[:, 0] > 0.5, 1, 0)
    moe = MixtureOfExpertsClassifier(3, top_k=2, random_state=0).fit(X, y)
    assert moe.score(X, y) > 0.95
    assert np.isfinite(moe.predict_log_proba(X)[np.arange(600), y]).all()


def test_min_expert_share_reseeds_a_starved_expert():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1000, 2))
    y = np.where(X[:, 0] > 0, X[:, 1], -X[:, 1]) + 0.1 * rng.normal(size=1000)
    start = np.column_stack([X[:, 0] > 0, X[:, 0] <= 0, np.zeros(1000)]).astype(float)
    start[:5, 2] = 1.0  # a third expert with a 0.5% share
    moe = MixtureOfExpertsRegressor(
        3,
        estimator=DecisionTreeRegressor(max_depth=3),
        init=start,
        min_expert_share=0.05,
        random_state=0,
    )
    with pytest.warns(ExpertCollapseWarning, match="below 50"):
        moe.fit(X, y)
    assert_allclose(moe.expert_share_.sum(), 1.0)
