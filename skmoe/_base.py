"""The EM engine shared by the mixture-of-experts regressor and classifier.

Model: ``p(y | x) = sum_k g_k(x) p_k(y | x)``, a gate ``g`` (see
:mod:`skmoe.gates`) over experts ``p_k`` (user estimators scored by a
likelihood, see :mod:`skmoe._likelihoods`).

One EM start runs::

    R0 = initial responsibilities            (k-means, random or given)
    M-step(R0); E-step -> R, log-likelihood L
    repeat until |change in L| < tol or max_iter:
        M-step(R)  improve the gate on soft targets R, warm-started
                   route: each row to its top_k experts under the new gate (or all)
                   refit expert k with weights w * R[:, k] on the rows where
                   R[:, k] > min_responsibility (experts in parallel, or all
                   at once for a batch class, see skmoe._experts), then
                   evaluate each on its routed rows (in parallel too)
                   re-estimate the likelihood's parameters (noise variances)
        E-step     R, L from the compiled kernel

so every recorded ``L`` belongs to the parameters current at that point.
``n_init`` starts run and the one with the best final ``L`` is kept.
Subclasses provide the expert likelihood, target encoding and ``predict``.
"""

import warnings
from abc import ABCMeta, abstractmethod
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from sklearn.base import MetaEstimatorMixin, _fit_context, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._cluster import ship_once
from ._experts import (
    batch_class, check_experts, evaluate_expert, fit_expert, make_experts, seed_random_states,
)
from ._features import resolve_columns, take_columns
from ._initialization import initial_responsibilities
from ._kernels import responsibility_weights
from ._threads import blas_limited_to, blas_threads, kernel_threads, single_threaded_blas
from ._routing import evaluate_routes, routed_logits, routes, scatter_routes
from .exceptions import ExpertCollapseWarning
from .gates import GATES, BaseGate, make_gate

# An expert whose responsibility mass is below this many average samples has
# collapsed: it explains (almost) nothing and its weighted refit is degenerate.
_COLLAPSE_MASS_IN_SAMPLES = 0.5

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


@dataclass
class _FitData:
    """Everything an EM start reads; built once per ``fit``."""

    X: np.ndarray  # all validated features
    X_gate: np.ndarray
    X_expert: np.ndarray
    y_fit: np.ndarray  # target as the experts see it
    y_code: np.ndarray  # target as the likelihood scores it
    sample_weight: np.ndarray
    likelihood: object
    parallel: Parallel
    n_threads: int  # OpenMP threads for the kernels
    expert_blas_threads: int  # BLAS threads for the user's experts (EM's own work: 1)


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
    history: list = None
    n_iter: int = 0
    converged: bool = False
    reseeds_left: int = 0


class BaseMixtureOfExperts(MetaEstimatorMixin, _BaseComposition, metaclass=ABCMeta):
    """Base class for mixtures of experts trained by EM. Not for direct use."""

    _parameter_constraints: dict = {
        "n_experts": [Interval(Integral, 1, None, closed="left")],
        "estimator": [HasMethods(["fit"]), list, None],
        "gate": [StrOptions(set(GATES)), BaseGate],
        "gate_features": ["array-like", None],
        "expert_features": ["array-like", None],
        "init": [StrOptions({"auto", "kmeans", "random", "softmax"}), "array-like"],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
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
        random_state=None,
        n_jobs=None,
        verbose=0,
        warm_start=False,
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
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.warm_start = warm_start
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
    def _prepare_target(self, y, sample_weight):
        """Validate ``y`` at fit; set target-dependent fitted attributes.

        Returns ``(y_fit, y_code, likelihood)``: the target for the experts,
        the target for the likelihood, and the likelihood object.
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

        Parameters
        ----------
        **params : dict
            Estimator parameters.

        Returns
        -------
        self : object
            The estimator.
        """
        self._set_params("estimator", **params)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # The gate's kernels need dense float64 rows; experts need no NaN-free
        # guarantee from us, but the gate does.
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags

    # ------------------------------------------------------------------
    # fit
    # ------------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None):
        """Fit the mixture of experts by EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; a pandas DataFrame records ``feature_names_in_``.
        y : array-like of shape (n_samples,)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; EM maximises the weighted log-likelihood.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        # C order: the kernels read X row by row (a Fortran-ordered X is copied once here).
        X, y = validate_data(
            self, X, y, dtype=np.float64, order="C", y_numeric=self._y_numeric
        )
        n_samples, n_features = X.shape
        self._check_top_k()
        if self.n_experts > n_samples:
            raise ValueError(
                f"n_experts={self.n_experts} is larger than n_samples={n_samples}; "
                "use at most one expert per sample (in practice far fewer)."
            )
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        if sample_weight.sum() <= 0:  # scikit-learn >= 1.7 raises this itself
            raise ValueError("sample_weight sums to zero; give some samples positive weight.")
        y_fit, y_code, likelihood = self._prepare_target(y, sample_weight)

        named_experts = check_experts(
            self.estimator, self.n_experts, self._default_expert(), self._expert_method
        )
        if isinstance(self.estimator, list):
            self._validate_names([name for name, _ in named_experts])
        names = getattr(self, "feature_names_in_", None)
        self.gate_features_ = resolve_columns(
            self.gate_features, n_features, names, "gate_features"
        )
        self.expert_features_ = resolve_columns(
            self.expert_features, n_features, names, "expert_features"
        )
        if self.expert_features_.size == 0:
            raise ValueError("expert_features selects no column; experts need at least one.")

        random_state = check_random_state(self.random_state)
        warm = self.warm_start and hasattr(self, "converged_")
        X_expert = take_columns(X, self.expert_features_)
        expert_blas_threads = _expert_blas_threads(X.size * self.n_experts)
        # One worker pool (and, on Dask, one shipment of the data) per fit.
        with ship_once(X_expert, y_fit), Parallel(n_jobs=self.n_jobs) as parallel, \
                single_threaded_blas():
            data = _FitData(
                X=X,
                X_gate=take_columns(X, self.gate_features_),
                X_expert=X_expert,
                y_fit=y_fit,
                y_code=y_code,
                sample_weight=sample_weight,
                likelihood=likelihood,
                parallel=parallel,
                n_threads=kernel_threads(n_samples * self.n_experts),
                expert_blas_threads=expert_blas_threads,
            )
            if warm:
                runs = [self._resume(data)]
            else:
                runs = [
                    self._start(data, named_experts, random_state, init_index)
                    for init_index in range(self.n_init)
                ]

        best = max(runs, key=lambda run: run.log_likelihood)
        if not best.converged:
            warnings.warn(
                f"EM did not converge in max_iter={self.max_iter} iterations (best of "
                f"{len(runs)} start(s); last change in mean log-likelihood "
                f"{abs(best.history[-1] - best.history[-2]):.3g} > tol={self.tol}). "
                "Increase max_iter, loosen tol, scale the features, or try another init.",
                ConvergenceWarning,
            )
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
        self.expert_share_ = (sample_weight @ best.resp) / sample_weight.sum()
        return self

    def _start(self, data, named_experts, random_state, init_index):
        """Run EM from a fresh start."""
        n_samples = data.X_gate.shape[0]
        gate = seed_random_states(make_gate(self.gate), random_state)
        auto = isinstance(self.init, str) and self.init == "auto"
        init = gate._default_init if auto else self.init
        state = _EMState(
            experts=make_experts(named_experts, random_state),
            gate=gate,
            history=[],
            reseeds_left=self.n_experts,
        )
        state.gate._initialize(data.X_gate, self.n_experts, data.sample_weight)
        # No row scores exist yet: a collapsed initial expert is re-seeded on random rows.
        state.resp = self._initial_responsibilities(data, init, random_state)
        state.row_log_lik = random_state.uniform(size=n_samples)
        self._m_step(data, state, self._revive_collapsed(data, state, 0))
        self._e_step(data, state)
        if self.verbose:
            print(f"EM start {init_index}: initial mean log-likelihood {state.log_likelihood:.6g}")
        return self._iterate(data, state)

    def _initial_responsibilities(self, data, init, random_state):
        """Starting responsibilities; k-means' copy of the data is freed on return."""
        if isinstance(init, str) and init == "softmax":
            return self._softmax_start(data, random_state)
        # A fresh array either way: k-means standardises it in place.
        cluster_columns = np.hstack([data.X_gate, self._init_target_columns(data.y_code)])
        if cluster_columns.shape[1] == 0:
            cluster_columns = data.X_expert.copy()
        return initial_responsibilities(
            init, cluster_columns, self.n_experts, data.sample_weight, random_state
        )

    def _softmax_start(self, data, random_state):
        """Responsibilities of a softmax-gated fit of the same experts, from k-means.

        Gates that cut the space into hard regions keep the partition they
        start from; a softmax-gated mixture finds the experts first.
        """
        warm_up = clone(self).set_params(
            gate="softmax", init="kmeans", n_init=1, warm_start=False, verbose=0,
            gate_features=self.gate_features_, expert_features=self.expert_features_,
            random_state=int(random_state.randint(np.iinfo(np.int32).max)),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warm_up.fit(data.X, data.y_fit, sample_weight=data.sample_weight)
        resp, _ = warm_up._posterior(data.X, data.y_code)
        return resp

    def _resume(self, data):
        """Continue EM from the fitted model (``warm_start=True``)."""
        state = _EMState(
            experts=list(self.experts_),
            gate=self.gate_,
            params=self._likelihood_params,
            history=[],
            reseeds_left=self.n_experts,
        )
        logits = state.gate._logits(data.X_gate)
        state.logits = routed_logits(logits, self.top_k)
        experts, _ = routes(logits, self.top_k)
        state.outputs = scatter_routes(
            experts, evaluate_routes(experts, data.likelihood, state.experts, data.X_expert),
            self.n_experts, 0.0,
        )
        self._e_step(data, state)
        return self._iterate(data, state)

    def _iterate(self, data, state):
        """EM iterations from a state whose E-step is done."""
        for n_iter in range(1, self.max_iter + 1):
            previous = state.log_likelihood
            self._m_step(data, state, self._revive_collapsed(data, state, n_iter))
            self._e_step(data, state)
            state.n_iter = n_iter
            change = state.log_likelihood - previous
            if self.verbose >= 2:
                print(f"  iteration {n_iter}: mean log-likelihood "
                      f"{state.log_likelihood:.8g} (change {change:.3g})")
            if abs(change) < self.tol:
                state.converged = True
                break
        if self.verbose:
            status = "converged" if state.converged else "did not converge"
            print(f"EM {status} after {state.n_iter} iterations: "
                  f"mean log-likelihood {state.log_likelihood:.8g}")
        return state

    def _m_step(self, data, state, resp):
        """Improve the gate, route the rows, refit the experts and the likelihood."""
        state.gate._m_step(data.X_gate, resp, data.sample_weight)
        # The gate goes first so that each expert is evaluated on exactly the
        # rows the next E-step needs.
        state.outputs = None  # free the old outputs before the experts copy their rows
        if self.top_k is not None and self.top_k < self.n_experts:
            state.logits = routed_logits(state.gate._logits(data.X_gate), self.top_k)
            routed = np.isfinite(state.logits)
        else:
            # Dense routing: every expert is evaluated on every row, and the
            # logits are cheaper to recompute after the refits than to keep.
            state.logits = routed = None
        weights, train = self._training_weights(data, resp)
        batch = batch_class(state.experts) if hasattr(data.likelihood, "batch_outputs") else None
        if batch is None:
            state.outputs = self._refit_each(data, state, weights, train, routed)
        else:
            state.outputs = self._refit_batch(data, state, batch, weights, train)
        if state.logits is None:
            state.logits = state.gate._logits(data.X_gate)
        state.params = data.likelihood.fit_params(
            data.y_code, state.outputs, weights, data.n_threads
        )

    def _training_weights(self, data, resp):
        """Each expert's refit weights and training rows.

        Conditional computation: rows whose responsibility is at most
        ``min_responsibility`` carry almost no weight, so skipping them makes
        the experts' total work grow like n rather than n * n_experts. If the
        remaining rows cannot train an expert (fewer than two, or a single
        class), every row with positive weight is used, then every row.

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
            if counts[k] == 0:
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

    def _refit_batch(self, data, state, batch, weights, train):
        """Refit all experts in one call of their batch class; return their outputs."""
        refit = [k for k, rows in enumerate(train) if rows is not None]
        if len(refit) < len(train):
            weights = np.ascontiguousarray(weights[:, refit])
        fitted = batch._fit_many(
            [state.experts[k] for k in refit], data.X_expert, data.y_fit, weights
        )
        state.experts = list(state.experts)
        for k, expert in zip(refit, fitted):
            state.experts[k] = expert
        return data.likelihood.batch_outputs(batch, state.experts, data.X_expert)

    def _refit_each(self, data, state, weights, train, routed):
        """Refit each expert in its own joblib task; return their outputs on their rows.

        ``routed`` is the (n, n_experts) mask of top-k routes, or None for
        dense routing: each expert is evaluated on its routed and training rows.
        """
        train = [self._training_rows(weights[:, k], rows) for k, rows in enumerate(train)]
        if routed is None:
            predict = [slice(None)] * len(train)
        else:
            predict = [
                rows if isinstance(rows, slice)
                else _as_index(routed[:, k] if rows is None else routed[:, k] | rows)
                for k, rows in enumerate(train)
            ]
        output = data.likelihood.expert_output
        with blas_limited_to(data.expert_blas_threads):
            state.experts = data.parallel(
                delayed(_keep)(expert) if rows is None
                else delayed(fit_expert)(expert, data.X_expert, data.y_fit, weights[:, k], rows)
                for k, (expert, rows) in enumerate(zip(state.experts, train))
            )
            # Evaluated once all refits are done, so that no expert's output is held
            # while another expert copies its training rows (the peak of fit's memory).
            outputs = data.parallel(
                delayed(evaluate_expert)(expert, data.X_expert, rows, output)
                for expert, rows in zip(state.experts, predict)
            )
        n_samples, n_experts = weights.shape
        stacked = data.likelihood.empty_outputs(n_samples, n_experts)
        for k, (output, rows) in enumerate(zip(outputs, predict)):
            stacked[rows, k] = output
        return stacked

    def _e_step(self, data, state):
        """Responsibilities and log-likelihood of the current parameters."""
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
            warnings.warn(
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
        check_is_fitted(self)
        return validate_data(self, X, dtype=np.float64, reset=False)

    def _check_top_k(self):
        """``top_k`` is read at fit and at prediction time, so checked at both."""
        if self.top_k is not None and self.top_k > self.n_experts:
            raise ValueError(
                f"top_k={self.top_k} is larger than n_experts={self.n_experts}; "
                "use top_k <= n_experts, or None for dense routing."
            )

    def _predict_parts(self, X, with_outputs=True):
        """Routes ``(experts, weights)`` and the routed expert outputs for validated ``X``.

        Each expert is evaluated only on the rows routed to it, so with
        ``top_k`` prediction costs grow with top_k, not n_experts.
        """
        self._check_top_k()
        experts, weights = self.gate_._routes(take_columns(X, self.gate_features_), self.top_k)
        if not with_outputs:
            return experts, weights, None
        outputs = evaluate_routes(
            experts, self._likelihood, self.experts_, take_columns(X, self.expert_features_)
        )
        return experts, weights, outputs

    def predict_gate(self, X):
        """Gate probability of each expert for each row.

        With ``top_k``, each row keeps its ``top_k`` largest probabilities,
        renormalised; the others are 0.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_experts)
            Rows sum to one.
        """
        experts, weights, _ = self._predict_parts(self._check_X(X), with_outputs=False)
        return scatter_routes(experts, weights, self.n_experts, 0.0)

    def predict_experts(self, X):
        """Each expert's output for each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        outputs : ndarray of shape (n_samples, n_experts) or (n_samples, n_experts, n_classes)
            Regression: each expert's mean prediction. Classification: each
            expert's class probabilities, columns aligned to ``classes_``.
        """
        X = self._check_X(X)
        all_experts, _ = routes(np.zeros((X.shape[0], self.n_experts)), None)
        return evaluate_routes(
            all_experts, self._likelihood, self.experts_, take_columns(X, self.expert_features_)
        )

    def score_samples(self, X, y):
        """Log-likelihood ``log p(y | x)`` of each row under the mixture.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.
        y : array-like of shape (n_samples,)
            Targets.

        Returns
        -------
        log_likelihood : ndarray of shape (n_samples,)
            ``log sum_k g_k(x) p_k(y | x)`` for each row.
        """
        X = self._check_X(X)
        y_code = self._encode_target(y)
        if y_code.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y_code.shape[0]}.")
        return self._posterior(X, y_code)[1]

    def _posterior(self, X, y_code):
        """Responsibilities and row log-likelihoods of the fitted model on validated data."""
        experts, weights, outputs = self._predict_parts(X)
        with np.errstate(divide="ignore"):
            logits = scatter_routes(experts, np.log(weights), self.n_experts, -np.inf)
        outputs = scatter_routes(experts, outputs, self.n_experts, 0.0)
        return self._likelihood.e_step(
            y_code, outputs, self._likelihood_params, logits, kernel_threads(logits.size)
        )
