# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled kernels for the EM hot loop.

Design
------
Each kernel makes one pass over the rows of an ``(n_samples, n_experts)``
matrix. The work for a row is independent of every other row, so the row loop
is an OpenMP ``prange`` with a static schedule and the GIL released; cross-row
quantities (the gate's loss and gradient) are summed per thread and added in
thread order.  Rows go through in blocks so that the exps of many rows fill
the vector registers together (``_fastexp.h``).

* ``e_step`` / ``gaussian_e_step`` fuse, per row: the experts'
  log-likelihoods (Gaussian case), the log-sum-exp over experts, the
  responsibilities and the row's log-likelihood.  The gate enters as *logits*,
  i.e. log-probabilities up to a per-row constant: its normaliser cancels in
  the responsibilities and only enters the row's log-likelihood.
* ``softmax_gate_objective`` is the softmax gate's M-step objective: the
  soft-target cross-entropy of ``softmax(X V + c)`` and its gradient in
  ``(V, c)``, without ever writing the (n, K) logits or their gradient.
* ``responsibility_weights`` and ``weighted_squared_residuals`` are the
  M-step's bookkeeping on (n, K) arrays: the experts' refit weights, and
  the weighted residuals behind the Gaussian noise variances;
  ``weighted_column_moments`` the experts' weighted column means and spreads.
* ``weighted_gram`` gives K weighted least-squares problems their normal
  equations in one pass over ``X`` (rows of zero weight skipped): the refit
  of linear experts.
* ``grouped_softmax_objective`` and ``class_pair_grams`` give K weighted
  multinomial logits (the classifier's experts, the gate) their objectives
  and gradients, and the Grams of their Hessians, in one pass over ``X``
  each; ``grouped_softmax`` their class probabilities.
* ``top_k_softmax`` / ``group_by_expert`` do sparse routing: each row's top-k
  experts with renormalised weights, and the rows grouped by expert.
* ``hme_leaf_log_proba`` / ``hme_node_targets`` are the downward and upward
  recursions of the hierarchical mixture of experts (a binary tree of two-way
  gates, given as a ``children`` array): leaf log-probabilities from the
  nodes' logits, and each node's soft targets (posterior mass below its two
  children) from the leaf responsibilities.  Rows are independent here too.

All arrays are float64 and C-contiguous; buffers to be written end in ``_out``.

Memory: the kernels' per-thread scratch and running sums are NumPy arrays of
one row per thread (``_thread_rows``), allocated with the GIL held before the
parallel region and indexed by ``threadid()`` inside it.  Allocation failure
is then an ordinary ``MemoryError`` raised to the caller before any thread
starts; nothing allocates inside a ``nogil`` region, so no kernel can write
through a NULL pointer.
"""
import numpy as np

from cython.parallel cimport parallel, prange, threadid
from libc.math cimport exp, fabs, log, log1p, sqrt, INFINITY
from scipy.linalg.cython_blas cimport dgemm

cdef extern from "_fastexp.h" nogil:
    # values[i] = exp(values[i]) for i < n, vectorised (see _fastexp.h).
    void exp_inplace "skmoe_exp_inplace"(double *values, Py_ssize_t n)
    int skmoe_select_simd(int wanted)

# A pointer to memory that no other pointer of the function reaches, for
# parameters of the helpers that write a thread's scratch or sums.  Those rows
# come from NumPy arrays allocated before the parallel region, so the compiler
# cannot know that they overlap none of the inputs (as it knew of malloc'ed
# memory); without this its vectorised loops test for overlap at run time.
cdef extern from *:
    """
    #if defined(_MSC_VER)
    typedef double *__restrict skmoe_private_double_ptr;
    #else
    typedef double *__restrict__ skmoe_private_double_ptr;
    #endif
    """
    ctypedef double *private_ptr "skmoe_private_double_ptr"

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


cdef inline double _sum(const double *values, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t k
    cdef double total = 0.0
    for k in range(n):
        total = total + values[k]
    return total


# Rows are processed in blocks of BLOCK_ROWS: one exp call covers a whole
# block, so the exps of different rows run side by side in vector registers
# instead of each row waiting on its own chain of exp, sum and log (with few
# experts a row-at-a-time loop is bound by that latency, not by arithmetic).
cdef enum:
    BLOCK_ROWS = 32
    GATE_BLOCK_ROWS = 256  # larger: each block makes two BLAS calls
    GRAM_BLOCK_ROWS = 256  # a block of 20 features stays in L2 while K experts read it
    PAD = 8  # entries between threads' running sums: one cache line, no false sharing


cdef inline void _posterior_block(const double *gate_logits, double *joint,
                                  double *log_likelihood, private_ptr scratch,
                                  Py_ssize_t n_rows, Py_ssize_t n_experts) noexcept nogil:
    """Turn rows of ``joint[r, k] = gate_logits[r, k] + log p_k(y_r)`` into responsibilities.

    Writes each row's log-likelihood ``logsumexp(joint) - logsumexp(gate_logits)``:
    the gate's normaliser cancels in the responsibilities, so it only enters
    there, and both sums of exps share one log.  ``scratch`` holds
    ``2 * n_experts + 1`` entries per row.  A row with no finite entry
    (impossible under the model) gets uniform responsibilities and -inf.
    """
    cdef Py_ssize_t r, k
    cdef Py_ssize_t width = 2 * n_experts
    cdef double *shift = &scratch[n_rows * width]  # per row: joint max - gate max
    cdef double gate_max, joint_max, joint_total
    cdef const double *g
    cdef double *a
    cdef double *e
    for r in range(n_rows):
        g = &gate_logits[r * n_experts]
        a = &joint[r * n_experts]
        e = &scratch[r * width]
        gate_max = _row_max(g, n_experts)
        joint_max = _row_max(a, n_experts)
        if gate_max == -INFINITY or joint_max == -INFINITY:
            shift[r] = -INFINITY
            gate_max = 0.0
            joint_max = 0.0
        else:
            shift[r] = joint_max - gate_max
        for k in range(n_experts):
            e[k] = a[k] - joint_max
            e[n_experts + k] = g[k] - gate_max
    exp_inplace(scratch, n_rows * width)
    for r in range(n_rows):
        a = &joint[r * n_experts]
        e = &scratch[r * width]
        if shift[r] == -INFINITY:
            for k in range(n_experts):
                a[k] = 1.0 / n_experts
            log_likelihood[r] = -INFINITY
            continue
        joint_total = _sum(e, n_experts)
        for k in range(n_experts):
            a[k] = e[k] / joint_total
        log_likelihood[r] = shift[r] + log(joint_total / _sum(&e[n_experts], n_experts))


def _thread_rows(int n_threads, Py_ssize_t size, bint zeros=False):
    """Memory for each thread of a parallel region: row ``threadid()`` is thread-private.

    An ``(n_threads, size + PAD)`` array, allocated with the GIL before the
    region: when memory runs out NumPy raises ``MemoryError`` to the kernel's
    caller, before any thread runs.  The PAD entries keep the threads' rows
    off each other's cache lines.  OpenMP may start fewer threads than asked,
    never more, so ``threadid() < n_threads``.  ``zeros`` zero-fills the
    rows (running sums); scratch that is written before it is read need not.
    """
    shape = (n_threads, size + PAD)
    return np.zeros(shape) if zeros else np.empty(shape)


cdef void _e_step_blocks(
    const double[:, ::1] gate_logits, const double *log_likelihood, const double *y,
    const double *mean, const double *log_const, const double *half_precision,
    double[:, ::1] responsibilities_out, double[::1] log_likelihood_out,
    double[:, ::1] scratch_rows, int n_threads,
) noexcept nogil:
    """The threaded loop over blocks of rows shared by ``e_step`` and ``gaussian_e_step``.

    A block's joint log-probabilities are ``gate_logits + log p_k(y)``, with
    ``log p_k(y)`` read from ``log_likelihood`` (an (n, K) array), or, when
    that is NULL, the Gaussian log-density of ``y`` around ``mean`` from the
    per-expert ``log_const`` and ``half_precision``.  ``scratch_rows`` is
    ``_thread_rows(n_threads, _e_step_scratch_size(n_experts))``.
    """
    cdef Py_ssize_t n = gate_logits.shape[0]
    cdef Py_ssize_t n_experts = gate_logits.shape[1]
    cdef Py_ssize_t block, start, stop, i, k
    cdef double residual
    cdef double *scratch
    with parallel(num_threads=n_threads):
        scratch = &scratch_rows[threadid(), 0]
        for block in prange((n + BLOCK_ROWS - 1) // BLOCK_ROWS, schedule="static"):
            start = block * BLOCK_ROWS
            stop = min(start + BLOCK_ROWS, n)
            if log_likelihood != NULL:
                for i in range(start, stop):
                    for k in range(n_experts):
                        responsibilities_out[i, k] = (
                            gate_logits[i, k] + log_likelihood[i * n_experts + k]
                        )
            else:
                for i in range(start, stop):
                    for k in range(n_experts):
                        residual = y[i] - mean[i * n_experts + k]
                        responsibilities_out[i, k] = (
                            gate_logits[i, k] + log_const[k]
                            - half_precision[k] * residual * residual
                        )
            _posterior_block(&gate_logits[start, 0], &responsibilities_out[start, 0],
                             &log_likelihood_out[start], scratch, stop - start, n_experts)


cdef inline Py_ssize_t _e_step_scratch_size(Py_ssize_t n_experts) noexcept:
    """Scratch entries per thread of ``_e_step_blocks``: ``_posterior_block``'s for a block."""
    return (2 * n_experts + 1) * BLOCK_ROWS


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
    if n == 0:
        return
    cdef double[:, ::1] scratch = _thread_rows(n_threads, _e_step_scratch_size(n_experts))
    with nogil:
        _e_step_blocks(gate_logits, &log_likelihood[0, 0], NULL, NULL, NULL, NULL,
                       responsibilities_out, log_likelihood_out, scratch, n_threads)


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
    cdef Py_ssize_t k
    # Per-expert constants, computed once: -0.5 log(2 pi s2_k) and 1 / (2 s2_k).
    cdef double[::1] log_const = np.empty(n_experts)
    cdef double[::1] half_precision = np.empty(n_experts)
    for k in range(n_experts):
        log_const[k] = -0.5 * (LOG_2PI + log(variance[k]))
        half_precision[k] = 0.5 / variance[k]
    if n == 0:
        return
    cdef double[:, ::1] scratch = _thread_rows(n_threads, _e_step_scratch_size(n_experts))
    with nogil:
        _e_step_blocks(gate_logits, NULL, &y[0], &mean[0, 0], &log_const[0], &half_precision[0],
                       responsibilities_out, log_likelihood_out, scratch, n_threads)


cdef inline void _gemm_rows(const double *a, const double *b, double *c, int n_rows, int inner,
                            int n_cols, double beta, bint transpose_a) noexcept nogil:
    """Row-major ``C = A @ B + beta C`` (or ``A.T @ B``) through Fortran BLAS.

    A row-major matrix is its transpose in column-major order, so this asks
    BLAS for ``C.T = B.T @ A.T``.  Called from OpenMP threads on small
    blocks: callers should hold BLAS to one thread (threadpoolctl).  ``A`` is
    (n_rows, inner), or (inner, n_rows) if ``transpose_a``; ``B`` is (inner,
    n_cols); ``C`` is (n_rows, n_cols).
    """
    cdef char no = b"N"
    cdef char yes = b"T"
    cdef double one = 1.0
    cdef int lda = n_rows if transpose_a else inner
    dgemm(&no, &yes if transpose_a else &no, &n_cols, &n_rows, &inner, &one,
          <double *> b, &n_cols, <double *> a, &lda, &beta, c, &n_cols)


cdef inline void _block_logits(const double *X, const double *coef, const double *intercept,
                               double *z, int n_rows, int n_features,
                               int n_classes) noexcept nogil:
    """A block's softmax-gate logits ``z = X @ coef + intercept``, all row-major."""
    cdef Py_ssize_t r, k
    for r in range(n_rows):
        for k in range(n_classes):
            z[r * n_classes + k] = intercept[k]
    if n_features > 0:
        _gemm_rows(X, coef, z, n_rows, n_features, n_classes, 1.0, False)


def responsibility_weights(
    const double[:, ::1] responsibilities,  # IN  (n, K)
    const double[::1] sample_weight,        # IN  (n,)
    double threshold,                       # IN  responsibilities at or below it weigh 0
    double[:, ::1] weights_out,             # OUT (n, K) w_i r_ik where r_ik > threshold, else 0
    Py_ssize_t[::1] counts_out,             # OUT (K,)   rows of positive weight per expert
    int n_threads=1,
):
    """The experts' refit weights: ``w_i r_ik`` on the rows above ``threshold``, 0 elsewhere.

    Conditional computation (``min_responsibility``) in one pass over the
    responsibilities, counting each expert's training rows on the way.
    """
    cdef Py_ssize_t n = responsibilities.shape[0]
    cdef Py_ssize_t n_experts = responsibilities.shape[1]
    _check_shapes(
        n_threads,
        {"sample_weight": (n,), "weights_out": (n, n_experts), "counts_out": (n_experts,)},
        sample_weight=sample_weight, weights_out=weights_out, counts_out=counts_out,
    )
    cdef Py_ssize_t[:, ::1] thread_counts = np.zeros((n_threads, n_experts + PAD), dtype=np.intp)
    cdef Py_ssize_t i, k, t
    cdef double weight
    for i in prange(n, schedule="static", nogil=True, num_threads=n_threads):
        t = threadid()
        for k in range(n_experts):
            weight = 0.0
            if responsibilities[i, k] > threshold:
                weight = responsibilities[i, k] * sample_weight[i]
            weights_out[i, k] = weight
            if weight > 0.0:
                thread_counts[t, k] += 1
    np.asarray(counts_out)[:] = np.asarray(thread_counts)[:, :n_experts].sum(axis=0)


def weighted_squared_residuals(
    const double[::1] y,                  # IN  (n,)
    const double[:, ::1] mean,            # IN  (n, K) expert means
    const double[:, ::1] weights,         # IN  (n, K)
    double[::1] sums_out,                 # OUT (K,) sum_i w_ik (y_i - mean_ik)^2
    int n_threads=1,
):
    """Each expert's weighted residual sum of squares: the Gaussian noise variances' M-step.

    Rows of zero weight are skipped (an expert's mean may be unset there).
    Per-thread sums are added in thread order.
    """
    cdef Py_ssize_t n = mean.shape[0]
    cdef Py_ssize_t n_experts = mean.shape[1]
    _check_shapes(
        n_threads,
        {"y": (n,), "weights": (n, n_experts), "sums_out": (n_experts,)},
        y=y, weights=weights, sums_out=sums_out,
    )
    cdef double[:, ::1] thread_sums = np.zeros((n_threads, n_experts + PAD))
    cdef Py_ssize_t i, k, t
    cdef double residual
    for i in prange(n, schedule="static", nogil=True, num_threads=n_threads):
        t = threadid()
        for k in range(n_experts):
            if weights[i, k] > 0.0:
                residual = y[i] - mean[i, k]
                thread_sums[t, k] += weights[i, k] * residual * residual
    # The threads' sums, added in thread order.
    np.asarray(sums_out)[:] = np.asarray(thread_sums)[:, :n_experts].sum(axis=0)


cdef inline void _cross_rows(const double *a, double *c, int n_rows, int n_cols) noexcept nogil:
    """Row-major ``C += A.T @ A`` through Fortran BLAS (``A`` is (n_rows, n_cols)).

    A full GEMM, not ``dsyrk``: for these thin blocks (about 20 columns)
    OpenBLAS's GEMM kernel ran 1.4x faster than its SYRK despite twice the
    flops.  Called from OpenMP threads: callers hold BLAS to one thread.
    """
    cdef char no = b"N"
    cdef char yes = b"T"
    cdef double one = 1.0
    dgemm(&no, &yes, &n_cols, &n_cols, &n_rows, &one, <double *> a, &n_cols, <double *> a,
          &n_cols, &one, c, &n_cols)


cdef inline void _gradient_row(private_ptr z, private_ptr column_sums, const double *targets,
                               double w, double scale, Py_ssize_t n_classes) noexcept nogil:
    """A row's gradient in its logits, over its exps ``z``: ``w (scale z - t)``; summed too."""
    cdef Py_ssize_t k
    for k in range(n_classes):
        z[k] = w * (scale * z[k] - targets[k])
        column_sums[k] += z[k]


def softmax_gate_objective(
    const double[:, ::1] X,               # IN  (n, d) gate inputs
    const double[:, ::1] coef,            # IN  (d, K) V
    const double[::1] intercept,          # IN  (K,)   c
    const double[:, ::1] targets,         # IN  (n, K) soft targets (responsibilities)
    const double[::1] sample_weight,      # IN  (n,)
    double[:, ::1] grad_coef_out,         # OUT (d, K) d loss / d V
    double[::1] grad_intercept_out,       # OUT (K,)   d loss / d c
    int n_threads=1,
):
    """Soft-target cross-entropy of the softmax gate and its gradient in (V, c).

    With Z = X V + c, loss = sum_i w_i (t_i. * logsumexp(Z_i.) - sum_k t_ik Z_ik)
    (= -sum_i w_i sum_k t_ik log softmax(Z_i.)_k), whose gradient in Z_i. is
    g_i = w_i (t_i. * softmax(Z_i.) - t_i.) (t_i. is the row sum of the
    targets); then d loss / d V = X.T G and d loss / d c = sum_i g_i.

    One pass over the rows does it all, a block of GATE_BLOCK_ROWS rows at a
    time: the block's logits come from a small single-threaded GEMM into a
    per-thread buffer, the loss and the gradient in Z are computed there, and
    another GEMM adds the block's X.T G into the thread's own (d, K) sums.
    Against whole-matrix BLAS products around a logits kernel, this never
    writes the two (n, K) arrays Z and G, and reads X while it is in cache.
    The threads' sums are added in thread order, so a given thread count
    gives the same result every time.
    """
    cdef Py_ssize_t n = X.shape[0]
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_classes = coef.shape[1]
    cdef Py_ssize_t width = (n_features + 1) * n_classes
    _check_shapes(
        n_threads,
        {"coef": (n_features, n_classes), "intercept": (n_classes,),
         "targets": (n, n_classes), "sample_weight": (n,),
         "grad_coef_out": (n_features, n_classes), "grad_intercept_out": (n_classes,)},
        coef=coef, intercept=intercept, targets=targets, sample_weight=sample_weight,
        grad_coef_out=grad_coef_out, grad_intercept_out=grad_intercept_out,
    )
    # Per thread: the sums, (d + 1, K): X.T G, then the column sums of G; and
    # the scratch for a block's logits and row maxima.
    cdef double[:, ::1] thread_sums = _thread_rows(n_threads, width, zeros=True)
    cdef double[:, ::1] scratch_rows = _thread_rows(n_threads, (n_classes + 1) * GATE_BLOCK_ROWS)
    cdef Py_ssize_t block, start, stop, i, j, k, r, t
    cdef double target_sum, target_dot, total, scale, w
    cdef double loss = 0.0
    cdef double block_loss
    cdef double *z
    cdef double *row_max
    cdef double *sums
    cdef double *zr
    with nogil, parallel(num_threads=n_threads):
        t = threadid()
        z = &scratch_rows[t, 0]
        row_max = &z[n_classes * GATE_BLOCK_ROWS]
        sums = &thread_sums[t, 0]
        for block in prange((n + GATE_BLOCK_ROWS - 1) // GATE_BLOCK_ROWS, schedule="static"):
            start = block * GATE_BLOCK_ROWS
            stop = min(start + GATE_BLOCK_ROWS, n)
            block_loss = 0.0
            _block_logits(&X[start, 0], &coef[0, 0], &intercept[0], z, stop - start, n_features,
                          n_classes)
            for i in range(start, stop):
                r = i - start
                zr = &z[r * n_classes]
                target_dot = 0.0
                for k in range(n_classes):
                    target_dot = target_dot + targets[i, k] * zr[k]
                row_max[r] = _row_max(zr, n_classes)
                for k in range(n_classes):
                    zr[k] = zr[k] - row_max[r]
                # The loss without its log-sum-exp term; that is added below.
                block_loss = block_loss - sample_weight[i] * target_dot
            exp_inplace(z, (stop - start) * n_classes)
            for i in range(start, stop):
                zr = &z[(i - start) * n_classes]
                w = sample_weight[i]
                target_sum = _sum(&targets[i, 0], n_classes)
                total = _sum(zr, n_classes)
                block_loss = block_loss + w * target_sum * (row_max[i - start] + log(total))
                scale = target_sum / total
                _gradient_row(zr, &sums[n_features * n_classes], &targets[i, 0], w, scale,
                              n_classes)
            if n_features > 0:
                _gemm_rows(&X[start, 0], z, sums, n_features, stop - start, n_classes, 1.0, True)
            loss += block_loss
    for j in range(n_features):
        for k in range(n_classes):
            grad_coef_out[j, k] = 0.0
    for k in range(n_classes):
        grad_intercept_out[k] = 0.0
    for t in range(n_threads):
        for j in range(n_features):
            for k in range(n_classes):
                grad_coef_out[j, k] += thread_sums[t, j * n_classes + k]
        for k in range(n_classes):
            grad_intercept_out[k] += thread_sums[t, n_features * n_classes + k]
    return loss


cdef inline void _scaled_difference(private_ptr out, const double *a, const double *b,
                                    double scale, Py_ssize_t n) noexcept nogil:
    """``out = scale * (a - b)``, n entries."""
    cdef Py_ssize_t j
    for j in range(n):
        out[j] = scale * (a[j] - b[j])



def weighted_column_moments(
    const double[:, ::1] X,               # IN  (n, d)
    const double[:, ::1] weights,         # IN  (n, K) row weights per column set; <= 0 = absent
    double[::1] total_out,                # OUT (K,)   weight sums
    double[:, ::1] mean_out,              # OUT (K, d) weighted column means
    double[:, ::1] squares_out,           # OUT (K, d) weighted squared deviations from them
    int n_threads=1,
):
    """K sets of weighted column means and squared deviations, in two passes over ``X``.

    ``total_out[k] = sum_i w_ik``, ``mean_out[k] = sum_i w_ik x_i /
    total_out[k]`` and ``squares_out[k] = sum_i w_ik (x_i - mean_out[k])^2``
    over the rows with ``w_ik > 0``: the
    two-pass formula of ``skmoe._stats.weighted_mean_scale``, for all K
    weight columns in each pass (the logistic experts' standardisation at
    every refit).  Every column set needs a positive weight sum.  The
    threads' sums are added in thread order.
    """
    cdef Py_ssize_t n = X.shape[0]
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_sets = weights.shape[1]
    _check_shapes(
        n_threads,
        {"weights": (n, n_sets), "total_out": (n_sets,), "mean_out": (n_sets, n_features),
         "squares_out": (n_sets, n_features)},
        weights=weights, total_out=total_out, mean_out=mean_out, squares_out=squares_out,
    )
    cdef Py_ssize_t width = n_sets * (n_features + 1)
    cdef double[:, ::1] thread_sums = _thread_rows(n_threads, width, zeros=True)
    cdef double[::1] total = total_out
    cdef Py_ssize_t i, j, k, t
    cdef double w, deviation
    cdef double *sums
    # Pass 1: the weighted sums of the columns (and the weights).
    with nogil, parallel(num_threads=n_threads):
        sums = &thread_sums[threadid(), 0]
        for i in prange(n, schedule="static"):
            for k in range(n_sets):
                w = weights[i, k]
                if w > 0.0:
                    sums[k * (n_features + 1) + n_features] += w
                    for j in range(n_features):
                        sums[k * (n_features + 1) + j] += w * X[i, j]
    for k in range(n_sets):
        for j in range(n_features + 1):
            w = 0.0
            for t in range(n_threads):
                w += thread_sums[t, k * (n_features + 1) + j]
            if j < n_features:
                mean_out[k, j] = w
            else:
                total[k] = w
        if total[k] <= 0.0:
            raise ValueError(f"weights column {k} has no positive weight.")
        for j in range(n_features):
            mean_out[k, j] /= total[k]
    # Pass 2: the weighted squared deviations from the means.
    thread_sums[:, :] = 0.0
    with nogil, parallel(num_threads=n_threads):
        sums = &thread_sums[threadid(), 0]
        for i in prange(n, schedule="static"):
            for k in range(n_sets):
                w = weights[i, k]
                if w > 0.0:
                    for j in range(n_features):
                        deviation = X[i, j] - mean_out[k, j]
                        sums[k * n_features + j] += w * deviation * deviation
    for k in range(n_sets):
        for j in range(n_features):
            squares_out[k, j] = 0.0
            for t in range(n_threads):
                squares_out[k, j] += thread_sums[t, k * n_features + j]


def weighted_gram(
    const double[:, ::1] X,               # IN  (n, d)
    const double[::1] y,                  # IN  (n,)
    const double[:, ::1] weights,         # IN  (n, K) non-negative; 0 = the row is absent
    const double[:, ::1] centre,          # IN  (K, d + 1) per-expert centre of [X, y]
    double[:, :, ::1] gram_out,           # OUT (K, d + 1, d + 1)
    int n_threads=1,
):
    """Weighted cross products of the centred ``[X, y]``, for K weightings in one pass.

    ``gram_out[k] = sum_i w_ik z_ik z_ik^T`` with ``z_ik = [x_i, y_i] - centre[k]``:
    its leading (d, d) block and last column are the normal equations of
    expert k's weighted least squares, and its corner is the weighted sum of
    squares of ``y``.  Centring each expert at its own weighted mean keeps
    the sums free of the cancellation that uncentred moments suffer.

    Each block of GRAM_BLOCK_ROWS rows is read once for all K experts: for
    each expert the rows of positive weight are gathered, scaled by
    ``sqrt(w_ik)``, into a per-thread buffer (rows of zero weight, e.g. below
    ``min_responsibility``, cost nothing more), and a single-threaded GEMM
    adds the buffer's cross products into the thread's own sums.
    The threads' sums are added in thread order, so a given thread count
    gives the same result every time.  Callers should hold BLAS to one
    thread (threadpoolctl).
    """
    cdef Py_ssize_t n = X.shape[0]
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_experts = weights.shape[1]
    cdef Py_ssize_t width = n_features + 1
    cdef Py_ssize_t square = width * width
    _check_shapes(
        n_threads,
        {"y": (n,), "weights": (n, n_experts), "centre": (n_experts, width),
         "gram_out": (n_experts, width, width)},
        y=y, weights=weights, centre=centre, gram_out=gram_out,
    )
    cdef double[:, ::1] thread_sums = _thread_rows(n_threads, n_experts * square, zeros=True)
    cdef double[:, ::1] scratch_rows = _thread_rows(n_threads, width * GRAM_BLOCK_ROWS)
    cdef Py_ssize_t block, start, stop, i, k, t, n_kept
    cdef double root
    cdef double *rows
    cdef double *sums
    cdef double *row
    with nogil, parallel(num_threads=n_threads):
        t = threadid()
        rows = &scratch_rows[t, 0]
        sums = &thread_sums[t, 0]
        for block in prange((n + GRAM_BLOCK_ROWS - 1) // GRAM_BLOCK_ROWS, schedule="static"):
            start = block * GRAM_BLOCK_ROWS
            stop = min(start + GRAM_BLOCK_ROWS, n)
            for k in range(n_experts):
                n_kept = 0
                for i in range(start, stop):
                    if weights[i, k] > 0.0:
                        root = sqrt(weights[i, k])
                        row = &rows[n_kept * width]
                        _scaled_difference(row, &X[i, 0], &centre[k, 0], root, n_features)
                        row[n_features] = root * (y[i] - centre[k, n_features])
                        n_kept = n_kept + 1
                if n_kept > 0:
                    _cross_rows(rows, &sums[k * square], n_kept, width)
    np.asarray(gram_out)[...] = np.asarray(thread_sums)[:, : n_experts * square].sum(
        axis=0
    ).reshape(n_experts, width, width)


cdef inline void _top_k_row(const double *logits, Py_ssize_t n_experts, Py_ssize_t top_k,
                            Py_ssize_t *kept_experts, double *kept) noexcept nogil:
    """One row's top_k experts, largest logit first, and the softmax over their logits.

    Insertion into a sorted buffer of length top_k: O(K * top_k), fast for
    the small top_k used in routing; ties keep the lower expert index.
    """
    cdef Py_ssize_t k, j, pos
    cdef Py_ssize_t filled = 0
    cdef double value, row_max, total
    cdef double smallest = -INFINITY  # smallest kept logit once the buffer is full
    for k in range(n_experts):
        value = logits[k]
        if filled < top_k:
            pos = filled
            filled = filled + 1
        elif value > smallest:
            pos = top_k - 1
        else:
            continue  # most logits stop here, on a register comparison
        while pos > 0 and kept[pos - 1] < value:
            kept[pos] = kept[pos - 1]
            kept_experts[pos] = kept_experts[pos - 1]
            pos = pos - 1
        kept[pos] = value
        kept_experts[pos] = k
        if filled == top_k:
            smallest = kept[top_k - 1]
    row_max = kept[0]
    for j in range(top_k):
        kept[j] = kept[j] - row_max
    exp_inplace(kept, top_k)
    total = _sum(kept, top_k)
    for j in range(top_k):
        kept[j] = kept[j] / total


def _check_top_k(Py_ssize_t top_k, Py_ssize_t n_experts):
    if not 1 <= top_k <= n_experts:
        raise ValueError(f"top_k must be in [1, {n_experts}], got {top_k}.")


def top_k_softmax(
    const double[:, ::1] logits,          # IN  (n, K) gate logits
    Py_ssize_t top_k,                     # IN  experts kept per row, 1 <= top_k <= K
    Py_ssize_t[:, ::1] experts_out,       # OUT (n, top_k) kept experts, largest logit first
    double[:, ::1] weights_out,           # OUT (n, top_k) softmax over the kept logits
    int n_threads=1,
):
    """Sparse routing: each row's top_k experts and their renormalised gate weights.

    Ties keep the lower expert index.
    """
    cdef Py_ssize_t n = logits.shape[0]
    cdef Py_ssize_t n_experts = logits.shape[1]
    cdef Py_ssize_t i
    _check_top_k(top_k, n_experts)
    _check_shapes(
        n_threads,
        {"experts_out": (n, top_k), "weights_out": (n, top_k)},
        experts_out=experts_out, weights_out=weights_out,
    )
    for i in prange(n, schedule="static", nogil=True, num_threads=n_threads):
        _top_k_row(&logits[i, 0], n_experts, top_k, &experts_out[i, 0], &weights_out[i, 0])


def softmax_gate_top_k(
    const double[:, ::1] X,               # IN  (n, d) gate inputs
    const double[:, ::1] coef,            # IN  (d, K) V
    const double[::1] intercept,          # IN  (K,)   c
    Py_ssize_t top_k,                     # IN  experts kept per row, 1 <= top_k <= K
    Py_ssize_t[:, ::1] experts_out,       # OUT (n, top_k) kept experts, largest logit first
    double[:, ::1] weights_out,           # OUT (n, top_k) softmax over the kept logits
    int n_threads=1,
):
    """``top_k_softmax`` of the softmax gate's logits ``X V + c``, never storing them.

    The logits of a block of rows come from a small GEMM into a per-thread
    buffer and are routed from there: sparse prediction then costs one pass
    over X instead of writing and re-reading an (n, K) array.
    """
    cdef Py_ssize_t n = X.shape[0]
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_experts = coef.shape[1]
    _check_top_k(top_k, n_experts)
    _check_shapes(
        n_threads,
        {"coef": (n_features, n_experts), "intercept": (n_experts,),
         "experts_out": (n, top_k), "weights_out": (n, top_k)},
        coef=coef, intercept=intercept, experts_out=experts_out, weights_out=weights_out,
    )
    cdef double[:, ::1] scratch_rows = _thread_rows(n_threads, n_experts * GATE_BLOCK_ROWS)
    cdef Py_ssize_t block, start, stop, i, k
    cdef double *z
    with nogil, parallel(num_threads=n_threads):
        z = &scratch_rows[threadid(), 0]
        for block in prange((n + GATE_BLOCK_ROWS - 1) // GATE_BLOCK_ROWS, schedule="static"):
            start = block * GATE_BLOCK_ROWS
            stop = min(start + GATE_BLOCK_ROWS, n)
            _block_logits(&X[start, 0], &coef[0, 0], &intercept[0], z, stop - start, n_features,
                          n_experts)
            for i in range(start, stop):
                _top_k_row(&z[(i - start) * n_experts], n_experts, top_k,
                           &experts_out[i, 0], &weights_out[i, 0])


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
# Hierarchical mixture of experts (Jordan & Jacobs 1994): a binary tree of
# two-way gates.  The tree is a ``children`` array of shape (n_nodes, 2): row j
# holds internal node j's (left, right) children, an entry c >= 0 being the
# internal node c and an entry c < 0 the leaf -1 - c.  Node 0 is the root and
# every node comes after its parent (c > j), so a forward pass over the rows
# goes down the tree and a backward pass goes up.  The n_nodes + 1 leaves are
# the experts (in the gate's leaf order).
# --------------------------------------------------------------------------


cdef int _check_tree(const Py_ssize_t[:, ::1] children) except -1:
    """Refuse a ``children`` array that is not a binary tree with parents first.

    Such a tree has n_nodes >= 1 internal nodes, n_nodes + 1 leaves and
    2 n_nodes child entries: each internal node but the root is the child of
    exactly one node before it, and each leaf is the child of exactly one node.
    Those conditions are also sufficient: every node's parent comes before it,
    so following parents from any node ends at the root without a cycle.
    O(n_nodes), once per call; the loops then trust the indices.
    """
    cdef Py_ssize_t n_nodes = children.shape[0]
    cdef Py_ssize_t j, side, child
    if n_nodes < 1:
        raise ValueError("children has no rows; a tree needs at least one internal node.")
    # How often each internal node (0 .. n_nodes - 1) and each leaf (n_nodes + leaf) is named.
    cdef Py_ssize_t[::1] named = np.zeros(2 * n_nodes + 1, dtype=np.intp)
    cdef bint leaf_out_of_range = False
    for j in range(n_nodes):
        for side in range(2):
            child = children[j, side]
            if child >= 0:
                if child <= j or child >= n_nodes:
                    raise ValueError(
                        f"children[{j}] = {list(children[j])} names an internal node that is "
                        f"not in ({j}, {n_nodes}): every internal node must come after its parent."
                    )
                named[child] += 1
            elif -1 - child > n_nodes:
                leaf_out_of_range = True
            else:
                named[n_nodes - 1 - child] += 1
    for j in range(1, n_nodes):
        if named[j] != 1:
            raise ValueError(
                "children must name each internal node 1 .. n_nodes - 1 exactly once "
                f"(n_nodes = {n_nodes})."
            )
    for j in range(n_nodes, 2 * n_nodes + 1):
        if leaf_out_of_range or named[j] != 1:
            raise ValueError(
                "children must name each leaf 0 .. n_nodes exactly once, as -1 - leaf "
                f"(n_nodes = {n_nodes}, so {n_nodes + 1} leaves)."
            )
    return 0


cdef inline double _log1p_exp_minus_abs(double x) noexcept nogil:
    """log(1 + exp(-|x|)): the term that softplus(x) and softplus(-x) share.

    softplus(x) = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), without
    overflow for any finite x.
    """
    return log1p(exp(-fabs(x)))


def hme_leaf_log_proba(
    const Py_ssize_t[:, ::1] children,    # IN  (n_nodes, 2) the tree, parents first
    const double[:, :, ::1] node_logits,  # IN  (n, n_nodes, 2) each node's (left, right) logits
    double[:, ::1] leaf_log_proba_out,    # OUT (n, n_nodes + 1) log gate probability of each leaf
    int n_threads=1,
):
    """Downward recursion: log probability of every root-to-leaf path.

    Node j sends a row left with probability sigmoid(d) where d is the
    difference of its two logits (a two-column softmax); the log branch
    probabilities are log sigmoid(d) = -softplus(-d) (left) and -softplus(d)
    (right), computed without overflow for any finite d as -(max(-d, 0) + s)
    and -(max(d, 0) + s) with s = log1p(exp(-|d|)), one exp and one log1p
    per node.  A leaf's log
    probability is the sum of the log branch probabilities on its path,
    accumulated from the root down.  The rows of exp(leaf_log_proba_out) sum
    to one up to rounding.

    The nodes are visited in order, so a node's log reach probability (a
    per-thread scratch row of n_nodes entries) is known before it is passed
    on to its children: to a child node's reach entry, or to a leaf's output.
    Every node's branch probabilities are computed once: O(n_leaves) per row.
    """
    cdef Py_ssize_t n = node_logits.shape[0]
    cdef Py_ssize_t n_nodes = children.shape[0]
    _check_tree(children)
    _check_shapes(
        n_threads,
        {"node_logits": (n, n_nodes, 2), "leaf_log_proba_out": (n, n_nodes + 1)},
        node_logits=node_logits, leaf_log_proba_out=leaf_log_proba_out,
    )
    cdef double[:, ::1] reach_rows = _thread_rows(n_threads, n_nodes)
    cdef Py_ssize_t i, j, child
    cdef double d, shared, left, right
    cdef double *reach
    for i in prange(n, schedule="static", nogil=True, num_threads=n_threads):
        reach = &reach_rows[threadid(), 0]
        reach[0] = 0.0
        for j in range(n_nodes):
            d = node_logits[i, j, 0] - node_logits[i, j, 1]
            shared = _log1p_exp_minus_abs(d)
            left = reach[j] - (shared + (-d if d < 0 else 0.0))  # log sigmoid(d)
            right = reach[j] - (shared + (d if d > 0 else 0.0))  # log sigmoid(-d)
            child = children[j, 0]
            if child >= 0:
                reach[child] = left
            else:
                leaf_log_proba_out[i, -1 - child] = left
            child = children[j, 1]
            if child >= 0:
                reach[child] = right
            else:
                leaf_log_proba_out[i, -1 - child] = right


def hme_node_targets(
    const Py_ssize_t[:, ::1] children,      # IN  (n_nodes, 2) the tree, parents first
    const double[:, ::1] responsibilities,  # IN  (n, n_nodes + 1) posterior over leaves (paths)
    double[:, :, ::1] targets_out,          # OUT (n, n_nodes, 2) (left, right) mass per node
    int n_threads=1,
):
    """Upward recursion: each node's soft targets for its M-step.

    targets_out[i, j, 0] is the responsibility mass of the leaves below node
    j's left child and targets_out[i, j, 1] that below its right child, so
    their sum is the posterior probability that row i's path passes through
    node j (for the root, the row sum of the responsibilities) and their
    ratio is the posterior branch probability.  Node j's gate is then fit to
    targets_out[:, j, :] as a soft-target logistic regression whose rows are
    weighted by that reach (see softmax_gate_objective).  Nodes are visited
    from the last to the root, each summing the two entries of a child node
    (already done: children come after their parents) or reading a leaf's
    responsibility: O(n_leaves) per row.  Responsibilities need not sum to one.
    """
    cdef Py_ssize_t n = responsibilities.shape[0]
    cdef Py_ssize_t n_nodes = children.shape[0]
    _check_tree(children)
    _check_shapes(
        n_threads,
        {"responsibilities": (n, n_nodes + 1), "targets_out": (n, n_nodes, 2)},
        responsibilities=responsibilities, targets_out=targets_out,
    )
    cdef Py_ssize_t i, j, side, child
    for i in prange(n, schedule="static", nogil=True, num_threads=n_threads):
        j = n_nodes - 1
        while j >= 0:
            for side in range(2):
                child = children[j, side]
                if child >= 0:
                    targets_out[i, j, side] = targets_out[i, child, 0] + targets_out[i, child, 1]
                else:
                    targets_out[i, j, side] = responsibilities[i, -1 - child]
            j = j - 1


# --------------------------------------------------------------------------
# K multinomial logistic regressions at once: the classifier experts' refit.
# --------------------------------------------------------------------------




def grouped_softmax(
    const double[:, ::1] X,               # IN  (n, d) inputs
    const double[:, ::1] coef,            # IN  (d, K * C) problem k's class c in column k * C + c
    const double[::1] intercept,          # IN  (K * C,)
    Py_ssize_t n_classes,                 # IN  C
    double[:, ::1] proba_out,             # OUT (n, K * C) softmax over each problem's C columns
    int n_threads=1,
):
    """The class probabilities of K multinomial logits, in one pass over ``X``.

    ``proba_out[i, k C : (k + 1) C]`` is the softmax of ``X[i] @ coef[:, k C
    : (k + 1) C] + intercept[k C : (k + 1) C]``: the classifier experts'
    outputs at every E-step.  A block of GATE_BLOCK_ROWS rows gets its
    logits from one small GEMM, written straight into ``proba_out``, and
    their exps from one vectorised call.
    """
    cdef Py_ssize_t n = X.shape[0]
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_columns = coef.shape[1]
    if n_classes < 1 or n_columns % n_classes != 0:
        raise ValueError(
            f"coef has {n_columns} columns, which is not n_classes={n_classes} columns "
            "for each problem."
        )
    _check_shapes(
        n_threads,
        {"coef": (n_features, n_columns), "intercept": (n_columns,),
         "proba_out": (n, n_columns)},
        coef=coef, intercept=intercept, proba_out=proba_out,
    )
    cdef Py_ssize_t n_problems = n_columns // n_classes
    cdef Py_ssize_t block, start, stop, i, k, c
    cdef double top, total
    cdef double *z
    with nogil, parallel(num_threads=n_threads):
        for block in prange((n + GATE_BLOCK_ROWS - 1) // GATE_BLOCK_ROWS, schedule="static"):
            start = block * GATE_BLOCK_ROWS
            stop = min(start + GATE_BLOCK_ROWS, n)
            _block_logits(&X[start, 0], &coef[0, 0], &intercept[0], &proba_out[start, 0],
                          stop - start, n_features, n_columns)
            for i in range(start, stop):
                for k in range(n_problems):
                    z = &proba_out[i, k * n_classes]
                    top = _row_max(z, n_classes)
                    for c in range(n_classes):
                        z[c] = z[c] - top
            exp_inplace(&proba_out[start, 0], (stop - start) * n_columns)
            for i in range(start, stop):
                for k in range(n_problems):
                    z = &proba_out[i, k * n_classes]
                    total = 1.0 / _sum(z, n_classes)
                    for c in range(n_classes):
                        z[c] = z[c] * total


def class_pair_grams(
    const double[:, ::1] X,               # IN  (n, d) inputs
    const double[:, ::1] weights,         # IN  (n, K) row weights per problem; <= 0 = row absent
    const double[::1] centre,             # IN  (d,)   a = [(x - centre) / spread, 1]
    const double[::1] spread,             # IN  (d,)
    const double[:, ::1] logit_coef,      # IN  (d + 1, C * K) problem k's class c in column
                                          #     c * K + k; (d + 1, 0): the weights' Grams alone
    double[:, ::1] sums_out,              # OUT (P * K, (d + 1)(d + 2) / 2) upper triangles,
                                          #     Gram (p, k) in row p * K + k
    int n_threads=1,
):
    """The Grams behind K multinomial logits' Hessians, in one pass over ``X``.

    With ``a_i = [(x_i - centre) / spread, 1]`` and problem k's class
    probabilities ``p_ik = softmax(a_i @ logit_coef[:, k::K])``, Gram (p, k)
    is ``sum_i w_ik p_ikb p_ikc a_i a_i^T`` for the p-th class pair b < c
    (in ``np.triu_indices(C, 1)`` order), over the rows with ``w_ik > 0``;
    with no classes (``logit_coef`` of 0 columns), Gram k is
    ``sum_i w_ik a_i a_i^T`` (P = 1).  Each Gram is returned as its upper
    triangle, row by row (``np.triu_indices(d + 1)`` order).  See
    ``skmoe._multinomial._GroupedProblem.hessians`` for why the Hessians are
    built from class pairs.

    A block of GRAM_BLOCK_ROWS rows is laid out rows last, so that every
    loop below runs along contiguous rows: the block is standardised once,
    its logits come from one small GEMM, the pair weights and the products
    ``a_ij a_il`` (j <= l) are written to per-thread buffers, and one GEMM
    adds ``pair weights @ products.T`` to the thread's sums: ``(d + 1)(d +
    2) / 2`` products per row serve all P K Grams.  The threads' sums are
    added in thread order, so a given thread count gives the same result
    every time.  Callers should hold BLAS to one thread (threadpoolctl).
    """
    cdef Py_ssize_t n = X.shape[0]
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t width = n_features + 1
    cdef Py_ssize_t n_problems = weights.shape[1]
    cdef Py_ssize_t n_columns = logit_coef.shape[1]
    if n_problems < 1 or n_columns % n_problems != 0:
        raise ValueError(
            f"logit_coef has {n_columns} columns, which is not n_classes columns for each of "
            f"the {n_problems} problems (the columns of weights)."
        )
    cdef Py_ssize_t n_classes = n_columns // n_problems
    cdef Py_ssize_t n_pairs = n_classes * (n_classes - 1) // 2 if n_classes else 1
    cdef Py_ssize_t n_grams = n_pairs * n_problems
    cdef Py_ssize_t n_products = width * (width + 1) // 2
    _check_shapes(
        n_threads,
        {"weights": (n, n_problems), "centre": (n_features,), "spread": (n_features,),
         "logit_coef": (width, n_columns), "sums_out": (n_grams, n_products)},
        weights=weights, centre=centre, spread=spread, logit_coef=logit_coef, sums_out=sums_out,
    )
    cdef double[::1] inverse_spread = np.empty(n_features)
    cdef Py_ssize_t j, l, k, b, c, p, q, r, t, block, start, stop, rows
    for j in range(n_features):
        inverse_spread[j] = 1.0 / spread[j]
    # Per thread: the sums; the scratch for a block's features, logits (their
    # totals after them), pair weights and products, each (entries, rows).
    cdef Py_ssize_t B = GRAM_BLOCK_ROWS
    cdef double[:, ::1] thread_sums = _thread_rows(n_threads, n_grams * n_products, zeros=True)
    cdef double[:, ::1] scratch_rows = _thread_rows(
        n_threads, (width + n_columns + n_problems + n_grams + n_products) * B
    )
    cdef double w
    cdef double *a
    cdef double *z
    cdef double *total
    cdef double *pair
    cdef double *products
    cdef double *zb
    cdef double *zc
    cdef double *out
    with nogil, parallel(num_threads=n_threads):
        t = threadid()
        a = &scratch_rows[t, 0]
        z = &a[width * B]
        total = &z[n_columns * B]
        pair = &total[n_problems * B]
        products = &pair[n_grams * B]
        for block in prange((n + B - 1) // B, schedule="static"):
            start = block * B
            stop = min(start + B, n)
            rows = stop - start
            for r in range(rows):
                for j in range(n_features):
                    a[j * B + r] = (X[start + r, j] - centre[j]) * inverse_spread[j]
                a[n_features * B + r] = 1.0
            q = 0
            for j in range(width):
                for l in range(j, width):
                    out = &products[q * B]
                    for r in range(rows):
                        out[r] = a[j * B + r] * a[l * B + r]
                    q = q + 1
            if n_classes == 0:
                for k in range(n_problems):
                    for r in range(rows):
                        w = weights[start + r, k]
                        pair[k * B + r] = w if w > 0.0 else 0.0
            else:
                _gemm_columns(a, &logit_coef[0, 0], z, rows, width, n_columns, B)
                # Each problem's softmax, shifted by its largest logit.
                for k in range(n_problems):
                    out = &total[k * B]
                    for r in range(rows):
                        out[r] = z[k * B + r]
                    for c in range(1, n_classes):
                        zc = &z[(c * n_problems + k) * B]
                        for r in range(rows):
                            if zc[r] > out[r]:
                                out[r] = zc[r]
                    for c in range(n_classes):
                        zc = &z[(c * n_problems + k) * B]
                        for r in range(rows):
                            zc[r] = zc[r] - out[r]
                for c in range(n_columns):
                    exp_inplace(&z[c * B], rows)
                for k in range(n_problems):
                    out = &total[k * B]
                    for r in range(rows):
                        out[r] = z[k * B + r]
                    for c in range(1, n_classes):
                        zc = &z[(c * n_problems + k) * B]
                        for r in range(rows):
                            out[r] = out[r] + zc[r]
                    # w p_b p_c = (w / total^2) e_b e_c, the weight held in total.
                    for r in range(rows):
                        w = weights[start + r, k]
                        out[r] = w / (out[r] * out[r]) if w > 0.0 else 0.0
                    p = 0
                    for b in range(n_classes):
                        zb = &z[(b * n_problems + k) * B]
                        for c in range(b + 1, n_classes):
                            zc = &z[(c * n_problems + k) * B]
                            for r in range(rows):
                                pair[(p * n_problems + k) * B + r] = out[r] * zb[r] * zc[r]
                            p = p + 1
            if n_grams > 0:  # (one class: no pair)
                _gemm_sums(pair, products, &thread_sums[t, 0], n_grams, n_products, rows, B)
    for p in range(n_grams):
        for q in range(n_products):
            sums_out[p, q] = 0.0
    for t in range(n_threads):
        for p in range(n_grams):
            for q in range(n_products):
                sums_out[p, q] += thread_sums[t, p * n_products + q]


cdef inline void _gemm_columns(const double *a, const double *coef, double *z, int rows,
                               int width, int n_columns, int stride) noexcept nogil:
    """``z = coef.T @ a`` on rows-last blocks: ``a`` (width, stride), ``coef`` (width,
    n_columns) row-major, ``z`` (n_columns, stride); the first ``rows`` rows."""
    cdef char no = b"N"
    cdef char yes = b"T"
    cdef double one = 1.0
    cdef double zero = 0.0
    # Column-major, a is (stride, width) and z (stride, n_columns): z = a @ coef.
    dgemm(&no, &yes, &rows, &n_columns, &width, &one, <double *> a, &stride,
          <double *> coef, &n_columns, &zero, z, &stride)


cdef inline void _gemm_sums(const double *pair, const double *products, double *sums,
                            int n_grams, int n_products, int rows, int stride) noexcept nogil:
    """``sums += pair @ products.T`` on rows-last blocks: ``pair`` (n_grams, stride),
    ``products`` (n_products, stride), ``sums`` (n_grams, n_products) row-major."""
    cdef char no = b"N"
    cdef char yes = b"T"
    cdef double one = 1.0
    # Column-major, sums is (n_products, n_grams) = products.T-as-stored.T @ pair.
    dgemm(&yes, &no, &n_products, &n_grams, &rows, &one, <double *> products, &stride,
          <double *> pair, &stride, &one, sums, &n_products)


def grouped_softmax_objective(
    const double[:, ::1] X,               # IN  (n, d) inputs
    const double[:, ::1] coef,            # IN  (d, K * C) expert k's class c in column k * C + c
    const double[::1] intercept,          # IN  (K * C,)
    const Py_ssize_t[::1] codes,          # IN  (n,) class index of each row, in [0, C)
    const double[:, ::1] weights,         # IN  (n, K) row weights per expert; <= 0 = row absent
    double[:, ::1] grad_coef_out,         # OUT (d, K * C) d loss_k / d coef, expert k's columns
    double[::1] grad_intercept_out,       # OUT (K * C,)
    double[::1] loss_out,                 # OUT (K,)   each expert's weighted cross-entropy
    int n_threads=1,
):
    """K weighted multinomial cross-entropies and their gradients, in one pass over ``X``.

    With Z = X coef + intercept (n, K * C) and Z_ik the C logits of expert k
    (columns k * C to (k + 1) * C), expert k's loss is
    loss_k = sum_i w_ik (logsumexp(Z_ik) - Z_ik[codes_i]) over the rows with
    w_ik > 0, its gradient in Z_ik is g_ik = w_ik (softmax(Z_ik) - onehot(codes_i)),
    and then d loss_k / d coef = X.T G and d loss_k / d intercept = sum_i g_i
    in expert k's columns.  Each expert's parameters enter its own loss only,
    so the K gradients are the blocks of one (d, K * C) array.

    The blocking is that of ``softmax_gate_objective``: a block of
    GATE_BLOCK_ROWS rows gets all K * C logits from one small GEMM into a
    per-thread buffer, the gradient in Z overwrites them, and a second GEMM
    adds the block's X.T G to the thread's sums; every block of X is read once
    for all K experts.  Rows of zero weight for an expert get a zero gradient
    and no loss (their logits are not even exponentiated as computed).  The
    threads' sums, losses included, are added in thread order, so a given
    thread count gives the same result every time.  Callers should hold BLAS
    to one thread (threadpoolctl).
    """
    cdef Py_ssize_t n = X.shape[0]
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_experts = weights.shape[1]
    cdef Py_ssize_t n_columns = coef.shape[1]
    if n_experts < 1 or n_columns % n_experts != 0 or n_columns // n_experts < 1:
        raise ValueError(
            f"coef has {n_columns} columns, which is not n_classes >= 1 columns for each of "
            f"the {n_experts} experts (the columns of weights)."
        )
    cdef Py_ssize_t n_classes = n_columns // n_experts
    _check_shapes(
        n_threads,
        {"coef": (n_features, n_columns), "intercept": (n_columns,), "codes": (n,),
         "weights": (n, n_experts), "grad_coef_out": (n_features, n_columns),
         "grad_intercept_out": (n_columns,), "loss_out": (n_experts,)},
        coef=coef, intercept=intercept, codes=codes, weights=weights,
        grad_coef_out=grad_coef_out, grad_intercept_out=grad_intercept_out, loss_out=loss_out,
    )
    cdef Py_ssize_t i, j, k, c, r, t, block, start, stop
    # A code outside [0, C) would index another expert's logits, or beyond the buffer.
    with nogil:
        for i in range(n):
            if codes[i] < 0 or codes[i] >= n_classes:
                with gil:
                    raise ValueError(f"codes[{i}] = {codes[i]} is outside [0, {n_classes}).")
    # Per thread: the sums (d + 1, K * C) (X.T G, then the column sums of G)
    # followed by the K losses; the scratch for a block's logits and row maxima.
    cdef Py_ssize_t width = (n_features + 1) * n_columns
    cdef double[:, ::1] thread_sums = _thread_rows(n_threads, width + n_experts, zeros=True)
    cdef double[:, ::1] scratch_rows = _thread_rows(
        n_threads, (n_columns + n_experts) * GATE_BLOCK_ROWS
    )
    cdef double w, total
    cdef double *z
    cdef double *row_max
    cdef double *sums
    cdef double *losses
    cdef double *zk
    with nogil, parallel(num_threads=n_threads):
        t = threadid()
        z = &scratch_rows[t, 0]
        row_max = &z[n_columns * GATE_BLOCK_ROWS]
        sums = &thread_sums[t, 0]
        losses = &sums[width]
        for block in prange((n + GATE_BLOCK_ROWS - 1) // GATE_BLOCK_ROWS, schedule="static"):
            start = block * GATE_BLOCK_ROWS
            stop = min(start + GATE_BLOCK_ROWS, n)
            _block_logits(&X[start, 0], &coef[0, 0], &intercept[0], z, stop - start, n_features,
                          n_columns)
            for i in range(start, stop):
                r = i - start
                for k in range(n_experts):
                    zk = &z[r * n_columns + k * n_classes]
                    w = weights[i, k]
                    if w > 0.0:
                        # The loss without its log-sum-exp term; that is added below.
                        losses[k] -= w * zk[codes[i]]
                        row_max[r * n_experts + k] = _row_max(zk, n_classes)
                        for c in range(n_classes):
                            zk[c] = zk[c] - row_max[r * n_experts + k]
                    else:
                        # An absent row's logits may be anything; exp(0) is safe.
                        for c in range(n_classes):
                            zk[c] = 0.0
            exp_inplace(z, (stop - start) * n_columns)
            for i in range(start, stop):
                r = i - start
                for k in range(n_experts):
                    zk = &z[r * n_columns + k * n_classes]
                    w = weights[i, k]
                    if w > 0.0:
                        total = _sum(zk, n_classes)
                        losses[k] += w * (row_max[r * n_experts + k] + log(total))
                        w = w / total
                        for c in range(n_classes):
                            zk[c] = w * zk[c]
                        zk[codes[i]] -= weights[i, k]
                    else:
                        for c in range(n_classes):
                            zk[c] = 0.0
                for c in range(n_columns):
                    sums[n_features * n_columns + c] += z[r * n_columns + c]
            if n_features > 0:
                _gemm_rows(&X[start, 0], z, sums, n_features, stop - start, n_columns, 1.0,
                           True)
    for j in range(n_features):
        for c in range(n_columns):
            grad_coef_out[j, c] = 0.0
    for c in range(n_columns):
        grad_intercept_out[c] = 0.0
    for k in range(n_experts):
        loss_out[k] = 0.0
    for t in range(n_threads):
        for j in range(n_features):
            for c in range(n_columns):
                grad_coef_out[j, c] += thread_sums[t, j * n_columns + c]
        for c in range(n_columns):
            grad_intercept_out[c] += thread_sums[t, n_features * n_columns + c]
        for k in range(n_experts):
            loss_out[k] += thread_sums[t, width + k]
