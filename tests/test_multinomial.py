"""K weighted multinomial logits solved together (``skmoe._multinomial``).

* ``grouped_softmax_objective`` (the compiled kernel) against a NumPy
  reference written from its definition, on both exp paths and several
  thread counts, with rows of zero weight, without features, and against
  finite differences; ``class_pair_grams`` (the Hessians' kernel) likewise,
  and the sparse path of ``gram_sums`` against it;
* the K objectives behind ``fit_multinomial_logits`` (standardisation,
  penalty, per-sample scale) against their definition and finite differences,
  and their Hessians against finite differences of the gradients;
* ``fit_multinomial_logits`` against separate fits, by each of its solvers
  (Newton's method and L-BFGS): each problem alone, K
  ``WeightedLogisticRegression`` fits, and scikit-learn's ``LogisticRegression``
  (multiclass and binary, with or without penalty and intercept) through the
  attribute helpers; the lockstep solvers' per-problem stopping;
* Newton's method against L-BFGS (binary to five classes, absent classes,
  no or strong penalty, collinear features), its warm starts' few iterations,
  its convention for the sums over classes, and its determinism;
* ``WeightedLogisticRegression``'s batch protocol (``_fit_many``,
  ``_predict_proba_many``); sparse ``X`` against dense.
"""

import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp, softmax
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from skmoe import _multinomial
from skmoe._kernels import (
    class_pair_grams,
    grouped_softmax,
    grouped_softmax_objective,
    use_simd,
)
from skmoe._multinomial import (
    _GramLayout,
    _GroupedProblem,
    _sparse_grouped_objective,
    fit_multinomial_logits,
    gram_sums,
    logistic_regression_settings,
    logistic_regression_start,
    set_logistic_regression_attributes,
)
from skmoe._stats import weighted_mean_scale
from skmoe.experts import WeightedLogisticRegression

RTOL = 1e-10
EXP_PATHS = ["avx2", "baseline"] if use_simd(True) else ["baseline"]


@pytest.fixture(params=EXP_PATHS)
def exp_path(request):
    """The kernel's exp loop has an AVX2 and a baseline path: test each this CPU can take."""
    use_simd(request.param == "avx2")
    yield request.param
    use_simd(True)


@pytest.fixture(params=["newton", "lbfgs"])
def solver(request, monkeypatch):
    """``fit_multinomial_logits`` by each of its solvers: no problem is small enough
    for Newton's method when its threshold is 0."""
    if request.param == "lbfgs":
        monkeypatch.setattr(_multinomial, "_NEWTON_MAX_PARAMETERS", 0)
    return request.param


# --------------------------------------------------------------------------
# The kernel
# --------------------------------------------------------------------------


def random_kernel_inputs(rng, n, K, n_classes, n_features=4, absent=0.3):
    """Inputs of realistic magnitudes; a fraction ``absent`` of the weights are zero."""
    X = rng.normal(size=(n, n_features)) * rng.uniform(0.5, 3.0, n_features)
    coef = rng.normal(size=(n_features, K * n_classes))
    intercept = rng.normal(size=K * n_classes)
    codes = rng.integers(0, n_classes, n).astype(np.intp)
    weights = rng.uniform(0.1, 2.0, size=(n, K))
    weights[rng.uniform(size=(n, K)) < absent] = 0.0
    return X, coef, intercept, codes, weights


def run_kernel(X, coef, intercept, codes, weights, n_threads=1):
    grad_coef = np.full(coef.shape, np.nan)  # every entry must be written
    grad_intercept = np.full(intercept.shape, np.nan)
    loss = np.full(weights.shape[1], np.nan)
    grouped_softmax_objective(
        X, coef, intercept, codes, weights, grad_coef, grad_intercept, loss, n_threads
    )
    return loss, grad_coef, grad_intercept


def reference_kernel(X, coef, intercept, codes, weights):
    """Each expert's weighted cross-entropy and its gradient, one expert at a time."""
    n, K = weights.shape
    n_classes = coef.shape[1] // K
    logits = X @ coef + intercept
    loss = np.empty(K)
    gradient_in_logits = np.zeros_like(logits)
    for k in range(K):
        z = logits[:, k * n_classes : (k + 1) * n_classes]
        w = weights[:, k]
        loss[k] = w @ (logsumexp(z, axis=1) - z[np.arange(n), codes])
        residual = softmax(z, axis=1)
        residual[np.arange(n), codes] -= 1.0
        gradient_in_logits[:, k * n_classes : (k + 1) * n_classes] = w[:, None] * residual
    return loss, X.T @ gradient_in_logits, gradient_in_logits.sum(axis=0)


def gradient_atol(X, weights):
    """X.T G sums terms of size |x_ij| w_ik that can cancel: an absolute floor."""
    return 1e-14 * max(1.0, float((np.abs(X).T @ weights).max()))


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("K, n_classes", [(1, 2), (3, 3), (4, 5)])
@pytest.mark.parametrize("n", [1, 7, 1000])
def test_kernel_matches_reference(exp_path, n, K, n_classes, n_threads):
    rng = np.random.default_rng(n + 10 * K)
    inputs = random_kernel_inputs(rng, n, K, n_classes)
    X, weights = inputs[0], inputs[-1]
    loss, grad_coef, grad_intercept = run_kernel(*inputs, n_threads)
    expected = reference_kernel(*inputs)
    assert_allclose(loss, expected[0], rtol=RTOL, atol=1e-14 * weights.sum())
    assert_allclose(grad_coef, expected[1], rtol=RTOL, atol=gradient_atol(X, weights))
    assert_allclose(grad_intercept, expected[2], rtol=RTOL, atol=1e-14 * weights.sum())


def test_kernel_is_deterministic_for_a_thread_count_and_close_across_counts():
    rng = np.random.default_rng(1)
    inputs = random_kernel_inputs(rng, 5000, 3, 4)
    one = run_kernel(*inputs, 1)
    for n_threads in (2, 3):
        first = run_kernel(*inputs, n_threads)
        again = run_kernel(*inputs, n_threads)
        for a, b, c in zip(first, again, one):
            assert_array_equal(a, b)  # per-thread sums added in thread order
            assert_allclose(a, c, rtol=1e-12, atol=1e-11)


def test_zero_weight_rows_are_the_rows_left_out():
    """A row of weight 0 for every expert can be dropped; for one expert, it is not seen."""
    rng = np.random.default_rng(2)
    X, coef, intercept, codes, weights = random_kernel_inputs(rng, 600, 3, 3)
    weights[::7] = 0.0
    keep = np.ones(600, dtype=bool)
    keep[::7] = False
    full = run_kernel(X, coef, intercept, codes, weights, 2)
    dropped = run_kernel(
        np.ascontiguousarray(X[keep]),
        coef,
        intercept,
        codes[keep],
        np.ascontiguousarray(weights[keep]),
        2,
    )
    for got, want in zip(dropped, full):
        assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # An expert's absent rows may have any logits, even ones whose exp
    # overflows; nothing of them reaches the result (no inf * 0 = nan).
    huge = intercept.copy()
    huge[:3] = [1e6, 0.0, -1e6]  # expert 0's logits
    loss, grad_coef, grad_intercept = run_kernel(X, coef, huge, codes, weights)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad_coef))
    present = weights[:, 0] > 0
    expected = run_kernel(
        np.ascontiguousarray(X[present]),
        coef,
        huge,
        codes[present],
        np.ascontiguousarray(weights[present]),
    )
    assert_allclose(loss[0], expected[0][0], rtol=1e-12)
    assert_allclose(grad_coef[:, :3], expected[1][:, :3], rtol=1e-12, atol=1e-9)
    assert_allclose(grad_intercept[:3], expected[2][:3], rtol=1e-12, atol=1e-9)


def test_kernel_without_features():
    """d = 0: the logits are the intercepts (the GEMMs are skipped)."""
    rng = np.random.default_rng(3)
    _, _, intercept, codes, weights = random_kernel_inputs(rng, 300, 2, 3)
    X, coef = np.empty((300, 0)), np.empty((0, 6))
    loss, grad_coef, grad_intercept = run_kernel(X, coef, intercept, codes, weights, 2)
    expected = reference_kernel(X, coef, intercept, codes, weights)
    assert grad_coef.shape == (0, 6)
    assert_allclose(loss, expected[0], rtol=RTOL)
    assert_allclose(grad_intercept, expected[2], rtol=RTOL, atol=1e-14 * weights.sum())


def test_kernel_extreme_logits():
    """Logits of +-1e3 (exp overflows or underflows): each expert's rows shift by their max."""
    rng = np.random.default_rng(4)
    X, coef, intercept, codes, weights = random_kernel_inputs(rng, 50, 2, 3)
    intercept = np.array([1e3, -1e3, 0.0, 700.0, 0.0, -700.0])
    loss, grad_coef, grad_intercept = run_kernel(X, coef, intercept, codes, weights)
    expected = reference_kernel(X, coef, intercept, codes, weights)
    assert_allclose(loss, expected[0], rtol=RTOL)
    assert_allclose(grad_coef, expected[1], rtol=RTOL, atol=gradient_atol(X, weights))


def central_difference(f, x, h):
    """Gradient of scalar f at x by the 5-point stencil, error O(h^4)."""
    gradient = np.empty_like(x)
    for j in range(x.size):
        step = np.zeros_like(x)
        step.flat[j] = h
        gradient.flat[j] = (
            -f(x + 2 * step) + 8 * f(x + step) - 8 * f(x - step) + f(x - 2 * step)
        ) / (12 * h)
    return gradient


def test_kernel_gradient_is_the_derivative_of_each_expert_loss():
    rng = np.random.default_rng(5)
    X, coef, intercept, codes, weights = random_kernel_inputs(rng, 9, 2, 3)
    _, grad_coef, grad_intercept = run_kernel(X, coef, intercept, codes, weights)
    # A weighted sum of the K losses has the K gradients, weighted alike.
    mix = np.array([0.7, 1.9])

    def loss_of_coef(v):
        return mix @ run_kernel(X, v, intercept, codes, weights)[0]

    def loss_of_intercept(c):
        return mix @ run_kernel(X, coef, c, codes, weights)[0]

    column_mix = np.repeat(mix, 3)
    assert_allclose(
        grad_coef * column_mix, central_difference(loss_of_coef, coef, 1e-3), rtol=1e-7, atol=1e-9
    )
    assert_allclose(
        grad_intercept * column_mix,
        central_difference(loss_of_intercept, intercept, 1e-3),
        rtol=1e-7,
        atol=1e-9,
    )


def test_kernel_rejects_bad_codes_and_shapes():
    rng = np.random.default_rng(6)
    X, coef, intercept, codes, weights = random_kernel_inputs(rng, 20, 2, 3)
    bad = codes.copy()
    bad[5] = 3
    with pytest.raises(ValueError, match=re.escape("codes[5] = 3 is outside [0, 3)")):
        run_kernel(X, coef, intercept, bad, weights)
    bad[5] = -1
    with pytest.raises(ValueError, match="outside"):
        run_kernel(X, coef, intercept, bad, weights)
    with pytest.raises(ValueError, match="not n_classes >= 1 columns"):
        run_kernel(X, np.ascontiguousarray(coef[:, :5]), intercept[:5], codes, weights)
    with pytest.raises(ValueError, match="codes has shape"):
        run_kernel(X, coef, intercept, codes[:19], weights)
    with pytest.raises(ValueError, match="n_threads"):
        run_kernel(X, coef, intercept, codes, weights, 0)
    with pytest.raises(ValueError):  # float32 or Fortran order would be misread
        run_kernel(np.asfortranarray(X), coef, intercept, codes, weights)


def test_sparse_fallback_matches_kernel():
    rng = np.random.default_rng(7)
    X, coef, intercept, codes, weights = random_kernel_inputs(rng, 400, 3, 4)
    X[np.abs(X) < 1.0] = 0.0
    expected = run_kernel(X, coef, intercept, codes, weights)
    got = (np.empty_like(coef), np.empty_like(intercept), np.empty(3))
    _sparse_grouped_objective(sp.csr_matrix(X), coef, intercept, codes, weights, *got)
    assert_allclose(got[2], expected[0], rtol=RTOL)
    assert_allclose(got[0], expected[1], rtol=RTOL, atol=gradient_atol(X, weights))
    assert_allclose(got[1], expected[2], rtol=RTOL, atol=1e-14 * weights.sum())


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("K, n_classes", [(1, 2), (3, 3), (4, 5)])
@pytest.mark.parametrize("n", [1, 7, 1000])
def test_grouped_softmax_matches_reference(exp_path, n, K, n_classes, n_threads):
    rng = np.random.default_rng(n + 10 * K)
    X, coef, intercept, _, _ = random_kernel_inputs(rng, n, K, n_classes)
    coef *= 20.0  # saturated rows too
    proba = np.full((n, K * n_classes), np.nan)
    grouped_softmax(X, coef, intercept, n_classes, proba, n_threads)
    logits = (X @ coef + intercept).reshape(n, K, n_classes)
    assert_allclose(
        proba.reshape(n, K, n_classes), softmax(logits, axis=2), rtol=1e-13, atol=1e-300
    )


def test_grouped_softmax_rejects_mismatched_shapes():
    rng = np.random.default_rng(2)
    X, coef, intercept, _, _ = random_kernel_inputs(rng, 10, 2, 3)
    with pytest.raises(ValueError, match="coef has 6 columns, which is not n_classes=4"):
        grouped_softmax(X, coef, intercept, 4, np.empty((10, 6)), 1)
    with pytest.raises(ValueError, match=re.escape("proba_out has shape (9, 6)")):
        grouped_softmax(X, coef, intercept, 3, np.empty((9, 6)), 1)


def reference_pair_grams(X, weights, centre, spread, logit_coef):
    """The class-pair Grams from their definition: (P K, d + 1, d + 1), pair-major."""
    n_problems = weights.shape[1]
    a = np.column_stack([(X - centre) / spread, np.ones(X.shape[0])])
    n_classes = logit_coef.shape[1] // n_problems
    grams = []
    if n_classes == 0:
        return np.stack([(a * np.maximum(w, 0)[:, None]).T @ a for w in weights.T])
    for b, c in zip(*np.triu_indices(n_classes, 1)):
        for k in range(n_problems):
            proba = softmax(a @ logit_coef[:, k::n_problems], axis=1)
            pair = np.maximum(weights[:, k], 0) * proba[:, b] * proba[:, c]
            grams.append((a * pair[:, None]).T @ a)
    return np.stack(grams)


def run_pair_grams(X, weights, centre, spread, logit_coef, n_threads=1):
    width = X.shape[1] + 1
    n_classes = logit_coef.shape[1] // weights.shape[1]
    n_grams = (n_classes * (n_classes - 1) // 2 if n_classes else 1) * weights.shape[1]
    sums = np.full((n_grams, width * (width + 1) // 2), np.nan)
    class_pair_grams(X, weights, centre, spread, logit_coef, sums, n_threads)
    upper = np.triu_indices(width)
    grams = np.empty((n_grams, width, width))
    grams[:, upper[0], upper[1]] = sums
    grams[:, upper[1], upper[0]] = sums
    return grams


def random_gram_inputs(rng, n, K, n_classes, n_features=4):
    X, coef, intercept, _, weights = random_kernel_inputs(rng, n, K, max(n_classes, 1), n_features)
    centre, spread = rng.normal(size=n_features), rng.uniform(0.5, 2.0, n_features)
    logit_coef = np.vstack([coef, intercept]) if n_classes else np.empty((n_features + 1, 0))
    return X, weights, centre, spread, np.ascontiguousarray(logit_coef)


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("K, n_classes", [(1, 2), (3, 3), (4, 5), (2, 0)])
@pytest.mark.parametrize("n", [1, 7, 1000])  # less than a block of rows, and several
def test_pair_grams_match_reference(exp_path, n, K, n_classes, n_threads):
    rng = np.random.default_rng(n + 10 * K + n_classes)
    inputs = random_gram_inputs(rng, n, K, n_classes)
    expected = reference_pair_grams(*inputs)
    got = run_pair_grams(*inputs, n_threads)
    assert_allclose(got, expected, rtol=RTOL, atol=1e-14 * max(1.0, np.abs(expected).max()))


def test_pair_grams_without_features_and_across_thread_counts():
    rng = np.random.default_rng(3)
    inputs = random_gram_inputs(rng, 300, 2, 3, n_features=0)
    assert_allclose(run_pair_grams(*inputs), reference_pair_grams(*inputs), rtol=RTOL)
    inputs = random_gram_inputs(rng, 5000, 3, 4)
    one = run_pair_grams(*inputs, 1)
    two = run_pair_grams(*inputs, 2)
    assert_array_equal(two, run_pair_grams(*inputs, 2))  # per-thread sums added in thread order
    assert_allclose(two, one, rtol=1e-12)


def test_pair_grams_reject_mismatched_shapes():
    rng = np.random.default_rng(5)
    X, weights, centre, spread, logit_coef = random_gram_inputs(rng, 10, 3, 2)
    with pytest.raises(ValueError, match=re.escape("spread has shape (3,), expected (4,)")):
        run_pair_grams(X, weights, centre, spread[:3].copy(), logit_coef)
    with pytest.raises(ValueError, match="logit_coef has 5 columns, which is not n_classes"):
        run_pair_grams(X, weights, centre, spread, logit_coef[:, :5].copy())
    with pytest.raises(ValueError, match=re.escape("sums_out has shape (3, 14)")):
        class_pair_grams(X, weights, centre, spread, logit_coef, np.empty((3, 14)), 1)


def test_sparse_gram_sums_match_the_kernel():
    rng = np.random.default_rng(9)
    X, weights, centre, spread, logit_coef = random_gram_inputs(rng, 700, 3, 3)
    X[np.abs(X) < 1.0] = 0.0
    layout = _GramLayout(n_classes=3, centre=centre, spread=spread, shared=logit_coef.T)
    assert_allclose(gram_sums(sp.csr_matrix(X), weights, layout), gram_sums(X, weights, layout))


# --------------------------------------------------------------------------
# The K objectives
# --------------------------------------------------------------------------


def raw_problems(seed, n=300, n_classes=3, K=3, absent=0.3):
    """Features of very different means and scales; labels; K weight columns."""
    rng = np.random.RandomState(seed)
    means, scales = np.array([5.0, -2.0, 0.0, 50.0]), np.array([0.1, 3.0, 1.0, 10.0])
    X = means + scales * rng.randn(n, 4)
    logits = ((X - means) / scales) @ rng.randn(4, n_classes) + rng.gumbel(size=(n, n_classes))
    y = np.argmax(logits, axis=1)
    weights = rng.uniform(0.1, 2.0, size=(n, K))
    weights[rng.uniform(size=(n, K)) < absent] = 0.0
    return X, y, weights


def reference_objectives(theta, problem, X, codes, weights, C, penalty_scale):
    """The K per-sample objectives from their definition, features standardised explicitly."""
    n_problems, n_classes, n_features = problem.shape
    values = np.empty(n_problems)
    for k in range(n_problems):
        std_coef = theta[k, : n_features * n_classes].reshape(n_features, n_classes)
        Z = ((X - problem.mean[k]) / problem.scale[k]) @ std_coef + theta[k, -n_classes:]
        loss = weights[:, k] @ (logsumexp(Z, axis=1) - Z[np.arange(X.shape[0]), codes])
        if np.isfinite(C[k]):
            coef = std_coef / problem.scale[k][:, None]
            loss += 0.5 * np.sum((coef * penalty_scale[k][:, None]) ** 2) / C[k]
        values[k] = loss / weights[:, k].sum()
    return values


@pytest.mark.parametrize("precondition", [True, False])
def test_objectives_and_their_gradients(precondition):
    X, y, weights = raw_problems(8)
    C = np.array([0.5, np.inf, 20.0])
    penalty_scale = np.array([[1.0, 2.0, 0.5, 3.0], [1.0] * 4, [0.2, 1.0, 1.0, 4.0]])
    mean = np.array([[1.0, 0.0, -1.0, 2.0], [0.0] * 4, [5.0, -2.0, 0.0, 50.0]])
    problem = _GroupedProblem(X, y, 3, weights, C, mean, penalty_scale, True, precondition)
    if not precondition:
        assert_array_equal(problem.mean, mean)
    theta = np.random.RandomState(0).randn(*problem.pack(None, None).shape)
    values, gradients = problem.objective(theta, np.arange(3))
    expected = reference_objectives(theta, problem, X, y, weights, C, penalty_scale)
    assert_allclose(values, expected, rtol=1e-11)
    for k in range(3):
        numerical = central_difference(
            lambda t, k=k: problem.objective(t[None], np.array([k]))[0][0], theta[k], 1e-4
        )
        assert np.linalg.norm(gradients[k] - numerical) < 1e-7 * np.linalg.norm(numerical)
    # A subset of the problems, in any order, is evaluated alike.
    some = np.array([2, 0])
    values_2, gradients_2 = problem.objective(theta[some], some)
    assert_allclose(values_2, values[some], rtol=1e-13)
    assert_allclose(gradients_2, gradients[some], rtol=1e-12, atol=1e-15)
    # pack and unpack are inverse.
    coef, intercept = problem.unpack(theta)
    assert_allclose(problem.pack(coef, intercept), theta, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("precondition", [True, False])
@pytest.mark.parametrize("n_classes, K", [(2, 1), (3, 3), (5, 2)])
def test_hessians_are_the_derivatives_of_the_gradients(n_classes, K, precondition):
    """Against central differences of the gradients; with one Gram per problem (binary)
    and with many, both ways of summing them are taken."""
    X, y, weights = raw_problems(24, n_classes=n_classes, K=K)
    C = np.array([0.5, np.inf, 20.0])[:K]
    penalty_scale = np.array([[1.0, 2.0, 0.5, 3.0], [1.0] * 4, [0.2, 1.0, 1.0, 4.0]])[:K]
    problem = _GroupedProblem(X, y, n_classes, weights, C, None, penalty_scale, True, precondition)
    # Logits of moderate size: probabilities far from 0 and 1, curvature everywhere.
    theta = 0.3 * np.random.RandomState(1).randn(*problem.pack(None, None).shape)
    hessians = problem.hessians(theta, np.arange(K))
    assert hessians.shape == (K, theta.shape[1], theta.shape[1])
    for k in range(K):
        assert_allclose(hessians[k], hessians[k].T, rtol=0, atol=1e-15)
        numerical = np.empty_like(hessians[k])
        for j in range(theta.shape[1]):
            step = np.zeros(theta.shape[1])
            step[j] = 1e-3
            gradient = [
                problem.objective((theta[k] + m * step)[None], np.array([k]))[1][0]
                for m in (-2, -1, 1, 2)
            ]
            numerical[:, j] = (
                gradient[0] - 8 * gradient[1] + 8 * gradient[2] - gradient[3]
            ) / 12e-3
        # The gradients' rounding (features of mean 50 unscaled) over the step
        # makes most of the error.
        assert np.abs(hessians[k] - numerical).max() < 1e-6 * np.abs(numerical).max()
    # A subset of the problems, in any order, and a sparse X give the same.
    some = np.arange(K)[::-1]
    assert_allclose(problem.hessians(theta[some], some), hessians[some], rtol=1e-12, atol=1e-15)
    sparse = _GroupedProblem(
        sp.csr_matrix(X), y, n_classes, weights, C, None, penalty_scale, True, precondition
    )
    assert_allclose(sparse.hessians(theta, np.arange(K)), hessians, rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------
# fit_multinomial_logits against separate fits
# --------------------------------------------------------------------------


@pytest.mark.parametrize("precondition", [True, False])
def test_fit_equals_separate_weighted_logistic_regressions(precondition, solver):
    """Penalties on each expert's own standardisation (weighted mean and scale), each its C.

    The statistics are given (``precondition=False``, as ``_fit_many`` does),
    or only the penalty's scales are and the solver computes its own.
    """
    X, y, weights = raw_problems(9)
    Cs = [0.1, 1.0, 100.0]
    stats = [weighted_mean_scale(X, weights[:, k]) for k in range(3)]
    mean, scale = np.array([m for m, _ in stats]), np.array([s for _, s in stats])
    coef, intercept, n_iter = fit_multinomial_logits(
        X,
        y,
        3,
        weights,
        Cs,
        mean if not precondition else None,
        scale,
        tol=1e-10,
        max_iter=2000,
        precondition=precondition,
    )
    for k, C in enumerate(Cs):
        alone = WeightedLogisticRegression(C=C, tol=1e-10, max_iter=2000).fit(
            X, y, sample_weight=weights[:, k]
        )
        assert_allclose(coef[k], alone.coef_, atol=1e-6)
        assert_allclose(intercept[k], alone.intercept_, atol=1e-6)


def test_each_problem_is_solved_as_if_alone(solver):
    """Each problem has its own solver: its own iterations, tol and max_iter."""
    X, y, weights = raw_problems(22)
    C, tol, max_iter = [0.1, 10.0, np.inf], [1e-8, 1e-4, 1e-8], [100, 100, 3]
    together = fit_multinomial_logits(X, y, 3, weights, C, tol=tol, max_iter=max_iter)
    assert together[2][2] == 3
    for k in range(3):
        alone = fit_multinomial_logits(
            X, y, 3, weights[:, [k]], C[k], tol=tol[k], max_iter=max_iter[k]
        )
        # The same up to the kernel's rounding, which can move the last
        # iteration across tol (the solutions then differ by about tol over
        # the curvature: 2.2e-7 in an intercept, 19 against 21 iterations).
        assert_allclose(together[0][k], alone[0][0], atol=1e-6)
        assert_allclose(together[1][k], alone[1][0], atol=1e-6)
        assert abs(together[2][k] - alone[2][0]) <= 2
    # A problem already solved at its start takes no iteration, the others theirs.
    start = fit_multinomial_logits(
        X,
        y,
        3,
        weights,
        C,
        coef=together[0],
        intercept=together[1],
        tol=tol,
        max_iter=[100, 100, 100],
    )
    assert start[2][0] == 0 and start[2][2] > 0


def test_zero_tol_stops_where_rounding_leaves_no_progress(solver):
    """tol=0 is never met: the line search ends the fit, at a gradient of rounding size."""
    X, y, weights = raw_problems(23)
    coef, intercept, n_iter = fit_multinomial_logits(
        X, y, 3, weights, 1.0, tol=0.0, max_iter=100_000
    )
    assert np.all(n_iter < 5000)
    problem = _GroupedProblem(X, y, 3, weights, 1.0, None, None, True, True)
    _, gradients = problem.objective(problem.pack(coef, intercept), np.arange(3))
    assert np.abs(gradients).max() < 1e-13


def sklearn_problems(seed, n_classes, n=500, K=3):
    """Features of moderate scale (scikit-learn's raw-unit L-BFGS converges), K weightings."""
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 4) * [1.0, 2.0, 0.5, 1.0] + [0.5, 0.0, -1.0, 0.0]
    y = np.argmax(X @ rng.randn(4, n_classes) + rng.gumbel(size=(n, n_classes)), axis=1)
    labels = np.array(["ant", "bee", "cat", "dog"])[y]  # any labels, sorted as classes_
    weights = rng.uniform(0.1, 2.0, size=(n, K))
    weights[rng.uniform(size=(n, K)) < 0.2] = 0.0
    return X, labels, weights


def fit_like_sklearn(template, X, labels, weights):
    """K clones of ``template`` fitted by one call of fit_multinomial_logits."""
    classes, codes = np.unique(labels, return_inverse=True)
    settings = logistic_regression_settings(template, classes.shape[0])
    coef, intercept, n_iter = fit_multinomial_logits(
        X, codes, classes.shape[0], weights, **settings
    )
    models = []
    for k in range(weights.shape[1]):
        model = LogisticRegression(**template.get_params())
        models.append(
            set_logistic_regression_attributes(model, classes, coef[k], intercept[k], n_iter[k])
        )
    return models


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("C", [0.05, 1.0, np.inf])
@pytest.mark.parametrize("n_classes", [3, 2])
def test_fit_equals_sklearn_logistic_regression(n_classes, C, fit_intercept, solver):
    X, labels, weights = sklearn_problems(10 + n_classes, n_classes)
    template = LogisticRegression(C=C, tol=1e-10, max_iter=10_000, fit_intercept=fit_intercept)
    ours = fit_like_sklearn(template, X, labels, weights)
    for k, model in enumerate(ours):
        theirs = LogisticRegression(**template.get_params()).fit(
            X, labels, sample_weight=weights[:, k]
        )
        assert_array_equal(model.classes_, theirs.classes_)
        for name in ("coef_", "intercept_", "n_iter_"):
            got, want = getattr(model, name), getattr(theirs, name)
            assert got.shape == want.shape and got.dtype == want.dtype, name
        assert model.n_features_in_ == theirs.n_features_in_
        assert_allclose(model.coef_, theirs.coef_, atol=1e-5)
        assert_allclose(model.intercept_, theirs.intercept_, atol=1e-5)
        assert_allclose(model.predict_proba(X), theirs.predict_proba(X), atol=1e-6)
        assert_array_equal(model.predict(X), theirs.predict(X))


def test_infinite_C_is_no_penalty(solver):
    """C = inf solves the unpenalised problem: its solution is C's limit."""
    X, labels, weights = sklearn_problems(12, 3)
    codes = np.unique(labels, return_inverse=True)[1]
    free = fit_multinomial_logits(X, codes, 3, weights, np.inf, tol=1e-10, max_iter=1000)
    weak = fit_multinomial_logits(X, codes, 3, weights, 1e9, tol=1e-10, max_iter=1000)
    assert_allclose(free[0], weak[0], atol=1e-6)
    # From a zero start the rows keep summing to zero, as scikit-learn's do.
    assert_allclose(free[0].sum(axis=1), 0.0, atol=1e-12)
    assert_allclose(free[1].sum(axis=1), 0.0, atol=1e-12)


def test_sparse_X_equals_dense(solver):
    X, labels, weights = sklearn_problems(13, 3)
    X[np.abs(X) < 0.8] = 0.0
    codes = np.unique(labels, return_inverse=True)[1]
    dense = fit_multinomial_logits(
        X, codes, 3, weights, [0.3, 1.0, np.inf], tol=1e-10, max_iter=1000
    )
    sparse = fit_multinomial_logits(
        sp.csr_matrix(X), codes, 3, weights, [0.3, 1.0, np.inf], tol=1e-10, max_iter=1000
    )
    # The same objective up to rounding; the last steps at tol=1e-10 amplify that.
    assert_allclose(sparse[0], dense[0], atol=1e-7)
    assert_allclose(sparse[1], dense[1], atol=1e-7)


def test_warm_start_takes_fewer_iterations(solver):
    X, y, weights = raw_problems(14)
    cold = fit_multinomial_logits(X, y, 3, weights, 1.0, tol=1e-8, max_iter=1000)
    # Started at its solution, a problem is solved at once ...
    again = fit_multinomial_logits(
        X, y, 3, weights, 1.0, coef=cold[0], intercept=cold[1], tol=1e-8, max_iter=1000
    )
    assert np.all(again[2] <= 1)
    # ... and a slightly changed one (as in EM) sooner than from zero.
    nudged = weights * np.random.RandomState(0).uniform(0.999, 1.001, size=weights.shape)
    warm = fit_multinomial_logits(
        X, y, 3, nudged, 1.0, coef=cold[0], intercept=cold[1], tol=1e-8, max_iter=1000
    )
    assert warm[2].sum() < 0.7 * cold[2].sum()


def test_fit_rejects_bad_inputs():
    X, y, weights = raw_problems(15, n=50)
    with pytest.raises(ValueError, match="positive sum"):
        fit_multinomial_logits(X, y, 3, np.zeros((50, 2)), 1.0)
    with pytest.raises(ValueError, match="class indices"):
        fit_multinomial_logits(X, y, 2, weights, 1.0)
    with pytest.raises(ValueError, match="C must be positive"):
        fit_multinomial_logits(X, y, 3, weights, 0.0)
    with pytest.raises(ValueError, match="mean has shape"):
        fit_multinomial_logits(X, y, 3, weights, 1.0, mean=np.zeros(3))
    with pytest.raises(ValueError, match="needs mean = 0"):
        fit_multinomial_logits(
            X, y, 3, weights, 1.0, mean=np.ones(4), fit_intercept=False, precondition=False
        )


def test_logistic_regression_settings():
    assert logistic_regression_settings(LogisticRegression(C=2.0), 3)["C"] == 2.0
    assert logistic_regression_settings(LogisticRegression(C=2.0), 2)["C"] == 1.0
    assert logistic_regression_settings(LogisticRegression(C=np.inf), 2)["C"] == np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # penalty is deprecated in 1.8
        assert logistic_regression_settings(LogisticRegression(penalty=None), 3)["C"] == np.inf
    for other in (
        LogisticRegression(l1_ratio=1.0, solver="saga"),
        LogisticRegression(solver="liblinear"),
        LogisticRegression(class_weight="balanced"),
    ):
        assert logistic_regression_settings(other, 3) is None


@pytest.mark.parametrize("n_classes", [2, 3])
def test_logistic_regression_start_keeps_the_probabilities(n_classes):
    X, labels, weights = sklearn_problems(16, n_classes)
    fitted = LogisticRegression(warm_start=True).fit(X, labels, sample_weight=weights[:, 0])
    coef, intercept = logistic_regression_start(fitted, fitted.classes_, X.shape[1])
    again = set_logistic_regression_attributes(
        LogisticRegression(), fitted.classes_, coef, intercept, 0
    )
    assert_allclose(again.predict_proba(X), fitted.predict_proba(X), rtol=1e-12)
    assert logistic_regression_start(LogisticRegression(), fitted.classes_, 4) is None
    assert logistic_regression_start(fitted, fitted.classes_, 5) is None  # other features
    # Without warm_start only when forced (EM's refits), with the same start.
    fitted.warm_start = False
    assert logistic_regression_start(fitted, fitted.classes_, X.shape[1]) is None
    forced = logistic_regression_start(fitted, fitted.classes_, X.shape[1], force=True)
    assert_allclose(forced[0], coef, rtol=0)
    assert_allclose(forced[1], intercept, rtol=0)


# --------------------------------------------------------------------------
# Newton's method against L-BFGS
# --------------------------------------------------------------------------


def both_solvers(monkeypatch, *args, **kwargs):
    """``fit_multinomial_logits`` by Newton's method, then by L-BFGS."""
    newton = fit_multinomial_logits(*args, **kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(_multinomial, "_NEWTON_MAX_PARAMETERS", 0)
        lbfgs = fit_multinomial_logits(*args, **kwargs)
    return newton, lbfgs


def probabilities(X, coef, intercept):
    """(K, n, C) class probabilities of each problem."""
    return softmax(np.einsum("nd,kcd->knc", X, coef) + intercept[:, None, :], axis=2)


@pytest.mark.parametrize(
    "case",
    ["binary", "three classes", "five classes", "absent class", "no penalty", "strong penalty"],
)
def test_newton_and_lbfgs_find_the_same_solution(monkeypatch, case):
    n_classes = {"binary": 2, "five classes": 5}.get(case, 3)
    X, y, weights = raw_problems(25, n=400, n_classes=n_classes)
    C = {"no penalty": np.inf, "strong penalty": 1e-3}.get(case, [0.5, 1e4, np.inf])
    if case == "absent class":
        # Problem 1 has no row of class 2: its intercept drifts down until
        # the gradient is below tol, a point that depends on the path.
        # Where the penalty is weak, the solution's coefficients are as poorly
        # determined as the absent class's probabilities: a penalty of 1.
        weights[y == 2, 1] = 0.0
        C = [1.0, 1.0, 20.0]
    newton, lbfgs = both_solvers(
        monkeypatch, X, y, n_classes, weights, C, tol=1e-10, max_iter=1000
    )
    assert_allclose(probabilities(X, *newton[:2]), probabilities(X, *lbfgs[:2]), atol=1e-8)
    assert_allclose(newton[0], lbfgs[0], atol=1e-7)
    if case == "absent class":
        # The intercepts' differences between the classes present are identified.
        assert_allclose(np.diff(newton[1][:, :2]), np.diff(lbfgs[1][:, :2]), atol=1e-7)
        assert weights[:, 1] @ probabilities(X, *newton[:2])[1, :, 2] < 1e-9 * weights[:, 1].sum()
    else:
        assert_allclose(newton[1], lbfgs[1], atol=1e-7)
    assert np.all(newton[2] < lbfgs[2])


def test_large_problems_take_lbfgs(monkeypatch):
    """Newton's method up to _NEWTON_MAX_PARAMETERS parameters C (d + 1) per problem."""

    def refuse(*args):
        raise AssertionError("Newton's method was used")

    monkeypatch.setattr(_multinomial, "_lockstep_newton", refuse)
    rng = np.random.RandomState(3)
    n_features = _multinomial._NEWTON_MAX_PARAMETERS // 3  # 3 (d + 1) > the threshold
    X = rng.randn(200, n_features)
    fitted = fit_multinomial_logits(X, rng.randint(0, 3, 200), 3, np.ones((200, 2)), 1.0)
    assert np.all(fitted[2] > 0)
    with pytest.raises(AssertionError, match="Newton"):
        fit_multinomial_logits(X[:, :2], rng.randint(0, 3, 200), 3, np.ones((200, 2)), 1.0)


def test_newton_warm_starts_converge_in_few_iterations():
    """EM's refits: a start near the solution is 1 to 3 Newton steps from it."""
    X, y, weights = raw_problems(26, n=2000)
    C = [1.0, 1e4, np.inf]
    cold = fit_multinomial_logits(X, y, 3, weights, C, tol=1e-8, max_iter=1000)
    assert np.all(cold[2] <= 10)
    rng = np.random.RandomState(0)
    for spread in (0.01, 0.1):
        nudged = weights * rng.uniform(1 - spread, 1 + spread, size=weights.shape)
        for tol in (1e-4, 1e-8, 1e-10):
            warm = fit_multinomial_logits(
                X, y, 3, nudged, C, coef=cold[0], intercept=cold[1], tol=tol, max_iter=1000
            )
            assert np.all(warm[2] <= 3), (spread, tol, warm[2])


def test_newton_keeps_the_sums_the_penalty_leaves_free():
    """From a start whose rows do not sum to zero (and far from the solution), a finite C
    takes the coefficients' sums over classes to zero (Newton's step along them is exact;
    L-BFGS stops when their small gradient is below tol); without penalty they and the
    intercepts' sums are kept."""
    X, y, weights = raw_problems(27)
    rng = np.random.RandomState(1)
    coef, intercept = rng.randn(3, 3, 4), rng.randn(3, 3)
    fitted = fit_multinomial_logits(
        X,
        y,
        3,
        weights,
        [1.0, 1e4, np.inf],
        coef=coef,
        intercept=intercept,
        tol=1e-10,
        max_iter=1000,
    )
    assert_allclose(fitted[0][:2].sum(axis=1), 0.0, atol=1e-9)
    assert_allclose(fitted[0][2].sum(axis=0), coef[2].sum(axis=0), atol=1e-10)
    assert_allclose(fitted[1][2].sum(), intercept[2].sum(), atol=1e-10)
    # With the sums removed from the start, the same solution.
    centred = fit_multinomial_logits(
        X,
        y,
        3,
        weights,
        [1.0, 1e4, np.inf],
        coef=coef - coef.mean(axis=1, keepdims=True),
        intercept=intercept - intercept.mean(axis=1, keepdims=True),
        tol=1e-10,
        max_iter=1000,
    )
    assert_allclose(probabilities(X, *fitted[:2]), probabilities(X, *centred[:2]), atol=1e-10)


def test_newton_from_a_saturated_start(monkeypatch):
    """From coefficients 100 times too large the probabilities are all near 0 or 1, the
    Hessian near 0 where the objective is near linear, and Newton's step huge: the
    damped steps (Böhning's bound) get the problems to their solutions."""
    X, y, weights = raw_problems(31)
    C = [1.0, 1e4, np.inf]
    solution = fit_multinomial_logits(X, y, 3, weights, C, tol=1e-10, max_iter=1000)
    damped = []
    direction = _multinomial._NewtonSystem.direction

    def recorded(system, damping=0.0):
        damped.append(damping)
        return direction(system, damping)

    monkeypatch.setattr(_multinomial._NewtonSystem, "direction", recorded)
    far = fit_multinomial_logits(
        X,
        y,
        3,
        weights,
        C,
        coef=100 * solution[0],
        intercept=100 * solution[1],
        tol=1e-10,
        max_iter=1000,
    )
    assert max(damped) == 1.0
    assert np.all(far[2] < 40)
    assert_allclose(probabilities(X, *far[:2]), probabilities(X, *solution[:2]), atol=1e-8)


def test_newton_with_collinear_features():
    """Without penalty a duplicated feature makes the Hessian singular: the step is then
    the pseudo-inverse's, and the model the one without the duplicate."""
    X, y, weights = raw_problems(28)
    doubled = np.hstack([X, X[:, :1]])
    alone = fit_multinomial_logits(X, y, 3, weights, np.inf, tol=1e-10, max_iter=1000)
    twice = fit_multinomial_logits(doubled, y, 3, weights, np.inf, tol=1e-9, max_iter=1000)
    assert np.all(twice[2] < 20)
    assert_allclose(probabilities(doubled, *twice[:2]), probabilities(X, *alone[:2]), atol=1e-8)


def test_newton_never_ends_above_its_start(solver):
    """Started at the solution with tol=0, rounding may only move it down."""
    X, y, weights = raw_problems(29)
    problem = _GroupedProblem(X, y, 3, weights, 1.0, None, None, True, True)
    solution = fit_multinomial_logits(X, y, 3, weights, 1.0, tol=1e-12, max_iter=1000)
    start = problem.objective(problem.pack(*solution[:2]), np.arange(3))[0]
    again = fit_multinomial_logits(
        X, y, 3, weights, 1.0, coef=solution[0], intercept=solution[1], tol=0.0, max_iter=1000
    )
    # Up to rounding: the solver's guard compares its own evaluations.
    ended = problem.objective(problem.pack(*again[:2]), np.arange(3))[0]
    assert np.all(ended <= start + 8 * np.spacing(start))


def test_newton_is_deterministic_whatever_the_thread_count():
    """The Hessians do not depend on the thread count, to the last bit (the kernel's
    threads then round the gradients differently); each thread count's fit repeats
    exactly."""
    X, y, weights = raw_problems(30, n=20_000)
    problem = _GroupedProblem(X, y, 3, weights, 1.0, None, None, True, True)
    theta = 0.3 * np.random.RandomState(2).randn(*problem.pack(None, None).shape)
    fits = {}
    hessians = {}
    for n_threads in (1, 2):
        with threadpool_limits(limits=n_threads, user_api="openmp"):
            hessians[n_threads] = problem.hessians(theta, np.arange(3))
            fits[n_threads] = [
                fit_multinomial_logits(X, y, 3, weights, 1.0, tol=1e-8) for _ in range(2)
            ]
        for a, b in zip(*fits[n_threads], strict=True):
            assert_array_equal(a, b)
    assert_array_equal(hessians[1], hessians[2])
    assert_allclose(fits[1][0][0], fits[2][0][0], atol=1e-8)


# --------------------------------------------------------------------------
# WeightedLogisticRegression's batch protocol
# --------------------------------------------------------------------------


def test_fit_many_equals_separate_fits_and_predicts_in_one_product():
    X, y, weights = raw_problems(17)
    labels = np.array([-1, 4, 10])[y]
    experts = [WeightedLogisticRegression(C=C, tol=1e-10, max_iter=2000) for C in (0.2, 5.0, 1e4)]
    fitted = WeightedLogisticRegression._fit_many(experts, X, labels, weights)
    assert fitted is experts
    for k, expert in enumerate(fitted):
        alone = WeightedLogisticRegression(C=expert.C, tol=1e-10, max_iter=2000).fit(
            X, labels, sample_weight=weights[:, k]
        )
        assert_array_equal(expert.classes_, alone.classes_)
        assert_allclose(expert.coef_, alone.coef_, atol=1e-6)
        assert_allclose(expert.intercept_, alone.intercept_, atol=1e-6)
        assert expert.n_features_in_ == 4 and expert.n_iter_ > 0
    proba = WeightedLogisticRegression._predict_proba_many(fitted, X)
    assert proba.shape == (X.shape[0], 3, 3)
    for k, expert in enumerate(fitted):
        assert_allclose(proba[:, k], expert.predict_proba(X), rtol=1e-12)
    assert_allclose(
        WeightedLogisticRegression._predict_proba_many(fitted, sp.csr_matrix(X)), proba, rtol=1e-12
    )


def test_fit_many_gives_every_expert_all_classes():
    """An expert without rows of some class still gets it, with a small probability."""
    X, y, weights = raw_problems(18)
    weights[y == 2, 1] = 0.0  # expert 1 never sees class 2
    experts = [WeightedLogisticRegression() for _ in range(3)]
    WeightedLogisticRegression._fit_many(experts, X, y, weights)
    for expert in experts:
        assert_array_equal(expert.classes_, [0, 1, 2])
    assert experts[1].predict_proba(X)[:, 2].max() < 1e-3


def test_fit_many_warm_starts_each_expert():
    X, y, weights = raw_problems(19)
    experts = [WeightedLogisticRegression(warm_start=True, tol=1e-8) for _ in range(3)]
    WeightedLogisticRegression._fit_many(experts, X, y, weights)
    cold = experts[0].n_iter_
    WeightedLogisticRegression._fit_many(experts, X, y, weights)
    assert experts[0].n_iter_ <= 1
    # Without warm_start the same call starts from zero.
    fresh = [WeightedLogisticRegression(tol=1e-8) for _ in range(3)]
    WeightedLogisticRegression._fit_many(fresh, X, y, weights)
    WeightedLogisticRegression._fit_many(fresh, X, y, weights)
    assert fresh[0].n_iter_ == cold
    # A previous solution for other classes is not a start.
    WeightedLogisticRegression._fit_many(experts, X, np.minimum(y, 1), weights)
    assert experts[0].n_iter_ > 1


def test_fit_many_sparse_equals_dense(solver):
    X, y, weights = raw_problems(20)
    X[np.abs(X - X.mean(axis=0)) < 0.5 * X.std(axis=0)] = 0.0
    dense = WeightedLogisticRegression._fit_many(
        [WeightedLogisticRegression(tol=1e-10) for _ in range(3)], X, y, weights
    )
    sparse = WeightedLogisticRegression._fit_many(
        [WeightedLogisticRegression(tol=1e-10) for _ in range(3)], sp.csr_matrix(X), y, weights
    )
    for a, b in zip(dense, sparse):
        assert_allclose(a.coef_, b.coef_, atol=1e-7)
        assert_allclose(a.intercept_, b.intercept_, atol=1e-7)


def test_fit_many_refuses_one_class_and_zero_weights():
    X, y, weights = raw_problems(21, n=40)
    with pytest.raises(ValueError, match="1 class"):
        WeightedLogisticRegression._fit_many(
            [WeightedLogisticRegression()], X, np.zeros(40), weights[:, :1]
        )
    weights[:, 1] = 0.0
    with pytest.raises(ValueError, match="sums to zero"):
        WeightedLogisticRegression._fit_many([WeightedLogisticRegression()] * 3, X, y, weights)
