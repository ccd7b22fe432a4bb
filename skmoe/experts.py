"""Experts built for EM: estimators whose weighted refit is cheap.

Any scikit-learn estimator with ``sample_weight`` can be an expert. EM refits
every expert at every iteration with new weights, though, so an expert whose
``fit`` makes several passes and copies of the data dominates the fit time of
the mixture. The estimators here are made for that loop.
"""

import warnings
from numbers import Real

import numpy as np
from scipy import linalg
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._kernels import weighted_gram
from ._threads import kernel_threads, single_threaded_blas


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

    # The mixture's batch protocol (see skmoe._experts.batch_class): EM refits
    # all its experts with one pass over X, and evaluates them with one GEMM.

    @staticmethod
    def _fit_many(experts, X, y, weights):
        """Fit ``experts[k]`` on ``(X, y)`` with sample weights ``weights[:, k]``, for all k.

        ``X`` (C-ordered float64) and ``y`` are validated; every column of
        ``weights`` has a positive sum.  One pass over ``X`` gives the
        weighted means, one compiled pass the K Gram matrices.
        """
        n_features = X.shape[1]
        centre = np.zeros((len(experts), n_features + 1))
        with_intercept = np.array([expert.fit_intercept for expert in experts])
        if with_intercept.any():
            totals = weights.sum(axis=0)
            centre[:, :n_features] = weights.T @ X
            centre[:, n_features] = weights.T @ y
            centre /= totals[:, None]
            centre[~with_intercept] = 0.0
        gram = np.empty((len(experts), n_features + 1, n_features + 1))
        with single_threaded_blas():  # the kernel calls BLAS from its own threads
            weighted_gram(X, y, weights, centre, gram, kernel_threads(weights.size * n_features))
        for expert, system, mean in zip(experts, gram, centre):
            x_mean, y_mean = mean[:n_features], mean[n_features]
            normal = system[:n_features, :n_features]
            normal[np.diag_indices_from(normal)] += expert.alpha
            expert.coef_ = _solve_normal_equations(normal, system[:n_features, n_features])
            expert.intercept_ = float(y_mean - x_mean @ expert.coef_)
            expert.n_features_in_ = n_features
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


def _solve_normal_equations(gram, moment):
    """``gram^-1 moment`` by Cholesky; the minimum-norm solution if ``gram`` is singular.

    The minimum-norm solution is what ``LinearRegression`` returns for
    rank-deficient data (fewer rows than features, a constant column).
    """
    if gram.shape[0] == 0:
        return np.zeros(0)
    try:
        with warnings.catch_warnings():
            # Ill-conditioned (numerically singular) is handled like singular.
            warnings.simplefilter("error", linalg.LinAlgWarning)
            return linalg.solve(gram, moment, assume_a="pos", check_finite=False)
    except (linalg.LinAlgError, linalg.LinAlgWarning):
        return linalg.lstsq(gram, moment, check_finite=False)[0]
