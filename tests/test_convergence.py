"""EM that reaches its optimum: the starts, the accelerator and the stopping rule."""

import sys
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression

from skmoe import MixtureOfExpertsRegressor
from skmoe.gates import SoftmaxGate, TreeGate
from skmoe.gates._softmax import _inner_tol


def overlapping_lines(n_samples=1500, seed=0):
    """Two noisy regimes with close slopes, mixed everywhere: EM's slow case."""
    rng = np.random.RandomState(seed)
    X = rng.uniform(-2, 2, size=(n_samples, 1))
    regime = rng.uniform(size=n_samples) < 0.5 + 0.2 * np.tanh(X[:, 0])
    y = np.where(regime, 1.0 * X[:, 0], 1.6 * X[:, 0] + 0.3) + 0.6 * rng.randn(n_samples)
    return X, y


def parallel_lines(n_samples=600, seed=0):
    """Two regimes that differ in y only: same x distribution, intercepts -2 and 2."""
    rng = np.random.RandomState(seed)
    X = rng.uniform(-3, 3, size=(n_samples, 1))
    regime = rng.uniform(size=n_samples) < 0.5
    y = 0.5 * X[:, 0] + np.where(regime, 2.0, -2.0) + 0.5 * rng.randn(n_samples)
    return X, y


def test_acceleration_reaches_the_same_optimum_in_far_fewer_iterations():
    X, y = overlapping_lines()
    # Exact M-steps (every row refits every expert), so that EM itself is monotone.
    params = dict(
        estimator=LinearRegression(),
        gate=SoftmaxGate(C=np.inf),
        init="random",
        min_responsibility=0.0,
        tol=1e-8,
        max_iter=20_000,
        random_state=0,
    )
    plain = MixtureOfExpertsRegressor(2, accelerate=False, **params).fit(X, y)
    fast = MixtureOfExpertsRegressor(2, accelerate=True, **params).fit(X, y)
    assert plain.converged_ and fast.converged_
    assert fast.log_likelihood_ == pytest.approx(plain.log_likelihood_, rel=1e-6)
    # Measured: 56 M-steps instead of 172.
    assert fast.n_iter_ * 2.5 < plain.n_iter_, (fast.n_iter_, plain.n_iter_)
    # The safeguard keeps the recorded path monotone.
    assert np.all(np.diff(fast.log_likelihood_history_) >= -1e-10)


def test_acceleration_does_not_change_a_model_without_vector_parameters():
    """A tree gate has no parameter vector: the accelerator is a no-op."""
    X, y = overlapping_lines(600)
    # init="kmeans": the tree gate's own start is a softmax-gated fit, which accelerates.
    params = dict(estimator=LinearRegression(), gate=TreeGate(), init="kmeans", random_state=0)
    plain = MixtureOfExpertsRegressor(2, accelerate=False, **params).fit(X, y)
    fast = MixtureOfExpertsRegressor(2, accelerate=True, **params).fit(X, y)
    assert_allclose(fast.log_likelihood_history_, plain.log_likelihood_history_)


def test_stopping_rule_does_not_stop_on_a_plateau():
    moe = MixtureOfExpertsRegressor(tol=1e-4)
    # Gains of 5e-5 shrinking by 0.1% per step: 0.05 still ahead.
    crawl = np.cumsum([1.0, 5e-5 / 0.999, 5e-5])
    assert not moe._converged(list(crawl))
    # The same last gain, halving each step: 5e-5 ahead.
    settled = np.cumsum([1.0, 1e-4, 5e-5])
    assert moe._converged(list(settled))
    # A last change above tol never converges; a small decrease after a small change does.
    assert not moe._converged([0.0, 1.0, 1.0 + 2e-4])
    assert moe._converged([1.0, 1.0 + 5e-5, 1.0 + 4e-5])
    # One small change after a steep climb says nothing about what is left.
    assert not moe._converged([0.0, 1.8e-3, 1.8e-3 + 3e-5])


def test_gate_is_solved_as_precisely_as_em_asks():
    assert _inner_tol(1e-6, None) == 1e-6  # a fit of the gate alone: to its own tol
    assert _inner_tol(1e-6, np.inf) == 1e-2  # EM's first step: loosely
    assert _inner_tol(1e-6, 1e-3) == pytest.approx(1e-4)
    assert _inner_tol(1e-6, 1e-12) == 1e-6


def test_auto_starts_differ_and_are_recorded():
    X, y = parallel_lines()
    moe = MixtureOfExpertsRegressor(2, estimator=LinearRegression(), n_init=5, random_state=0)
    moe.fit(X, y)
    assert list(moe.init_methods_) == ["kmeans", "residuals", "random", "residual_tree", "kmeans"]
    assert moe.init_log_likelihoods_.shape == (5,)
    assert np.unique(moe.init_log_likelihoods_.round(8)).size > 1
    assert moe.log_likelihood_ == moe.init_log_likelihoods_.max()


def test_tree_gates_start_from_softmax_warm_ups_of_each_kind():
    X, y = parallel_lines(300)
    moe = MixtureOfExpertsRegressor(
        2, estimator=LinearRegression(), gate="tree", n_init=3, random_state=0, max_iter=30
    ).fit(X, y)
    assert list(moe.init_methods_) == ["softmax", "softmax(residuals)", "softmax(random)"]


def test_only_the_best_short_run_continues(capsys):
    X, y = overlapping_lines(600)
    MixtureOfExpertsRegressor(
        2,
        estimator=LinearRegression(),
        n_init=6,
        tol=1e-10,
        max_iter=500,
        verbose=1,
        random_state=0,
    ).fit(X, y)
    out = capsys.readouterr().out
    assert out.count("paused (short run)") == 6
    assert out.count("EM converged") + out.count("EM did not converge") == 1


def test_the_continued_start_is_kept_over_paused_ones_at_the_same_optimum():
    # Most starts reach the same optimum within 20 iterations; a paused one
    # passed the converged, continued one by 1.4e-10 and was kept
    # unconverged (with a ConvergenceWarning).
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(0.0, 1e-3, size=400), rng.uniform(0.0, 1e4, size=400)])
    labels = rng.uniform(size=400) < 1 / (1 + np.exp(-(X[:, 1] - 5e3) / 500.0))
    y = np.where(labels, -3000.0, 3000.0) * X[:, 0] + 3.0 * labels + 1e-4 * X[:, 1]
    y += 0.4 * rng.normal(size=400)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        moe = MixtureOfExpertsRegressor(
            2, n_init=10, tol=1e-10, max_iter=5000, random_state=0
        ).fit(X, y)
    assert moe.converged_ and moe.n_iter_ > 20
    assert moe.log_likelihood_ > moe.init_log_likelihoods_.max() - 1e-8


def test_residual_start_separates_regimes_that_differ_in_y_only():
    X, y = parallel_lines()
    moe = MixtureOfExpertsRegressor(
        2, estimator=LinearRegression(), init="residuals", random_state=0
    ).fit(X, y)
    intercepts = np.sort([expert.intercept_ for expert in moe.experts_])
    assert_allclose(intercepts, [-2.0, 2.0], atol=0.15)
    assert_allclose([expert.coef_[0] for expert in moe.experts_], [0.5, 0.5], atol=0.05)


@pytest.mark.parametrize("init", ["residuals", "residual_tree"])
def test_residual_starts_work_for_classification(init):
    from skmoe import MixtureOfExpertsClassifier

    rng = np.random.RandomState(0)
    X = rng.uniform(-3, 3, size=(400, 1))
    y = (np.abs(X[:, 0]) + 0.3 * rng.randn(400) > 1.5).astype(int)
    moe = MixtureOfExpertsClassifier(2, init=init, random_state=0).fit(X, y)
    assert moe.init_methods_[0] == init
    assert moe.score(X, y) > 0.85


def test_warnings_point_at_the_users_call():
    # EM warns deep inside fit; the warning names this file and line.
    import warnings

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    y = X[:, 0] + rng.normal(size=300)
    model = MixtureOfExpertsRegressor(3, max_iter=2, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        model.fit(X, y)
    assert caught and {(w.filename, w.lineno) for w in caught} == {(__file__, line)}
