"""Batch refits: all experts of one class refitted together, in one pass over ``X``.

EM refits every expert at every iteration.  In general each expert is one
joblib task (see :mod:`skmoe._experts`).  Experts that share a class with a
*batch fitter* are refitted in one call instead, by a solver that reads
``X`` once for all K of them:

* ``fitter._fit_many(experts, X, y, weights, tol=None, max_iter=None)`` fits
  ``experts[k]`` with sample weights ``weights[:, k]`` (an (n, K) array in
  which a zero weight means the row is absent) and returns the fitted
  experts; ``tol`` is EM's latest change in mean log-likelihood, which an
  iterative solver may use to stop early (as the softmax gate does: see
  :func:`skmoe.gates._softmax._inner_tol`), None to solve to its own
  ``tol``; ``max_iter`` caps such a solver's iterations early in EM, where a
  partial refit is enough (a generalised EM step), None for its own;
* ``fitter._predict_many(experts, X)`` returns their (n, K) predictions
  (regressors), ``fitter._predict_proba_many(experts, X)`` their (n, K,
  n_classes) probabilities (classifiers, every expert on the same classes).

skmoe's own experts (:mod:`skmoe.experts`) implement these as static
methods.  scikit-learn's linear models get adapters here, so that the
experts users pass most often cost what skmoe's own do: each solves the
estimator's own objective with skmoe's batch solver and sets the attributes
its ``fit`` would set, so the fitted experts are still ``Ridge``,
``LogisticRegression``, ... An estimator whose settings make it another
problem (``positive=True``, an L1 penalty, ``class_weight``, a
``TweedieRegressor`` with an identity link, ...) keeps its own ``fit``.

The solvers may differ from scikit-learn's in the last digits and in the
number of iterations: they solve the same convex problems, warm-started
from the previous EM iteration, to a tight tolerance.
"""

import numpy as np
from sklearn.linear_model import (
    GammaRegressor,
    LinearRegression,
    LogisticRegression,
    PoissonRegressor,
    Ridge,
    TweedieRegressor,
)

from ._glm import WeightedTweedieRegressor, fit_log_link_glms
from ._multinomial import (
    capped_iterations,
    fit_multinomial_logits,
    logistic_regression_settings,
    logistic_regression_start,
    set_logistic_regression_attributes,
)
from ._stats import encode_classes
from .experts import fit_least_squares_many, stacked_proba
from .gates._softmax import _inner_tol

# The Newton tolerance of batch GLM refits (sklearn's own default, 1e-4, is
# for a single fit; EM's convergence test needs its refits precise).
_GLM_TOL = 1e-8


def set_least_squares_attributes(expert, coef, intercept, gram, n_rows):
    """Set what ``Ridge.fit`` or ``LinearRegression.fit`` would set, from a weighted solve.

    ``gram`` is the weighted cross products of the centred ``X`` (without
    penalty) over ``n_rows`` rows: ``LinearRegression``'s ``singular_`` are
    the singular values of the weighted centred ``X`` (``lstsq`` keeps
    ``min(n, d)`` of them) and ``rank_`` counts those above its cutoff.
    """
    expert.coef_, expert.intercept_ = coef, float(intercept)
    expert.n_features_in_ = coef.shape[0]
    if isinstance(expert, Ridge):
        expert.solver_, expert.n_iter_ = "cholesky", None
    elif isinstance(expert, LinearRegression):
        singular = np.sqrt(np.maximum(np.linalg.eigvalsh(gram)[::-1], 0.0))
        singular = singular[: min(n_rows, coef.shape[0])]
        # lstsq's relative cutoff: LinearRegression's tol (scikit-learn >= 1.7),
        # else scipy's default, max(n, d) * eps.
        cutoff = getattr(expert, "tol", max(n_rows, coef.shape[0]) * np.finfo(np.float64).eps)
        expert.singular_ = singular
        expert.rank_ = int(np.count_nonzero(singular > cutoff * (singular[:1].sum())))


def batch_class(experts):
    """The experts' batch fitter: their class's own, an adapter, or None.

    All experts must be of the same class, and an adapted scikit-learn
    class must have settings its adapter solves.
    """
    cls = type(experts[0])
    if not all(type(expert) is cls for expert in experts):
        return None
    if hasattr(cls, "_fit_many"):
        return cls
    adapter = _ADAPTERS.get(cls)
    if adapter is not None and all(adapter._accepts(expert) for expert in experts):
        return adapter
    return None


class _RidgeBatch:
    """``Ridge`` and ``LinearRegression``: weighted least squares by the normal equations."""

    __name__ = "Ridge"

    @staticmethod
    def _accepts(expert):
        return not expert.positive and np.ndim(getattr(expert, "alpha", 0.0)) == 0

    @staticmethod
    def _fit_many(experts, X, y, weights, tol=None, max_iter=None):
        coef, intercept, gram = fit_least_squares_many(
            X,
            y,
            weights,
            [getattr(expert, "alpha", 0.0) for expert in experts],
            [expert.fit_intercept for expert in experts],
        )
        for k, expert in enumerate(experts):
            set_least_squares_attributes(
                expert, coef[k], intercept[k], gram[k], np.count_nonzero(weights[:, k])
            )
        return experts

    @staticmethod
    def _predict_many(experts, X):
        outputs = X @ np.column_stack([expert.coef_ for expert in experts])
        outputs += np.array([expert.intercept_ for expert in experts])
        return outputs


class _LinearRegressionBatch(_RidgeBatch):
    __name__ = "LinearRegression"


class _GLMBatch:
    """``PoissonRegressor``, ``GammaRegressor``, ``TweedieRegressor`` with a log link."""

    __name__ = "GeneralizedLinearRegressor"

    @staticmethod
    def _power(expert):
        if isinstance(expert, PoissonRegressor):
            return 1.0
        if isinstance(expert, GammaRegressor):
            return 2.0
        return float(expert.power)

    @classmethod
    def _accepts(cls, expert):
        if not expert.fit_intercept:
            return False
        if isinstance(expert, TweedieRegressor):
            # "auto" is the log link for power >= 1 (identity for the normal, 0).
            return expert.power >= 1 and expert.link in ("auto", "log")
        return True

    @classmethod
    def _fit_many(cls, experts, X, y, weights, tol=None, max_iter=None):
        # Newton converges quadratically: stopping it early saves little.
        powers = {cls._power(expert) for expert in experts}
        if len(powers) > 1:
            return [
                expert.fit(X, y, sample_weight=weights[:, k]) for k, expert in enumerate(experts)
            ]
        n_features = X.shape[1]
        coef, intercept = np.zeros((len(experts), n_features)), None
        fitted = [getattr(expert, "coef_", None) for expert in experts]
        # A convex problem has one optimum: EM's previous refit is a good start.
        if all(c is not None and c.shape == (n_features,) for c in fitted):
            coef = np.array(fitted)
            intercept = np.array([expert.intercept_ for expert in experts])
        coef, intercept, n_iter = fit_log_link_glms(
            X,
            y,
            weights,
            powers.pop(),
            alpha=[expert.alpha for expert in experts],
            coef=coef,
            intercept=intercept,
            tol=_GLM_TOL,
            max_iter=[expert.max_iter for expert in experts],
        )
        for k, expert in enumerate(experts):
            expert.coef_, expert.intercept_ = coef[k], float(intercept[k])
            expert.n_iter_ = int(n_iter[k])
            expert.n_features_in_ = n_features
            expert._base_loss = expert._get_loss()  # what predict and score read
        return experts

    _predict_many = staticmethod(WeightedTweedieRegressor._predict_many)


class _LogisticRegressionBatch:
    """``LogisticRegression`` with an L2 penalty or none: one multinomial L-BFGS for all."""

    __name__ = "LogisticRegression"

    @staticmethod
    def _accepts(expert):
        # The settings do not depend on the number of classes beyond 2 vs more.
        return logistic_regression_settings(expert, 3) is not None

    @staticmethod
    def _fit_many(experts, X, y, weights, tol=None, max_iter=None):
        classes, codes = encode_classes(y)
        n_classes, n_features = classes.shape[0], X.shape[1]
        settings = [logistic_regression_settings(expert, n_classes) for expert in experts]
        coef = np.zeros((len(experts), n_classes, n_features))
        intercept = np.zeros((len(experts), n_classes))
        for k, expert in enumerate(experts):
            # LogisticRegression's optimum is unique (strictly convex with a
            # penalty): start from EM's previous refit whatever warm_start says.
            start = logistic_regression_start(expert, classes, n_features, force=True)
            if start is not None:
                coef[k], intercept[k] = start
        coef, intercept, n_iter = fit_multinomial_logits(
            X,
            codes.astype(np.intp),
            n_classes,
            weights,
            C=np.array([s["C"] for s in settings]),
            coef=coef,
            intercept=intercept,
            tol=[_inner_tol(s["tol"], tol) for s in settings],
            max_iter=capped_iterations(
                [s["max_iter"] for s in settings], max_iter, n_classes * (n_features + 1)
            ),
            fit_intercept=[s["fit_intercept"] for s in settings],
        )
        for k, expert in enumerate(experts):
            set_logistic_regression_attributes(expert, classes, coef[k], intercept[k], n_iter[k])
        return experts

    @staticmethod
    def _predict_proba_many(experts, X):
        coef = np.stack([expert.coef_ for expert in experts])
        intercept = np.stack([expert.intercept_ for expert in experts])
        if coef.shape[1] == 1:  # binary: the log-odds of classes_[1]
            coef = np.concatenate([np.zeros_like(coef), coef], axis=1)
            intercept = np.concatenate([np.zeros_like(intercept), intercept], axis=1)
        return stacked_proba(X, coef, intercept)


_ADAPTERS = {
    Ridge: _RidgeBatch,
    LinearRegression: _LinearRegressionBatch,
    PoissonRegressor: _GLMBatch,
    GammaRegressor: _GLMBatch,
    TweedieRegressor: _GLMBatch,
    LogisticRegression: _LogisticRegressionBatch,
}
