"""Experts: validating, instantiating and fitting the user's estimators.

EM refits every expert at every iteration.  In general each expert is one
joblib task (``fit_expert``, ``evaluate_expert``); experts with a batch
fitter are refitted together instead, in one pass over ``X`` (see
:mod:`skmoe._batch`).
"""

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import has_fit_parameter

from ._features import take_rows
from .exceptions import ExpertFitError


def sample_weight_param(estimator):
    """Name of the fit parameter that carries sample weights to ``estimator``.

    A :class:`~sklearn.pipeline.Pipeline` routes them to its final step as
    ``<step>__sample_weight`` (recursively for nested pipelines).  Returns
    ``None`` when the estimator takes no sample weights.
    """
    if isinstance(estimator, Pipeline):
        name, last = estimator.steps[-1]
        inner = sample_weight_param(last) if hasattr(last, "fit") else None
        return None if inner is None else f"{name}__{inner}"
    return "sample_weight" if has_fit_parameter(estimator, "sample_weight") else None


def check_experts(estimator, n_experts, default, required_method):
    """Validate the ``estimator`` parameter; return ``[(name, template), ...]``.

    ``estimator`` is None (use ``default``), one estimator (cloned once per
    expert) or a list of ``(name, estimator)`` pairs, one per expert.
    """
    if estimator is None:
        estimator = default
    if isinstance(estimator, list):
        if len(estimator) != n_experts:
            raise ValueError(
                f"estimator lists {len(estimator)} experts but n_experts={n_experts}; "
                f"set n_experts={len(estimator)} or give one (name, estimator) pair "
                "per expert."
            )
        named = list(estimator)
    else:
        named = [(f"expert{k}", estimator) for k in range(n_experts)]

    for name, est in named:
        kind = type(est).__name__
        if not hasattr(est, required_method):
            raise TypeError(
                f"Expert {name!r} ({kind}) has no {required_method} method, which "
                f"the mixture needs to score targets; use an estimator with {required_method}."
            )
        if sample_weight_param(est) is None:
            raise TypeError(
                f"Expert {name!r} ({kind}) does not accept sample_weight in fit. EM refits "
                "every expert with each sample weighted by its responsibility, so experts "
                "must support sample_weight (for a Pipeline: its final step)."
            )
    return named


def seed_random_states(estimator, random_state):
    """Set every nested ``random_state`` of ``estimator`` from ``random_state``.

    So that a fixed ``random_state`` of the mixture fixes every expert and the
    gate, whatever the order in which workers run them.
    """
    seeds = {
        key: int(random_state.randint(np.iinfo(np.int32).max))
        for key in sorted(estimator.get_params(deep=True))
        if key == "random_state" or key.endswith("__random_state")
    }
    return estimator.set_params(**seeds)


def make_experts(named, random_state):
    """Clone each template and seed its random states from ``random_state``."""
    return [seed_random_states(clone(template), random_state) for _, template in named]


# An expert that cannot fit on its own rows is refit on all rows, the others
# at this weight relative to the largest.
_NEGLIGIBLE_WEIGHT = 1e-12


def fit_expert(expert, X, y, sample_weight, train_rows, name, n_iter):
    """Refit one expert on ``train_rows`` (a boolean mask, or ``slice(None)`` for all).

    Rows are selected here, in the worker, so that the full ``X`` is what
    gets shipped: joblib memory-maps a large array instead of pickling a new
    subset per expert. A module-level function so that joblib can send it to
    worker processes.

    Some estimators cannot fit on a region's rows alone: HistGradientBoosting
    fails on a column that is missing throughout them, and ignores rows of
    zero weight. So an expert that raises on its rows is refit once on every
    row, the others at a negligible weight. If that fails too, the first
    error is re-raised as an :class:`~skmoe.exceptions.ExpertFitError` that
    names the expert and the EM iteration.
    """
    weight_param = sample_weight_param(expert)
    try:
        expert.fit(
            take_rows(X, train_rows), y[train_rows], **{weight_param: sample_weight[train_rows]}
        )
    except Exception as error:
        if not (isinstance(train_rows, slice) and train_rows == slice(None)):
            floor = _NEGLIGIBLE_WEIGHT * sample_weight.max()
            try:
                return expert.fit(X, y, **{weight_param: np.maximum(sample_weight, floor)})
            except Exception:
                pass  # report the error on the expert's own rows, the informative one
        raise ExpertFitError(
            f"Expert {name!r} ({type(expert).__name__}) failed to fit on its "
            f"{y[train_rows].shape[0]} training rows at EM iteration {n_iter}: "
            f"{type(error).__name__}: {error}"
        ) from error
    return expert


def evaluate_expert(expert, X, rows, output, name, n_iter):
    """``output(expert, X[rows])``: a fitted expert's outputs on some rows, in a worker.

    An error of the expert's own is re-raised as an
    :class:`~skmoe.exceptions.ExpertFitError` that names the expert.
    """
    try:
        return output(expert, take_rows(X, rows))
    except Exception as error:
        hint = ""
        if "unknown categor" in str(error):
            hint = (
                " An expert is fitted on the rows it is responsible for only, so an "
                "encoder inside it may meet categories it never saw: use "
                "OneHotEncoder(handle_unknown='ignore')."
            )
        raise ExpertFitError(
            f"Expert {name!r} ({type(expert).__name__}) failed to predict at EM iteration "
            f"{n_iter}: {type(error).__name__}: {error}.{hint}"
        ) from error


def is_linear_expert(expert):
    """Whether a fitted expert predicts from ``coef_`` and ``intercept_`` alone.

    The linear models of scikit-learn and of :mod:`skmoe.experts` (and their
    subclasses): what EM's accelerator extrapolates and BIC counts.
    """
    return (
        any(
            cls.__module__.startswith(("sklearn.linear_model", "skmoe.experts", "skmoe._glm"))
            for cls in type(expert).__mro__[:-1]
        )
        and isinstance(getattr(expert, "coef_", None), np.ndarray)
        and getattr(expert, "intercept_", None) is not None
    )


def linear_parameters(expert, x_scale, y_scale):
    """A fitted linear expert's parameters as one unit-free vector; None for other experts.

    EM's accelerator extrapolates along the path of the parameters, which
    is meaningful for a model that predicts from ``coef_`` and ``intercept_``
    alone: the linear models of scikit-learn and of :mod:`skmoe.experts`
    (and their subclasses). The coefficients are expressed per standard
    deviation of their feature (``x_scale``) and both in standard
    deviations of the target (``y_scale``), so that no unit dominates the
    extrapolation's step length.
    """
    if not is_linear_expert(expert) or expert.coef_.shape[-1] != x_scale.shape[0]:
        return None
    vector = np.concatenate([(expert.coef_ * x_scale).ravel(), np.ravel(expert.intercept_)])
    return vector / y_scale


def set_linear_parameters(expert, vector, x_scale, y_scale):
    """Set ``coef_`` and ``intercept_`` from a vector of ``linear_parameters``' layout."""
    vector = vector * y_scale
    n_coef = expert.coef_.size
    expert.coef_ = vector[:n_coef].reshape(expert.coef_.shape) / x_scale
    if np.ndim(expert.intercept_) == 0:
        expert.intercept_ = float(vector[n_coef])
    else:
        expert.intercept_ = vector[n_coef:].reshape(np.shape(expert.intercept_)).copy()
