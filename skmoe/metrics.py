"""Scoring a mixture of experts as a conditional density.

``score`` on the estimators is scikit-learn's R2 or accuracy, a point
prediction's score.  A mixture is chosen for its conditional density
``p(y | x)``, so models are compared by held-out log-likelihood.
"""

import numpy as np


def log_likelihood_scorer(estimator, X, y, sample_weight=None):
    """Mean held-out log-likelihood ``log p(y | x)`` of a fitted mixture.

    A scorer in scikit-learn's ``scoring=callable`` form (greater is better),
    for :class:`~sklearn.model_selection.GridSearchCV` and
    :func:`~sklearn.model_selection.cross_val_score`.

    Parameters
    ----------
    estimator : fitted MixtureOfExpertsRegressor or MixtureOfExpertsClassifier
        The model to score.
    X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
        Held-out data.
    y : array-like of shape (n_samples,)
        Held-out targets.
    sample_weight : array-like of shape (n_samples,), default=None
        Weights of the rows in the mean.

    Returns
    -------
    score : float
        The (weighted) mean of ``log p(y_i | x_i)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import cross_val_score
    >>> from skmoe import MixtureOfExpertsRegressor
    >>> from skmoe.metrics import log_likelihood_scorer
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(-1, 1, size=(200, 1))
    >>> y = np.abs(X[:, 0]) + 0.1 * rng.randn(200)
    >>> scores = cross_val_score(MixtureOfExpertsRegressor(2, random_state=0), X, y,
    ...                          scoring=log_likelihood_scorer, cv=3)
    >>> bool(scores.mean() > 0)
    True
    """
    return float(np.average(estimator.log_likelihood(X, y), weights=sample_weight))
