"""skmoe.experts.WeightedLeastSquares against scikit-learn's linear models.

Also its batch protocol (``_fit_many`` / ``_predict_many``), with which EM
refits all the experts of a mixture in one pass: it must give what one fit
per expert gives.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.utils.estimator_checks import parametrize_with_checks

from skmoe import MixtureOfExpertsRegressor
from skmoe import _base as skmoe_base
from skmoe.experts import WeightedLeastSquares, WeightedLogisticRegression


@parametrize_with_checks(
    [
        WeightedLeastSquares(),
        WeightedLeastSquares(alpha=1.0),
        WeightedLogisticRegression(),
        WeightedLogisticRegression(C=1.0, warm_start=True),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _weighted_problem(rng, n=3000, d=6):
    """Features of varied scales and offsets, zero and positive weights."""
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 5.0, size=d) + rng.normal(size=d) * 3
    y = X @ rng.normal(size=d) + 2.0 + rng.normal(size=n)
    sample_weight = rng.uniform(0.0, 2.0, size=n)
    sample_weight[::7] = 0.0
    return X, y, sample_weight


@pytest.mark.parametrize("n", [50, 20_000])  # one block of rows, several (8192 per block)
@pytest.mark.parametrize("alpha", [0.0, 3.0])
def test_matches_ridge_and_linear_regression(n, alpha):
    rng = np.random.default_rng(0)
    X, y, sample_weight = _weighted_problem(rng, n=n)
    reference = (LinearRegression() if alpha == 0 else Ridge(alpha=alpha)).fit(
        X, y, sample_weight=sample_weight
    )
    model = WeightedLeastSquares(alpha=alpha).fit(X, y, sample_weight=sample_weight)
    # The normal equations lose about cond(X) digits more than LinearRegression's SVD.
    assert_allclose(model.coef_, reference.coef_, rtol=1e-9)
    assert_allclose(model.intercept_, reference.intercept_, rtol=1e-9)


def test_zero_weight_is_leaving_the_row_out():
    rng = np.random.default_rng(1)
    X, y, sample_weight = _weighted_problem(rng)
    kept = sample_weight > 0
    full = WeightedLeastSquares().fit(X, y, sample_weight=sample_weight)
    subset = WeightedLeastSquares().fit(X[kept], y[kept], sample_weight=sample_weight[kept])
    assert_allclose(full.coef_, subset.coef_, rtol=1e-10)
    assert_allclose(full.intercept_, subset.intercept_, rtol=1e-10)


def test_rank_deficient_data_gives_the_minimum_norm_solution():
    """A duplicated column: LinearRegression's minimum-norm answer splits the slope in two."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=100)
    X = np.column_stack([x, x, np.ones(100)])
    y = 4.0 * x + 1.0
    model = WeightedLeastSquares().fit(X, y)
    reference = LinearRegression().fit(X, y)
    assert_allclose(model.coef_, reference.coef_, atol=1e-8)
    assert_allclose(model.predict(X), y, atol=1e-8)


def test_no_intercept():
    rng = np.random.default_rng(3)
    X, y, sample_weight = _weighted_problem(rng)
    model = WeightedLeastSquares(fit_intercept=False).fit(X, y, sample_weight=sample_weight)
    reference = LinearRegression(fit_intercept=False).fit(X, y, sample_weight=sample_weight)
    assert_allclose(model.coef_, reference.coef_, rtol=1e-9)
    assert model.intercept_ == 0.0


def test_zero_total_weight_is_refused():
    X, y = np.ones((3, 1)), np.ones(3)
    # scikit-learn >= 1.7 says so itself; before, the estimator does.
    with pytest.raises(ValueError, match="sums to zero|at least one non-zero"):
        WeightedLeastSquares().fit(X, y, sample_weight=np.zeros(3))


def test_mixture_with_weighted_least_squares_equals_linear_regression_experts(
    three_expert_truth,
):
    """Same model, same start: the same EM path as with LinearRegression experts."""
    _, X, y, _, _ = three_expert_truth
    fits = [
        MixtureOfExpertsRegressor(3, estimator=expert, random_state=0).fit(X, y)
        for expert in (WeightedLeastSquares(), LinearRegression())
    ]
    assert fits[0].n_iter_ == fits[1].n_iter_
    assert_allclose(fits[0].log_likelihood_, fits[1].log_likelihood_, rtol=1e-9)
    assert_allclose(fits[0].predict(X), fits[1].predict(X), rtol=1e-7, atol=1e-9)


def test_fit_many_equals_one_fit_per_weighting():
    """The batch refit EM uses: expert k fitted on weights[:, k], all in one pass."""
    rng = np.random.default_rng(4)
    X, y, _ = _weighted_problem(rng, n=5000)
    weights = rng.dirichlet(np.ones(3), size=5000)
    weights[weights < 0.2] = 0.0  # rows below min_responsibility
    experts = [
        WeightedLeastSquares(),
        WeightedLeastSquares(alpha=5.0),
        WeightedLeastSquares(fit_intercept=False),
    ]
    fitted = WeightedLeastSquares._fit_many(experts, X, y, weights)
    for k, expert in enumerate(fitted):
        alone = clone(experts[k]).fit(X, y, sample_weight=weights[:, k])
        assert_allclose(expert.coef_, alone.coef_, rtol=1e-10)
        assert_allclose(expert.intercept_, alone.intercept_, rtol=1e-10)
        assert expert.n_features_in_ == X.shape[1]
    assert_allclose(
        WeightedLeastSquares._predict_many(fitted, X),
        np.column_stack([expert.predict(X) for expert in fitted]),
        rtol=1e-12,
        atol=1e-12,  # one GEMM against K matrix-vector products
    )


@pytest.mark.parametrize("top_k", [None, 2])
def test_mixture_batch_refit_equals_one_task_per_expert(three_expert_truth, monkeypatch, top_k):
    """EM refits WeightedLeastSquares experts in one batch; one task each gives the same fit."""
    _, X, y, _, _ = three_expert_truth
    params = dict(n_experts=3, top_k=top_k, min_responsibility=0.05, random_state=0)
    batched = MixtureOfExpertsRegressor(**params).fit(X, y)
    monkeypatch.setattr(skmoe_base, "batch_class", lambda experts: None)
    one_by_one = MixtureOfExpertsRegressor(**params).fit(X, y)
    assert batched.n_iter_ == one_by_one.n_iter_
    assert_allclose(batched.log_likelihood_history_, one_by_one.log_likelihood_history_, rtol=1e-9)
    assert_allclose(batched.predict(X), one_by_one.predict(X), rtol=1e-7, atol=1e-9)


def _standardised_classes(n_classes, seed=0, n=400, d=4):
    """Features standardised with the weights (both penalties coincide), labels, weights."""
    rng = np.random.RandomState(seed)
    X = rng.randn(n, d) * [1.0, 3.0, 0.1, 10.0] + 5.0
    w = rng.uniform(0.0, 2.0, n)
    mean = np.average(X, axis=0, weights=w)
    X = (X - mean) / np.sqrt(np.average((X - mean) ** 2, axis=0, weights=w))
    y = np.argmax(X @ rng.randn(d, n_classes) + rng.gumbel(size=(n, n_classes)), axis=1)
    return X, y, w


@pytest.mark.parametrize("C", [0.1, 100.0])
def test_logistic_matches_multinomial_logistic_regression(C):
    X, y, w = _standardised_classes(3)
    ours = WeightedLogisticRegression(C=C, tol=1e-10, max_iter=2000).fit(X, y, sample_weight=w)
    theirs = LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(X, y, sample_weight=w)
    assert_allclose(ours.coef_, theirs.coef_, atol=1e-6)
    assert_allclose(ours.intercept_, theirs.intercept_, atol=1e-6)
    assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-7)


def test_binary_logistic_is_logistic_regression_with_twice_the_C():
    """Two symmetric softmax rows share the penalty: ``v1 - v0 = w`` costs ``|w|^2 / 4``."""
    X, y, w = _standardised_classes(2, seed=1)
    ours = WeightedLogisticRegression(C=0.5, tol=1e-10, max_iter=2000).fit(X, y, sample_weight=w)
    theirs = LogisticRegression(C=1.0, tol=1e-12, max_iter=10_000).fit(X, y, sample_weight=w)
    assert_allclose(ours.coef_[1] - ours.coef_[0], theirs.coef_[0], atol=1e-6)
    assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-7)


def test_logistic_penalty_is_blind_to_feature_units():
    """A feature rescaled by 1e-4 gets a coefficient 1e4 times larger, same probabilities."""
    X, y, w = _standardised_classes(3, seed=2)
    narrow = X * [1e-4, 1.0, 1.0, 1.0]
    model = WeightedLogisticRegression(C=1.0, tol=1e-10, max_iter=2000)
    wide = model.fit(X, y, sample_weight=w).predict_proba(X)
    assert_allclose(model.fit(narrow, y, sample_weight=w).predict_proba(narrow), wide, atol=1e-7)


def test_logistic_sparse_and_warm_start():
    X, y, w = _standardised_classes(3, seed=3)
    X[np.abs(X) < 0.7] = 0.0
    dense = WeightedLogisticRegression(tol=1e-10, max_iter=2000).fit(X, y, sample_weight=w)
    sparse = WeightedLogisticRegression(tol=1e-10, max_iter=2000).fit(
        sp.csr_matrix(X), y, sample_weight=w
    )
    assert_allclose(sparse.coef_, dense.coef_, atol=1e-6)
    warm = WeightedLogisticRegression(tol=1e-10, max_iter=2000, warm_start=True)
    warm.fit(X, y, sample_weight=w)
    cold_iterations = warm.n_iter_
    warm.fit(X, y, sample_weight=w * 1.01)  # a slightly changed problem, as in EM
    assert warm.n_iter_ < cold_iterations / 2
    assert_allclose(warm.coef_, dense.coef_, atol=1e-4)
