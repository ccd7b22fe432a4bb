"""skmoe inside scikit-learn's tooling: pipelines, search, cloning, pickling, pandas."""

import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor, SoftmaxGate

pd = pytest.importorskip("pandas")  # these tests take DataFrames


@pytest.fixture(scope="module")
def regression_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3)) * [1.0, 100.0, 0.01]
    y = np.where(X[:, 0] > 0, 2 * X[:, 0], -X[:, 0]) + 0.1 * rng.normal(size=400)
    return X, y


def test_inside_a_pipeline(regression_data):
    X, y = regression_data
    pipe = make_pipeline(
        StandardScaler(),
        MixtureOfExpertsRegressor(2, estimator=LinearRegression(), random_state=0),
    )
    assert pipe.fit(X, y).score(X, y) > 0.95
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.9)


def test_grid_search_over_n_experts_and_expert_hyperparameter(regression_data):
    X, y = regression_data
    search = GridSearchCV(
        MixtureOfExpertsRegressor(estimator=Ridge(), random_state=0),
        {"n_experts": [1, 2], "estimator__alpha": [1e-3, 1e3]},
        cv=3,
    ).fit(X, y)
    # A kink needs two experts, and a huge ridge penalty flattens them.
    assert search.best_params_ == {"n_experts": 2, "estimator__alpha": 1e-3}
    assert search.best_estimator_.experts_[0].alpha == 1e-3


def test_grid_search_over_the_gate_penalty(regression_data):
    X, y = regression_data
    search = GridSearchCV(
        MixtureOfExpertsRegressor(
            2, estimator=LinearRegression(), gate=SoftmaxGate(), random_state=0
        ),
        {"gate__C": [1e-4, 1e2]},
        cv=3,
    ).fit(X, y)
    # A gate penalised to uselessness cannot switch between the two slopes.
    assert search.best_params_ == {"gate__C": 1e2}
    assert search.best_estimator_.gate_.C == 1e2


def test_heterogeneous_experts_with_nested_parameters(regression_data):
    X, y = regression_data
    moe = MixtureOfExpertsRegressor(
        2,
        estimator=[("linear", Ridge()), ("tree", DecisionTreeRegressor(max_depth=2))],
        random_state=0,
    )
    params = moe.get_params()
    assert params["linear__alpha"] == 1.0 and params["tree__max_depth"] == 2
    moe.set_params(linear__alpha=5.0, tree__max_depth=3)
    moe.fit(X, y)
    assert isinstance(moe.experts_[0], Ridge) and moe.experts_[0].alpha == 5.0
    assert isinstance(moe.experts_[1], DecisionTreeRegressor)
    assert moe.experts_[1].get_depth() <= 3
    search = GridSearchCV(moe, {"tree__max_depth": [1, 3]}, cv=2).fit(X, y)
    assert search.best_params_["tree__max_depth"] in (1, 3)


def test_clone_keeps_parameters_and_drops_the_fit(regression_data):
    X, y = regression_data
    moe = MixtureOfExpertsRegressor(3, estimator=Ridge(alpha=2.0), random_state=4).fit(X, y)
    copy = clone(moe)
    assert copy.get_params()["estimator__alpha"] == 2.0
    assert copy.n_experts == 3 and not hasattr(copy, "experts_")


@pytest.mark.parametrize("n_jobs", [None, 2])
def test_pickle_round_trip_predicts_identically(regression_data, n_jobs):
    X, y = regression_data
    moe = MixtureOfExpertsRegressor(2, random_state=0, n_jobs=n_jobs).fit(X, y)
    restored = pickle.loads(pickle.dumps(moe))
    assert_array_equal(restored.predict(X), moe.predict(X))
    assert_array_equal(restored.log_likelihood(X, y), moe.log_likelihood(X, y))
    yc = (y > 0).astype(int)
    clf = MixtureOfExpertsClassifier(2, random_state=0, n_jobs=n_jobs).fit(X, yc)
    assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X), clf.predict_proba(X))


def test_dataframe_records_feature_names_and_selects_by_name():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(300, 3)), columns=["regime", "x1", "x2"])
    y = np.where(df["regime"] > 0, 2 * df["x1"], -2 * df["x2"]) + 0.1 * rng.normal(size=300)
    moe = MixtureOfExpertsRegressor(
        2,
        estimator=LinearRegression(),
        gate_features=["regime"],
        expert_features=["x1", "x2"],
        random_state=0,
    ).fit(df, y)
    assert_array_equal(moe.feature_names_in_, ["regime", "x1", "x2"])
    assert_array_equal(moe.gate_features_, [0])
    assert_array_equal(moe.expert_features_, [1, 2])
    assert_allclose(moe.predict(df), moe.predict(df.to_numpy()))
    mask = MixtureOfExpertsRegressor(
        2,
        estimator=LinearRegression(),
        gate_features=[True, False, False],
        expert_features=[1, 2],
        random_state=0,
    ).fit(df.to_numpy(), y)
    assert_allclose(mask.predict(df.to_numpy()), moe.predict(df), rtol=1e-10)


def test_classifier_in_grid_search():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    search = GridSearchCV(
        MixtureOfExpertsClassifier(estimator=LogisticRegression(), random_state=0),
        {"n_experts": [1, 4], "estimator__C": [0.1, 10.0]},
        cv=3,
    ).fit(X, y)
    assert search.best_params_["n_experts"] == 4  # XOR needs several linear experts
