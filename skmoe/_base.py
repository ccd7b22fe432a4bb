"""The EM engine shared by the mixture-of-experts regressor and classifier.

Model: ``p(y | x) = sum_k g_k(x) p_k(y | x)``, a gate ``g`` (see
:mod:`skmoe.gates`) over experts ``p_k`` (user estimators scored by a
likelihood, see :mod:`skmoe.likelihoods`).

One EM start runs::

    R0 = initial responsibilities            (k-means, random or given)
    M-step(R0); E-step -> R, log-likelihood L
    repeat until |change in L| < tol or max_iter:
        M-step(R)  improve the gate on soft targets R, warm-started
                   route: each row to its top_k experts under the new gate (or all)
                   refit expert k with weights w * R[:, k] on the rows where
                   R[:, k] > min_responsibility (experts in parallel, or all
                   at once by a batch fitter, see skmoe._batch), then
                   evaluate each on its routed rows (in parallel too)
                   re-estimate the likelihood's parameters (noise variances)
        E-step     R, L from the compiled kernel

so every recorded ``L`` belongs to the parameters current at that point.
``n_init`` starts run and the one with the best final ``L`` is kept.
Subclasses provide the expert likelihood, target encoding and ``predict``.
"""

import copy
import functools
import math
import time
import warnings
from abc import ABCMeta, abstractmethod
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import MetaEstimatorMixin, _fit_context, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import (
    _check_sample_weight,
    _check_y,
    _get_feature_names,
    check_consistent_length,
    check_is_fitted,
)

from ._batch import batch_class
from ._complexity import n_parameters
from ._experts import (
    check_experts,
    evaluate_expert,
    fit_expert,
    linear_parameters,
    make_experts,
    seed_random_states,
    set_linear_parameters,
)
from ._features import resolve_columns, take_columns, take_rows
from ._initialization import (
    initial_responsibilities,
    jittered,
    residual_responsibilities,
    residual_tree_responsibilities,
)
from ._inputs import (
    check_experts_accept,
    expert_accepts,
    fit_gate_encoder,
    gate_feature_names,
    gate_input,
    gate_view,
    has_missing,
    validate_X,
)
from ._joblib_dask import ship_once
from ._kernels import responsibility_weights
from ._routing import evaluate_routes, routed_logits, routes, scatter_routes
from ._stats import weighted_mean_scale
from ._threads import blas_limited_to, blas_threads, kernel_threads, single_threaded_blas
from ._warnings import warn
from .exceptions import ExpertCollapseWarning, ExpertFitError
from .gates import GATES, BaseGate, make_gate

# An expert whose responsibility mass is below this many average samples has
# collapsed: it explains (almost) nothing and its weighted refit is degenerate.
_COLLAPSE_MASS_IN_SAMPLES = 0.5

# The starts ``init`` names (see _initial_responsibilities).
_STARTS = ("kmeans", "random", "residuals", "residual_tree", "softmax")

# init="auto" with n_init > 1: the gate's own start first, then these in turn.
_PORTFOLIO = ("residuals", "random", "residual_tree", "kmeans")

# With n_init > 1, every start runs this many EM iterations; the best of
# them then runs to convergence (Biernacki, Celeux & Govaert 2003).
_SHORT_RUN = 20

# EM's slow tail: its gains shrink by less than this ratio per step. There the
# gate and the experts are solved as precisely as EM asks and EM is
# accelerated; before, the gate takes at most _EARLY_GATE_STEPS L-BFGS steps
# per M-step, and an iterative batch refit _EARLY_EXPERT_STEPS Newton steps
# (both generalised EM steps: the responsibilities move a lot, so precise
# refits would be thrown away; measured, a 3-start, 3-class classifier fit
# on 20,000 rows took 1.13 s against 1.37 s, to the same optimum).
_SLOW_RATIO = 0.5
_EARLY_GATE_STEPS = 3
_EARLY_EXPERT_STEPS = 1


def _entered_tail(history):
    """Whether the last step of the log-likelihood ``history`` is one of EM's slow tail.

    The tail: gains that shrink, by less than half per step. Before it, the
    gate takes a few steps per M-step and EM is not accelerated: the experts
    lead while the responsibilities move a lot (a gate solved fully this
    early locks in the start's partition: measured on 300 rows, 3 regimes, a
    mean log-likelihood of -3.01 instead of -1.99 from the same start). In
    it, the gate is solved further and SQUAREM extrapolates. Once in the
    tail, EM stays there.
    """
    if len(history) < 3:
        return False
    gain, before = history[-1] - history[-2], history[-2] - history[-3]
    return 0 < gain < before and gain >= _SLOW_RATIO * before


def _reached_tail(history):
    """Whether EM reached its slow tail anywhere in ``history`` (a resumed fit's)."""
    return any(_entered_tail(history[end - 2 : end + 1]) for end in range(2, len(history)))


# SQUAREM's bound on its step length grows (and shrinks) by this factor
# (Varadhan & Roland 2008, the "mstep" of their SQUAREM package).
_STEP_GROWTH = 4.0

# Below this many entries in X times n_experts, experts refit with one BLAS thread.
_MIN_ENTRIES_FOR_THREADED_BLAS = 1 << 22


def _expert_blas_threads(n_entries):
    """BLAS threads for the user's experts' refits; EM's own work runs with one.

    EM's own matrix products (gate logits, batch refits) read X once each and
    are bound by memory, and its kernels thread with OpenMP: BLAS threads
    there only contend with the kernels' threads for the cores (measured on
    2 cores, 1e6 x 20, K=8: a fit took 14.1 s with BLAS threads, 11.5 s
    without).  An expert's own fit (a least-squares solve, say) may gain
    from them, but on small data waking them costs more than they save
    (a 10,000-row fit ran 3.5x faster with one BLAS thread).
    """
    if n_entries >= _MIN_ENTRIES_FOR_THREADED_BLAS:
        return blas_threads()
    return 1


def _keep(expert):
    """A task that returns the expert unchanged (keeps task order with the others)."""
    return expert


def _as_index(mask):
    """A boolean row mask as an index; all rows become a slice (a view, no copy)."""
    return slice(None) if mask.all() else mask


def _on_dask(X):
    """Whether ``X`` is a Dask collection (checked without importing Dask)."""
    return type(X).__module__.partition(".")[0] == "dask"


def _blockwise(method):
    """Run ``method`` partition by partition when ``X`` is a Dask collection.

    The result is then a Dask collection too (see :mod:`skmoe._dask`).
    """

    @functools.wraps(method)
    def wrapper(self, X, *args, **kwargs):
        if _on_dask(X):
            from ._dask import map_partitions

            return map_partitions(self, method, X, *args, **kwargs)
        return method(self, X, *args, **kwargs)

    return wrapper


@dataclass
class _Inputs:
    """``X`` as each part sees it (see :mod:`skmoe._inputs`)."""

    given: object  # validated X as the user gave it: array, CSR or DataFrame
    gate: object  # the gate's numeric view: dense float64 or CSR
    expert: object  # the experts' columns of ``given``
    expert_array: np.ndarray = None  # the same as dense float64, when it exists


@dataclass
class _FitData:
    """Everything an EM start reads; built once per ``fit``."""

    X: _Inputs
    y_fit: np.ndarray  # target as the experts see it
    y_code: np.ndarray  # target as the likelihood scores it
    sample_weight: np.ndarray
    likelihood: object
    names: list  # the experts' names, for error messages
    parallel: Parallel
    n_threads: int  # OpenMP threads for the kernels
    expert_blas_threads: int  # BLAS threads for the user's experts (EM's own work: 1)
    validation: "_FitData" = None  # held-out rows for early stopping
    single_expert_residual: np.ndarray = None  # for the starts from residuals
    units: tuple = None  # (x_scale, y_scale) for EM's accelerator, see _units


@dataclass
class _EMState:
    """The parameters of one EM start and its bookkeeping."""

    experts: list
    gate: BaseGate
    logits: np.ndarray = None  # routed gate logits: -inf where a row skips an expert
    outputs: np.ndarray = None  # expert outputs on their routed rows, 0 elsewhere
    params: dict = None
    resp: np.ndarray = None
    row_log_lik: np.ndarray = None
    log_likelihood: float = -np.inf
    history: list = field(default_factory=list)
    validation_history: list = field(default_factory=list)
    n_iter: int = 0  # M-steps so far (an accelerated cycle makes two or three)
    converged: bool = False
    reseeds_left: int = 0
    step_max: float = 1.0  # SQUAREM's current bound on its step length
    in_tail: bool = False  # EM has reached its slow tail (see _em_step)
    start: str = "resume"  # how this run started, for init_methods_

    def snapshot(self):
        """A copy of the parameters that later iterations cannot change."""
        kept = copy.copy(self)
        kept.experts = copy.deepcopy(self.experts)
        kept.gate = copy.deepcopy(self.gate)
        kept.history = list(self.history)
        kept.validation_history = list(self.validation_history)
        return kept

    def parameter_vector(self, units):
        """Gate, experts and likelihood parameters as one vector; None if some are not.

        ``units`` is ``(x_scale, y_scale)``, the spreads of the experts'
        features and target, in which linear experts' parameters are
        expressed (see ``linear_parameters``); the gate's are standardised by
        the gate itself. Likelihood parameters (noise variances) are positive
        and enter as logarithms, so an extrapolation keeps them positive.
        """
        parts = [self.gate._parameter_vector()]
        parts += [linear_parameters(expert, *units) for expert in self.experts]
        if any(part is None for part in parts):
            return None
        parts += [np.log(np.ravel(value)) for value in self.params.values()]
        return np.concatenate(parts)

    def set_parameter_vector(self, vector, units):
        """Set the parameters from a vector of ``parameter_vector``'s layout."""
        sizes = [self.gate._parameter_vector().size]
        sizes += [linear_parameters(expert, *units).size for expert in self.experts]
        sizes += [np.size(value) for value in self.params.values()]
        parts = np.split(vector, np.cumsum(sizes)[:-1])
        self.gate._set_parameter_vector(parts[0])
        for expert, part in zip(self.experts, parts[1:]):
            set_linear_parameters(expert, part, *units)
        log_params = parts[1 + len(self.experts) :]
        self.params = {
            name: np.exp(part).reshape(np.shape(value))
            for (name, value), part in zip(self.params.items(), log_params)
        }


class BaseMixtureOfExperts(MetaEstimatorMixin, _BaseComposition, metaclass=ABCMeta):
    """Base class for mixtures of experts trained by EM. Not for direct use."""

    _parameter_constraints: dict = {
        "n_experts": [Interval(Integral, 1, None, closed="left")],
        "estimator": [HasMethods(["fit"]), list, None],
        "gate": [StrOptions(set(GATES)), BaseGate],
        "gate_features": ["array-like", None],
        "expert_features": ["array-like", None],
        "init": [StrOptions(set(_STARTS) | {"auto"}), "array-like"],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "accelerate": ["boolean"],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "top_k": [Interval(Integral, 1, None, closed="left"), None],
        "min_responsibility": [Interval(Real, 0, 1, closed="left")],
        "min_expert_share": [Interval(Real, 0, 1, closed="left")],
    }

    # Not abstract: the classifier has exactly these parameters and inherits
    # this __init__; the regressor adds its own.
    def __init__(
        self,
        n_experts=2,
        *,
        estimator=None,
        gate="softmax",
        gate_features=None,
        expert_features=None,
        init="auto",
        n_init=1,
        max_iter=100,
        tol=1e-4,
        accelerate=True,
        random_state=None,
        n_jobs=None,
        verbose=0,
        warm_start=False,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        top_k=None,
        min_responsibility=1e-3,
        min_expert_share=0.0,
    ):
        self.n_experts = n_experts
        self.estimator = estimator
        self.gate = gate
        self.gate_features = gate_features
        self.expert_features = expert_features
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.accelerate = accelerate
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.warm_start = warm_start
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.top_k = top_k
        self.min_responsibility = min_responsibility
        self.min_expert_share = min_expert_share

    # ------------------------------------------------------------------
    # Hooks for the regressor and the classifier
    # ------------------------------------------------------------------

    @abstractmethod
    def _default_expert(self):
        """The expert used when ``estimator`` is None."""

    @abstractmethod
    def _prepare_target(self, y, sample_weight, **target):
        """Validate ``y`` at fit; set target-dependent fitted attributes.

        ``target`` holds per-row companions of ``y`` that ``fit`` takes
        (the regressor's ``exposure``). Returns ``(y_fit, y_code,
        likelihood)``: the target for the experts, the target for the
        likelihood, and the likelihood object.
        """

    @abstractmethod
    def _encode_target(self, y):
        """The target as the likelihood scores it, for a fitted model."""

    def _init_target_columns(self, y_code):
        """Columns of the target that k-means clusters on beside the gate features."""
        return np.zeros((y_code.shape[0], 0))

    def _store_likelihood_params(self, params):
        """Expose the likelihood's fitted parameters (e.g. ``noise_variance_``)."""

    # ------------------------------------------------------------------
    # Composition: nested parameters of a list of (name, estimator) experts
    # ------------------------------------------------------------------

    def get_params(self, deep=True):
        """Get parameters for this estimator.

        With a list of ``(name, estimator)`` experts, each one's parameters
        are reachable as ``<name>__<param>``.

        Parameters
        ----------
        deep : bool, default=True
            If True, include the parameters of the experts and the gate.

        Returns
        -------
        params : dict
            Parameter names mapped to their values.
        """
        return self._get_params("estimator", deep=deep)

    def set_params(self, **params):
        """Set the parameters of this estimator (and of nested experts and gate).

        A gate given by name takes nested parameters too:
        ``set_params(gate="tree", gate__max_depth=3)``, or ``gate__max_depth=3``
        on a model whose ``gate`` is ``"tree"``, replaces the name by
        ``TreeGate(max_depth=3)``, so ``GridSearchCV`` can search them.

        Parameters
        ----------
        **params : dict
            Estimator parameters.

        Returns
        -------
        self : object
            The estimator.
        """
        gate = params.get("gate", self.gate)
        if (
            isinstance(gate, str)
            and gate in GATES
            and any(key.startswith("gate__") for key in params)
        ):
            params["gate"] = make_gate(gate)
        self._set_params("estimator", **params)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Missing values and sparse input reach the experts as they are, so
        # the mixture takes them when all its experts do (the gate takes both).
        try:
            named = check_experts(
                self.estimator, self.n_experts, self._default_expert(), self._expert_method
            )
            accepted = [expert_accepts(expert) for _, expert in named]
        except (TypeError, ValueError, AttributeError):  # invalid until fit says why
            accepted = [(False, False, False, False)]
        tags.input_tags.allow_nan = all(kinds[0] for kinds in accepted)
        tags.input_tags.sparse = all(kinds[1] for kinds in accepted)
        return tags

    # ------------------------------------------------------------------
    # fit
    # ------------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None):
        """Fit the mixture of experts by EM.

        A fit is all or nothing: if it raises (or is interrupted), the
        estimator keeps the fitted state it had before, or stays unfitted.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Training data. Missing values, sparse matrices and pandas
            categorical columns reach each expert as they are, if it takes
            them; the gate gets a numeric view (see the user guide).
        y : array-like of shape (n_samples,)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; EM maximises the weighted log-likelihood.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit_all_or_nothing(X, y, sample_weight)

    def _fit_all_or_nothing(self, X, y, sample_weight, **target):
        """``_fit``, or on error the state from before; ``target``: see ``_prepare_target``."""
        previous = dict(self.__dict__)
        try:
            if _on_dask(X):
                from ._dask import fit_dask  # EM by map-reduce over the partitions

                given = [name for name, value in target.items() if value is not None]
                if given:
                    raise ValueError(
                        f"{given[0]} is not supported on Dask collections; fit "
                        "in memory, or model the rate without it."
                    )
                return fit_dask(self, X, y, sample_weight)
            return self._fit(X, y, sample_weight, **target)
        except BaseException as error:  # KeyboardInterrupt included
            self.__dict__.clear()
            self.__dict__.update(previous)
            if hasattr(error, "add_note"):  # Python >= 3.11
                kept = "its previous fit" if "experts_" in previous else "unfitted"
                error.add_note(
                    f"{type(self).__name__}.fit did not finish; the estimator "
                    f"is left as it was before ({kept})."
                )
            raise

    def _partial_fit(self, X, y, sample_weight, classes):
        """One step of online EM on a chunk of rows, all or nothing (see skmoe._online)."""
        previous = copy.deepcopy(self.__dict__)  # the step updates fitted objects in place
        try:
            from ._online import partial_fit_step

            return partial_fit_step(self, X, y, sample_weight, classes)
        except BaseException as error:
            self.__dict__.clear()
            self.__dict__.update(previous)
            if hasattr(error, "add_note"):
                error.add_note(
                    f"{type(self).__name__}.partial_fit did not finish; the "
                    "estimator is left as it was before this chunk."
                )
            raise

    def _fit(self, X, y, sample_weight, **target):
        warm = self.warm_start and hasattr(self, "converged_")
        # A warm start continues the fitted model, so X must have its columns.
        X_given, X_array = validate_X(self, X, reset=not warm)
        y = _check_y(y, y_numeric=self._y_numeric, estimator=self)
        check_consistent_length(X_given, y)
        n_samples = X_given.shape[0]
        self._check_top_k(fitting=True)
        if self.n_experts > n_samples:
            raise ValueError(
                f"n_experts={self.n_experts} is larger than n_samples={n_samples}; "
                "use at most one expert per sample (in practice far fewer)."
            )
        sample_weight = _check_sample_weight(
            sample_weight, X_given, dtype=np.float64, ensure_non_negative=True
        )
        if sample_weight.sum() <= 0:  # scikit-learn >= 1.7 raises this itself
            raise ValueError("sample_weight sums to zero; give some samples positive weight.")
        y_fit, y_code, likelihood = self._prepare_target(y, sample_weight, **target)

        named_experts = check_experts(
            self.estimator, self.n_experts, self._default_expert(), self._expert_method
        )
        if isinstance(self.estimator, list):
            self._validate_names([name for name, _ in named_experts])
        n_features = X_given.shape[1]
        names = getattr(self, "feature_names_in_", None)
        gate_features = resolve_columns(self.gate_features, n_features, names, "gate_features")
        expert_features = resolve_columns(
            self.expert_features, n_features, names, "expert_features"
        )
        if expert_features.size == 0:
            raise ValueError("expert_features selects no column; experts need at least one.")
        X_expert = take_columns(X_given, expert_features)
        check_experts_accept(named_experts, X_expert)
        gate_accepts_nan = getattr(make_gate(self.gate), "_accepts_nan", False)
        X_gate = take_columns(X_given, gate_features)
        gate_encoder = self.gate_encoder_ if warm else fit_gate_encoder(X_gate, gate_accepts_nan)
        inputs = _Inputs(
            given=X_given,
            gate=gate_input(gate_encoder, X_given, X_array, gate_features, gate_accepts_nan),
            expert=X_expert,
            expert_array=None if X_array is None else take_columns(X_array, expert_features),
        )

        random_state = check_random_state(self.random_state)
        expert_blas_threads = _expert_blas_threads(n_samples * n_features * self.n_experts)
        # One worker pool (and, on Dask, one shipment of the data) per fit.
        with (
            ship_once(X_expert, y_fit),
            Parallel(n_jobs=self.n_jobs) as parallel,
            single_threaded_blas(),
        ):
            data = _FitData(
                X=inputs,
                y_fit=y_fit,
                y_code=y_code,
                sample_weight=sample_weight,
                likelihood=likelihood,
                names=[name for name, _ in named_experts],
                parallel=parallel,
                n_threads=kernel_threads(n_samples * self.n_experts),
                expert_blas_threads=expert_blas_threads,
            )
            if self.early_stopping:
                data = self._hold_out(data, random_state)
            if warm:
                runs = [self._resume(data)]
                best = runs[0]
            else:
                runs, best = self._run_starts(data, named_experts, random_state)

        if not best.converged:
            warn(
                f"EM did not converge in max_iter={self.max_iter} iterations (best of "
                f"{len(runs)} start(s); last change in mean log-likelihood "
                f"{best.history[-1] - best.history[-2]:.3g}, tol={self.tol}, or more still "
                "ahead). Increase max_iter, loosen tol, scale the features, or try another "
                "init.",
                ConvergenceWarning,
            )
        # Everything fit learned is installed here, at the end, and only here.
        gate_names = gate_feature_names(gate_encoder, X_gate)
        if gate_names is not None:
            best.gate.feature_names_in_ = gate_names
        weights = data.sample_weight
        self._set_fitted(
            best,
            runs,
            likelihood,
            gate_features,
            expert_features,
            gate_encoder,
            (weights @ best.resp) / weights.sum(),
        )
        if self.early_stopping:
            self.validation_log_likelihood_history_ = np.asarray(best.validation_history)
        return self

    def _set_fitted(
        self, best, runs, likelihood, gate_features, expert_features, gate_encoder, expert_share
    ):
        """Set the fitted attributes from the best run's state (``_EMState``) and the fit's.

        Called at the end of a fit, in memory or on a Dask collection, and
        nowhere else: a fit that fails leaves no attribute half set.
        """
        self.gate_features_ = gate_features
        self.expert_features_ = expert_features
        self.gate_encoder_ = gate_encoder
        self._likelihood = likelihood
        self._likelihood_params = best.params
        self._store_likelihood_params(best.params)
        self.experts_ = best.experts
        self.gate_ = best.gate
        self.n_iter_ = best.n_iter
        self.converged_ = best.converged
        self.log_likelihood_ = best.log_likelihood
        self.log_likelihood_history_ = np.asarray(best.history)
        self.init_log_likelihoods_ = np.array([run.log_likelihood for run in runs])
        self.init_methods_ = np.array([run.start for run in runs], dtype=object)
        self.expert_share_ = expert_share

    def _hold_out(self, data, random_state):
        """Split off ``validation_fraction`` of the rows for early stopping.

        Stratified by class for classification, as HistGradientBoosting does.
        Returns the training data with the held-out rows in ``validation``.
        """
        rows = np.arange(data.y_code.shape[0])
        stratify = data.y_code if not self._y_numeric else None
        try:
            train, held = train_test_split(
                rows,
                test_size=self.validation_fraction,
                stratify=stratify,
                random_state=random_state.randint(np.iinfo(np.int32).max),
            )
        except ValueError as error:
            raise ValueError(
                f"early_stopping cannot hold out validation_fraction="
                f"{self.validation_fraction} of {rows.size} samples ({error}); use more "
                "samples, a larger validation_fraction, or early_stopping=False."
            ) from error
        train, held = np.sort(train), np.sort(held)

        def subset(rows):
            X = data.X
            return _Inputs(
                given=take_rows(X.given, rows),
                gate=take_rows(X.gate, rows),
                expert=take_rows(X.expert, rows),
                expert_array=None if X.expert_array is None else X.expert_array[rows],
            )

        validation = copy.copy(data)
        validation.X, validation.y_code = subset(held), data.y_code[held]
        validation.y_fit, validation.sample_weight = data.y_fit[held], data.sample_weight[held]
        training = copy.copy(data)
        training.X, training.y_code = subset(train), data.y_code[train]
        training.y_fit, training.sample_weight = data.y_fit[train], data.sample_weight[train]
        training.validation = validation
        return training

    def _run_starts(self, data, named_experts, random_state):
        """Run the ``n_init`` starts; return each start's last state, and the kept one.

        One start runs to convergence. Several first run ``_SHORT_RUN``
        iterations each, and the best of them continues to convergence (the
        "em-EM" of Biernacki, Celeux & Govaert 2003): starts in poor basins
        are dropped early, so ``n_init`` can be large. Continuing the best
        half instead reached the same optima on every hard case of
        ``benchmarks/bench_optimum.py`` and took 1.6x the time of a 3-start
        classifier fit (the second start's continuation). With early
        stopping every start runs in full, as its held-out record is one run's.

        The kept start is the one of highest log-likelihood; with short runs,
        the continued one: a paused start that passes it is at the same
        optimum, which the continued one reached within its stopping rule's
        precision (measured: 1e-9 below at ``tol=1e-10``), and would be kept
        unconverged.
        """
        short = self.n_init > 1 and data.validation is None and self.max_iter > _SHORT_RUN
        budget = _SHORT_RUN if short else self.max_iter
        runs = [
            self._start(data, named_experts, random_state, init_index, budget)
            for init_index in range(self.n_init)
        ]
        best = int(np.argmax([run.log_likelihood for run in runs]))
        if short and not runs[best].converged:
            runs[best] = self._iterate(data, runs[best], self.max_iter)
        return runs, runs[best]

    def _start_method(self, init_index):
        """The start ``init`` gives start ``init_index`` (an array for a given start).

        ``"auto"``: the gate's own start first, then in turn starts from
        the residuals of a single expert (by rank, then by a tree over the
        gate's inputs), random responsibilities and k-means, each with its
        own random draws; for a gate that starts from a softmax-gated fit,
        that fit starts from them.
        """
        if not (isinstance(self.init, str) and self.init == "auto"):
            return self.init
        own = make_gate(self.gate)._default_init
        if init_index == 0:
            return own
        method = _PORTFOLIO[(init_index - 1) % len(_PORTFOLIO)]
        return f"softmax({method})" if own == "softmax" else method

    def _start(self, data, named_experts, random_state, init_index, max_iter):
        """Run EM from a fresh start for at most ``max_iter`` iterations."""
        n_samples = data.y_code.shape[0]
        gate = seed_random_states(make_gate(self.gate), random_state)
        method = self._start_method(init_index)
        state = _EMState(
            experts=make_experts(named_experts, random_state),
            gate=gate,
            reseeds_left=self.n_experts,
            start=method if isinstance(method, str) else "given",
        )
        state.gate._initialize(data.X.gate, self.n_experts, data.sample_weight)
        # No row scores exist yet: a collapsed initial expert is re-seeded on random rows.
        state.resp = self._initial_responsibilities(data, named_experts, method, random_state)
        state.row_log_lik = random_state.uniform(size=n_samples)
        self._m_step(data, state, self._revive_collapsed(data, state, 0), 0)
        self._e_step(data, state)
        if self.verbose:
            print(
                f"EM start {init_index} ({state.start}): initial mean log-likelihood "
                f"{state.log_likelihood:.6g}"
            )
        return self._iterate(data, state, max_iter)

    def _initial_responsibilities(self, data, named_experts, init, random_state):
        """Starting responsibilities; k-means' copy of the data is freed on return."""
        if isinstance(init, str) and init.startswith("softmax"):
            inner = init[len("softmax(") : -1] if init.endswith(")") else "kmeans"
            return self._softmax_start(data, random_state, inner)
        X_cluster = data.X.gate
        if X_cluster.shape[1] == 0:  # a gate without inputs: cluster the experts' columns
            X_cluster = gate_view(fit_gate_encoder(data.X.expert, False), data.X.expert, False)
        if isinstance(init, str) and init in ("residuals", "residual_tree"):
            residual = jittered(
                self._single_expert_residual(data, named_experts, random_state), random_state
            )
            if init == "residuals":
                return residual_responsibilities(residual, self.n_experts, data.sample_weight)
            return residual_tree_responsibilities(
                X_cluster, residual, self.n_experts, data.sample_weight, random_state
            )
        # A fresh array either way: k-means standardises it in place.
        target = self._init_target_columns(data.y_code)
        if sp.issparse(X_cluster):
            cluster_columns = sp.hstack([X_cluster, target], format="csr")
        else:
            cluster_columns = np.hstack([X_cluster, target])
        return initial_responsibilities(
            init, cluster_columns, self.n_experts, data.sample_weight, random_state
        )

    def _single_expert_residual(self, data, named_experts, random_state):
        """How far each row lies from the first expert fitted to all rows (computed once)."""
        if data.single_expert_residual is None:
            expert = make_experts(named_experts[:1], random_state)[0]
            with blas_limited_to(data.expert_blas_threads):
                expert = fit_expert(
                    expert,
                    data.X.expert,
                    data.y_fit,
                    data.sample_weight,
                    slice(None),
                    data.names[0],
                    0,
                )
                output = evaluate_expert(
                    expert,
                    data.X.expert,
                    slice(None),
                    data.likelihood.expert_output,
                    data.names[0],
                    0,
                )
            data.single_expert_residual = data.likelihood.residual(data.y_code, output)
        return data.single_expert_residual

    def _softmax_start(self, data, random_state, init):
        """Responsibilities of a softmax-gated fit of the same experts, started by ``init``.

        Gates that cut the space into hard regions keep the partition they
        start from; a softmax-gated mixture finds the experts first.
        """
        warm_up = clone(self).set_params(
            gate="softmax",
            init=init,
            n_init=1,
            warm_start=False,
            verbose=0,
            early_stopping=False,
            random_state=int(random_state.randint(np.iinfo(np.int32).max)),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warm_up.fit(data.X.given, data.y_fit, sample_weight=data.sample_weight)
        resp, _ = warm_up._posterior(warm_up._check_X(data.X.given), data.y_code)
        return resp

    def _resume(self, data):
        """Continue EM from the fitted model (``warm_start=True``), on copies of it.

        The history continues too, so that on the same data the next steps
        are those an uninterrupted fit would take (the gate's precision
        follows EM's last change, and its solver whether EM has reached its
        tail); the log-likelihood on new data is added to it.
        """
        history = list(self.log_likelihood_history_)
        state = _EMState(
            experts=copy.deepcopy(self.experts_),
            gate=copy.deepcopy(self.gate_),
            params=self._likelihood_params,
            reseeds_left=self.n_experts,
            history=history,
            in_tail=_reached_tail(history),
        )
        self._evaluate(data, state)
        self._e_step(data, state, record=False)
        if state.log_likelihood != state.history[-1]:
            state.history.append(state.log_likelihood)
        return self._iterate(data, state, self.max_iter)

    def _evaluate(self, data, state):
        """The routed gate logits and expert outputs of the state's parameters."""
        logits = state.gate._logits(data.X.gate)
        state.logits = routed_logits(logits, self.top_k)
        batch = batch_class(state.experts) if data.likelihood.batch_predictions else None
        if state.logits is logits and batch is not None and data.X.expert_array is not None:
            state.outputs = data.likelihood.batch_outputs(
                batch, state.experts, data.X.expert_array
            )
            return
        experts, _ = routes(logits, self.top_k)
        state.outputs = scatter_routes(
            experts,
            evaluate_routes(experts, data.likelihood, state.experts, data.X.expert),
            self.n_experts,
            0.0,
        )

    def _iterate(self, data, state, max_iter):
        """EM from a state whose E-step is done, until converged or ``max_iter`` M-steps.

        With early stopping, EM stops once the held-out log-likelihood has
        not improved by more than ``tol`` for ``n_iter_no_change``
        iterations, and the best iterate on the held-out rows is returned.
        """
        started = time.perf_counter()
        best = None
        if data.validation is not None:
            best_score = self._validation_score(data, state)
            state.validation_history.append(best_score)
            best, since_best = state.snapshot(), 0
        # The log-likelihood after each step (or accelerated cycle), for the stopping rule.
        levels = [state.log_likelihood]
        state.converged = False
        while state.n_iter < max_iter:
            state = self._step(data, state, max_iter)
            levels.append(state.log_likelihood)
            change = levels[-1] - levels[-2]
            if self.verbose >= 2 or (self.verbose and len(levels) % 10 == 0):
                self._print_progress(state, change, time.perf_counter() - started)
            if best is not None:
                score = self._validation_score(data, state)
                state.validation_history.append(score)
                if score > best_score + self.tol:
                    best, best_score, since_best = state.snapshot(), score, 0
                else:
                    since_best += 1
                if since_best >= self.n_iter_no_change:
                    state.converged = True
                    break
            if self._converged(levels):
                state.converged = True
                break
        if best is not None:
            # The best iterate on the held-out rows, with the whole run's history.
            best.converged, best.history = state.converged, state.history
            best.validation_history = state.validation_history
            state = best
        if self.verbose:
            status = (
                "converged"
                if state.converged
                else "did not converge"
                if max_iter == self.max_iter
                else "paused (short run)"
            )
            print(
                f"EM {status} after {state.n_iter} iterations "
                f"({time.perf_counter() - started:.3g} s): "
                f"mean log-likelihood {state.log_likelihood:.8g}"
            )
        return state

    def _converged(self, levels):
        """Whether EM has converged, judged on the gain still ahead, not the last change.

        A change below ``tol`` may be a plateau that EM is slowly crossing.
        Near an optimum EM's gains shrink geometrically, by ``rho`` per
        step, so ``change * rho / (1 - rho)`` estimates the gain still to
        come (Aitken's extrapolation; Boehning, Dietz, Schaub, Schlattmann
        & Lindsay 1994). EM stops when the last two changes and that gain
        are below ``tol``: one small change after a large one (EM leaving a
        steep climb for a slow one) gives no reliable ``rho``.
        """
        if len(levels) < 3:
            return False
        change, before = levels[-1] - levels[-2], levels[-2] - levels[-3]
        if abs(change) >= self.tol or abs(before) >= self.tol:
            return False
        if change <= 0 or before <= 0:  # not a geometric climb: the change alone decides
            return True
        rho = change / before
        return rho < 1 and change * rho / (1 - rho) < self.tol

    def _step(self, data, state, max_iter):
        """One EM step, or an accelerated cycle of two or three; return the new state.

        EM's map is accelerated (``_extrapolate``) in its slow tail (see
        ``_em_step``), when every parameter of the model is a vector: a
        softmax or HME gate, linear experts.
        """
        start = None
        if self.accelerate and max_iter - state.n_iter >= 3 and state.in_tail:
            start = state.parameter_vector(self._units(data))
        self._em_step(data, state)
        if start is None:
            return state
        start_log_likelihood = state.history[-2]
        middle = state.parameter_vector(data.units)
        self._em_step(data, state)
        end = state.parameter_vector(data.units)
        if middle is None or end is None or not start.shape == middle.shape == end.shape:
            return state  # an expert changed shape (lost a class, say)
        return self._extrapolate(data, state, start, middle, end, start_log_likelihood)

    def _units(self, data):
        """The spreads of the experts' features and target (computed once per fit)."""
        if data.units is None:
            X = data.X.expert_array if data.X.expert_array is not None else data.X.expert
            if (isinstance(X, np.ndarray) or sp.issparse(X)) and not has_missing(X):
                x_scale = weighted_mean_scale(X, data.sample_weight)[1]
            else:  # mixed columns or NaN: no linear expert takes them anyway
                x_scale = np.ones(X.shape[1])
            y_scale = 1.0
            if self._y_numeric:
                y_scale = weighted_mean_scale(data.y_fit[:, None], data.sample_weight)[1][0]
            data.units = (x_scale, y_scale)
        return data.units

    def _em_step(self, data, state):
        """One M-step and E-step; notes when EM reaches its slow tail."""
        state.n_iter += 1
        resp = self._revive_collapsed(data, state, state.n_iter)
        self._m_step(data, state, resp, state.n_iter)
        self._e_step(data, state)
        state.in_tail = state.in_tail or _entered_tail(state.history)

    def _extrapolate(self, data, state, theta0, theta1, theta2, start_log_likelihood):
        """SQUAREM (Varadhan & Roland 2008, scheme S3) from two EM steps ``theta0 -> theta2``.

        Where EM crawls, its steps shrink along one slow direction: with the
        first step ``r`` and its change ``v``, the step length ``alpha =
        |r| / |v|`` and the point ``theta0 + 2 alpha r + alpha^2 v`` jump
        ahead along it (``alpha = 1`` is ``theta2``, where EM got to). One
        EM step from there stabilises the jump, which is kept only if the
        log-likelihood is at least EM's at ``theta2``: the log-likelihood
        never goes down. ``alpha`` is bounded by ``state.step_max``, which
        grows after a success at the bound and shrinks after a failure.
        """
        r = theta1 - theta0
        v = theta2 - 2.0 * theta1 + theta0
        v_norm = float(v @ v)
        if not np.isfinite(v_norm) or v_norm == 0.0:
            return state
        alpha = min(max(math.sqrt(float(r @ r) / v_norm), 1.0), state.step_max)
        if alpha == 1.0:  # EM's own point: nothing to try
            state.step_max *= _STEP_GROWTH
            return state
        candidate = state.snapshot()
        candidate.set_parameter_vector(theta0 + 2.0 * alpha * r + alpha**2 * v, data.units)
        accepted = False
        try:
            self._evaluate(data, candidate)
            self._e_step(data, candidate, record=False)
            if candidate.log_likelihood >= start_log_likelihood:
                self._em_step(data, candidate)
                accepted = candidate.log_likelihood >= state.log_likelihood
        except FloatingPointError:  # the jump left the model's domain
            pass
        if not accepted:
            state.step_max = max(1.0, state.step_max / _STEP_GROWTH)
            state.n_iter = max(state.n_iter, candidate.n_iter)  # the work was done
            return state
        if alpha == state.step_max:
            candidate.step_max *= _STEP_GROWTH
        return candidate

    def _print_progress(self, state, change, elapsed):
        """One line per reported iteration, with an estimate of the time left.

        EM's changes shrink about geometrically near an optimum, by a ratio
        ``rho`` per iteration; reaching ``tol`` from ``change`` then takes
        ``log(tol / change) / log(rho)`` more iterations (at most the
        ``max_iter`` left).
        """
        left = self.max_iter - state.n_iter
        history = state.history
        if len(history) >= 3 and self.tol > 0:
            before = history[-2] - history[-3]
            rho = change / before if before else 0.0
            if 0 < rho < 1 and abs(change) > self.tol:
                left = min(left, math.ceil(math.log(self.tol / abs(change)) / math.log(rho)))
        per_iteration = elapsed / state.n_iter
        print(
            f"  iteration {state.n_iter}/{self.max_iter}: mean log-likelihood "
            f"{state.log_likelihood:.8g} (change {change:.3g}), {elapsed:.3g} s elapsed, "
            f"about {left * per_iteration:.3g} s left"
        )

    def _validation_score(self, data, state):
        """Mean held-out log-likelihood of the current iterate."""
        held = data.validation
        _, row_log_lik = self._mixture_posterior(
            state.gate, state.experts, state.params, data.likelihood, held.X, held.y_code
        )
        return float(held.sample_weight @ row_log_lik / held.sample_weight.sum())

    def _m_step(self, data, state, resp, n_iter):
        """Improve the gate, route the rows, refit the experts and the likelihood."""
        # The gate is solved as precisely as EM's latest change asks (see
        # SoftmaxGate), with a few steps only before EM's tail (see _em_step).
        history = state.history
        gate_tol = abs(history[-1] - history[-2]) if len(history) >= 2 else np.inf
        state.gate._m_step(
            data.X.gate,
            resp,
            data.sample_weight,
            gate_tol,
            None if state.in_tail else _EARLY_GATE_STEPS,
        )
        # The gate goes first so that each expert is evaluated on exactly the
        # rows the next E-step needs. A heavy-tailed family weighs each row's
        # refit by its expected precision too (the gate's targets are not).
        precision = None
        if state.outputs is not None:
            precision = data.likelihood.refit_scale(data.y_code, state.outputs, state.params)
            if precision is not None:
                resp = resp * precision
        state.outputs = None  # free the old outputs before the experts copy their rows
        if self.top_k is not None and self.top_k < self.n_experts:
            state.logits = routed_logits(state.gate._logits(data.X.gate), self.top_k)
            routed = np.isfinite(state.logits)
        else:
            # Dense routing: every expert is evaluated on every row, and the
            # logits are cheaper to recompute after the refits than to keep.
            state.logits = routed = None
        weights, train = self._training_weights(data, resp, fresh=n_iter == 0)
        batch = batch_class(state.experts) if data.likelihood.batch_predictions else None
        if batch is None or data.X.expert_array is None:
            state.outputs = self._refit_each(data, state, weights, train, routed, n_iter)
        else:
            state.outputs = self._refit_batch(
                data,
                state,
                batch,
                weights,
                train,
                n_iter,
                gate_tol,
                None if state.in_tail else _EARLY_EXPERT_STEPS,
            )
        if state.logits is None:
            state.logits = state.gate._logits(data.X.gate)
        # A latent-scale family gets its precisions back: its weights hold them.
        latent = {} if precision is None else {"precision": precision}
        state.params = data.likelihood.fit_params(
            data.y_code, state.outputs, weights, data.n_threads, **latent
        )

    def _training_weights(self, data, resp, fresh):
        """Each expert's refit weights and training rows.

        Conditional computation: rows whose responsibility is at most
        ``min_responsibility`` carry almost no weight, so skipping them makes
        the experts' total work grow like n rather than n * n_experts. If the
        remaining rows cannot train an expert (fewer than two, or a single
        class), every row with positive weight is used, then every row. An
        expert left with no weight at all keeps its parameters, unless it has
        none yet (``fresh``, the first M-step of a start: re-seeding may have
        taken all its rows), in which case it is fit on every row with the
        sample weights.

        Returns ``weights``, (n, n_experts): ``sample_weight * resp`` on the
        rows each expert is refit on, 0 elsewhere; and ``train``, per expert:
        None to keep an expert that has nothing to learn from as it is,
        ``slice(None)`` to refit it on every row, else True (the rows of
        positive weight, see ``_training_rows``).
        """
        n_samples, n_experts = resp.shape
        weights = np.empty((n_samples, n_experts))
        counts = np.empty(n_experts, dtype=np.intp)
        responsibility_weights(
            resp, data.sample_weight, self.min_responsibility, weights, counts, data.n_threads
        )
        train = [True] * n_experts
        for k in range(n_experts):
            if counts[k] >= 2 and data.likelihood.can_train_on(data.y_code, weights[:, k]):
                continue
            weights[:, k] = resp[:, k] * data.sample_weight
            counts[k] = np.count_nonzero(weights[:, k])
            if counts[k] == 0 and fresh:
                weights[:, k] = data.sample_weight
                train[k] = slice(None)
            elif counts[k] == 0:
                train[k] = None
            elif counts[k] < 2 or not data.likelihood.can_train_on(data.y_code, weights[:, k]):
                train[k] = slice(None)
        return weights, train

    @staticmethod
    def _training_rows(weights, train):
        """An expert's training rows from ``_training_weights``: a mask, a slice, or None."""
        if train is True:
            return _as_index(weights > 0)
        return train

    def _refit_batch(self, data, state, batch, weights, train, n_iter, tol, max_iter):
        """Refit all experts in one call of their batch fitter; return their outputs.

        ``tol`` is EM's latest change, as precise as an iterative refit need
        be, and ``max_iter`` the cap on its iterations early in EM (or None).
        """
        refit = [k for k, rows in enumerate(train) if rows is not None]
        if len(refit) < len(train):
            weights = np.ascontiguousarray(weights[:, refit])
        try:
            fitted = batch._fit_many(
                [state.experts[k] for k in refit],
                data.X.expert_array,
                data.y_fit,
                weights,
                tol=None if np.isinf(tol) else tol,
                max_iter=max_iter,
            )
        except Exception as error:
            raise ExpertFitError(
                f"The experts {[data.names[k] for k in refit]} "
                f"({type(state.experts[refit[0]]).__name__}, refitted "
                f"together) failed at EM iteration {n_iter}: {error}"
            ) from error
        # The batch saw the float array; the experts will predict on the columns
        # as given, so they learn the names a fit on those columns would have.
        feature_names = _get_feature_names(data.X.expert)
        state.experts = list(state.experts)
        for k, expert in zip(refit, fitted):
            if feature_names is not None:
                expert.feature_names_in_ = feature_names
            state.experts[k] = expert
        return data.likelihood.batch_outputs(batch, state.experts, data.X.expert_array)

    def _refit_each(self, data, state, weights, train, routed, n_iter):
        """Refit each expert in its own joblib task; return their outputs on their rows.

        ``routed`` is the (n, n_experts) mask of top-k routes, or None for
        dense routing: each expert is evaluated on its routed and training rows.
        """
        train = [self._training_rows(weights[:, k], rows) for k, rows in enumerate(train)]
        if routed is None:
            predict = [slice(None)] * len(train)
        else:
            predict = [
                rows
                if isinstance(rows, slice)
                else _as_index(routed[:, k] if rows is None else routed[:, k] | rows)
                for k, rows in enumerate(train)
            ]
        output = data.likelihood.expert_output
        X = data.X.expert
        with blas_limited_to(data.expert_blas_threads):
            state.experts = data.parallel(
                delayed(_keep)(expert)
                if rows is None
                else delayed(fit_expert)(
                    expert, X, data.y_fit, weights[:, k], rows, data.names[k], n_iter
                )
                for k, (expert, rows) in enumerate(zip(state.experts, train))
            )
            # Evaluated once all refits are done, so that no expert's output is held
            # while another expert copies its training rows (the peak of fit's memory).
            # An expert with no rows to train on may have no routed rows either.
            evaluated = [
                k for k, rows in enumerate(predict) if isinstance(rows, slice) or rows.any()
            ]
            outputs = data.parallel(
                delayed(evaluate_expert)(
                    state.experts[k], X, predict[k], output, data.names[k], n_iter
                )
                for k in evaluated
            )
        n_samples, n_experts = weights.shape
        stacked = data.likelihood.empty_outputs(n_samples, n_experts)
        for k, output in zip(evaluated, outputs):
            stacked[predict[k], k] = output
        return stacked

    def _e_step(self, data, state, record=True):
        """Responsibilities and log-likelihood of the current parameters.

        ``record=False`` leaves ``state.history`` as it is (an accelerator's trial point).
        """
        state.resp, state.row_log_lik = data.likelihood.e_step(
            data.y_code, state.outputs, state.params, state.logits, data.n_threads
        )
        total = data.sample_weight @ state.row_log_lik / data.sample_weight.sum()
        if not np.isfinite(total):
            raise FloatingPointError(
                "EM reached a non-finite log-likelihood: some rows have zero probability "
                "under every expert. Check the targets and the experts' outputs for "
                "infinite values, or scale the data."
            )
        state.log_likelihood = float(total)
        if record:
            state.history.append(state.log_likelihood)

    def _revive_collapsed(self, data, state, n_iter):
        """Re-seed experts whose responsibility mass collapsed; return the targets.

        A collapsed expert takes over the rows the model explains worst, one
        expert's fair share of them.  Each start may re-seed ``n_experts``
        times, and only in the first half of ``max_iter`` so that EM has time
        to settle afterwards; otherwise a collapsed expert keeps its
        (near-zero) responsibilities, which only shrinks its weights in the refit.
        """
        resp = state.resp
        weights = data.sample_weight
        mass_in_samples = (weights @ resp) / weights.mean()
        threshold = max(_COLLAPSE_MASS_IN_SAMPLES, self.min_expert_share * resp.shape[0])
        collapsed = np.flatnonzero(mass_in_samples < threshold)
        if collapsed.size == 0 or state.reseeds_left == 0 or n_iter > self.max_iter // 2:
            return resp
        resp = resp.copy()
        n_rows = max(1, resp.shape[0] // self.n_experts)
        worst = np.argsort(state.row_log_lik, kind="stable")
        for rank, k in enumerate(collapsed[: state.reseeds_left]):
            rows = worst[rank * n_rows : (rank + 1) * n_rows]
            resp[rows] = 0.0
            resp[rows, k] = 1.0
            warn(
                f"Expert {k} collapsed (responsibility mass {mass_in_samples[k]:.2g} "
                f"samples, below {threshold:.2g}) at EM iteration {n_iter}; re-seeded on "
                f"the {rows.size} worst-explained samples. Consider fewer experts.",
                ExpertCollapseWarning,
            )
        state.reseeds_left = max(0, state.reseeds_left - collapsed.size)
        return resp

    # ------------------------------------------------------------------
    # Prediction helpers shared by both estimators
    # ------------------------------------------------------------------

    def _check_X(self, X):
        """Validate ``X`` at prediction time; return it as each part sees it."""
        check_is_fitted(self)
        X_given, X_array = validate_X(self, X, reset=False)
        gate_accepts_nan = getattr(self.gate_, "_accepts_nan", False)
        X_gate = gate_input(
            self.gate_encoder_, X_given, X_array, self.gate_features_, gate_accepts_nan
        )
        return _Inputs(
            given=X_given, gate=X_gate, expert=take_columns(X_given, self.expert_features_)
        )

    def _check_top_k(self, fitting=False):
        """``top_k`` is read at fit and at prediction time, so checked at both."""
        if self.top_k is not None and self.top_k > self.n_experts:
            raise ValueError(
                f"top_k={self.top_k} is larger than n_experts={self.n_experts}; "
                "use top_k <= n_experts, or None for dense routing."
            )
        if fitting and self.top_k == 1 and self.n_experts > 1:
            # Each row's responsibility would be the gate's own choice, a
            # target the gate already fits: EM could never move the gate.
            raise ValueError(
                "top_k=1 cannot be trained by EM: routing each row to one expert makes "
                "its responsibility the gate's own choice, so the gate never learns. "
                "Fit with top_k=2 (or None), then predict with set_params(top_k=1)."
            )

    def _predict_parts(self, X, with_outputs=True):
        """Routes ``(expert_ids, route_weights)`` and the routed outputs for checked ``X``.

        Each expert is evaluated only on the rows routed to it, so with
        ``top_k`` prediction costs grow with top_k, not n_experts.
        """
        self._check_top_k()
        return self._routed_outputs(self.gate_, self.experts_, self._likelihood, X, with_outputs)

    def _routed_outputs(self, gate, experts, likelihood, X, with_outputs=True):
        expert_ids, route_weights = gate._routes(X.gate, self.top_k)
        if not with_outputs:
            return expert_ids, route_weights, None
        return (
            expert_ids,
            route_weights,
            evaluate_routes(expert_ids, likelihood, experts, X.expert),
        )

    @_blockwise
    def predict_gate(self, X):
        """Gate probability of each expert for each row.

        With ``top_k``, each row keeps its ``top_k`` largest probabilities,
        renormalised; the others are 0.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_experts)
            Rows sum to one.
        """
        expert_ids, route_weights, _ = self._predict_parts(self._check_X(X), with_outputs=False)
        return scatter_routes(expert_ids, route_weights, self.n_experts, 0.0)

    @_blockwise
    def predict_experts(self, X):
        """Each expert's output for each row.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        outputs : ndarray of shape (n_samples, n_experts) or (n_samples, n_experts, n_classes)
            Regression: each expert's mean prediction. Classification: each
            expert's class probabilities, columns aligned to ``classes_``.
        """
        X = self._check_X(X)
        all_experts, _ = routes(np.zeros((X.expert.shape[0], self.n_experts)), None)
        return evaluate_routes(all_experts, self._likelihood, self.experts_, X.expert)

    @_blockwise
    def log_likelihood(self, X, y):
        """Log-likelihood ``log p(y | x)`` of each row under the mixture.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.
        y : array-like of shape (n_samples,)
            Targets.

        Returns
        -------
        log_likelihood : ndarray of shape (n_samples,)
            ``log sum_k g_k(x) p_k(y | x)`` for each row.
        """
        return self._posterior(*self._check_X_y(X, y))[1]

    @_blockwise
    def predict_responsibilities(self, X, y):
        """Posterior probability of each expert given the input and the target.

        ``p(expert k | x, y) = g_k(x) p_k(y | x) / p(y | x)``, what EM used
        as the rows' soft assignments: unlike :meth:`predict_gate`, which sees
        ``x`` only, it says which regime a row with a known target belongs to.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.
        y : array-like of shape (n_samples,)
            Targets.

        Returns
        -------
        responsibilities : ndarray of shape (n_samples, n_experts)
            Rows sum to one.
        """
        return self._posterior(*self._check_X_y(X, y))[0]

    def bic(self, X, y, **target):
        """Bayesian information criterion of the fitted model on ``(X, y)``; lower is better.

        ``-2 sum_i log p(y_i | x_i) + k log(n)``, with ``k`` the model's free
        parameters (see :func:`skmoe._complexity.n_parameters`): defined for
        linear experts and the softmax, HME and tree gates; other experts
        raise a ``ValueError`` (compare those by cross-validated
        log-likelihood, e.g. with :class:`MixtureOfExpertsRegressorCV`).

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data, usually the training data.
        y : array-like of shape (n_samples,)
            Targets.
        **target : dict
            What :meth:`log_likelihood` takes besides ``X`` and ``y`` (the
            regressor's ``exposure``).

        Returns
        -------
        bic : float
        """
        log_lik = self.log_likelihood(X, y, **target)
        return float(-2 * log_lik.sum() + n_parameters(self) * np.log(log_lik.shape[0]))

    def aic(self, X, y, **target):
        """Akaike information criterion of the fitted model on ``(X, y)``; lower is better.

        ``-2 sum_i log p(y_i | x_i) + 2 k``; see :meth:`bic` for ``k``.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data, usually the training data.
        y : array-like of shape (n_samples,)
            Targets.
        **target : dict
            What :meth:`log_likelihood` takes besides ``X`` and ``y`` (the
            regressor's ``exposure``).

        Returns
        -------
        aic : float
        """
        return float(-2 * self.log_likelihood(X, y, **target).sum() + 2 * n_parameters(self))

    def _check_X_y(self, X, y):
        """``X`` as each part sees it and ``y`` as the likelihood scores it, at prediction."""
        X = self._check_X(X)
        y_code = self._encode_target(y)
        if y_code.shape[0] != X.given.shape[0]:
            raise ValueError(f"X has {X.given.shape[0]} rows but y has {y_code.shape[0]}.")
        return X, y_code

    def _posterior(self, X, y_code):
        """Responsibilities and row log-likelihoods of the fitted model on checked data."""
        self._check_top_k()
        return self._mixture_posterior(
            self.gate_, self.experts_, self._likelihood_params, self._likelihood, X, y_code
        )

    def _mixture_posterior(self, gate, experts, params, likelihood, X, y_code):
        """Responsibilities and row log-likelihoods of given parameters on checked data."""
        routed, weights, outputs = self._routed_outputs(gate, experts, likelihood, X)
        n_experts = len(experts)
        with np.errstate(divide="ignore"):
            logits = scatter_routes(routed, np.log(weights), n_experts, -np.inf)
        outputs = scatter_routes(routed, outputs, n_experts, 0.0)
        return likelihood.e_step(
            np.ascontiguousarray(y_code), outputs, params, logits, kernel_threads(logits.size)
        )
