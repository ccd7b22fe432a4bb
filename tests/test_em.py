"""The EM engine: monotonicity, restarts, convergence, warm start, determinism, collapse."""

import re
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression, SGDRegressor
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor, SoftmaxGate
from skmoe.exceptions import ExpertCollapseWarning


@pytest.fixture(scope="module")
def small_truth(three_expert_truth):
    _, X, y, _, _ = three_expert_truth
    return X[:1500], y[:1500]


@pytest.mark.parametrize("init", ["kmeans", "random"])
def test_log_likelihood_never_decreases(small_truth, init):
    """Exact M-steps make EM monotone: weighted least squares on every row
    (``min_responsibility=0``) and an unpenalised gate."""
    X, y = small_truth
    moe = MixtureOfExpertsRegressor(
        3,
        estimator=LinearRegression(),
        gate=SoftmaxGate(C=np.inf),
        init=init,
        min_responsibility=0.0,
        tol=0.0,
        max_iter=40,
        random_state=1,
    )
    with pytest.warns(ConvergenceWarning):
        moe.fit(X, y)
    history = moe.log_likelihood_history_
    # Every M-step is recorded, except an accelerator's rejected trial points.
    assert moe.n_iter_ == 40 and 20 <= history.shape[0] <= 41
    decreases = np.diff(history)
    assert np.all(decreases >= -1e-8 * np.abs(history[1:])), decreases.min()
    assert history[-1] > history[0] + 0.1  # it did learn something


def test_warm_start_continues_and_never_decreases(small_truth):
    X, y = small_truth
    # Plain EM: an accelerated cycle spans three iterations, which one-iteration fits cut.
    moe = MixtureOfExpertsRegressor(
        3,
        estimator=LinearRegression(),
        gate=SoftmaxGate(C=np.inf),
        max_iter=1,
        tol=0.0,
        warm_start=True,
        accelerate=False,
        random_state=0,
    )
    scores = []
    with pytest.warns(ConvergenceWarning):
        for _ in range(8):
            scores.append(moe.fit(X, y).log_likelihood_)
    assert np.all(np.diff(scores) >= -1e-8 * np.abs(scores[1:]))
    cold = MixtureOfExpertsRegressor(
        3,
        estimator=LinearRegression(),
        gate=SoftmaxGate(C=np.inf),
        max_iter=8,
        tol=0.0,
        accelerate=False,
        random_state=0,
    )
    with pytest.warns(ConvergenceWarning):
        cold.fit(X, y)
    # 8 warm fits of one iteration each continue the same EM path as one cold fit.
    assert_allclose(scores[-1], cold.log_likelihood_, rtol=1e-8)
    assert_allclose(moe.log_likelihood_history_, cold.log_likelihood_history_, rtol=1e-8)


def test_n_init_keeps_the_best_start(small_truth):
    X, y = small_truth
    moe = MixtureOfExpertsRegressor(
        3, estimator=LinearRegression(), init="random", n_init=4, random_state=0
    ).fit(X, y)
    assert moe.init_log_likelihoods_.shape == (4,)
    assert moe.log_likelihood_ == moe.init_log_likelihoods_.max()
    # Different starts really differ (random Dirichlet responsibilities).
    assert np.ptp(moe.init_log_likelihoods_) > 0


def test_convergence_warning_tells_what_to_try(small_truth):
    X, y = small_truth
    moe = MixtureOfExpertsRegressor(3, max_iter=2, tol=1e-12, random_state=0)
    msg = "EM did not converge in max_iter=2 iterations.*Increase max_iter"
    with pytest.warns(ConvergenceWarning, match=msg):
        moe.fit(X, y)
    assert not moe.converged_
    assert moe.n_iter_ == 2


def test_converged_is_honest(small_truth):
    X, y = small_truth
    moe = MixtureOfExpertsRegressor(
        3, estimator=LinearRegression(), tol=1e-6, max_iter=500, random_state=0
    ).fit(X, y)
    assert moe.converged_
    assert abs(moe.log_likelihood_history_[-1] - moe.log_likelihood_history_[-2]) < 1e-6
    # n_iter_ counts M-steps, including an accelerator's rejected trials.
    assert moe.n_iter_ >= len(moe.log_likelihood_history_) - 1


@pytest.mark.parametrize(
    "make_estimator, expert",
    [
        (MixtureOfExpertsRegressor, DecisionTreeRegressor(max_depth=3, max_features=0.5)),
        (MixtureOfExpertsRegressor, SGDRegressor(max_iter=20, tol=None)),
        (MixtureOfExpertsClassifier, DecisionTreeClassifier(max_depth=3, max_features=0.5)),
    ],
)
def test_same_model_whatever_n_jobs(make_estimator, expert):
    """Experts with their own randomness: a fixed random_state fixes the fit."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = X[:, 0] * X[:, 1] + rng.normal(size=300)
    if make_estimator is MixtureOfExpertsClassifier:
        y = (y > 0).astype(int)
    fits = [
        make_estimator(3, estimator=expert, max_iter=5, random_state=11, n_jobs=n_jobs).fit(X, y)
        for n_jobs in (1, 2)
    ]
    assert_array_equal(fits[0].log_likelihood_history_, fits[1].log_likelihood_history_)
    assert_array_equal(fits[0].predict(X), fits[1].predict(X))
    assert_array_equal(fits[0].predict_gate(X), fits[1].predict_gate(X))


def test_sample_weight_equals_repeated_rows_from_a_shared_start(small_truth):
    """Integer weights are repeated rows, given the same starting responsibilities."""
    X, y = small_truth[0][:300], small_truth[1][:300]
    weights = np.random.default_rng(0).integers(0, 3, size=300)
    start = np.random.default_rng(1).dirichlet(np.ones(3), size=300)
    params = dict(estimator=LinearRegression(), max_iter=30, tol=0.0)
    weighted = MixtureOfExpertsRegressor(3, init=start, **params)
    repeated = MixtureOfExpertsRegressor(3, init=np.repeat(start, weights, axis=0), **params)
    with pytest.warns(ConvergenceWarning):
        weighted.fit(X, y, sample_weight=weights)
        repeated.fit(np.repeat(X, weights, axis=0), np.repeat(y, weights))
    assert_allclose(weighted.predict(X), repeated.predict(X), rtol=1e-6)
    assert_allclose(weighted.log_likelihood_, repeated.log_likelihood_, rtol=1e-8)


def test_collapsed_expert_is_reseeded_and_reported(small_truth):
    X, y = small_truth
    start = np.zeros((X.shape[0], 3))
    start[:, :2] = np.random.default_rng(0).dirichlet([1.0, 1.0], size=X.shape[0])
    moe = MixtureOfExpertsRegressor(3, estimator=LinearRegression(), init=start, random_state=0)
    msg = re.escape("Expert 2 collapsed") + ".*re-seeded on the 500 worst-explained samples"
    with pytest.warns(ExpertCollapseWarning, match=msg):
        moe.fit(X, y)
    assert np.all(np.isfinite(moe.predict(X)))
    assert moe.expert_share_[2] > 0.05  # the re-seeded expert found work


def test_too_many_experts_stay_finite():
    """Far more experts than structure: collapse is handled, never NaN."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = X[:, 0] + 0.01 * rng.normal(size=60)
    moe = MixtureOfExpertsRegressor(12, estimator=LinearRegression(), max_iter=30, random_state=0)
    with warnings.catch_warnings():  # collapse warnings, maybe: this is about the values
        warnings.simplefilter("ignore")
        moe.fit(X, y)
    mean, std = moe.predict(X, return_std=True)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std))
    assert np.all(np.isfinite(moe.log_likelihood(X, y)))
    assert np.all(moe.noise_variance_ > 0)


def test_verbose_reports_progress(small_truth, capsys):
    X, y = small_truth
    MixtureOfExpertsRegressor(
        3, max_iter=3, tol=0.0, verbose=2, accelerate=False, random_state=0
    ).fit(X, y)
    out = capsys.readouterr().out
    assert "EM start 0 (kmeans): initial mean log-likelihood" in out
    lines = [line for line in out.splitlines() if line.startswith("  iteration ")]
    assert len(lines) == 3
    assert re.fullmatch(
        r"  iteration 3/3: mean log-likelihood -?[\d.]+ \(change -?[\d.e+-]+\), "
        r"[\d.e+-]+ s elapsed, about [\d.e+-]+ s left",
        lines[-1],
    ), lines[-1]
    assert "EM did not converge after 3 iterations" in out


def test_classifier_single_expert_is_the_bare_expert():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = rng.integers(0, 3, size=300)
    # Both solved to the optimum (the mixture refits by its own solver).
    expert = LogisticRegression(C=0.5, tol=1e-10, max_iter=1000)
    moe = MixtureOfExpertsClassifier(1, estimator=expert).fit(X, y)
    assert_allclose(moe.predict_proba(X), expert.fit(X, y).predict_proba(X), rtol=1e-7)


def test_training_rows_fall_back_when_the_threshold_leaves_too_little():
    """Rows above min_responsibility, else every row of positive weight, else every row."""
    from types import SimpleNamespace

    from skmoe.likelihoods import CategoricalLikelihood

    resp = np.array(
        [
            [0.80, 0.15, 0.05, 0.0],
            [0.80, 0.18, 0.02, 0.0],
            [0.50, 0.45, 0.05, 0.0],
            [0.10, 0.05, 0.85, 0.0],
        ]
    )
    sample_weight = np.array([1.0, 2.0, 1.0, 0.5])
    full = resp * sample_weight[:, None]
    data = SimpleNamespace(
        sample_weight=sample_weight,
        y_code=np.array([0, 0, 1, 1]),
        n_threads=1,
        likelihood=CategoricalLikelihood(np.array([0, 1])),
    )
    moe = MixtureOfExpertsClassifier(4, min_responsibility=0.08)
    weights, train = moe._training_weights(data, resp, fresh=False)
    rows = [moe._training_rows(weights[:, k], train[k]) for k in range(4)]
    # Expert 0: every row passes the threshold.
    assert rows[0] == slice(None)
    assert_array_equal(weights[:, 0], full[:, 0])
    # Expert 1: rows 0-2 pass and hold both classes; row 3 weighs nothing.
    assert_array_equal(rows[1], [True, True, True, False])
    assert_array_equal(weights[:, 1], [0.15, 0.36, 0.45, 0.0])
    # Expert 2: only row 3 passes, too few: every row of positive weight.
    assert rows[2] == slice(None)
    assert_array_equal(weights[:, 2], full[:, 2])
    # Expert 3 has nothing to learn from: kept as it is.
    assert rows[3] is None
    # A single class everywhere: every row, whatever its weight.
    data.y_code = np.zeros(4, dtype=int)
    weights, train = moe._training_weights(data, resp, fresh=False)
    assert train[:3] == [slice(None)] * 3
    assert_array_equal(weights[:, :3], full[:, :3])
    # At a start's first M-step an expert with nothing to learn from has no
    # parameters to keep: it is fit on every row with the sample weights.
    weights, train = moe._training_weights(data, resp, fresh=True)
    assert train[3] == slice(None)
    assert_array_equal(weights[:, 3], sample_weight)
