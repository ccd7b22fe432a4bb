"""Coefficient tables of a fitted mixture's linear experts and softmax gate.

A mixture of linear experts is read like a set of linear models and a
multinomial logit: :func:`expert_coefficients` puts the experts'
coefficients side by side, :func:`gate_coefficients` the gate's, against the
names of the features each part sees. The tables are pandas DataFrames when
pandas is installed, NumPy structured arrays otherwise.
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted

__all__ = ["expert_coefficients", "gate_coefficients"]


def expert_coefficients(model):
    """Coefficients of every linear expert of a fitted mixture, side by side.

    The experts see the columns ``model.expert_features_`` of ``X``. Each
    expert must be linear: it must have ``coef_`` (one entry per column it
    sees) and ``intercept_``, as the linear models of scikit-learn and of
    :mod:`skmoe.experts` do.

    Parameters
    ----------
    model : fitted MixtureOfExpertsRegressor or MixtureOfExpertsClassifier
        The mixture.

    Returns
    -------
    table : pandas.DataFrame or numpy structured array
        One row per feature the experts see, then a row ``"intercept"``.
        Features are named by ``model.feature_names_in_`` when the model was
        fitted on a DataFrame, else ``"x<j>"`` with ``j`` the column of ``X``.
        One column per expert, ``"expert <k>"`` (or the expert's name when
        ``estimator`` was a list of ``(name, estimator)`` pairs). Classifier
        experts contribute one column per row of their ``coef_``:
        ``"expert <k>, class <c>"`` (a binary classifier has one row, the
        log-odds of its second class against its first). Without pandas, a
        structured array with a field ``"feature"`` then one field per column.

    Raises
    ------
    ValueError
        If an expert is not linear (a tree, a pipeline...): read its own
        attributes in ``model.experts_[k]`` instead.

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe import MixtureOfExpertsRegressor
    >>> from skmoe.inspection import expert_coefficients
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(-1, 1, size=(300, 1))
    >>> y = np.abs(X[:, 0]) + 0.05 * rng.randn(300)
    >>> moe = MixtureOfExpertsRegressor(2, random_state=0).fit(X, y)
    >>> table = expert_coefficients(moe)
    >>> list(table.index)
    ['x0', 'intercept']
    """
    check_is_fitted(model, "experts_")
    features = _expert_feature_names(model)
    columns, values = [], []
    for name, expert in zip(_expert_names(model), model.experts_):
        coef, intercept = _linear_coefficients(expert, len(features), name)
        if coef.ndim == 1:
            columns.append(name)
            values.append(np.append(coef, intercept))
            continue
        classes = getattr(expert, "classes_", None)
        intercept = np.broadcast_to(np.ravel(intercept), (coef.shape[0],))
        for row in range(coef.shape[0]):
            if classes is not None and len(classes) == coef.shape[0]:
                columns.append(f"{name}, class {classes[row]}")
            elif classes is not None and len(classes) == 2 and coef.shape[0] == 1:
                columns.append(f"{name}, class {classes[1]}")
            elif coef.shape[0] == 1:
                columns.append(name)
            else:
                columns.append(f"{name}, output {row}")
            values.append(np.append(coef[row], intercept[row]))
    return _table(np.column_stack(values), features + ["intercept"], columns)


def gate_coefficients(model):
    """Coefficients of the fitted gate, one column per expert (or per HME branch).

    The softmax gate is ``g(x) = softmax(x V + c)``: column ``k`` holds
    expert ``k``'s coefficients ``V[:, k]`` (``model.gate_.coef_``) and its
    intercept ``c[k]``. Softmax is unchanged by adding the same vector to
    every column, so only differences between columns are meaningful: the
    difference between columns ``j`` and ``k`` is the change in
    ``log(g_j / g_k)`` per unit of each feature.

    The hierarchical gate (``gate="hme"``) is a tree of two-way softmax
    gates: it gets two columns per internal node, ``"node <j> left"`` and
    ``"node <j> right"`` (``model.gate_.nodes_[j]``); see
    ``model.gate_.children_`` and ``model.gate_.leaf_experts_`` for which
    experts lie under each branch.

    Parameters
    ----------
    model : fitted MixtureOfExpertsRegressor or MixtureOfExpertsClassifier
        The mixture.

    Returns
    -------
    table : pandas.DataFrame or numpy structured array
        One row per column the gate sees, then a row ``"intercept"``. The
        gate sees the columns ``model.gate_features_`` of ``X``, encoded
        (one-hot categories, missing-value indicators) when they needed it:
        rows are named by ``model.gate_.feature_names_in_`` when set (a
        DataFrame, or an encoding), else ``"x<j>"`` with ``j`` the column of
        ``X``. Columns are named as in :func:`expert_coefficients`. Without
        pandas, a structured array with a field ``"feature"`` then one field
        per column.

    Raises
    ------
    ValueError
        If the gate has no coefficients, such as the tree gate (read it with
        ``model.gate_.export_text()``).

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe import MixtureOfExpertsRegressor
    >>> from skmoe.inspection import gate_coefficients
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(-1, 1, size=(300, 1))
    >>> y = np.abs(X[:, 0]) + 0.05 * rng.randn(300)
    >>> moe = MixtureOfExpertsRegressor(2, random_state=0).fit(X, y)
    >>> gate_coefficients(moe).shape
    (2, 2)
    """
    check_is_fitted(model, "gate_")
    gate = model.gate_
    names = getattr(gate, "feature_names_in_", None)
    if names is not None:
        features = [str(name) for name in names]
    else:
        features = _column_names(model, model.gate_features_)
    if hasattr(gate, "nodes_") and hasattr(gate, "children_"):  # the HME gate
        columns, blocks = [], []
        for j, node in enumerate(gate.nodes_):
            coef, intercept = _gate_parameters(node, f"node {j} of the HME gate")
            columns += [f"node {j} left", f"node {j} right"]
            blocks.append(np.vstack([coef, intercept]))
        values = np.hstack(blocks)
    else:
        coef, intercept = _gate_parameters(gate, f"The gate ({type(gate).__name__})")
        columns = _expert_names(model)
        values = np.vstack([coef, intercept])
    if values.shape[0] != len(features) + 1:  # a gate of unknown inputs
        features = [f"gate input {i}" for i in range(values.shape[0] - 1)]
    return _table(values, features + ["intercept"], columns)


def _gate_parameters(gate, what):
    coef = getattr(gate, "coef_", None)
    intercept = getattr(gate, "intercept_", None)
    if not isinstance(coef, np.ndarray) or coef.ndim != 2 or intercept is None:
        hint = (
            "read its splits with model.gate_.export_text()"
            if hasattr(gate, "export_text")
            else "look at its probabilities with model.predict_gate(X)"
        )
        raise ValueError(
            f"{what} has no coefficients (coef_ of shape (n_features, n_experts) and "
            f"intercept_); gate_coefficients reads the softmax and HME gates only: {hint}."
        )
    return coef, np.ravel(intercept)


def _linear_coefficients(expert, n_features, name):
    coef = getattr(expert, "coef_", None)
    intercept = getattr(expert, "intercept_", None)
    if (
        not isinstance(coef, np.ndarray)
        or coef.ndim not in (1, 2)
        or coef.shape[-1] != n_features
        or intercept is None
    ):
        raise ValueError(
            f"Expert {name!r} ({type(expert).__name__}) is not a linear model with coef_ "
            f"of {n_features} feature(s) and intercept_, so it has no coefficient table; "
            f"read its own fitted attributes in model.experts_ instead (for a Pipeline, "
            "its last step, e.g. model.experts_[k][-1])."
        )
    return coef, intercept


def _expert_names(model):
    if isinstance(model.estimator, list):
        return [str(name) for name, _ in model.estimator]
    return [f"expert {k}" for k in range(len(model.experts_))]


def _expert_feature_names(model):
    return _column_names(model, model.expert_features_)


def _column_names(model, columns):
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return [str(names[j]) for j in columns]
    return [f"x{j}" for j in columns]


def _table(values, index, columns):
    """A DataFrame (index: ``index``, columns: ``columns``), or a structured array."""
    try:
        import pandas as pd
    except ImportError:
        width = max(len(name) for name in index)
        dtype = [("feature", f"U{width}")] + [(name, np.float64) for name in columns]
        table = np.zeros(len(index), dtype=dtype)
        table["feature"] = index
        for j, name in enumerate(columns):
            table[name] = values[:, j]
        return table
    table = pd.DataFrame(values, index=pd.Index(index, name="feature"), columns=columns)
    return table
