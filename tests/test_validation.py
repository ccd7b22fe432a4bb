"""Bad input gets a clear error that names the problem and the fix."""

import re

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor

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
        re.escape("Expert 'expert0' (") + r"\w+" + re.escape(") does not accept sample_weight")
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
        model.score_samples(X, np.full(len(X), 7))


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
