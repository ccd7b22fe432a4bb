# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled kernels for the EM hot loop.

Design
------
Each kernel makes one pass over the rows of an ``(n_samples, n_experts)``
matrix. The work for a row is independent of every other row, so the row loop
is an OpenMP ``prange`` with a static schedule and the GIL released; the only
cross-row quantity (the gate loss) is a ``prange`` sum reduction.

* ``e_step`` / ``gaussian_e_step`` fuse, per row: the gate's log-softmax, the
  experts' log-likelihoods (Gaussian case), the log-sum-exp over experts, the
  responsibilities and the row's log-likelihood.  The gate enters as *logits*,
  i.e. log-probabilities up to a per-row constant, so normalising the gate and
  combining it with the experts costs a single pass.
* ``softmax_loss_gradient`` returns the soft-target cross-entropy of the gate
  and writes the per-row gradient with respect to the logits.  The product
  ``X.T @ gradient`` is left to BLAS by the caller: it is very hard to beat GEMM.
* ``hme_leaf_log_proba`` / ``hme_node_targets`` are the downward and upward
  recursions of the hierarchical mixture of experts (a binary tree of two-way
  gates, heap order): leaf log-probabilities from the nodes' logits, and each
  node's soft targets (posterior mass below its two children) from the leaf
  responsibilities.  Rows are independent here too.

All arrays are float64 and C-contiguous; buffers to be written end in ``_out``.
"""
import numpy as np

from cython.parallel import prange
from libc.math cimport exp, log, log1p, INFINITY
from libc.string cimport memcpy

cdef extern from "_fastexp.h" nogil:
    # values[i] = exp(values[i] - shift) for i < n, returning their sum (vectorised).
    double exp_shift_sum "skmoe_exp_shift_sum"(double *values, double shift, Py_ssize_t n)
    int skmoe_select_simd(int wanted)

cdef double LOG_2PI = 1.8378770664093453  # log(2 * pi)


def use_simd(bint enabled=True):
    """Choose the AVX2 path of the kernels' exp loops, if the CPU has AVX2 and FMA.

    Called at import with ``enabled=True``; tests call it with ``False`` to
    run the baseline path.  Returns whether the AVX2 path is now in use.
    """
    return bool(skmoe_select_simd(enabled))


SIMD = use_simd()  # True when the AVX2 path is in use on this CPU


def _check_shapes(int n_threads, expected, **arrays):
    """Bounds checking is off in the loops, so shapes are checked once up front."""
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}.")
    for name, array in arrays.items():
        shape = tuple(array.shape[: len(expected[name])])
        if shape != expected[name]:
            raise ValueError(f"{name} has shape {shape}, expected {expected[name]}.")


cdef inline double _row_max(const double *values, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t k
    cdef double best = -INFINITY
    for k in range(n):
        if values[k] > best:
            best = values[k]
    return best


cdef inline double _row_log_normaliser(const double *logits, double *scratch,
                                       Py_ssize_t n_cols) noexcept nogil:
    """log(sum_k exp(logits[k])), shifted by the maximum; ``scratch`` is overwritten."""
    cdef double row_max = _row_max(logits, n_cols)
    if row_max == -INFINITY:
        return -INFINITY
    memcpy(scratch, logits, n_cols * sizeof(double))
    return row_max + log(exp_shift_sum(scratch, row_max, n_cols))


cdef inline double _normalise_row(double *log_joint, Py_ssize_t n_cols) noexcept nogil:
    """Turn a row of log joint probabilities into responsibilities, in place.

    Returns the row's log marginal likelihood.  A row with no finite entry
    (impossible under the model) gets uniform responsibilities and -inf.
    """
    cdef Py_ssize_t k
    cdef double total
    cdef double row_max = _row_max(log_joint, n_cols)
    if row_max == -INFINITY:
        for k in range(n_cols):
            log_joint[k] = 1.0 / n_cols
        return -INFINITY
    total = exp_shift_sum(log_joint, row_max, n_cols)
    for k in range(n_cols):
        log_joint[k] = log_joint[k] / total
    return row_max + log(total)


def e_step(
    const double[:, ::1] gate_logits,     # IN  (n, K) gate log-probabilities up to a row constant
    const double[:, ::1] log_likelihood,  # IN  (n, K) log p_k(y_i | x_i)
    double[:, ::1] responsibilities_out,  # OUT (n, K)
    double[::1] log_likelihood_out,       # OUT (n,)  log p(y_i | x_i)
    int n_threads=1,
):
    """E-step for experts whose log-likelihoods are already computed."""
    cdef Py_ssize_t n = gate_logits.shape[0]
    cdef Py_ssize_t n_experts = gate_logits.shape[1]
    _check_shapes(
        n_threads,
        {"log_likelihood": (n, n_experts), "responsibilities_out": (n, n_experts),
         "log_likelihood_out": (n,)},
        log_likelihood=log_likelihood, responsibilities_out=responsibilities_out,
        log_likelihood_out=log_likelihood_out,
    )
    cdef Py_ssize_t i, k
    cdef double log_norm
    for i in prange(n, schedule="static", nogil=True, num_threads=n_threads):
        # The output row is the scratch space of the gate's normaliser.
        log_norm = _row_log_normaliser(&gate_logits[i, 0], &responsibilities_out[i, 0], n_experts)
        for k in range(n_experts):
            responsibilities_out[i, k] = gate_logits[i, k] - log_norm + log_likelihood[i, k]
        log_likelihood_out[i] = _normalise_row(&responsibilities_out[i, 0], n_experts)


def gaussian_e_step(
    const double[::1] y,                  # IN  (n,)
    const double[:, ::1] mean,            # IN  (n, K) expert means mu_k(x_i)
    const double[::1] variance,           # IN  (K,)   expert noise variances, > 0
    const double[:, ::1] gate_logits,     # IN  (n, K)
    double[:, ::1] responsibilities_out,  # OUT (n, K)
    double[::1] log_likelihood_out,       # OUT (n,)
    int n_threads=1,
):
    """E-step for Gaussian experts, their log-densities computed on the fly."""
    cdef Py_ssize_t n = gate_logits.shape[0]
    cdef Py_ssize_t n_experts = gate_logits.shape[1]
    _check_shapes(
        n_threads,
        {"y": (n,), "mean": (n, n_experts), "variance": (n_experts,),
         "responsibilities_out": (n, n_experts), "log_likelihood_out": (n,)},
        y=y, mean=mean, variance=variance, responsibilities_out=responsibilities_out,
        log_likelihood_out=log_likelihood_out,
    )
    cdef Py_ssize_t i, k
    cdef double log_norm, residual
    # Per-expert constants, computed once: -0.5 log(2 pi s2_k) and 1 / (2 s2_k).
    cdef double[::1] log_const = np.empty(n_experts)
    cdef double[::1] half_precision = np.empty(n_experts)
    for k in range(n_experts):
        log_const[k] = -0.5 * (LOG_2PI + log(variance[k]))
        half_precision[k] = 0.5 / variance[k]
    for i in prange(n, schedule="static", nogil=True, num_threads=n_threads):
        log_norm = _row_log_normaliser(&gate_logits[i, 0], &responsibilities_out[i, 0], n_experts)
        for k in range(n_experts):
            residual = y[i] - mean[i, k]
            responsibilities_out[i, k] = (
                gate_logits[i, k] - log_norm
                + log_const[k] - half_precision[k] * residual * residual
            )
        log_likelihood_out[i] = _normalise_row(&responsibilities_out[i, 0], n_experts)


def softmax_loss_gradient(
    const double[:, ::1] logits,          # IN  (n, K) X V, without the intercept
    const double[::1] intercept,          # IN  (K,)   c, added to every row of logits
    const double[:, ::1] targets,         # IN  (n, K) soft targets (responsibilities)
    const double[::1] sample_weight,      # IN  (n,)
    double[:, ::1] gradient_out,          # OUT (n, K) d loss / d Z
    int n_threads=1,
):
    """Weighted soft-target cross-entropy of a softmax and its gradient in Z.

    With Z = logits + intercept,
    loss = sum_i w_i (t_i. * logsumexp(Z_i.) - sum_k t_ik Z_ik), which equals
    -sum_i w_i sum_k t_ik log softmax(Z_i.)_k; the gradient row is
    w_i (t_i. * softmax(Z_i.) - t_i.), i.e. w_i (G_i. - T_i.) when rows of T sum
    to one (t_i. is the row sum of the targets).  The intercept is added on the
    fly: NumPy's broadcast add of a short row to a tall (n, K) array costs as
    much as this whole pass.
    """
    cdef Py_ssize_t n = logits.shape[0]
    cdef Py_ssize_t n_classes = logits.shape[1]
    cdef Py_ssize_t i, k
    cdef double row_max, total, target_sum, target_dot, scale, w
    cdef double loss = 0.0
    _check_shapes(
        n_threads,
        {"intercept": (n_classes,), "targets": (n, n_classes), "sample_weight": (n,),
         "gradient_out": (n, n_classes)},
        intercept=intercept, targets=targets, sample_weight=sample_weight,
        gradient_out=gradient_out,
    )
    for i in prange(n, schedule="static", nogil=True, num_threads=n_threads):
        w = sample_weight[i]
        target_sum = 0.0
        target_dot = 0.0
        for k in range(n_classes):
            gradient_out[i, k] = logits[i, k] + intercept[k]  # Z_i., exponentiated next
            target_sum = target_sum + targets[i, k]
            target_dot = target_dot + targets[i, k] * gradient_out[i, k]
        row_max = _row_max(&gradient_out[i, 0], n_classes)
        total = exp_shift_sum(&gradient_out[i, 0], row_max, n_classes)
        scale = target_sum / total
        for k in range(n_classes):
            gradient_out[i, k] = w * (scale * gradient_out[i, k] - targets[i, k])
        loss += w * (target_sum * (row_max + log(total)) - target_dot)
    return loss


def top_k_softmax(
    const double[:, ::1] logits,          # IN  (n, K) gate logits
    Py_ssize_t top_k,                     # IN  experts kept per row, 1 <= top_k <= K
    Py_ssize_t[:, ::1] experts_out,       # OUT (n, top_k) kept experts, largest logit first
    double[:, ::1] weights_out,           # OUT (n, top_k) softmax over the kept logits
    int n_threads=1,
):
    """Sparse routing: each row's top_k experts and their renormalised gate weights.

    A row's kept experts are found by insertion into a sorted buffer of
    length top_k (O(K * top_k), fast for the small top_k used in routing);
    ties keep the lower expert index.
    """
    cdef Py_ssize_t n = logits.shape[0]
    cdef Py_ssize_t n_experts = logits.shape[1]
    cdef Py_ssize_t i, k, j, filled, pos
    cdef double value, total
    if not 1 <= top_k <= n_experts:
        raise ValueError(f"top_k must be in [1, {n_experts}], got {top_k}.")
    _check_shapes(
        n_threads,
        {"experts_out": (n, top_k), "weights_out": (n, top_k)},
        experts_out=experts_out, weights_out=weights_out,
    )
    for i in prange(n, schedule="static", nogil=True, num_threads=n_threads):
        # weights_out[i] holds the kept logits, largest first, until the softmax.
        filled = 0
        for k in range(n_experts):
            value = logits[i, k]
            if filled < top_k:
                pos = filled
                filled = filled + 1
            elif value > weights_out[i, top_k - 1]:
                pos = top_k - 1
            else:
                continue
            while pos > 0 and weights_out[i, pos - 1] < value:
                weights_out[i, pos] = weights_out[i, pos - 1]
                experts_out[i, pos] = experts_out[i, pos - 1]
                pos = pos - 1
            weights_out[i, pos] = value
            experts_out[i, pos] = k
        total = exp_shift_sum(&weights_out[i, 0], weights_out[i, 0], top_k)
        for j in range(top_k):
            weights_out[i, j] = weights_out[i, j] / total


def group_by_expert(
    const Py_ssize_t[:, ::1] experts,     # IN  (n, top_k) from top_k_softmax
    Py_ssize_t[::1] order_out,            # OUT (n * top_k,) flat positions grouped by expert
    Py_ssize_t[::1] offsets_out,          # OUT (K + 1,) expert e owns order_out[offsets[e]:offsets[e+1]]
):
    """Counting sort of the (row, slot) positions by expert, rows ascending within each.

    O(n * top_k): what lets each expert be evaluated on just its own rows.
    """
    cdef Py_ssize_t n = experts.shape[0]
    cdef Py_ssize_t top_k = experts.shape[1]
    cdef Py_ssize_t n_experts = offsets_out.shape[0] - 1
    cdef Py_ssize_t i, j, e
    if order_out.shape[0] != n * top_k:
        raise ValueError(f"order_out has length {order_out.shape[0]}, expected {n * top_k}.")
    with nogil:
        for e in range(n_experts + 1):
            offsets_out[e] = 0
        for i in range(n):
            for j in range(top_k):
                e = experts[i, j]
                if e < 0 or e >= n_experts:
                    with gil:
                        raise ValueError(f"expert index {e} outside [0, {n_experts}).")
                offsets_out[e + 1] += 1
        for e in range(n_experts):
            offsets_out[e + 1] += offsets_out[e]
        for i in range(n):
            for j in range(top_k):
                e = experts[i, j]
                order_out[offsets_out[e]] = i * top_k + j
                offsets_out[e] += 1
        for e in range(n_experts, 0, -1):
            offsets_out[e] = offsets_out[e - 1]
        offsets_out[0] = 0


# --------------------------------------------------------------------------
# Hierarchical mixture of experts (Jordan & Jacobs 1994): a complete binary
# tree of two-way gates in heap order (node j has children 2j+1 and 2j+2; the
# n_nodes = 2**depth - 1 internal nodes are followed by the n_nodes + 1
# leaves, which are the experts left to right: leaf l has heap index n_nodes + l).
# --------------------------------------------------------------------------


def _check_tree(str name, Py_ssize_t n_nodes):
    """n_nodes internal nodes make a complete binary tree iff n_nodes + 1 = 2**depth >= 2."""
    cdef Py_ssize_t n_leaves = n_nodes + 1
    if n_nodes < 1 or (n_leaves & (n_leaves - 1)) != 0:
        raise ValueError(
            f"{name} gives {n_nodes} internal nodes and {n_leaves} leaves, but a complete "
            "binary tree has 2**depth - 1 internal nodes and 2**depth leaves (depth >= 1)."
        )


cdef inline double _softplus(double x) noexcept nogil:
    """log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|))."""
    if x > 0:
        return x + log1p(exp(-x))
    return log1p(exp(x))


def hme_leaf_log_proba(
    const double[:, :, ::1] node_logits,  # IN  (n, n_nodes, 2) each node's (left, right) logits
    double[:, ::1] leaf_log_proba_out,    # OUT (n, n_nodes + 1) log gate probability of each leaf
    int n_threads=1,
):
    """Downward recursion: log probability of every root-to-leaf path.

    Node j sends a row left with probability sigmoid(d) where d is the
    difference of its two logits (a two-column softmax); the log branch
    probabilities are log sigmoid(d) = -softplus(-d) (left) and -softplus(d)
    (right), computed without overflow for any finite d.  A leaf's log
    probability is the sum of the log branch probabilities on its path,
    accumulated from the root down.  The rows of exp(leaf_log_proba_out) sum
    to one up to rounding.

    The recursion runs level by level inside the output row itself: before
    level t, entries 0 .. 2**t - 1 hold the log reach probabilities of that
    level's nodes, left to right; each is replaced by its two children's,
    right to left so that no entry is overwritten before it is read.  Every
    node's branch probabilities are computed once: O(n_leaves) per row.
    """
    cdef Py_ssize_t n = node_logits.shape[0]
    cdef Py_ssize_t n_nodes = node_logits.shape[1]
    _check_tree("node_logits", n_nodes)
    _check_shapes(
        n_threads,
        {"node_logits": (n, n_nodes, 2), "leaf_log_proba_out": (n, n_nodes + 1)},
        node_logits=node_logits, leaf_log_proba_out=leaf_log_proba_out,
    )
    cdef Py_ssize_t i, p, node, level_size
    cdef double reach, d
    for i in prange(n, schedule="static", nogil=True, num_threads=n_threads):
        leaf_log_proba_out[i, 0] = 0.0
        level_size = 1
        while level_size <= n_nodes:  # level t has level_size = 2**t nodes
            p = level_size - 1
            while p >= 0:
                node = level_size - 1 + p
                reach = leaf_log_proba_out[i, p]
                d = node_logits[i, node, 0] - node_logits[i, node, 1]
                leaf_log_proba_out[i, 2 * p + 1] = reach - _softplus(d)
                leaf_log_proba_out[i, 2 * p] = reach - _softplus(-d)
                p = p - 1
            level_size = 2 * level_size


def hme_node_targets(
    const double[:, ::1] responsibilities,  # IN  (n, n_leaves) posterior over leaves (paths)
    double[:, :, ::1] targets_out,          # OUT (n, n_leaves - 1, 2) (left, right) mass per node
    int n_threads=1,
):
    """Upward recursion: each node's soft targets for its M-step.

    targets_out[i, j, 0] is the responsibility mass of the leaves below node
    j's left child and targets_out[i, j, 1] that below its right child, so
    their sum is the posterior probability that row i's path passes through
    node j (for the root, the row sum of the responsibilities) and their
    ratio is the posterior branch probability.  Node j's gate is then fit to
    targets_out[:, j, :] as a soft-target logistic regression whose rows are
    weighted by that reach (see softmax_loss_gradient).  Nodes are visited
    from the last to the root, each summing its children's two entries:
    O(n_leaves) per row.  Responsibilities need not sum to one.
    """
    cdef Py_ssize_t n = responsibilities.shape[0]
    cdef Py_ssize_t n_leaves = responsibilities.shape[1]
    cdef Py_ssize_t n_nodes = n_leaves - 1
    _check_tree("responsibilities", n_nodes)
    _check_shapes(
        n_threads,
        {"targets_out": (n, n_nodes, 2)},
        targets_out=targets_out,
    )
    cdef Py_ssize_t i, j, side, child
    for i in prange(n, schedule="static", nogil=True, num_threads=n_threads):
        j = n_nodes - 1
        while j >= 0:
            for side in range(2):
                child = 2 * j + 1 + side
                if child >= n_nodes:
                    targets_out[i, j, side] = responsibilities[i, child - n_nodes]
                else:
                    targets_out[i, j, side] = targets_out[i, child, 0] + targets_out[i, child, 1]
            j = j - 1
