"""The softmax (multinomial-logit) gate of Jacobs, Jordan, Nowlan & Hinton (1991)."""

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from .._kernels import softmax_gate_top_k
from .._multinomial import SoftTargetProblem, soft_target_sums, solve_grouped
from .._stats import weighted_mean_scale
from .._threads import kernel_threads, single_threaded_blas
from ._base import BaseGate


class SoftmaxGate(BaseGate):
    """Softmax gate: ``g(x) = softmax(x V + c)``, an L2-penalised multinomial logit.

    The M-step is a multinomial logistic regression on *soft* targets (the
    responsibilities), solved on a compiled loss-and-gradient kernel, so the
    data are never stacked once per expert: by Newton's method while the
    gate has at most 80 parameters ``(n_features + 1) * n_experts`` (one pass
    over the rows gives the Hessian), by L-BFGS beyond, as the classifier's
    experts are (:mod:`skmoe._multinomial`).  Between EM iterations the
    solver is warm-started, so one or two inner iterations suffice.  Early
    in EM each M-step takes a few L-BFGS steps only (see ``tol``).

    Features are standardised internally (weighted mean and standard
    deviation, without copying ``X``): the penalty then treats all features
    alike and the problem is well conditioned.  ``coef_`` and ``intercept_``
    are reported in the units of the input features.

    ``X`` may be a ``scipy.sparse`` matrix (e.g. one-hot encoded categories):
    the standardisation is then folded into the parameters, so ``X`` is never
    centred or made dense. Missing values (NaN) are not accepted.

    Parameters
    ----------
    C : float, default=1e4
        Inverse strength of the L2 penalty ``||V||^2 / (2 C)`` on the
        standardised coefficients (the intercepts are not penalised), added
        to the gate's summed loss as in
        :class:`~sklearn.linear_model.LogisticRegression`. So the penalty is
        blind to the features' units and weakens as rows are added; the
        default is weak, close to the unpenalised multinomial logit of
        classical mixtures of experts, yet keeps the coefficients finite when
        the experts' regions are separable. ``np.inf`` turns it off.
    max_iter : int, default=100
        Maximum solver iterations (Newton's or L-BFGS's) per M-step.
    tol : float, default=1e-6
        Gradient tolerance (largest entry of the per-sample objective's
        gradient) of a converged gate. Within EM each M-step is solved only
        as precisely as EM needs: to a tenth of EM's latest change in mean
        log-likelihood (at most 1e-2, at least ``tol``), warm-started
        from the previous step. Early iterations, which move the
        responsibilities a lot, take a few L-BFGS steps; the last ones solve
        the gate fully, so EM does not crawl on a half-solved gate.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features, n_experts)
        Gate coefficients in the units of the inputs.
    intercept_ : ndarray of shape (n_experts,)
        Gate intercepts.
    n_experts_ : int
        Number of experts the gate routes between.
    n_iter_ : int
        Solver iterations of the last M-step.

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe.gates import SoftmaxGate
    >>> X = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    >>> R = np.array([[1.0, 0.0], [0.9, 0.1], [0.1, 0.9], [0.0, 1.0]])
    >>> gate = SoftmaxGate().fit(X, R)
    >>> gate.predict_proba(X).round(2)[:, 0] > 0.5
    array([ True,  True, False, False])
    """

    _parameter_constraints: dict = {
        "C": [Interval(Real, 0, None, closed="right")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
    }
    _accepts_sparse = True

    def __init__(self, C=1e4, max_iter=100, tol=1e-6):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol

    def _initialize(self, X, n_experts, sample_weight):
        self._validate_params()
        self._mean, self._scale = weighted_mean_scale(X, sample_weight)
        self.n_experts_ = n_experts
        self.coef_ = np.zeros((X.shape[1], n_experts))
        self.intercept_ = np.zeros(n_experts)
        self.n_iter_ = 0

    def _pack(self):
        """Parameters in the standardised space, as one vector."""
        std_coef = self.coef_ * self._scale[:, None]
        std_intercept = self.intercept_ + self._mean @ self.coef_
        return np.concatenate([std_coef.ravel(), std_intercept])

    def _unpack(self, theta):
        """Standardised parameters -> (coef, intercept) in input units."""
        n_features = self._mean.shape[0]
        std_coef = theta[: n_features * self.n_experts_].reshape(n_features, self.n_experts_)
        coef = std_coef / self._scale[:, None]
        intercept = theta[n_features * self.n_experts_ :] - self._mean @ coef
        return std_coef, coef, intercept

    def _objective(self, theta, X, responsibilities, sample_weight, total_weight, n_threads):
        """Per-sample penalised soft-target cross-entropy and its gradient."""
        loss, grad = self._row_terms(theta, X, responsibilities, sample_weight, n_threads)
        penalty, penalty_grad = self._penalty(theta)
        return (loss + penalty) / total_weight, (grad + penalty_grad) / total_weight

    def _row_terms(self, theta, X, responsibilities, sample_weight, n_threads):
        """The soft-target cross-entropy and its gradient in ``theta``, summed over the rows.

        Without the penalty: sums over disjoint sets of rows add up, so the
        M-step on a Dask collection (:mod:`skmoe._dask`) and ``partial_fit``
        (:mod:`skmoe._online`) take them from the rows they hold.
        """
        _, coef, intercept = self._unpack(theta)
        grad_coef, grad_intercept, (loss,) = soft_target_sums(
            X, responsibilities, sample_weight, coef, intercept, n_threads
        )
        # Chain rule through the standardisation, without forming (X - mean) / scale.
        grad_coef -= np.outer(self._mean, grad_intercept)
        grad_coef /= self._scale[:, None]
        return loss, np.concatenate([grad_coef.ravel(), grad_intercept])

    def _penalty(self, theta):
        """The penalty ``||V_std||^2 / (2 C)`` (standardised coefficients) and its gradient."""
        n_coef = self._mean.shape[0] * self.n_experts_
        grad = np.zeros_like(theta)
        if not np.isfinite(self.C):
            return 0.0, grad
        std_coef = theta[:n_coef]
        grad[:n_coef] = std_coef / self.C
        return 0.5 * np.sum(std_coef**2) / self.C, grad

    def _n_parameters(self, n_redundant=0):
        """``(n_experts - 1) * (n_features - n_redundant + 1)``: one of the K columns is not free.

        The softmax is unchanged when the same vector is added to all K
        columns of ``[V; c]``, so only K - 1 of them are identified by the
        likelihood (the penalty, which picks one, is not counted). Without
        inputs these are the K - 1 free mixing proportions. ``n_redundant``
        input columns are sums of others and the intercept (each one-hot
        encoded category sums to one), so they add no free parameter.
        """
        check_is_fitted(self)
        return (self.n_experts_ - 1) * (self.coef_.shape[0] - n_redundant + 1)

    def _parameter_vector(self):
        return self._pack()  # standardised, so that no feature's unit dominates

    def _set_parameter_vector(self, vector):
        _, self.coef_, self.intercept_ = self._unpack(vector)

    def _m_step(self, X, responsibilities, sample_weight, tol=None, max_iter=None):
        if sp.issparse(X):
            X = X.tocsr()  # no copy when X is CSR already, as the estimators pass it
        else:
            X = np.ascontiguousarray(X)  # no copy from the estimators, which validate X in C order
        # The kernel threads over rows and makes its own small BLAS calls in
        # each thread; BLAS threads on top would only contend for the cores.
        with single_threaded_blas():
            problem = SoftTargetProblem(
                X,
                responsibilities,
                sample_weight,
                self.C,
                self._mean,
                self._scale,
                n_threads=kernel_threads(responsibilities.size),
            )
            self._solve(problem, tol, max_iter)
        return self

    def _solve(self, problem, tol, max_iter):
        """Solve the M-step's ``problem`` from the current parameters; install the solution.

        ``problem`` is a :class:`~skmoe._multinomial.SoftTargetProblem` (or
        one whose row sums are a Dask collection's partitions); ``tol`` and
        ``max_iter`` are what EM asks of this M-step (see ``tol``). Early in
        EM, where it caps the steps, the gate takes that many L-BFGS steps: a
        partial solve, so that the experts lead while the responsibilities
        move a lot (one Newton step is close to a full solve there; measured
        on 200 rows, 3 random classes, 2 experts: a mean log-likelihood of
        -1.0451 against -1.0380). Otherwise Newton's method while the gate is
        small, as :func:`~skmoe._multinomial.solve_grouped` chooses. The
        solver never ends above its start's objective, so EM's penalised
        log-likelihood never goes down.
        """
        coef, intercept, n_iter = solve_grouped(
            problem,
            self.coef_.T[None],
            self.intercept_[None],
            _inner_tol(self.tol, tol),
            min(self.max_iter, max_iter or self.max_iter),
            solver="lbfgs" if max_iter is not None else "auto",
        )
        self.coef_ = np.ascontiguousarray(coef[0].T)
        self.intercept_ = intercept[0]
        self.n_iter_ = int(n_iter[0])

    def _logits(self, X):
        check_is_fitted(self)
        logits = X @ self.coef_
        logits += self.intercept_
        return logits

    def _routes(self, X, top_k):
        # The top-k kernel reads dense rows; sparse X goes through the logits.
        if top_k is None or top_k >= self.n_experts_ or sp.issparse(X):
            return super()._routes(X, top_k)
        check_is_fitted(self)
        experts = np.empty((X.shape[0], top_k), dtype=np.intp)
        weights = np.empty((X.shape[0], top_k))
        # Straight from X: the (n, n_experts) logits are never stored. The
        # kernel's threads each make small BLAS calls: BLAS itself on one thread.
        with single_threaded_blas():
            softmax_gate_top_k(
                np.ascontiguousarray(X),
                self.coef_,
                self.intercept_,
                top_k,
                experts,
                weights,
                kernel_threads(X.shape[0] * self.n_experts_),
            )
        return experts, weights


# The loosest gradient tolerance EM asks of a gate's M-step.
_LOOSEST_TOL = 1e-2


def _inner_tol(own, asked):
    """The gradient tolerance of one M-step: a tenth of what EM asks, between ``own`` and 1e-2.

    A tenth, so that the gate's own imprecision never passes for EM's
    convergence: a gate solved only as far as EM's last change would stall
    EM at that change.
    """
    if asked is None:
        return own
    return max(own, min(0.1 * asked, _LOOSEST_TOL))
