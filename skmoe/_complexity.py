"""The number of free parameters of a fitted mixture, for BIC and AIC.

An information criterion charges a model for its free parameters: ``BIC =
-2 log L + k log(n)``, ``AIC = -2 log L + 2 k``. For a mixture of experts
``k`` is the sum of three parts, each counted where it is defined:

* the gate: its own ``_n_parameters()`` (see :mod:`skmoe.gates`);
* the experts: linear models only, by their coefficients and intercepts
  (:func:`_expert_parameters`); other experts have no defined count;
* the likelihood: its ``n_parameters(n_experts)`` (a noise variance or a
  gamma shape per expert; none for Poisson and for classification).
"""

import numpy as np

from ._experts import is_linear_expert


def n_parameters(mixture):
    """Number of free parameters of a fitted mixture of experts.

    Parameters
    ----------
    mixture : MixtureOfExpertsRegressor or MixtureOfExpertsClassifier
        A fitted mixture.

    Returns
    -------
    n_parameters : int
        Gate + experts + likelihood parameters:

        * gate: ``(n_experts - 1) * (d + 1)`` for the softmax gate on ``d``
          input columns (after the gate's encoding of missing values and
          categories, less one column per categorical column, whose one-hot
          columns sum to the intercept's constant; without inputs, the
          ``n_experts - 1`` mixing proportions), ``d + 1`` per node of the
          HME gate, and ``n_leaves * (n_experts - 1)`` leaf probabilities for
          the tree gate, whose structure (split features and thresholds) is
          not counted;
        * experts (linear models of :mod:`sklearn.linear_model` or
          :mod:`skmoe.experts`): a regressor's coefficients plus its
          intercept; a classifier's ``d`` coefficients plus intercept per
          class but one for a softmax (multinomial) model, per class for a
          one-vs-rest model (``d + 1`` in all for two classes);
        * likelihood: a noise variance (Gaussian) or a shape (gamma) per
          expert, none for Poisson and for classification.

        Penalised models (``Ridge``, a finite ``C``, a gate's penalty) are
        counted by their nominal parameters: their effective number of
        parameters is smaller, which this does not estimate.

    Raises
    ------
    ValueError
        If an expert is not a linear model (a tree, boosting, an SVM, any
        ``Pipeline``...), or the gate does not define its count: such models
        have no defined number of free parameters.
    """
    count = mixture.gate_._n_parameters(_redundant_gate_columns(mixture))
    classifier = hasattr(mixture, "classes_")
    for index, expert in enumerate(mixture.experts_):
        count += _expert_parameters(expert, index, classifier)
    # The likelihood's own: a noise variance (Gaussian) or a shape (gamma) per expert.
    count += mixture._likelihood.n_parameters(mixture.n_experts)
    return int(count)


def _redundant_gate_columns(mixture):
    """Gate input columns that add no free parameter: one per one-hot encoded column.

    The mixture one-hot encodes a categorical column for the gate with every
    category it saw at fit (see :mod:`skmoe._inputs`), so each training row
    has exactly one 1 among those columns: they sum to the intercept's
    constant, and one of them is not identified by the likelihood.
    """
    encoder = getattr(mixture, "gate_encoder_", None)
    one_hot = getattr(encoder, "named_transformers_", {}).get("categorical")
    return 0 if one_hot is None else len(one_hot.categories_)


def _is_softmax(expert):
    """Whether a linear classifier's class scores go through a symmetric softmax.

    Then adding the same vector to every class's parameters changes nothing,
    so one class's row is not free. skmoe's ``WeightedLogisticRegression`` is
    always multinomial; scikit-learn's ``LogisticRegression`` is unless it is
    one-vs-rest (``multi_class="ovr"``, or liblinear with ``"auto"``, before
    scikit-learn 1.8). Other linear classifiers (``SGDClassifier``...) are
    one-vs-rest: every class's row is free.
    """
    from sklearn.linear_model import LogisticRegression

    from .experts import WeightedLogisticRegression

    if isinstance(expert, WeightedLogisticRegression):
        return True
    if not isinstance(expert, LogisticRegression):
        return False
    multi_class = getattr(expert, "multi_class", "auto")
    if multi_class == "ovr":
        return False
    return not (multi_class in ("auto", "deprecated") and expert.solver == "liblinear")


def _expert_parameters(expert, index, classifier):
    """Free parameters of one fitted expert; ValueError if it has no defined count."""
    if not is_linear_expert(expert):
        raise ValueError(
            f"Expert {index} ({type(expert).__name__}) has no defined number of free "
            "parameters, which BIC and AIC need: they are defined for linear experts "
            "(from sklearn.linear_model or skmoe.experts) only. Compare models by "
            "cross-validated log-likelihood instead: skmoe.MixtureOfExpertsRegressorCV "
            "or skmoe.MixtureOfExpertsClassifierCV, or "
            "skmoe.metrics.log_likelihood_scorer with GridSearchCV."
        )
    intercept = 1 if getattr(expert, "fit_intercept", True) else 0
    if not classifier:
        return expert.coef_.size + intercept
    # A classifier's coef_ is (n_rows, d): one row for two classes (scikit-learn's
    # binary models), else one per class (skmoe's logit keeps two rows for two
    # classes; their difference is the one free row).
    coef = np.atleast_2d(expert.coef_)
    n_rows, n_features = coef.shape
    per_row = n_features + intercept
    if n_rows == 1:
        return per_row
    return (n_rows - 1 if _is_softmax(expert) else n_rows) * per_row
