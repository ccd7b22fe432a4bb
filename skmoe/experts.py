"""Experts built for EM: estimators whose weighted refit is cheap.

Any scikit-learn estimator with ``sample_weight`` can be an expert. EM refits
every expert at every iteration with new weights, though, so an expert whose
``fit`` makes several passes and copies of the data dominates the fit time of
the mixture. The estimators here are made for that loop.
"""

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from scipy.special import log_softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._glm import WeightedTweedieRegressor
from ._kernels import grouped_softmax
from ._least_squares import least_squares_from_moments, least_squares_moments
from ._multinomial import capped_iterations, fit_multinomial_logits
from ._stats import encode_classes, weighted_means_scales
from ._threads import kernel_threads, single_threaded_blas
from .gates._softmax import SoftmaxGate, _inner_tol

# WeightedTweedieRegressor lives with its solver in skmoe._glm.
__all__ = ["WeightedLeastSquares", "WeightedLogisticRegression", "WeightedTweedieRegressor"]


class WeightedLeastSquares(RegressorMixin, BaseEstimator):
    """Linear least squares with sample weights, by the normal equations in blocks.

    Minimises ``sum_i w_i (y_i - x_i . coef - intercept)^2 + alpha ||coef||^2``,
    the model of :class:`~sklearn.linear_model.Ridge` (``alpha=0``:
    :class:`~sklearn.linear_model.LinearRegression`). The weighted Gram matrix
    is accumulated by a compiled kernel over blocks of rows, so ``fit`` reads
    ``X`` twice (means, then Gram matrix) and never copies it, and rows of
    zero weight cost nothing.  In a mixture all the experts of this class are
    refitted together, with one pass over ``X`` per EM iteration: that makes
    it the fastest linear expert for EM, which refits every expert at every
    iteration.
    The normal equations square the condition number of ``X``: for badly
    conditioned features prefer ``LinearRegression`` or a small ``alpha``.

    Parameters
    ----------
    alpha : float, default=0.0
        L2 penalty on the coefficients (not on the intercept).
    fit_intercept : bool, default=True
        Whether to fit an intercept.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        Coefficients.
    intercept_ : float
        Intercept (0 when ``fit_intercept=False``).
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Feature names, when ``X`` has string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe.experts import WeightedLeastSquares
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> y = np.array([1.0, 3.0, 5.0, 100.0])
    >>> model = WeightedLeastSquares().fit(X, y, sample_weight=[1, 1, 1, 0])
    >>> model.coef_.round(6), round(model.intercept_, 6)
    (array([2.]), 1.0)
    """

    _parameter_constraints: dict = {
        "alpha": [Interval(Real, 0, None, closed="left")],
        "fit_intercept": ["boolean"],
    }

    def __init__(self, alpha=0.0, fit_intercept=True):
        self.alpha = alpha
        self.fit_intercept = fit_intercept

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the weighted least-squares coefficients.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; a zero weight is the same as leaving the row out.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X, y = validate_data(self, X, y, dtype=np.float64, order="C", y_numeric=True)
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        if sample_weight.sum() <= 0:
            raise ValueError("sample_weight sums to zero; give some samples positive weight.")
        y = np.ascontiguousarray(y, dtype=np.float64)
        self._fit_many([self], X, y, sample_weight[:, None])
        return self

    # The mixture's batch protocol (see skmoe._batch): EM refits all its
    # experts with one pass over X, and evaluates them with one GEMM.

    @staticmethod
    def _fit_many(experts, X, y, weights, tol=None, max_iter=None):
        """Fit ``experts[k]`` on ``(X, y)`` with sample weights ``weights[:, k]``, for all k.

        ``X`` (C-ordered float64) and ``y`` are validated; every column of
        ``weights`` has a positive sum. ``tol`` and ``max_iter`` are unused:
        the solve is direct.
        """
        coef, intercept, _ = fit_least_squares_many(
            X,
            y,
            weights,
            [expert.alpha for expert in experts],
            [expert.fit_intercept for expert in experts],
        )
        for k, expert in enumerate(experts):
            expert.coef_, expert.intercept_ = coef[k], float(intercept[k])
            expert.n_features_in_ = X.shape[1]
        return experts

    @staticmethod
    def _predict_many(experts, X):
        """``(n_samples, len(experts))`` predictions of fitted ``experts`` on validated ``X``."""
        coef = np.column_stack([expert.coef_ for expert in experts])
        outputs = X @ coef
        outputs += np.array([expert.intercept_ for expert in experts])
        return outputs

    def predict(self, X):
        """Predict with the linear model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            ``X @ coef_ + intercept_``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return X @ self.coef_ + self.intercept_


class WeightedLogisticRegression(ClassifierMixin, BaseEstimator):
    """Multinomial logistic regression with sample weights, on the softmax gate's kernel.

    Minimises ``sum_i w_i CE(y_i, softmax(x_i V + c)) + ||V_std||^2 / (2 C)``,
    the objective of :class:`~sklearn.linear_model.LogisticRegression`
    (multinomial, L2) except that the penalty is on the coefficients of the
    standardised features (weighted mean and standard deviation), as in the
    mixtures' gate: the penalty is blind to the features' units. The loss and
    gradient are the compiled kernel of :class:`~skmoe.gates.SoftmaxGate`
    (a classifier's one-hot targets are the gate's soft targets), solved by
    L-BFGS; ``X`` is never copied, and a sparse ``X`` is never densified.

    With ``warm_start=True`` each ``fit`` starts from the previous
    solution, which is what a mixture's EM needs: it refits each expert at
    every iteration on slowly changing weights. The default classifier
    experts of :class:`~skmoe.MixtureOfExpertsClassifier` are this class
    with ``warm_start=True``. Several experts of this class can be fitted
    together, each with its own weights, by one pass over ``X`` per step of
    their solvers (``_fit_many``, the batch protocol of
    :mod:`skmoe._experts`): Newton's method for few classes and features,
    which from EM's warm starts converges in one to three iterations.

    Parameters
    ----------
    C : float, default=1e4
        Inverse strength of the L2 penalty on the standardised coefficients
        (intercepts are not penalised); the default is weak, close to an
        unpenalised logit, yet keeps the coefficients finite on separable
        data. ``np.inf`` turns the penalty off.
    max_iter : int, default=100
        Maximum solver iterations per fit.
    tol : float, default=1e-6
        The solver stops when the largest gradient entry of the per-sample
        objective falls below ``tol``.
    warm_start : bool, default=False
        Start each fit from the previous solution when the classes and
        features are the same.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    coef_ : ndarray of shape (n_classes, n_features)
        Coefficients in the units of the inputs, one row per class (also for
        two classes: the softmax is symmetric; only differences between rows
        matter).
    intercept_ : ndarray of shape (n_classes,)
        Intercepts.
    n_iter_ : int
        Solver iterations of the last fit.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Feature names, when ``X`` has string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe.experts import WeightedLogisticRegression
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> model = WeightedLogisticRegression().fit(X, [0, 0, 1, 1])
    >>> model.predict([[0.5], [2.5]])
    array([0, 1])
    """

    _parameter_constraints: dict = {
        "C": [Interval(Real, 0, None, closed="right")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "warm_start": ["boolean"],
    }

    def __init__(self, C=1e4, max_iter=100, tol=1e-6, warm_start=False):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the coefficients.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Class labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        previous = (
            getattr(self, "classes_", None),
            getattr(self, "coef_", None),
            getattr(self, "intercept_", None),
        )
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=np.float64, order="C")
        check_classification_targets(y)
        classes, codes = encode_classes(y)
        if classes.shape[0] < 2:
            raise ValueError(
                f"y has 1 class ({classes[0]!r}); a classifier needs at least two classes."
            )
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        if sample_weight.sum() <= 0:
            raise ValueError("sample_weight sums to zero; give some samples positive weight.")
        targets = np.zeros((X.shape[0], classes.shape[0]))
        targets[np.arange(X.shape[0]), codes] = 1.0
        solver = SoftmaxGate(C=self.C, max_iter=self.max_iter, tol=self.tol)
        solver._initialize(X, classes.shape[0], sample_weight)
        old_classes, old_coef, old_intercept = previous
        if (
            self.warm_start
            and old_coef is not None
            and np.array_equal(old_classes, classes)
            and old_coef.shape == (classes.shape[0], X.shape[1])
        ):
            solver.coef_, solver.intercept_ = old_coef.T.copy(), old_intercept.copy()
        solver._m_step(X, targets, sample_weight)
        self.classes_ = classes
        self.coef_ = np.ascontiguousarray(solver.coef_.T)
        self.intercept_ = solver.intercept_
        self.n_iter_ = solver.n_iter_
        return self

    # The mixture's batch protocol (see skmoe._batch): EM refits all its
    # experts with one pass over X per solver step, and evaluates them with
    # one GEMM.

    @staticmethod
    def _fit_many(experts, X, y, weights, tol=None, max_iter=None):
        """Fit ``experts[k]`` on ``(X, y)`` with sample weights ``weights[:, k]``, for all k.

        Every expert gets the classes of the whole ``y``, ``np.unique(y)``,
        also those of which its rows of positive weight hold none (their
        probabilities then go to about ``tol``): the experts' ``classes_``
        and ``predict_proba`` columns are the same, the mixture's. (A
        ``fit`` on the expert's own rows would know only their classes.)

        The K problems are solved together by
        :func:`skmoe._multinomial.fit_multinomial_logits`, each penalised on
        the features standardised with its own weights, as ``fit`` does, by
        its own solver (Newton's method when ``n_classes * (n_features + 1)``
        is small, else L-BFGS) with its own ``C``, ``tol`` and ``max_iter``;
        each pass over ``X`` evaluates all the unfinished ones. An expert
        with ``warm_start=True`` starts from its previous solution when that
        has the same classes and features: in EM, one to three Newton
        iterations.

        Parameters
        ----------
        experts : list of WeightedLogisticRegression
            The K experts, fitted in place.
        X : {ndarray, sparse matrix} of shape (n_samples, n_features)
            Validated float64 inputs (C-ordered, or CSR).
        y : ndarray of shape (n_samples,)
            Class labels of all rows, at least two classes.
        weights : ndarray of shape (n_samples, K)
            Non-negative row weights; every column has a positive sum.
        tol : float, default=None
            EM's latest change in mean log-likelihood: each solver stops at a
            tenth of it (at most 1e-2, at least the expert's own ``tol``), as
            the softmax gate's M-step does, so that early EM iterations, which
            move the weights a lot, do not solve each refit to the end.
        max_iter : int, default=None
            EM's cap on each solver's iterations (one Newton step early in
            EM, where a partial refit is a generalised EM step); None: each
            expert's own ``max_iter``.

        Returns
        -------
        experts : list of WeightedLogisticRegression
            The same experts, fitted.
        """
        for expert in experts:
            expert._validate_params()
        classes, codes = encode_classes(y)
        if classes.shape[0] < 2:
            raise ValueError(
                f"y has 1 class ({classes[0]!r}); a classifier needs at least two classes."
            )
        weights = np.ascontiguousarray(weights, dtype=np.float64)
        if np.any(weights.sum(axis=0) <= 0):
            raise ValueError("sample_weight sums to zero; give some samples positive weight.")
        n_classes, n_features = classes.shape[0], X.shape[1]
        # Each expert's own standardisation, as its fit would compute it.
        with single_threaded_blas():
            mean, scale = weighted_means_scales(X, weights)
        coef, intercept = logistic_starts(experts, classes, n_features)
        coef, intercept, n_iter = fit_multinomial_logits(
            X,
            codes,
            n_classes,
            weights,
            [expert.C for expert in experts],
            mean,
            scale,
            coef,
            intercept,
            tol=logistic_tolerances(experts, tol),
            max_iter=capped_iterations(
                [expert.max_iter for expert in experts], max_iter, n_classes * (n_features + 1)
            ),
            precondition=False,
        )
        set_logistic_fits(experts, classes, coef, intercept, n_iter)
        return experts

    @staticmethod
    def _predict_proba_many(experts, X):
        """``(n_samples, K, n_classes)`` class probabilities of fitted ``experts``.

        ``X`` is validated (dense or sparse); the experts share ``classes_``
        (as :meth:`_fit_many` leaves them), the columns' order. See
        :func:`stacked_proba`.
        """
        classes = experts[0].classes_
        if any(not np.array_equal(expert.classes_, classes) for expert in experts):
            raise ValueError("The experts were fitted on different classes.")
        coef = np.stack([expert.coef_ for expert in experts])
        intercept = np.stack([expert.intercept_ for expert in experts])
        return stacked_proba(X, coef, intercept)

    def _scores(self, X):
        """``X coef_.T + intercept_``: log class probabilities up to a per-row constant."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float64, reset=False)
        return np.asarray(X @ self.coef_.T) + self.intercept_

    def decision_function(self, X):
        """Class scores, as :class:`~sklearn.linear_model.LogisticRegression` gives them.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            Two classes: the log-odds of ``classes_[1]``. More: the
            unnormalised log class probabilities.
        """
        scores = self._scores(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def predict_log_proba(self, X):
        """Log class probabilities.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        return log_softmax(self._scores(X), axis=1)

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``; rows sum to one.
        """
        return np.exp(self.predict_log_proba(X))

    def predict(self, X):
        """Most probable class.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predicted class labels.
        """
        best = np.argmax(self._scores(X), axis=1)
        return self.classes_[best]


def fit_least_squares_many(X, y, weights, alpha, fit_intercept):
    """K weighted (ridge) least-squares fits, one per column of ``weights``, in one pass.

    One pass over ``X`` gives the K weighted means, one compiled pass the K
    centred Gram matrices of ``[X, y]``; each fit is then a small solve
    (:mod:`skmoe._least_squares`, the same steps as on Dask and online).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Validated C-ordered float64 inputs.
    y : ndarray of shape (n_samples,)
        Targets.
    weights : ndarray of shape (n_samples, K)
        Non-negative row weights, each column with a positive sum.
    alpha : sequence of K floats
        L2 penalties on the coefficients (not the intercepts).
    fit_intercept : sequence of K bools
        Whether each fit has an intercept (else nothing is centred).

    Returns
    -------
    coef : ndarray of shape (K, n_features)
    intercept : ndarray of shape (K,)
    gram : ndarray of shape (K, n_features, n_features)
        The weighted cross products of the centred ``X``, without penalty
        (their eigenvalues are the squared singular values of the weighted
        centred ``X``).
    """
    # Each fit's moments about its own weighted mean (moved to the origin
    # for a fit without an intercept).
    with single_threaded_blas():  # the kernel calls BLAS from its own threads
        moments = least_squares_moments(
            X, y, weights, n_threads=kernel_threads(weights.size * X.shape[1])
        )
    coef, intercept, gram, _ = least_squares_from_moments(*moments, alpha, fit_intercept)
    return coef, intercept, gram


# The steps of ``WeightedLogisticRegression._fit_many`` around its solver, shared
# with the refit on a Dask collection (skmoe._dask), whose row sums come from
# the partitions.


def logistic_starts(experts, classes, n_features):
    """The (K, C, d) coefficients and (K, C) intercepts the refits start from.

    An expert with ``warm_start=True`` starts from its previous solution when
    that has the same classes and features; the others from zero.
    """
    coef = np.zeros((len(experts), classes.shape[0], n_features))
    intercept = np.zeros((len(experts), classes.shape[0]))
    for k, expert in enumerate(experts):
        old_coef = getattr(expert, "coef_", None)
        if (
            expert.warm_start
            and old_coef is not None
            and np.array_equal(getattr(expert, "classes_", None), classes)
            and old_coef.shape == coef.shape[1:]
        ):
            coef[k], intercept[k] = old_coef, expert.intercept_
    return coef, intercept


def logistic_tolerances(experts, tol):
    """Each expert's solver tolerance within EM, whose latest change is ``tol`` (or None)."""
    return [_inner_tol(expert.tol, tol) for expert in experts]


def set_logistic_fits(experts, classes, coef, intercept, n_iter):
    """Set the fitted attributes of ``experts`` from the solutions of their problems."""
    for k, expert in enumerate(experts):
        expert.classes_ = classes
        expert.coef_ = coef[k].copy()
        expert.intercept_ = intercept[k].copy()
        expert.n_iter_ = int(n_iter[k])
        expert.n_features_in_ = coef.shape[2]


def stacked_proba(X, coef, intercept, n_threads=None):
    """``(n_samples, K, n_classes)`` class probabilities of K multinomial logits.

    ``coef`` is (K, C, d) and ``intercept`` (K, C); EM calls this at every
    E-step. A dense ``X`` goes through the compiled
    :func:`~skmoe._kernels.grouped_softmax` on ``n_threads`` threads (None:
    as many as the work warrants): 0.37 ms on two threads and 0.69 ms on one,
    against 0.96 ms for NumPy at 20,000 x 5, 3 experts of 3 classes. A
    sparse one takes one product with all the coefficients, then the softmax
    class by class, on whole (n_samples, K) slices (2.5 times faster than
    ``scipy.special.softmax(axis=2)``, whose reductions over a short axis
    dominate).
    """
    n_experts, n_classes, n_features = coef.shape
    kernel_coef = coef.reshape(n_experts * n_classes, n_features).T
    if not sp.issparse(X):
        n_samples = X.shape[0]
        proba = np.empty((n_samples, n_experts * n_classes))
        if n_threads is None:
            n_threads = kernel_threads(proba.size * (n_features + 1))
        with single_threaded_blas():  # the kernel's own small GEMMs, in its threads
            grouped_softmax(
                np.ascontiguousarray(X, dtype=np.float64),
                np.ascontiguousarray(kernel_coef, dtype=np.float64),
                np.ascontiguousarray(intercept, dtype=np.float64).ravel(),
                n_classes,
                proba,
                n_threads,
            )
        return proba.reshape(n_samples, n_experts, n_classes)
    scores = np.asarray(X @ kernel_coef)
    scores += intercept.ravel()
    scores = scores.reshape(X.shape[0], n_experts, n_classes)
    top = scores[..., 0].copy()
    for c in range(1, n_classes):
        np.maximum(top, scores[..., c], out=top)
    scores -= top[..., None]
    proba = np.exp(scores, out=scores)
    total = proba[..., 0].copy()
    for c in range(1, n_classes):
        total += proba[..., c]
    proba /= total[..., None]
    return proba
