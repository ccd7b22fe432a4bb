"""The batched log-link GLM solver and WeightedTweedieRegressor against scikit-learn."""

import doctest
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import GammaRegressor, PoissonRegressor, TweedieRegressor
from sklearn.metrics import mean_tweedie_deviance
from sklearn.utils.estimator_checks import parametrize_with_checks

from skmoe import _glm
from skmoe._glm import WeightedTweedieRegressor, fit_log_link_glms

POWERS = [1.0, 1.5, 2.0, 3.0]


def _problem(power, n=2000, d=4, n_experts=3, seed=0):
    """Features of order one, targets of the power's family, K weight columns with zeros."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    mu = np.exp(X @ np.array([0.5, -0.4, 0.3, 0.2])[:d] + 0.3)
    if power == 1:
        y = rng.poisson(mu).astype(float)
    elif power < 2:
        # Compound Poisson-gamma: exact zeros and positive amounts.
        counts = rng.poisson(mu)
        y = np.array([rng.gamma(2.0, 0.5, size=c).sum() for c in counts])
    else:
        y = rng.gamma(2.0, mu / 2.0)
    weights = rng.uniform(0.0, 2.0, size=(n, n_experts)) * rng.uniform(0.2, 1.0, n_experts)
    weights[rng.uniform(size=(n, n_experts)) < 0.25] = 0.0
    return X, y, np.ascontiguousarray(weights)


def _sklearn_models(power, alpha):
    common = {"alpha": alpha, "solver": "newton-cholesky", "tol": 1e-12, "max_iter": 1000}
    models = [TweedieRegressor(power=power, link="log", **common)]
    if power == 1:
        models.append(PoissonRegressor(**common))
    if power == 2:
        models.append(GammaRegressor(**common))
    return models


@pytest.mark.parametrize("power", POWERS)
@pytest.mark.parametrize("alpha", [0.0, 0.05])
def test_matches_sklearn(power, alpha):
    X, y, weights = _problem(power)
    coef, intercept, n_iter = fit_log_link_glms(X, y, weights, power, alpha, tol=1e-10)
    assert np.all(n_iter >= 1)
    for k in range(weights.shape[1]):
        rows = weights[:, k] > 0
        for model in _sklearn_models(power, alpha):
            # Zero weights passed or the rows dropped: the same problem.
            for X_k, y_k, w_k in ((X, y, weights[:, k]), (X[rows], y[rows], weights[rows, k])):
                with warnings.catch_warnings():
                    # sklearn's Newton may hand over to lbfgs for power > 2.
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    model.fit(X_k, y_k, sample_weight=w_k)
                np.testing.assert_allclose(coef[k], model.coef_, rtol=0, atol=1e-6)
                assert abs(intercept[k] - model.intercept_) <= 1e-6


@pytest.mark.parametrize("power", POWERS)
def test_objective_is_sklearns(power):
    """Differences of the objective are those of half sklearn's mean deviance plus the penalty."""
    X, y, weights = _problem(power, n=300)
    rng = np.random.default_rng(1)
    alpha = np.array([0.0, 0.1, 1.0])
    values = []
    points = [
        (rng.normal(scale=0.3, size=(3, 4)), rng.normal(scale=0.3, size=3)) for _ in range(2)
    ]
    for coef, intercept in points:
        objective, _ = _glm._objective_and_gradient(X, y, weights, power, alpha, coef, intercept)
        expected = [
            0.5
            * mean_tweedie_deviance(
                y, np.exp(X @ coef[k] + intercept[k]), sample_weight=weights[:, k], power=power
            )
            + 0.5 * alpha[k] * coef[k] @ coef[k]
            for k in range(3)
        ]
        values.append((objective, np.array(expected)))
    (first, first_expected), (second, second_expected) = values
    np.testing.assert_allclose(
        first - second, first_expected - second_expected, rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("power", POWERS)
def test_gradient_matches_finite_differences(power):
    X, y, weights = _problem(power, n=300)
    rng = np.random.default_rng(2)
    alpha = np.array([0.0, 0.1, 1.0])
    coef, intercept = rng.normal(scale=0.3, size=(3, 4)), rng.normal(scale=0.3, size=3)
    _, gradient = _glm._objective_and_gradient(X, y, weights, power, alpha, coef, intercept)
    step = 1e-6
    numeric = np.empty_like(gradient)
    for j in range(5):
        shift = np.zeros((3, 5))
        shift[:, j] = step
        values = [
            _glm._objective_and_gradient(
                X, y, weights, power, alpha, coef + s[:, :4], intercept + s[:, 4]
            )[0]
            for s in (shift, -shift)
        ]
        numeric[:, j] = (values[0] - values[1]) / (2 * step)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("power", POWERS)
def test_hessian_matches_finite_differences(power):
    """Newton's Hessian is the exact one (for power > 2 when it is positive definite)."""
    X, y, weights = _problem(power, n=300)
    rng = np.random.default_rng(3)
    alpha = np.array([0.0, 0.1, 1.0])
    coef, intercept = rng.normal(scale=0.3, size=(3, 4)), rng.normal(scale=0.3, size=3)
    hessians, fisher = _glm._hessians_at(X, y, weights, power, alpha, coef, intercept)
    assert (fisher is None) == (power <= 2)
    step = 1e-6
    for j in range(5):
        shift = np.zeros((3, 5))
        shift[:, j] = step
        gradients = [
            _glm._objective_and_gradient(
                X, y, weights, power, alpha, coef + s[:, :4], intercept + s[:, 4]
            )[1]
            for s in (shift, -shift)
        ]
        np.testing.assert_allclose(
            hessians[:, :, j], (gradients[0] - gradients[1]) / (2 * step), rtol=1e-5, atol=1e-7
        )


def test_fisher_hessian_above_power_two():
    """Above power 2, the fallback is the expected Hessian: the exact one where y is the mean."""
    X, _, weights = _problem(3.0, n=300, n_experts=1)
    coef, intercept = np.array([[0.2, -0.1, 0.3, 0.0]]), np.array([0.1])
    y = np.exp(X @ coef[0] + intercept[0])
    exact, fisher = _glm._hessians_at(X, y, weights, 3.0, 0.5, coef, intercept)
    design = np.column_stack([X, np.ones(len(y))])
    v = weights[:, 0] / weights[:, 0].sum()
    expected = design.T @ (design * (v * y ** (2 - 3.0))[:, None])
    expected[np.arange(4), np.arange(4)] += 0.5
    np.testing.assert_allclose(fisher[0], expected, rtol=1e-12)
    np.testing.assert_allclose(exact[0], expected, rtol=1e-10)
    # Far from the mean the exact Hessian is indefinite: the solver takes Fisher's step.
    y_small = y * 1e-3
    exact, fisher = _glm._hessians_at(X, y_small, weights, 3.0, 0.0, coef, intercept)
    assert np.linalg.eigvalsh(exact[0]).min() < 0 < np.linalg.eigvalsh(fisher[0]).min()
    _, gradient = _glm._objective_and_gradient(X, y_small, weights, 3.0, 0.0, coef, intercept)
    np.testing.assert_allclose(
        _glm._newton_direction(exact[0], fisher[0], gradient[0]),
        np.linalg.solve(fisher[0], -gradient[0]),
        rtol=1e-10,
        atol=1e-12,
    )
    coef_fit, intercept_fit, _ = fit_log_link_glms(X, y_small, weights, 3.0, 0.0)
    np.testing.assert_allclose(np.exp(X @ coef_fit[0] + intercept_fit[0]), y_small, rtol=1e-6)


@pytest.mark.parametrize("power", POWERS)
def test_warm_start_same_answer_fewer_iterations(power):
    X, y, weights = _problem(power)
    coef, intercept, n_iter = fit_log_link_glms(X, y, weights, power, 0.01)
    # EM's situation: the weights move a little between refits.
    rng = np.random.default_rng(4)
    moved = np.ascontiguousarray(weights * rng.uniform(0.9, 1.1, size=weights.shape))
    cold = fit_log_link_glms(X, y, moved, power, 0.01)
    warm = fit_log_link_glms(X, y, moved, power, 0.01, coef=coef, intercept=intercept)
    # Both stop at a gradient of at most tol=1e-8: the answers agree to about that.
    np.testing.assert_allclose(warm[0], cold[0], rtol=0, atol=1e-7)
    np.testing.assert_allclose(warm[1], cold[1], rtol=0, atol=1e-7)
    assert np.all(warm[2] < cold[2])
    # From the solution itself: nothing to do.
    assert np.all(
        fit_log_link_glms(X, y, weights, power, 0.01, coef=coef, intercept=intercept)[2] == 0
    )


def test_estimator_warm_start():
    X, y, weights = _problem(1.0)
    model = WeightedTweedieRegressor(warm_start=True).fit(X, y, sample_weight=weights[:, 0])
    cold_iterations = model.n_iter_
    model.fit(X, y, sample_weight=weights[:, 0] * 1.5)  # the same objective
    assert model.n_iter_ == 0 < cold_iterations
    cold = WeightedTweedieRegressor().fit(X, y, sample_weight=weights[:, 1])
    model.fit(X, y, sample_weight=weights[:, 1])
    np.testing.assert_allclose(model.coef_, cold.coef_, rtol=0, atol=1e-8)
    # A different number of features: a cold start, no error.
    model.fit(X[:, :2], y)
    assert model.coef_.shape == (2,)


@pytest.mark.parametrize("power", POWERS)
def test_far_start(power):
    """From afar Newton still converges; where exp would overflow it makes progress, no warnings.

    (RuntimeWarnings are errors in this test suite.)
    """
    X, y, weights = _problem(power)
    reference = fit_log_link_glms(X, y, weights, power, 0.01)
    start = np.array([[2.0, 2.0, -2.0, 1.0]] * 3), np.full(3, 3.0)
    coef, intercept, _ = fit_log_link_glms(X, y, weights, power, 0.01, *start, max_iter=200)
    np.testing.assert_allclose(coef, reference[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(intercept, reference[1], rtol=0, atol=1e-6)
    # Linear predictors of +-800 on some rows: exp is capped there (the
    # objective is flat beyond the cap, a point that no fit reaches), and
    # Newton's steps shrink the largest predictors by about one per
    # iteration, so it runs out of iterations; but without overflow, NaN or
    # an increase of the objective.
    far = np.zeros((3, 4)), np.zeros(3)
    far[0][:, 0] = 800.0 / np.abs(X[:, 0]).max() * np.sign(X[np.abs(X[:, 0]).argmax(), 0])
    before, _ = _glm._objective_and_gradient(X, y, weights, power, 0.01, *far)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        coef, intercept, _ = fit_log_link_glms(X, y, weights, power, 0.01, *far, max_iter=5)
    after, _ = _glm._objective_and_gradient(X, y, weights, power, 0.01, coef, intercept)
    assert np.all(np.isfinite(coef)) and np.all(np.isfinite(after))
    assert np.all(after <= before * (1 + 1e-10))  # rounding-sized increases are accepted


@pytest.mark.parametrize("power", POWERS)
def test_collinear_features_without_penalty(power):
    """A duplicated column and alpha=0: a singular Hessian, solved by least squares."""
    X, y, weights = _problem(power, n=500)
    coef, intercept, _ = fit_log_link_glms(X, y, weights, power, 0.0)
    doubled = np.column_stack([X, X[:, 0]])
    coef2, intercept2, _ = fit_log_link_glms(doubled, y, weights, power, 0.0)
    np.testing.assert_allclose(coef2[:, 0] + coef2[:, -1], coef[:, 0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(coef2[:, 1:-1], coef[:, 1:], rtol=0, atol=1e-6)
    np.testing.assert_allclose(intercept2, intercept, rtol=0, atol=1e-6)


def test_fit_many_equals_separate_fits():
    X, y, weights = _problem(1.5)
    experts = [WeightedTweedieRegressor(power=1.5, alpha=alpha) for alpha in (0.0, 0.1, 1e-8)]
    fitted = WeightedTweedieRegressor._fit_many(experts, X, y, weights)
    assert fitted is experts
    # EM passes its latest change as tol; Newton solves to the experts' own.
    again = [WeightedTweedieRegressor(power=1.5, alpha=e.alpha) for e in experts]
    WeightedTweedieRegressor._fit_many(again, X, y, weights, tol=1e-2)
    for first, second in zip(experts, again):
        np.testing.assert_array_equal(first.coef_, second.coef_)
    means = WeightedTweedieRegressor._predict_many(experts, X)
    assert means.shape == (X.shape[0], 3)
    for k, expert in enumerate(experts):
        alone = WeightedTweedieRegressor(power=1.5, alpha=expert.alpha).fit(
            X, y, sample_weight=weights[:, k]
        )
        np.testing.assert_allclose(expert.coef_, alone.coef_, rtol=0, atol=1e-10)
        assert abs(expert.intercept_ - alone.intercept_) <= 1e-10
        assert expert.n_iter_ == alone.n_iter_
        assert expert.n_features_in_ == 4
        np.testing.assert_allclose(means[:, k], alone.predict(X), rtol=1e-12)
        np.testing.assert_allclose(alone.predict(X), np.exp(X @ alone.coef_ + alone.intercept_))


def test_mixture_with_tweedie_experts():
    """In EM the experts are refitted together through the batch protocol."""
    from skmoe import MixtureOfExpertsRegressor

    rng = np.random.default_rng(5)
    X = rng.normal(size=(3000, 3))
    mu = np.where(X[:, 0] > 0, np.exp(0.5 * X[:, 1] + 1.0), np.exp(-0.5 * X[:, 2]))
    y = rng.poisson(mu).astype(float)
    calls = []
    fit_many = WeightedTweedieRegressor._fit_many

    def counting(experts, *args, **kwargs):
        calls.append(len(experts))
        return fit_many(experts, *args, **kwargs)

    scores = []
    for estimator in (
        PoissonRegressor(alpha=1e-8, solver="newton-cholesky"),
        WeightedTweedieRegressor(warm_start=True),
    ):
        mixture = MixtureOfExpertsRegressor(
            n_experts=2, estimator=estimator, likelihood="poisson", random_state=0
        )
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(WeightedTweedieRegressor, "_fit_many", staticmethod(counting))
            mixture.fit(X, y)
        scores.append(mixture.score(X, y))
    assert calls and set(calls) == {2}
    assert abs(scores[0] - scores[1]) < 1e-3


def test_fit_many_refuses_mixed_powers():
    X, y, weights = _problem(2.0, n=50)
    experts = [WeightedTweedieRegressor(power=2.0), WeightedTweedieRegressor(power=3.0)]
    with pytest.raises(ValueError, match=r"must share power; got \[2.0, 3.0\]"):
        WeightedTweedieRegressor._fit_many(experts, X, y, weights[:, :2].copy())


def test_negative_target_refused():
    X = np.arange(4.0)[:, None]
    with pytest.raises(
        ValueError,
        match=(
            r"^y has negative values, but a Tweedie model with power=1.0 needs y >= 0 "
            r"\(counts, or non-negative amounts\); remove or correct those rows.$"
        ),
    ):
        WeightedTweedieRegressor(power=1.0).fit(X, [1.0, -1.0, 2.0, 0.0])


def test_zero_target_refused_for_gamma():
    X = np.arange(4.0)[:, None]
    with pytest.raises(
        ValueError,
        match=(
            r"^y has zero or negative values, but a Tweedie model with power=2.0 needs y > 0; "
            r"use a power in \[1, 2\) \(Poisson or compound Poisson-gamma\) for targets with "
            r"zeros, or remove those rows.$"
        ),
    ):
        WeightedTweedieRegressor(power=2.0).fit(X, [1.0, 0.0, 2.0, 3.0])
    # Zeros are fine below power 2.
    WeightedTweedieRegressor(power=1.5).fit(X, [1.0, 0.0, 2.0, 3.0])


def test_max_iter_warns():
    X, y, weights = _problem(1.0)
    with pytest.warns(ConvergenceWarning, match="did not converge for expert 0 "):
        _, _, n_iter = fit_log_link_glms(X, y, weights, 1.0, 0.0, max_iter=1)
    assert np.all(n_iter == 1)


def test_line_search_failure_stops_only_that_expert(monkeypatch):
    """From a mean far below the data, Newton's full step overshoots and must be halved."""
    X, y, weights = _problem(1.0)
    start = np.zeros((3, 4)), np.array([-10.0, 0.3, -10.0])
    reference = fit_log_link_glms(X, y, weights, 1.0, 0.01)
    coef, intercept, n_iter = fit_log_link_glms(X, y, weights, 1.0, 0.01, *start)
    np.testing.assert_allclose(coef, reference[0], rtol=0, atol=1e-7)
    np.testing.assert_allclose(intercept, reference[1], rtol=0, atol=1e-7)
    # Without halvings experts 0 and 2 stop where they are; expert 1 goes on.
    monkeypatch.setattr(_glm, "_MAX_HALVINGS", 0)
    with pytest.warns(
        ConvergenceWarning,
        match=r"expert 0 \(line search failed\), "
        r"expert 2 \(line search failed\)",
    ):
        coef, intercept, n_iter = fit_log_link_glms(X, y, weights, 1.0, 0.01, *start)
    np.testing.assert_array_equal(coef[[0, 2]], 0.0)
    np.testing.assert_array_equal(intercept[[0, 2]], -10.0)
    np.testing.assert_array_equal(n_iter[[0, 2]], 1)
    np.testing.assert_allclose(coef[1], reference[0][1], rtol=0, atol=1e-7)


def test_zero_targets_column():
    """All the targets an expert sees are zero: its mean goes to zero, without warnings."""
    X, y, weights = _problem(1.0, n=200)
    y[:100] = 0.0
    weights[100:, 0] = 0.0
    _, intercept, _ = fit_log_link_glms(X, y, weights, 1.0, 1.0)
    assert intercept[0] < np.log(1e-8)


def test_doctest():
    failures, tried = doctest.testmod(_glm, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried > 0 and failures == 0


@parametrize_with_checks([WeightedTweedieRegressor(), WeightedTweedieRegressor(power=2.0)])
def test_sklearn_compatible(estimator, check):
    check(estimator)
