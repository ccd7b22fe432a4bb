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

# Rows per block of the normal equations: a block of a 20-column array is 1.3 MB.
_BLOCK_ROWS = 1 << 13


class WeightedLeastSquares(RegressorMixin, BaseEstimator):
    """Linear least squares with sample weights, by the normal equations in blocks.

    Minimises ``sum_i w_i (y_i - x_i . coef - intercept)^2 + alpha ||coef||^2``,
    the model of :class:`~sklearn.linear_model.Ridge` (``alpha=0``:
    :class:`~sklearn.linear_model.LinearRegression`). The weighted Gram matrix
    is accumulated over blocks of rows, so ``fit`` reads ``X`` twice (means,
    then Gram matrix) and never copies it; that makes it the fastest linear
    expert for a mixture, whose EM refits every expert at every iteration.
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
    feature_names_in_ : ndarray of shape (n_features_in_,)
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
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        total = sample_weight.sum()
        if total <= 0:
            raise ValueError("sample_weight sums to zero; give some samples positive weight.")
        n_samples, n_features = X.shape
        if self.fit_intercept:
            x_mean = (sample_weight @ X) / total
            y_mean = float(sample_weight @ y) / total
        else:
            x_mean, y_mean = np.zeros(n_features), 0.0
        gram = np.zeros((n_features, n_features))
        moment = np.zeros(n_features)
        for start in range(0, n_samples, _BLOCK_ROWS):
            rows = slice(start, start + _BLOCK_ROWS)
            centred = X[rows] - x_mean
            weighted = centred * sample_weight[rows, None]
            gram += weighted.T @ centred
            moment += weighted.T @ (y[rows] - y_mean)
        gram[np.diag_indices_from(gram)] += self.alpha
        self.coef_ = _solve_normal_equations(gram, moment)
        self.intercept_ = y_mean - float(x_mean @ self.coef_)
        return self

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
