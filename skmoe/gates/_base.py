"""The gate interface: what the EM engine needs from a gating network."""

from abc import ABCMeta, abstractmethod

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp
from sklearn.base import BaseEstimator
from sklearn.utils.validation import _check_sample_weight, check_array, check_is_fitted

from .._inputs import has_missing
from .._routing import routes


class BaseGate(BaseEstimator, metaclass=ABCMeta):
    """Base class for gates: a map from inputs to probabilities over experts.

    A gate is trained on *soft targets*: the EM responsibilities ``R`` (rows
    sum to one), weighted by ``sample_weight``.  It maximises
    ``sum_i w_i sum_k R_ik log g_k(x_i)`` (plus its own regularisation).

    Subclasses implement three private methods that take validated arrays and
    are what the EM engine calls in its loop:

    * ``_initialize(X, n_experts, sample_weight)``: set up parameters;
    * ``_m_step(X, responsibilities, sample_weight, tol=None, max_iter=None)``:
      improve the parameters starting from the current ones (a generalised
      EM step: the objective must not go down). ``tol`` and ``max_iter`` say
      how far EM needs this step solved (a gradient tolerance and a cap on
      an iterative solver's steps; None: the gate's own): EM asks for
      little while it moves fast and for more as it slows down;
    * ``_logits(X)``: log gate probabilities up to a per-row constant.

    Two class attributes say which inputs a gate takes; the estimators read
    them to prepare the gate's view of ``X``, and the public methods enforce
    them:

    * ``_accepts_sparse``: ``X`` may be a ``scipy.sparse`` CSR matrix (the
      public methods convert other sparse formats to CSR);
    * ``_accepts_nan``: dense ``X`` may contain NaN (missing values).

    Both are False here, so that a gate written for dense arrays is never
    handed anything else.
    """

    #: The EM start the estimators use for this gate when ``init="auto"``.
    _default_init = "kmeans"

    #: Whether the gate takes ``scipy.sparse`` CSR inputs.
    _accepts_sparse = False

    #: Whether the gate takes NaN (missing values) in dense inputs.
    _accepts_nan = False

    @abstractmethod
    def _initialize(self, X, n_experts, sample_weight):
        """Create the parameters for ``n_experts`` experts."""

    @abstractmethod
    def _m_step(self, X, responsibilities, sample_weight, tol=None, max_iter=None):
        """Improve the gate's objective from its current parameters."""

    @abstractmethod
    def _logits(self, X):
        """Log gate probabilities up to an additive per-row constant."""

    def _parameter_vector(self):
        """The parameters as one flat vector, for EM's accelerator; None if they are not.

        A gate whose parameters are a point of a vector space (the softmax
        gate's coefficients) returns them so that EM can extrapolate its
        path (see ``BaseMixtureOfExperts._accelerated_step``); a tree has none.
        """
        return None

    def _set_parameter_vector(self, vector):
        """Set the parameters from a vector of ``_parameter_vector``'s layout."""
        raise NotImplementedError

    def _n_parameters(self, n_redundant=0):
        """Number of free parameters of the fitted gate, for BIC and AIC.

        Each gate counts its own (see :func:`skmoe._complexity.n_parameters`);
        a gate that does not say cannot be scored by an information criterion.
        ``n_redundant`` of the gate's input columns are sums of others and of
        a constant (one-hot encoded categories): a gate with coefficients and
        an intercept has one free coefficient fewer per such column.
        """
        raise ValueError(
            f"{type(self).__name__} does not define its number of free parameters "
            "(a _n_parameters method), which BIC and AIC need. Compare models by "
            "cross-validated log-likelihood instead (skmoe.MixtureOfExpertsRegressorCV "
            "or MixtureOfExpertsClassifierCV, or skmoe.metrics.log_likelihood_scorer "
            "with GridSearchCV)."
        )

    def _routes(self, X, top_k):
        """Each row's ``top_k`` experts (all if None) and their renormalised weights.

        See :func:`skmoe._routing.routes`; a gate can override this to route
        without materialising all its logits.
        """
        return routes(self._logits(X), top_k)

    def _check_X(self, X, order=None):
        """``X`` as float64, dense or CSR as the gate accepts it; inf always refused."""
        X = check_array(
            X,
            accept_sparse="csr" if self._accepts_sparse else False,
            dtype=np.float64,
            order=order,
            ensure_min_features=0,
            ensure_all_finite="allow-nan",
            input_name="X",
        )
        if has_missing(X):
            name = type(self).__name__
            if not self._accepts_nan:
                raise ValueError(
                    f"{name} does not accept missing values (NaN); impute them first, "
                    "or use TreeGate, which handles them natively."
                )
            if sp.issparse(X):  # scikit-learn's trees take NaN in dense inputs only
                raise ValueError(
                    f"{name} handles missing values (NaN) in dense X only; pass X as "
                    "a dense array, or impute the missing values."
                )
        return X

    def _validate_targets(self, X, responsibilities, sample_weight):
        X = self._check_X(X, order="C")
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
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Gate inputs: dense, or a sparse matrix (used as CSR) for gates
            that accept one; NaN only for gates that handle missing values.
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
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Gate inputs: dense, or a sparse matrix (used as CSR) for gates
            that accept one; NaN only for gates that handle missing values.
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
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Gate inputs: dense, or a sparse matrix (used as CSR) for gates
            that accept one; NaN only for gates that handle missing values.

        Returns
        -------
        logits : ndarray of shape (n_samples, n_experts)
            Unnormalised log gate probabilities.
        """
        check_is_fitted(self)
        return self._logits(self._check_X(X))

    def predict_log_proba(self, X):
        """Log gate probability of each expert.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Gate inputs: dense, or a sparse matrix (used as CSR) for gates
            that accept one; NaN only for gates that handle missing values.

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
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Gate inputs: dense, or a sparse matrix (used as CSR) for gates
            that accept one; NaN only for gates that handle missing values.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_experts)
            Gate probabilities.
        """
        return np.exp(self.predict_log_proba(X))
