"""MixtureOfExpertsClassifier: beats a single expert where the truth is gated, aligns classes."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from skmoe import MixtureOfExpertsClassifier
from skmoe._multinomial import capped_iterations
from skmoe.likelihoods import CategoricalLikelihood


def test_beats_a_single_logistic_regression(two_logistic_experts):
    """Two gated logistic experts: at least 0.10 more held-out accuracy than one."""
    X, y, X_test, y_test = two_logistic_experts
    single = LogisticRegression().fit(X, y).score(X_test, y_test)
    # About half of single starts find the switch on x0 (the others settle on a
    # gate over x1, a local optimum): five starts make missing it unlikely.
    moe = MixtureOfExpertsClassifier(2, n_init=5, random_state=0).fit(X, y)
    mixture = moe.score(X_test, y_test)
    assert mixture >= single + 0.10, (mixture, single)
    # The gate learnt the switch on x0, and the experts the opposite slopes on x1.
    assert abs(moe.gate_.coef_[0, 0] - moe.gate_.coef_[0, 1]) > 2.0
    slopes = sorted(expert.coef_[0, 1] for expert in moe.experts_)
    assert slopes[0] < -1.5 and slopes[1] > 1.5


def test_predict_proba_is_the_gated_mixture(two_logistic_experts):
    X, y, X_test, _ = two_logistic_experts
    moe = MixtureOfExpertsClassifier(2, random_state=0).fit(X, y)
    proba = moe.predict_proba(X_test)
    gate, experts = moe.predict_gate(X_test), moe.predict_experts(X_test)
    assert experts.shape == (X_test.shape[0], 2, 2)
    assert_allclose(proba, (gate[:, :, None] * experts).sum(axis=1), rtol=1e-12)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert_allclose(moe.predict_log_proba(X_test), np.log(proba), rtol=1e-12)
    assert_array_equal(moe.predict(X_test), moe.classes_[proba.argmax(axis=1)])


def test_log_likelihood_is_log_probability_of_the_label():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = np.array(["cat", "dog", "emu"])[rng.integers(0, 3, size=200)]
    moe = MixtureOfExpertsClassifier(2, random_state=0).fit(X, y)
    assert_array_equal(moe.classes_, ["cat", "dog", "emu"])
    proba = moe.predict_proba(X)
    expected = np.log(proba[np.arange(200), np.searchsorted(moe.classes_, y)])
    assert_allclose(moe.log_likelihood(X, y), expected, rtol=1e-10)
    # The training log-likelihood is the weighted mean of the same quantity.
    assert_allclose(moe.log_likelihood_, expected.mean(), rtol=1e-6)


def test_expert_missing_a_class_is_aligned_to_all_classes():
    """An expert that saw classes 0 and 2 only gives class 1 probability zero."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 2))
    y = np.where(X[:, 0] > 0, 2, 0)
    expert = DecisionTreeClassifier(max_depth=1).fit(X, y)
    likelihood = CategoricalLikelihood(np.array([0, 1, 2]))
    proba = likelihood.expert_output(expert, X)
    assert proba.shape == (50, 3)
    assert_array_equal(proba[:, 1], 0.0)
    assert_allclose(proba[:, [0, 2]], expert.predict_proba(X))
    # Scoring a class the expert never saw is floored, not -inf.
    gate_logits = np.zeros((50, 1))
    resp, log_lik = likelihood.e_step(
        np.ones(50, dtype=np.intp), proba[:, None, :], {}, gate_logits, 1
    )
    assert_allclose(log_lik, np.log(likelihood.min_proba))
    assert_allclose(resp, 1.0)


def test_early_refits_take_one_newton_step():
    """Before EM's tail each logistic expert's refit is one Newton step (a
    generalised EM step), for skmoe's experts and LogisticRegression alike."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 3))
    logits = np.where(X[:, :1] > 0, X @ [[2.0, 0, -2], [0, 1, 0], [1, 0, 0]], -X @ np.eye(3))
    y = (logits + rng.gumbel(size=logits.shape)).argmax(axis=1)
    for estimator in (None, LogisticRegression()):
        early = MixtureOfExpertsClassifier(
            2, estimator=estimator, max_iter=2, tol=0.0, random_state=0
        )
        with pytest.warns(ConvergenceWarning):
            early.fit(X, y)
        assert [np.max(expert.n_iter_) for expert in early.experts_] == [1, 1]


def test_early_cap_spares_lbfgs_sized_experts():
    # One L-BFGS step is a gradient step: too little for a partial refit.
    assert capped_iterations([100, 50], 1, 80) == [1, 1]
    assert capped_iterations([100, 50], 1, 81) == [100, 50]
    assert capped_iterations([100, 50], None, 10) == [100, 50]
