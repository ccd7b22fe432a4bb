"""Property-based tests: any small problem either fits or fails as documented.

Hypothesis draws the problem (rows, columns, experts, classes, gate, top_k,
expert types, sample weights, the shape of the data) and one seed for the
values; the fit must then either succeed or raise one of the errors the
estimators document, and only when that error's condition holds:

* ``top_k > n_experts``: ValueError "top_k=... is larger than n_experts=...;
  ..." (skmoe/_base.py, ``_check_top_k``);
* ``top_k == 1`` and ``n_experts > 1``: ValueError "top_k=1 cannot be
  trained by EM: ..." (the same);
* ``n_experts > n_samples``: ValueError "n_experts=... is larger than
  n_samples=...; ..." (skmoe/_base.py, ``_fit``);
* a classifier given one class: ValueError "y has a single class (...); a
  classifier needs ..." (skmoe/_classification.py);
* ``gate="hme"`` with ``n_experts < 2``: ValueError "HMEGate needs at least
  two experts ..." (skmoe/gates/_hme.py).

A refused fit must leave the estimator unfitted (fits are all or nothing).
Anything else -- another exception, or another warning than
ConvergenceWarning and ExpertCollapseWarning -- fails the test. A fit that
succeeds must give finite outputs from every public prediction method
(``predict_log_proba`` may be ``-inf`` exactly where ``predict_proba`` is 0),
gate and class probabilities in [0, 1] whose rows sum to 1, and the same
numbers, bit for bit, when refitted with the same ``random_state``.

Bugs this suite found are reproduced, minimised, at the end of the file as
regression tests.

Settings are per test (nothing is registered globally); ``derandomize`` makes
the examples the same on every run, and no example database is written.
"""

import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils.validation import check_is_fitted

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe._stats import encode_classes
from skmoe.exceptions import ExpertCollapseWarning
from skmoe.experts import WeightedLeastSquares

# Per property test; the file runs in about 50 s on 2 shared cores.
MAX_EXAMPLES = 100

SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

REGRESSION_EXPERTS = {
    "default": lambda: None,
    "ridge": Ridge,
    "tree": lambda: DecisionTreeRegressor(max_depth=3),
}
CLASSIFICATION_EXPERTS = {
    "default": lambda: None,
    "logistic": LogisticRegression,
    "tree": lambda: DecisionTreeClassifier(max_depth=3),
}


@st.composite
def problems(draw, classification):
    """A fit's parameters and data description, as plain values hypothesis can shrink."""
    n = draw(st.integers(1, 300), label="n_samples")
    d = draw(st.integers(1, 10), label="n_features")
    n_experts = draw(st.integers(1, 6), label="n_experts")
    # None or 2..K in 9 of 10 draws; else 1 or K + 1, which fit documents it refuses.
    routing = draw(st.integers(0, 9), label="routing")
    if routing < 4:
        top_k = None
    elif routing < 9:
        top_k = draw(st.integers(min(2, n_experts), n_experts), label="top_k")
    else:
        top_k = draw(st.sampled_from([1, n_experts + 1]), label="refused top_k")
    gate = draw(st.sampled_from(["softmax", "tree", "hme"]), label="gate")
    experts = CLASSIFICATION_EXPERTS if classification else REGRESSION_EXPERTS
    expert = draw(st.sampled_from([*experts, "mixed"]), label="experts")
    if expert == "mixed":  # a list of (name, estimator), possibly all different
        expert = draw(
            st.lists(st.sampled_from(sorted(experts)), min_size=n_experts, max_size=n_experts),
            label="expert per expert",
        )
    X_kind = draw(
        st.sampled_from(["normal", "integers", "constant column", "duplicated rows"]), label="X"
    )
    if classification:
        y_kind = draw(st.integers(2, 4), label="n_classes")
    else:
        y_kind = draw(st.sampled_from(["smooth", "kinked", "integers", "constant"]), label="y")
    weights = draw(
        st.sampled_from([None, "positive", "with zeros", "counts"]), label="sample_weight"
    )
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    max_iter = draw(st.integers(1, 5), label="max_iter")
    return dict(
        n=n,
        d=d,
        n_experts=n_experts,
        top_k=top_k,
        gate=gate,
        expert=expert,
        X_kind=X_kind,
        y_kind=y_kind,
        weights=weights,
        seed=seed,
        max_iter=max_iter,
    )


def make_data(p, classification):
    """``X``, ``y``, ``sample_weight`` and 7 new rows ``X_new`` for a drawn problem."""
    rng = np.random.default_rng(p["seed"])
    n, d = p["n"], p["d"]

    def features(rows):
        X = rng.normal(size=(rows, d))
        if p["X_kind"] == "integers":  # many ties for trees and k-means
            X = np.round(2 * X)
        elif p["X_kind"] == "constant column":
            X[:, 0] = 3.0
        elif p["X_kind"] == "duplicated rows":
            X = X[rng.integers(0, max(1, rows // 4), size=rows)]
        return X

    X, X_new = features(n), features(7)
    if classification:  # classes from a noisy linear score; with few rows, maybe just one
        n_classes = p["y_kind"]
        score = X @ rng.normal(size=d) + rng.normal(size=n)
        y = np.digitize(score, np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1]))
        y = np.where(rng.uniform(size=n) < 0.2, rng.integers(0, n_classes, size=n), y)
    elif p["y_kind"] == "smooth":
        y = X @ rng.normal(size=d) + 0.1 * rng.normal(size=n)
    elif p["y_kind"] == "kinked":
        y = np.abs(X[:, 0]) * 3 + X[:, -1] + 0.1 * rng.normal(size=n)
    elif p["y_kind"] == "integers":
        y = rng.integers(0, 3, size=n).astype(float)
    else:
        y = np.full(n, 2.5)
    if p["weights"] is None:
        sample_weight = None
    elif p["weights"] == "positive":
        sample_weight = rng.uniform(0.1, 3.0, size=n)
    elif p["weights"] == "with zeros":
        sample_weight = rng.uniform(0.1, 3.0, size=n) * (rng.uniform(size=n) < 0.6)
    else:
        sample_weight = rng.integers(0, 4, size=n).astype(float)
    if sample_weight is not None and sample_weight.sum() == 0:
        sample_weight[0] = 1.0  # some zeros, never all
    return X, y, sample_weight, X_new


def make_model(p, classification):
    experts = CLASSIFICATION_EXPERTS if classification else REGRESSION_EXPERTS
    if isinstance(p["expert"], list):
        default = LogisticRegression if classification else WeightedLeastSquares
        estimator = [
            (f"{name}{k}", experts[name]() or default()) for k, name in enumerate(p["expert"])
        ]
    else:
        estimator = experts[p["expert"]]()
    Model = MixtureOfExpertsClassifier if classification else MixtureOfExpertsRegressor
    return Model(
        p["n_experts"],
        estimator=estimator,
        gate=p["gate"],
        top_k=p["top_k"],
        max_iter=p["max_iter"],
        random_state=p["seed"] % 1000,
    )


def documented_errors(p, y, classification):
    """``(exception type, message pattern)`` of each documented refusal whose condition holds."""
    K, top_k, n = p["n_experts"], p["top_k"], p["n"]
    errors = []
    if top_k is not None and top_k > K:
        errors.append((ValueError, rf"top_k={top_k} is larger than n_experts={K}; "))
    if top_k == 1 and K > 1:
        errors.append((ValueError, r"top_k=1 cannot be trained by EM: "))
    if K > n:
        errors.append((ValueError, rf"n_experts={K} is larger than n_samples={n}; "))
    if classification and np.unique(y).size < 2:
        errors.append((ValueError, r"y has a single class \(.*\); a classifier needs"))
    if p["gate"] == "hme" and K < 2:
        errors.append((ValueError, r"HMEGate needs at least two experts"))
    return errors


def fit_or_refuse(model, X, y, sample_weight, errors):
    """Fit; on a refusal, check that it is a documented one and return None."""
    try:
        return model.fit(X, y, sample_weight=sample_weight)
    except Exception as error:  # noqa: BLE001 -- checked against the documented ones
        with pytest.raises(NotFittedError):  # a failed fit leaves the estimator unfitted
            check_is_fitted(model)
        if not any(
            isinstance(error, kind) and re.match(pattern, str(error)) for kind, pattern in errors
        ):
            raise AssertionError(
                f"fit raised an undocumented {type(error).__name__}: {error}\n"
                f"(documented errors whose condition holds here: {errors})"
            ) from error
        event("refused as documented")
        return None


def outputs(model, X, y, X_new, classification):
    """Every public prediction method's output on the training rows and on new rows."""
    out = {}
    for name, data in [("train", X), ("new", X_new)]:
        out[f"predict {name}"] = model.predict(data)
        out[f"predict_gate {name}"] = model.predict_gate(data)
        out[f"predict_experts {name}"] = model.predict_experts(data)
        if classification:
            out[f"predict_proba {name}"] = model.predict_proba(data)
            out[f"predict_log_proba {name}"] = model.predict_log_proba(data)
        else:
            out[f"predict mean {name}"], out[f"predict std {name}"] = model.predict(
                data, return_std=True
            )
    out["log_likelihood"] = model.log_likelihood(X, y)
    if classification or y.size >= 2:  # scikit-learn's R^2 is undefined (NaN) on one row
        out["score"] = np.asarray(model.score(X, y))
    return out


def check_probabilities(proba, axis, what):
    """Finite, in [0, 1], summing to 1 along ``axis``."""
    assert np.isfinite(proba).all(), what
    assert ((proba >= 0) & (proba <= 1)).all(), what
    assert_allclose(proba.sum(axis=axis), 1.0, rtol=0, atol=1e-9, err_msg=what)


def check_outputs(out, model, classification):
    for name in ["train", "new"]:
        gate = out[f"predict_gate {name}"]
        check_probabilities(gate, 1, f"predict_gate {name}")
        if model.top_k is not None:  # the other experts' probabilities are 0
            assert ((gate > 0).sum(axis=1) <= model.top_k).all()
        experts = out[f"predict_experts {name}"]
        assert np.isfinite(experts).all()
        if classification:
            check_probabilities(experts, 2, f"predict_experts {name}")
            proba = out[f"predict_proba {name}"]
            check_probabilities(proba, 1, f"predict_proba {name}")
            log_proba = out[f"predict_log_proba {name}"]
            assert not np.isnan(log_proba).any() and not np.isposinf(log_proba).any()
            # -inf exactly where the probability is exactly 0 (as documented).
            assert_array_equal(np.isneginf(log_proba), proba == 0)
            assert_array_equal(out[f"predict {name}"], model.classes_[np.argmax(proba, axis=1)])
        else:
            assert np.isfinite(out[f"predict {name}"]).all()
            assert_array_equal(out[f"predict mean {name}"], out[f"predict {name}"])
            std = out[f"predict std {name}"]
            assert np.isfinite(std).all() and (std >= 0).all()
    # Finite for classifiers too: a class probability is floored (min_proba) when scored.
    assert np.isfinite(out["log_likelihood"]).all()
    if "score" in out:
        assert np.isfinite(out["score"])


def run_property(p, classification):
    X, y, sample_weight, X_new = make_data(p, classification)
    errors = documented_errors(p, y, classification)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any other warning fails the example
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", ExpertCollapseWarning)
        model = fit_or_refuse(make_model(p, classification), X, y, sample_weight, errors)
        if model is None:
            return
        assert not errors, f"fit succeeded although it should have refused: {errors}"
        event("fitted")
        out = outputs(model, X, y, X_new, classification)
        check_outputs(out, model, classification)
        # The same random_state gives the same model, bit for bit.
        again = make_model(p, classification).fit(X, y, sample_weight=sample_weight)
        out_again = outputs(again, X, y, X_new, classification)
    for name, value in out.items():
        assert_array_equal(out_again[name], value, err_msg=name, strict=True)


@SETTINGS
@given(problems(classification=False))
def test_regressor_fits_or_refuses_as_documented(p):
    run_property(p, classification=False)


@SETTINGS
@given(problems(classification=True))
def test_classifier_fits_or_refuses_as_documented(p):
    run_property(p, classification=True)


# ----------------------------------------------------------------------
# Bugs found by the properties above, minimised, as regression tests.
# ----------------------------------------------------------------------

THREE_ROWS = np.array([[0.0], [1.0], [2.0]])


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_an_expert_with_no_routed_rows_is_not_evaluated(kind):
    """With top_k, an expert no row is routed to and that has no responsibility
    left is kept as it is, and not evaluated on an empty set of rows."""
    if kind == "regressor":
        model = MixtureOfExpertsRegressor(
            3, estimator=Ridge(), gate="tree", top_k=2, max_iter=1, random_state=0
        )
        y = np.array([0.0, 1.0, 0.0])
    else:
        model = MixtureOfExpertsClassifier(3, gate="tree", top_k=2, max_iter=1, random_state=0)
        y = np.array([0, 1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", ExpertCollapseWarning)
        # Was: ExpertFitError "... failed to predict at EM iteration 1: ValueError:
        # Found array with 0 sample(s) (shape=(0, 1)) ..."
        model.fit(THREE_ROWS, y)
    assert np.isfinite(model.predict(THREE_ROWS)).all()


@pytest.mark.parametrize(
    "Model, estimator, X, y, sample_weight",
    [
        # Each was an error: ExpertFitError wrapping NotFittedError,
        (MixtureOfExpertsRegressor, Ridge(), [[0.0], [1.0]], [0.0, 1.0], [1.0, 0.1]),
        # AttributeError "'WeightedLeastSquares' object has no attribute 'coef_'",
        (MixtureOfExpertsRegressor, None, [[0.0], [1.0]], [0.0, 1.0], [0.0, 1.0]),
        # ExpertFitError wrapping "'LogisticRegression' object has no attribute 'classes_'".
        (MixtureOfExpertsClassifier, None, [[0.0], [1.0], [2.0], [0.0]], [0, 1, 0, 1], None),
    ],
    ids=["Ridge-weighted", "WeightedLeastSquares-weighted", "LogisticRegression-4-experts"],
)
def test_an_expert_reseeding_left_without_rows_at_the_start_is_fitted(
    Model, estimator, X, y, sample_weight
):
    """Re-seeding a collapsed expert in the first M-step may take all the rows of
    another, which is then fitted on every row instead of being left unfitted."""
    model = Model(len(X), estimator=estimator, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", ExpertCollapseWarning)
        model.fit(np.array(X), np.array(y), sample_weight=sample_weight)
    assert np.isfinite(model.predict(np.array(X))).all()


def test_predict_proba_never_exceeds_one():
    """The gate's rows sum to 1 only up to rounding; predict_proba renormalises."""
    X, y = np.array([[2.0], [1.0], [-3.0], [1.0]]), np.array([0, 0, 0, 1])
    model = MixtureOfExpertsClassifier(
        2, estimator=DecisionTreeClassifier(), max_iter=1, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        proba = model.fit(X, y).predict_proba(X)
    assert (proba <= 1).all(), proba  # proba[0, 0] == 1.0000000000000002


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([np.int8, np.int64, np.uint16, bool, np.float64, "U3"]),
    st.lists(st.integers(-3, 120), min_size=1, max_size=60),
)
def test_encode_classes_equals_np_unique(dtype, labels):
    # The counting path (integers within n of each other), the sorting path (wider
    # integers, floats, strings) and booleans all give np.unique's answer.
    y = np.asarray(labels).astype(dtype)
    classes, codes = encode_classes(y)
    expected_classes, expected_codes = np.unique(y, return_inverse=True)
    assert classes.dtype == expected_classes.dtype and codes.dtype == np.intp
    assert_array_equal(classes, expected_classes)
    assert_array_equal(codes, expected_codes.reshape(-1))
