"""Weighted Tweedie GLMs with a log link: K experts fitted by one batched Newton solver.

EM refits every expert at every iteration with new sample weights.  A
Poisson or gamma expert fitted by scikit-learn's ``PoissonRegressor`` reads
``X`` several times per Newton iteration, once per expert.  Here the K
problems of a mixture advance together: per Newton iteration one pass over
``X`` in blocks of rows gives all K experts' linear predictors at the trial
point, their objectives and gradients (``_evaluate``), and one compiled pass
(:func:`skmoe._kernels.weighted_gram`) their Hessians.  Experts that have
converged leave the batch.

Each expert k minimises the objective of scikit-learn's ``TweedieRegressor``
(``link="log"``) with ``sample_weight = weights[:, k]``::

    1 / sum_i(w_ik) * sum_i w_ik * half_deviance(y_i, mu_ik) + alpha_k / 2 * ||coef_k||^2

with ``mu_ik = exp(x_i . coef_k + intercept_k)`` and the intercept not penalised.
"""

import warnings
from numbers import Integral, Real

import numpy as np
from scipy import linalg
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._kernels import weighted_gram
from ._linalg import solve_normal_equations
from ._threads import kernel_threads, single_threaded_blas
from ._warnings import warn

# Exponents are capped here before exp: exp(500) ~ 1e217 leaves room for sums
# over any number of rows without overflow, and no fitted mean comes near it.
_MAX_EXPONENT = 500.0
# The starting mean is floored: a column of zero targets has its optimum at an
# intercept of -inf, which Newton approaches from log(_MEAN_FLOOR) instead.
_MEAN_FLOOR = 1e-10
_ARMIJO = 1e-4
_MAX_HALVINGS = 40
# Rows per block of _evaluate: this many entries of X and of its (n, K)
# arrays, so that a block's intermediate arrays stay in cache.
_BLOCK_ENTRIES = 1 << 16


def _check_targets(y, power):
    """Refuse targets outside the Tweedie family's support, naming the fix."""
    if power < 2:
        if np.any(y < 0):
            raise ValueError(
                f"y has negative values, but a Tweedie model with power={power} needs "
                "y >= 0 (counts, or non-negative amounts); remove or correct those rows."
            )
    elif np.any(y <= 0):
        raise ValueError(
            f"y has zero or negative values, but a Tweedie model with power={power} needs "
            "y > 0; use a power in [1, 2) (Poisson or compound Poisson-gamma) for targets "
            "with zeros, or remove those rows."
        )


def _log_targets(y, power):
    """``log y`` as an (n, 1) column (``-inf`` where y = 0); None for the Poisson case."""
    if power == 1:
        return None
    log_y = np.full(y.shape[0], -np.inf)
    np.log(y, out=log_y, where=y > 0)
    return log_y[:, None]


def _column_sums(values, ones=None):
    """Column sums of an (n, K) array by a matrix-vector product.

    Several times faster than ``values.sum(axis=0)``, which reduces along
    the strided axis.  ``ones``, at least n ones, saves allocating them: the
    solver's blocked loop sums a few arrays per block.
    """
    if ones is None:
        return np.ones(values.shape[0]) @ values
    return ones[: values.shape[0]] @ values


def _weighted_terms(eta, v, vy, log_y, power, ones):
    """The data part of the K objectives at the linear predictors ``eta``, and its derivatives.

    ``v`` is the (n, K) weights normalised to unit column sums, ``vy`` is
    ``v * y`` (Poisson only) and ``log_y`` the (n, 1) column of ``log y``
    (other powers); ``ones`` is for ``_column_sums``.  Returns ``(fit, scale,
    grad, hess)``:

    * ``fit`` (K,): ``sum_i v_ik loss(y_i, eta_ik)``, the loss being the half
      deviance up to terms constant in mu;
    * ``scale`` (K,): the sum of the absolute values of the terms of ``fit``,
      the size of its rounding error;
    * ``grad`` (n, K): ``v`` times the loss's first derivative in ``eta``;
    * ``hess``: ``v`` times its second derivative, (n, K), positive for
      ``1 <= power <= 2``.  For ``power > 2`` it can be negative (the loss is
      not convex in ``eta``) and is given as two non-negative parts, an
      (n, 2, K) array ``[v a, v b]`` with ``a = mu^(2 - p)``, ``b = y
      mu^(1 - p)``: the second derivative is ``(2 - p) a + (p - 1) b`` and
      its expectation (Fisher's) ``a``; see ``_hessians``.

    The weighted terms are formed directly: fewer passes over (n, K) arrays
    than forming the loss and weighting it afterwards.  Exponents are capped
    at ``_MAX_EXPONENT``, which changes nothing for any fitted mean.
    """
    if power == 1:
        # loss = mu - y eta; grad = mu - y; hess = mu.
        hess = np.minimum(eta, _MAX_EXPONENT)
        np.exp(hess, out=hess)
        hess *= v
        grad = hess - vy
        cross = vy * eta
        total = _column_sums(hess, ones)
        fit = total - _column_sums(cross, ones)
        scale = total + _column_sums(np.abs(cross, out=cross), ones)
        return fit, scale, grad, hess
    if power == 2:
        # loss = eta + y / mu; grad = 1 - y / mu; hess = y / mu, formed as
        # exp(log y - eta): it cannot overflow for any y.
        hess = log_y - eta
        np.minimum(hess, _MAX_EXPONENT, out=hess)
        np.exp(hess, out=hess)
        hess *= v
        grad = v - hess
        linear = v * eta
        total = _column_sums(hess, ones)
        fit = _column_sums(linear, ones) + total
        scale = _column_sums(np.abs(linear, out=linear), ones) + total
        return fit, scale, grad, hess
    # loss = a / (2 - p) - b / (1 - p) with a = mu^(2 - p) and b = y mu^(1 - p),
    # b formed as exp(log y + (1 - p) eta); grad = a - b.
    a = (2.0 - power) * eta
    np.minimum(a, _MAX_EXPONENT, out=a)
    np.exp(a, out=a)
    a *= v
    b = (1.0 - power) * eta
    b += log_y
    np.minimum(b, _MAX_EXPONENT, out=b)
    np.exp(b, out=b)
    b *= v
    sum_a, sum_b = _column_sums(a, ones), _column_sums(b, ones)
    fit = sum_a / (2.0 - power) - sum_b / (1.0 - power)
    scale = sum_a / abs(2.0 - power) + sum_b / abs(1.0 - power)
    grad = a - b
    if power > 2:
        return fit, scale, grad, np.stack([a, b], axis=1)
    a *= 2.0 - power
    b *= power - 1.0
    a += b
    return fit, scale, grad, a


def _objective(fit, coef, alpha):
    """(K,) objectives: the data part ``fit`` plus the penalty."""
    return fit + 0.5 * alpha * np.einsum("kj,kj->k", coef, coef)


def _evaluate(X, eta, direction, step, v, vy, log_y, power):
    """The experts' state at ``eta + step * (X coef_dir + intercept_dir)``, in blocks of rows.

    ``direction`` is (K, d + 1), ``[coef_dir, intercept_dir]`` per expert,
    ``step`` a scalar or (K,); ``eta`` None stands for zeros (then the point
    is ``X coef + intercept`` for ``direction = [coef, intercept]``).
    Returns ``(eta, fit, scale, gradient, hess)``: the new linear predictors
    (n, K), ``_weighted_terms``' ``fit``, ``scale`` and ``hess`` and the
    gradient (K, d + 1) of the data part of the objective.

    One pass over ``X`` in blocks of rows: a block's predictors, terms and
    gradient are computed while it is in cache, instead of a dozen passes over
    (n, K) arrays in memory (n = 200,000, d = 5, K = 3: about 8 ms instead of 11).
    """
    n, n_features = X.shape
    n_experts = direction.shape[0]
    step = np.broadcast_to(np.asarray(step, dtype=np.float64), (n_experts,))
    coef_step = np.ascontiguousarray((direction[:, :-1] * step[:, None]).T)  # (d, K)
    intercept_step = direction[:, -1] * step
    new_eta = np.empty((n, n_experts))
    hess = np.empty((n, n_experts) if power <= 2 else (n, 2, n_experts))
    fit, scale = np.zeros(n_experts), np.zeros(n_experts)
    gradient = np.zeros((n_experts, n_features + 1))
    block = max(256, _BLOCK_ENTRIES // (n_features + 3 * n_experts))
    ones = np.ones(min(block, n))
    for start in range(0, n, block):
        rows = slice(start, start + block)
        X_block = X[rows]
        eta_block = np.matmul(X_block, coef_step, out=new_eta[rows])
        eta_block += intercept_step
        if eta is not None:
            eta_block += eta[rows]
        block_fit, block_scale, grad, hess[rows] = _weighted_terms(
            eta_block,
            v[rows],
            None if vy is None else vy[rows],
            None if log_y is None else log_y[rows],
            power,
            ones,
        )
        fit += block_fit
        scale += block_scale
        gradient[:, :-1] += grad.T @ X_block
        gradient[:, -1] += _column_sums(grad, ones)
    return new_eta, fit, scale, gradient, hess


def _penalised(gradient, coef, alpha):
    """The objective's gradient from its data part's: the penalty's on the coefficients."""
    gradient = gradient.copy()
    gradient[:, :-1] += alpha[:, None] * coef
    return gradient


def _hessians(X, hess, alpha, power):
    """The K Hessians ``sum_i hess_ik [x_i, 1] [x_i, 1]^T`` plus the penalty, and a fallback.

    Returns ``(exact, fisher)``, arrays of shape (K, d + 1, d + 1); ``fisher``
    is None for ``power <= 2``, where ``exact`` is positive semi-definite.
    Above 2, ``exact`` may be indefinite away from the optimum; ``fisher``,
    the expected Hessian, never is.  Both come from the two non-negative
    row weights of ``_weighted_terms``, in the same pass.

    One compiled pass for all K (rows of zero weight cost nothing): the
    Gram kernel with targets of one and no centring puts the intercept's
    terms in the last row and column.  ``alpha_k`` is added on the
    coefficients' diagonal.
    """
    n, n_features = X.shape
    n_experts = hess.shape[-1]
    row_weights = hess.reshape(n, -1)  # for power > 2: [v a, v b], 2K columns
    gram = np.empty((row_weights.shape[1], n_features + 1, n_features + 1))
    with single_threaded_blas():  # the kernel calls BLAS from its own threads
        weighted_gram(
            X,
            np.ones(n),
            row_weights,
            np.zeros((row_weights.shape[1], n_features + 1)),
            gram,
            kernel_threads(row_weights.size * n_features),
        )
    diagonal = np.arange(n_features)
    gram[:, diagonal, diagonal] += np.tile(alpha, gram.shape[0] // n_experts)[:, None]
    if power <= 2:
        return gram, None
    fisher = gram[:n_experts]
    # (p - 1) (G_b + alpha) - (p - 2) (G_a + alpha) = the exact Hessian plus alpha.
    exact = (power - 1.0) * gram[n_experts:] - (power - 2.0) * fisher
    return exact, fisher


def _newton_direction(hessian, fisher, gradient):
    """Newton's step ``-hessian^-1 gradient``; with ``fisher``, Fisher's where Newton's fails.

    Above power 2 the exact Hessian is used where it is positive definite and
    well conditioned: near the optimum, where Newton's convergence is
    quadratic and Fisher scoring's only linear.  Elsewhere the Fisher step is
    a descent direction.
    """
    if fisher is None:
        return solve_normal_equations(hessian, -gradient)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", linalg.LinAlgWarning)
            return linalg.solve(hessian, -gradient, assume_a="pos", check_finite=False)
    except (linalg.LinAlgError, linalg.LinAlgWarning):
        return solve_normal_equations(fisher, -gradient)


def _normalised_weights(weights):
    return weights / _column_sums(weights)


def _starting_intercepts(y, weights):
    """The default start: each expert's log weighted mean of ``y``, floored."""
    return np.log(np.maximum((y @ weights) / _column_sums(weights), _MEAN_FLOOR))


def _at_point(X, y, weights, power, coef, intercept):
    v = _normalised_weights(weights)
    vy = v * y[:, None] if power == 1 else None
    return _evaluate(
        X, None, np.column_stack([coef, intercept]), 1.0, v, vy, _log_targets(y, power), power
    )


def _objective_and_gradient(X, y, weights, power, alpha, coef, intercept):
    """The K objectives (K,) and gradients (K, d + 1) the solver minimises, at one point.

    For tests: it is made of the solver's own helpers.
    """
    alpha = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (weights.shape[1],))
    _, fit, _, gradient, _ = _at_point(X, y, weights, power, coef, intercept)
    return _objective(fit, coef, alpha), _penalised(gradient, coef, alpha)


def _hessians_at(X, y, weights, power, alpha, coef, intercept):
    """``_hessians``' (exact, Fisher or None), (K, d + 1, d + 1) each, at one point (for tests)."""
    alpha = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (weights.shape[1],))
    hess = _at_point(X, y, weights, power, coef, intercept)[-1]
    return _hessians(X, hess, alpha, power)


def _per_expert(value, n_experts, dtype, name):
    array = np.asarray(value, dtype=dtype)
    if array.ndim == 0:
        return np.full(n_experts, array)
    if array.shape != (n_experts,):
        raise ValueError(f"{name} has shape {array.shape}, expected () or ({n_experts},).")
    return array.copy()


def fit_log_link_glms(
    X, y, weights, power, alpha, coef=None, intercept=None, tol=1e-8, max_iter=100
):
    """Fit K weighted Tweedie GLMs with a log link on the same ``(X, y)``, by batched Newton.

    Expert k minimises ``(1 / sum_i w_ik) sum_i w_ik half_deviance(y_i, mu_ik)
    + alpha_k / 2 ||coef_k||^2`` with ``mu_ik = exp(x_i . coef_k +
    intercept_k)``: the objective of scikit-learn's ``TweedieRegressor(power,
    link="log")`` (``PoissonRegressor`` for power 1, ``GammaRegressor`` for
    power 2) with ``sample_weight=weights[:, k]``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Validated, C-ordered float64 inputs.
    y : ndarray of shape (n_samples,)
        Targets: ``y >= 0`` for ``power < 2``, ``y > 0`` for ``power >= 2``.
    weights : ndarray of shape (n_samples, n_experts)
        C-ordered non-negative sample weights, one column per expert, each
        with a positive sum; 0 leaves the row out.
    power : float
        Tweedie power, at least 1: 1 Poisson, 2 gamma, in between compound
        Poisson-gamma.
    alpha : float or ndarray of shape (n_experts,)
        L2 penalties on the coefficients (not on the intercepts).
    coef : ndarray of shape (n_experts, n_features), default=None
        Starting coefficients (default zeros).
    intercept : ndarray of shape (n_experts,), default=None
        Starting intercepts (default the log of each column's weighted mean
        of ``y``, floored).
    tol : float or ndarray of shape (n_experts,), default=1e-8
        Expert k has converged when its gradient's largest entry is at most ``tol``.
    max_iter : int or ndarray of shape (n_experts,), default=100
        Maximum Newton iterations per expert.

    Returns
    -------
    coef : ndarray of shape (n_experts, n_features)
    intercept : ndarray of shape (n_experts,)
    n_iter : ndarray of shape (n_experts,)
        Newton iterations made by each expert.

    Notes
    -----
    Newton's step uses the exact Hessian, which is positive semi-definite
    for ``power <= 2``; above 2 it is used where it is positive definite,
    and the expected (Fisher) Hessian elsewhere.  Each expert backtracks
    along its own step (Armijo).  Singular Hessians (collinear features
    with ``alpha=0``) give the least-squares step.  A ``ConvergenceWarning``
    names the experts that reach ``max_iter`` or whose line search fails.
    """
    n_samples, n_features = X.shape
    if weights.ndim != 2 or weights.shape[0] != n_samples or y.shape != (n_samples,):
        raise ValueError(
            f"X has {n_samples} rows; y must have shape ({n_samples},) (got {y.shape}) and "
            f"weights shape ({n_samples}, n_experts) (got {weights.shape})."
        )
    if power < 1:
        raise ValueError(f"power must be at least 1, got {power}.")
    n_experts = weights.shape[1]
    _check_targets(y, power)
    power = float(power)
    alpha = _per_expert(alpha, n_experts, np.float64, "alpha")
    tol = _per_expert(tol, n_experts, np.float64, "tol")
    max_iter = _per_expert(max_iter, n_experts, np.intp, "max_iter")
    coef = np.zeros((n_experts, n_features)) if coef is None else np.array(coef, dtype=float)
    # BLAS is held to one thread throughout: its products here are tall and
    # thin ((n, d) by (d, K), or (n, K) by (n,)), where a thread team gains
    # little and, on a busy machine, loses much; its threads keep spinning
    # after each call, taking a core from the work that follows (n=200,000,
    # d=5, K=3 on 2 busy cores: 175 ms per fit with two BLAS threads, 55 ms
    # with one).  The Hessians' kernel has its own threads.
    with single_threaded_blas():
        totals = _column_sums(weights)
        if np.any(weights < 0) or not np.all(totals > 0):
            raise ValueError("weights must be non-negative with a positive sum in every column.")
        v = weights / totals  # each expert's objective averages over its own weights
        if intercept is None:
            intercept = _starting_intercepts(y, v)
        else:
            intercept = np.array(intercept, dtype=np.float64)
        n_iter, failed = _newton(X, y, v, power, alpha, coef, intercept, tol, max_iter)
    if failed:
        warn(
            "The Newton solver of the log-link GLMs did not converge for "
            + ", ".join(f"expert {k} ({reason})" for k, reason in sorted(failed))
            + f" (power={power}). Increase max_iter for experts that reached it; a failed "
            "line search points to features collinear on the expert's rows (increase "
            "alpha) or to a start far from the optimum.",
            ConvergenceWarning,
        )
    return coef, intercept, n_iter


def _drop_columns(keep, *arrays):
    """The (n, ..., K) arrays' columns ``keep``, C-contiguous (None stays None)."""
    return [None if array is None else np.ascontiguousarray(array[..., keep]) for array in arrays]


def _newton(X, y, v, power, alpha, coef, intercept, tol, max_iter):
    """Newton's iterations for all experts, updating ``coef`` and ``intercept`` in place.

    Returns ``n_iter`` and the ``(expert, reason)`` pairs of those that did
    not converge.  ``active`` lists the experts still iterating; the (n, K)
    arrays ``v``, ``vy``, ``eta`` and ``hess`` hold their columns only.
    """
    n_experts = v.shape[1]
    vy = v * y[:, None] if power == 1 else None
    log_y = _log_targets(y, power)
    n_iter = np.zeros(n_experts, dtype=np.intp)
    failed = []
    active = np.arange(n_experts)
    # The start is a step from eta = 0 along [coef, intercept].
    eta, fit, scale, data_gradient, hess = _evaluate(
        X, None, np.column_stack([coef, intercept]), 1.0, v, vy, log_y, power
    )
    objective = _objective(fit, coef, alpha)
    iteration = 0
    while True:
        gradient = _penalised(data_gradient, coef[active], alpha[active])
        n_iter[active] = iteration
        done = np.max(np.abs(gradient), axis=1) <= tol[active]
        out_of_iterations = ~done & (iteration >= max_iter[active])
        failed += [(k, "reached max_iter") for k in active[out_of_iterations]]
        keep = ~(done | out_of_iterations)
        if not keep.all():
            # Finished experts leave the batch, their columns dropped once:
            # later passes read only the others' weights.
            active, gradient, objective, scale = (
                array[keep] for array in (active, gradient, objective, scale)
            )
            v, vy, eta, hess = _drop_columns(keep, v, vy, eta, hess)
        if active.size == 0:
            break

        exact, fisher = _hessians(X, hess, alpha[active], power)
        direction = np.array(
            [
                _newton_direction(exact[j], None if fisher is None else fisher[j], gradient[j])
                for j in range(active.size)
            ]
        )
        slope = np.einsum("kj,kj->k", gradient, direction)  # < 0: a descent direction

        # Backtracking (Armijo) per expert, from the full Newton step.  Near the
        # optimum the predicted decrease falls below the rounding error of the
        # objective's sum, so increases of that size are accepted (the full
        # Newton step is right there).
        slack = 1e-12 * np.maximum(scale, np.abs(objective))
        step = np.ones(active.size)
        new_coef = coef[active] + direction[:, :-1]
        new_eta, new_fit, new_scale, new_data_gradient, new_hess = _evaluate(
            X, eta, direction, step, v, vy, log_y, power
        )
        new_objective = _objective(new_fit, new_coef, alpha[active])
        pending = np.arange(active.size)
        for halvings in range(_MAX_HALVINGS + 1):
            bound = objective[pending] + _ARMIJO * step[pending] * slope[pending] + slack[pending]
            pending = pending[new_objective[pending] > bound]
            if pending.size == 0 or halvings == _MAX_HALVINGS:
                break
            step[pending] *= 0.5
            new_coef[pending] = (
                coef[active[pending]] + step[pending, None] * direction[pending, :-1]
            )
            (
                new_eta[:, pending],
                trial_fit,
                new_scale[pending],
                new_data_gradient[pending],
                new_hess[..., pending],
            ) = _evaluate(
                X,
                eta[:, pending],
                direction[pending],
                step[pending],
                v[:, pending],
                None if vy is None else vy[:, pending],
                log_y,
                power,
            )
            new_objective[pending] = _objective(
                trial_fit, new_coef[pending], alpha[active[pending]]
            )
        if pending.size:
            # No decrease along a descent direction even for a tiny step:
            # rounding dominates.  These experts keep their point and stop.
            step[pending] = 0.0
            new_coef[pending] = coef[active[pending]]
            new_eta[:, pending], new_hess[..., pending] = eta[:, pending], hess[..., pending]
            new_objective[pending], new_scale[pending] = objective[pending], scale[pending]
        coef[active] = new_coef
        intercept[active] += step * direction[:, -1]
        eta, hess, objective, scale = new_eta, new_hess, new_objective, new_scale
        data_gradient = new_data_gradient
        iteration += 1
        if pending.size:
            # Their gradient is from the rejected trial; they stop here anyway.
            n_iter[active[pending]] = iteration
            failed += [(k, "line search failed") for k in active[pending]]
            keep = np.ones(active.size, dtype=bool)
            keep[pending] = False
            active, objective, scale, data_gradient = (
                array[keep] for array in (active, objective, scale, data_gradient)
            )
            v, vy, eta, hess = _drop_columns(keep, v, vy, eta, hess)
            if active.size == 0:
                break
    return n_iter, failed


class WeightedTweedieRegressor(RegressorMixin, BaseEstimator):
    """Tweedie GLM with a log link and sample weights, by Newton's method in batches.

    Minimises ``1 / sum(w) * sum_i w_i * half_deviance(y_i, mu_i) + alpha / 2
    * ||coef||^2`` with ``mu_i = exp(x_i . coef + intercept)``: the model of
    :class:`~sklearn.linear_model.TweedieRegressor` with ``link="log"``
    (:class:`~sklearn.linear_model.PoissonRegressor` for ``power=1``,
    :class:`~sklearn.linear_model.GammaRegressor` for ``power=2``).  In a
    mixture all the experts of this class are refitted together: each Newton
    iteration makes one compiled pass over ``X`` for the Hessians of all of
    them, and experts that have converged drop out of the batch.

    Parameters
    ----------
    power : float, default=1.0
        Tweedie power, at least 1: 1 Poisson, 2 gamma, 3 inverse Gaussian,
        in between (1, 2) compound Poisson-gamma (zeros and positive amounts).
        Targets must be non-negative for ``power < 2``, positive otherwise.
    alpha : float, default=1e-8
        L2 penalty on the coefficients (not on the intercept); the small
        default keeps Newton's Hessian invertible when a feature is constant
        over the rows of positive weight.
    max_iter : int, default=100
        Maximum Newton iterations.
    tol : float, default=1e-8
        Newton stops when the largest gradient entry of the objective is at
        most ``tol``.
    warm_start : bool, default=False
        Start each fit from the previous solution when the features are the same.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        Coefficients.
    intercept_ : float
        Intercept.
    n_iter_ : int
        Newton iterations of the last fit.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Feature names, when ``X`` has string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe.experts import WeightedTweedieRegressor
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> y = np.array([1.0, 2.0, 4.0, 100.0])
    >>> model = WeightedTweedieRegressor(power=1.0, alpha=0.0)
    >>> model = model.fit(X, y, sample_weight=[1, 1, 1, 0])
    >>> model.coef_.round(4), round(model.intercept_, 4)
    (array([0.6931]), 0.0)
    >>> model.predict([[4.0]]).round(4)
    array([16.])
    """

    _parameter_constraints: dict = {
        "power": [Interval(Real, 1, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "warm_start": ["boolean"],
    }

    def __init__(self, power=1.0, alpha=1e-8, max_iter=100, tol=1e-8, warm_start=False):
        self.power = power
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = True
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the coefficients.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Targets: non-negative for ``power < 2``, positive otherwise.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; a zero weight is the same as leaving the row out.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X, y = validate_data(self, X, y, dtype=np.float64, order="C", y_numeric=True)
        y = np.ascontiguousarray(y, dtype=np.float64)
        _check_targets(y, self.power)
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        if sample_weight.sum() <= 0:
            raise ValueError("sample_weight sums to zero; give some samples positive weight.")
        self._fit_many([self], X, y, np.ascontiguousarray(sample_weight[:, None]))
        return self

    # The mixture's batch protocol (see skmoe._batch): EM refits all its
    # experts together, and evaluates them with one GEMM.

    @staticmethod
    def _fit_many(experts, X, y, weights, tol=None, max_iter=None):
        """Fit ``experts[k]`` on ``(X, y)`` with sample weights ``weights[:, k]``, for all k.

        ``X`` (C-ordered float64) and ``y`` are validated; every column of
        ``weights`` has a positive sum.  The experts must share ``power``;
        ``alpha``, ``tol`` and ``max_iter`` may differ.  Experts with
        ``warm_start=True`` start from their previous solution.  ``tol``
        and ``max_iter`` (EM's precision) are unused: each expert solves to
        its own ``tol``, as Newton converges quadratically and stopping it
        early saves little.
        """
        powers = {float(expert.power) for expert in experts}
        if len(powers) > 1:
            raise ValueError(
                f"WeightedTweedieRegressor experts fitted together must share power; got "
                f"{sorted(powers)}. Use one power for all of them, or fit them separately."
            )
        n_features = X.shape[1]
        coef = np.zeros((len(experts), n_features))
        with single_threaded_blas():  # see fit_log_link_glms
            intercept = _starting_intercepts(y, weights)
        for k, expert in enumerate(experts):
            previous = getattr(expert, "coef_", None)
            if expert.warm_start and previous is not None and previous.shape == (n_features,):
                coef[k], intercept[k] = previous, expert.intercept_
        coef, intercept, n_iter = fit_log_link_glms(
            X,
            y,
            weights,
            powers.pop(),
            alpha=[expert.alpha for expert in experts],
            coef=coef,
            intercept=intercept,
            tol=[expert.tol for expert in experts],
            max_iter=[expert.max_iter for expert in experts],
        )
        for expert, c, b, it in zip(experts, coef, intercept, n_iter):
            expert.coef_ = c
            expert.intercept_ = float(b)
            expert.n_iter_ = int(it)
            expert.n_features_in_ = n_features
        return experts

    @staticmethod
    def _predict_many(experts, X):
        """``(n_samples, len(experts))`` means of fitted ``experts`` on validated ``X``."""
        eta = X @ np.column_stack([expert.coef_ for expert in experts])
        eta += np.array([expert.intercept_ for expert in experts])
        return np.exp(np.minimum(eta, _MAX_EXPONENT), out=eta)

    def predict(self, X):
        """Predict the mean.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            ``exp(X @ coef_ + intercept_)``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return np.exp(np.minimum(X @ self.coef_ + self.intercept_, _MAX_EXPONENT))
