"""What skmoe.plotting draws, read back from the matplotlib artists."""

import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.datasets import make_moons
from sklearn.linear_model import LinearRegression

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PathCollection, PolyCollection, QuadMesh  # noqa: E402

from skmoe.plotting import plot_convergence, plot_gate_regions, plot_regression_1d  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def vee():
    """|x| with noise: two linear experts meeting at 0."""
    rng = np.random.RandomState(0)
    x = rng.uniform(-2, 2, size=300)
    y = np.abs(x) + 0.1 * rng.randn(300)
    model = MixtureOfExpertsRegressor(2, estimator=LinearRegression(), random_state=0)
    return model.fit(x.reshape(-1, 1), y), x, y


def test_regression_1d_draws_experts_mean_interval_and_gate(vee):
    model, x, y = vee
    ax, gate_ax = plot_regression_1d(model, x.reshape(-1, 1), y, confidence=0.8)
    assert len(ax.lines) == model.n_experts + 1
    mean_line = ax.lines[-1]
    grid = mean_line.get_xdata()
    assert grid.min() == pytest.approx(x.min()) and grid.max() == pytest.approx(x.max())
    assert_allclose(mean_line.get_ydata(), model.predict(grid.reshape(-1, 1)))
    for k in range(model.n_experts):
        assert_allclose(ax.lines[k].get_ydata(), model.predict_experts(grid.reshape(-1, 1))[:, k])
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 1
    # The band spans the interval's bounds.
    bounds = model.predict_interval(grid.reshape(-1, 1), 0.8)
    vertices = bands[0].get_paths()[0].vertices
    assert vertices[:, 1].min() == pytest.approx(bounds[:, 0].min())
    assert vertices[:, 1].max() == pytest.approx(bounds[:, 1].max())
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(points) == 1 and points[0].get_offsets().shape == (x.size, 2)
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["data", "80% interval", "expert 0", "expert 1", "mixture mean"]
    assert ax.get_ylabel() == "y"
    assert gate_ax.get_xlabel() == "x0" and gate_ax.get_ylabel() == "gate probability"
    assert len(gate_ax.lines) == model.n_experts
    gate = np.column_stack([line.get_ydata() for line in gate_ax.lines])
    assert_allclose(gate, model.predict_gate(grid.reshape(-1, 1)))
    assert ax.figure is gate_ax.figure


def test_regression_1d_on_given_axes_without_gate_or_data(vee):
    model, x, _ = vee
    fig, ax = plt.subplots()
    returned, gate_ax = plot_regression_1d(model, x, ax=ax)  # a 1-D x is one column
    assert returned is ax and gate_ax is None
    assert len(fig.axes) == 1
    assert not [c for c in ax.collections if isinstance(c, PathCollection)]
    assert ax.get_xlabel() == "x0"


def test_regression_1d_slice_of_a_dataframe():
    pd = pytest.importorskip("pandas")
    rng = np.random.RandomState(1)
    X = pd.DataFrame(
        {
            "size": rng.uniform(0, 4, 200),
            "age": rng.uniform(0, 1, 200),
            "kind": pd.Categorical(rng.choice(["p", "q"], 200)),
        }
    )
    y = np.where(X["size"] < 2, X["size"], 4 - X["size"]) + 0.1 * rng.randn(200)
    model = MixtureOfExpertsRegressor(2, expert_features=["size", "age"], random_state=0)
    model.fit(X, y)
    ax, gate_ax = plot_regression_1d(model, X, y, feature="size")
    assert gate_ax.get_xlabel() == "size"
    grid = ax.lines[-1].get_xdata()
    mode = X["kind"].mode().iloc[0]
    held = pd.DataFrame(
        {
            "size": grid,
            "age": X["age"].median(),
            "kind": pd.Categorical([mode] * grid.size, categories=["p", "q"]),
        }
    )
    assert_allclose(ax.lines[-1].get_ydata(), model.predict(held))


def test_regression_1d_rejects_a_classifier():
    X, y = make_moons(100, noise=0.2, random_state=0)
    model = MixtureOfExpertsClassifier(2, random_state=0).fit(X, y)
    with pytest.raises(TypeError, match="plot_gate_regions"):
        plot_regression_1d(model, X, y)


def test_gate_regions_quadmesh_and_points():
    X, y = make_moons(200, noise=0.2, random_state=0)
    model = MixtureOfExpertsClassifier(3, random_state=0).fit(X, y)
    ax = plot_gate_regions(model, X, resolution=50)
    meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 1
    regions = np.asarray(meshes[0].get_array()).reshape(50, 50)
    assert set(np.unique(regions)) <= set(range(model.n_experts))
    assert np.unique(regions).size > 1
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(points) == 1
    assert_allclose(points[0].get_offsets(), X)
    assert_allclose(points[0].get_array(), model.predict_gate(X).argmax(axis=1))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "expert 0",
        "expert 1",
        "expert 2",
    ]
    assert ax.get_xlabel() == "x0" and ax.get_ylabel() == "x1"


def test_gate_regions_other_columns_held_and_checks():
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(200, 3))
    y = np.where(X[:, 1] > 0, X[:, 0], -X[:, 0]) + 0.1 * rng.randn(200)
    model = MixtureOfExpertsRegressor(2, random_state=0).fit(X, y)
    ax = plot_gate_regions(model, X, features=(0, 1), resolution=20)
    assert ax.get_ylabel() == "x1"
    with pytest.raises(ValueError, match="two different columns"):
        plot_gate_regions(model, X, features=(1, 1))
    with pytest.raises(ValueError, match="out of range"):
        plot_gate_regions(model, X, features=(0, 3))


def test_convergence_line_is_the_history(vee):
    model, _, _ = vee
    ax = plot_convergence(model)
    assert len(ax.lines) == 1
    assert_allclose(ax.lines[0].get_ydata(), model.log_likelihood_history_)
    assert ax.get_xlabel() == "EM iteration"
    assert "log-likelihood" in ax.get_ylabel()


def test_convergence_with_validation_history():
    rng = np.random.RandomState(0)
    X = rng.uniform(-2, 2, size=(300, 1))
    y = np.abs(X[:, 0]) + 0.1 * rng.randn(300)
    model = MixtureOfExpertsRegressor(2, early_stopping=True, random_state=0).fit(X, y)
    fig, ax = plt.subplots()
    assert plot_convergence(model, ax=ax) is ax
    assert_allclose(ax.lines[1].get_ydata(), model.validation_log_likelihood_history_)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "training",
        "validation (held out)",
    ]


def test_missing_matplotlib_names_the_extra(monkeypatch, vee):
    model, _, _ = vee
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "skmoe\[plots\]"'):
        plot_convergence(model)
