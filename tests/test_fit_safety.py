"""Fits are all or nothing, long fits are watchable and stoppable, parameters as documented."""

import ast
import inspect
import os
import re
import signal
import sys
import threading

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GridSearchCV
from sklearn.tree import DecisionTreeRegressor
from sklearn.utils.validation import check_is_fitted

from skmoe import (
    HMEGate,
    MixtureOfExpertsClassifier,
    MixtureOfExpertsRegressor,
    SoftmaxGate,
    TreeGate,
)
from skmoe.exceptions import ExpertFitError
from skmoe.experts import WeightedLeastSquares


class FailingRegressor(RegressorMixin, BaseEstimator):
    """A linear expert whose calls to fit raise ``error`` from the ``fail_at``-th on."""

    def __init__(self, fail_at=None, error="value"):
        self.fail_at = fail_at
        self.error = error

    def fit(self, X, y, sample_weight=None):
        FailingRegressor.calls += 1
        if self.fail_at is not None and FailingRegressor.calls >= self.fail_at:
            if self.error == "interrupt":
                raise KeyboardInterrupt
            raise ValueError("the expert's own complaint")
        self.model_ = LinearRegression().fit(X, y, sample_weight=sample_weight)
        return self

    def predict(self, X):
        return self.model_.predict(X)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = np.where(X[:, 0] > 0, 2 * X[:, 1], -X[:, 1]) + 0.1 * rng.normal(size=300)
    return X, y


def _fitted_state(model):
    return {key: value for key, value in vars(model).items() if key.endswith("_")}


@pytest.mark.parametrize("error", ["value", "interrupt"])
@pytest.mark.parametrize("refit", [False, True])
def test_a_failing_expert_leaves_the_estimator_as_it_was(data, error, refit):
    X, y = data
    model = MixtureOfExpertsRegressor(2, estimator=FailingRegressor(), random_state=0)
    FailingRegressor.calls = 0
    if refit:
        model.fit(X, y)
    before = _fitted_state(model)
    prediction = model.predict(X) if refit else None
    # Two experts per M-step: the fifth call is expert1's refit at EM iteration 1.
    model.set_params(estimator=FailingRegressor(fail_at=FailingRegressor.calls + 4, error=error))
    expected = KeyboardInterrupt if error == "interrupt" else ExpertFitError
    with pytest.raises(expected) as caught:
        model.fit(X, y)
    if error == "value":
        assert str(caught.value).startswith(
            "Expert 'expert1' (FailingRegressor) failed to fit on its "
        )
        assert "at EM iteration 1: ValueError: the expert's own complaint" in str(caught.value)
        assert isinstance(caught.value.__cause__, ValueError)
    if sys.version_info >= (3, 11):  # exception notes
        state = "its previous fit" if refit else "unfitted"
        assert caught.value.__notes__ == [
            f"MixtureOfExpertsRegressor.fit did not finish; the estimator is left as it was "
            f"before ({state})."
        ]
    assert _fitted_state(model).keys() == before.keys()
    if refit:
        assert_array_equal(model.predict(X), prediction)
        assert all(model.experts_[k] is before["experts_"][k] for k in range(2))
    else:
        with pytest.raises(NotFittedError):
            check_is_fitted(model)


def test_a_signal_during_fit_leaves_the_estimator_as_it_was(data):
    X, y = data
    X = np.tile(X, (40, 1))
    y = np.tile(y, 40)
    model = MixtureOfExpertsRegressor(
        3, estimator=LinearRegression(), max_iter=5, random_state=0
    ).fit(X[:300], y[:300])
    prediction = model.predict(X[:300])
    before = _fitted_state(model)
    slow = model.set_params(max_iter=100_000, tol=0.0, estimator=DecisionTreeRegressor())
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            slow.fit(X, y)
    finally:
        timer.cancel()
    assert _fitted_state(model).keys() == before.keys()
    assert model.n_features_in_ == 3 and model.n_iter_ == before["n_iter_"]
    assert_array_equal(model.predict(X[:300]), prediction)


def test_a_failed_refit_on_other_columns_keeps_the_old_columns(data):
    X, y = data
    model = MixtureOfExpertsRegressor(2, random_state=0).fit(X, y)
    wider = np.hstack([X, X[:, :2]])
    with pytest.raises(ValueError, match="sample_weight"):
        model.fit(wider, y, sample_weight=-np.ones(len(y)))
    assert model.n_features_in_ == 3
    assert model.gate_.coef_.shape[0] == 3
    assert model.predict(X).shape == (300,)


def test_a_warm_start_that_fails_leaves_the_fitted_gate_untouched(data):
    X, y = data
    FailingRegressor.calls = 0
    model = MixtureOfExpertsRegressor(
        2,
        estimator=FailingRegressor(),
        warm_start=True,
        random_state=0,
        max_iter=3,
    )
    model.fit(X, y)
    coef = model.gate_.coef_.copy()
    model.set_params(estimator__fail_at=FailingRegressor.calls + 2)
    model.experts_[0].fail_at = model.experts_[1].fail_at = FailingRegressor.calls + 2
    with pytest.raises(ExpertFitError):
        model.fit(X, y)
    assert_array_equal(model.gate_.coef_, coef)


def test_early_stopping_keeps_the_best_held_out_iterate():
    rng = np.random.default_rng(1)
    X = rng.uniform(-3, 3, size=(1500, 2))
    y = np.sin(2 * X[:, 0]) + 0.5 * rng.normal(size=1500)
    model = MixtureOfExpertsRegressor(
        4,
        estimator=DecisionTreeRegressor(max_depth=8),
        early_stopping=True,
        n_iter_no_change=3,
        max_iter=200,
        tol=0.0,
        random_state=0,
    ).fit(X, y)
    history = model.validation_log_likelihood_history_
    # It stopped n_iter_no_change iterations after the best held-out score.
    assert history.size < 201
    best = int(np.argmax(history))
    assert history.size - 1 - best == 3
    assert model.n_iter_ == best
    assert model.converged_
    # The held-out score of the kept model is the best one recorded.
    again = MixtureOfExpertsRegressor(
        4,
        estimator=DecisionTreeRegressor(max_depth=8),
        early_stopping=True,
        n_iter_no_change=3,
        max_iter=200,
        tol=0.0,
        random_state=0,
    ).fit(X, y)
    assert_array_equal(again.predict(X), model.predict(X))


def test_early_stopping_holds_out_stratified_rows_for_a_classifier():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(400, 2))
    y = (X[:, 0] > 1.2).astype(int)  # a rare class
    model = MixtureOfExpertsClassifier(
        2, early_stopping=True, validation_fraction=0.2, random_state=0
    ).fit(X, y)
    assert np.isfinite(model.validation_log_likelihood_history_).all()
    with pytest.raises(ValueError, match="early_stopping cannot hold out validation_fraction"):
        MixtureOfExpertsClassifier(
            2, early_stopping=True, validation_fraction=0.01, random_state=0
        ).fit(X[:50], y[:50])


@pytest.mark.parametrize(
    "name, nested, Gate",
    [
        ("tree", {"gate__max_depth": 3}, TreeGate),
        ("softmax", {"gate__C": 10.0}, SoftmaxGate),
        ("hme", {"gate__C": 10.0}, HMEGate),
    ],
)
def test_a_gate_name_takes_nested_parameters(data, name, nested, Gate):
    X, y = data
    model = MixtureOfExpertsRegressor(2, gate=name).set_params(**nested)
    key, value = next(iter(nested.items()))
    assert isinstance(model.gate, Gate)
    assert model.get_params()[key] == value
    model.fit(X, y)
    assert getattr(model.gate_, key.split("__")[1]) == value


def test_grid_search_over_a_named_gate_parameter(data):
    X, y = data
    search = GridSearchCV(
        MixtureOfExpertsRegressor(
            2, estimator=LinearRegression(), gate="tree", random_state=0, max_iter=10
        ),
        {"gate__max_depth": [1, 3]},
        cv=2,
    ).fit(X, y)
    assert search.best_params_["gate__max_depth"] in (1, 3)
    assert search.best_estimator_.gate_.max_depth == search.best_params_["gate__max_depth"]


def test_top_k_one_is_refused_for_training_and_allowed_for_prediction(data):
    X, y = data
    msg = re.escape("top_k=1 cannot be trained by EM: routing each row to one expert makes")
    with pytest.raises(ValueError, match=msg):
        MixtureOfExpertsRegressor(3, top_k=1).fit(X, y)
    model = MixtureOfExpertsRegressor(3, top_k=2, random_state=0).fit(X, y)
    gate = model.set_params(top_k=1).predict_gate(X)
    assert_array_equal(np.count_nonzero(gate, axis=1), 1)
    # One expert needs no routing decision, so top_k=1 of 1 trains.
    MixtureOfExpertsRegressor(1, top_k=1).fit(X, y)


# ----------------------------------------------------------------------------
# One source of truth for defaults: every signature default is the documented one
# ----------------------------------------------------------------------------


def _documented_defaults(cls):
    """``{name: default text}`` from the numpydoc Parameters section of ``cls``."""
    doc = inspect.getdoc(cls)
    section = doc.split("Parameters\n----------\n", 1)[1].split("\n\nAttributes\n", 1)[0]
    defaults = {}
    for line in section.splitlines():
        match = re.match(r"^(\w[\w, ]*) : .*default=(.+)$", line)
        if match:
            for name in match.group(1).split(", "):
                defaults[name] = match.group(2).strip()
    return defaults


@pytest.mark.parametrize(
    "cls",
    [
        MixtureOfExpertsRegressor,
        MixtureOfExpertsClassifier,
        SoftmaxGate,
        TreeGate,
        HMEGate,
        WeightedLeastSquares,
    ],
)
def test_every_signature_default_is_the_documented_default(cls):
    documented = _documented_defaults(cls)
    signature = inspect.signature(cls.__init__).parameters
    names = [name for name in signature if name != "self"]
    assert sorted(documented) == sorted(names)
    for name in names:
        default = signature[name].default
        text = documented[name]
        try:
            value = ast.literal_eval(text)
        except ValueError:  # a name such as None is literal; np.inf is not
            value = text
        assert value == default or text == str(default), (
            f"{cls.__name__}.{name}: signature {default!r}, docstring {text}"
        )


def test_both_estimators_share_their_defaults():
    regressor = inspect.signature(MixtureOfExpertsRegressor.__init__).parameters
    classifier = inspect.signature(MixtureOfExpertsClassifier.__init__).parameters
    for name, parameter in classifier.items():
        assert regressor[name].default == parameter.default, name


def test_a_warm_start_on_missing_values_the_gate_never_saw_is_refused(data):
    """The gate's encoding is kept across warm starts, so NaN it has no treatment
    for is refused, not passed to the gate."""
    X, y = data
    model = MixtureOfExpertsRegressor(
        2, estimator=DecisionTreeRegressor(max_depth=3), warm_start=True, random_state=0
    ).fit(X, y)
    prediction = model.predict(X)
    X = X.copy()
    X[0, 1] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN in a column the gate uses"):
        model.fit(X, y)
    assert_array_equal(model.predict(X[1:]), prediction[1:])
