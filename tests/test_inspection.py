"""Coefficient tables of the experts and the gate (skmoe.inspection)."""

import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe.inspection import expert_coefficients, gate_coefficients

pd = pytest.importorskip("pandas")


def two_regimes(n=300, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.uniform(-2, 2, size=(n, 2))
    y = np.where(X[:, 0] < 0, 2 * X[:, 0] + 1, -X[:, 0] + X[:, 1]) + 0.1 * rng.randn(n)
    return X, y


@pytest.fixture(scope="module")
def frame_model():
    """Fitted on a DataFrame with a categorical column that only the gate sees."""
    rng = np.random.RandomState(0)
    n = 300
    X = pd.DataFrame(
        {
            "a": rng.randn(n),
            "b": rng.randn(n),
            "group": pd.Categorical(rng.choice(["u", "v", "w"], n)),
        }
    )
    y = np.where(X["group"] == "u", 2 * X["a"], -X["a"] + 1) + 0.1 * rng.randn(n)
    model = MixtureOfExpertsRegressor(
        2, estimator=LinearRegression(), expert_features=["a", "b"], random_state=0
    )
    return model.fit(X, y)


def test_expert_coefficients_values_and_names_on_array():
    X, y = two_regimes()
    model = MixtureOfExpertsRegressor(2, random_state=0).fit(X, y)
    table = expert_coefficients(model)
    assert isinstance(table, pd.DataFrame)
    assert list(table.index) == ["x0", "x1", "intercept"]
    assert list(table.columns) == ["expert 0", "expert 1"]
    for k, expert in enumerate(model.experts_):
        assert_allclose(table[f"expert {k}"].iloc[:2], expert.coef_)
        assert table.loc["intercept", f"expert {k}"] == pytest.approx(expert.intercept_)


def test_expert_coefficients_names_from_dataframe(frame_model):
    table = expert_coefficients(frame_model)
    assert list(table.index) == ["a", "b", "intercept"]
    for k, expert in enumerate(frame_model.experts_):
        assert_allclose(
            table[f"expert {k}"].to_numpy(), np.append(expert.coef_, expert.intercept_)
        )
    # The two regimes' slopes on "a" (2 and -1), in either order.
    assert sorted(np.round(table.loc["a"].to_numpy())) == [-1.0, 2.0]


def test_gate_coefficients_one_hot_names(frame_model):
    table = gate_coefficients(frame_model)
    gate = frame_model.gate_
    assert list(table.index) == ["a", "b", "group_u", "group_v", "group_w", "intercept"]
    assert list(table.index[:-1]) == list(gate.feature_names_in_)
    assert_allclose(table.iloc[:-1].to_numpy(), gate.coef_)
    assert_allclose(table.loc["intercept"].to_numpy(), gate.intercept_)
    # Group "u" selects the expert whose slope on "a" is 2.
    steep = int(np.argmax(expert_coefficients(frame_model).loc["a"].to_numpy()))
    assert np.argmax(table.loc["group_u"].to_numpy()) == steep


def test_gate_coefficients_gate_features_on_array():
    X, y = two_regimes()
    model = MixtureOfExpertsRegressor(2, gate_features=[0], random_state=0).fit(X, y)
    table = gate_coefficients(model)
    assert list(table.index) == ["x0", "intercept"]
    assert_allclose(table.iloc[0].to_numpy(), model.gate_.coef_[0])
    # Expert features from a subset keep the columns' positions in X.
    model = MixtureOfExpertsRegressor(2, expert_features=[1], random_state=0).fit(X, y)
    assert list(expert_coefficients(model).index) == ["x1", "intercept"]


def test_named_experts_are_columns():
    X, y = two_regimes()
    model = MixtureOfExpertsRegressor(
        2, estimator=[("ols", LinearRegression()), ("ridge", Ridge())], random_state=0
    ).fit(X, y)
    assert list(expert_coefficients(model).columns) == ["ols", "ridge"]
    assert list(gate_coefficients(model).columns) == ["ols", "ridge"]
    assert_allclose(expert_coefficients(model)["ridge"].iloc[:2], model.experts_[1].coef_)


def test_classifier_experts_one_column_per_class():
    rng = np.random.RandomState(0)
    X = rng.randn(400, 2)
    labels = np.array(["A", "B", "C"])[np.digitize(X[:, 1] + 0.3 * rng.randn(400), [-0.5, 0.5])]
    model = MixtureOfExpertsClassifier(2, random_state=0).fit(X, labels)
    table = expert_coefficients(model)
    assert list(table.columns) == [f"expert {k}, class {c}" for k in range(2) for c in "ABC"]
    for k, expert in enumerate(model.experts_):
        for row, c in enumerate(expert.classes_):
            column = table[f"expert {k}, class {c}"].to_numpy()
            assert_allclose(column, np.append(expert.coef_[row], expert.intercept_[row]))


def test_hme_gate_one_column_per_branch():
    X, y = two_regimes()
    model = MixtureOfExpertsRegressor(3, gate="hme", random_state=0).fit(X, y)
    table = gate_coefficients(model)
    assert list(table.columns) == ["node 0 left", "node 0 right", "node 1 left", "node 1 right"]
    for j, node in enumerate(model.gate_.nodes_):
        assert_allclose(
            table[f"node {j} right"].to_numpy(), np.append(node.coef_[:, 1], node.intercept_[1])
        )


def test_non_linear_expert_raises():
    X, y = two_regimes()
    model = MixtureOfExpertsRegressor(
        2,
        estimator=[("lin", LinearRegression()), ("tree", DecisionTreeRegressor(max_depth=2))],
        random_state=0,
    ).fit(X, y)
    with pytest.raises(ValueError, match=r"'tree' \(DecisionTreeRegressor\).*model.experts_"):
        expert_coefficients(model)
    pipeline = MixtureOfExpertsRegressor(
        2, estimator=make_pipeline(StandardScaler(), LinearRegression()), random_state=0
    ).fit(X, y)
    with pytest.raises(ValueError, match=r"\(Pipeline\).*last step"):
        expert_coefficients(pipeline)


def test_tree_gate_raises_with_export_text_hint():
    X, y = two_regimes()
    model = MixtureOfExpertsRegressor(2, gate="tree", random_state=0).fit(X, y)
    with pytest.raises(ValueError, match=r"TreeGate.*export_text\(\)"):
        gate_coefficients(model)


def test_unfitted_raises():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        expert_coefficients(MixtureOfExpertsRegressor(2))


def test_structured_array_without_pandas(monkeypatch, frame_model):
    expected = gate_coefficients(frame_model)
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas raises ImportError
    table = gate_coefficients(frame_model)
    assert isinstance(table, np.ndarray)
    assert table.dtype.names == ("feature", "expert 0", "expert 1")
    assert list(table["feature"]) == list(expected.index)
    assert_allclose(table["expert 1"], expected["expert 1"].to_numpy())
