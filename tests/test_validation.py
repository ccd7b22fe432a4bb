"""Bad input gets a clear error that names the problem and the fix."""

import re
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe.exceptions import ExpertCollapseWarning, ExpertFitError

pd = pytest.importorskip("pandas")  # these tests take DataFrames

ESTIMATORS = [MixtureOfExpertsRegressor, MixtureOfExpertsClassifier]


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    return X, (X[:, 0] > 0).astype(int)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
@pytest.mark.parametrize("bad, name", [(np.nan, "NaN"), (np.inf, "infinity")])
def test_nan_or_inf_in_X(Estimator, data, bad, name):
    X, y = data
    X = X.copy()
    X[3, 1] = bad
    with pytest.raises(ValueError, match=f"Input X contains {name}"):
        Estimator(random_state=0).fit(X, y)
    model = Estimator(random_state=0).fit(data[0], y)
    with pytest.raises(ValueError, match=f"Input X contains {name}"):
        model.predict(X)


def test_nan_in_y(data):
    X, y = data
    y = y.astype(float)
    y[0] = np.nan
    with pytest.raises(ValueError, match="Input y contains NaN"):
        MixtureOfExpertsRegressor().fit(X, y)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_wrong_number_of_features_at_predict(Estimator, data):
    X, y = data
    model = Estimator(random_state=0).fit(X, y)
    msg = f"X has 3 features, but {Estimator.__name__} is expecting 4 features as input"
    with pytest.raises(ValueError, match=msg):
        model.predict(X[:, :3])


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_more_experts_than_samples(Estimator, data):
    X, y = data
    msg = re.escape("n_experts=5 is larger than n_samples=4; use at most one expert per sample")
    with pytest.raises(ValueError, match=msg):
        Estimator(n_experts=5).fit(X[:4], [0, 1, 0, 1])


def test_single_class(data):
    X, _ = data
    msg = re.escape("y has a single class ('a'); a classifier needs samples of at least 2")
    with pytest.raises(ValueError, match=msg):
        MixtureOfExpertsClassifier().fit(X, ["a"] * len(X))


def test_expert_without_predict_proba(data):
    X, y = data
    msg = re.escape("Expert 'expert0' (LinearSVC) has no predict_proba method")
    with pytest.raises(TypeError, match=msg):
        MixtureOfExpertsClassifier(estimator=LinearSVC()).fit(X, y)


@pytest.mark.parametrize(
    "expert", [KNeighborsRegressor(), make_pipeline(StandardScaler(), KNeighborsRegressor())]
)
def test_expert_without_sample_weight(data, expert):
    X, y = data
    msg = (
        re.escape("Expert 'expert0' (")
        + r"\w+"
        + re.escape(") does not accept sample_weight")
        + ".*responsibility"
    )
    with pytest.raises(TypeError, match=msg):
        MixtureOfExpertsRegressor(estimator=expert).fit(X, y)


def test_expert_list_length_must_match(data):
    X, y = data
    msg = re.escape("estimator lists 1 experts but n_experts=2; set n_experts=1")
    with pytest.raises(ValueError, match=msg):
        MixtureOfExpertsRegressor(2, estimator=[("a", LinearRegression())]).fit(X, y)


def test_invalid_parameter_is_named(data):
    X, y = data
    msg = "The 'n_experts' parameter of MixtureOfExpertsRegressor must be an int in the range"
    with pytest.raises(ValueError, match=msg):
        MixtureOfExpertsRegressor(n_experts=0).fit(X, y)
    with pytest.raises(ValueError, match="The 'gate' parameter of MixtureOfExpertsRegressor"):
        MixtureOfExpertsRegressor(gate="tre").fit(X, y)


def test_init_array_of_wrong_shape(data):
    X, y = data
    msg = re.escape("init has shape (40, 3), but starting responsibilities need shape")
    with pytest.raises(ValueError, match=msg):
        MixtureOfExpertsRegressor(2, init=np.ones((40, 3))).fit(X, y)
    with pytest.raises(ValueError, match="init must be non-negative"):
        MixtureOfExpertsRegressor(2, init=-np.ones((40, 2))).fit(X, y)


def test_feature_selection_errors(data):
    X, y = data
    with pytest.raises(ValueError, match="gate_features names columns, but X has no feature"):
        MixtureOfExpertsRegressor(gate_features=["a"]).fit(X, y)
    with pytest.raises(ValueError, match=re.escape("expert_features has column indices outside")):
        MixtureOfExpertsRegressor(expert_features=[0, 9]).fit(X, y)
    with pytest.raises(ValueError, match="gate_features is a boolean mask of length 2"):
        MixtureOfExpertsRegressor(gate_features=[True, False]).fit(X, y)
    with pytest.raises(ValueError, match="expert_features selects no column"):
        MixtureOfExpertsRegressor(expert_features=[]).fit(X, y)


def test_zero_sample_weights(data):
    X, y = data
    msg = "sample_weight sums to zero|Sample weights must contain at least one non-zero"
    with pytest.raises(ValueError, match=msg):
        MixtureOfExpertsRegressor().fit(X, y, sample_weight=np.zeros(len(X)))
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        MixtureOfExpertsRegressor().fit(X, y, sample_weight=-np.ones(len(X)))


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_not_fitted(Estimator, data):
    with pytest.raises(NotFittedError, match="is not fitted yet"):
        Estimator().predict(data[0])


def test_unknown_label_at_scoring(data):
    X, y = data
    model = MixtureOfExpertsClassifier(random_state=0).fit(X, y)
    with pytest.raises(ValueError, match=re.escape("y has labels not seen during fit: [7]")):
        model.log_likelihood(X, np.full(len(X), 7))


def test_failed_fit_keeps_the_previous_model(data):
    """A refit that fails validation leaves the fitted state intact."""
    X, y = data
    model = MixtureOfExpertsRegressor(random_state=0).fit(X, y)
    before = model.predict(X)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        model.fit(bad, y)
    np.testing.assert_array_equal(model.predict(X), before)


# ----------------------------------------------------------------------------
# The bad-input and degenerate-case matrix (doc/user_guide.rst, "Bad input"):
# one test per row that the tests above do not already cover.
# ----------------------------------------------------------------------------


def _assert_finite_outputs(model, X, y):
    outputs = [model.predict(X), model.predict_gate(X), model.log_likelihood(X, y)]
    if hasattr(model, "predict_proba"):
        outputs.append(model.predict_proba(X))
    else:
        outputs.append(model.predict(X, return_std=True)[1])
    for output in outputs:
        assert np.isfinite(output).all()


def test_nan_in_X_with_experts_that_take_it(data):
    X, y = data
    X = X.copy()
    X[::5, 2] = np.nan
    model = MixtureOfExpertsClassifier(
        2, estimator=HistGradientBoostingClassifier(max_iter=10), random_state=0
    ).fit(X, y)
    _assert_finite_outputs(model, X, y)
    X[0, 0] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        model.predict(X)


def test_inf_in_y(data):
    X, _ = data
    y = X[:, 0].copy()
    y[4] = np.inf
    with pytest.raises(ValueError, match="Input y contains infinity"):
        MixtureOfExpertsRegressor().fit(X, y)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_empty_X(Estimator):
    with pytest.raises(ValueError, match=re.escape("Found array with 0 sample(s)")):
        Estimator().fit(np.empty((0, 3)), np.empty(0))


def test_one_sample():
    model = MixtureOfExpertsRegressor(1).fit([[1.0, 2.0]], [3.0])
    assert_allclose(model.predict([[1.0, 2.0], [0.0, 0.0]]), [3.0, 3.0])


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_one_feature(Estimator, data):
    X, y = data
    model = Estimator(2, random_state=0).fit(X[:, :1], y)
    _assert_finite_outputs(model, X[:, :1], y)


def test_different_feature_names_at_predict(data):
    X, y = data
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    model = MixtureOfExpertsRegressor(random_state=0).fit(frame, y)
    with pytest.raises(ValueError, match="The feature names should match those"):
        model.predict(frame.rename(columns={"a": "z"}))


@pytest.mark.parametrize(
    "weights, message",
    [
        (np.ones(39), re.escape("sample_weight.shape == (39,), expected (40,)!")),
        (np.r_[np.nan, np.ones(39)], "Input sample_weight contains NaN"),
    ],
)
def test_sample_weight_of_wrong_length_or_nan(data, weights, message):
    X, y = data
    with pytest.raises(ValueError, match=message):
        MixtureOfExpertsRegressor().fit(X, y, sample_weight=weights)


def test_constant_y(data):
    X, _ = data
    y = np.full(len(X), 7.0)
    model = MixtureOfExpertsRegressor(2, random_state=0).fit(X, y)
    assert_allclose(model.predict(X), 7.0, atol=1e-6)
    _assert_finite_outputs(model, X, y)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_constant_X(Estimator, data):
    X, y = data
    X = np.ones_like(X)
    model = Estimator(2, random_state=0).fit(X, y)
    _assert_finite_outputs(model, X, y)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_duplicated_rows(Estimator, data):
    X, y = data
    model = Estimator(2, random_state=0).fit(np.vstack([X, X]), np.r_[y, y])
    _assert_finite_outputs(model, X, y)


@pytest.mark.parametrize("scale", [1e12, 1e-12])
def test_targets_of_extreme_scale(scale):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 2))
    y = np.where(X[:, 0] > 0, X[:, 1], -X[:, 1]) + 0.05 * rng.normal(size=400)
    unit = MixtureOfExpertsRegressor(2, random_state=0).fit(X, y)
    scaled = MixtureOfExpertsRegressor(2, random_state=0).fit(X, y * scale)
    _assert_finite_outputs(scaled, X, y * scale)
    # The same model in other units: R2 and predictions scale exactly.
    assert_allclose(scaled.score(X, y * scale), unit.score(X, y), rtol=1e-6)
    assert_allclose(scaled.predict(X) / scale, unit.predict(X), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("scales", [[1e-8, 1e8], [1e8, 1e-8]])
def test_features_of_wildly_different_scales(scales):
    """The gate and the start standardise their inputs, so rescaling the columns
    changes nothing when the experts are scale-free. Experts inherit their own
    conditioning (LinearRegression's lstsq drops a 1e-8 column against a 1e8
    one; trees treat a column spanning less than 1e-7 as constant): put a
    StandardScaler in their pipeline, as here."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(400, 2))
    y = np.where(X[:, 0] > 0, X[:, 1], -X[:, 1]) + 0.05 * rng.normal(size=400)
    expert = make_pipeline(StandardScaler(), LinearRegression())
    unit = MixtureOfExpertsRegressor(2, estimator=expert, random_state=0).fit(X, y)
    scaled = MixtureOfExpertsRegressor(2, estimator=expert, random_state=0).fit(X * scales, y)
    assert_allclose(scaled.predict(X * scales), unit.predict(X), rtol=1e-6, atol=1e-6)
    assert_allclose(scaled.log_likelihood_, unit.log_likelihood_, rtol=1e-6)


def test_expert_whose_fit_raises(data):
    X, y = data

    class Broken(LinearRegression):
        def fit(self, X, y, sample_weight=None):
            raise ArithmeticError("no")

    msg = re.escape("Expert 'expert0' (Broken) failed to fit on its")
    with pytest.raises(ExpertFitError, match=msg) as caught:
        MixtureOfExpertsRegressor(2, estimator=Broken()).fit(X, X[:, 0])
    assert isinstance(caught.value.__cause__, ArithmeticError)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_more_experts_than_distinct_rows(Estimator, data):
    X, y = data
    X, y = np.repeat(X[:6], 10, axis=0), np.repeat(y[:6], 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k-means' and EM's warnings about the degenerate fit
        model = Estimator(8, random_state=0).fit(X, y)
    _assert_finite_outputs(model, X, y)


def test_all_responsibility_on_one_expert(data):
    X, _ = data
    y = X[:, 0]
    start = np.zeros((len(X), 3))
    start[:, 0] = 1.0
    with pytest.warns(ExpertCollapseWarning, match="Expert 1 collapsed"):
        model = MixtureOfExpertsRegressor(3, init=start, random_state=0).fit(X, y)
    _assert_finite_outputs(model, X, y)


def test_an_expert_that_fits_its_rows_exactly(data):
    X, _ = data
    y = np.where(X[:, 0] > 0, X[:, 1], 5.0)  # two noiseless regimes
    model = MixtureOfExpertsRegressor(2, estimator=LinearRegression(), random_state=0).fit(X, y)
    # The noise variances sit at their floor instead of reaching zero.
    assert np.all(model.noise_variance_ >= 1e-6 * y.var() * (1 - 1e-12))
    _assert_finite_outputs(model, X, y)


def test_a_class_that_only_one_expert_sees():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(600, 2))
    y = np.where(X[:, 0] > 0, (X[:, 1] > 0).astype(int), 2 + (X[:, 1] > 0.5))
    y = np.where((X[:, 0] > 0) & (X[:, 1] > 1.5), 4, y)  # a rare class on one side only
    start = np.column_stack([X[:, 0] > 0, X[:, 0] <= 0]).astype(float)
    model = MixtureOfExpertsClassifier(2, init=start, random_state=0).fit(X, y)
    outputs = model.predict_experts(X)
    assert outputs.shape == (600, 2, 5)
    _assert_finite_outputs(model, X, y)
    assert model.score(X, y) > 0.9
