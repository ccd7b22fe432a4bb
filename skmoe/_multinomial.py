"""K weighted multinomial logistic regressions solved together: the classifier experts' refit.

A mixture of classifiers refits all K experts at every EM iteration, each with
its own row weights (column k of an (n, K) array).  Fitted one by one, the
experts make K passes over ``X`` per round of objective evaluations (and K
tasks).  Here each problem keeps its own solver (Newton's method for the
small problems EM mostly refits, L-BFGS for the others), but the K solvers
run in lockstep and one pass of a compiled kernel over ``X``
(:func:`skmoe._kernels.grouped_softmax_objective`) evaluates all their
points, as one pass gives all their Hessians: a fit makes as many passes
as its slowest problem needs, and each problem stops when its own gradient
is below its ``tol``.  Each objective is divided by its weight sum (a
per-sample scale, as in the softmax gate), so that ``tol`` means the same
for every expert.

Three uses:

* the softmax gate's M-step (:class:`SoftTargetProblem`): one multinomial
  logit on soft targets, the responsibilities;
* :class:`skmoe.experts.WeightedLogisticRegression` (its batch protocol):
  the penalty is on the coefficients of the features standardised with each
  expert's own weighted means and standard deviations;
* scikit-learn's :class:`~sklearn.linear_model.LogisticRegression` (L2 or no
  penalty): with ``mean=0, scale=1`` the penalty is on the raw coefficients,
  and :func:`logistic_regression_settings`, :func:`logistic_regression_start`
  and :func:`set_logistic_regression_attributes` translate between its
  parametrisation and the symmetric one solved here.
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import linalg

from ._kernels import class_pair_grams, grouped_softmax_objective, softmax_gate_objective
from ._stats import weighted_means_scales
from ._threads import kernel_threads, single_threaded_blas


def fit_multinomial_logits(
    X,
    codes,
    n_classes,
    weights,
    C,
    mean=None,
    scale=None,
    coef=None,
    intercept=None,
    tol=1e-6,
    max_iter=100,
    fit_intercept=True,
    precondition=True,
):
    """Solve K weighted multinomial logistic regressions, each pass over ``X`` serving all K.

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

    Each problem is solved by its own solver, on its objective divided by
    its weight sum (a per-sample scale, as in the softmax gate), until the
    largest entry of its gradient is below ``tol``.  The K solvers run in
    lockstep: each round, every unfinished problem proposes a point and one
    pass of the compiled kernel over ``X`` evaluates them all (a sparse
    ``X`` goes through NumPy/SciPy instead).  So a fit makes as many passes
    over ``X`` as its slowest problem needs evaluations, and each problem
    takes the iterations it would alone.  (One solver over the stacked
    parameters, the sum of the K objectives, shares one step length between
    the problems: with 8 experts L-BFGS took twice the iterations of the
    slowest problem alone, each evaluating all 8, and lost to 8 separate
    fits.)

    Problems of at most ``_NEWTON_MAX_PARAMETERS`` parameters ``C (d + 1)``
    (``_lockstep_newton``) take Newton's steps, with a backtracking line
    search (and damped where Newton's step is a poor one): one more pass
    over ``X`` per iteration gives all their Hessians
    (``_GroupedProblem.hessians``), and a warm start near the solution, as
    EM's refits have, converges in one or two iterations, where L-BFGS,
    which starts every fit without curvature, took seven (the means over
    the refits of a 3-expert, 3-class EM fit on 20,000 rows: 1.4 and 7.4;
    passes over ``X``, 351 plus 221 for the Hessians against 1,658).
    Larger problems take L-BFGS (``_lockstep_lbfgs``): their Hessian,
    ``(C (d + 1))^2 / 2`` sums over the rows, costs more passes than
    L-BFGS's extra iterations.

    Whatever the penalty, the solvers work on the coefficients of the
    features standardised with each problem's own weighted means and
    standard deviations (``precondition``), folded into the parameters so
    that ``X`` is never centred or copied: in raw units, a feature of mean 5
    and spread 0.1 made L-BFGS take 5 to 100 times more iterations, and stop
    less accurately, than in standardised units (Newton's method is blind
    to the units, but its Hessian is summed more accurately on centred
    features).

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
    tol : float or array-like of shape (K,), default=1e-6
        Gradient tolerance of each problem's solver: the largest entry of the
        gradient of its per-sample objective (as ``gtol`` of SciPy's L-BFGS-B).
    max_iter : int or array-like of shape (K,), default=100
        Maximum solver iterations of each problem.
    fit_intercept : bool or array-like of shape (K,), default=True
        Whether problem k has intercepts.  Where it has none they are held
        at 0 (their gradient is zeroed and Newton's steps leave them out, so
        the solvers never move them); that needs ``mean[k] = 0`` when
        ``precondition=False``.
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
    n_iter : ndarray of shape (K,)
        Solver iterations of each problem.

    Notes
    -----
    The softmax is unchanged when one vector is added to all C rows of
    ``[coef[k], intercept[k]]``.  A finite ``C`` picks the rows that sum to
    zero; the intercepts, unpenalised, are only identified up to that shift,
    and so are the coefficients when ``C=inf``.  The gradient in those
    directions is zero, so both solvers keep the start's sums over classes
    there: from a zero start all the sums are zero, as scikit-learn's are.

    A problem whose line search fails (its objective no longer decreases in
    floating point) stops where it is, as SciPy's L-BFGS-B does; no
    problem ends above its start's objective, so that EM's objective never
    goes down.
    """
    # The kernel threads over rows and makes its own small BLAS calls in each
    # thread; BLAS threads on top would only contend for the cores.
    with single_threaded_blas():
        problem = _GroupedProblem(
            X, codes, n_classes, weights, C, mean, scale, fit_intercept, precondition
        )
        return solve_grouped(problem, coef, intercept, tol, max_iter)


def solve_grouped(problem, coef, intercept, tol, max_iter, solver="auto"):
    """Solve a ``_GroupedProblem`` (or one whose row sums come from elsewhere) from a start.

    ``solver="auto"``: Newton's method for problems of at most
    ``_NEWTON_MAX_PARAMETERS`` parameters, L-BFGS above; ``"lbfgs"``:
    L-BFGS whatever the size. See :func:`fit_multinomial_logits`, whose
    ``coef``, ``intercept``, ``tol``, ``max_iter`` and return values these are.
    """
    n_problems = problem.shape[0]
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), (n_problems,))
    max_iter = np.broadcast_to(np.asarray(max_iter, dtype=np.intp), (n_problems,))
    theta0 = problem.pack(coef, intercept)
    if solver == "auto" and theta0.shape[1] <= _NEWTON_MAX_PARAMETERS:
        theta, n_iter = _lockstep_newton(problem, theta0, tol, max_iter)
    else:
        theta, n_iter = _lockstep_lbfgs(problem.objective, theta0, tol, max_iter)
    coef, intercept = problem.unpack(theta)
    return coef, intercept, n_iter


class _GroupedProblem:
    """The K objectives of :func:`fit_multinomial_logits` and their parameters' layout.

    Problem k's parameters are a vector of the solver's standardised
    coordinates: its (d, C) coefficients, then its (C,) intercepts.  With
    the solver's centres ``m`` and scales ``s``, ``std_coef = coef * s`` and
    ``std_intercept = intercept + m @ coef`` are the parameters of the model
    on the features ``(x - m) / s``.  The penalty is on
    ``coef * scale = std_coef * (scale / s)``.

    Only two methods read the rows, and they return sums over them
    (:meth:`_objective_sums`, :meth:`_gram_sums`); everything else works on
    those sums.  A problem whose rows are elsewhere overrides just those two
    (``skmoe._dask._PartitionedProblem``: the partitions of a Dask
    collection) and is solved by the same steps.
    """

    def __init__(self, X, codes, n_classes, weights, C, mean, scale, fit_intercept, precondition):
        self.X = X.tocsr() if sp.issparse(X) else np.ascontiguousarray(X, dtype=np.float64)
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
        if n_classes < 1 or (
            n_samples and not 0 <= self.codes.min() <= self.codes.max() < n_classes
        ):
            raise ValueError(f"codes must be class indices in [0, {n_classes}).")
        # The kernels leave out rows of weight <= 0; the sums count the others
        # (a product, not a sum over the short axis: 0.04 ms against 0.4 ms).
        totals = np.ones(n_samples) @ np.maximum(self.weights, 0.0)
        solver_mean = solver_scale = None
        if precondition and np.all(totals > 0):  # else _configure refuses the weights
            solver_mean, solver_scale = weighted_means_scales(self.X, self.weights)
        self._configure(
            n_classes,
            n_features,
            totals,
            C,
            mean,
            scale,
            fit_intercept,
            solver_mean,
            solver_scale,
        )
        self.n_threads = kernel_threads(self.weights.size * n_classes)
        self._subset = (np.arange(n_problems), self.weights)  # problems -> their weights

    def _configure(
        self,
        n_classes,
        n_features,
        totals,
        C,
        mean,
        scale,
        fit_intercept,
        solver_mean=None,
        solver_scale=None,
    ):
        """Set what does not depend on the rows beyond their weight sums ``totals``.

        ``solver_mean`` and ``solver_scale`` (K, d): the coordinates of the
        solvers when they differ from the penalty's ``mean`` and ``scale``
        (``precondition``).  A problem whose rows are elsewhere (partitions
        of a Dask collection) calls this, and overrides the row sums
        (:meth:`_objective_sums`, :meth:`_gram_sums`).
        """
        n_problems = totals.shape[0]
        self.totals = totals
        if n_problems < 1 or not np.all(self.totals > 0):
            raise ValueError("Every column of weights needs a positive sum.")
        self.shape = (n_problems, n_classes, n_features)
        self.C = np.broadcast_to(np.asarray(C, dtype=np.float64), (n_problems,))
        if not np.all(self.C > 0):
            raise ValueError(f"C must be positive, got {C}.")
        self.fit_intercept = np.broadcast_to(np.asarray(fit_intercept, dtype=bool), (n_problems,))
        mean = _per_problem(mean, 0.0, n_problems, n_features, "mean")
        scale = _per_problem(scale, 1.0, n_problems, n_features, "scale")
        if not np.all(scale > 0):
            raise ValueError("scale must be positive.")
        if solver_scale is not None:
            # Without intercepts the raw intercept is held at 0, which in
            # centred coordinates it would not be: those are only scaled.
            solver_mean[~self.fit_intercept] = 0.0
        else:
            solver_mean, solver_scale = mean, scale
            if np.any(mean[~self.fit_intercept] != 0):
                raise ValueError("A problem without intercepts needs mean = 0.")
        self.mean, self.scale = solver_mean, solver_scale
        # The penalty is sum(penalty_weights * std_coef ** 2) / 2, the inverse
        # C folded in (0 for no penalty).
        inverse_C = np.where(np.isfinite(self.C), 1.0 / self.C, 0.0)
        self.penalty_weights = ((scale / solver_scale) ** 2 * inverse_C[:, None])[:, :, None]
        self._bound_grams = None  # (K, d + 1, d + 1), computed when first needed

    def pack(self, coef, intercept):
        """(K, C, d) coefficients and (K, C) intercepts in input units -> (K, p) parameters."""
        n_problems, n_classes, n_features = self.shape
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
        std_coef = coef.transpose(0, 2, 1) * self.scale[:, :, None]  # (K, d, C)
        std_intercept = intercept + np.einsum("kj,kcj->kc", self.mean, coef)
        return np.concatenate([std_coef.reshape(n_problems, -1), std_intercept], axis=1)

    def _raw(self, theta, problems):
        """(k, p) parameters -> (k, d, C) standardised and raw coefficients, (k, C) intercepts."""
        _, n_classes, n_features = self.shape
        n_asked = theta.shape[0]
        std_coef = theta[:, : n_features * n_classes].reshape(n_asked, n_features, n_classes)
        coef = std_coef / self.scale[problems][:, :, None]
        intercept = theta[:, n_features * n_classes :] - np.einsum(
            "kj,kjc->kc", self.mean[problems], coef
        )
        return std_coef, coef, intercept

    def unpack(self, theta):
        """(K, p) parameters -> (K, C, d) coefficients and (K, C) intercepts in input units."""
        _, coef, intercept = self._raw(theta, slice(None))
        return np.ascontiguousarray(coef.transpose(0, 2, 1)), intercept

    def _weights_of(self, problems):
        """The C-ordered weight columns of ``problems``, kept while the same ones are asked."""
        if not np.array_equal(self._subset[0], problems):
            self._subset = (problems, np.ascontiguousarray(self.weights[:, problems]))
        return self._subset[1]

    def objective(self, theta, problems):
        """Per-sample penalised cross-entropies of ``problems`` at ``theta``, and gradients.

        ``theta`` holds one row of parameters per problem in ``problems``
        (an index array); one pass over ``X`` evaluates them all.  Returns
        the (k,) objectives and their (k, p) gradients.
        """
        _, n_classes, n_features = self.shape
        n_asked = len(problems)
        std_coef, coef, intercept = self._raw(theta, problems)
        # The kernel's layout: problem k's class c in column k * C + c.
        kernel_coef = np.ascontiguousarray(coef.transpose(1, 0, 2)).reshape(
            n_features, n_asked * n_classes
        )
        grad_coef, grad_intercept, losses = self._objective_sums(
            kernel_coef, intercept.ravel(), problems
        )
        grad_coef = grad_coef.reshape(n_features, n_asked, n_classes).transpose(1, 0, 2)
        grad_intercept = grad_intercept.reshape(n_asked, n_classes)
        grad_intercept[~self.fit_intercept[problems]] = 0.0  # held at zero
        # Chain rule through the standardisation, without forming (X - mean) / scale.
        grad_coef = grad_coef - self.mean[problems][:, :, None] * grad_intercept[:, None, :]
        grad_coef /= self.scale[problems][:, :, None]
        penalty_gradient = self.penalty_weights[problems] * std_coef
        losses += 0.5 * np.einsum("kjc,kjc->k", penalty_gradient, std_coef)
        grad_coef += penalty_gradient
        # Each problem on a per-sample scale.
        totals = self.totals[problems]
        gradient = np.concatenate([grad_coef.reshape(n_asked, -1), grad_intercept], axis=1)
        gradient /= totals[:, None]
        return losses / totals, gradient

    def _objective_sums(self, kernel_coef, intercept, problems):
        """The unscaled cross-entropies of ``problems`` and their gradients, summed over the rows.

        ``kernel_coef`` (d, k C) and ``intercept`` (k C,) are the raw
        parameters in the kernel's layout; see :func:`objective_sums`.
        """
        return objective_sums(
            self.X, self.codes, self._weights_of(problems), kernel_coef, intercept, self.n_threads
        )

    def hessians(self, theta, problems):
        """Hessians of the per-sample objectives of ``problems`` at ``theta``: (k, p, p).

        The cross-entropy's Hessian is ``sum_i w_i (diag(p_i) - p_i p_i^T) kron
        a_i a_i^T`` (``a_i`` the standardised features and a 1).  As
        ``diag(p) - p p^T = sum_{b<c} p_b p_c (e_b - e_c)(e_b - e_c)^T``
        (a graph Laplacian over the classes, since ``p`` sums to one), it is
        ``sum_{b<c} (e_b - e_c)(e_b - e_c)^T kron G_bc`` with the weighted
        Grams ``G_bc = sum_i w_i p_ib p_ic a_i a_i^T``: C (C - 1) / 2 Grams of
        size d + 1 per problem, every one a sum of positive terms, so that a
        class of tiny probability keeps an accurate (tiny) curvature instead
        of the rounding error of ``G_b - G_bb``.  One pass over ``X`` gives
        them all (:meth:`_grams`).  The penalty adds its weights on the
        coefficients' diagonal.

        Held intercepts (``fit_intercept=False``) are not special-cased: the
        rows and columns of the intercepts are the curvature a free intercept
        would have.
        """
        n_asked = len(problems)
        _, n_classes, n_features = self.shape
        width = n_features + 1
        grams = self._grams(problems, theta)  # (k, pairs, d + 1, d + 1)
        first, second = np.triu_indices(n_classes, 1)
        # Laplacian in the classes: -G_bc off the diagonal, sum_{c != b} G_bc on it.
        blocks = np.zeros((n_asked, n_classes, n_classes, width, width))
        blocks[:, first, second] = -grams
        blocks[:, second, first] = -grams
        blocks[:, np.arange(n_classes), np.arange(n_classes)] = -blocks.sum(axis=2)
        # Parameter (j, c) is at j * C + c (features, then the intercept, by class).
        hessian = blocks.transpose(0, 3, 1, 4, 2).reshape(n_asked, width * n_classes, -1)
        penalty = np.zeros((n_asked, width, n_classes))
        penalty[:, :n_features] = (
            self.penalty_weights[problems] / self.totals[problems][:, None, None]
        )
        diagonal = np.arange(hessian.shape[1])
        hessian[:, diagonal, diagonal] += penalty.reshape(n_asked, -1)
        return hessian

    def _grams(self, problems, theta=None):
        """Weighted Grams of the standardised ``a_i = [x_i, 1]``, per sample.

        At ``theta``, the (k, pairs, d + 1, d + 1) ``G_bc`` of :meth:`hessians`,
        weights ``w_i p_ib p_ic`` for the class pairs b < c; without, the
        (k, 1, d + 1, d + 1) Grams of the weights ``w_i`` alone.

        The sums over the rows (:meth:`_gram_sums`, see :func:`gram_sums`)
        are on coordinates shared by all the problems (the mean of their
        solver centres and scales); each Gram is then mapped to its
        problem's coordinates.
        """
        n_asked = len(problems)
        _, n_classes, n_features = self.shape
        width = n_features + 1
        layout = _GramLayout(
            n_classes=n_classes,
            centre=self.mean.mean(axis=0),
            spread=self.scale.mean(axis=0),
            shared=None,
        )
        if theta is not None:
            _, coef, intercept = self._raw(theta, problems)  # (k, d, C), (k, C)
            # The parameters on the shared coordinates a = [(x - centre) / spread, 1],
            # class by class: logit (c, k) in row c * k + k of the product.
            shared = np.empty((n_classes, n_asked, width))
            shared[:, :, :n_features] = (coef * layout.spread[:, None]).transpose(2, 0, 1)
            shared[:, :, n_features] = (intercept + np.einsum("j,kjc->kc", layout.centre, coef)).T
            layout.shared = shared.reshape(-1, width)
        n_pairs = 1 if theta is None else n_classes * (n_classes - 1) // 2
        sums = self._gram_sums(problems, layout)
        if sums.ndim == 2:  # the upper triangles
            upper = np.triu_indices(width)
            grams = np.empty((sums.shape[0], width, width))
            grams[:, upper[0], upper[1]] = sums
            grams[:, upper[1], upper[0]] = sums
        else:
            grams = sums
        grams = grams.reshape(n_pairs, n_asked, width, width).transpose(1, 0, 2, 3)
        # a_problem = to_problem @ a_shared, the map between the coordinates.
        mean, scale = self.mean[problems], self.scale[problems]
        to_problem = np.zeros((n_asked, 1, width, width))
        to_problem[:, 0, np.arange(n_features), np.arange(n_features)] = layout.spread / scale
        to_problem[:, 0, :n_features, n_features] = (layout.centre - mean) / scale
        to_problem[:, 0, n_features, n_features] = 1.0
        grams = to_problem @ grams @ to_problem.transpose(0, 1, 3, 2)
        # The products round the two triangles differently (by 7e-15 in 121
        # with NumPy 1.24): the Hessian is made exactly symmetric again.
        grams = 0.5 * (grams + grams.swapaxes(2, 3))
        return grams / self.totals[problems][:, None, None, None]

    def _gram_sums(self, problems, layout):
        """The sums of :meth:`_grams` over the rows; see :func:`gram_sums`."""
        return gram_sums(self.X, self._weights_of(problems), layout, self.n_threads)

    def newton_systems(self, theta, gradient, problems):
        """The Newton systems of ``problems`` at ``theta``, where their gradients are ``gradient``.

        Adding one vector to all the class rows of ``[coef; intercept]`` leaves
        the cross-entropy unchanged: its Hessian is singular.  Each row j of
        parameters is written as the differences ``D_jc`` to one class r, held
        at 0, plus a class mean ``mu_j``; the penalty ``pw_j |D_j + mu_j|^2 / 2``
        is minimised by ``mu_j = -mean_c(D_jc)`` (the rows that sum to zero),
        and eliminating ``mu`` leaves the system ``(H_rr + pw (I - J / C)) dD
        = -(g - mean_c g)`` on the classes other than r, with ``H_rr`` the
        Hessian without class r's rows and columns.  Class r is the one of
        largest curvature, the best determined: a class of tiny probability
        (one a problem's rows lack) then only has its own small diagonal
        block, instead of a small difference of large ones.  Held intercepts
        are left out.

        Returns one :class:`_NewtonSystem` per problem, which gives the step
        for any damping.
        """
        n_asked = len(problems)
        _, n_classes, n_features = self.shape
        width = n_features + 1
        hessian = self.hessians(theta, problems).reshape(
            n_asked, width, n_classes, width, n_classes
        )
        gradient = gradient.reshape(n_asked, width, n_classes)
        centred_gradient = gradient - gradient.mean(axis=2, keepdims=True)
        penalty = self.penalty_weights[problems][:, :, 0] / self.totals[problems][:, None]
        # The penalised rows' class means go to zero, the others' stay.
        theta = theta.reshape(n_asked, width, n_classes)
        shift = np.zeros((n_asked, width))
        shift[:, :n_features] = np.where(penalty > 0, theta[:, :n_features].mean(axis=2), 0.0)
        systems = []
        for row, k in enumerate(problems):
            pinned = np.argmax(np.diagonal(hessian[row, n_features, :, n_features]))
            classes = np.flatnonzero(np.arange(n_classes) != pinned)
            free = width if self.fit_intercept[k] else n_features
            matrix = hessian[row][:free][:, classes][:, :, :free][:, :, :, classes]
            coef_rows = np.arange(n_features)
            matrix[coef_rows, :, coef_rows] -= penalty[row, :, None, None] / n_classes
            size = free * len(classes)
            systems.append(
                _NewtonSystem(
                    self,
                    k,
                    matrix.reshape(size, size),
                    -centred_gradient[row, :free, classes].T.reshape(size),
                    classes,
                    free,
                    shift[row],
                )
            )
        return systems

    def bound_grams(self, problem):
        """Problem ``problem``'s (d + 1, d + 1) Gram ``sum_i w_i a_i a_i^T``, per sample.

        Computed for all the problems at the first call (one pass over ``X``),
        as it depends on the weights only.
        """
        if self._bound_grams is None:
            self._bound_grams = self._grams(np.arange(self.shape[0]))[:, 0]
        return self._bound_grams[problem]


class SoftTargetProblem(_GroupedProblem):
    """One multinomial logit on soft targets: the softmax gate's M-step.

    The loss ``sum_i w_i (t_i. logsumexp(z_i) - t_i . z_i)``, with ``t_i``
    the row's (K,) targets (responsibilities) and ``t_i.`` their sum, is that
    of the hard-target problem in its gradient's form, and its Hessian in
    ``z_i`` is ``w_i t_i. (diag(p_i) - p_i p_i^T)``: the Grams of
    :meth:`_GroupedProblem.hessians` with the row weights ``w_i t_i.``.  So
    the gate is solved by :func:`solve_grouped`, Newton's method for few
    parameters, as the experts are; only the objective's row sums differ
    (:func:`soft_target_sums`).

    ``mean`` and ``scale`` are the gate's standardisation (its penalty's and
    its solver's coordinates) and ``total`` the weight that makes the
    objective per-sample (the gate's ``sample_weight.sum()``).
    """

    def __init__(self, X, targets, sample_weight, C, mean, scale, total=None, n_threads=1):
        self.X = X.tocsr() if sp.issparse(X) else np.ascontiguousarray(X, dtype=np.float64)
        self.targets = np.ascontiguousarray(targets, dtype=np.float64)
        self.sample_weight = np.ascontiguousarray(sample_weight, dtype=np.float64)
        n_features = self.X.shape[1]
        row_sums = self.targets @ np.ones(self.targets.shape[1])  # not a sum over the short axis
        self.weights = (self.sample_weight * row_sums)[:, None]
        total = self.sample_weight.sum() if total is None else total
        self._configure(self.targets.shape[1], n_features, np.array([total]), C, mean, scale, True)
        self.n_threads = n_threads
        self._subset = (np.arange(1), self.weights)

    def _objective_sums(self, kernel_coef, intercept, problems):
        return soft_target_sums(
            self.X, self.targets, self.sample_weight, kernel_coef, intercept, self.n_threads
        )


class _NewtonSystem:
    """One problem's Newton system at a point (:meth:`_GroupedProblem.newton_systems`).

    :meth:`direction` solves it with a damping ``mu`` of Böhning's bound on
    the cross-entropy's Hessian, ``B = (I - J / C) / 2 kron sum_i w_i a_i
    a_i^T``, which holds everywhere: for ``mu > 1/2`` the full step
    ``-(H + mu B)^-1 g`` lowers the objective by at least ``(1 - 1 / (2 mu))``
    of its predicted decrease, however poor a model ``H`` is of the
    objective (from a start whose probabilities are all near 0 or 1, ``H``
    is near 0 where the objective is near linear, and Newton's step is
    huge).
    """

    def __init__(self, problem, index, matrix, rhs, classes, free, shift):
        self.problem, self.index = problem, index
        self.matrix, self.rhs, self.classes, self.free, self.shift = (
            matrix,
            rhs,
            classes,
            free,
            shift,
        )

    def direction(self, damping=0.0):
        """The (p,) step from the point: Newton's for ``damping=0``.

        The step also moves each penalised row's class mean to zero (the
        exact minimiser: the objective is quadratic in it) and keeps an
        unpenalised row's (the intercepts', every row's when ``C=inf``): the
        convention of :func:`fit_multinomial_logits`.  A numerically singular
        system (perfectly collinear features, or a class of vanishing
        probability when ``C=inf``) is solved by its pseudo-inverse.
        """
        _, n_classes, n_features = self.problem.shape
        matrix = self.matrix
        if damping > 0:
            gram = self.problem.bound_grams(self.index)[: self.free, : self.free]
            classes = np.eye(len(self.classes)) - 1.0 / n_classes
            matrix = matrix + damping * 0.5 * np.kron(gram, classes)
        differences = np.zeros((n_features + 1, n_classes))
        differences[: self.free, self.classes] = _solve_psd(matrix, self.rhs).reshape(
            self.free, len(self.classes)
        )
        direction = differences - differences.mean(axis=1, keepdims=True)
        direction -= self.shift[:, None]
        return direction.ravel()


# Newton's method up to this many parameters C (d + 1) per problem, L-BFGS
# beyond.  A warm refit takes Newton 2 passes and one Hessian, L-BFGS 5 to 15
# passes (measured, 20,000 rows, 3 problems: fewer at EM's loose early
# tolerances, more at its tight late ones); a Hessian costs 1 to 2 passes up
# to 30 parameters, 2.5 to 6 at 50 to 75, 6 to 10 at 100 to 150.  Whole EM
# fits took Newton 0.25 to 0.55 of L-BFGS's time up to 75 parameters with 3
# or 5 classes; a binary one at 72 was no faster.
_NEWTON_MAX_PARAMETERS = 80


def capped_iterations(own, cap, n_parameters):
    """The solver iterations of problems of ``n_parameters`` whose own limits are ``own``,
    under EM's early ``cap`` (None: none).

    The cap applies to Newton's method only: one Newton step is a partial
    refit (a generalised EM step), where one L-BFGS step, along the gradient,
    would be too little (measured on ``satellite.csv``, 222 parameters per
    expert: EM no longer converged in 100 iterations).
    """
    if cap is None or n_parameters > _NEWTON_MAX_PARAMETERS:
        return list(own)
    return [min(limit, cap) for limit in own]


# Line search settings of both solvers.
_ARMIJO = 1e-4  # sufficient decrease, as a fraction of the step's predicted decrease
_MAX_BACKTRACKS = 20  # trial steps per line search, as SciPy's maxls
_NEWTON_BACKTRACKS = 4  # trial steps of an undamped Newton step before damping it
_MEMORY = 10  # L-BFGS correction pairs kept, as SciPy's L-BFGS-B keeps by default
# Entries per array of the Hessian pass's blocks (2 MB): bounds its memory.
_GRAM_BLOCK_ENTRIES = 1 << 18


def _accepts(step, slope, value, gradient, trial_value, trial_gradient, direction):
    """Whether a line search takes the trial point ``theta + step * direction``.

    A point of sufficient decrease (Armijo), or, where the decrease is too
    small for floating point to resolve, one where the gradient is smaller
    and the objective's slope along the direction is at most half the
    start's, in size, if it has turned positive: along a convex (near
    quadratic) objective that point is lower than the start, before the
    minimum or less than halfway back up.  That is what lets tight
    tolerances be reached (a Newton step that lands on the minimum has a
    slope of rounding noise there, of either sign); requiring a smaller
    gradient stops the search where rounding leaves no progress to make
    (``tol=0``).
    """
    decrease = trial_value - value
    return decrease <= _ARMIJO * step * slope or (
        decrease <= 1e-12 * (1.0 + abs(value))
        and trial_gradient @ direction <= -0.5 * slope
        and np.abs(trial_gradient).max() < np.abs(gradient).max()
    )


def _shorter_step(step, slope, value, trial_value):
    """The next trial step after a rejected one: the minimiser of the quadratic
    through the value, the slope and the trial, kept within [0.1, 0.5] of ``step``."""
    excess = trial_value - value - step * slope
    shorter = -slope * step**2 / (2 * excess) if excess > 0 else 0.0
    return min(max(shorter, 0.1 * step), 0.5 * step)


def _lockstep_newton(problem, theta0, tol, max_iter):
    """Minimise K convex objectives, each by its own Newton's method, evaluating them together.

    ``problem.objective(theta, problems)`` returns the objectives and
    gradients of ``problems`` (an index array) at the rows of ``theta``, and
    ``problem.newton_systems(theta, gradient, problems)`` their Newton
    systems.  Each round, every unfinished problem proposes one point (its
    full step, or a shorter one of its line search) and one call evaluates
    them all; then one call gives the new systems of those that moved and
    have not converged.  Problem k stops when the largest entry of its
    gradient is at most ``tol[k]``, after ``max_iter[k]`` iterations, or
    when its line search fails.

    The line search backtracks from the unit step as :func:`_lockstep_lbfgs`
    does.  Where Newton's step is a poor one (the line search needs more
    than ``_NEWTON_BACKTRACKS`` trials), the problem's step is damped by
    Böhning's bound instead (:class:`_NewtonSystem`, damping 1: its unit
    step lowers the objective by at least half the predicted decrease), and
    the damping is divided by 10 at every unit step taken (after 1e-3, 0:
    Newton's steps again).  Only a failed line search of the damped step
    (the objective no longer decreases in floating point) stops the problem.

    Returns the (K, p) solutions and the (K,) iteration counts.
    """
    n_problems = theta0.shape[0]
    theta = theta0.copy()
    value, gradient = problem.objective(theta, np.arange(n_problems))
    start_value = value.copy()
    n_iter = np.zeros(n_problems, dtype=np.intp)
    systems = [None] * n_problems
    damping = np.zeros(n_problems)
    direction = np.zeros_like(theta)
    slope = np.zeros(n_problems)
    step = np.ones(n_problems)
    backtracks = np.zeros(n_problems, dtype=np.intp)
    active = (np.abs(gradient).max(axis=1, initial=0.0) > tol) & (max_iter > 0)
    moved = active.copy()  # the problems that need a new system at theta

    def new_direction(k):
        direction[k] = systems[k].direction(damping[k])
        slope[k] = gradient[k] @ direction[k]
        step[k] = 1.0
        backtracks[k] = 0
        if slope[k] >= 0:
            active[k] = False  # not a descent direction: the gradient is rounding noise

    while True:
        problems = np.flatnonzero(moved)
        if problems.size:
            for k, system in zip(
                problems,
                problem.newton_systems(theta[problems], gradient[problems], problems),
                strict=True,
            ):
                systems[k] = system
                new_direction(k)
            moved[:] = False
        if not active.any():
            break
        problems = np.flatnonzero(active)
        trial = theta[problems] + step[problems, None] * direction[problems]
        trial_value, trial_gradient = problem.objective(trial, problems)
        for row, k in enumerate(problems):
            if _accepts(
                step[k],
                slope[k],
                value[k],
                gradient[k],
                trial_value[row],
                trial_gradient[row],
                direction[k],
            ):
                theta[k], value[k], gradient[k] = trial[row], trial_value[row], trial_gradient[row]
                n_iter[k] += 1
                if step[k] == 1.0:
                    damping[k] = 0.1 * damping[k] if damping[k] >= 1e-2 else 0.0
                if np.abs(gradient[k]).max(initial=0.0) <= tol[k] or n_iter[k] >= max_iter[k]:
                    active[k] = False
                else:
                    moved[k] = True
            elif backtracks[k] < (_NEWTON_BACKTRACKS if damping[k] < 1 else _MAX_BACKTRACKS):
                backtracks[k] += 1
                step[k] = _shorter_step(step[k], slope[k], value[k], trial_value[row])
            elif damping[k] < 1:
                damping[k] = 1.0
                new_direction(k)
            else:
                active[k] = False
    # Accepting a flat step allows rounding-level increases: never end above the start.
    worse = value > start_value
    theta[worse] = theta0[worse]
    return theta, n_iter


def _lockstep_lbfgs(objective, theta0, tol, max_iter):
    """Minimise K convex objectives, each by its own L-BFGS, evaluating them together.

    ``objective(theta, problems)`` returns the objectives and gradients of
    ``problems`` (an index array) at the rows of ``theta``.  Each round,
    every unfinished problem proposes one point (a new iterate's first
    trial, or a shorter step of its line search) and one call evaluates
    them all.  Problem k stops when the largest entry of its gradient is at
    most ``tol[k]``, after ``max_iter[k]`` iterations, or when its line
    search fails twice in a row (the second time along the steepest descent
    direction, its memory dropped).

    The line search backtracks from the unit step (the first iteration's
    steepest descent step has length 1, as in L-BFGS-B), by safeguarded
    quadratic interpolation (:func:`_shorter_step`), to a point
    :func:`_accepts` takes.

    Returns the (K, p) solutions and the (K,) iteration counts.
    """
    n_problems = theta0.shape[0]
    theta = theta0.copy()
    value, gradient = objective(theta, np.arange(n_problems))
    start_value = value.copy()
    n_iter = np.zeros(n_problems, dtype=np.intp)
    memory = [[] for _ in range(n_problems)]  # (s, y, 1 / s.y), oldest first
    direction = -gradient
    step = 1.0 / np.maximum(np.linalg.norm(gradient, axis=1), np.finfo(float).tiny)
    slope = np.einsum("kp,kp->k", gradient, direction)
    backtracks = np.zeros(n_problems, dtype=np.intp)
    active = (np.abs(gradient).max(axis=1, initial=0.0) > tol) & (max_iter > 0)
    while active.any():
        problems = np.flatnonzero(active)
        trial = theta[problems] + step[problems, None] * direction[problems]
        trial_value, trial_gradient = objective(trial, problems)
        for row, k in enumerate(problems):
            if _accepts(
                step[k],
                slope[k],
                value[k],
                gradient[k],
                trial_value[row],
                trial_gradient[row],
                direction[k],
            ):
                change = trial[row] - theta[k]
                change_gradient = trial_gradient[row] - gradient[k]
                curvature = change @ change_gradient
                # Keep only pairs of clearly positive curvature (as L-BFGS-B).
                if curvature > np.finfo(float).eps * (change_gradient @ change_gradient):
                    memory[k].append((change, change_gradient, 1.0 / curvature))
                    if len(memory[k]) > _MEMORY:
                        memory[k].pop(0)
                theta[k], value[k], gradient[k] = trial[row], trial_value[row], trial_gradient[row]
                n_iter[k] += 1
                backtracks[k] = 0
                if np.abs(gradient[k]).max(initial=0.0) <= tol[k] or n_iter[k] >= max_iter[k]:
                    active[k] = False
                    continue
                direction[k] = -_two_loop(gradient[k], memory[k])
                step[k] = 1.0
                slope[k] = gradient[k] @ direction[k]
                if slope[k] < 0:
                    continue
            else:
                backtracks[k] += 1
                if backtracks[k] <= _MAX_BACKTRACKS:
                    step[k] = _shorter_step(step[k], slope[k], value[k], trial_value[row])
                    continue
                if not memory[k]:
                    active[k] = False  # even steepest descent no longer descends: done
                    continue
            # Not a descent direction, or its line search failed: start afresh
            # from steepest descent.
            memory[k].clear()
            direction[k] = -gradient[k]
            step[k] = 1.0 / max(np.linalg.norm(gradient[k]), np.finfo(float).tiny)
            slope[k] = gradient[k] @ direction[k]
            backtracks[k] = 0
    # Accepting a flat step allows rounding-level increases: never end above the start.
    worse = value > start_value
    theta[worse] = theta0[worse]
    return theta, n_iter


def _two_loop(gradient, memory):
    """The L-BFGS product ``H gradient``, H the inverse Hessian estimate from ``memory``."""
    q = gradient.copy()
    alphas = []
    for change, change_gradient, rho in reversed(memory):
        alpha = rho * (change @ q)
        q -= alpha * change_gradient
        alphas.append(alpha)
    if memory:
        change, change_gradient, _ = memory[-1]
        q *= (change @ change_gradient) / (change_gradient @ change_gradient)
    for (change, change_gradient, rho), alpha in zip(memory, reversed(alphas)):
        q += (alpha - rho * (change_gradient @ q)) * change
    return q


def _solve_psd(matrix, rhs):
    """``matrix^-1 rhs`` by Cholesky, or by the pseudo-inverse if ``matrix`` is singular."""
    try:
        return linalg.cho_solve(
            linalg.cho_factor(matrix, lower=True, check_finite=False), rhs, check_finite=False
        )
    except linalg.LinAlgError:
        values, vectors = np.linalg.eigh(matrix)
        kept = values > np.finfo(float).eps * matrix.shape[0] * max(values[-1], 0.0)
        return vectors[:, kept] @ ((vectors[:, kept].T @ rhs) / values[kept])


def _softmax_classes(logits):
    """Softmax over the first axis (the classes) of a (C, ...) array, in place.

    Class by class, on whole contiguous slabs: NumPy's reductions over a
    short axis cost 10 to 20 times more.
    """
    top = logits[0].copy()
    for values in logits[1:]:
        np.maximum(top, values, out=top)
    logits -= top
    np.exp(logits, out=logits)
    total = logits[0].copy()
    for values in logits[1:]:
        total += values
    logits /= total
    return logits


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


def soft_target_sums(X, targets, sample_weight, coef, intercept, n_threads=1):
    """The soft-target cross-entropy of one multinomial logit and its gradient, summed over rows.

    The row sums of :class:`SoftTargetProblem`: the compiled
    :func:`~skmoe._kernels.softmax_gate_objective` for a dense ``X``
    (C-ordered), NumPy and SciPy for a sparse one.  ``coef`` is (d, K) and
    ``intercept`` (K,), raw.  Returns the (d, K) gradient in ``coef``, the
    (K,) gradient in ``intercept`` and the loss as a (1,) array, as
    :func:`objective_sums` does for one problem.
    """
    grad_coef = np.empty(coef.shape)
    grad_intercept = np.empty(intercept.shape)
    loss_and_gradient = _sparse_soft_target_objective if sp.issparse(X) else softmax_gate_objective
    loss = loss_and_gradient(
        X, coef, intercept, targets, sample_weight, grad_coef, grad_intercept, n_threads
    )
    return grad_coef, grad_intercept, np.array([loss])


def _sparse_soft_target_objective(
    X, coef, intercept, targets, sample_weight, grad_coef_out, grad_intercept_out, n_threads=1
):
    """``softmax_gate_objective`` for a sparse ``X``, in NumPy and SciPy.

    With ``Z = X V + c`` (a dense (n, K) array): loss ``sum_i w_i (t_i. *
    logsumexp(Z_i.) - t_i . Z_i.)`` and gradient in ``Z_i.`` ``g_i = w_i
    (t_i. * softmax(Z_i.) - t_i.)``, where ``t_i.`` is the row sum of the
    targets (rows need not sum to one); then ``X.T G`` and the column sums of
    ``G``. ``n_threads`` is unused (the signature is the kernel's).
    """
    logits = np.asarray(X @ coef)
    logits += intercept
    target_sum = targets.sum(axis=1)
    # log-sum-exp shifted by the row maximum, so exp never overflows; by hand
    # rather than scipy.special.logsumexp, which took 3 times longer (200k x 8).
    row_max = logits.max(axis=1)
    shifted = logits - row_max[:, None]
    np.exp(shifted, out=shifted)
    total = shifted.sum(axis=1)
    log_norm = row_max + np.log(total)
    loss = sample_weight @ (target_sum * log_norm - np.einsum("ik,ik->i", targets, logits))
    # The gradient in Z, in place: softmax = shifted / total.
    shifted *= (target_sum / total)[:, None]
    shifted -= targets
    shifted *= sample_weight[:, None]
    grad_coef_out[...] = X.T @ shifted
    grad_intercept_out[...] = shifted.sum(axis=0)
    return float(loss)


def objective_sums(X, codes, weights, kernel_coef, intercept, n_threads=1):
    """K weighted cross-entropies and their gradients in the raw parameters, summed over rows.

    The row sums of ``_GroupedProblem.objective``: the compiled
    :func:`~skmoe._kernels.grouped_softmax_objective` for a dense ``X``
    (C-ordered), NumPy and SciPy for a sparse one.  Sums over disjoint sets
    of rows add up.

    Returns the (d, k C) gradient in ``kernel_coef``, the (k C,) gradient in
    ``intercept`` and the (k,) losses, for the k columns of ``weights``.
    """
    n_problems = weights.shape[1]
    n_features, n_columns = kernel_coef.shape
    grad_coef = np.empty((n_features, n_columns))
    grad_intercept = np.empty(n_columns)
    losses = np.empty(n_problems)
    loss_and_gradient = _sparse_grouped_objective if sp.issparse(X) else grouped_softmax_objective
    loss_and_gradient(
        X, kernel_coef, intercept, codes, weights, grad_coef, grad_intercept, losses, n_threads
    )
    return grad_coef, grad_intercept, losses


@dataclass
class _GramLayout:
    """What the row sums of ``_GroupedProblem._grams`` need besides the rows."""

    n_classes: int
    centre: np.ndarray  # (d,) the shared coordinates a = [(x - centre) / spread, 1]
    spread: np.ndarray  # (d,)
    shared: np.ndarray  # (C k, d + 1) the logits' parameters on them; None: weights alone


def gram_sums(X, weights, layout, n_threads=1):
    """The weighted Grams of the shared coordinates ``a_i``, summed over the rows of ``X``.

    With ``layout.shared`` the class-pair Grams ``sum_i w_ik p_ib p_ic a_i
    a_i^T`` (b < c; ``p`` the class probabilities of problem k), else
    ``sum_i w_ik a_i a_i^T``, for the k columns of ``weights``; rows of
    weight <= 0 are left out, as the objective's kernel leaves them out.
    Sums over disjoint sets of rows add up.

    A dense ``X`` goes through the compiled
    :func:`~skmoe._kernels.class_pair_grams` (C-ordered, ``n_threads``
    threads: 0.5 ms against 1.9 ms here for 20,000 rows and 3 problems of
    18 parameters on one thread); a sparse one through
    :func:`_gram_sums_by_blocks`.

    Returns the (pairs k, (d + 1)(d + 2) / 2) upper triangles or the
    (pairs k, d + 1, d + 1) Grams, pair-major: Gram (p, k) in row p k + k.
    """
    if sp.issparse(X):
        return _gram_sums_by_blocks(X, weights, layout)
    n_features = layout.centre.shape[0]
    width = n_features + 1
    n_asked = weights.shape[1]
    if layout.shared is None:
        logit_coef = np.empty((width, 0))
        n_pairs = 1
    else:
        logit_coef = np.ascontiguousarray(layout.shared.T)
        n_pairs = layout.n_classes * (layout.n_classes - 1) // 2
    sums = np.empty((n_pairs * n_asked, width * (width + 1) // 2))
    class_pair_grams(
        np.ascontiguousarray(X, dtype=np.float64),
        np.ascontiguousarray(weights, dtype=np.float64),
        np.ascontiguousarray(layout.centre, dtype=np.float64),
        np.ascontiguousarray(layout.spread, dtype=np.float64),
        logit_coef,
        sums,
        n_threads,
    )
    return sums


def _gram_sums_by_blocks(X, weights, layout):
    """:func:`gram_sums` in NumPy, for a sparse ``X`` (and as the kernel's reference).

    One pass over ``X`` in blocks of rows (a sparse block is made dense:
    Newton's method serves few parameters, so few features).  Each block is
    centred and scaled once, and its Grams are summed.  The arrays are
    transposed (rows last), so that every operation runs along contiguous
    rows.  The pass runs in the calling thread (BLAS held to one), so the
    result does not depend on the thread count.  (Blocks shared among
    Python threads were slower: 1.9 against 1.4 ms, 20,000 rows, 3 problems
    of 18 parameters, two busy cores; the compiled ``weighted_gram`` on
    the pair weights was no faster either.)

    Returns the (pairs k, (d + 1)(d + 2) / 2) upper triangles or the
    (pairs k, d + 1, d + 1) Grams, pair-major: Gram (p, k) in row p k + k.
    """
    n_asked = weights.shape[1]
    n_classes, centre, spread, shared = (
        layout.n_classes,
        layout.centre,
        layout.spread,
        layout.shared,
    )
    n_features = centre.shape[0]
    width = n_features + 1
    if shared is None:
        n_pairs = 1
    else:
        first, second = np.triu_indices(n_classes, 1)
        n_pairs = first.shape[0]
    n_grams = n_pairs * n_asked
    # Each block's Grams come from one product with the (d + 1)(d + 2) / 2
    # products a_ij a_il (j <= l), or from one weighted syrk per Gram: that
    # writes d + 1 entries per row and Gram instead of (d + 1)(d + 2) / 2 per
    # row, and is faster while there are fewer Grams than about (d + 1) / 3
    # (measured, 8192 rows: 4 ms against 19 ms for 3 Grams of 50 columns).
    by_products = 3 * n_grams >= width
    n_products = width * (width + 1) // 2
    n_samples = X.shape[0]
    rows = max(
        64,
        _GRAM_BLOCK_ENTRIES
        // max(n_products if by_products else width, n_asked * max(n_pairs, n_classes)),
    )
    sums = np.zeros((n_grams, n_products) if by_products else (n_grams, width, width))
    for start in range(0, n_samples, rows):
        block = X[start : start + rows]
        size = block.shape[0]
        features = np.empty((width, size))
        features[n_features] = 1.0
        np.subtract(
            (block.toarray() if sp.issparse(block) else block).T,
            centre[:, None],
            out=features[:n_features],
        )
        features[:n_features] /= spread[:, None]
        block_weights = np.maximum(weights[start : start + rows].T, 0.0)
        if shared is None:
            pair = block_weights
        else:
            proba = _softmax_classes((shared @ features).reshape(n_classes, n_asked, size))
            pair = np.empty((n_pairs, n_asked, size))
            for p in range(n_pairs):
                np.multiply(proba[first[p]], proba[second[p]], out=pair[p])
            pair *= block_weights
            pair = pair.reshape(n_grams, size)
        if by_products:
            products = np.empty((n_products, size))
            offset = 0
            for j in range(width):
                np.multiply(features[j], features[j:], out=products[offset : offset + width - j])
                offset += width - j
            sums += pair @ products.T
        else:
            scaled = np.empty((width, size))
            for g in range(n_grams):
                np.multiply(features, np.sqrt(pair[g]), out=scaled)
                sums[g] += scaled @ scaled.T  # NumPy calls syrk for A @ A.T
    return sums


def _sparse_grouped_objective(
    X, coef, intercept, codes, weights, grad_coef_out, grad_intercept_out, loss_out, n_threads=1
):
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
    if (
        penalty not in ("l2", None)
        or getattr(estimator, "solver", "lbfgs") not in _SOLVERS
        or getattr(estimator, "class_weight", None) is not None
        or getattr(estimator, "dual", False)
        or (n_classes > 2 and getattr(estimator, "multi_class", "auto") == "ovr")
    ):
        return None
    C = np.inf if penalty is None else float(estimator.C)
    return {
        "C": C / 2 if n_classes == 2 else C,
        "fit_intercept": bool(estimator.fit_intercept),
        "tol": float(estimator.tol),
        "max_iter": max(int(estimator.max_iter), 1),
    }


def logistic_regression_start(estimator, classes, n_features, force=False):
    """A warm start in the symmetric parametrisation, as ``LogisticRegression`` would take it.

    scikit-learn starts from the previous solution when ``warm_start=True``
    and a previous fit had a compatible shape; ``force`` starts from it
    whatever ``warm_start`` says (EM's refits: the penalised optimum is
    unique, so the start changes the path, not the solution). A binary ``(b, c)`` becomes
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
    force : bool, default=False
        Start from a compatible previous fit even without ``warm_start``.

    Returns
    -------
    start : tuple of two ndarrays, or None
        Shapes (n_classes, n_features) and (n_classes,).
        Starting coefficients and intercepts, or None (start from zero):
        no warm start asked, not fitted, or other classes or features.
    """
    coef = getattr(estimator, "coef_", None)
    if (
        not (force or getattr(estimator, "warm_start", False))
        or coef is None
        or not np.array_equal(getattr(estimator, "classes_", None), classes)
        or coef.shape[-1] != n_features
    ):
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
