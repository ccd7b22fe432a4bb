"""Each part gets the data it can take: experts X as given, the gate a numeric view.

Also: every public method accepts every memory layout and dtype that
scikit-learn estimators accept.
"""

import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeRegressor

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor

pd = pytest.importorskip("pandas")  # these tests take DataFrames


class RecordingRegressor(RegressorMixin, BaseEstimator):
    """A Ridge that records the type of X it is fitted and evaluated on."""

    seen = []

    def fit(self, X, y, sample_weight=None):
        type(self).seen.append(type(X))
        self.model_ = Ridge().fit(X, y, sample_weight=sample_weight)
        return self

    def predict(self, X):
        type(self).seen.append(type(X))
        return self.model_.predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


@pytest.fixture(scope="module")
def regimes():
    """Two regimes told apart by a categorical column, with missing values in x1."""
    rng = np.random.default_rng(0)
    n = 600
    group = rng.choice(["north", "south", "east"], size=n)
    x0 = rng.uniform(-2, 2, size=n)
    x1 = rng.normal(size=n)
    y = np.where(group == "north", 3 * x0, -2 * x0) + 0.5 * x1 + 0.1 * rng.normal(size=n)
    x1[rng.uniform(size=n) < 0.2] = np.nan
    X = pd.DataFrame({"x0": x0, "x1": x1, "group": pd.Categorical(group)})
    return X, y


def test_categorical_and_missing_columns_reach_experts_that_take_them(regimes):
    X, y = regimes
    moe = MixtureOfExpertsRegressor(
        2,
        estimator=HistGradientBoostingRegressor(max_iter=20, learning_rate=0.3),
        random_state=0,
        max_iter=6,
    ).fit(X, y)
    # Each expert saw the DataFrame with its categorical column.
    assert list(moe.experts_[0].feature_names_in_) == ["x0", "x1", "group"]
    assert moe.experts_[0].is_categorical_.tolist() == [False, False, True]
    # The gate saw one-hot columns and the imputed x1 with its missing indicator.
    assert list(moe.gate_.feature_names_in_) == [
        "x0",
        "x1",
        "missingindicator_x1",
        "group_east",
        "group_north",
        "group_south",
    ]
    assert moe.score(X, y) > 0.95
    assert np.isfinite(moe.predict(X)).all()


def test_the_gate_routes_on_a_categorical_column(regimes):
    X, y = regimes
    moe = MixtureOfExpertsRegressor(
        2,
        estimator=make_pipeline(SimpleImputer(), LinearRegression()),
        gate_features=["group"],
        expert_features=["x0", "x1"],
        random_state=0,
    ).fit(X, y)
    assert moe.score(X, y) > 0.98
    gate = moe.predict_gate(X)
    north = (X["group"] == "north").to_numpy()
    # One expert takes the north, the other the rest.
    assert abs(gate[north, 0].mean() - gate[~north, 0].mean()) > 0.95
    # A category never seen at fit is encoded as all zeros, not an error.
    unseen = X.iloc[:5].copy()
    unseen["group"] = pd.Categorical(["west"] * 5)
    assert np.isfinite(moe.predict(unseen)).all()


def test_an_expert_that_cannot_fit_its_own_rows_is_refit_on_all_rows():
    """An expert that fails on rows where a column is missing throughout.

    (``HistGradientBoostingRegressor`` does since scikit-learn 1.9.)
    """

    class NeedsEveryColumn(HistGradientBoostingRegressor):
        def fit(self, X, y, sample_weight=None):
            if np.isnan(X).all(axis=0).any():
                raise ValueError("a column is missing throughout")
            return super().fit(X, y, sample_weight=sample_weight)

    rng = np.random.default_rng(7)
    X = rng.normal(size=(400, 2))
    y = np.where(X[:, 0] > 0, X[:, 1], -X[:, 0])
    X[X[:, 0] > 0, 1] = np.nan  # missing throughout the first expert's rows
    start = np.column_stack([X[:, 0] > 0, X[:, 0] <= 0]).astype(float)
    expert = NeedsEveryColumn(max_iter=10)
    with pytest.raises(ValueError):
        expert.fit(X[X[:, 0] > 0], y[X[:, 0] > 0])
    moe = MixtureOfExpertsRegressor(
        2, estimator=expert, init=start, max_iter=3, random_state=0
    ).fit(X, y)
    assert np.isfinite(moe.predict(X)).all()


def test_the_tree_gate_takes_missing_values_as_they_are(regimes):
    X, y = regimes
    numeric = X[["x0", "x1"]].to_numpy()
    moe = MixtureOfExpertsRegressor(
        2,
        estimator=HistGradientBoostingRegressor(max_iter=10),
        gate="tree",
        random_state=0,
        max_iter=5,
    ).fit(numeric, y)
    assert moe.gate_encoder_ is None  # NaN went to the tree as they are
    assert np.isfinite(moe.predict(numeric)).all()


def test_softmax_gate_imputes_and_adds_missing_indicators():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 2))
    y = np.where(X[:, 0] > 0, X[:, 1], -X[:, 1])
    X[::7, 1] = np.nan
    moe = MixtureOfExpertsRegressor(
        2, estimator=DecisionTreeRegressor(max_depth=4), random_state=0
    ).fit(X, y)
    assert isinstance(moe.gate_encoder_, SimpleImputer)
    assert moe.gate_.coef_.shape == (3, 2)  # x0, x1 imputed, x1's missing indicator
    assert np.isfinite(moe.predict(X)).all()


def test_missing_values_at_predict_in_a_gate_column_complete_at_fit():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 2))
    y = X[:, 0]
    moe = MixtureOfExpertsRegressor(
        2, estimator=DecisionTreeRegressor(max_depth=2), random_state=0
    ).fit(X, y)
    X[0, 1] = np.nan
    msg = "Input X contains NaN in a column the gate uses, which had no missing values at fit"
    with pytest.raises(ValueError, match=msg):
        moe.predict(X)


def test_sparse_X_reaches_the_experts_and_the_gate_as_csr():
    rng = np.random.default_rng(3)
    dense = rng.normal(size=(400, 6)) * (rng.uniform(size=(400, 6)) < 0.3)
    y = np.where(dense[:, 0] > 0, 2 * dense[:, 1], -dense[:, 1]) + 0.05 * rng.normal(size=400)
    X = sp.csc_matrix(dense)
    RecordingRegressor.seen = []
    params = dict(estimator=RecordingRegressor(), tol=1e-9, max_iter=500, random_state=0)
    moe = MixtureOfExpertsRegressor(2, **params).fit(X, y)
    assert set(RecordingRegressor.seen) == {sp.csr_matrix}
    reference = MixtureOfExpertsRegressor(2, **params).fit(dense, y)
    # The same model whether X is sparse or dense, up to rounding (the gate's
    # sparse path sums in another order), once both have converged.
    assert_allclose(moe.log_likelihood_, reference.log_likelihood_, rtol=1e-5)
    assert_allclose(moe.predict(X), reference.predict(dense), atol=1e-3)


@pytest.mark.parametrize(
    "X_kind, expert, message",
    [
        ("nan", Ridge(), "Input X contains NaN, and expert 'b' (Ridge) does not accept missing"),
        (
            "sparse",
            HistGradientBoostingRegressor(),
            "X is a sparse matrix, and expert 'b' (HistGradientBoostingRegressor) does not accept "
            "sparse input",
        ),
        (
            "categorical",
            Ridge(),
            "X has non-numeric columns ['group'], and expert 'b' (Ridge) does not accept them",
        ),
    ],
)
def test_the_expert_that_cannot_take_X_is_named(X_kind, expert, message):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(60, 2))
    y = X[:, 0].copy()
    if X_kind == "nan":
        X[0, 0] = np.nan
    elif X_kind == "sparse":
        X = sp.csr_matrix(X)
    else:
        X = pd.DataFrame({"x0": X[:, 0], "group": pd.Categorical(["a", "b"] * 30)})
    able = HistGradientBoostingRegressor() if X_kind != "sparse" else Ridge()
    moe = MixtureOfExpertsRegressor(2, estimator=[("a", able), ("b", expert)])
    with pytest.raises(ValueError, match=re.escape(message)):
        moe.fit(X, y)


def test_text_columns_for_histgradientboosting_get_the_category_hint():
    X = pd.DataFrame({"x": np.arange(40.0), "kind": pd.array(["u", "v"] * 20, dtype="string")})
    msg = re.escape(
        "X has text columns ['kind'], and expert 'expert0' "
        "(HistGradientBoostingRegressor) takes categorical columns only as pandas "
        "'category' dtype"
    )
    with pytest.raises(ValueError, match=msg):
        MixtureOfExpertsRegressor(2, estimator=HistGradientBoostingRegressor()).fit(X, X["x"])


def test_a_column_transformer_expert_takes_string_columns():
    rng = np.random.default_rng(5)
    X = pd.DataFrame({"x": rng.normal(size=300), "kind": rng.choice(["u", "v"], size=300)})
    y = np.where(X["kind"] == "u", 2.0, -2.0) * X["x"]
    expert = make_pipeline(
        # An expert fits on its own rows only, so its encoder may meet unseen categories.
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), ["kind"]), remainder="passthrough"
        ),
        Ridge(),
    )
    moe = MixtureOfExpertsRegressor(2, estimator=expert, random_state=0).fit(X, y)
    assert moe.score(X, y) > 0.95


def test_text_in_a_numpy_array_gets_a_hint():
    X = np.array([["a", 1.0], ["b", 2.0]] * 10, dtype=object)
    with pytest.raises(ValueError, match="X has non-numeric values .* Pass a pandas DataFrame"):
        MixtureOfExpertsRegressor().fit(X, np.arange(20.0))


def test_export_text_names_the_columns_after_a_dataframe_fit(regimes):
    X, y = regimes
    moe = MixtureOfExpertsRegressor(
        2,
        estimator=HistGradientBoostingRegressor(max_iter=20),
        gate="tree",
        random_state=0,
        max_iter=5,
    ).fit(X, y)
    text = moe.gate_.export_text()
    assert "group_north" in text and "x[" not in text
    assert moe.gate_.export_text(feature_names=moe.gate_.feature_names_in_) == text


# ----------------------------------------------------------------------------
# Memory layouts and dtypes: every public method, every form of input
# ----------------------------------------------------------------------------


def _forms(A):
    """The same numbers as the layouts and containers users pass (all float64-exact)."""
    wide = np.zeros((A.shape[0], 2 * A.shape[1]))
    wide[:, ::2] = A
    return {
        "C": np.ascontiguousarray(A),
        "F": np.asfortranarray(A),
        "strided": wide[:, ::2],
        "float32": A.astype(np.float32),
        "list": A.tolist(),
        "DataFrame": pd.DataFrame(A),
    }


@pytest.fixture(scope="module")
def layout_models():
    rng = np.random.default_rng(6)
    # Values exact in float32, so that every form holds the same numbers.
    A = np.round(rng.normal(size=(300, 4)) * 8) / 8
    y_reg = np.where(A[:, 0] > 0, A[:, 1], -A[:, 2]) + np.round(rng.normal(size=300) * 8) / 64
    y_clf = (A[:, 1] + A[:, 0] * A[:, 2] > 0).astype(int)
    reg = MixtureOfExpertsRegressor(2, random_state=0).fit(A, y_reg)
    clf = MixtureOfExpertsClassifier(2, random_state=0).fit(A, y_clf)
    return A, y_reg, y_clf, reg, clf


METHODS = {
    "regressor": ["predict", "predict_gate", "predict_experts", "log_likelihood", "score"],
    "classifier": [
        "predict",
        "predict_proba",
        "predict_log_proba",
        "predict_gate",
        "predict_experts",
        "log_likelihood",
        "score",
    ],
}


@pytest.mark.parametrize("form", list(_forms(np.zeros((2, 2)))))
@pytest.mark.parametrize("task", ["regressor", "classifier"])
def test_every_method_takes_every_layout(layout_models, form, task):
    A, y_reg, y_clf, reg, clf = layout_models
    model, y = (reg, y_reg) if task == "regressor" else (clf, y_clf)
    X = _forms(A)[form]
    # y as users get it: a strided column of a larger array.
    table = np.column_stack([A, y])
    y_slice = table[:, -1]
    assert not y_slice.flags.c_contiguous
    for name in METHODS[task]:
        method = getattr(model, name)
        needs_y = name in ("log_likelihood", "score")
        expected = method(A, y) if needs_y else method(A)
        got = method(X, y_slice) if needs_y else method(X)
        # DataFrames reach the experts as they are, in their own (Fortran) layout,
        # so a BLAS product may round differently in the last bit.
        assert_allclose(got, expected, rtol=1e-13, atol=1e-13, err_msg=f"{name}, {form} X")


@pytest.mark.parametrize("form", ["F", "strided", "float32", "list", "DataFrame"])
@pytest.mark.parametrize("task", ["regressor", "classifier"])
def test_fit_takes_every_layout(layout_models, form, task):
    A, y_reg, y_clf, reg, clf = layout_models
    model, y = (reg, y_reg) if task == "regressor" else (clf, y_clf)
    X = _forms(A)[form]
    # y and sample_weight as strided columns of one table.
    table = np.column_stack([A, y, np.ones_like(y)])
    refit = type(model)(2, random_state=0).fit(X, table[:, -2], sample_weight=table[:, -1])
    output = "predict" if task == "regressor" else "predict_proba"
    assert_allclose(getattr(refit, output)(A), getattr(model, output)(A), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("gate", ["softmax", "tree"])
def test_batch_experts_know_the_names_of_dataframe_columns(gate):
    """The default experts are fitted on a float copy, then predict on the DataFrame."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(200, 2)), columns=["a", "b"])
    y = np.abs(X["a"].to_numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "X has feature names, but ... fitted without"
        moe = MixtureOfExpertsRegressor(
            2, gate=gate, expert_features=["b", "a"], random_state=0
        ).fit(X, y)
        moe.predict(X)
    assert list(moe.experts_[0].feature_names_in_) == ["b", "a"]
