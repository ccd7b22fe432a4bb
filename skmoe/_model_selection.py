"""Choosing the number of experts (and the gate) by cross-validated log-likelihood.

The estimators here are :class:`~sklearn.model_selection.GridSearchCV` over
``n_experts`` (and ``gate``) with :func:`skmoe.metrics.log_likelihood_scorer`,
packaged as estimators in the manner of ``LogisticRegressionCV`` so that a
pipeline can hold them and nobody has to write the search by hand.
"""

from numbers import Integral

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MetaEstimatorMixin,
    RegressorMixin,
    _fit_context,
    clone,
)
from sklearn.model_selection import GridSearchCV
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import _check_y, check_is_fitted

from ._classification import MixtureOfExpertsClassifier
from ._regression import MixtureOfExpertsRegressor
from .metrics import log_likelihood_scorer


def _best_has(method):
    """``available_if`` check: the mixture (fitted or not) has ``method``."""

    def check(self):
        mixture = getattr(self, "best_estimator_", None) or self._mixture()
        return hasattr(mixture, method)

    return check


class _BaseMixtureCV(MetaEstimatorMixin, BaseEstimator):
    """Grid search of a mixture's ``n_experts`` (and gate) by held-out log-likelihood."""

    _parameter_constraints: dict = {
        "mixture": [HasMethods(["fit", "log_likelihood"]), None],
        "n_experts": ["array-like"],
        "gate": [list, tuple, None],
        "cv": ["cv_object"],
        "scoring": [str, callable, None],
        "n_jobs": [Integral, None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        mixture=None,
        *,
        n_experts=(1, 2, 3, 4),
        gate=None,
        cv=5,
        scoring=None,
        n_jobs=None,
        verbose=0,
    ):
        self.mixture = mixture
        self.n_experts = n_experts
        self.gate = gate
        self.cv = cv
        self.scoring = scoring
        self.n_jobs = n_jobs
        self.verbose = verbose

    def _mixture(self):
        return self._default_mixture() if self.mixture is None else self.mixture

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = self._mixture().__sklearn_tags__()
        tags.input_tags.allow_nan = inner.input_tags.allow_nan
        tags.input_tags.sparse = inner.input_tags.sparse
        return tags

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None):
        """Cross-validate every candidate, then refit the best on all of ``X``.

        The best candidate has the highest mean held-out score (by default
        the log-likelihood); ties go to the fewest experts (candidates are tried in increasing
        ``n_experts``). Include ``n_experts=1`` so that the single expert is
        a candidate: a mixture is then chosen only when it predicts held-out
        rows better.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights for every fit (the held-out scores are unweighted).

        Returns
        -------
        self : object
            The fitted estimator.
        """
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        # Before the search: choosing the folds reads y, and would fail on NaN obscurely.
        _check_y(y, estimator=self)
        candidates = np.unique(np.asarray(self.n_experts))
        if (
            candidates.size == 0
            or not np.issubdtype(candidates.dtype, np.integer)
            or candidates[0] < 1
        ):
            raise ValueError(
                f"n_experts must hold positive integers, got {self.n_experts!r}; "
                "for example n_experts=(1, 2, 3, 4)."
            )
        grid = {"n_experts": [int(k) for k in candidates]}
        if self.gate is not None:
            if len(self.gate) == 0:
                raise ValueError("gate must list at least one gate, or be None.")
            grid["gate"] = list(self.gate)
        search = GridSearchCV(
            clone(self._mixture()),
            grid,
            cv=self.cv,
            scoring=log_likelihood_scorer if self.scoring is None else self.scoring,
            n_jobs=self.n_jobs,
            verbose=self.verbose,
            error_score="raise",
        )
        fit_params = {} if sample_weight is None else {"sample_weight": sample_weight}
        search.fit(X, y, **fit_params)
        self.best_estimator_ = search.best_estimator_
        self.best_params_ = search.best_params_
        self.best_score_ = search.best_score_
        self.cv_results_ = search.cv_results_
        self.n_experts_ = self.best_estimator_.n_experts
        self.n_features_in_ = self.best_estimator_.n_features_in_
        if hasattr(self.best_estimator_, "feature_names_in_"):
            self.feature_names_in_ = self.best_estimator_.feature_names_in_
        return self

    def predict(self, X):
        """Predict with the best mixture.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            The best mixture's predictions.
        """
        check_is_fitted(self)
        return self.best_estimator_.predict(X)

    def log_likelihood(self, X, y):
        """Log-likelihood ``log p(y | x)`` of each row under the best mixture.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.
        y : array-like of shape (n_samples,)
            Targets.

        Returns
        -------
        log_likelihood : ndarray of shape (n_samples,)
            Per-row conditional log-likelihood.
        """
        check_is_fitted(self)
        return self.best_estimator_.log_likelihood(X, y)

    def predict_gate(self, X):
        """Gate probabilities of the best mixture's experts.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_experts)
            Rows sum to one.
        """
        check_is_fitted(self)
        return self.best_estimator_.predict_gate(X)


_CV_DOC = """{summary}

    Tries each ``n_experts`` (and each gate of ``gate``, when given) by
    ``cv``-fold cross-validation, keeps the candidate with the highest mean
    held-out log-likelihood (:func:`skmoe.metrics.log_likelihood_scorer`;
    ties go to fewer experts) and refits it on all the data. With
    ``n_experts=1`` among the candidates, the single expert competes too, so
    the chosen mixture predicts held-out rows at least as well as one expert,
    up to the noise of the cross-validation. The log-likelihood rewards a
    mixture that models the spread of ``y`` (noise that differs between
    regimes) even where its mean prediction is no better; to choose for
    point predictions, pass ``scoring="{point_scoring}"``.

    Parameters
    ----------
    mixture : {mixture_class}, default=None
        The mixture whose ``n_experts`` (and ``gate``) are chosen; its other
        parameters are kept. ``None`` means ``{mixture_class}()``.
    n_experts : array-like of int, default=(1, 2, 3, 4)
        Numbers of experts to try.
    gate : list of str or gate objects, default=None
        Gates to try beside ``n_experts`` (for example ``["softmax",
        "tree"]``); ``None`` keeps the mixture's gate.
    cv : int, cross-validation generator or iterable, default=5
        As in :class:`~sklearn.model_selection.GridSearchCV` ({cv_kind}).
    scoring : str or callable, default=None
        How held-out rows score a candidate: ``None`` is the mean
        log-likelihood; otherwise any scikit-learn scoring (a name such as
        ``"{point_scoring}"``, or a callable ``scorer(estimator, X, y)``).
    n_jobs : int, default=None
        Candidates and folds fitted in parallel (joblib).
    verbose : int, default=0
        Verbosity of the search.

    Attributes
    ----------
    best_estimator_ : {mixture_class}
        The chosen mixture, refitted on all the data.
    best_params_ : dict
        Its ``n_experts`` (and ``gate``).
    best_score_ : float
        Its mean held-out score (log-likelihood per sample by default).
    cv_results_ : dict of ndarray
        Every candidate's scores, as in ``GridSearchCV.cv_results_``.
    n_experts_ : int
        The chosen number of experts.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features seen during fit, when ``X`` has string column names.

    See Also
    --------
    {mixture_class} : The mixture with a fixed number of experts.

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe import {name}
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(-3, 3, size=(300, 1))
    >>> {example}
    >>> search = {name}(n_experts=(1, 2, 3), cv=3).fit(X, y)
    >>> search.n_experts_ >= 2
    True
"""


class MixtureOfExpertsRegressorCV(RegressorMixin, _BaseMixtureCV):
    def _default_mixture(self):
        return MixtureOfExpertsRegressor(random_state=0)


class MixtureOfExpertsClassifierCV(ClassifierMixin, _BaseMixtureCV):
    def _default_mixture(self):
        return MixtureOfExpertsClassifier(random_state=0)

    def fit(self, X, y, sample_weight=None):
        super().fit(X, y, sample_weight)
        self.classes_ = self.best_estimator_.classes_
        return self

    fit.__doc__ = _BaseMixtureCV.fit.__doc__

    @available_if(_best_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities of the best mixture.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        check_is_fitted(self)
        return self.best_estimator_.predict_proba(X)

    @available_if(_best_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log class probabilities.
        """
        check_is_fitted(self)
        return self.best_estimator_.predict_log_proba(X)


MixtureOfExpertsRegressorCV.__doc__ = _CV_DOC.format(
    summary="Mixture of experts regressor with the number of experts chosen by cross-validation.",
    mixture_class="MixtureOfExpertsRegressor",
    name="MixtureOfExpertsRegressorCV",
    cv_kind="K-fold for an integer",
    point_scoring="r2",
    example="y = np.where(X[:, 0] < 0, -2 * X[:, 0], 3 * X[:, 0]) + 0.1 * rng.randn(300)",
)
MixtureOfExpertsClassifierCV.__doc__ = _CV_DOC.format(
    summary="Mixture of experts classifier with the number of experts chosen by cross-validation.",
    mixture_class="MixtureOfExpertsClassifier",
    name="MixtureOfExpertsClassifierCV",
    cv_kind="stratified K-fold for an integer",
    point_scoring="accuracy",
    example="y = (np.abs(X[:, 0]) + 0.3 * rng.randn(300) > 1.5).astype(int)",
)
