"""partial_fit: stepwise online EM against the batch fit, its memory, its refusals."""

import copy
import re
import tracemalloc

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import softmax
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.tree import DecisionTreeRegressor

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe._online import check_partial_fit
from skmoe.gates import TreeGate

pd = pytest.importorskip("pandas")  # these tests take DataFrames

CHUNK = 1000


def chunks(sample, n_chunks, size, seed):
    """``n_chunks`` chunks of ``size`` rows drawn one at a time (never the whole stream)."""
    rng = np.random.default_rng(seed)
    for _ in range(n_chunks):
        yield sample(size, rng)


def stream(model, parts, **kwargs):
    for X, y in parts:
        model.partial_fit(X, y, **kwargs)
    return model


def sample_classes(n, rng):
    """3 classes from a softmax gate over 3 multinomial-logit experts, d=5."""
    truth = np.random.default_rng(2)
    gate = truth.normal(scale=3.0, size=(5, 3))
    coef = truth.normal(scale=2.5, size=(3, 5, 3))
    intercept = truth.normal(size=(3, 3))
    X = rng.normal(size=(n, 5))
    regime = (softmax(X @ gate, axis=1).cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1)
    regime = regime.clip(max=2)
    proba = softmax(np.einsum("nd,ndc->nc", X, coef[regime]) + intercept[regime], axis=1)
    return X, (proba.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1).clip(max=2)


@pytest.fixture(scope="module")
def regression_stream(three_expert_truth):
    """100 chunks of 1000 rows of the 3-expert truth (d=5), and a held-out sample."""
    truth = three_expert_truth[0]
    parts = list(chunks(truth.sample, 100, CHUNK, seed=1))
    X_test, y_test = truth.sample(20_000, np.random.default_rng(2))
    return truth, parts, X_test, y_test


def test_regressor_stream_reaches_the_batch_fit(regression_stream):
    """100,000 rows in 100 chunks: held-out log-likelihood within 1% of a batch fit on them."""
    truth, parts, X_test, y_test = regression_stream
    online = stream(MixtureOfExpertsRegressor(3, random_state=0), parts)
    batch = MixtureOfExpertsRegressor(3, random_state=0).fit(
        np.vstack([X for X, _ in parts]), np.concatenate([y for _, y in parts])
    )
    online_ll = online.log_likelihood(X_test, y_test).mean()
    batch_ll = batch.log_likelihood(X_test, y_test).mean()
    assert abs(online_ll - batch_ll) <= 0.01 * abs(batch_ll)
    assert abs(online_ll - truth.log_likelihood(X_test, y_test).mean()) <= 0.01 * abs(batch_ll)
    assert online.n_iter_ == 100 and online.converged_ is False
    # The running log-likelihood is measured on each chunk before the update.
    assert abs(online.log_likelihood_ - online_ll) <= 0.05 * abs(online_ll)
    assert_allclose(online.expert_share_.sum(), 1.0, rtol=1e-10)
    assert_allclose(np.sort(np.sqrt(online.noise_variance_)), np.sort(truth.noise_std), rtol=0.05)
    assert online.likelihood_params_["variance"] is online.noise_variance_
    assert_array_equal(online.log_likelihood_history_, [online.log_likelihood_])


def test_stream_memory_is_bounded_by_the_chunk(three_expert_truth):
    """tracemalloc: the stream's peak does not grow with its length, and is a few chunks."""
    truth = three_expert_truth[0]
    size = 10_000

    def peak(n_chunks):
        model = MixtureOfExpertsRegressor(3, random_state=0)
        parts = chunks(truth.sample, n_chunks, size, seed=3)
        model.partial_fit(*next(parts))  # the in-memory fit on the first chunk
        tracemalloc.start()
        try:
            stream(model, parts)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    chunk_bytes = size * 6 * 8  # X (5 columns) and y
    short, long = peak(10), peak(40)
    assert long <= 1.1 * short
    assert long <= 6 * chunk_bytes


def test_classifier_stream_reaches_the_batch_fit():
    """30,000 rows of a 3-class problem in 30 chunks: accuracy within 0.01 of the batch fit.

    Both start from the same fit on the first chunk: EM for mixtures of
    logistic experts has many local optima, and on this problem single
    starts of batch EM alone reach held-out accuracies from 0.76 to 0.82. From
    the same start, the stream and batch EM reach the same optimum.
    """
    parts = list(chunks(sample_classes, 30, CHUNK, seed=4))
    X_test, y_test = sample_classes(20_000, np.random.default_rng(54))
    start = MixtureOfExpertsClassifier(3, random_state=0).fit(*parts[0])
    batch = (
        copy.deepcopy(start)
        .set_params(warm_start=True)
        .fit(np.vstack([X for X, _ in parts]), np.concatenate([y for _, y in parts]))
    )
    online = stream(copy.deepcopy(start), parts[1:])  # partial_fit continues the fit
    assert abs(online.score(X_test, y_test) - batch.score(X_test, y_test)) <= 0.01
    batch_ll = batch.log_likelihood(X_test, y_test).mean()
    assert abs(online.log_likelihood(X_test, y_test).mean() - batch_ll) <= 0.01 * abs(batch_ll)
    assert_array_equal(online.classes_, [0, 1, 2])
    assert online.n_iter_ == 29


def test_chunks_may_lack_classes():
    """Classes missing from a chunk, the first one included, keep their columns everywhere."""
    parts = list(chunks(sample_classes, 8, CHUNK, seed=6))
    X, y = parts[0]
    labels = np.array(["a", "b", "c"])
    model = MixtureOfExpertsClassifier(3, random_state=0)
    model.partial_fit(X[y != 2], labels[y[y != 2]], classes=["c", "b", "a"])
    assert_array_equal(model.classes_, labels)
    for expert in model.experts_:
        assert_array_equal(expert.classes_, labels)
    assert model.predict_proba(X)[:, 2].max() < 0.01  # unseen yet: about 1 / rows
    for X, y in parts[1:]:
        model.partial_fit(X[y != 0], labels[y[y != 0]])
    proba = model.predict_proba(X)
    assert proba.shape == (X.shape[0], 3)
    assert proba[:, 2].mean() > 0.1


def test_linear_experts_of_scikit_learn_and_feature_names(regression_stream):
    truth, parts, X_test, y_test = regression_stream
    columns = [f"x{j}" for j in range(5)]
    frames = [(pd.DataFrame(X, columns=columns), y) for X, y in parts[:30]]
    reference = stream(MixtureOfExpertsRegressor(3, random_state=0), frames)
    test_frame = pd.DataFrame(X_test, columns=columns)
    reference_ll = reference.log_likelihood(test_frame, y_test).mean()
    for estimator in (
        LinearRegression(),
        Ridge(alpha=1e-6),
        [("a", Ridge(alpha=1e-6)), ("b", LinearRegression()), ("c", Ridge(1e-6))],
    ):
        model = stream(MixtureOfExpertsRegressor(3, estimator=estimator, random_state=0), frames)
        assert_allclose(model.log_likelihood(test_frame, y_test).mean(), reference_ll, rtol=1e-3)
        for expert in model.experts_:
            assert_array_equal(expert.feature_names_in_, columns)
            assert expert.coef_.shape == (5,)
    assert model.experts_[1].rank_ == 5


def test_gate_and_expert_features(regression_stream):
    """The gate on 3 of the 5 columns (the truth's gate uses 4): as the batch fit does."""
    truth, parts, X_test, y_test = regression_stream
    params = {"gate_features": [0, 1, 2], "expert_features": [0, 1, 2, 3, 4], "random_state": 0}
    online = stream(MixtureOfExpertsRegressor(3, **params), parts[:30])
    batch = MixtureOfExpertsRegressor(3, **params).fit(
        np.vstack([X for X, _ in parts[:30]]), np.concatenate([y for _, y in parts[:30]])
    )
    assert_array_equal(online.gate_features_, [0, 1, 2])
    assert online.gate_.coef_.shape == (3, 3)
    batch_ll = batch.log_likelihood(X_test, y_test).mean()
    assert abs(online.log_likelihood(X_test, y_test).mean() - batch_ll) <= 0.01 * abs(batch_ll)


def test_logistic_regression_experts():
    parts = list(chunks(sample_classes, 10, CHUNK, seed=7))
    X_test, y_test = sample_classes(5000, np.random.default_rng(8))
    default = stream(MixtureOfExpertsClassifier(3, random_state=0), parts, classes=[0, 1, 2])
    model = stream(
        MixtureOfExpertsClassifier(3, estimator=LogisticRegression(C=1e4), random_state=0),
        parts,
        classes=[0, 1, 2],
    )
    assert abs(model.score(X_test, y_test) - default.score(X_test, y_test)) <= 0.02
    binary = stream(
        MixtureOfExpertsClassifier(2, estimator=LogisticRegression(), random_state=0),
        [(X, y == 0) for X, y in parts],
        classes=[False, True],
    )
    assert binary.experts_[0].coef_.shape == (1, 5)  # LogisticRegression's binary layout
    assert binary.score(X_test, y_test == 0) > 0.8


def test_stream_is_deterministic(regression_stream):
    parts = regression_stream[1][:10]
    first = stream(MixtureOfExpertsRegressor(3, random_state=0), parts)
    second = stream(MixtureOfExpertsRegressor(3, random_state=0), parts)
    assert_array_equal(first.gate_.coef_, second.gate_.coef_)
    assert_array_equal(first.gate_.intercept_, second.gate_.intercept_)
    for one, other in zip(first.experts_, second.experts_, strict=True):
        assert_array_equal(one.coef_, other.coef_)
        assert one.intercept_ == other.intercept_
    assert_array_equal(first.noise_variance_, second.noise_variance_)
    assert first.log_likelihood_ == second.log_likelihood_


def test_steps_follow_the_weight_not_the_rows(regression_stream):
    """Rows of zero weight change nothing; a chunk cut in two steps about as the whole."""
    parts = regression_stream[1][:12]
    plain = stream(MixtureOfExpertsRegressor(3, random_state=0), parts)
    padded = MixtureOfExpertsRegressor(3, random_state=0).partial_fit(*parts[0])
    for X, y in parts[1:]:
        weight = np.r_[np.ones(len(y)), np.zeros(300)]
        padded.partial_fit(np.vstack([X, X[:300] * 7]), np.r_[y, y[:300] - 5], weight)
    assert_allclose(padded.gate_.coef_, plain.gate_.coef_, rtol=1e-8, atol=1e-10)
    assert_allclose(padded.noise_variance_, plain.noise_variance_, rtol=1e-8)

    halves = MixtureOfExpertsRegressor(3, random_state=0).partial_fit(*parts[0])
    for X, y in parts[1:]:
        halves.partial_fit(X[:500], y[:500]).partial_fit(X[500:], y[500:])
    X_test, y_test = regression_stream[2:]
    assert_allclose(
        halves.log_likelihood(X_test, y_test).mean(),
        plain.log_likelihood(X_test, y_test).mean(),
        rtol=2e-3,
    )


def test_partial_fit_after_fit_continues_the_fit(regression_stream):
    truth, parts, X_test, y_test = regression_stream
    model = MixtureOfExpertsRegressor(3, random_state=0).fit(*parts[0])
    fitted_ll = model.log_likelihood(X_test, y_test).mean()
    stream(model, parts[1:20])
    assert model.n_iter_ == 19
    assert not hasattr(model, "init_methods_")
    assert model.log_likelihood(X_test, y_test).mean() >= fitted_ll - 1e-3
    model.fit(*parts[0])  # a new fit ends the stream: the next chunk continues this fit
    model.partial_fit(*parts[1])
    assert model.n_iter_ == 1


def test_errors_leave_the_estimator_as_it_was(regression_stream):
    parts = regression_stream[1]
    X, y = parts[0]
    classifier = MixtureOfExpertsClassifier(3)
    with pytest.raises(
        ValueError, match=re.escape("classes must be passed on the first call to partial_fit.")
    ):
        classifier.partial_fit(X, y > 0)
    assert not hasattr(classifier, "experts_")
    classifier.partial_fit(X, y > 0, classes=[False, True])
    with pytest.raises(
        ValueError,
        match=re.escape(
            "classes=[False] is not the same as on the first call to partial_fit (or in "
            "fit): [False, True]."
        ),
    ):
        classifier.partial_fit(X, y > 0, classes=[False])

    model = stream(MixtureOfExpertsRegressor(3, random_state=0), parts[:2])
    gate_coef = model.gate_.coef_.copy()
    with pytest.raises(
        ValueError,
        match=re.escape(
            "X has 4 features, but MixtureOfExpertsRegressor is expecting 5 features as input."
        ),
    ):
        model.partial_fit(X[:, :4], y)
    assert model.n_iter_ == 2
    assert_array_equal(model.gate_.coef_, gate_coef)
    with pytest.raises(TypeError, match="partial_fit takes dense in-memory chunks"):
        model.partial_fit(__import__("scipy.sparse").sparse.csr_matrix(X), y)


@pytest.mark.parametrize(
    "params, message",
    [
        (
            {"gate": TreeGate()},
            "partial_fit supports the softmax gate only, not gate=TreeGate(): a tree or "
            "hierarchical gate has no online update. Use gate='softmax', or fit on the whole "
            "data, or on a sample of it.",
        ),
        ({"gate": "hme"}, "partial_fit supports the softmax gate only, not gate='hme'"),
        (
            {"top_k": 2},
            "partial_fit trains with dense routing only, not top_k=2. Train the stream with "
            "top_k=None and predict with set_params(top_k=...), or fit on the whole data, or on "
            "a sample of it.",
        ),
        ({"early_stopping": True}, "partial_fit does not stop early"),
        ({"min_expert_share": 0.1}, "partial_fit does not re-seed collapsed experts"),
        (
            {"likelihood": "poisson"},
            "partial_fit supports the Gaussian likelihood only, not likelihood='poisson'",
        ),
        (
            {"estimator": DecisionTreeRegressor()},
            "partial_fit supports linear least-squares experts only (WeightedLeastSquares, Ridge "
            "with one alpha, LinearRegression; not positive=True), whose statistics are finite; "
            "expert 'expert0' is DecisionTreeRegressor. Use one of them, or fit on the whole "
            "data, or on a sample of it.",
        ),
        ({"estimator": LinearRegression(positive=True)}, "expert 'expert0' is LinearRegression"),
    ],
)
def test_unsupported_settings_are_refused(regression_stream, params, message):
    X, y = regression_stream[1][0]
    model = MixtureOfExpertsRegressor(3, random_state=0, **params)
    with pytest.raises(NotImplementedError, match=re.escape(message)):
        check_partial_fit(model)
    assert message in str(refusal(lambda: model.partial_fit(X, y)))
    assert not hasattr(model, "experts_")


def test_unsupported_classifier_experts_are_refused():
    message = (
        "partial_fit supports multinomial logistic experts only "
        "(WeightedLogisticRegression, LogisticRegression with an L2 penalty or none, "
        "no class_weight); expert 'expert0' is LogisticRegression."
    )
    model = MixtureOfExpertsClassifier(2, estimator=LogisticRegression(class_weight="balanced"))
    with pytest.raises(NotImplementedError, match=re.escape(message)):
        check_partial_fit(model)
    X, y = np.zeros((10, 2)), np.arange(10) % 2
    assert message in str(refusal(lambda: model.partial_fit(X, y, classes=[0, 1])))
    assert check_partial_fit(MixtureOfExpertsClassifier(2)) is True


def refusal(call):
    """The NotImplementedError of an unsupported ``partial_fit`` in ``call()``.

    Raised by the call, or, where ``partial_fit`` is offered through
    ``available_if(check_partial_fit)``, the cause of the AttributeError that
    looking the method up raises.
    """
    with pytest.raises((NotImplementedError, AttributeError)) as info:
        call()
    error = info.value
    if isinstance(error, AttributeError):
        error = error.__cause__
    assert isinstance(error, NotImplementedError)
    return error
