"""Mixture of experts for classification: categorical experts around any classifier."""

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from ._base import BaseMixtureOfExperts, _blockwise
from ._docstrings import fill
from ._online import check_partial_fit
from .experts import WeightedLogisticRegression
from .likelihoods import CategoricalLikelihood


class MixtureOfExpertsClassifier(ClassifierMixin, BaseMixtureOfExperts):
    """Mixture of experts classifier trained by EM.

    ``p(c | x) = sum_k g_k(x) p_k(c | x)``: a gate ``g`` chooses between
    experts, each any scikit-learn classifier with ``predict_proba``. EM
    alternates responsibilities (compiled E-step) with responsibility-weighted
    refits of the experts and the gate.

    Parameters
    ----------
    n_experts : int, default=2
        Number of experts.

    estimator : classifier or list of (str, classifier), default=None
        The expert, cloned once per expert; ``None`` means
        ``WeightedLogisticRegression(warm_start=True)``, a multinomial logit
        with a weak penalty on standardised coefficients, warm-started from
        one EM iteration to the next (see :mod:`skmoe.experts`). A list of
        ``(name, estimator)`` pairs gives one (possibly different) expert
        each, whose parameters are reachable
        as ``<name>__<param>``. Experts need ``predict_proba`` and must accept
        ``sample_weight`` in ``fit`` (a ``Pipeline``: its final step); others
        are refused with a ``TypeError``.

    %(shared_parameters)s

    Attributes
    ----------
    %(shared_attributes)s

    classes_ : ndarray of shape (n_classes,)
        Class labels. Each expert's ``predict_proba`` columns are aligned to
        them; a class an expert never saw gets probability 0 from it.

    See Also
    --------
    MixtureOfExpertsRegressor : The same model for regression.

    References
    ----------
    Jacobs, Jordan, Nowlan & Hinton, "Adaptive mixtures of local experts",
    Neural Computation 3 (1991).

    Examples
    --------
    >>> from sklearn.datasets import make_moons
    >>> from skmoe import MixtureOfExpertsClassifier
    >>> X, y = make_moons(400, noise=0.2, random_state=0)
    >>> moe = MixtureOfExpertsClassifier(4, random_state=0).fit(X, y)
    >>> moe.predict_proba(X[:2]).shape
    (2, 2)
    """

    _y_numeric = False
    _expert_method = "predict_proba"

    @available_if(check_partial_fit)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Update the mixture with one chunk of rows, by stepwise online EM.

        For data that arrive in chunks or do not fit in memory: each call
        runs an E-step on the chunk and moves the model towards the chunk's
        M-step (see :mod:`skmoe._online` for the method, its step sizes and
        the experts and gates it supports). The first call starts the model
        from that chunk.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            A chunk of training data.
        y : array-like of shape (n_samples,)
            Its class labels.
        classes : array-like of shape (n_classes,), default=None
            All the classes, required on the first call (a chunk may lack
            some), as in scikit-learn's ``partial_fit``; ignored afterwards
            unless it differs from ``classes_``, which is an error.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights.

        Returns
        -------
        self : object
            The updated estimator.
        """
        return self._partial_fit(X, y, sample_weight, classes)

    def _default_expert(self):
        return WeightedLogisticRegression(warm_start=True)

    def _prepare_target(self, y, sample_weight):
        check_classification_targets(y)
        self.classes_, y_code = np.unique(y, return_inverse=True)
        if self.classes_.shape[0] < 2:
            raise ValueError(
                f"y has a single class ({str(self.classes_[0])!r}); a classifier needs "
                "samples of at least 2 classes."
            )
        return y, y_code.astype(np.intp), CategoricalLikelihood(self.classes_)

    def _encode_target(self, y):
        y = column_or_1d(y)
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(f"y has labels not seen during fit: {unknown.tolist()}.")
        return np.searchsorted(self.classes_, y)

    @_blockwise
    def predict_proba(self, X):
        """Class probabilities of the mixture.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            ``sum_k g_k(x) p_k(c | x)``, columns in the order of ``classes_``.
        """
        _, route_weights, outputs = self._predict_parts(self._check_X(X))
        proba = np.einsum("nk,nkc->nc", route_weights, outputs)
        # The gate's rows sum to one only up to rounding: renormalise, so that
        # no probability exceeds 1.
        proba /= proba.sum(axis=1, keepdims=True)
        return proba

    @_blockwise
    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log class probabilities (``-inf`` where a probability is zero).
        """
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    @_blockwise
    def predict(self, X):
        """Most probable class under the mixture.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predicted class labels.
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


MixtureOfExpertsClassifier.__doc__ = fill(MixtureOfExpertsClassifier.__doc__)
