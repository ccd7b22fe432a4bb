"""Free-parameter counts of fitted mixtures (skmoe._complexity), for BIC and AIC.

Every count is written out by hand: gate + experts + likelihood.
"""

import re
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe._complexity import n_parameters
from skmoe.exceptions import ExpertCollapseWarning
from skmoe.experts import WeightedLogisticRegression
from skmoe.gates import BaseGate, HMEGate, TreeGate

D = 3  # features of the data below


@pytest.fixture(scope="module")
def regression_data():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, D))
    # Four linear regimes, one per quadrant of the first two features.
    regime = 2 * (X[:, 0] > 0) + (X[:, 1] > 0)
    slopes = np.array([[2.0, 0.0, 1.0], [-1.0, 1.0, 0.0], [0.0, -2.0, 1.0], [1.0, 1.0, -1.0]])
    y = np.einsum("ij,ij->i", X, slopes[regime]) + 3.0 * regime + 0.1 * rng.normal(size=300)
    return X, y


@pytest.fixture(scope="module")
def classification_data():
    rng = np.random.RandomState(1)
    X = rng.normal(size=(300, D))
    y3 = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)  # three classes
    noise = rng.uniform(size=300) < 0.3  # every class in every expert's region
    y3[noise] = rng.randint(3, size=noise.sum())
    return X, y3


def regressor(n_experts, **params):
    return MixtureOfExpertsRegressor(n_experts, random_state=0, max_iter=20, tol=1e-3, **params)


def classifier(n_experts, **params):
    return MixtureOfExpertsClassifier(n_experts, random_state=0, max_iter=20, tol=1e-3, **params)


def fit_quietly(model, X, y):
    # A short EM may not converge; the count does not depend on it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


# ---------------------------------------------------------------------------
# Gates
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_experts, expected",
    [
        # gate (K-1)(d+1) + experts K(d+1) + variances K
        (2, 1 * 4 + 2 * 4 + 2),
        (4, 3 * 4 + 4 * 4 + 4),
    ],
)
def test_softmax_gate(regression_data, n_experts, expected):
    model = fit_quietly(regressor(n_experts), *regression_data)
    assert model.gate_.coef_.shape == (D, n_experts)
    assert model.gate_._n_parameters() == (n_experts - 1) * (D + 1)
    assert n_parameters(model) == expected


def test_gate_without_inputs_counts_mixing_proportions(regression_data):
    model = fit_quietly(regressor(3, gate_features=[]), *regression_data)
    # gate: K-1 = 2 mixing proportions; experts 3 * 4; variances 3
    assert model.gate_._n_parameters() == 2
    assert n_parameters(model) == 2 + 3 * 4 + 3


@pytest.mark.parametrize(
    "n_experts, expected",
    [
        # K-1 two-way nodes of d+1 each; experts K(d+1); variances K
        (3, 2 * 4 + 3 * 4 + 3),
        (4, 3 * 4 + 4 * 4 + 4),
    ],
)
def test_hme_gate(regression_data, n_experts, expected):
    model = fit_quietly(regressor(n_experts, gate=HMEGate()), *regression_data)
    assert len(model.gate_.nodes_) == n_experts - 1
    assert n_parameters(model) == expected


def test_tree_gate_counts_leaf_probabilities(regression_data):
    # A depth-1 tree on two clear regimes splits once: 2 leaves of K-1 = 2 free probabilities.
    model = fit_quietly(regressor(3, gate=TreeGate(max_depth=1)), *regression_data)
    assert model.gate_.tree_.get_n_leaves() == 2
    assert n_parameters(model) == 2 * 2 + 3 * 4 + 3


def test_tree_gate_without_split_is_one_leaf():
    X = np.arange(20.0).reshape(-1, 1)
    gate = TreeGate(min_samples_leaf=1).fit(X, np.full((20, 3), 1 / 3))  # nothing to split
    assert gate.tree_.get_n_leaves() == 1
    assert gate._n_parameters() == 2
    gate._initialize(X, 4, np.ones(20))  # not fit yet: tree_ is None, one leaf
    assert gate.tree_ is None
    assert gate._n_parameters() == 3


def test_categorical_gate_column_adds_its_categories_less_one(regression_data):
    pd = pytest.importorskip("pandas")
    X, y = regression_data
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["colour"] = pd.Categorical(np.array(["red", "green", "blue"])[np.arange(300) % 3])
    model = fit_quietly(regressor(3, expert_features=["a", "b", "c"]), frame, y)
    # The gate sees 3 numeric + 3 one-hot columns; the one-hot columns sum to
    # the intercept's constant, so one is not free: (K-1)(6 - 1 + 1).
    assert model.gate_.coef_.shape[0] == 6
    assert n_parameters(model) == 2 * 6 + 3 * 4 + 3
    # Against the numeric columns alone: (K-1) * (n_categories - 1) more.
    numeric = fit_quietly(regressor(3), X, y)
    assert n_parameters(model) - n_parameters(numeric) == 2 * 2


def test_categorical_column_under_hme_and_tree_gates(regression_data):
    pd = pytest.importorskip("pandas")
    X, y = regression_data
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["colour"] = pd.Categorical(np.array(["red", "green", "blue"])[np.arange(300) % 3])
    hme = fit_quietly(regressor(3, gate="hme", expert_features=["a", "b", "c"]), frame, y)
    assert hme.gate_._n_parameters(1) == 2 * 6  # 2 nodes of 6 - 1 + 1
    assert n_parameters(hme) == 2 * 6 + 3 * 4 + 3
    tree = fit_quietly(
        regressor(3, gate=TreeGate(max_depth=1), expert_features=["a", "b", "c"]), frame, y
    )
    # The tree has no coefficients: the encoding changes nothing in its count.
    assert n_parameters(tree) == tree.gate_.tree_.get_n_leaves() * 2 + 3 * 4 + 3


def test_gate_without_a_count_is_refused():
    class ConstantGate(BaseGate):
        def _initialize(self, X, n_experts, sample_weight):
            self.n_experts_ = n_experts

        def _m_step(self, X, responsibilities, sample_weight, tol=None, max_iter=None):
            return self

        def _logits(self, X):
            return np.zeros((X.shape[0], self.n_experts_))

    with pytest.raises(ValueError, match="^ConstantGate does not define its number of free "):
        ConstantGate()._n_parameters()


# ---------------------------------------------------------------------------
# Regression experts
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "estimator, per_expert",
    [
        (None, D + 1),  # WeightedLeastSquares: coefficients and intercept
        (LinearRegression(), D + 1),
        (LinearRegression(fit_intercept=False), D),
        (Ridge(alpha=1.0), D + 1),  # nominal count, penalty or not
    ],
)
def test_linear_regression_experts(regression_data, estimator, per_expert):
    model = fit_quietly(regressor(2, estimator=estimator), *regression_data)
    assert n_parameters(model) == 1 * 4 + 2 * per_expert + 2


def test_experts_counted_on_their_own_features(regression_data):
    model = fit_quietly(regressor(2, expert_features=[0]), *regression_data)
    # gate on all 3 columns, experts on one: 1 * 4 + 2 * 2 + 2
    assert n_parameters(model) == 4 + 4 + 2


def test_mixed_expert_list(regression_data):
    experts = [("wls", LinearRegression()), ("origin", LinearRegression(fit_intercept=False))]
    model = fit_quietly(regressor(2, estimator=experts), *regression_data)
    assert n_parameters(model) == 4 + (D + 1) + D + 2


# ---------------------------------------------------------------------------
# Classification experts: no noise variance
# ---------------------------------------------------------------------------


def test_binary_logistic_regression(classification_data):
    X, y3 = classification_data
    model = fit_quietly(classifier(2, estimator=LogisticRegression()), X, y3 > 0)
    assert model.experts_[0].coef_.shape == (1, D)
    assert n_parameters(model) == 1 * 4 + 2 * (D + 1)


def test_multinomial_logistic_regression(classification_data):
    model = fit_quietly(classifier(2, estimator=LogisticRegression()), *classification_data)
    assert model.experts_[0].coef_.shape == (3, D)
    # softmax over 3 classes: 2 free rows of d+1
    assert n_parameters(model) == 1 * 4 + 2 * (2 * (D + 1))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_default_weighted_logistic_regression(classification_data, n_classes):
    X, y3 = classification_data
    y = y3 if n_classes == 3 else y3 > 0
    model = fit_quietly(classifier(2), X, y)
    assert isinstance(model.experts_[0], WeightedLogisticRegression)
    assert model.experts_[0].coef_.shape == (n_classes, D)  # also 2 rows for 2 classes
    assert n_parameters(model) == 1 * 4 + 2 * ((n_classes - 1) * (D + 1))


def test_one_vs_rest_linear_classifier(classification_data):
    estimator = SGDClassifier(loss="log_loss", random_state=0)
    model = fit_quietly(classifier(2, estimator=estimator), *classification_data)
    # one-vs-rest: every class's row of d+1 is free
    assert n_parameters(model) == 1 * 4 + 2 * (3 * (D + 1))


# ---------------------------------------------------------------------------
# Experts without a defined count
# ---------------------------------------------------------------------------


def _refusal(index, name):
    return (
        f"Expert {index} ({name}) has no defined number of free parameters, which BIC and "
        "AIC need: they are defined for linear experts (from sklearn.linear_model or "
        "skmoe.experts) only. Compare models by cross-validated log-likelihood instead: "
        "skmoe.MixtureOfExpertsRegressorCV or skmoe.MixtureOfExpertsClassifierCV, or "
        "skmoe.metrics.log_likelihood_scorer with GridSearchCV."
    )


def test_tree_expert_is_refused(regression_data):
    experts = [("line", LinearRegression()), ("tree", DecisionTreeRegressor(max_depth=2))]
    model = fit_quietly(regressor(2, estimator=experts), *regression_data)
    with pytest.raises(ValueError, match=f"^{re.escape(_refusal(1, 'DecisionTreeRegressor'))}$"):
        n_parameters(model)


def test_pipeline_expert_is_refused(regression_data):
    estimator = make_pipeline(StandardScaler(), LinearRegression())
    model = fit_quietly(regressor(2, estimator=estimator), *regression_data)
    with pytest.raises(ValueError, match=f"^{re.escape(_refusal(0, 'Pipeline'))}$"):
        n_parameters(model)


# ---------------------------------------------------------------------------
# BIC and AIC on the estimators
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_bic_and_aic_formulas(regression_data, classification_data, task):
    if task == "regression":
        X, y = regression_data
        model = fit_quietly(regressor(2), X, y)
    else:
        X, y = classification_data
        model = fit_quietly(classifier(2), X, y)
    log_likelihood = model.log_likelihood(X, y).sum()
    k = n_parameters(model)
    assert model.bic(X, y) == pytest.approx(-2 * log_likelihood + k * np.log(X.shape[0]))
    assert model.aic(X, y) == pytest.approx(-2 * log_likelihood + 2 * k)


def test_bic_and_aic_refuse_experts_without_a_count(regression_data):
    experts = [("line", LinearRegression()), ("tree", DecisionTreeRegressor(max_depth=2))]
    model = fit_quietly(regressor(2, estimator=experts), *regression_data)
    for criterion in (model.bic, model.aic):
        with pytest.raises(ValueError, match=re.escape(_refusal(1, "DecisionTreeRegressor"))):
            criterion(*regression_data)


def test_bic_picks_the_true_number_of_regimes():
    # Three piecewise-linear regimes, jumps at x = -1 and 1.
    rng = np.random.RandomState(0)
    x = rng.uniform(-3, 3, size=600)
    regime = np.digitize(x, [-1.0, 1.0])
    y = np.array([2.0, -1.5, 2.0])[regime] * x + np.array([6.0, 0.0, -6.0])[regime]
    y += 0.3 * rng.normal(size=600)
    X = x.reshape(-1, 1)
    bic = []
    for n_experts in range(1, 6):
        model = MixtureOfExpertsRegressor(
            n_experts, estimator=LinearRegression(), n_init=3, random_state=0
        )
        with warnings.catch_warnings():  # surplus experts may collapse and be re-seeded
            warnings.simplefilter("ignore", ExpertCollapseWarning)
            bic.append(model.fit(X, y).bic(X, y))
    assert np.argmin(bic) + 1 == 3
