"""Stepwise online EM: ``partial_fit`` of the mixtures of experts, one chunk at a time.

Batch EM (:mod:`skmoe._base`) reads every row at every iteration. Stepwise
online EM (Cappé & Moulines 2009; Liang & Klein 2009) reads each chunk once:
an E-step on the chunk under the current model, then the running averages
of the M-step's statistics move a step ``eta_t`` towards the chunk's, and an
M-step on those averages gives the next model. Memory is one chunk plus the
model, however long the stream.

Step sizes
----------
``eta_t = (tau_t + 1) ** -STEP_EXPONENT`` with ``STEP_EXPONENT = 0.7``, where
``tau_t`` is the weight seen before chunk ``t`` in units of the first
chunk's weight: with chunks of equal weight, ``eta = 1, 2**-0.7, 3**-0.7,
...``, Liang & Klein's ``(k + 2) ** -alpha`` for the k-th update after the
first chunk (which sets the averages). Any exponent in (0.5, 1] converges
(the steps sum to infinity, their squares do not); 1 is the plain average
of all chunks, which forgets the early, poorer models' statistics
slowest; smaller exponents forget faster but average less noise away.
0.7 sits in the middle of the admissible range (on generated 3-class
mixtures, 0.55 changed the held-out accuracies by less than 0.01). A chunk of ``Delta``
first-chunk units steps as ``Delta`` chunks of the first one's weight with
the same statistics would in a row: ``eta = 1 - (1 - (tau + 1) ** -alpha)
** Delta``, so a short last chunk moves the model little, and how the
stream is cut matters little.

What is averaged
----------------
* Linear-Gaussian experts (the regressor): their sufficient statistics,
  exactly. Per expert, the responsibility-weighted mass, sums and cross
  products of ``[x, y]``, centred at a fixed point (the first chunk's
  weighted mean of ``[x, y]``: uncentred moments would cancel
  catastrophically), each per unit of the chunk's weight. The M-step
  solves each expert's normal equations from them (a ``Ridge`` penalty
  counts against the expert's mass in all the rows seen so far, as in a
  batch fit on them) and gives its noise variance, floored as in ``fit``
  (``noise_variance_floor`` times the first chunk's variance of ``y``).
* The softmax gate and logistic experts (the classifier): a multinomial
  logistic regression has no finite sufficient statistics. Their M-step
  objective (the responsibility-weighted cross-entropy, plus its penalty)
  is averaged instead as a running second-order model: each chunk's
  gradient and Hessian at the current parameters are averaged with step
  ``eta_t`` into the model's, and one Newton step on the model (a
  stochastic Newton, or online IRLS, step; backtracked until the averaged
  objective, the old quadratic part plus the chunk's exact loss, goes
  down) gives the next parameters. The losses and gradients are the
  package's own (the gate's compiled loss, and the classifier experts'
  batch problem, :class:`skmoe._multinomial._GroupedProblem`); the
  Hessians are summed here over small blocks of rows, so that their
  temporaries do not grow with the chunk. Penalties count against all the
  rows seen so far, as in a batch fit on them. The redundant directions of
  a softmax (one vector added to every class's parameters changes no
  probability) are fixed by adding their projector to the Hessian.

The first chunk
---------------
The first call fits the estimator on its chunk in memory (its own
parameters, but ``max_iter`` at most ``START_MAX_ITER`` = 30 and ``n_init``
at least ``START_N_INIT`` = 4: see below), which sets the columns, the
gate's encoding and standardisation, and the starting model; the stream's
averages are then the first chunk's statistics under that model. If the
estimator was fitted by ``fit``, the stream continues that model instead.
A class missing from the classifier's first chunk starts with a
probability of about one over the chunk's rows in every expert.

As in batch EM, the start picks the local optimum; online EM moves its
model by a fraction ``eta_t`` of an EM step per chunk, so it explores
less than batch EM and rarely leaves the start's basin (a batch fit
warm-started from a stream's model stays in it). Hence the several starts
on the first chunk, cheap on one chunk: on generated 3-expert problems
with first chunks of 1,000 rows, single starts left the stream in a
poorer basin than a batch fit reached in 2 of 4 classification and 1 of
3 regression settings, 4 starts in none. A first chunk on which a fit is
already sensible (a few thousand rows for a few experts) helps too, and
so does starting the stream from a ``fit`` on a sample.

Supported
---------
``gate="softmax"`` (or a ``SoftmaxGate``), dense routing (``top_k=None``),
``early_stopping=False``, ``min_expert_share=0``, dense chunks (arrays or
numeric DataFrames); any ``gate_features``, ``expert_features``,
``min_responsibility``, ``sample_weight``. Regressor: Gaussian likelihood,
experts ``WeightedLeastSquares``, ``Ridge`` (one ``alpha``) or
``LinearRegression`` (not ``positive=True``). Classifier: experts
``WeightedLogisticRegression`` or ``LogisticRegression`` with an L2 penalty
or none (the multinomial problems of :mod:`skmoe._multinomial`; the
penalty of ``WeightedLogisticRegression`` is on coefficients standardised
by the first chunk's spreads, in ``fit`` by each expert's weighted ones).
Other settings raise ``NotImplementedError`` naming the part and what to do
instead (:func:`check_partial_fit`, which reads the parameters only).

Attributes
----------
``n_iter_`` counts the chunks seen; ``converged_`` is False (the stream has
no convergence test); ``log_likelihood_`` is the running mean, with the
same steps ``eta_t``, of each chunk's weighted mean log-likelihood under
the model before the chunk updated it (a progressive, held-out estimate);
``expert_share_`` is the running mean of the chunks' responsibility
shares; ``log_likelihood_history_`` holds ``log_likelihood_`` only (a
history would grow with the stream), from which a fit with
``warm_start=True`` continues the stream's model. The records of a batch
fit's starts (``init_log_likelihoods_``, ``init_methods_``) do not apply
and are removed.
"""

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    _check_y,
    _get_feature_names,
    check_array,
    check_consistent_length,
)

from ._batch import batch_class, set_least_squares_attributes
from ._experts import check_experts
from ._features import take_columns
from ._inputs import gate_input, validate_X
from ._kernels import responsibility_weights
from ._least_squares import least_squares_from_moments, least_squares_moments
from ._linalg import solve_normal_equations
from ._multinomial import (
    _GroupedProblem,
    logistic_regression_settings,
    logistic_regression_start,
    set_logistic_regression_attributes,
)
from ._routing import evaluate_routes, routes
from ._stats import weighted_mean_scale
from ._threads import kernel_threads, single_threaded_blas
from .experts import WeightedLeastSquares, WeightedLogisticRegression
from .gates import SoftmaxGate
from .likelihoods import CategoricalLikelihood, GaussianLikelihood

#: The step sizes' exponent ``alpha``: ``eta_t = (tau_t + 1) ** -alpha``.
STEP_EXPONENT = 0.7

#: EM iterations of the in-memory fit on the first chunk (at most ``max_iter``).
START_MAX_ITER = 30

#: EM starts of the in-memory fit on the first chunk (at least; more if ``n_init`` says).
START_N_INIT = 4

# The Newton step's backtracking: sufficient decrease (a fraction of the
# predicted one) and the most halvings before the step is dropped.
_ARMIJO = 1e-4
_MAX_HALVINGS = 30

# Rows per block of the Hessians' sums: their temporaries stay small (a
# block of 50 columns is 400 KB) whatever the chunk's size.
_HESSIAN_BLOCK_ROWS = 1024

# The batch fit's records of its starts and iterations, which a stream does not keep.
_BATCH_ONLY = ("validation_log_likelihood_history_", "init_log_likelihoods_", "init_methods_")

_ELSEWHERE = "fit on the whole data, or on a sample of it"


def partial_fit_step(estimator, X, y, sample_weight, classes):
    """One step of stepwise online EM of ``estimator`` on the chunk ``(X, y)``.

    Called by ``partial_fit`` (see :meth:`BaseMixtureOfExperts._partial_fit`,
    which restores the estimator if this raises); the method is described in
    the module docstring.

    Parameters
    ----------
    estimator : MixtureOfExpertsRegressor or MixtureOfExpertsClassifier
        Updated in place.
    X : {array-like, DataFrame} of shape (n_samples, n_features)
        The chunk's inputs.
    y : array-like of shape (n_samples,)
        Its targets.
    sample_weight : array-like of shape (n_samples,) or None
        Non-negative row weights.
    classes : array-like or None
        The classifier's classes: required on the first call, else None or
        the same classes.

    Returns
    -------
    estimator : object
        The updated estimator.
    """
    estimator._validate_params()
    check_partial_fit(estimator)
    if sp.issparse(X) or type(X).__module__.partition(".")[0] == "dask":
        raise TypeError(
            f"partial_fit takes dense in-memory chunks, got {type(X).__name__}; convert each "
            "chunk with X.toarray() (sparse) or .compute() (Dask), or use fit, which takes "
            "sparse matrices and Dask collections."
        )
    stream = getattr(estimator, "_stream", None)
    if stream is not None and stream.gate is not getattr(estimator, "gate_", None):
        stream = None  # fit has replaced the model since: a new stream continues that fit
    fitted = hasattr(estimator, "gate_")
    classes = _check_classes(estimator, classes, fitted)
    if fitted and stream is None:
        _check_fitted_model(estimator)
    if not fitted:
        _start_on_chunk(estimator, X, y, sample_weight, classes)
    chunk = _read_chunk(estimator, X, y, sample_weight)
    if stream is None:
        stream = _Stream.start(estimator, chunk)
    stream.step(estimator, chunk)
    return estimator


# ----------------------------------------------------------------------
# What a stream supports
# ----------------------------------------------------------------------


def check_partial_fit(estimator):
    """Whether the estimator's parameters have a stepwise EM update; else say why.

    Reads the parameters only, so it can serve as the ``available_if``
    check of ``partial_fit`` (scikit-learn's way of offering a method for
    some settings only, as ``MLPClassifier`` does for its solvers).

    Parameters
    ----------
    estimator : MixtureOfExpertsRegressor or MixtureOfExpertsClassifier
        Fitted or not.

    Returns
    -------
    True

    Raises
    ------
    NotImplementedError
        Naming the unsupported part and what to do instead.
    """
    gate = estimator.gate
    if not (gate == "softmax" if isinstance(gate, str) else isinstance(gate, SoftmaxGate)):
        raise NotImplementedError(
            f"partial_fit supports the softmax gate only, not gate={gate!r}: a tree or "
            "hierarchical gate has no online update. Use gate='softmax', or "
            f"{_ELSEWHERE}."
        )
    if estimator.top_k is not None and estimator.top_k < estimator.n_experts:
        raise NotImplementedError(
            f"partial_fit trains with dense routing only, not top_k={estimator.top_k}. Train "
            "the stream with top_k=None and predict with set_params(top_k=...), or "
            f"{_ELSEWHERE}."
        )
    if estimator.early_stopping:
        raise NotImplementedError(
            "partial_fit does not stop early (early_stopping=True holds out part of the "
            "whole data); use early_stopping=False and watch log_likelihood_, which is "
            f"measured on each chunk before the model learns from it, or {_ELSEWHERE}."
        )
    if estimator.min_expert_share > 0:
        raise NotImplementedError(
            f"partial_fit does not re-seed collapsed experts (min_expert_share="
            f"{estimator.min_expert_share}); use min_expert_share=0, or {_ELSEWHERE}."
        )
    if estimator._y_numeric and not _gaussian(estimator.likelihood):
        raise NotImplementedError(
            f"partial_fit supports the Gaussian likelihood only, not likelihood="
            f"{estimator.likelihood!r}: other families' experts have no finite statistics. "
            f"Use likelihood='gaussian', or {_ELSEWHERE}."
        )
    named = check_experts(
        estimator.estimator,
        estimator.n_experts,
        estimator._default_expert(),
        estimator._expert_method,
    )
    for name, expert in named:
        _check_expert(estimator, name, expert)
    return True


def _gaussian(likelihood):
    # "auto" is Gaussian for every expert a stream takes (none declares another family).
    if isinstance(likelihood, str):
        return likelihood in ("gaussian", "auto")
    return type(likelihood) is GaussianLikelihood


def _check_expert(estimator, name, expert):
    kind = type(expert).__name__
    if estimator._y_numeric:
        if type(expert) is WeightedLeastSquares or (
            type(expert) in (Ridge, LinearRegression)
            and not expert.positive
            and np.ndim(getattr(expert, "alpha", 0.0)) == 0
        ):
            return
        raise NotImplementedError(
            f"partial_fit supports linear least-squares experts only (WeightedLeastSquares, "
            f"Ridge with one alpha, LinearRegression; not positive=True), whose statistics "
            f"are finite; expert {name!r} is {kind}. Use one of them, or {_ELSEWHERE}."
        )
    if type(expert) is WeightedLogisticRegression or (
        type(expert) is LogisticRegression and logistic_regression_settings(expert, 3) is not None
    ):
        return
    raise NotImplementedError(
        f"partial_fit supports multinomial logistic experts only (WeightedLogisticRegression, "
        f"LogisticRegression with an L2 penalty or none, no class_weight); expert {name!r} "
        f"is {kind}. Use one of them, or {_ELSEWHERE}."
    )


def _check_fitted_model(estimator):
    """A model fitted by ``fit`` that the stream is to continue must be one it can update."""
    experts = estimator.experts_
    if (
        len(experts) != estimator.n_experts
        or not isinstance(estimator.gate_, SoftmaxGate)
        or (estimator._y_numeric and type(estimator._likelihood) is not GaussianLikelihood)
    ):
        raise ValueError(
            "partial_fit continues the model fitted by fit, which does not match the "
            "estimator's parameters (changed since by set_params?); fit again, or start "
            "a new stream on clone(estimator)."
        )
    for k, expert in enumerate(experts):
        _check_expert(estimator, f"expert{k}", expert)


def _check_classes(estimator, classes, fitted):
    """The classifier's classes, as scikit-learn's ``partial_fit`` takes them (regressor: None)."""
    if estimator._y_numeric:
        return None
    if classes is None:
        if not fitted:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return estimator.classes_
    classes = np.unique(np.asarray(classes))
    if fitted and not np.array_equal(classes, estimator.classes_):
        raise ValueError(
            f"classes={classes.tolist()} is not the same as on the first call to partial_fit "
            f"(or in fit): {estimator.classes_.tolist()}."
        )
    if classes.shape[0] < 2:
        raise ValueError(f"classes has {classes.shape[0]} class; a classifier needs at least 2.")
    return classes


# ----------------------------------------------------------------------
# The first chunk and the chunks' inputs
# ----------------------------------------------------------------------


def _start_on_chunk(estimator, X, y, sample_weight, classes):
    """Fit ``estimator`` on the first chunk in memory, briefly: the stream's start."""
    if classes is not None:
        unknown = np.setdiff1d(np.unique(y), classes)
        if unknown.size:
            raise ValueError(
                f"y has labels {unknown.tolist()} that are not in classes {classes.tolist()}."
            )
    starter = clone(estimator).set_params(
        max_iter=min(estimator.max_iter, START_MAX_ITER),
        n_init=max(estimator.n_init, START_N_INIT),
        warm_start=False,
        verbose=0,
    )
    with warnings.catch_warnings():
        # A short fit on one chunk need not converge: the stream goes on from it.
        warnings.simplefilter("ignore", ConvergenceWarning)
        starter.fit(X, y, sample_weight=sample_weight)
    parameters = estimator.get_params(deep=False)
    for name, value in vars(starter).items():
        if name not in parameters:
            setattr(estimator, name, value)
    if classes is not None:  # the chunk may lack some: the likelihood scores them all
        estimator.classes_ = classes
        estimator._likelihood = CategoricalLikelihood(classes)


@dataclass
class _Chunk:
    """One chunk as each part of the model sees it."""

    gate: np.ndarray  # the gate's numeric view (dense, C-ordered)
    expert: object  # the experts' columns as given (array or DataFrame)
    expert_array: np.ndarray  # the same as a dense C-ordered float64 array
    y_code: np.ndarray  # the target as the likelihood scores it
    sample_weight: np.ndarray
    weight: float  # the sum of sample_weight
    n_threads: int


def _read_chunk(estimator, X, y, sample_weight):
    """Validate a chunk as ``fit`` would, against the columns of the first one."""
    X_given, X_array = validate_X(estimator, X, reset=False)
    y = _check_y(y, y_numeric=estimator._y_numeric, estimator=estimator)
    check_consistent_length(X_given, y)
    sample_weight = _check_sample_weight(
        sample_weight, X_given, dtype=np.float64, ensure_non_negative=True
    )
    weight = float(sample_weight.sum())
    if weight <= 0:
        raise ValueError("sample_weight sums to zero; give some samples positive weight.")
    if estimator._y_numeric:
        y_code = np.ascontiguousarray(y, dtype=np.float64)
        estimator._likelihood.check_target(y_code)
    else:
        check_classification_targets(y)
        unknown = np.setdiff1d(y, estimator.classes_)
        if unknown.size:
            raise ValueError(
                f"y has labels {unknown.tolist()} that are not in classes "
                f"{estimator.classes_.tolist()} (given on the first call)."
            )
        y_code = np.searchsorted(estimator.classes_, y).astype(np.intp)
    expert = take_columns(X_given, estimator.expert_features_)
    if X_array is not None:
        expert_array = take_columns(X_array, estimator.expert_features_)
    else:  # a DataFrame with non-numeric columns the experts do not use
        expert_array = check_array(expert, dtype=np.float64, order="C")
    return _Chunk(
        gate=np.ascontiguousarray(
            gate_input(estimator.gate_encoder_, X_given, X_array, estimator.gate_features_, False)
        ),
        expert=expert,
        expert_array=expert_array,
        y_code=y_code,
        sample_weight=sample_weight,
        weight=weight,
        n_threads=kernel_threads(X_given.shape[0] * estimator.n_experts),
    )


# ----------------------------------------------------------------------
# The stream
# ----------------------------------------------------------------------


@dataclass
class _Stream:
    """The running averages of a stream and its bookkeeping (``estimator._stream``)."""

    gate: SoftmaxGate  # the estimator's gate_, updated in place; fit replaces it
    gate_model: "_Quadratic"
    experts: object  # _LinearGaussianExperts or _LogisticExperts
    first_weight: float
    seen_weight: float = 0.0
    n_chunks: int = 0
    share: np.ndarray = None
    log_likelihood: float = 0.0

    @classmethod
    def start(cls, estimator, chunk):
        """A stream from the estimator's current model, the chunk its first."""
        for name in _BATCH_ONLY:
            estimator.__dict__.pop(name, None)
        gate = estimator.gate_
        theta = gate._pack()[None, :]
        experts = (_LinearGaussianExperts if estimator._y_numeric else _LogisticExperts)(
            estimator, chunk
        )
        return cls(
            gate=gate,
            gate_model=_Quadratic.at(theta),
            experts=experts,
            first_weight=chunk.weight,
            share=np.zeros(estimator.n_experts),
        )

    def step_size(self, weight):
        """``eta`` of a chunk of total ``weight`` (see the module docstring)."""
        rate = (self.seen_weight / self.first_weight + 1.0) ** -STEP_EXPONENT
        if rate >= 1.0:
            return 1.0
        return float(-np.expm1(weight / self.first_weight * np.log1p(-rate)))

    def step(self, estimator, chunk):
        """E-step on the chunk, update of the averages, M-step; install the new model."""
        eta = self.step_size(chunk.weight)
        self.seen_weight += chunk.weight
        self.n_chunks += 1
        with single_threaded_blas():  # the kernels thread themselves
            resp, row_log_lik, logits, outputs = _e_step(estimator, chunk)
            weights = chunk.sample_weight
            self.log_likelihood += eta * (
                weights @ row_log_lik / chunk.weight - self.log_likelihood
            )
            self.share += eta * (weights @ resp / chunk.weight - self.share)
            params = self.experts.update(estimator, chunk, resp, outputs, eta, self.seen_weight)
            del outputs  # freed before the gate's update
            self._update_gate(chunk, resp, logits, eta)
        estimator._likelihood_params = params
        estimator._store_likelihood_params(params)
        estimator.n_iter_ = self.n_chunks
        estimator.converged_ = False
        estimator.log_likelihood_ = float(self.log_likelihood)
        # No history (it would grow with the stream): the latest value, from which
        # a warm-started fit (warm_start=True) continues.
        estimator.log_likelihood_history_ = np.array([self.log_likelihood])
        estimator.expert_share_ = self.share.copy()
        estimator._stream = self

    def _update_gate(self, chunk, resp, logits, eta):
        """One Newton step of the gate's running objective (see the module docstring).

        ``logits``, the gate's on the chunk, become its probabilities in place.
        """
        gate = self.gate
        args = (chunk.gate, np.ascontiguousarray(resp), chunk.sample_weight, chunk.n_threads)

        def objective(theta, problems):
            # Per unit weight; the penalty against all the weight seen, as in a batch fit.
            value, gradient = gate._row_terms(theta[0], *args)
            penalty, penalty_gradient = gate._penalty(theta[0])
            value = value / chunk.weight + penalty / self.seen_weight
            gradient = gradient / chunk.weight + penalty_gradient / self.seen_weight
            return np.array([value]), gradient[None, :]

        proba = logits
        proba -= proba.max(axis=1, keepdims=True)
        np.exp(proba, out=proba)
        proba /= proba.sum(axis=1, keepdims=True)
        # Soft targets have the curvature of hard ones weighted by their row sums (1).
        row_weights = chunk.sample_weight * resp.sum(axis=1)
        hessian = _softmax_hessian(chunk.gate, gate._mean, gate._scale, proba, row_weights)
        hessian /= chunk.weight
        if np.isfinite(gate.C):  # the penalty's curvature, on the coefficients
            hessian[np.diag_indices(gate.coef_.size)] += 1.0 / (gate.C * self.seen_weight)
        self.gate_model.newton_step(eta, objective, hessian[None], gate.n_experts_)
        gate._set_parameter_vector(self.gate_model.theta[0])


def _e_step(estimator, chunk):
    """Responsibilities, row log-likelihoods, gate logits and expert outputs on the chunk."""
    gate, experts, likelihood = estimator.gate_, estimator.experts_, estimator._likelihood
    logits = gate._logits(chunk.gate)
    batch = batch_class(experts)
    if batch is not None:
        outputs = likelihood.batch_outputs(batch, experts, chunk.expert_array)
    else:  # experts of different classes
        every, _ = routes(logits, None)
        outputs = evaluate_routes(every, likelihood, experts, chunk.expert)
    resp, row_log_lik = likelihood.e_step(
        chunk.y_code, outputs, estimator._likelihood_params, logits, chunk.n_threads
    )
    if not np.all(np.isfinite(row_log_lik)):
        raise FloatingPointError(
            "The chunk has rows of zero probability under every expert (a non-finite "
            "log-likelihood). Check the targets and features for infinite or extreme values."
        )
    return resp, row_log_lik, logits, outputs


# ----------------------------------------------------------------------
# Newton steps on a running quadratic model
# ----------------------------------------------------------------------


@dataclass
class _Quadratic:
    """A running second-order model of P separate objectives, around their current points.

    ``theta`` (P, p) are the parameters; ``gradient`` (P, p) and ``hessian``
    (P, p, p) are the model's derivatives there, per unit of weight.
    """

    theta: np.ndarray
    gradient: np.ndarray
    hessian: np.ndarray
    fixed: np.ndarray = None  # (P, p) parameters held where they are (absent intercepts)

    @classmethod
    def at(cls, theta, fixed=None):
        n_problems, n_parameters = theta.shape
        return cls(
            theta, np.zeros_like(theta), np.zeros((n_problems, n_parameters, n_parameters)), fixed
        )

    def newton_step(self, eta, objective, chunk_hessian, n_classes):
        """Average in a chunk's objective with step ``eta``; step to the new model's minimum.

        ``objective(theta, problems)`` returns the chunk's (k,) objectives
        of ``problems`` (an index array) at ``theta`` (k, p), and their
        gradients; ``chunk_hessian`` (P, p, p) is its Hessian at ``theta``.
        Parameters are laid out as a (p / n_classes, n_classes) matrix of a
        softmax's features (rows) by classes (columns).
        """
        theta0 = self.theta
        n_problems, n_parameters = theta0.shape
        problems = np.arange(n_problems)
        values, chunk_gradient = objective(theta0, problems)
        old_gradient, old_hessian = self.gradient, self.hessian
        gradient = (1 - eta) * old_gradient + eta * chunk_gradient
        hessian = (1 - eta) * old_hessian + eta * chunk_hessian
        # Adding one vector to every class's parameters changes no probability:
        # those directions are flat (or held only by a weak penalty). Their
        # projector added to the Hessian keeps the step off them.
        rows = n_parameters // n_classes
        gauge = np.kron(np.eye(rows), np.full((n_classes, n_classes), 1.0 / n_classes))
        delta = np.zeros_like(theta0)
        for k in problems:
            system = hessian[k] + gauge
            moment = gradient[k].copy()
            if self.fixed is not None:
                held = self.fixed[k]
                system[held, :] = 0.0
                system[:, held] = 0.0
                system[held, held] = 1.0
                moment[held] = 0.0
            delta[k] = -solve_normal_equations(system, moment)
        slope = np.einsum("kp,kp->k", gradient, delta)
        start = eta * values
        step = np.ones(n_problems)
        pending = slope < 0
        step[~pending] = 0.0  # no descent direction: the point stays
        for _ in range(_MAX_HALVINGS):
            trying = np.flatnonzero(pending)
            if trying.size == 0:
                break
            move = step[trying, None] * delta[trying]
            trial_values, _ = objective(theta0[trying] + move, trying)
            # The averaged objective: the old quadratic model plus the chunk's exact loss.
            old_part = np.einsum("kp,kp->k", old_gradient[trying], move) + 0.5 * np.einsum(
                "kp,kpq,kq->k", move, old_hessian[trying], move
            )
            value = (1 - eta) * old_part + eta * trial_values
            accepted = value <= start[trying] + _ARMIJO * step[trying] * slope[trying]
            pending[trying[accepted]] = False
            step[trying[~accepted]] *= 0.5
        step[pending] = 0.0
        move = step[:, None] * delta
        self.theta = theta0 + move
        self.gradient = gradient + np.einsum("kpq,kq->kp", hessian, move)
        self.hessian = hessian


def _softmax_hessian(X, mean, scale, proba, row_weights):
    """Hessian of ``sum_i w_i CE(softmax([z_i, 1] W))`` in ``W`` (d + 1, C), flattened row-major.

    ``z_i = (x_i - mean) / scale``; ``proba`` (n, C) holds the softmax at
    ``W``. The Hessian is ``sum_i w_i ([z_i, 1] [z_i, 1]^T) kron (diag(p_i) -
    p_i p_i^T)``: block ``(c, c')`` of the classes is ``Z1^T diag(w
    (delta_cc' p_c - p_c p_c')) Z1``, with ``Z1 = [Z, 1]``, summed over
    blocks of rows so that no temporary grows with the chunk.
    """
    n_samples, n_features = X.shape
    n_classes = proba.shape[1]
    hessian = np.zeros((n_features + 1, n_classes, n_features + 1, n_classes))
    for start in range(0, n_samples, _HESSIAN_BLOCK_ROWS):
        rows = slice(start, start + _HESSIAN_BLOCK_ROWS)
        Z1 = np.empty((X[rows].shape[0], n_features + 1))
        np.subtract(X[rows], mean, out=Z1[:, :n_features])
        Z1[:, :n_features] /= scale
        Z1[:, n_features] = 1.0
        p, w = proba[rows], row_weights[rows]
        for c in range(n_classes):
            for other in range(c, n_classes):
                curvature = -p[:, c] * p[:, other]
                if other == c:
                    curvature += p[:, c]
                curvature *= w
                block = (Z1 * curvature[:, None]).T @ Z1
                hessian[:, c, :, other] += block
                if other != c:
                    hessian[:, other, :, c] += block
    size = (n_features + 1) * n_classes
    return hessian.reshape(size, size)


# ----------------------------------------------------------------------
# The experts
# ----------------------------------------------------------------------


def _refit_weights(estimator, chunk, resp):
    """The experts' refit weights ``w_i r_ik``, 0 up to ``min_responsibility`` (as in fit)."""
    weights = np.empty_like(resp)
    counts = np.empty(resp.shape[1], dtype=np.intp)
    responsibility_weights(
        np.ascontiguousarray(resp),
        chunk.sample_weight,
        estimator.min_responsibility,
        weights,
        counts,
        chunk.n_threads,
    )
    return weights


class _LinearGaussianExperts:
    """Running sufficient statistics of the regressor's linear-Gaussian experts."""

    def __init__(self, estimator, chunk):
        X, y, weights = chunk.expert_array, chunk.y_code, chunk.sample_weight
        n_experts, width = estimator.n_experts, X.shape[1] + 1
        self.centre = np.append(weights @ X, weights @ y) / chunk.weight
        self.mass = np.zeros(n_experts)  # per unit weight: sum_i w_i r_ik
        self.sums = np.zeros((n_experts, width))  # sum_i w_i r_ik (z_i - centre)
        self.products = np.zeros((n_experts, width, width))  # ... (z_i - centre)(z_i - centre)^T
        self.rows_seen = 0  # for LinearRegression's singular_, which keeps min(n, d) values

    def update(self, estimator, chunk, resp, outputs, eta, seen_weight):
        """Average in the chunk's statistics; refit the experts; return the noise variances.

        ``outputs`` is unused: the statistics are the data's.
        """
        X, y = chunk.expert_array, chunk.y_code
        self.rows_seen += X.shape[0]
        weights = _refit_weights(estimator, chunk, resp)
        mass, sums, products, _ = least_squares_moments(
            X, y, weights, self.centre, chunk.n_threads
        )
        self.mass += eta * (mass / chunk.weight - self.mass)
        self.sums += eta * (sums / chunk.weight - self.sums)
        self.products += eta * (products / chunk.weight - self.products)
        names = _get_feature_names(chunk.expert)
        variance = estimator._likelihood_params["variance"].copy()
        floor = estimator._likelihood.variance_floor
        for k, expert in enumerate(estimator.experts_):
            if self.mass[k] > 0:  # else the expert has never had weight: it stays
                variance[k] = self._refit(expert, k, seen_weight, floor)
            if names is not None:
                expert.feature_names_in_ = names
        return {"variance": variance}

    def _refit(self, expert, k, seen_weight, floor):
        """Expert ``k``'s weighted least squares from the averages; return its noise variance.

        The averages are per unit weight: scaled to the weight of all the rows
        seen, they are the moments a batch fit of those rows would sum (the
        penalty then weighs against the expert's mass in all of them).
        """
        rows = slice(k, k + 1)
        coef, intercept, gram, rss = least_squares_from_moments(
            self.mass[rows] * seen_weight,
            self.sums[rows] * seen_weight,
            self.products[rows] * seen_weight,
            self.centre,
            [getattr(expert, "alpha", 0.0)],
            [expert.fit_intercept],
        )
        # LinearRegression's singular values: of the weighted X, over all rows seen.
        set_least_squares_attributes(expert, coef[0], intercept[0], gram[0], self.rows_seen)
        return max(float(rss[0] / (self.mass[k] * seen_weight)), floor)


class _LogisticExperts:
    """Running quadratic models of the classifier's multinomial logistic experts.

    Expert k's parameters are those of the features standardised with the
    first chunk's weighted means (0 without an intercept) and spreads, laid
    out as :class:`skmoe._multinomial._GroupedProblem` does: the (d, C)
    coefficients row-major, then the C intercepts.
    """

    def __init__(self, estimator, chunk):
        X = chunk.expert_array
        classes, experts = estimator.classes_, estimator.experts_
        n_features, n_classes = X.shape[1], classes.shape[0]
        mean, self.scale = weighted_mean_scale(X, chunk.sample_weight)
        self.C, self.fit_intercept, penalty = [], [], []
        for expert in experts:
            if isinstance(expert, LogisticRegression):
                settings = logistic_regression_settings(expert, n_classes)
                self.C.append(settings["C"])
                self.fit_intercept.append(settings["fit_intercept"])
                penalty.append(self.scale**-2)  # on the raw coefficients
            else:
                self.C.append(expert.C)
                self.fit_intercept.append(True)
                penalty.append(np.ones(n_features))  # on the standardised coefficients
        self.C = np.array(self.C, dtype=np.float64)
        self.fit_intercept = np.array(self.fit_intercept)
        inverse_C = np.where(np.isfinite(self.C), 1.0 / self.C, 0.0)
        # Per coefficient of the (d, C) layout, times 1 / (rows seen) at each chunk.
        self.penalty = np.repeat(np.array(penalty) * inverse_C[:, None], n_classes, axis=1)
        self.mean = np.where(self.fit_intercept[:, None], mean, 0.0)
        theta = np.array(
            [self._pack(k, *_symmetric(expert, classes, X)) for k, expert in enumerate(experts)]
        )
        fixed = np.zeros(theta.shape, dtype=bool)
        fixed[~self.fit_intercept, n_features * n_classes :] = True
        self.model = _Quadratic.at(theta, fixed)
        self._install(estimator, chunk)

    def _pack(self, k, coef, intercept):
        """Expert k's (C, d) coefficients and (C,) intercepts in input units -> parameters."""
        std_coef = coef.T * self.scale[:, None]
        return np.concatenate([std_coef.ravel(), intercept + coef @ self.mean[k]])

    def _unpack(self, k, theta):
        n_features = self.scale.shape[0]
        n_classes = theta.shape[0] // (n_features + 1)
        coef = theta[: n_features * n_classes].reshape(n_features, n_classes).T / self.scale
        intercept = theta[n_features * n_classes :] - coef @ self.mean[k]
        return np.ascontiguousarray(coef), intercept

    def update(self, estimator, chunk, resp, outputs, eta, seen_weight):
        """One Newton step of every expert's running objective; return the (no) parameters.

        ``outputs`` (n, K, C) are the experts' class probabilities on the chunk.
        """
        X, codes = chunk.expert_array, chunk.y_code
        n_classes = estimator.classes_.shape[0]
        n_coef = X.shape[1] * n_classes
        weights = _refit_weights(estimator, chunk, resp)
        mass = weights.sum(axis=0)
        active = np.flatnonzero(mass > 0)  # an expert without weight has a zero loss
        position = np.full(mass.shape[0], -1)
        position[active] = np.arange(active.size)
        problem = None
        if active.size:  # the experts' own loss (and kernel), their penalties added here
            problem = _GroupedProblem(
                X,
                codes,
                n_classes,
                weights[:, active],
                np.inf,
                self.mean[active],
                self.scale,
                self.fit_intercept[active],
                precondition=False,
            )
        penalty = self.penalty / seen_weight

        def objective(theta, problems):
            values = 0.5 * np.einsum(
                "kp,kp->k", penalty[problems] * theta[:, :n_coef], theta[:, :n_coef]
            )
            gradients = np.zeros_like(theta)
            gradients[:, :n_coef] = penalty[problems] * theta[:, :n_coef]
            inside = position[problems] >= 0
            if inside.any():
                loss, gradient = problem.objective(theta[inside], position[problems][inside])
                share = mass[problems][inside] / chunk.weight  # per sample -> per unit weight
                values[inside] += share * loss
                gradients[inside] += share[:, None] * gradient
            return values, gradients

        hessians = np.zeros(self.model.hessian.shape)
        for k in active:
            hessians[k] = _softmax_hessian(
                X, self.mean[k], self.scale, outputs[:, k], weights[:, k]
            )
        hessians /= chunk.weight
        for k in range(hessians.shape[0]):
            hessians[k][np.diag_indices(n_coef)] += penalty[k]
        self.model.newton_step(eta, objective, hessians, n_classes)
        self._install(estimator, chunk)
        return {}

    def _install(self, estimator, chunk):
        """Write the parameters into the experts, as their own ``fit`` would set them."""
        classes = estimator.classes_
        names = _get_feature_names(chunk.expert)
        for k, expert in enumerate(estimator.experts_):
            coef, intercept = self._unpack(k, self.model.theta[k])
            if isinstance(expert, LogisticRegression):
                set_logistic_regression_attributes(expert, classes, coef, intercept, 1)
            else:
                expert.classes_, expert.coef_, expert.intercept_ = classes, coef, intercept
                expert.n_iter_ = 1
            expert.n_features_in_ = coef.shape[1]
            if names is not None:
                expert.feature_names_in_ = names


def _symmetric(expert, classes, X):
    """A fitted logistic expert's (C, d) coefficients and (C,) intercepts over all ``classes``.

    Symmetric (one row per class, also for two). A class the expert never
    saw gets zero coefficients and a probability of at most ``1 / n_rows``
    on every row of the chunk ``X``: its logit is the lowest over the rows of
    their largest logit, less ``log(n_rows)``. (Below the largest intercept
    instead, it took 0.11 on a row where the seen classes' logits were all low.)
    """
    n_rows, n_features = X.shape
    if isinstance(expert, LogisticRegression):
        coef, intercept = logistic_regression_start(
            expert, expert.classes_, n_features, force=True
        )
    else:
        coef, intercept = expert.coef_, expert.intercept_
    if np.array_equal(expert.classes_, classes):
        return np.array(coef, dtype=np.float64), np.array(intercept, dtype=np.float64)
    full_coef = np.zeros((classes.shape[0], n_features))
    lowest_top = np.min(np.max(X @ np.asarray(coef).T + intercept, axis=1))
    full_intercept = np.full(classes.shape[0], lowest_top - np.log(n_rows))
    seen = np.searchsorted(classes, expert.classes_)
    full_coef[seen], full_intercept[seen] = coef, intercept
    return full_coef, full_intercept
