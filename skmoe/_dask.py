"""Mixtures of experts on Dask collections: EM by map-reduce over the partitions.

``fit`` and the prediction methods of the estimators come here when ``X`` is
a Dask array or DataFrame (see ``_on_dask`` in :mod:`skmoe._base`).

Fitting (:func:`fit_dask`)
--------------------------
For a Gaussian mixture of linear least-squares experts under a softmax gate
everything EM needs from the rows adds up over partitions:

* the E-step is row by row;
* expert ``k``'s refit needs only the weighted cross products of ``[x - c,
  y - c_y]`` (c: the global weighted mean, computed once, so that no sum
  suffers cancellation), their first moments and masses: ``(d + 2)^2`` numbers
  per expert, from which the driver solves the normal equations and reads
  the residual sum of squares, hence the noise variance (``v^T G v`` with
  ``v = [-coef, 1]``);
* the gate's M-step takes the in-memory gate's steps (Newton's method, or
  L-BFGS for a large gate) on a loss, gradient and Hessian that are sums
  over the rows (:class:`skmoe._multinomial.SoftTargetProblem`, whose row
  sums ``_PartitionedSoftTargets`` takes from the partitions).

The classifier's logistic experts have no finite statistics, but their
refit's loss, gradient and Hessians are sums over the rows: each
evaluation of them in the in-memory refit's Newton steps
(:class:`skmoe._multinomial._GroupedProblem`, whose row sums
``_PartitionedProblem`` takes from the partitions) is one pass, and the
E-step's pass brings the moments that standardise each expert's features.

So one EM iteration is a *fused pass* (each partition: E-step with the
current parameters, its log-likelihood sum, the experts' moments and the
gate's loss and gradient at its current parameters), solves on the driver,
and one pass per further evaluation of the gate (a Hessian, a trial point). Each partition sends
back ``O(K d^2)`` numbers per pass. The responsibilities stay on the workers
(a persisted array of ``K`` floats per row, freed when the next E-step
replaces them) while two copies of them take at most half the workers'
memory; beyond that every pass recomputes them from ``X`` and the E-step's
parameters, and nothing per row outlives its task. ``X`` is read from its
source on every pass, so it need not fit in the cluster's memory (persist it
first if it does). Results are summed on the driver in partition order, so
a fit does not depend on where tasks ran.

The iteration itself is the in-memory engine's: its loop, stopping rule,
slow-tail detection, gate precision schedule and SQUAREM acceleration
(``BaseMixtureOfExperts._iterate`` and the methods it calls) run unchanged
on :class:`_DaskEM`, which supplies the E- and M-steps as passes over the
partitions. Started from the same responsibilities, a Dask fit takes the
steps the in-memory fit takes, up to the order of floating-point sums.

Prediction (:func:`map_partitions`)
-----------------------------------
Any fitted model predicts partition by partition with its in-memory methods;
the result is a Dask array with ``X``'s row chunks.
"""

import copy
import inspect
import uuid
import warnings
from dataclasses import dataclass
from functools import partial

import dask
import dask.array as da
import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ._base import (
    _COLLAPSE_MASS_IN_SAMPLES,
    _EARLY_EXPERT_STEPS,
    _EARLY_GATE_STEPS,
    BaseMixtureOfExperts,
    _EMState,
    _reached_tail,
)
from ._batch import set_least_squares_attributes
from ._classification import MixtureOfExpertsClassifier
from ._experts import check_experts, make_experts, seed_random_states
from ._features import resolve_columns
from ._kernels import responsibility_weights
from ._least_squares import least_squares_from_moments, least_squares_moments
from ._multinomial import (
    SoftTargetProblem,
    _GroupedProblem,
    capped_iterations,
    gram_sums,
    objective_sums,
    soft_target_sums,
    solve_grouped,
)
from ._routing import routed_logits
from ._threads import single_threaded_blas
from ._warnings import warn
from .exceptions import ExpertCollapseWarning
from .experts import (
    WeightedLeastSquares,
    WeightedLogisticRegression,
    logistic_starts,
    logistic_tolerances,
    set_logistic_fits,
    stacked_proba,
)
from .gates import SoftmaxGate, make_gate
from .likelihoods import GaussianLikelihood

# The default start fits the estimator in memory on a Bernoulli sample of
# about this many rows (all rows when there are fewer).
_SAMPLE_ROWS = 50_000

# The responsibilities stay on the workers while two copies of them take at
# most this fraction of the memory Dask computes in (see _keeps_responsibilities).
_KEEP_FRACTION = 0.5

# Experts whose refits are least squares: their sufficient statistics add up.
_LINEAR_EXPERTS = (WeightedLeastSquares, Ridge, LinearRegression)
# The classifier's experts whose refits are sums over rows: each Newton step of
# the multinomial logits is one pass for the objective and one for the Hessians.
_LOGISTIC_EXPERTS = (WeightedLogisticRegression,)


# ----------------------------------------------------------------------
# What can be fitted on a Dask collection
# ----------------------------------------------------------------------

_IN_MEMORY = "or fit in memory (on a sample of the rows if need be)"


def _check_supported(estimator):
    """Refuse the configurations whose EM does not reduce to sums over partitions.

    Returns the named experts.
    """
    classifier = isinstance(estimator, MixtureOfExpertsClassifier)
    gate = make_gate(estimator.gate)
    if type(gate) is not SoftmaxGate:
        if type(gate).__name__ == "TreeGate":
            why = "a tree's splits need all rows in one place"
        elif type(gate).__name__ == "HMEGate":
            # The HME gate is a tree of two-way softmax gates, each fitted by its
            # own solver: distributed, that is n_experts - 1 series of passes over
            # the data per M-step instead of one, for as many parameters.
            why = (
                "its M-step fits one logistic regression per node of the tree, each "
                "its own series of passes over the data"
            )
        else:
            why = "only the softmax gate's loss and gradient are known to add up over partitions"
        raise ValueError(
            f"gate={estimator.gate!r} cannot be fitted on a Dask collection: {why}; use "
            f"gate='softmax', {_IN_MEMORY}."
        )
    # Before the experts: the regressor's likelihood chooses the default ones.
    likelihood = None if classifier else estimator.likelihood
    if not (
        classifier or likelihood in ("gaussian", "auto") or type(likelihood) is GaussianLikelihood
    ):
        raise ValueError(
            f"likelihood={likelihood!r} cannot be fitted on a Dask collection: only the "
            "Gaussian noise variances follow from the experts' sufficient statistics; use "
            f"likelihood='gaussian', {_IN_MEMORY}."
        )
    named = check_experts(
        estimator.estimator,
        estimator.n_experts,
        estimator._default_expert(),
        estimator._expert_method,
    )
    for name, expert in named:
        if classifier:
            if type(expert) not in _LOGISTIC_EXPERTS:
                raise TypeError(
                    f"Expert {name!r} ({type(expert).__name__}) cannot be fitted on a Dask "
                    "collection: only WeightedLogisticRegression (the classifier's default "
                    "expert) has a refit whose loss, gradient and Hessian the partitions "
                    f"sum; use it, {_IN_MEMORY}."
                )
            continue
        detail = ""
        if type(expert) in (Ridge, LinearRegression) and expert.positive:
            detail = " with positive=True"
        elif np.ndim(getattr(expert, "alpha", 0.0)) != 0:
            detail = " with one alpha per target"
        if type(expert) not in _LINEAR_EXPERTS or detail:
            raise TypeError(
                f"Expert {name!r} ({type(expert).__name__}{detail}) cannot be fitted on a "
                "Dask collection: only linear least-squares experts (WeightedLeastSquares, "
                "Ridge, LinearRegression) have sufficient statistics that add up over "
                f"partitions; use one of them, {_IN_MEMORY}."
            )
    if estimator.early_stopping:
        raise ValueError(
            "early_stopping=True cannot be used on a Dask collection: it holds rows out in "
            "memory and scores them at every iteration; use early_stopping=False (max_iter "
            f"and tol stop EM), {_IN_MEMORY}."
        )
    if estimator.min_expert_share > 0:
        raise ValueError(
            f"min_expert_share={estimator.min_expert_share} cannot be used on a Dask "
            "collection: it re-seeds experts on the worst-explained rows, a ranking of all "
            f"rows in one place; use min_expert_share=0, {_IN_MEMORY}."
        )
    estimator._check_top_k(fitting=True)
    return named


# ----------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------


def _is_dask(value):
    return type(value).__module__.partition(".")[0] == "dask"


def _as_dask_array(X, name, lengths=None, labels=False):
    """``X`` as a Dask array of known chunk sizes; a DataFrame's numeric values.

    ``lengths`` are the row counts of a DataFrame's partitions, when known
    (else they are counted, as are an array's unknown chunk sizes: a pass).
    ``labels``: class labels, of any dtype NumPy sorts. Returns the array and
    the column names (None for an array).
    """
    columns = None
    if hasattr(X, "to_dask_array"):  # a Dask DataFrame or Series
        frame = X.ndim == 2  # else a Series
        dtypes = dict(X.dtypes.items()) if frame else {X.name: X.dtype}
        other = [
            column
            for column, dtype in dtypes.items()
            if dtype.kind not in "biuf" or hasattr(dtype, "categories")
        ]
        if other and not labels:
            raise ValueError(
                f"{name} has non-numeric columns {other}: a Dask DataFrame reaches skmoe as "
                "an array of numbers. Encode them first (one column of numbers per "
                "category), or leave them out."
            )
        if frame:
            columns = X.columns
        elif labels and not isinstance(X.dtype, np.dtype):  # pandas' string dtype, say
            X = X.astype(object)  # what to_dask_array would make of it, with a warning
        X = X.to_dask_array(lengths=True if lengths is None else list(lengths))
    if not isinstance(X, da.Array):
        raise TypeError(f"{name} must be a Dask array or DataFrame, got {type(X).__name__}.")
    if not isinstance(X._meta, np.ndarray):
        raise TypeError(
            f"{name}'s chunks are {type(X._meta).__module__}.{type(X._meta).__name__}, not "
            "NumPy arrays; skmoe takes dense NumPy chunks from Dask (convert them with "
            f"{name}.map_blocks(np.asarray))."
        )
    if X.dtype.kind not in "biuf" and not labels:
        raise ValueError(f"{name} has dtype {X.dtype}; skmoe takes numbers from Dask.")
    if any(np.isnan(size) for size in X.chunks[0]):
        X = X.compute_chunk_sizes()
    if X.ndim == 2 and X.numblocks[1] != 1:
        X = X.rechunk({1: -1})  # each task reads whole rows
    return X, columns


def _row_aligned(value, X, name, frame=None, labels=False):
    """A per-row companion of ``X`` (Dask or NumPy) as an (n, m) Dask array with X's row chunks.

    Two-dimensional, so that ``map_blocks`` pairs its blocks with ``X``'s.
    ``frame`` is the DataFrame ``X`` came from, if any: a Series or
    DataFrame with its divisions has its partitions' lengths, known already.
    ``labels``: see ``_as_dask_array``.
    """
    rows = X.chunks[0]
    if _is_dask(value):
        same = (
            frame is not None
            and getattr(value, "known_divisions", False)
            and frame.known_divisions
            and value.divisions == frame.divisions
        )
        value, _ = _as_dask_array(value, name, lengths=rows if same else None, labels=labels)
    else:
        value = da.from_array(np.asarray(value), chunks=rows[0] if rows else 1)
    if value.ndim == 1:
        value = value[:, None]
    if value.ndim != 2 or value.shape[0] != X.shape[0]:
        raise ValueError(
            f"{name} has shape {value.shape}, but X has {X.shape[0]} rows; give one value "
            "(or one row) per row of X."
        )
    return value.rechunk((rows, -1))


def _block_inputs(X, y=None, sample_weight=None):
    """A partition's blocks as C-ordered float64 arrays; sample weights default to 1."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    if y is not None:
        y = np.ascontiguousarray(y.reshape(-1), dtype=np.float64)
    if sample_weight is None:
        sample_weight = np.ones(X.shape[0])
    else:
        sample_weight = np.ascontiguousarray(sample_weight.reshape(-1), dtype=np.float64)
    return X, y, sample_weight


def _columns(X, columns):
    """``X[:, columns]``, C-ordered; ``columns=None``: all of them, no copy."""
    return X if columns is None else np.ascontiguousarray(X[:, columns])


# ----------------------------------------------------------------------
# Passes over the partitions
# ----------------------------------------------------------------------


def _boxed(func, *blocks, **kwargs):
    """``func``'s result on one partition, boxed in a (1, 1) object array."""
    box = np.empty((1, 1), dtype=object)
    box[0, 0] = func(*blocks, **kwargs)
    return box


def _per_block(func, *arrays, **kwargs):
    """``func(*blocks, **kwargs)`` on each partition: a (P, 1) Dask array of Python objects.

    The arrays have ``X``'s row chunks and one column chunk (None is passed
    as it is). Built with ``map_blocks`` so that a chain of blockwise
    operations that makes ``X`` (a generator, a file reader) fuses into the
    same task: a partition is read and reduced where it is made.
    """
    n_blocks = len(arrays[0].chunks[0])
    return da.map_blocks(
        partial(_boxed, func, **kwargs),
        *arrays,
        name=f"skmoe-{func.__name__.strip('_')}-{uuid.uuid4().hex}",
        chunks=((1,) * n_blocks, (1,)),
        dtype=object,
        meta=np.empty((0, 0), dtype=object),
    )


def _gather(blocks):
    """Compute a ``_per_block`` array: the list of its partitions' results, in order.

    Everything the driver receives from the partitions comes through here.
    """
    return list(blocks.compute().ravel())


def _sum(parts):
    """Add the partitions' dicts of arrays, key by key, in partition order."""
    total = dict(parts[0])
    for part in parts[1:]:
        for key, value in part.items():
            total[key] = total[key] + value
    return total


def _pass_over(data, resp, func, **kwargs):
    """``func`` on each partition with its rows and the E-step ``resp``'s responsibilities.

    ``func(X, y, sample_weight, source, *, model, **kwargs)`` reads them from
    ``source`` (see ``_responsibilities_of``); returns the partitions' results.
    """
    return _gather(
        _per_block(
            func,
            data.X,
            data.y,
            data.sample_weight,
            resp.source,
            model=resp.model,
            **kwargs,
        )
    )


def _summary_of(state):
    """The summary half of a persisted E-step block (the responsibilities stay)."""
    return state[0, 0][1]


# ----------------------------------------------------------------------
# What a partition computes
# ----------------------------------------------------------------------


def _moments_block(X, y, sample_weight, seed, *, rate, every_class=False):
    """Column moments, bad-value counts and a Bernoulli sample of one partition.

    Moments about the partition's own weighted mean, combined on the driver
    by Chan, Golub & LeVeque's pairwise update: no sum of squares cancels.
    ``every_class``: ``y`` holds class indices, and the sample keeps the
    partition's first row of each class too, so that a rare class is in it.
    """
    X, y, w = _block_inputs(X, y, sample_weight)
    Z = np.column_stack([X, y])
    finite = np.isfinite(Z)
    Z[~finite] = 0.0
    total = w.sum()
    mean = (w @ Z) / total if total > 0 else np.zeros(Z.shape[1])
    deviation = Z - mean
    deviation *= deviation
    moments = {
        "weight": total,
        "mean": mean,
        "squares": w @ deviation,
        "bad_X": np.count_nonzero(~finite[:, :-1]),
        "bad_y": np.count_nonzero(~finite[:, -1]),
        "bad_weight": np.count_nonzero(~(w >= 0) | ~np.isfinite(w)),
    }
    if rate is None:
        return moments, None
    keep = np.random.default_rng(int(seed[0, 0])).random(X.shape[0]) < rate
    if every_class:
        keep[np.unique(y, return_index=True)[1]] = True
    return moments, (X[keep], y[keep], w[keep])


def _combine_moments(parts):
    """Chan, Golub & LeVeque's pairwise update over the partitions' moments."""
    weight, mean, squares = 0.0, 0.0, 0.0
    for part in parts:
        if part["weight"] <= 0:
            continue
        total = weight + part["weight"]
        delta = part["mean"] - mean
        mean = mean + delta * (part["weight"] / total)
        squares = squares + part["squares"] + delta**2 * (weight * part["weight"] / total)
        weight = total
    return weight, mean, squares


def _refit_weights(resp, w, threshold, uniform=None):
    """Refit weights as ``_training_weights`` makes them, and each expert's count of rows.

    ``w_i r_ik`` where ``r_ik > threshold`` (a float, or one per expert),
    else 0; experts in ``uniform`` (a mask) weigh every row by its sample
    weight.
    """
    n_samples, n_experts = resp.shape
    if np.ndim(threshold) == 0:
        weights = np.empty((n_samples, n_experts))
        counts = np.empty(n_experts, dtype=np.intp)
        responsibility_weights(resp, w, threshold, weights, counts, 1)
    else:
        weights = np.where(resp > threshold, resp * w[:, None], 0.0)
        weights[:, uniform] = w[:, None]
        counts = np.count_nonzero(weights, axis=0)
    return weights, counts


def _expert_moments(X_expert, y, w, resp, centre, threshold, uniform=None, n_classes=0):
    """The experts' sufficient statistics on one partition, about the global ``centre``.

    Refit weights from ``_refit_weights``. Least-squares experts: the
    weighted cross products of ``[x, y]``. Logistic experts (``n_classes``
    classes; ``y`` holds class indices): the weighted first moments and
    squares of ``x``, from which the driver standardises each expert's
    features as its in-memory refit does, and each expert's count of rows
    of positive weight per class (an expert refit on one class cannot learn).
    """
    weights, counts = _refit_weights(resp, w, threshold, uniform)
    n_experts = weights.shape[1]
    if n_classes:
        X_centred = X_expert - centre[:-1]
        codes = y.astype(np.intp)
        present = weights > 0
        classes = np.stack(
            [np.bincount(codes[present[:, k]], minlength=n_classes) for k in range(n_experts)]
        )
        return {
            "mass": weights.sum(axis=0),
            "counts": counts,
            "first": weights.T @ X_centred,
            "squares": weights.T @ (X_centred * X_centred),
            "classes": classes,
        }
    # Centred here, on the block: the first moments then suffer no cancellation.
    mass, first, second, _ = least_squares_moments(
        X_expert - centre[:-1], y - centre[-1], weights, np.zeros_like(centre)
    )
    return {"mass": mass, "counts": counts, "first": first, "second": second}


def _responsibility_summary(X, y, w, resp, model):
    """What the M-step needs from a partition's responsibilities; they stay on the worker."""
    X_gate = _columns(X, model.gate_columns)
    summary = _expert_moments(
        _columns(X, model.expert_columns),
        y,
        w,
        resp,
        model.centre,
        model.threshold,
        n_classes=model.n_classes,
    )
    summary["share"] = w @ resp
    summary["positive"] = np.count_nonzero((resp > 0) & (w[:, None] > 0), axis=0)
    # The gate's row sums where its M-step starts, the gate as it is.
    gate = model.gate
    for key, value in _gate_sums(X_gate, resp, w, gate.coef_, gate.intercept_).items():
        summary[f"gate_{key}"] = value
    return summary


def _gate_sums(X_gate, resp, w, coef, intercept):
    """A partition's gate loss and gradient in its raw parameters (``soft_target_sums``)."""
    grad_coef, grad_intercept, losses = soft_target_sums(X_gate, resp, w, coef, intercept, 1)
    return {"grad_coef": grad_coef, "grad_intercept": grad_intercept, "losses": losses}


def _posterior(X, y, model):
    """Responsibilities and row log-likelihoods of the model's parameters on one partition."""
    logits = routed_logits(model.gate._logits(_columns(X, model.gate_columns)), model.top_k)
    X_expert = _columns(X, model.expert_columns)
    if model.n_classes:  # logistic experts' class probabilities; y holds class indices
        outputs = stacked_proba(X_expert, model.coef, model.intercept, n_threads=1)
        return model.likelihood.e_step(y.astype(np.intp), outputs, model.params, logits, 1)
    outputs = X_expert @ model.coef.T
    outputs += model.intercept
    return model.likelihood.e_step(y, outputs, model.params, logits, 1)


def _given(init):
    """A partition of ``init`` with its rows renormalised, and the rows that cannot be."""
    resp = np.ascontiguousarray(init, dtype=np.float64)
    totals = resp.sum(axis=1)
    bad = ~np.isfinite(totals) | (totals <= 0) | np.any(resp < 0, axis=1)
    resp = resp / np.where(bad, 1.0, totals)[:, None]
    resp[bad] = 1.0 / resp.shape[1]  # refused on the driver; valid meanwhile
    return resp, bad


def _e_step_block(X, y, sample_weight, init, *, model, keep):
    """E-step of one partition (at a start: ``init``), fused with all the next M-step reads.

    Returns the responsibilities if ``keep`` (they stay on the worker; else
    None, and later passes recompute them) and a summary of ``O(K d^2)``
    numbers: the log-likelihood sum, the experts' moments, the gate's loss
    and gradient at its current parameters.
    """
    X, y, w = _block_inputs(X, y, sample_weight)
    if init is None:
        resp, row_log_lik = _posterior(X, y, model)
        extra = {"log_likelihood": w @ row_log_lik}
    else:
        resp, bad = _given(init)
        extra = {"bad_rows": np.count_nonzero(bad)}
    summary = _responsibility_summary(X, y, w, resp, model)
    summary.update(extra)
    return (resp if keep else None), summary


def _responsibilities_of(X, y, source, model):
    """A partition's responsibilities: kept on its worker, the start's, or recomputed."""
    if source is None:
        return _posterior(X, y, model)[0]
    if source.dtype == object:
        return source[0, 0][0]
    return _given(source)[0]


def _refit_moments_block(X, y, sample_weight, source, *, model, threshold, uniform):
    """The experts' moments from a partition's responsibilities, at other thresholds."""
    X, y, w = _block_inputs(X, y, sample_weight)
    resp = _responsibilities_of(X, y, source, model)
    return _expert_moments(
        _columns(X, model.expert_columns),
        y,
        w,
        resp,
        model.centre,
        threshold,
        uniform,
        model.n_classes,
    )


def _logistic_block(X, y, sample_weight, source, *, model, weighting, columns, layout=None, **at):
    """The logistic experts' row sums on one partition: objective (``at``) or Grams (``layout``).

    ``weighting`` is the ``(threshold, uniform)`` of the refit weights and
    ``columns`` the experts asked; ``at`` holds the ``kernel_coef`` and
    ``intercept`` of ``objective_sums``.
    """
    X, y, w = _block_inputs(X, y, sample_weight)
    resp = _responsibilities_of(X, y, source, model)
    weights = np.ascontiguousarray(_refit_weights(resp, w, *weighting)[0][:, columns])
    X_expert = _columns(X, model.expert_columns)
    if layout is not None:
        return {"grams": gram_sums(X_expert, weights, layout)}
    grad_coef, grad_intercept, losses = objective_sums(
        X_expert, y.astype(np.intp), weights, at["kernel_coef"], at["intercept"], 1
    )
    return {"grad_coef": grad_coef, "grad_intercept": grad_intercept, "losses": losses}


def _codes_block(y, *, classes):
    """One partition's labels as class indices into ``classes`` (float64, as y's blocks are)."""
    return np.searchsorted(classes, y.reshape(-1)).astype(np.float64).reshape(-1, 1)


def _gate_block(X, y, sample_weight, source, *, model, layout=None, **at):
    """The gate's row sums on one partition: objective (``at``) or Gram (``layout``).

    ``at`` holds the raw ``coef`` and ``intercept`` of ``soft_target_sums``.
    """
    X, y, w = _block_inputs(X, y, sample_weight)
    resp = _responsibilities_of(X, y, source, model)
    X_gate = _columns(X, model.gate_columns)
    if layout is not None:
        return {"grams": gram_sums(X_gate, (w * resp.sum(axis=1))[:, None], layout)}
    return _gate_sums(X_gate, resp, w, at["coef"], at["intercept"])


# ----------------------------------------------------------------------
# The driver: EM's loop on passes over the partitions
# ----------------------------------------------------------------------


@dataclass
class _Model:
    """The parameters a pass ships to the partitions (a few KB)."""

    gate: SoftmaxGate  # the E-step's (its penalty is the driver's)
    gate_columns: np.ndarray  # None: every column
    expert_columns: np.ndarray
    centre: np.ndarray  # the experts' columns' and y's global weighted mean
    threshold: float  # min_responsibility
    top_k: int = None
    likelihood: GaussianLikelihood = None  # or CategoricalLikelihood
    params: dict = None
    coef: np.ndarray = None  # (K, n_expert_features); logistic experts (K, C, n_expert_features)
    intercept: np.ndarray = None  # (K,); logistic experts (K, C)
    n_classes: int = 0  # a classifier's; 0: a regressor (y holds targets, not class indices)


@dataclass
class _Responsibilities:
    """An E-step: its summary on the driver; the responsibilities where the partitions are.

    ``source`` is what a later pass reads them from: a (P, 1) persisted Dask
    array of ``(responsibilities, summary)`` per partition (kept on the
    workers), the start's ``init`` array, or None (recomputed from ``X`` with
    ``model``, the parameters of the E-step).
    """

    source: object
    model: _Model
    summary: dict  # the partitions' summaries, added up


@dataclass
class _DaskData:
    """The collection and its global statistics, computed once per fit."""

    X: object  # (n, d) Dask array, one column chunk
    y: object  # (n, 1) Dask array, X's row chunks
    sample_weight: object  # (n, 1) Dask array or None (all ones)
    n_samples: int
    total_weight: float
    gate_columns: np.ndarray
    expert_columns: np.ndarray
    gate_mean: np.ndarray  # the gate's standardisation, as SoftmaxGate._initialize computes it
    gate_scale: np.ndarray
    centre: np.ndarray
    units: tuple  # (x_scale, y_scale) of the experts' columns and y, for SQUAREM
    likelihood: GaussianLikelihood
    feature_names: np.ndarray  # of the experts' columns, or None
    keep: bool  # responsibilities kept on the workers (else recomputed by each pass)
    classes: np.ndarray = None  # a classifier's labels (y holds indices into them)
    validation: object = None  # no early stopping on Dask


def _all_or(columns, n_features):
    """None when ``columns`` is every column in order (no copy in the partitions)."""
    return None if np.array_equal(columns, np.arange(n_features)) else columns


def _install(expert, coef, intercept, gram, n_rows, feature_names):
    """Set the attributes a weighted fit sets, as ``skmoe._batch`` does for these classes."""
    set_least_squares_attributes(expert, coef, intercept, gram, n_rows)
    if feature_names is not None:
        expert.feature_names_in_ = feature_names


class _PartitionedProblem(_GroupedProblem):
    """The logistic experts' refit problems, whose rows are the partitions' (one pass per sum).

    Everything but the row sums is ``_GroupedProblem``'s (set by
    ``_configure``), so the solvers take the in-memory refit's steps.
    """

    def __init__(self, data, resp, weighting, columns):
        self.data, self.resp, self.weighting, self.columns = data, resp, weighting, columns

    def _pass(self, problems, **kwargs):
        return _sum(
            _pass_over(
                self.data,
                self.resp,
                _logistic_block,
                weighting=self.weighting,
                columns=self.columns[problems],
                **kwargs,
            )
        )

    def _objective_sums(self, kernel_coef, intercept, problems):
        sums = self._pass(problems, kernel_coef=kernel_coef, intercept=intercept)
        return sums["grad_coef"], sums["grad_intercept"], sums["losses"]

    def _gram_sums(self, problems, layout):
        return self._pass(problems, layout=layout)["grams"]


class _PartitionedSoftTargets(SoftTargetProblem):
    """The gate's M-step problem, whose rows are the partitions' (one pass per sum).

    Everything but the row sums is ``SoftTargetProblem``'s, so the gate
    takes the in-memory gate's steps. The solver evaluates its start first,
    and the E-step's pass brought the sums there.
    """

    def __init__(self, data, resp, gate):
        self.data, self.resp = data, resp
        self._start_sums = {
            key: resp.summary[f"gate_{key}"] for key in ("grad_coef", "grad_intercept", "losses")
        }
        self._configure(
            gate.n_experts_,
            gate._mean.shape[0],
            np.array([data.total_weight]),
            gate.C,
            gate._mean,
            gate._scale,
            True,
        )

    def _objective_sums(self, kernel_coef, intercept, problems):
        sums, self._start_sums = self._start_sums, None
        if sums is None:
            sums = _sum(
                _pass_over(
                    self.data, self.resp, _gate_block, coef=kernel_coef, intercept=intercept
                )
            )
        return sums["grad_coef"], sums["grad_intercept"], sums["losses"]

    def _gram_sums(self, problems, layout):
        return _sum(_pass_over(self.data, self.resp, _gate_block, layout=layout))["grams"]


class _DaskEM:
    """EM on a Dask collection: the engine's loop over passes on the partitions.

    The loop and its rules are ``BaseMixtureOfExperts``' own methods, bound
    here; this class gives them the steps they call (``_e_step``,
    ``_m_step``, ``_evaluate``, ``_revive_collapsed``, ``_units``) and the
    hyper-parameters they read, copied from the estimator.
    """

    _iterate = BaseMixtureOfExperts._iterate
    _converged = BaseMixtureOfExperts._converged
    _step = BaseMixtureOfExperts._step
    _em_step = BaseMixtureOfExperts._em_step
    _extrapolate = BaseMixtureOfExperts._extrapolate
    _print_progress = BaseMixtureOfExperts._print_progress

    def __init__(self, estimator):
        for name in (
            "n_experts",
            "max_iter",
            "tol",
            "accelerate",
            "verbose",
            "top_k",
            "min_responsibility",
        ):
            setattr(self, name, getattr(estimator, name))

    def _units(self, data):
        """The experts' columns' and y's spreads, from the fit's first pass."""
        return data.units

    def _model(self, data, gate, experts=None, params=None):
        """The parameters a pass ships: a copy of the gate (the M-step replaces its
        parameters), the experts as arrays."""
        model = _Model(
            gate=copy.copy(gate),
            gate_columns=data.gate_columns,
            expert_columns=data.expert_columns,
            centre=data.centre,
            threshold=self.min_responsibility,
            top_k=self.top_k,
            likelihood=data.likelihood,
            params=params,
            n_classes=0 if data.classes is None else data.classes.shape[0],
        )
        if experts is not None:
            model.coef = np.array([expert.coef_ for expert in experts], dtype=np.float64)
            model.intercept = np.array([expert.intercept_ for expert in experts], dtype=np.float64)
        return model

    def _e_step_pass(self, data, model, init=None):
        """The fused E-step pass; responsibilities kept on the workers if ``data.keep``."""
        blocks = _per_block(
            _e_step_block, data.X, data.y, data.sample_weight, init, model=model, keep=data.keep
        )
        if not data.keep:
            summary = _sum([summary for _, summary in _gather(blocks)])
            return _Responsibilities(source=init, model=model, summary=summary)
        blocks = blocks.persist()
        summary = _sum(_gather(_per_block(_summary_of, blocks)))
        return _Responsibilities(source=blocks, model=model, summary=summary)

    def _evaluate(self, data, state):
        """Nothing to do ahead of the E-step: its fused pass evaluates the parameters."""

    def _e_step(self, data, state, record=True):
        """Responsibilities, their summary and the log-likelihood, by the fused pass."""
        model = self._model(data, state.gate, state.experts, state.params)
        state.resp = self._e_step_pass(data, model)
        total = state.resp.summary["log_likelihood"] / data.total_weight
        if not np.isfinite(total):
            raise FloatingPointError(
                "EM reached a non-finite log-likelihood: some rows have zero probability "
                "under every expert. Check the targets for infinite values, or scale the data."
            )
        state.log_likelihood = float(total)
        if record:
            state.history.append(state.log_likelihood)

    def _revive_collapsed(self, data, state, n_iter):
        """Warn of experts whose responsibility mass collapsed; they are not re-seeded.

        In memory a collapsed expert takes over the worst-explained rows; that
        ranks all rows in one place. Here it keeps its (near-zero) weights. The
        warning is given as often as the in-memory fit would re-seed.
        """
        resp = state.resp
        mass_in_samples = resp.summary["share"] / (data.total_weight / data.n_samples)
        collapsed = np.flatnonzero(mass_in_samples < _COLLAPSE_MASS_IN_SAMPLES)
        if collapsed.size == 0 or state.reseeds_left == 0 or n_iter > self.max_iter // 2:
            return resp
        for k in collapsed[: state.reseeds_left]:
            warn(
                f"Expert {k} collapsed (responsibility mass {mass_in_samples[k]:.2g} samples, "
                f"below {_COLLAPSE_MASS_IN_SAMPLES}) at EM iteration {n_iter}; a fit on a Dask "
                "collection does not re-seed it (that ranks all rows in one place), so it "
                "stays nearly unused. Consider fewer experts.",
                ExpertCollapseWarning,
            )
        state.reseeds_left = max(0, state.reseeds_left - collapsed.size)
        return resp

    def _m_step(self, data, state, resp, n_iter):
        """The gate, then the experts (and variances), from sums over the partitions."""
        history = state.history
        gate_tol = abs(history[-1] - history[-2]) if len(history) >= 2 else np.inf
        self._gate_m_step(
            data, state.gate, resp, gate_tol, None if state.in_tail else _EARLY_GATE_STEPS
        )
        moments, train, weighting = self._training_moments(data, resp, fresh=n_iter == 0)
        if data.classes is not None:
            self._refit_logistic(
                data,
                state,
                resp,
                moments,
                train,
                weighting,
                gate_tol,
                None if state.in_tail else _EARLY_EXPERT_STEPS,
            )
            state.params = {}
            state.logits = state.outputs = None
            return
        # Experts with no row to learn from are kept, their variance the floor.
        variance = np.full(self.n_experts, data.likelihood.variance_floor)
        refit = [k for k in range(self.n_experts) if train[k] is not None]
        experts = [state.experts[k] for k in refit]
        mass = moments["mass"][refit]
        coef, intercept, gram, rss = least_squares_from_moments(
            mass,
            moments["first"][refit],
            moments["second"][refit],
            data.centre,
            [getattr(expert, "alpha", 0.0) for expert in experts],
            [expert.fit_intercept for expert in experts],
        )
        for row, (k, expert) in enumerate(zip(refit, experts)):
            _install(
                expert,
                coef[row],
                intercept[row],
                gram[row],
                int(moments["counts"][k]),
                data.feature_names,
            )
        variance[refit] = np.maximum(
            rss / np.maximum(mass, np.finfo(np.float64).tiny), data.likelihood.variance_floor
        )
        state.params = {"variance": variance}
        state.logits = state.outputs = None

    def _gate_m_step(self, data, gate, resp, tol, max_iter):
        """``SoftmaxGate._m_step`` with each row sum (objective or Hessian) a pass.

        Its first evaluation, at the gate's current parameters, came with the
        E-step's pass. The penalty is added once, on the driver.
        """
        gate._solve(_PartitionedSoftTargets(data, resp, gate), tol, max_iter)

    def _training_moments(self, data, resp, fresh):
        """Each expert's moments under ``_training_weights``' rules, and which to refit.

        Usually the E-step's pass has them. An expert with fewer than two rows
        above ``min_responsibility`` is refit on every row of positive
        responsibility; one without any is kept as it is, or, at a start
        (``fresh``), fit on every row at its sample weight: one more pass.
        """
        summary = resp.summary
        train = [True] * self.n_experts
        short = summary["counts"] < 2
        if "classes" in summary:  # a logistic expert needs rows of two classes
            short |= np.count_nonzero(summary["classes"], axis=1) < 2
        if not short.any():
            return summary, train, (self.min_responsibility, None)
        thresholds = np.where(short, 0.0, self.min_responsibility)
        uniform = short & (summary["positive"] == 0) & fresh
        for k in np.flatnonzero(short & (summary["positive"] == 0) & (not fresh)):
            train[k] = None
        moments = _sum(
            _pass_over(data, resp, _refit_moments_block, threshold=thresholds, uniform=uniform)
        )
        return moments, train, (thresholds, uniform)

    def _refit_logistic(self, data, state, resp, moments, train, weighting, tol, max_iter):
        """The logistic experts' refit: ``WeightedLogisticRegression._fit_many`` on partitions.

        Its Newton (or L-BFGS) steps are the in-memory refit's: each
        evaluation of the objective, and each of the Hessians, is one pass.
        The experts' standardisation comes from the moments of the E-step's
        pass; ``tol`` is EM's latest change and ``max_iter`` its early cap.
        """
        refit = [k for k in range(self.n_experts) if train[k] is not None]
        experts = [state.experts[k] for k in refit]
        for expert in experts:
            expert._validate_params()
        mass = moments["mass"][refit]
        first = moments["first"][refit] / mass[:, None]
        mean = data.centre[:-1] + first
        # The squares about each expert's mean, from those about the global centre.
        squares = np.maximum(moments["squares"][refit] - mass[:, None] * first**2, 0.0)
        scale = _scale_of(data.n_samples, mean, squares, mass[:, None])
        problem = _PartitionedProblem(data, resp, weighting, np.asarray(refit))
        problem._configure(
            data.classes.shape[0],
            mean.shape[1],
            mass,
            [expert.C for expert in experts],
            mean,
            scale,
            True,
        )
        coef, intercept = logistic_starts(experts, data.classes, mean.shape[1])
        coef, intercept, n_iter = solve_grouped(
            problem,
            coef,
            intercept,
            logistic_tolerances(experts, None if np.isinf(tol) else tol),
            capped_iterations(
                [expert.max_iter for expert in experts],
                max_iter,
                data.classes.shape[0] * (mean.shape[1] + 1),
            ),
        )
        set_logistic_fits(experts, data.classes, coef, intercept, n_iter)
        if data.feature_names is not None:
            for expert in experts:
                expert.feature_names_in_ = data.feature_names

    def _initial_gate(self, data, gate):
        """The gate with the full data's standardisation (its parameters unchanged)."""
        gate._mean, gate._scale = data.gate_mean, data.gate_scale
        return gate

    def start_given(self, data, state, init):
        """EM from given responsibilities (a Dask array with X's rows), as ``_start`` runs it."""
        state.gate._initialize(np.zeros((1, data.gate_mean.shape[0])), self.n_experts, np.ones(1))
        self._initial_gate(data, state.gate)
        state.resp = self._e_step_pass(data, self._model(data, state.gate), init)
        if state.resp.summary["bad_rows"]:
            raise ValueError(
                "init must be non-negative with a positive sum in every row "
                "(each row is a probability vector over the experts)."
            )
        self._m_step(data, state, self._revive_collapsed(data, state, 0), 0)
        self._e_step(data, state)
        return self._run(data, state)

    def start_sampled(self, data, state):
        """EM on all rows from the parameters of a fit on a sample."""
        self._initial_gate(data, state.gate)
        self._e_step(data, state)
        return self._run(data, state)

    def resume(self, data, state):
        """EM from the fitted model (``warm_start``), its history continued as ``_resume`` does."""
        self._e_step(data, state, record=False)
        if state.log_likelihood != state.history[-1]:
            state.history.append(state.log_likelihood)
        return self._run(data, state)

    def _run(self, data, state):
        if self.verbose:
            print(
                f"EM on {data.n_samples} rows in {data.X.numblocks[0]} partitions "
                f"({state.start}): initial mean log-likelihood {state.log_likelihood:.6g}"
            )
        return self._iterate(data, state, self.max_iter)


# ----------------------------------------------------------------------
# fit
# ----------------------------------------------------------------------


def _scale_of(n_samples, mean, squares, weight):
    """Weighted standard deviations, 1 for constant columns, as ``weighted_mean_scale``."""
    scale = np.sqrt(squares / weight)
    scale[scale <= np.finfo(np.float64).eps * np.maximum(n_samples * np.abs(mean), 1.0)] = 1.0
    return scale


def fit_dask(estimator, X, y, sample_weight=None):
    """Fit ``estimator`` by EM on a Dask collection, by map-reduce over its partitions.

    Supported: :class:`~skmoe.MixtureOfExpertsRegressor` with the Gaussian
    likelihood, linear least-squares experts (``WeightedLeastSquares``, the
    default, ``Ridge``, ``LinearRegression``; one per expert may differ), and
    :class:`~skmoe.MixtureOfExpertsClassifier` with
    ``WeightedLogisticRegression`` experts (labels of any type), under the
    softmax gate, any ``gate_features`` / ``expert_features``, ``top_k``,
    ``warm_start``. Refused with a ``TypeError`` or ``ValueError`` that says
    why and what to use: other gates, experts or likelihoods,
    ``early_stopping``, ``min_expert_share > 0``.

    Starting point:

    * ``init`` an array of responsibilities, (n_samples, n_experts), NumPy or
      Dask (its rows with ``X``'s): EM starts as the in-memory fit does from
      it (an M-step, then EM), and takes the same steps;
    * otherwise (the default) a clone of the estimator is fitted in memory
      on a Bernoulli sample of about 50,000 rows (all rows when there are
      fewer; seeds from ``random_state``), with its own ``init``,
      ``n_init``, ``max_iter`` and ``tol``, and EM on all rows starts from its
      gate, experts and noise variances. ``init_methods_`` is then
      ``["sample(<the sample fit's best start>)"]``, and ``n_iter_`` and
      ``log_likelihood_history_`` count the EM iterations on all rows only;
    * ``warm_start=True`` with a fitted model: EM continues from it.

    A collapsed expert is not re-seeded (an ``ExpertCollapseWarning`` says so).

    Parameters
    ----------
    estimator : MixtureOfExpertsRegressor or MixtureOfExpertsClassifier
        The estimator to fit; its fitted attributes are set as ``fit`` sets them.
    X : dask.array.Array or dask.dataframe.DataFrame of shape (n_samples, n_features)
        Finite numbers, dense NumPy chunks (a DataFrame: numeric columns).
        Read once per pass; persist it first if it fits in the cluster's memory.
    y : dask.array.Array, dask.dataframe.Series or array-like of shape (n_samples,)
        Targets; a Dask collection with ``X``'s partitions avoids a rechunk.
    sample_weight : Dask or array-like of shape (n_samples,), default=None
        Non-negative weights.

    Returns
    -------
    estimator : MixtureOfExpertsRegressor or MixtureOfExpertsClassifier
        The fitted estimator.
    """
    named_experts = _check_supported(estimator)
    warm = estimator.warm_start and hasattr(estimator, "converged_")
    if warm:
        _check_resumable(estimator)
    X_given = X
    X, columns = _as_dask_array(X, "X")
    if X.ndim != 2:
        raise ValueError(f"X must be two-dimensional, got shape {X.shape}.")
    # Feature names and count, checked (warm start) or set, from an empty stand-in.
    stand_in = X_given._meta if columns is not None else np.empty((0, X.shape[1]))
    validate_data(estimator, stand_in, skip_check_array=True, reset=not warm)
    n_samples, n_features = X.shape
    if n_samples == 0:
        raise ValueError("X has 0 rows; a fit needs at least one.")
    if estimator.n_experts > n_samples:
        raise ValueError(
            f"n_experts={estimator.n_experts} is larger than n_samples={n_samples}; "
            "use at most one expert per sample (in practice far fewer)."
        )
    frame = X_given if columns is not None else None
    classifier = isinstance(estimator, MixtureOfExpertsClassifier)
    y = _row_aligned(y, X, "y", frame, labels=classifier)
    if y.shape[1] != 1:
        raise ValueError(f"y must be one-dimensional, got shape {y.shape}.")
    classes = likelihood = None
    if classifier:  # a pass for the labels; the partitions then read class indices
        with single_threaded_blas():
            classes = np.unique(np.concatenate(_gather(_per_block(np.unique, y))))
        # Checks the labels and sets classes_, as the in-memory fit does.
        _, _, likelihood = estimator._prepare_target(classes, None)
        y = y.map_blocks(_codes_block, classes=classes, dtype=np.float64)
    if sample_weight is not None:
        sample_weight = _row_aligned(sample_weight, X, "sample_weight", frame)
    names = getattr(estimator, "feature_names_in_", None)
    gate_features = resolve_columns(estimator.gate_features, n_features, names, "gate_features")
    expert_features = resolve_columns(
        estimator.expert_features, n_features, names, "expert_features"
    )
    if expert_features.size == 0:
        raise ValueError("expert_features selects no column; experts need at least one.")
    init = estimator.init
    given = not warm and not isinstance(init, str)
    if given:
        expected = (n_samples, estimator.n_experts)
        if np.shape(init) != expected:
            raise ValueError(
                f"init has shape {np.shape(init)}, but starting responsibilities need shape "
                f"(n_samples, n_experts) = {expected}."
            )
        init = _row_aligned(init, X, "init", frame)
    sampled = not warm and not given
    random_state = check_random_state(estimator.random_state)
    seeds = None
    if sampled:
        seeds = da.from_array(
            random_state.randint(np.iinfo(np.int32).max, size=(X.numblocks[0], 1)), chunks=1
        )

    # Every kernel call in a task uses one thread: Dask runs the partitions in parallel.
    with single_threaded_blas():
        rate = min(1.0, _SAMPLE_ROWS / n_samples) if sampled else None
        parts = _gather(
            _per_block(
                _moments_block, X, y, sample_weight, seeds, rate=rate, every_class=classifier
            )
        )
        data = _global_data(
            estimator,
            [moments for moments, _ in parts],
            X,
            y,
            sample_weight,
            gate_features,
            expert_features,
            names,
            likelihood,
            classes,
        )
        engine = _DaskEM(estimator)
        if warm:
            state = engine.resume(
                data,
                _EMState(
                    experts=copy.deepcopy(estimator.experts_),
                    gate=copy.deepcopy(estimator.gate_),
                    params=estimator._likelihood_params,
                    reseeds_left=estimator.n_experts,
                    history=list(estimator.log_likelihood_history_),
                    in_tail=_reached_tail(estimator.log_likelihood_history_),
                ),
            )
        elif given:
            gate = seed_random_states(make_gate(estimator.gate), random_state)
            state = engine.start_given(
                data,
                _EMState(
                    experts=make_experts(named_experts, random_state),
                    gate=gate,
                    reseeds_left=estimator.n_experts,
                    start="given",
                ),
                init,
            )
        else:
            starter = _fit_sample(
                estimator,
                [sample for _, sample in parts],
                columns,
                sample_weight is not None,
                random_state,
                classes,
            )
            best = int(np.argmax(starter.init_log_likelihoods_))
            state = engine.start_sampled(
                data,
                _EMState(
                    experts=starter.experts_,
                    gate=starter.gate_,
                    params=starter._likelihood_params,
                    reseeds_left=estimator.n_experts,
                    start=f"sample({starter.init_methods_[best]})",
                ),
            )

    if not state.converged:
        warn(
            f"EM on the Dask collection did not converge in max_iter={estimator.max_iter} "
            f"iterations (last change in mean log-likelihood "
            f"{state.history[-1] - state.history[-2]:.3g}, tol={estimator.tol}, or more still "
            "ahead). Increase max_iter, loosen tol, or scale the features.",
            ConvergenceWarning,
        )
    if names is not None:
        state.gate.feature_names_in_ = np.asarray(names[gate_features], dtype=object)
    # The gate's columns are numeric without missing values: used as they are (no encoder).
    estimator._set_fitted(
        state,
        [state],
        data.likelihood,
        gate_features,
        expert_features,
        None,
        state.resp.summary["share"] / data.total_weight,
    )
    return estimator


def _check_resumable(estimator):
    """A warm start continues the fitted model: it must be one a Dask fit can continue."""
    supported = (
        _LOGISTIC_EXPERTS if isinstance(estimator, MixtureOfExpertsClassifier) else _LINEAR_EXPERTS
    )
    if (
        type(estimator.gate_) is not SoftmaxGate
        or estimator.gate_encoder_ is not None
        or any(type(expert) not in supported for expert in estimator.experts_)
    ):
        raise ValueError(
            "warm_start=True continues the fitted model, which has a gate, experts or an "
            "encoding of the gate's columns that a fit on a Dask collection cannot continue; "
            "set warm_start=False to start afresh."
        )


def _global_data(
    estimator,
    moments,
    X,
    y,
    sample_weight,
    gate_features,
    expert_features,
    names,
    likelihood=None,
    classes=None,
):
    """Check the partitions' moments and derive the fit's global statistics.

    A classifier gives its ``likelihood`` and ``classes`` (``y`` holds
    indices into them); a regressor's likelihood is made here.
    """
    bad = {key: sum(part[key] for part in moments) for key in ("bad_X", "bad_y", "bad_weight")}
    if bad["bad_X"]:
        raise ValueError(
            f"Input X contains NaN or infinity ({bad['bad_X']} values); a fit on a Dask "
            "collection takes finite numbers only (its linear experts take no missing "
            "values). Impute them first."
        )
    if bad["bad_y"]:
        raise ValueError(f"Input y contains NaN or infinity ({bad['bad_y']} values).")
    if bad["bad_weight"]:
        raise ValueError(
            f"sample_weight has {bad['bad_weight']} negative or non-finite values; weights "
            "must be non-negative."
        )
    weight, mean, squares = _combine_moments(moments)
    if weight <= 0:
        raise ValueError("sample_weight sums to zero; give some samples positive weight.")
    n_samples, n_features = X.shape
    scale = _scale_of(n_samples, mean, squares, weight)
    if likelihood is None and type(estimator.likelihood) is GaussianLikelihood:
        likelihood = estimator.likelihood
    elif likelihood is None:  # MixtureOfExpertsRegressor._variance_floor, from the moments
        var_y = squares[-1] / weight
        likelihood = GaussianLikelihood(
            estimator.noise_variance_floor * (var_y if var_y > 0 else 1.0)
        )
    return _DaskData(
        X=X,
        y=y,
        sample_weight=sample_weight,
        n_samples=n_samples,
        total_weight=weight,
        gate_columns=_all_or(gate_features, n_features),
        expert_columns=_all_or(expert_features, n_features),
        gate_mean=mean[gate_features],
        gate_scale=scale[gate_features],
        centre=np.append(mean[expert_features], mean[-1]),
        units=(scale[expert_features], 1.0 if classes is not None else scale[-1]),
        likelihood=likelihood,
        feature_names=None if names is None else np.asarray(names[expert_features], dtype=object),
        keep=_keeps_responsibilities(n_samples * estimator.n_experts * 8),
        classes=classes,
    )


def _keeps_responsibilities(n_bytes):
    """Whether the responsibilities (``n_bytes``) may stay in the memory Dask computes in.

    Kept, the gate's passes read them; otherwise each pass recomputes them
    from ``X`` and the E-step's parameters (about twice the arithmetic of a
    gate pass, no memory). Two copies can be alive (SQUAREM's trial point),
    and the partitions being computed need room too: kept if both copies
    take at most ``_KEEP_FRACTION`` of the workers' memory limits (or, with
    a local scheduler, of the machine's memory).
    """
    client = getattr(dask.base.get_scheduler(), "__self__", None)
    if client is not None and hasattr(client, "scheduler_info"):
        limits = [
            worker.get("memory_limit") or 0
            for worker in client.scheduler_info()["workers"].values()
        ]
        memory = sum(limits) if limits and all(limits) else None  # 0: no limit
    else:
        try:
            import psutil
        except ImportError:
            return True
        memory = psutil.virtual_memory().total
    return memory is None or 2 * n_bytes <= _KEEP_FRACTION * memory


def _fit_sample(estimator, samples, columns, weighted, random_state, classes=None):
    """A clone of the estimator fitted in memory on the partitions' Bernoulli samples.

    A classifier's sample holds class indices into ``classes``: it is fitted
    on the labels, as the full fit is.
    """
    X = np.concatenate([sample[0] for sample in samples])
    y = np.concatenate([sample[1] for sample in samples])
    if classes is not None:
        y = classes[y.astype(np.intp)]
    weights = np.concatenate([sample[2] for sample in samples]) if weighted else None
    if columns is not None:
        import pandas as pd

        X = pd.DataFrame(X, columns=columns)
    starter = clone(estimator).set_params(
        warm_start=False, random_state=int(random_state.randint(np.iinfo(np.int32).max))
    )
    with warnings.catch_warnings():  # a start need not have converged
        warnings.simplefilter("ignore", ConvergenceWarning)
        return starter.fit(X, y, sample_weight=weights)


# ----------------------------------------------------------------------
# Prediction, partition by partition
# ----------------------------------------------------------------------


@dataclass
class _RowArgument:
    """Where a per-row argument's block goes when a partition's method is called."""

    index: int  # among the per-row Dask arrays after X
    flat: bool  # one-dimensional (the (n, 1) block is raveled back)


def _predict_block(method, estimator, args, kwargs, columns, pair, X, *row_blocks):
    """``method(estimator, block, ...)`` on one partition, with its per-row arguments."""
    if columns is not None:
        import pandas as pd

        X = pd.DataFrame(X, columns=columns)

    def fill(value):
        if not isinstance(value, _RowArgument):
            return value
        block = row_blocks[value.index]
        return block.ravel() if value.flat else block

    result = method(estimator, X, *map(fill, args), **{k: fill(v) for k, v in kwargs.items()})
    return np.column_stack(result) if pair else result


def _output_layout(estimator, name, arguments, rows):
    """The chunks and dtype of ``name``'s result, and whether it is a pair (mean, std)."""
    n_experts = estimator.n_experts
    classes = getattr(estimator, "classes_", None)
    n_classes = None if classes is None else len(classes)
    if name == "predict":
        if classes is not None:
            return (rows,), classes.dtype, False
        if arguments.get("return_std", False):
            return (rows, (2,)), np.float64, True
        return (rows,), np.float64, False
    if name == "log_likelihood":
        return (rows,), np.float64, False
    if name == "predict_experts" and classes is not None:
        return (rows, (n_experts,), (n_classes,)), np.float64, False
    widths = {
        "predict_gate": n_experts,
        "predict_experts": n_experts,
        "predict_responsibilities": n_experts,
        "predict_interval": 2,
        "predict_proba": n_classes,
        "predict_log_proba": n_classes,
    }
    if name == "predict_quantiles":
        widths[name] = np.atleast_1d(arguments["q"]).size
    if widths.get(name) is None:
        raise NotImplementedError(f"{type(estimator).__name__}.{name} has no Dask layout.")
    return (rows, (widths[name],)), np.float64, False


def map_partitions(estimator, method, X, *args, **kwargs):
    """Apply a prediction method to each partition of ``X``; a Dask array with X's row chunks.

    Parameters
    ----------
    estimator : fitted mixture of experts
        Any fitted model (in memory or on Dask): its own method runs on each
        partition as on a NumPy array.
    method : callable
        The undecorated method, called as ``method(estimator, block, *args, **kwargs)``.
    X : dask.array.Array or dask.dataframe.DataFrame of shape (n_samples, n_features)
        Dense NumPy chunks; a DataFrame's columns must be numeric (each
        partition reaches the method as a pandas DataFrame with its names).
    *args, **kwargs
        The method's other arguments. Dask collections among them (``y``) are
        per-row: split along ``X``'s row chunks. Anything else reaches every
        partition as it is.

    Returns
    -------
    result : dask.array.Array or tuple of dask.array.Array
        Shaped as the method's NumPy result, (n_samples, ...), row chunks of
        ``X``; ``predict(X, return_std=True)`` gives two arrays.
    """
    check_is_fitted(estimator)
    X_given = X
    X, columns = _as_dask_array(X, "X")
    if X.ndim != 2:
        raise ValueError(f"X must be two-dimensional, got shape {X.shape}.")
    arguments = inspect.signature(method).bind(estimator, X, *args, **kwargs).arguments
    chunks, dtype, pair = _output_layout(estimator, method.__name__, arguments, X.chunks[0])
    rows = []

    def template(value):
        if not _is_dask(value):
            return value
        rows.append(
            _row_aligned(value, X, "a per-row argument", X_given if columns is not None else None)
        )
        return _RowArgument(index=len(rows) - 1, flat=value.ndim == 1)

    if not isinstance(estimator.init, str):  # a fit's starting point need not travel
        estimator = copy.copy(estimator)
        estimator.init = "auto"
    func = partial(
        _predict_block,
        method,
        estimator,
        [template(value) for value in args],
        {key: template(value) for key, value in kwargs.items()},
        columns,
        pair,
    )
    out = da.map_blocks(
        func,
        X,
        *rows,
        name=f"skmoe-{method.__name__}-{uuid.uuid4().hex}",
        chunks=chunks,
        dtype=dtype,
        drop_axis=1 if len(chunks) == 1 else None,
        new_axis=2 if len(chunks) == 3 else None,
        meta=np.empty((0,) * len(chunks), dtype),
    )
    return (out[:, 0], out[:, 1]) if pair else out
