"""Section a: the compiled kernels against their best NumPy/SciPy formulation.

Two kernels make up the EM hot loop: ``gaussian_e_step`` (gate log-softmax,
Gaussian log-densities, log-sum-exp over experts, responsibilities) and
``softmax_gate_objective`` (the gate's soft-target cross-entropy and its
gradient in the gate's coefficients, called once per L-BFGS step of the gate
M-step; the NumPy versions compute the logits ``X V + c`` and the products
``X.T G`` with BLAS around the same row-wise work, d = 20 features).

Each is timed against three NumPy formulations, and the ratio is taken to the
fastest of them, so the kernel is not credited for a lazy baseline:

* ``scipy``: the textbook version with ``scipy.special.logsumexp`` and
  ``softmax``, allocating its temporaries;
* ``np-axis``: in-place ufuncs into preallocated buffers, row reductions with
  ``axis=1``; the E-step also skips normalising the gate before adding the
  experts' log-densities (responsibilities do not depend on a per-row
  constant, so the gate's normaliser is only subtracted from the row
  log-likelihood);
* ``np-cols``: the same, but row reductions as a loop over the K columns.
  NumPy reduces a short contiguous last axis with a per-row inner loop, which
  is slow for small K; K strided whole-column ufunc calls win there.

The NumPy versions assume finite inputs (the kernels also handle rows of
``-inf``); each is checked against the kernel before it is timed.

Kernel threads: the ratio uses ``skmoe._threads.kernel_threads(n * K)``
threads (column ``thr``), as the package does; 1 and 2 threads are timed as
well (NumPy's ufuncs are single-threaded either way).
"""

import numpy as np
from scipy.special import logsumexp, softmax

from skmoe._kernels import gaussian_e_step, softmax_gate_objective
from skmoe._threads import kernel_threads

from _timing import print_table, time_interleaved, verdict

LOG_2PI = np.log(2.0 * np.pi)
TARGET_N, TARGET_K = 10**6, 16
TARGETS = {"gaussian_e_step": 3.0, "softmax_gate_objective": 2.0}
GATE_FEATURES = 20


class _AxisReductions:
    """Row reductions of an (n, K) array with ``axis=1``."""

    @staticmethod
    def max(A, out):
        np.max(A, axis=1, out=out)

    @staticmethod
    def sum(A, out):
        np.sum(A, axis=1, out=out)


class _ColumnReductions:
    """Row reductions of an (n, K) array as K whole-column ufunc calls."""

    @staticmethod
    def max(A, out):
        np.copyto(out, A[:, 0])
        for k in range(1, A.shape[1]):
            np.maximum(out, A[:, k], out=out)

    @staticmethod
    def sum(A, out):
        np.copyto(out, A[:, 0])
        for k in range(1, A.shape[1]):
            np.add(out, A[:, k], out=out)


REDUCTIONS = {"np-axis": _AxisReductions, "np-cols": _ColumnReductions}


def _row_logsumexp(A, red, out, row_max, scratch):
    """``out = logsumexp(A, axis=1)`` with no allocation; ``scratch`` is (n, K)."""
    red.max(A, row_max)
    np.subtract(A, row_max[:, None], out=scratch)
    np.exp(scratch, out=scratch)
    red.sum(scratch, out)
    np.log(out, out=out)
    out += row_max


# ---------------------------------------------------------------------------
# Gaussian E-step
# ---------------------------------------------------------------------------


def e_step_scipy(y, mean, variance, logits, resp_out, loglik_out):
    log_gate = logits - logsumexp(logits, axis=1, keepdims=True)
    log_density = -0.5 * (LOG_2PI + np.log(variance)) - 0.5 * (y[:, None] - mean) ** 2 / variance
    log_joint = log_gate + log_density
    loglik_out[:] = logsumexp(log_joint, axis=1)
    np.exp(log_joint - loglik_out[:, None], out=resp_out)


def make_e_step_numpy(n, n_experts, red):
    row_a, row_b, gate_norm = np.empty(n), np.empty(n), np.empty(n)
    scratch = np.empty((n, n_experts))

    def e_step_numpy(y, mean, variance, logits, resp_out, loglik_out):
        _row_logsumexp(logits, red, gate_norm, row_a, scratch)
        # Unnormalised log joint: logits + log N(y; mean, variance), built in resp_out.
        np.subtract(y[:, None], mean, out=resp_out)
        np.square(resp_out, out=resp_out)
        resp_out *= -0.5 / variance
        resp_out += -0.5 * (LOG_2PI + np.log(variance))
        resp_out += logits
        red.max(resp_out, row_a)
        resp_out -= row_a[:, None]
        np.exp(resp_out, out=resp_out)
        red.sum(resp_out, row_b)
        resp_out /= row_b[:, None]
        np.log(row_b, out=loglik_out)
        loglik_out += row_a
        loglik_out -= gate_norm

    return e_step_numpy


# ---------------------------------------------------------------------------
# Softmax gate objective: loss and gradient in (V, c), soft targets summing to one
# ---------------------------------------------------------------------------


def _gate_parameter_gradient(X, grad_logits, ones, grad_coef_out, grad_intercept_out):
    """From the gradient in the logits to the gradient in (V, c), with BLAS."""
    np.matmul(X.T, grad_logits, out=grad_coef_out)
    np.matmul(ones, grad_logits, out=grad_intercept_out)  # column sums; sum(axis=0) is slower


def make_objective_scipy(n):
    ones = np.ones(n)

    def objective_scipy(X, coef, intercept, targets, weight, grad_coef_out, grad_intercept_out):
        logits = X @ coef + intercept
        lse = logsumexp(logits, axis=1)
        grad = weight[:, None] * (softmax(logits, axis=1) - targets)
        _gate_parameter_gradient(X, grad, ones, grad_coef_out, grad_intercept_out)
        return weight @ (lse - np.einsum("ij,ij->i", targets, logits))

    return objective_scipy


def make_objective_numpy(n, n_experts, red):
    row_max, row_sum, row_dot = np.empty(n), np.empty(n), np.empty(n)
    logits, grad, scratch = (np.empty((n, n_experts)) for _ in range(3))
    ones = np.ones(n)

    def objective_numpy(X, coef, intercept, targets, weight, grad_coef_out, grad_intercept_out):
        # Explicit out= throughout: the buffers belong to the enclosing scope.
        np.matmul(X, coef, out=logits)
        np.add(logits, intercept, out=logits)
        red.max(logits, row_max)
        np.subtract(logits, row_max[:, None], out=grad)
        np.exp(grad, out=grad)
        red.sum(grad, row_sum)
        np.divide(grad, row_sum[:, None], out=grad)
        np.subtract(grad, targets, out=grad)
        np.multiply(grad, weight[:, None], out=grad)
        _gate_parameter_gradient(X, grad, ones, grad_coef_out, grad_intercept_out)
        np.log(row_sum, out=row_sum)
        np.add(row_sum, row_max, out=row_sum)  # now the row log-normaliser
        np.multiply(targets, logits, out=scratch)
        red.sum(scratch, row_dot)
        np.subtract(row_sum, row_dot, out=row_sum)
        return weight @ row_sum

    return objective_numpy


# ---------------------------------------------------------------------------


def _inputs(n, n_experts, rng):
    targets = rng.dirichlet(np.ones(n_experts), size=n)
    return dict(
        y=rng.normal(size=n),
        mean=rng.normal(size=(n, n_experts)),
        variance=rng.uniform(0.5, 2.0, size=n_experts),
        logits=rng.normal(scale=2.0, size=(n, n_experts)),
        targets=targets,
        weight=rng.uniform(0.5, 1.5, size=n),
        # Gate inputs and parameters whose logits X V + c have spread ~2, like ``logits``.
        X=rng.normal(size=(n, GATE_FEATURES)),
        coef=rng.normal(scale=2.0 / np.sqrt(GATE_FEATURES), size=(GATE_FEATURES, n_experts)),
        intercept=rng.normal(size=n_experts),
    )


def _e_step_candidates(x, n, n_experts, with_scipy):
    """Kernel at 1 and 2 threads and the NumPy versions, each checked against the kernel."""
    args = (x["y"], x["mean"], x["variance"], x["logits"])
    resp, loglik = np.empty((n, n_experts)), np.empty(n)
    resp_np, loglik_np = np.empty_like(resp), np.empty_like(loglik)
    candidates = {
        f"kernel {t}t": (lambda t=t: gaussian_e_step(*args, resp, loglik, t)) for t in (1, 2)
    }
    candidates["kernel 1t"]()
    versions = {"scipy": e_step_scipy} if with_scipy else {}
    versions.update(
        {name: make_e_step_numpy(n, n_experts, red) for name, red in REDUCTIONS.items()}
    )
    for name, version in versions.items():
        candidates[name] = lambda f=version: f(*args, resp_np, loglik_np)
        candidates[name]()
        np.testing.assert_allclose(resp_np, resp, rtol=1e-9, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(loglik_np, loglik, rtol=1e-9, err_msg=name)
    return candidates


def _objective_candidates(x, n, n_experts, with_scipy):
    """Kernel at 1 and 2 threads and the NumPy versions, each checked against the kernel."""
    args = (x["X"], x["coef"], x["intercept"], x["targets"], x["weight"])
    grads = (np.empty((GATE_FEATURES, n_experts)), np.empty(n_experts))
    grads_np = (np.empty((GATE_FEATURES, n_experts)), np.empty(n_experts))
    candidates = {
        f"kernel {t}t": (lambda t=t: softmax_gate_objective(*args, *grads, t)) for t in (1, 2)
    }
    loss = candidates["kernel 1t"]()
    versions = {"scipy": make_objective_scipy(n)} if with_scipy else {}
    versions.update(
        {name: make_objective_numpy(n, n_experts, red) for name, red in REDUCTIONS.items()}
    )
    for name, version in versions.items():
        candidates[name] = lambda f=version: f(*args, *grads_np)
        np.testing.assert_allclose(candidates[name](), loss, rtol=1e-9, err_msg=name)
        for grad_np, grad in zip(grads_np, grads):
            np.testing.assert_allclose(grad_np, grad, rtol=1e-8, atol=1e-8 * n, err_msg=name)
    return candidates


def run(quick):
    if quick:
        configs = [(10**4, 2), (10**5, 16), (TARGET_N, TARGET_K)]
        repeats, min_time = 3, 0.02
    else:
        configs = [(n, k) for n in (10**4, 10**5, 10**6) for k in (2, 8, 16, 32)]
        repeats, min_time = 9, 0.05
    rng = np.random.default_rng(0)
    rows = {name: [] for name in TARGETS}
    at_target = {}
    for n, n_experts in configs:
        auto = kernel_threads(n * n_experts)
        x = _inputs(n, n_experts, rng)
        for name, make_candidates in [
            ("gaussian_e_step", _e_step_candidates),
            ("softmax_gate_objective", _objective_candidates),
        ]:
            # The textbook version is 3-4x slower than the others at every size;
            # --quick skips it where it costs the most.
            candidates = make_candidates(x, n, n_experts, with_scipy=not (quick and n >= 10**6))
            times = time_interleaved(candidates, repeats, min_time=min_time)
            del candidates  # release this kernel's buffers before the next one's
            numpy_best = min((t, v) for v, t in times.items() if not v.startswith("kernel"))
            kernel_auto = times[f"kernel {auto}t"]
            ratio = numpy_best[0] / kernel_auto
            if (n, n_experts) == (TARGET_N, TARGET_K):
                at_target[name] = ratio
            rows[name].append(
                [
                    f"{n:.0e}",
                    n_experts,
                    f"{times['scipy'] * 1e3:.2f}" if "scipy" in times else "-",
                    f"{times['np-axis'] * 1e3:.2f}",
                    f"{times['np-cols'] * 1e3:.2f}",
                    numpy_best[1],
                    f"{kernel_auto * 1e3:.2f}",
                    auto,
                    f"{ratio:.2f}",
                    f"{times['kernel 1t'] * 1e3:.2f}",
                    f"{times['kernel 2t'] * 1e3:.2f}",
                    f"{times['kernel 1t'] / times['kernel 2t']:.2f}",
                ]
            )
    header = [
        "n",
        "K",
        "scipy ms",
        "np-axis ms",
        "np-cols ms",
        "best np",
        "kernel ms",
        "thr",
        "np/kernel",
        "1t ms",
        "2t ms",
        "1t/2t",
    ]
    verdicts = []
    for name, minimum in TARGETS.items():
        ratio = at_target[name]
        line = verdict(
            f"{name} >= {minimum:g}x faster than the best NumPy at n=1e6, K=16 "
            f"(measured {ratio:.2f}x)",
            ratio >= minimum,
        )
        print_table(
            f"a. {name}: kernel vs NumPy (median of {repeats}; ratio = best NumPy / kernel "
            "at auto threads)",
            header,
            rows[name],
            targets=[line],
        )
        verdicts.append(line)
    return verdicts
