"""The compiled kernels of ``skmoe/_kernels.pyx`` against plain NumPy/SciPy.

The kernels are the EM hot loop and are compiled with bounds checking off and
the row loop threaded, so a slip there is silent: a wrong responsibility only
shows up as a slightly worse fit.  Each kernel is therefore compared with a
straightforward reference written here from its mathematical definition:

* ``e_step``: responsibilities ``softmax(log_softmax(G) + L)`` and row
  log-likelihoods ``logsumexp(log_softmax(G) + L)``;
* ``gaussian_e_step``: the same with ``L = norm.logpdf(y, mean, sqrt(variance))``;
* ``softmax_gate_objective``: the weighted soft-target cross-entropy
  ``sum_i w_i (t_i. logsumexp(Z_i.) - t_i . Z_i.)`` of ``Z = X V + c`` and its
  gradient in ``(V, c)``, i.e. ``X.T G`` and the column sums of ``G``, the
  gradient in ``Z``;
* ``softmax_gate_top_k``: ``top_k_softmax`` of those logits;
* ``weighted_gram``: ``sum_i w_ik z_ik z_ik^T`` with ``z_ik = [x_i, y_i] - c_k``,
  one expert at a time;
* ``responsibility_weights`` / ``weighted_squared_residuals``: ``np.where``
  and ``einsum`` one-liners.

On top of agreement to ``rtol=1e-10`` on random inputs of several shapes, the
tests check what the references cannot: results do not depend on the number of
OpenMP threads, extreme and infinite logits are handled as documented, the E-step
is invariant to the per-row constant the gate logits are defined up to, the
returned gradient is the derivative of the returned loss (finite differences),
the softmax gate's full M-step objective, which chains the kernel through
the internal feature standardisation, has the gradient L-BFGS is told it has,
and a kernel whose per-thread memory cannot be allocated raises MemoryError.
(The HME recursions are tested in ``test_hme.py``.)
"""

import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import log_softmax, logsumexp, softmax
from scipy.stats import norm

from skmoe._kernels import (
    e_step,
    gaussian_e_step,
    group_by_expert,
    responsibility_weights,
    softmax_gate_objective,
    softmax_gate_top_k,
    top_k_softmax,
    use_simd,
    weighted_column_moments,
    weighted_gram,
    weighted_squared_residuals,
)
from skmoe.gates import SoftmaxGate

N_SAMPLES = (1, 7, 1000)
N_EXPERTS = (1, 2, 5, 32)
N_THREADS = (1, 2)

RTOL = 1e-10

# The kernels' exp loops have an AVX2 path and a baseline path (see
# skmoe/_fastexp.h); every test here runs on each path this CPU can take.
EXP_PATHS = ["avx2", "baseline"] if use_simd(True) else ["baseline"]


@pytest.fixture(autouse=True, params=EXP_PATHS)
def exp_path(request):
    use_simd(request.param == "avx2")
    yield request.param
    use_simd(True)


# Rows of gate logits at the edge of the exponent range: exp(1e3) overflows and
# exp(-1e3) underflows, and 700 is close to log(DBL_MAX) ~ 709.8; only kernels
# that shift each row by its maximum survive them.
EXTREME_LOGITS = np.array(
    [
        [1e3, -1e3, 700.0, 0.0, -700.0],
        [-1e3, -1e3, -1e3, -1e3, -1e3],
        [1e3, 1e3, 1e3, 1e3, 1e3],
        [700.0, 700.0, -700.0, 699.0, 0.0],
        [1e3, 999.0, 998.0, -1e3, 700.0],
        [-1e3, 1e3, -1e3, 1e3, -1e3],
        [700.0, -1e3, -1e3, -1e3, -1e3],
    ]
)


# --------------------------------------------------------------------------
# References and helpers
# --------------------------------------------------------------------------


def reference_e_step(gate_logits, log_likelihood):
    """Responsibilities and row log-likelihoods, straight from the definition.

    Rows must have at least one finite gate logit and one finite joint entry.
    """
    log_joint = log_softmax(gate_logits, axis=1) + log_likelihood
    return softmax(log_joint, axis=1), logsumexp(log_joint, axis=1)


def reference_gaussian_log_likelihood(y, mean, variance):
    """log N(y_i | mean_ik, variance_k) for every row and expert."""
    return norm.logpdf(y[:, None], loc=mean, scale=np.sqrt(variance))


def reference_softmax_loss_gradient(logits, targets, sample_weight):
    """Soft-target cross-entropy and its gradient, for any non-negative targets.

    loss = sum_i w_i (s_i logsumexp(Z_i.) - sum_k t_ik Z_ik) with s_i = sum_k t_ik;
    its derivative in Z_ik is w_i (s_i softmax(Z_i.)_k - t_ik).
    """
    row_sum = targets.sum(axis=1)
    row_loss = row_sum * logsumexp(logits, axis=1) - (targets * logits).sum(axis=1)
    loss = np.sum(sample_weight * row_loss)
    gradient = sample_weight[:, None] * (row_sum[:, None] * softmax(logits, axis=1) - targets)
    return loss, gradient


def run_e_step(gate_logits, log_likelihood, n_threads=1):
    """Call the kernel on NaN-filled output buffers, so unwritten entries show."""
    responsibilities = np.full(gate_logits.shape, np.nan)
    row_log_likelihood = np.full(gate_logits.shape[0], np.nan)
    e_step(gate_logits, log_likelihood, responsibilities, row_log_likelihood, n_threads)
    return responsibilities, row_log_likelihood


def run_gaussian_e_step(y, mean, variance, gate_logits, n_threads=1):
    responsibilities = np.full(gate_logits.shape, np.nan)
    row_log_likelihood = np.full(gate_logits.shape[0], np.nan)
    gaussian_e_step(
        y, mean, variance, gate_logits, responsibilities, row_log_likelihood, n_threads
    )
    return responsibilities, row_log_likelihood


def reference_gate_objective_parts(X, coef, intercept, targets, sample_weight):
    """Loss, d/dV = X.T G and d/dc = G summed over rows, for Z = X V + c."""
    loss, gradient = reference_softmax_loss_gradient(X @ coef + intercept, targets, sample_weight)
    return loss, X.T @ gradient, gradient.sum(axis=0)


def run_gate_objective(X, coef, intercept, targets, sample_weight, n_threads=1):
    """The kernel on NaN-filled gradient buffers: (loss, grad_coef, grad_intercept)."""
    grad_coef = np.full(coef.shape, np.nan)
    grad_intercept = np.full(intercept.shape, np.nan)
    loss = softmax_gate_objective(
        X, coef, intercept, targets, sample_weight, grad_coef, grad_intercept, n_threads
    )
    return loss, grad_coef, grad_intercept


def run_on_logits(logits, targets, sample_weight, n_threads=1):
    """The kernel with X = logits, V = I and c = 0, so that Z is exactly ``logits``.

    The gradient in Z, G, then shows as grad_coef = Z.T G and grad_intercept =
    G summed over rows.
    """
    K = logits.shape[1]
    return run_gate_objective(logits, np.eye(K), np.zeros(K), targets, sample_weight, n_threads)


def gradient_atol(X, sample_weight):
    """Absolute tolerance for X.T G: its entries sum terms of size |x_ij| w_i that can cancel."""
    return 1e-14 * max(1.0, float((np.abs(X).T @ sample_weight).max()))


def random_e_step_inputs(rng, n, K):
    """Gate logits and expert log-likelihoods of realistic, varied magnitudes."""
    gate_logits = rng.normal(scale=3.0, size=(n, K))
    log_likelihood = rng.normal(loc=-2.0, scale=5.0, size=(n, K))
    return gate_logits, log_likelihood


def random_gaussian_inputs(rng, n, K):
    """Targets, expert means near them, noise variances over two decades, logits."""
    y = rng.normal(scale=2.0, size=n)
    mean = y[:, None] + rng.normal(scale=1.5, size=(n, K))
    variance = 10.0 ** rng.uniform(-1.0, 1.0, size=K)
    gate_logits = rng.normal(scale=3.0, size=(n, K))
    return y, mean, variance, gate_logits


def random_softmax_inputs(rng, n, K):
    """Logits, soft targets on the simplex (Dirichlet rows), positive weights."""
    logits = rng.normal(scale=3.0, size=(n, K))
    targets = rng.dirichlet(np.full(K, 0.7), size=n)
    sample_weight = rng.uniform(0.1, 3.0, size=n)
    return logits, targets, sample_weight


def random_gate_inputs(rng, n, K, n_features=4):
    """X with varied scales, gate parameters giving logits of spread ~3, targets, weights."""
    X = rng.normal(size=(n, n_features)) * rng.uniform(0.5, 3.0, size=n_features)
    coef = rng.normal(scale=1.0, size=(n_features, K))
    intercept = rng.normal(scale=2.0, size=K)
    _, targets, sample_weight = random_softmax_inputs(rng, n, K)
    return X, coef, intercept, targets, sample_weight


def log_likelihood_atol(*log_terms):
    """Absolute tolerance for a row log-likelihood.

    The row log-likelihood is a log-sum-exp of terms of size |log_terms|; it can
    be ~0 while its rounding error is ~eps times those terms, so a pure relative
    comparison would fail on rows that happen to land near zero.
    """
    scale = max(np.max(np.abs(term[np.isfinite(term)]), initial=1.0) for term in log_terms)
    return 1e-13 * scale


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


# --------------------------------------------------------------------------
# Agreement with the references
# --------------------------------------------------------------------------


@pytest.mark.parametrize("n_threads", N_THREADS)
@pytest.mark.parametrize("K", N_EXPERTS)
@pytest.mark.parametrize("n", N_SAMPLES)
def test_e_step_matches_reference(n, K, n_threads):
    rng = np.random.default_rng(0)
    gate_logits, log_likelihood = random_e_step_inputs(rng, n, K)
    resp, row_ll = run_e_step(gate_logits, log_likelihood, n_threads)
    expected_resp, expected_ll = reference_e_step(gate_logits, log_likelihood)
    assert_allclose(resp, expected_resp, rtol=RTOL, atol=0)
    assert_allclose(
        row_ll, expected_ll, rtol=RTOL, atol=log_likelihood_atol(gate_logits, log_likelihood)
    )


@pytest.mark.parametrize("n_threads", N_THREADS)
@pytest.mark.parametrize("K", N_EXPERTS)
@pytest.mark.parametrize("n", N_SAMPLES)
def test_gaussian_e_step_matches_reference(n, K, n_threads):
    rng = np.random.default_rng(1)
    y, mean, variance, gate_logits = random_gaussian_inputs(rng, n, K)
    resp, row_ll = run_gaussian_e_step(y, mean, variance, gate_logits, n_threads)
    log_likelihood = reference_gaussian_log_likelihood(y, mean, variance)
    expected_resp, expected_ll = reference_e_step(gate_logits, log_likelihood)
    assert_allclose(resp, expected_resp, rtol=RTOL, atol=0)
    assert_allclose(
        row_ll, expected_ll, rtol=RTOL, atol=log_likelihood_atol(gate_logits, log_likelihood)
    )


@pytest.mark.parametrize("n_threads", N_THREADS)
@pytest.mark.parametrize("K", N_EXPERTS)
@pytest.mark.parametrize("n", N_SAMPLES)
def test_softmax_gate_objective_matches_reference(n, K, n_threads):
    rng = np.random.default_rng(2)
    inputs = random_gate_inputs(rng, n, K)
    loss, grad_coef, grad_intercept = run_gate_objective(*inputs, n_threads)
    expected_loss, expected_coef, expected_intercept = reference_gate_objective_parts(*inputs)
    X, sample_weight = inputs[0], inputs[-1]
    # With K = 1 the loss is exactly 0 and the gradient w (1 - 1) = 0; otherwise
    # it is a sum of positive terms, safely away from zero.
    assert_allclose(loss, expected_loss, rtol=RTOL, atol=0 if K > 1 else 1e-13)
    # Gradient entries are sums of w_i (s_i g_ik - t_ik) x_ij, differences of
    # O(w x) numbers that cancel, so their rounding error needs an atol.
    assert_allclose(grad_coef, expected_coef, rtol=RTOL, atol=gradient_atol(X, sample_weight))
    assert_allclose(
        grad_intercept, expected_intercept, rtol=RTOL, atol=1e-14 * sample_weight.sum()
    )


def test_softmax_gate_objective_unnormalised_targets():
    """The kernel's formula holds for any non-negative targets; zero rows contribute nothing."""
    rng = np.random.default_rng(3)
    X, coef, intercept, targets, sample_weight = random_gate_inputs(rng, 50, 4)
    targets *= rng.uniform(0.0, 5.0, size=(50, 1))
    targets[::10] = 0.0
    loss, grad_coef, grad_intercept = run_gate_objective(
        X, coef, intercept, targets, sample_weight
    )
    expected = reference_gate_objective_parts(X, coef, intercept, targets, sample_weight)
    assert_allclose(loss, expected[0], rtol=RTOL, atol=0)
    assert_allclose(grad_coef, expected[1], rtol=RTOL, atol=5 * gradient_atol(X, sample_weight))
    assert_allclose(grad_intercept, expected[2], rtol=RTOL, atol=5e-14 * sample_weight.sum())
    # The zero-target rows can be dropped without changing anything.
    keep = np.ones(50, dtype=bool)
    keep[::10] = False
    dropped = run_gate_objective(
        np.ascontiguousarray(X[keep]), coef, intercept, targets[keep], sample_weight[keep]
    )
    for got, want in zip(dropped, (loss, grad_coef, grad_intercept)):
        assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_softmax_gate_objective_adds_the_intercept_to_every_row():
    """The intercept enters as a column of ones in X would: checked against X V + c."""
    rng = np.random.default_rng(4)
    X, coef, intercept, targets, sample_weight = random_gate_inputs(rng, 200, 5)
    with_ones = np.column_stack([X, np.ones(200)])
    stacked = np.vstack([coef, intercept])
    loss, grad_coef, grad_intercept = run_gate_objective(
        X, coef, intercept, targets, sample_weight
    )
    loss_ones, grad_ones, _ = run_gate_objective(
        with_ones, stacked, np.zeros(5), targets, sample_weight
    )
    assert_allclose(loss, loss_ones, rtol=1e-12)
    assert_allclose(grad_coef, grad_ones[:-1], rtol=1e-10, atol=gradient_atol(X, sample_weight))
    assert_allclose(grad_intercept, grad_ones[-1], rtol=1e-10, atol=1e-14 * sample_weight.sum())


def test_kernel_exp_is_accurate_over_the_whole_range():
    """Two experts with gate logits (0, x) and equal likelihoods: r_1 = exp(x) / (1 + exp(x)).

    r_1 is computed from the kernels' own exp, so this checks it to a few ulps
    for x from -745 (below which libm's exp is 0) to 0, both sides of -708
    where the kernel's exp stops returning subnormals.
    """
    x = np.concatenate([np.linspace(-745.0, 0.0, 100_001), [-708.0, -707.9, -1e-300, 0.0]])
    gate_logits = np.column_stack([np.zeros_like(x), x])
    responsibilities, _ = run_e_step(gate_logits, np.zeros_like(gate_logits))
    expected = np.exp(x) / (1.0 + np.exp(x))
    normal = x >= -708.0
    assert_allclose(responsibilities[normal, 1], expected[normal], rtol=4e-16 * 8, atol=0)
    assert np.all(np.abs(responsibilities[~normal, 1] - expected[~normal]) <= np.exp(-708.0))


# --------------------------------------------------------------------------
# Thread-count independence
# --------------------------------------------------------------------------
# Rows are independent and each is computed by the same code whatever thread
# runs it, so per-row outputs must be bitwise identical.  Only the loss is a
# cross-row reduction whose summation order depends on the thread split.


@pytest.mark.parametrize("K", N_EXPERTS)
@pytest.mark.parametrize("n", N_SAMPLES)
def test_e_step_identical_across_thread_counts(n, K):
    rng = np.random.default_rng(4)
    gate_logits, log_likelihood = random_e_step_inputs(rng, n, K)
    resp_1, ll_1 = run_e_step(gate_logits, log_likelihood, n_threads=1)
    resp_2, ll_2 = run_e_step(gate_logits, log_likelihood, n_threads=2)
    assert_array_equal(resp_1, resp_2, strict=True)
    assert_array_equal(ll_1, ll_2, strict=True)


@pytest.mark.parametrize("K", N_EXPERTS)
@pytest.mark.parametrize("n", N_SAMPLES)
def test_gaussian_e_step_identical_across_thread_counts(n, K):
    rng = np.random.default_rng(5)
    inputs = random_gaussian_inputs(rng, n, K)
    resp_1, ll_1 = run_gaussian_e_step(*inputs, n_threads=1)
    resp_2, ll_2 = run_gaussian_e_step(*inputs, n_threads=2)
    assert_array_equal(resp_1, resp_2, strict=True)
    assert_array_equal(ll_1, ll_2, strict=True)


@pytest.mark.parametrize("K", N_EXPERTS)
@pytest.mark.parametrize("n", N_SAMPLES)
def test_softmax_gate_objective_across_thread_counts(n, K):
    """Cross-row sums: per-thread partial sums, so equal to rounding across thread
    counts, and bitwise equal between runs with the same count."""
    rng = np.random.default_rng(6)
    inputs = random_gate_inputs(rng, n, K)
    one = run_gate_objective(*inputs, n_threads=1)
    two = run_gate_objective(*inputs, n_threads=2)
    again = run_gate_objective(*inputs, n_threads=2)
    for got, want in zip(two, one):
        # K = 1: every term is an exact zero, up to rounding.
        assert_allclose(got, want, rtol=1e-12, atol=1e-12 * max(n, 1))
    for got, want in zip(again, two):
        assert_array_equal(got, want, strict=True)


# --------------------------------------------------------------------------
# Extreme and infinite logits
# --------------------------------------------------------------------------


@pytest.mark.parametrize("expert_scale", ["moderate", "extreme"])
def test_e_step_extreme_logits(expert_scale):
    rng = np.random.default_rng(7)
    gate_logits = EXTREME_LOGITS.copy()
    if expert_scale == "moderate":
        log_likelihood = rng.normal(scale=3.0, size=gate_logits.shape)
    else:  # experts disagree with the gate at the same extreme magnitudes
        log_likelihood = np.ascontiguousarray(EXTREME_LOGITS[:, ::-1])
    resp, row_ll = run_e_step(gate_logits, log_likelihood)
    assert np.all(np.isfinite(resp)) and np.all(np.isfinite(row_ll))
    assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-14)
    expected_resp, expected_ll = reference_e_step(gate_logits, log_likelihood)
    assert_allclose(resp, expected_resp, rtol=RTOL, atol=0)
    assert_allclose(
        row_ll, expected_ll, rtol=RTOL, atol=log_likelihood_atol(gate_logits, log_likelihood)
    )


def test_gaussian_e_step_extreme_logits():
    rng = np.random.default_rng(8)
    n, K = EXTREME_LOGITS.shape
    y, mean, variance, _ = random_gaussian_inputs(rng, n, K)
    mean[0, 1] += 1e3  # a residual of 1e3: log-density ~ -5e5
    resp, row_ll = run_gaussian_e_step(y, mean, variance, EXTREME_LOGITS)
    assert np.all(np.isfinite(resp)) and np.all(np.isfinite(row_ll))
    assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-14)
    log_likelihood = reference_gaussian_log_likelihood(y, mean, variance)
    expected_resp, expected_ll = reference_e_step(EXTREME_LOGITS, log_likelihood)
    assert_allclose(resp, expected_resp, rtol=RTOL, atol=0)
    assert_allclose(
        row_ll, expected_ll, rtol=RTOL, atol=log_likelihood_atol(EXTREME_LOGITS, log_likelihood)
    )


def test_softmax_gate_objective_extreme_logits():
    rng = np.random.default_rng(9)
    n, K = EXTREME_LOGITS.shape
    targets = rng.dirichlet(np.ones(K), size=n)
    sample_weight = rng.uniform(0.1, 3.0, size=n)
    loss, grad_coef, grad_intercept = run_on_logits(EXTREME_LOGITS, targets, sample_weight)
    assert np.isfinite(loss) and np.all(np.isfinite(grad_coef))
    expected_loss, expected_gradient = reference_softmax_loss_gradient(
        EXTREME_LOGITS, targets, sample_weight
    )
    assert_allclose(loss, expected_loss, rtol=RTOL, atol=0)
    # grad_coef = Z.T G sums terms up to 1e3 w in size: see gradient_atol.
    assert_allclose(
        grad_coef,
        EXTREME_LOGITS.T @ expected_gradient,
        rtol=RTOL,
        atol=gradient_atol(EXTREME_LOGITS, sample_weight),
    )
    assert_allclose(
        grad_intercept, expected_gradient.sum(axis=0), rtol=RTOL, atol=1e-14 * sample_weight.sum()
    )
    # Rows of the gradient of a softmax loss sum to w_i (s_i - s_i) = 0.
    assert_allclose(grad_intercept.sum(), 0.0, atol=1e-14 * sample_weight.sum() * K)


def test_e_step_minus_inf_gate_logit_gives_zero_responsibility():
    """A gate probability of exactly zero rules the expert out for that row."""
    rng = np.random.default_rng(10)
    gate_logits, log_likelihood = random_e_step_inputs(rng, 20, 5)
    ruled_out = rng.uniform(size=gate_logits.shape) < 0.4
    ruled_out[:, 0] = False  # at least one finite logit per row
    ruled_out[0] = [False, True, True, True, True]  # a single survivor
    gate_logits[ruled_out] = -np.inf
    resp, row_ll = run_e_step(gate_logits, log_likelihood)
    assert_array_equal(resp[ruled_out], 0.0)
    assert_array_equal(resp[0], [1.0, 0.0, 0.0, 0.0, 0.0])
    expected_resp, expected_ll = reference_e_step(gate_logits, log_likelihood)
    assert_allclose(resp, expected_resp, rtol=RTOL, atol=0)
    assert_allclose(
        row_ll, expected_ll, rtol=RTOL, atol=log_likelihood_atol(gate_logits, log_likelihood)
    )


def test_e_step_minus_inf_expert_log_likelihood_gives_zero_responsibility():
    """Likewise an expert that gives the target probability zero."""
    rng = np.random.default_rng(11)
    gate_logits, log_likelihood = random_e_step_inputs(rng, 20, 5)
    impossible = rng.uniform(size=gate_logits.shape) < 0.4
    impossible[:, 2] = False
    log_likelihood[impossible] = -np.inf
    resp, row_ll = run_e_step(gate_logits, log_likelihood)
    assert_array_equal(resp[impossible], 0.0)
    expected_resp, expected_ll = reference_e_step(gate_logits, log_likelihood)
    assert_allclose(resp, expected_resp, rtol=RTOL, atol=0)
    assert_allclose(
        row_ll, expected_ll, rtol=RTOL, atol=log_likelihood_atol(gate_logits, log_likelihood)
    )


def test_gaussian_e_step_minus_inf_gate_logit_gives_zero_responsibility():
    rng = np.random.default_rng(12)
    y, mean, variance, gate_logits = random_gaussian_inputs(rng, 20, 5)
    ruled_out = rng.uniform(size=gate_logits.shape) < 0.4
    ruled_out[:, 3] = False
    gate_logits[ruled_out] = -np.inf
    resp, row_ll = run_gaussian_e_step(y, mean, variance, gate_logits)
    assert_array_equal(resp[ruled_out], 0.0)
    log_likelihood = reference_gaussian_log_likelihood(y, mean, variance)
    expected_resp, expected_ll = reference_e_step(gate_logits, log_likelihood)
    assert_allclose(resp, expected_resp, rtol=RTOL, atol=0)
    assert_allclose(
        row_ll, expected_ll, rtol=RTOL, atol=log_likelihood_atol(gate_logits, log_likelihood)
    )


@pytest.mark.parametrize("K", N_EXPERTS)
def test_e_step_impossible_row_is_uniform_with_minus_inf_log_likelihood(K):
    """Documented: a row with no finite log joint gets 1/K and log-likelihood -inf.

    That happens when every gate logit is -inf, or every expert log-likelihood
    is; the other rows must be unaffected.
    """
    rng = np.random.default_rng(13)
    gate_logits, log_likelihood = random_e_step_inputs(rng, 6, K)
    gate_logits[1] = -np.inf
    log_likelihood[4] = -np.inf
    resp, row_ll = run_e_step(gate_logits, log_likelihood)
    for row in (1, 4):
        assert_array_equal(resp[row], np.full(K, 1.0 / K))
        assert row_ll[row] == -np.inf
    ok = [0, 2, 3, 5]
    expected_resp, expected_ll = reference_e_step(gate_logits[ok], log_likelihood[ok])
    assert_allclose(resp[ok], expected_resp, rtol=RTOL, atol=0)
    assert_allclose(
        row_ll[ok],
        expected_ll,
        rtol=RTOL,
        atol=log_likelihood_atol(gate_logits[ok], log_likelihood[ok]),
    )


@pytest.mark.parametrize("K", N_EXPERTS)
def test_gaussian_e_step_all_minus_inf_gate_row_is_uniform(K):
    rng = np.random.default_rng(14)
    y, mean, variance, gate_logits = random_gaussian_inputs(rng, 6, K)
    gate_logits[2] = -np.inf
    resp, row_ll = run_gaussian_e_step(y, mean, variance, gate_logits)
    assert_array_equal(resp[2], np.full(K, 1.0 / K))
    assert row_ll[2] == -np.inf
    ok = [0, 1, 3, 4, 5]
    log_likelihood = reference_gaussian_log_likelihood(y, mean, variance)[ok]
    expected_resp, expected_ll = reference_e_step(gate_logits[ok], log_likelihood)
    assert_allclose(resp[ok], expected_resp, rtol=RTOL, atol=0)
    assert_allclose(
        row_ll[ok],
        expected_ll,
        rtol=RTOL,
        atol=log_likelihood_atol(gate_logits[ok], log_likelihood),
    )


# --------------------------------------------------------------------------
# Invariance to the per-row constant of the gate logits
# --------------------------------------------------------------------------


@pytest.mark.parametrize("K", (2, 5, 32))
@pytest.mark.parametrize("kernel", ["e_step", "gaussian_e_step"])
def test_e_step_invariant_to_per_row_logit_shift(kernel, K):
    """Gate logits are log-probabilities up to a row constant; shifting changes nothing."""
    rng = np.random.default_rng(15)
    n = 1000
    shift = rng.normal(scale=100.0, size=(n, 1))
    if kernel == "e_step":
        gate_logits, log_likelihood = random_e_step_inputs(rng, n, K)
        resp, row_ll = run_e_step(gate_logits, log_likelihood)
        resp_shifted, row_ll_shifted = run_e_step(gate_logits + shift, log_likelihood)
    else:
        y, mean, variance, gate_logits = random_gaussian_inputs(rng, n, K)
        log_likelihood = reference_gaussian_log_likelihood(y, mean, variance)
        resp, row_ll = run_gaussian_e_step(y, mean, variance, gate_logits)
        resp_shifted, row_ll_shifted = run_gaussian_e_step(y, mean, variance, gate_logits + shift)
    assert_allclose(resp_shifted, resp, rtol=RTOL, atol=0)
    # The shift itself is removed by a subtraction, with rounding ~eps |shift|.
    atol = log_likelihood_atol(gate_logits + shift, log_likelihood)
    assert_allclose(row_ll_shifted, row_ll, rtol=RTOL, atol=atol)


# --------------------------------------------------------------------------
# Gradients: the kernel's and the softmax gate's full objective
# --------------------------------------------------------------------------


@pytest.mark.parametrize("K", (2, 5))
@pytest.mark.parametrize("targets_kind", ["simplex", "unnormalised"])
def test_softmax_gate_objective_is_derivative_of_loss(targets_kind, K):
    rng = np.random.default_rng(16)
    n = 7
    X, coef, intercept, targets, sample_weight = random_gate_inputs(rng, n, K)
    if targets_kind == "unnormalised":
        targets *= rng.uniform(0.2, 3.0, size=(n, 1))
    _, grad_coef, grad_intercept = run_gate_objective(X, coef, intercept, targets, sample_weight)

    def loss_of_coef(v):
        return run_gate_objective(X, v, intercept, targets, sample_weight)[0]

    def loss_of_intercept(c):
        return run_gate_objective(X, coef, c, targets, sample_weight)[0]

    # Stencil error: O(h^4) truncation plus ~eps |loss| / h rounding, ~1e-11 here;
    # gradient entries that cancel to ~0 need that as an absolute floor.
    assert_allclose(
        grad_coef, central_difference(loss_of_coef, coef, h=1e-3), rtol=1e-7, atol=1e-9
    )
    assert_allclose(
        grad_intercept,
        central_difference(loss_of_intercept, intercept, h=1e-3),
        rtol=1e-7,
        atol=1e-9,
    )


def test_softmax_gate_objective_on_simplex_targets_is_weighted_residual():
    """With rows of T on the simplex: G = w (softmax(Z) - T), loss = -sum w T log softmax(Z)."""
    rng = np.random.default_rng(17)
    X, coef, intercept, targets, sample_weight = random_gate_inputs(rng, 200, 6)
    loss, grad_coef, grad_intercept = run_gate_objective(
        X, coef, intercept, targets, sample_weight
    )
    logits = X @ coef + intercept
    residual = sample_weight[:, None] * (softmax(logits, axis=1) - targets)
    assert_allclose(grad_coef, X.T @ residual, rtol=RTOL, atol=gradient_atol(X, sample_weight))
    assert_allclose(
        grad_intercept, residual.sum(axis=0), rtol=RTOL, atol=1e-14 * sample_weight.sum()
    )
    cross_entropy = -np.sum(sample_weight[:, None] * targets * log_softmax(logits, axis=1))
    assert_allclose(loss, cross_entropy, rtol=RTOL, atol=0)


def non_standardised_gate_problem(rng, n=300, K=3):
    """Features with wildly different means and scales, soft targets, weights."""
    means = np.array([100.0, -5.0, 0.0, 3e3])
    scales = np.array([0.01, 10.0, 1.0, 50.0])
    X = means + scales * rng.normal(size=(n, means.size))
    responsibilities = rng.dirichlet(np.full(K, 0.8), size=n)
    sample_weight = rng.uniform(0.2, 2.0, size=n)
    return X, responsibilities, sample_weight


def reference_gate_objective(theta, X, responsibilities, sample_weight, C):
    """Per-sample penalised cross-entropy, with X standardised explicitly."""
    n_features, K = X.shape[1], responsibilities.shape[1]
    mean = np.average(X, axis=0, weights=sample_weight)
    scale = np.sqrt(np.average((X - mean) ** 2, axis=0, weights=sample_weight))
    std_coef = theta[: n_features * K].reshape(n_features, K)
    logits = ((X - mean) / scale) @ std_coef + theta[n_features * K :]
    loss, _ = reference_softmax_loss_gradient(logits, responsibilities, sample_weight)
    if np.isfinite(C):
        loss += 0.5 * np.sum(std_coef**2) / C
    return loss / sample_weight.sum()


@pytest.mark.parametrize("C", [0.5, np.inf])
def test_softmax_gate_objective_gradient(C):
    rng = np.random.default_rng(18)
    X, responsibilities, sample_weight = non_standardised_gate_problem(rng)
    K = responsibilities.shape[1]
    gate = SoftmaxGate(C=C)
    gate._initialize(X, K, sample_weight)
    theta = gate._pack() + rng.normal(size=(X.shape[1] + 1) * K)
    args = (X, responsibilities, sample_weight, sample_weight.sum())

    value, gradient = gate._objective(theta, *args, 1)
    # The value is what it claims to be (X @ coef and the intercept cancel to
    # ~1e4 in the first column, costing a few ulps of that, well under RTOL) ...
    assert_allclose(
        value,
        reference_gate_objective(theta, X, responsibilities, sample_weight, C),
        rtol=RTOL,
        atol=0,
    )
    # ... the gradient is its derivative ...
    numerical = central_difference(lambda t: gate._objective(t, *args, 1)[0], theta, h=1e-3)
    relative_error = np.linalg.norm(gradient - numerical) / np.linalg.norm(numerical)
    assert relative_error < 1e-6, relative_error
    # ... and neither depends on the kernel's thread count beyond rounding.
    value_2, gradient_2 = gate._objective(theta, *args, 2)
    assert_allclose(value_2, value, rtol=1e-12, atol=0)
    assert_allclose(gradient_2, gradient, rtol=1e-10, atol=1e-12 * np.abs(gradient).max())


# --------------------------------------------------------------------------
# Input validation done by the typed memoryviews
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_bad",
    [lambda a: a.astype(np.float32), lambda a: np.asfortranarray(a)],
    ids=["float32", "fortran"],
)
def test_kernels_reject_wrong_dtype_or_layout(make_bad):
    """Bounds checks are off, so wrong buffers must be refused, not misread."""
    rng = np.random.default_rng(19)
    gate_logits, log_likelihood = random_e_step_inputs(rng, 5, 3)
    with pytest.raises(ValueError):
        run_e_step(make_bad(gate_logits), log_likelihood)
    X, coef, intercept, targets, sample_weight = random_gate_inputs(rng, 5, 3)
    with pytest.raises(ValueError):
        run_gate_objective(X, coef, intercept, make_bad(targets), sample_weight)
    with pytest.raises(ValueError):
        run_gate_objective(make_bad(X), coef, intercept, targets, sample_weight)


def test_kernels_reject_mismatched_shapes_and_thread_counts():
    """A buffer of the wrong length would be read or written out of bounds."""
    rng = np.random.default_rng(23)
    gate_logits, log_likelihood = random_e_step_inputs(rng, 5, 3)
    with pytest.raises(
        ValueError, match=re.escape("log_likelihood has shape (4, 3), expected (5, 3)")
    ):
        run_e_step(gate_logits, log_likelihood[:4])
    with pytest.raises(ValueError, match="variance has shape"):
        gaussian_e_step(
            np.zeros(5), np.zeros((5, 3)), np.ones(2), gate_logits, np.empty((5, 3)), np.empty(5)
        )
    X, coef, intercept, targets, sample_weight = random_gate_inputs(rng, 5, 3)
    with pytest.raises(ValueError, match=re.escape("sample_weight has shape (2,), expected (5,)")):
        run_gate_objective(X, coef, intercept, targets, sample_weight[:2])
    with pytest.raises(ValueError, match=re.escape("coef has shape (3, 3), expected (4, 3)")):
        run_gate_objective(X, coef[:3], intercept, targets, sample_weight)
    with pytest.raises(ValueError, match="n_threads must be >= 1, got 0"):
        e_step(gate_logits, log_likelihood, np.empty((5, 3)), np.empty(5), 0)


# --------------------------------------------------------------------------
# Properties over arbitrary finite inputs
# --------------------------------------------------------------------------


# The autouse exp_path fixture only selects a code path: sharing it between
# examples is what is wanted.
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.integers(1, 6).flatmap(
        lambda k: st.tuples(
            arrays(np.float64, (4, k), elements=st.floats(-700, 700)),
            arrays(np.float64, (4, k), elements=st.floats(-1e4, 1e4)),
        )
    )
)
def test_e_step_properties_on_any_finite_input(inputs):
    """Responsibilities are a probability vector and match the reference, always."""
    gate_logits, log_likelihood = inputs
    resp, row_log_lik = run_e_step(gate_logits, log_likelihood)
    assert np.all(resp >= 0) and np.all(np.isfinite(row_log_lik))
    assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-12)
    reference = logsumexp(log_softmax(gate_logits, axis=1) + log_likelihood, axis=1)
    assert_allclose(row_log_lik, reference, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------
# Sparse routing kernels
# --------------------------------------------------------------------------


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("n, K, top_k", [(1, 1, 1), (7, 5, 2), (1000, 16, 2), (1000, 32, 8)])
def test_top_k_softmax_matches_reference(n, K, top_k, n_threads):
    rng = np.random.default_rng(29)
    logits = rng.normal(scale=3.0, size=(n, K))
    experts = np.empty((n, top_k), dtype=np.intp)
    weights = np.empty((n, top_k))
    top_k_softmax(logits, top_k, experts, weights, n_threads)
    # Reference: a stable sort of -logits keeps the lower index first on ties.
    expected = np.argsort(-logits, axis=1, kind="stable")[:, :top_k]
    assert_array_equal(experts, expected)
    kept = np.take_along_axis(logits, expected, axis=1)
    assert_allclose(weights, softmax(kept, axis=1), rtol=1e-12)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("n, K, top_k", [(1, 1, 1), (7, 5, 2), (1000, 16, 2), (600, 32, 8)])
def test_softmax_gate_top_k_is_top_k_softmax_of_the_logits(n, K, top_k, n_threads):
    """Routing straight from X equals routing the stored logits X V + c."""
    rng = np.random.default_rng(31)
    X, coef, intercept, _, _ = random_gate_inputs(rng, n, K, n_features=6)
    experts = np.empty((n, top_k), dtype=np.intp)
    weights = np.empty((n, top_k))
    softmax_gate_top_k(X, coef, intercept, top_k, experts, weights, n_threads)
    expected_experts = np.empty_like(experts)
    expected_weights = np.empty_like(weights)
    top_k_softmax(X @ coef + intercept, top_k, expected_experts, expected_weights, 1)
    # Random continuous logits: no near-ties for the two roundings of X V + c to split.
    assert_array_equal(experts, expected_experts)
    assert_allclose(weights, expected_weights, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match=re.escape(f"top_k must be in [1, {K}], got {K + 1}")):
        softmax_gate_top_k(X, coef, intercept, K + 1, experts, weights, 1)


def test_top_k_softmax_breaks_ties_by_lower_index():
    logits = np.array([[1.0, 3.0, 3.0, 0.0, 3.0]])
    experts = np.empty((1, 2), dtype=np.intp)
    weights = np.empty((1, 2))
    top_k_softmax(logits, 2, experts, weights, 1)
    assert_array_equal(experts, [[1, 2]])
    assert_allclose(weights, [[0.5, 0.5]])
    with pytest.raises(ValueError, match=re.escape("top_k must be in [1, 5], got 6")):
        top_k_softmax(logits, 6, np.empty((1, 6), dtype=np.intp), np.empty((1, 6)), 1)


def test_group_by_expert_is_a_stable_counting_sort():
    rng = np.random.default_rng(31)
    experts = rng.integers(0, 6, size=(500, 3)).astype(np.intp)
    experts[:, 1] = 5  # an expert with many rows; expert values 0..5, K = 7 leaves 6 empty
    order = np.empty(1500, dtype=np.intp)
    offsets = np.empty(8, dtype=np.intp)
    group_by_expert(experts, order, offsets)
    flat = experts.ravel()
    assert_array_equal(order, np.argsort(flat, kind="stable"))
    assert_array_equal(offsets, np.concatenate([[0], np.cumsum(np.bincount(flat, minlength=7))]))
    with pytest.raises(ValueError, match=r"expert index \d outside \[0, 3\)"):
        group_by_expert(experts, order, np.empty(4, dtype=np.intp))


# --------------------------------------------------------------------------
# Weighted Gram matrices (the batch refit of linear experts)
# --------------------------------------------------------------------------


def reference_weighted_gram(X, y, weights, centre):
    """``sum_i w_ik z_ik z_ik^T`` with ``z_ik = [x_i, y_i] - centre[k]``, one expert at a time."""
    Z = np.column_stack([X, y])
    return np.stack([(Z - c).T @ ((Z - c) * w[:, None]) for c, w in zip(centre, weights.T)])


def random_gram_inputs(rng, n, K, n_features=5):
    """Offset features, weights with many exact zeros (rows absent for that expert)."""
    X = rng.normal(size=(n, n_features)) * 3 + rng.normal(size=n_features) * 10
    y = X @ rng.normal(size=n_features) + rng.normal(size=n)
    weights = rng.dirichlet(np.ones(K) * 0.5, size=n)
    weights[weights < 0.1] = 0.0
    centre = rng.normal(size=(K, n_features + 1)) * 10
    return X, y, weights, centre


def run_weighted_gram(X, y, weights, centre, n_threads=1):
    gram = np.full((weights.shape[1], X.shape[1] + 1, X.shape[1] + 1), np.nan)
    weighted_gram(X, y, weights, centre, gram, n_threads)
    return gram


@pytest.mark.parametrize("n", [1, 7, 1000])  # less than one block of rows, and several
@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("n_threads", N_THREADS)
def test_weighted_gram_matches_reference(n, K, n_threads):
    rng = np.random.default_rng(37)
    X, y, weights, centre = random_gram_inputs(rng, n, K)
    gram = run_weighted_gram(X, y, weights, centre, n_threads)
    expected = reference_weighted_gram(X, y, weights, centre)
    assert_allclose(gram, expected, rtol=RTOL, atol=1e-9 * np.abs(expected).max())
    assert_allclose(gram, np.swapaxes(gram, 1, 2), rtol=1e-12)  # both triangles written


def test_weighted_gram_zero_weight_is_the_row_left_out():
    """Rows of zero weight are skipped, so a NaN there must not leak into the sums."""
    rng = np.random.default_rng(41)
    X, y, weights, centre = random_gram_inputs(rng, 600, 2)
    weights[::3] = 0.0
    X_poisoned = X.copy()
    X_poisoned[::3] = np.nan
    kept = np.ones(600, dtype=bool)
    kept[::3] = False
    assert_allclose(
        run_weighted_gram(X_poisoned, y, weights, centre),
        reference_weighted_gram(X[kept], y[kept], weights[kept], centre),
        rtol=RTOL,
    )
    assert_array_equal(run_weighted_gram(X, y, np.zeros((600, 2)), centre), 0.0)


def test_weighted_gram_across_thread_counts():
    rng = np.random.default_rng(43)
    X, y, weights, centre = random_gram_inputs(rng, 5000, 4)
    one, two = (run_weighted_gram(X, y, weights, centre, t) for t in (1, 2))
    assert_allclose(one, two, rtol=1e-12)
    assert_array_equal(two, run_weighted_gram(X, y, weights, centre, 2))


def test_weighted_gram_rejects_mismatched_shapes():
    rng = np.random.default_rng(47)
    X, y, weights, centre = random_gram_inputs(rng, 10, 3)
    with pytest.raises(ValueError, match=re.escape("centre has shape (3, 5), expected (3, 6)")):
        run_weighted_gram(X, y, weights, np.ascontiguousarray(centre[:, :5]))
    with pytest.raises(ValueError, match=re.escape("weights has shape (9, 3), expected (10, 3)")):
        run_weighted_gram(X, y, weights[:9], centre)
    with pytest.raises(ValueError, match=re.escape("gram_out has shape (3, 6, 5)")):
        weighted_gram(X, y, weights, centre, np.empty((3, 6, 5)), 1)


def run_column_moments(X, weights, n_threads=1):
    n_sets, n_features = weights.shape[1], X.shape[1]
    total, mean, squares = (
        np.empty(n_sets),
        np.empty((n_sets, n_features)),
        np.empty((n_sets, n_features)),
    )
    weighted_column_moments(X, weights, total, mean, squares, n_threads)
    return total, mean, squares


@pytest.mark.parametrize("n", [1, 7, 1000])
@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("n_threads", N_THREADS)
def test_weighted_column_moments_match_the_two_pass_reference(n, K, n_threads):
    rng = np.random.default_rng(53)
    X, _, weights, _ = random_gram_inputs(rng, n, K)
    weights[0] = 1.0  # every column set has some weight
    total, mean, squares = run_column_moments(X, weights, n_threads)
    for k in range(K):
        w = weights[:, k]
        expected_mean = w @ X / w.sum()
        assert total[k] == pytest.approx(w.sum(), rel=RTOL)
        assert_allclose(mean[k], expected_mean, rtol=RTOL, atol=1e-12 * np.abs(X).max())
        assert_allclose(squares[k], w @ (X - expected_mean) ** 2, rtol=1e-9, atol=1e-9)


def test_weighted_column_moments_leave_out_rows_of_zero_weight():
    rng = np.random.default_rng(59)
    X, _, weights, _ = random_gram_inputs(rng, 600, 2)
    weights[::3] = 0.0
    weights[1] = 1.0
    poisoned = X.copy()
    poisoned[::3] = np.nan
    for got, expected in zip(
        run_column_moments(poisoned, weights), run_column_moments(X, weights)
    ):
        assert_array_equal(got, expected)
    one, two = run_column_moments(X, weights, 1), run_column_moments(X, weights, 2)
    for a, b in zip(one, two):
        assert_allclose(a, b, rtol=1e-12)
    with pytest.raises(ValueError, match="weights column 1 has no positive weight"):
        run_column_moments(X, np.column_stack([weights[:, 0], np.zeros(600)]))
    with pytest.raises(ValueError, match=re.escape("total_out has shape (3,), expected (2,)")):
        weighted_column_moments(X, weights, np.empty(3), np.empty((2, 5)), np.empty((2, 5)), 1)


# --------------------------------------------------------------------------
# M-step bookkeeping: refit weights and weighted residuals
# --------------------------------------------------------------------------


@pytest.mark.parametrize("n", N_SAMPLES)
@pytest.mark.parametrize("K", N_EXPERTS)
@pytest.mark.parametrize("n_threads", N_THREADS)
def test_responsibility_weights_match_reference(n, K, n_threads):
    rng = np.random.default_rng(53)
    resp = rng.dirichlet(np.ones(K) * 0.3, size=n)
    sample_weight = rng.uniform(0, 2, size=n)
    sample_weight[::4] = 0.0
    threshold = 0.05
    weights = np.full((n, K), np.nan)
    counts = np.full(K, -1, dtype=np.intp)
    responsibility_weights(resp, sample_weight, threshold, weights, counts, n_threads)
    expected = np.where(resp > threshold, resp * sample_weight[:, None], 0.0)
    assert_array_equal(weights, expected)
    assert_array_equal(counts, np.count_nonzero(expected, axis=0))


@pytest.mark.parametrize("n", N_SAMPLES)
@pytest.mark.parametrize("K", N_EXPERTS)
@pytest.mark.parametrize("n_threads", N_THREADS)
def test_weighted_squared_residuals_match_reference(n, K, n_threads):
    rng = np.random.default_rng(59)
    y = rng.normal(size=n)
    mean = rng.normal(size=(n, K))
    weights = rng.uniform(size=(n, K))
    weights[rng.uniform(size=(n, K)) < 0.3] = 0.0
    expected = np.einsum("nk,nk->k", weights, (y[:, None] - mean) ** 2)
    mean[weights == 0] = np.nan  # an expert's output is unset where it weighs 0
    sums = np.full(K, np.nan)
    weighted_squared_residuals(y, mean, weights, sums, n_threads)
    assert_allclose(sums, expected, rtol=RTOL)


def test_bookkeeping_kernels_reject_mismatched_shapes():
    with pytest.raises(ValueError, match=re.escape("counts_out has shape (2,), expected (3,)")):
        responsibility_weights(
            np.ones((4, 3)), np.ones(4), 0.0, np.empty((4, 3)), np.empty(2, dtype=np.intp), 1
        )
    with pytest.raises(ValueError, match=re.escape("weights has shape (4, 2), expected (4, 3)")):
        weighted_squared_residuals(np.ones(4), np.ones((4, 3)), np.ones((4, 2)), np.empty(3), 1)


# --------------------------------------------------------------------------
# Memory: a scratch allocation that fails raises MemoryError
# --------------------------------------------------------------------------

# Run in a child process whose address space is capped (RLIMIT_AS) a little
# above what it has mapped, so that allocations of a few MB succeed and the
# kernels' per-thread scratch, hundreds of MB for these legitimate (if
# extreme) shapes, cannot.  Each kernel must raise MemoryError and leave the
# process sound.  (Before the scratch was allocated as NumPy arrays up front,
# a failing malloc inside the parallel region returned NULL to code that
# wrote through it, the MemoryError being unraisable: e_step, gaussian_e_step
# and softmax_gate_top_k crashed with a segmentation fault here and
# softmax_gate_objective hung, which the timeout turns into a failure.)
OUT_OF_MEMORY_SCRIPT = r"""
import resource
import sys

import numpy as np
from numpy.testing import assert_allclose
from scipy.special import log_softmax, logsumexp

from skmoe._kernels import (
    e_step, gaussian_e_step, softmax_gate_objective, softmax_gate_top_k, weighted_gram,
)

HEADROOM = 64 * 2**20  # bytes the capped process may still map
K = 2**20  # experts: e.g. the E-step scratch is (2K + 1) * 32 doubles = 512 MB per thread
N_THREADS = 4


def mapped_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


def small_e_step(n_threads):
    rng = np.random.default_rng(0)
    gate, log_lik = rng.normal(size=(2, 300, 3))
    resp, row = np.empty((300, 3)), np.empty(300)
    e_step(gate, log_lik, resp, row, n_threads)
    joint = log_softmax(gate, axis=1) + log_lik
    assert_allclose(row, logsumexp(joint, axis=1), rtol=1e-10)
    assert_allclose(resp, np.exp(joint - row[:, None]), rtol=1e-10)


one_row = np.zeros((1, K))
out_row = np.empty((1, K))
vector = np.ones(K)
no_features = np.empty((1, 0))
no_coef = np.empty((0, K))
grad = np.empty(K)
width = 2048  # weighted_gram: one expert, 2047 features; gram_out is 32 MB, 4 threads' sums 128 MB
X_wide = np.zeros((1, width - 1))
gram = np.empty((1, width, width))
calls = {
    "e_step": lambda: e_step(one_row, one_row, out_row, np.empty(1), N_THREADS),
    "gaussian_e_step": lambda: gaussian_e_step(
        np.zeros(1), one_row, vector, one_row, out_row, np.empty(1), N_THREADS),
    "softmax_gate_objective": lambda: softmax_gate_objective(
        no_features, no_coef, vector, one_row, np.ones(1), no_coef, grad, N_THREADS),
    "softmax_gate_top_k": lambda: softmax_gate_top_k(
        no_features, no_coef, vector, 1, np.empty((1, 1), dtype=np.intp), np.empty((1, 1)),
        N_THREADS),
    "weighted_gram": lambda: weighted_gram(
        X_wide, np.zeros(1), np.ones((1, 1)), np.zeros((1, width)), gram, N_THREADS),
}
small_e_step(N_THREADS)  # starts the OpenMP threads before the cap
resource.setrlimit(resource.RLIMIT_AS, (mapped_bytes() + HEADROOM, resource.RLIM_INFINITY))
for name, call in calls.items():
    try:
        call()
    except MemoryError:
        print(name, "MemoryError", flush=True)
    else:
        print(name, "returned", flush=True)
small_e_step(N_THREADS)  # still sound, and the kernels still work
print("done", flush=True)
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="caps the address space through /proc"
)
def test_failed_scratch_allocation_raises_memory_error(exp_path, tmp_path):
    if exp_path != EXP_PATHS[0]:
        pytest.skip("allocation does not depend on the exp path")
    # From another directory, so that the child imports the installed package
    # and not the source tree (python -c puts the working directory first).
    result = subprocess.run(
        [sys.executable, "-c", OUT_OF_MEMORY_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert result.stdout.split("\n") == [
        "e_step MemoryError",
        "gaussian_e_step MemoryError",
        "softmax_gate_objective MemoryError",
        "softmax_gate_top_k MemoryError",
        "weighted_gram MemoryError",
        "done",
        "",
    ], result.stdout
    assert "Exception ignored" not in result.stderr, result.stderr  # no unraisable errors
