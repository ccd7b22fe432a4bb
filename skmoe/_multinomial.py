"""K weighted multinomial logistic regressions solved together: the classifier experts' refit.

A mixture of classifiers refits all K experts at every EM iteration, each with
its own row weights (column k of an (n, K) array).  Fitted one by one, the
experts make K passes over ``X`` per objective evaluation (and K tasks);
here the K problems are stacked into one parameter vector and solved by one
L-BFGS whose every evaluation is a single pass over ``X``
(:func:`skmoe._kernels.grouped_softmax_objective`).

The K problems share no parameter, so the sum of their objectives is
minimised exactly where each one is.  Each is divided by its weight sum
(a per-sample scale, as in the softmax gate) so that no expert's problem
dominates the joint gradient, and L-BFGS's stopping rule (largest entry of
the projected gradient below ``tol``) then holds for every problem at once.

Two uses:

* :class:`skmoe.experts.WeightedLogisticRegression` (its batch protocol):
  the penalty is on the coefficients of the features standardised with each
  expert's own weighted means and standard deviations;
* scikit-learn's :class:`~sklearn.linear_model.LogisticRegression` (L2 or no
  penalty): with ``mean=0, scale=1`` the penalty is on the raw coefficients,
  and :func:`logistic_regression_settings`, :func:`logistic_regression_start`
  and :func:`set_logistic_regression_attributes` translate between its
  parametrisation and the symmetric one solved here.
"""

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

from ._kernels import grouped_softmax_objective
from ._stats import weighted_mean_scale
from ._threads import kernel_threads, single_threaded_blas


def fit_multinomial_logits(X, codes, n_classes, weights, C, mean=None, scale=None, coef=None,
                           intercept=None, tol=1e-6, max_iter=100, fit_intercept=True,
                           precondition=True):
    """Solve K weighted multinomial logistic regressions with one L-BFGS over ``X``.

    Problem k minimises, over ``coef[k]`` (C, d) and ``intercept[k]`` (C,),
    ``sum_i w_ik CE_i + ||coef[k] * scale[k]||^2 / (2 C_k)``, where
    ``CE_i = logsumexp(z_i) - z_i[codes_i]`` is the cross-entropy of the
    logits ``z_i = coef[k] x_i + intercept[k]``.  The parametrisation is the
    symmetric (multinomial) one, C coefficient rows per problem, also for two
    classes.  The intercepts are not penalised.

    With ``mean`` and ``scale`` the weighted feature means and standard
    deviations of problem k, the penalty is that of the coefficients of the
    standardised features (what :class:`~skmoe.experts.WeightedLogisticRegression`
    and the softmax gate use: blind to the features' units).  With
    ``mean=0, scale=1`` (or None) the penalty is on the raw coefficients, the
    objective of scikit-learn's ``LogisticRegression`` divided by its ``C``.
    The problem depends on ``scale`` and ``C`` only: ``mean`` shifts the
    intercepts of the standardised model, not the minimiser.

    Whatever the penalty, L-BFGS works on the coefficients of the features
    standardised with each problem's own weighted means and standard
    deviations (``precondition``), folded into the parameters so that ``X``
    is never centred or copied: in raw units a feature of mean 5 and spread
    0.1 made L-BFGS take 5 to 15 times more iterations, and stop less
    accurately, than in standardised units.

    The K problems are stacked: the objective is the sum over k of problem
    k's objective divided by its weight sum ``W_k = sum_i w_ik``, and each
    evaluation is one pass of the compiled kernel over ``X`` (a sparse ``X``
    goes through NumPy/SciPy instead).  L-BFGS stops when the largest entry
    of the gradient, every problem's per-sample gradient, is below ``tol``:
    then each problem is solved to ``tol``.  The joint L-BFGS takes about as
    many iterations as the slowest problem would alone.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
        Float64 inputs without NaN; a dense array is best C-ordered (else
        it is copied once), a sparse one CSR (else converted).
    codes : ndarray of shape (n_samples,)
        Class index of each row, integers in ``[0, n_classes)``.
    n_classes : int
        Number of classes C (at least 1); every problem has all C classes,
        also those its rows of positive weight lack (their intercepts then
        drift down until the gradient is below ``tol``).
    weights : ndarray of shape (n_samples, K)
        Non-negative row weights of each problem; 0 (or less) leaves the
        row out of that problem.  Every column needs a positive sum.
    C : float or array-like of shape (K,)
        Inverse penalty strength of each problem, > 0; ``np.inf`` for none.
    mean : array-like of shape (n_features,) or (K, n_features), default=None
        Feature centres of the standardisation, shared by all problems or
        one row per problem; None is 0.
    scale : array-like of shape (n_features,) or (K, n_features), default=None
        Feature scales (positive) of the standardisation; None is 1.
    coef : array-like of shape (K, n_classes, n_features), default=None
        Starting coefficients (warm start), in the units of ``X``; None is 0.
    intercept : array-like of shape (K, n_classes), default=None
        Starting intercepts; None is 0.
    tol : float, default=1e-6
        Gradient tolerance of L-BFGS on the per-sample objectives.
    max_iter : int, default=100
        Maximum L-BFGS iterations of the joint problem.
    fit_intercept : bool or array-like of shape (K,), default=True
        Whether problem k has intercepts.  Where it has none they are held
        at 0 (their gradient is zeroed, so L-BFGS never moves them); that
        needs ``mean[k] = 0`` when ``precondition=False``.
    precondition : bool, default=True
        Solve in the coordinates of the features standardised with each
        problem's weighted means and standard deviations, computed here (two
        passes over ``X`` per problem).  False: in the coordinates of
        ``mean`` and ``scale``, for a caller that passes those statistics
        already.  The minimiser is the same either way.

    Returns
    -------
    coef : ndarray of shape (K, n_classes, n_features)
        Coefficients in the units of ``X``.
    intercept : ndarray of shape (K, n_classes)
        Intercepts.
    n_iter : int
        L-BFGS iterations of the joint problem.

    Notes
    -----
    The softmax is unchanged when one vector is added to all C rows of
    ``[coef[k], intercept[k]]``.  A finite ``C`` picks the rows that sum to
    zero; the intercepts, unpenalised, are only identified up to that shift,
    and so are the coefficients when ``C=inf``.  The gradient in that
    direction is zero, so L-BFGS keeps the start's sums over classes: from a
    zero start both sum to zero, as scikit-learn's do.

    As in the softmax gate, the result is the start when L-BFGS ends above
    the start's objective (possible only through a failed line search), so
    that EM's objective never goes down.
    """
    problem = _GroupedProblem(X, codes, n_classes, weights, C, mean, scale, fit_intercept,
                              precondition)
    theta0 = problem.pack(coef, intercept)
    start_values = []  # L-BFGS evaluates theta0 first: keep that value for the guard

    def objective(theta):
        value, gradient = problem.objective(theta)
        if not start_values:
            start_values.append(value)
        return value, gradient

    # The kernel threads over rows and makes its own small BLAS calls in each
    # thread; BLAS threads on top would only contend for the cores.
    with single_threaded_blas():
        result = minimize(
            objective, theta0, jac=True, method="L-BFGS-B",
            # ftol off: stop on the gradient alone, which bounds every problem's.
            options={"maxiter": max_iter, "gtol": tol, "ftol": 1e-64},
        )
    theta = result.x if result.fun <= start_values[0] else theta0
    coef, intercept = problem.unpack(theta)
    return coef, intercept, int(result.nit)


class _GroupedProblem:
    """The stacked objective of :func:`fit_multinomial_logits` and its parameter layout.

    L-BFGS works on the parameters of all K problems in the solver's
    standardised coordinates, one vector: the (d, K * C) coefficients
    (problem k's class c in column k * C + c, the kernel's layout) then the
    (K * C,) intercepts.  With the solver's centres ``m`` and scales ``s``,
    ``std_coef = coef * s`` and ``std_intercept = intercept + m @ coef`` are
    the parameters of the model on the features ``(x - m) / s``.  The
    penalty is on ``coef * scale = std_coef * (scale / s)``.
    """

    def __init__(self, X, codes, n_classes, weights, C, mean, scale, fit_intercept,
                 precondition):
        self.sparse = sp.issparse(X)
        self.X = X.tocsr() if self.sparse else np.ascontiguousarray(X, dtype=np.float64)
        n_samples, n_features = self.X.shape
        self.weights = np.ascontiguousarray(weights, dtype=np.float64)
        if self.weights.ndim != 2 or self.weights.shape[0] != n_samples:
            raise ValueError(
                f"weights has shape {self.weights.shape}, expected ({n_samples}, n_problems)."
            )
        n_problems = self.weights.shape[1]
        self.codes = np.ascontiguousarray(codes, dtype=np.intp)
        if self.codes.shape != (n_samples,):
            raise ValueError(f"codes has shape {self.codes.shape}, expected ({n_samples},).")
        if n_classes < 1 or (n_samples and not 0 <= self.codes.min() <= self.codes.max()
                             < n_classes):
            raise ValueError(f"codes must be class indices in [0, {n_classes}).")
        # The kernel leaves out rows of weight <= 0; the sums count the others.
        present = np.where(self.weights > 0, self.weights, 0.0)
        self.totals = present.sum(axis=0)
        if n_problems < 1 or not np.all(self.totals > 0):
            raise ValueError("Every column of weights needs a positive sum.")
        self.shape = (n_problems, n_classes, n_features)
        self.C = np.broadcast_to(np.asarray(C, dtype=np.float64), (n_problems,))
        if not np.all(self.C > 0):
            raise ValueError(f"C must be positive, got {C}.")
        self.fit_intercept = np.broadcast_to(np.asarray(fit_intercept, dtype=bool),
                                             (n_problems,))
        mean = _per_problem(mean, 0.0, n_problems, n_features, "mean")
        scale = _per_problem(scale, 1.0, n_problems, n_features, "scale")
        if not np.all(scale > 0):
            raise ValueError("scale must be positive.")
        if precondition:
            mean = np.empty((n_problems, n_features))
            solver_scale = np.empty((n_problems, n_features))
            for k in range(n_problems):
                mean[k], solver_scale[k] = weighted_mean_scale(self.X, present[:, k])
            # Without intercepts the raw intercept is held at 0, which in
            # centred coordinates it would not be: those are only scaled.
            mean[~self.fit_intercept] = 0.0
        else:
            solver_scale = scale
            if np.any(mean[~self.fit_intercept] != 0):
                raise ValueError("A problem without intercepts needs mean = 0.")
        self.mean, self.scale = mean, solver_scale
        # Penalty on std_coef * ratio; the inverse C folded in (0 for no penalty).
        inverse_C = np.where(np.isfinite(self.C), 1.0 / self.C, 0.0)
        ratio = scale / solver_scale  # (K, d)
        self.penalty_weights = (ratio**2 * inverse_C[:, None]).T[:, :, None]  # (d, K, 1)
        self.n_threads = kernel_threads(self.weights.size * n_classes)

    def pack(self, coef, intercept):
        """(K, C, d) coefficients and (K, C) intercepts in input units -> L-BFGS's vector."""
        if coef is None:
            coef = np.zeros(self.shape)
        if intercept is None:
            intercept = np.zeros(self.shape[:2])
        coef = np.asarray(coef, dtype=np.float64)
        intercept = np.asarray(intercept, dtype=np.float64)
        if coef.shape != self.shape or intercept.shape != self.shape[:2]:
            raise ValueError(
                f"Starting coef and intercept have shapes {coef.shape} and {intercept.shape}, "
                f"expected {self.shape} and {self.shape[:2]}."
            )
        intercept = np.where(self.fit_intercept[:, None], intercept, 0.0)
        std_coef = coef.transpose(2, 0, 1) * self.scale.T[:, :, None]  # (d, K, C)
        std_intercept = intercept + np.einsum("kj,kcj->kc", self.mean, coef)
        return np.concatenate([std_coef.ravel(), std_intercept.ravel()])

    def _raw(self, theta):
        """L-BFGS's vector -> (d, K, C) standardised and raw coefficients, (K, C) intercepts."""
        n_problems, n_classes, n_features = self.shape
        size = n_features * n_problems * n_classes
        std_coef = theta[:size].reshape(n_features, n_problems, n_classes)
        coef = std_coef / self.scale.T[:, :, None]
        intercept = theta[size:].reshape(n_problems, n_classes) - np.einsum(
            "kj,jkc->kc", self.mean, coef
        )
        return std_coef, coef, intercept

    def unpack(self, theta):
        """L-BFGS's vector -> (K, C, d) coefficients and (K, C) intercepts in input units."""
        _, coef, intercept = self._raw(theta)
        return np.ascontiguousarray(coef.transpose(1, 2, 0)), intercept

    def objective(self, theta):
        """Sum over problems of the per-sample penalised cross-entropy, and its gradient."""
        n_problems, n_classes, n_features = self.shape
        std_coef, coef, intercept = self._raw(theta)
        grad_coef = np.empty((n_features, n_problems * n_classes))
        grad_intercept = np.empty(n_problems * n_classes)
        losses = np.empty(n_problems)
        # The compiled kernel reads dense C-ordered rows; sparse X has its own path.
        loss_and_gradient = _sparse_grouped_objective if self.sparse else grouped_softmax_objective
        loss_and_gradient(
            self.X, coef.reshape(n_features, -1), intercept.ravel(), self.codes, self.weights,
            grad_coef, grad_intercept, losses, self.n_threads,
        )
        grad_coef = grad_coef.reshape(n_features, n_problems, n_classes)
        grad_intercept = grad_intercept.reshape(n_problems, n_classes)
        grad_intercept[~self.fit_intercept] = 0.0  # held at zero
        # Chain rule through the standardisation, without forming (X - mean) / scale.
        grad_coef -= self.mean.T[:, :, None] * grad_intercept[None]
        grad_coef /= self.scale.T[:, :, None]
        penalty_gradient = self.penalty_weights * std_coef
        losses += 0.5 * np.einsum("jkc,jkc->k", penalty_gradient, std_coef)
        grad_coef += penalty_gradient
        # Each problem on a per-sample scale.
        losses /= self.totals
        grad_coef /= self.totals[None, :, None]
        grad_intercept /= self.totals[:, None]
        return losses.sum(), np.concatenate([grad_coef.ravel(), grad_intercept.ravel()])


def _per_problem(values, default, n_problems, n_features, name):
    """A (d,) or (K, d) array (None: ``default``) as a (K, d) array."""
    if values is None:
        return np.full((n_problems, n_features), default)
    values = np.asarray(values, dtype=np.float64)
    if values.shape not in ((n_features,), (n_problems, n_features)):
        raise ValueError(
            f"{name} has shape {values.shape}, expected ({n_features},) or "
            f"({n_problems}, {n_features})."
        )
    return np.broadcast_to(values, (n_problems, n_features))


def _sparse_grouped_objective(X, coef, intercept, codes, weights, grad_coef_out,
                              grad_intercept_out, loss_out, n_threads=1):
    """``grouped_softmax_objective`` for a sparse ``X``, in NumPy and SciPy.

    The (n, K, C) logits ``Z = X coef + intercept`` are formed densely; the
    loss of problem k is ``sum_i w_ik (logsumexp(Z_ik) - Z_ik[codes_i])`` and
    the gradient in ``Z_ik`` is ``w_ik (softmax(Z_ik) - onehot(codes_i))``,
    over the rows with ``w_ik > 0``. ``n_threads`` is unused (the signature
    is the kernel's).
    """
    n_samples, n_problems = weights.shape
    logits = np.asarray(X @ coef)
    logits += intercept
    logits = logits.reshape(n_samples, n_problems, -1)
    present = weights > 0
    w = np.where(present, weights, 0.0)
    # Absent rows' logits may be anything: zero them so that exp cannot overflow.
    logits[~present] = 0.0
    rows = np.arange(n_samples)
    true_logit = logits[rows, :, codes]  # (n, K)
    row_max = logits.max(axis=2)
    shifted = logits - row_max[:, :, None]
    np.exp(shifted, out=shifted)
    total = shifted.sum(axis=2)
    loss_out[...] = np.einsum("ik,ik->k", w, row_max + np.log(total) - true_logit)
    # The gradient in Z, in place: softmax = shifted / total.
    shifted *= (w / total)[:, :, None]
    shifted[rows, :, codes] -= w
    gradient = shifted.reshape(n_samples, -1)
    grad_coef_out[...] = np.asarray(X.T @ gradient)
    grad_intercept_out[...] = gradient.sum(axis=0)


# --------------------------------------------------------------------------
# scikit-learn's LogisticRegression in the symmetric parametrisation
# --------------------------------------------------------------------------

# Solvers of LogisticRegression whose problem (L2 or no penalty) is the one
# solved here: liblinear penalises the intercept (an extra feature) and is
# one-vs-rest.
_SOLVERS = ("lbfgs", "newton-cg", "newton-cholesky", "sag", "saga")


def _logistic_penalty(estimator):
    """``'l2'``, None, or another penalty, as ``LogisticRegression.fit`` decides it.

    scikit-learn >= 1.8 deprecates ``penalty`` for ``l1_ratio`` (0: L2) and
    ``C=np.inf`` (no penalty); earlier versions read ``penalty`` alone.
    """
    penalty = getattr(estimator, "penalty", "l2")
    if penalty == "deprecated":
        l1_ratio = getattr(estimator, "l1_ratio", 0.0)
        if l1_ratio not in (0, None):
            return "l1" if l1_ratio == 1 else "elasticnet"
        return None if estimator.C == np.inf else "l2"
    if penalty == "l2" and getattr(estimator, "l1_ratio", None) not in (0, None):
        return "other"  # an inconsistent setting: leave it to scikit-learn
    return penalty


def logistic_regression_settings(estimator, n_classes):
    """The arguments of :func:`fit_multinomial_logits` that solve a ``LogisticRegression``.

    scikit-learn minimises ``C * sum_i w_i CE_i + ||coef||^2 / 2`` (L2) or
    ``sum_i w_i CE_i`` (no penalty) over the raw coefficients, in the
    symmetric parametrisation for three or more classes: the problem of
    :func:`fit_multinomial_logits` with ``mean=0, scale=1`` and the same
    ``C``.  For two classes it fits one vector ``b`` with intercept ``c``;
    the symmetric pair of rows ``(v0, v1)`` with ``v1 - v0 = b`` costs the
    least penalty at ``v0 = -v1 = -b / 2``, which is ``||b||^2 / 4``: the
    binary problem is the symmetric one with ``C / 2``.  Its ``tol`` and
    ``max_iter`` are those of L-BFGS on the same per-sample objective.

    Parameters
    ----------
    estimator : LogisticRegression
        The (unfitted or fitted) estimator whose parameters are read.
    n_classes : int
        Number of classes it is to be fitted on.

    Returns
    -------
    settings : dict or None
        ``{"C", "fit_intercept", "tol", "max_iter"}`` to pass to
        :func:`fit_multinomial_logits` (with ``mean=None, scale=None``), or
        None when the estimator's problem is another one: an L1 or
        elastic-net penalty, ``class_weight`` (which depends on each
        problem's weighted class counts), the ``liblinear`` solver, a dual
        formulation, or one-vs-rest multiclass.
    """
    penalty = _logistic_penalty(estimator)
    if (penalty not in ("l2", None) or getattr(estimator, "solver", "lbfgs") not in _SOLVERS
            or getattr(estimator, "class_weight", None) is not None
            or getattr(estimator, "dual", False)
            or (n_classes > 2 and getattr(estimator, "multi_class", "auto") == "ovr")):
        return None
    C = np.inf if penalty is None else float(estimator.C)
    return {
        "C": C / 2 if n_classes == 2 else C,
        "fit_intercept": bool(estimator.fit_intercept),
        "tol": float(estimator.tol),
        "max_iter": max(int(estimator.max_iter), 1),
    }


def logistic_regression_start(estimator, classes, n_features):
    """A warm start in the symmetric parametrisation, as ``LogisticRegression`` would take it.

    scikit-learn starts from the previous solution when ``warm_start=True``
    and a previous fit had a compatible shape. A binary ``(b, c)`` becomes
    the rows ``(-b / 2, b / 2)`` and intercepts ``(-c / 2, c / 2)``: the
    same probabilities, and the symmetric optimum's form.

    Parameters
    ----------
    estimator : LogisticRegression
        The estimator, possibly fitted.
    classes : ndarray of shape (n_classes,)
        The classes of the new fit.
    n_features : int
        The number of features of the new fit.

    Returns
    -------
    start : tuple of (ndarray of shape (n_classes, n_features), ndarray of shape (n_classes,)) or None
        Starting coefficients and intercepts, or None (start from zero):
        no warm start asked, not fitted, or other classes or features.
    """
    coef = getattr(estimator, "coef_", None)
    if (not getattr(estimator, "warm_start", False) or coef is None
            or not np.array_equal(getattr(estimator, "classes_", None), classes)
            or coef.shape[-1] != n_features):
        return None
    coef = np.asarray(coef, dtype=np.float64)
    intercept = np.asarray(estimator.intercept_, dtype=np.float64).ravel()
    if classes.shape[0] == 2:
        return np.vstack([-coef[0] / 2, coef[0] / 2]), np.array([-1.0, 1.0]) * intercept[0] / 2
    return coef.copy(), intercept.copy()


def set_logistic_regression_attributes(estimator, classes, coef, intercept, n_iter):
    """Set a ``LogisticRegression``'s fitted attributes from a symmetric solution.

    As its own ``fit`` would set them: ``classes_``; for two classes
    ``coef_`` of shape (1, n_features) and ``intercept_`` of shape (1,),
    the differences ``coef[1] - coef[0]`` and ``intercept[1] - intercept[0]``
    (the log-odds of ``classes[1]``); else ``coef_`` (n_classes, n_features)
    and ``intercept_`` (n_classes,) as given; ``intercept_`` zero without
    ``fit_intercept``; ``n_iter_`` an int32 array of shape (1,);
    ``n_features_in_``.  ``feature_names_in_`` is left to the caller.

    Parameters
    ----------
    estimator : LogisticRegression
        The estimator to mark fitted.
    classes : ndarray of shape (n_classes,)
        Sorted class labels.
    coef : ndarray of shape (n_classes, n_features)
        One problem's coefficients from :func:`fit_multinomial_logits`.
    intercept : ndarray of shape (n_classes,)
        Its intercepts.
    n_iter : int
        Solver iterations.

    Returns
    -------
    estimator : LogisticRegression
        The same estimator, fitted.
    """
    coef = np.asarray(coef, dtype=np.float64)
    intercept = np.asarray(intercept, dtype=np.float64)
    n_classes, n_features = coef.shape
    if n_classes == 2:
        coef = (coef[1] - coef[0])[None, :]
        intercept = intercept[1:] - intercept[:1]
    if not getattr(estimator, "fit_intercept", True):
        intercept = np.zeros_like(intercept)
    estimator.classes_ = np.asarray(classes)
    estimator.coef_ = np.ascontiguousarray(coef)
    estimator.intercept_ = np.array(intercept)
    estimator.n_iter_ = np.array([n_iter], dtype=np.int32)
    estimator.n_features_in_ = n_features
    return estimator
