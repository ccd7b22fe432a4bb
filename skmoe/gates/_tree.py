"""A decision-tree gate: hard regions of the input space, each with expert probabilities."""

from numbers import Integral, Real

import numpy as np
from sklearn.tree import DecisionTreeRegressor
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from ._base import BaseGate


class TreeGate(BaseGate):
    """Decision-tree gate: a tree cuts the inputs into regions (leaves), and
    each leaf holds a probability vector over the experts.

    Tabular data often change regime at thresholds on single features (price
    bands, hours of the day, machine states), which a linear softmax gate can
    only approximate. In the M-step the tree is fit to the responsibility
    matrix ``R`` as a multi-output squared-error regression (weighted by the
    sample weights): a leaf's mean of rows of ``R`` is a probability vector, so
    the gate is a proper distribution by construction and the data are never
    copied once per expert. Leaf probabilities are smoothed towards uniform so
    that no expert gets exactly zero probability where it may be needed.

    Missing values (NaN) in a dense ``X`` are handled natively by
    :class:`~sklearn.tree.DecisionTreeRegressor`: a split sends the rows
    missing its feature to the side chosen in training (to the child with
    more samples if none were missing there). ``X`` may also be a
    ``scipy.sparse`` matrix (without NaN).

    Parameters
    ----------
    max_depth : int or None, default=4
        Maximum depth of the tree (at most ``2**max_depth`` regions).
    min_samples_leaf : int or float, default=20
        Minimum number (or fraction) of samples in a leaf.
    smoothing : float, default=1.0
        Dirichlet pseudo-count added to every expert in every leaf, in units
        of sample weight: a leaf with weight ``W`` and mean responsibilities
        ``m`` gets probabilities ``(W m + smoothing) / (W + n_experts *
        smoothing)``.
    random_state : int, RandomState instance or None, default=None
        Breaks ties between equally good splits. The estimators seed it from
        their own ``random_state``.

    Attributes
    ----------
    tree_ : DecisionTreeRegressor
        The fitted tree.
    node_proba_ : ndarray of shape (n_nodes, n_experts)
        Smoothed expert probabilities of every tree node (leaves are used).
    n_experts_ : int
        Number of experts.

    See Also
    --------
    SoftmaxGate : Linear boundaries between experts.

    Notes
    -----
    The tree is refit from scratch in every M-step, which is not guaranteed to
    increase the gate's objective (tree growth is greedy), so EM with a tree
    gate is a well-behaved heuristic rather than exact EM. A tree gate started
    from k-means regions tends to keep that partition; the estimators'
    default ``init="auto"`` therefore starts tree gates from the
    responsibilities of a softmax-gated fit.

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe.gates import TreeGate
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> R = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    >>> gate = TreeGate(max_depth=1, min_samples_leaf=1, smoothing=0.0).fit(X, R)
    >>> gate.predict_proba(X)[:, 0]
    array([1., 1., 0., 0.])
    """

    _parameter_constraints: dict = {
        "max_depth": [Interval(Integral, 1, None, closed="left"), None],
        "min_samples_leaf": [
            Interval(Integral, 1, None, closed="left"),
            Interval(Real, 0, 1, closed="neither"),
        ],
        "smoothing": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }
    _default_init = "softmax"
    _accepts_sparse = True  # DecisionTreeRegressor takes CSR and CSC (without NaN)
    _accepts_nan = True

    def __init__(self, max_depth=4, min_samples_leaf=20, smoothing=1.0, random_state=None):
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.smoothing = smoothing
        self.random_state = random_state

    def _initialize(self, X, n_experts, sample_weight):
        self._validate_params()
        if X.shape[1] == 0:
            raise ValueError(
                "TreeGate needs at least one gate feature to split on; gate_features "
                "selects none. Use gate='softmax' for constant mixing proportions."
            )
        self.n_experts_ = n_experts
        # Before the first M-step: a single leaf with uniform probabilities.
        self.tree_ = None
        self.node_proba_ = np.full((1, n_experts), 1.0 / n_experts)

    def _m_step(self, X, responsibilities, sample_weight, tol=None, max_iter=None):
        tree = DecisionTreeRegressor(
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            random_state=self.random_state,
        ).fit(X, responsibilities, sample_weight=sample_weight)
        weight = tree.tree_.weighted_n_node_samples[:, None]
        mean = tree.tree_.value[:, :, 0]
        mass = weight * mean + self.smoothing
        self.node_proba_ = mass / mass.sum(axis=1, keepdims=True)
        self.tree_ = tree
        return self

    def _n_parameters(self, n_redundant=0):
        """The leaves' free probabilities: ``n_leaves * (n_experts - 1)``.

        The tree's structure (its split features and thresholds) is not
        counted: it has no agreed number of parameters, so BIC and AIC with a
        tree gate understate its complexity. A tree that never split (or was
        not fit yet) is one leaf. Redundant input columns (``n_redundant``)
        change nothing here: the tree has no coefficients.
        """
        check_is_fitted(self)
        n_leaves = 1 if self.tree_ is None else self.tree_.get_n_leaves()
        return int(n_leaves) * (self.n_experts_ - 1)

    def _logits(self, X):
        check_is_fitted(self)
        with np.errstate(divide="ignore"):  # smoothing=0 may leave exact zeros
            log_proba = np.log(self.node_proba_)
        if self.tree_ is None:
            return np.repeat(log_proba, X.shape[0], axis=0)
        # The tree works in float32 (NaN stays NaN); sparse X stays sparse.
        return log_proba[self.tree_.apply(X.astype(np.float32))]

    def export_text(self, feature_names=None, decimals=2):
        """The gate's rules as text, with each leaf's expert probabilities.

        Parameters
        ----------
        feature_names : array-like of str, default=None
            Names of the gate's input columns, one per column. When None, the
            gate's ``feature_names_in_`` if it has that attribute (the
            estimators set it when they know the column names), else ``x[j]``.
        decimals : int, default=2
            Digits of thresholds and probabilities.

        Returns
        -------
        text : str
            One line per split and per leaf; a leaf line names the dominant
            expert and lists every expert's probability.
        """
        check_is_fitted(self, "tree_")
        tree = self.tree_.tree_
        n_features = self.tree_.n_features_in_
        if feature_names is None:
            feature_names = getattr(self, "feature_names_in_", None)
        if feature_names is None:
            names = [f"x[{j}]" for j in range(n_features)]
        else:
            # Any sequence: a list, an ndarray, a pandas Index (whose truth value is ambiguous).
            names = [str(name) for name in feature_names]
            if len(names) != n_features:
                raise ValueError(
                    f"export_text needs {n_features} feature names, one per gate input "
                    f"column; got {len(names)}."
                )
        lines = []

        def visit(node, depth):
            indent = "|   " * depth + "|--- "
            left, right = tree.children_left[node], tree.children_right[node]
            if left == right:  # a leaf
                proba = self.node_proba_[node]
                best = int(np.argmax(proba))
                listed = ", ".join(f"{p:.{decimals}f}" for p in proba)
                lines.append(
                    f"{indent}expert {best} (p={proba[best]:.{decimals}f}); experts: [{listed}]"
                )
                return
            name, threshold = names[tree.feature[node]], tree.threshold[node]
            lines.append(f"{indent}{name} <= {threshold:.{decimals}f}")
            visit(left, depth + 1)
            lines.append(f"{indent}{name} >  {threshold:.{decimals}f}")
            visit(right, depth + 1)

        visit(0, 0)
        return "\n".join(lines)
