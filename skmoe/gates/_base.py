"""The gate interface: what the EM engine needs from a gating network."""

from abc import ABCMeta, abstractmethod

import numpy as np
from scipy.special import logsumexp
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_array, check_is_fitted, _check_sample_weight

from .._routing import routes


class BaseGate(BaseEstimator, metaclass=ABCMeta):
    """Base class for gates: a map from inputs to probabilities over experts.

    A gate is trained on *soft targets*: the EM responsibilities ``R`` (rows
    sum to one), weighted by ``sample_weight``.  It maximises
    ``sum_i w_i sum_k R_ik log g_k(x_i)`` (plus its own regularisation).

    Subclasses implement three private methods that take validated arrays and
    are what the EM engine calls in its loop:

    * ``_initialize(X, n_experts, sample_weight)``: set up parameters;
    * ``_m_step(X, responsibilities, sample_weight)``: improve the parameters
      starting from the current ones (a generalised EM step: the objective
      must not go down);
    * ``_logits(X)``: log gate probabilities up to a per-row constant.
    """

    #: The EM start the estimators use for this gate when ``init="auto"``.
    _default_init = "kmeans"

    @abstractmethod
    def _initialize(self, X, n_experts, sample_weight):
        """Create the parameters for ``n_experts`` experts."""

    @abstractmethod
    def _m_step(self, X, responsibilities, sample_weight):
        """Improve the gate's objective from its current parameters."""

    @abstractmethod
    def _logits(self, X):
        """Log gate probabilities up to an additive per-row constant."""

    def _routes(self, X, top_k):
        """Each row's ``top_k`` experts (all if None) and their renormalised weights.

        See :func:`skmoe._routing.routes`; a gate can override this to route
        without materialising all its logits.
        """
        return routes(self._logits(X), top_k)

    def _validate_targets(self, X, responsibilities, sample_weight):
        X = check_array(X, dtype=np.float64, order="C", ensure_min_features=0)
        responsibilities = check_array(responsibilities, dtype=np.float64, order="C")
        if responsibilities.shape[0] != X.shape[0]:
            raise ValueError(
                f"X has {X.shape[0]} rows but responsibilities has "
                f"{responsibilities.shape[0]}; pass one row of responsibilities per sample."
            )
        if np.any(responsibilities < 0):
            raise ValueError("responsibilities must be non-negative.")
        sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        return X, responsibilities, sample_weight

    def fit(self, X, responsibilities, sample_weight=None):
        """Fit the gate from scratch to soft targets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Gate inputs.
        responsibilities : array-like of shape (n_samples, n_experts)
            Soft targets; each row is a probability vector over experts.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights.

        Returns
        -------
        self : object
            The fitted gate.
        """
        X, responsibilities, sample_weight = self._validate_targets(
            X, responsibilities, sample_weight
        )
        self._initialize(X, responsibilities.shape[1], sample_weight)
        self._m_step(X, responsibilities, sample_weight)
        return self

    def partial_fit(self, X, responsibilities, sample_weight=None):
        """Improve a fitted gate on new soft targets, warm-started (one M-step).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Gate inputs.
        responsibilities : array-like of shape (n_samples, n_experts)
            Soft targets; each row is a probability vector over experts.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights.

        Returns
        -------
        self : object
            The updated gate.
        """
        if not hasattr(self, "n_experts_"):
            return self.fit(X, responsibilities, sample_weight)
        X, responsibilities, sample_weight = self._validate_targets(
            X, responsibilities, sample_weight
        )
        self._m_step(X, responsibilities, sample_weight)
        return self

    def decision_function(self, X):
        """Log gate probabilities up to an additive constant per row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Gate inputs.

        Returns
        -------
        logits : ndarray of shape (n_samples, n_experts)
            Unnormalised log gate probabilities.
        """
        check_is_fitted(self)
        return self._logits(check_array(X, dtype=np.float64, ensure_min_features=0))

    def predict_log_proba(self, X):
        """Log gate probability of each expert.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Gate inputs.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_experts)
            Log gate probabilities.
        """
        logits = self.decision_function(X)
        return logits - logsumexp(logits, axis=1, keepdims=True)

    def predict_proba(self, X):
        """Gate probability of each expert; rows sum to one.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Gate inputs.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_experts)
            Gate probabilities.
        """
        return np.exp(self.predict_log_proba(X))
