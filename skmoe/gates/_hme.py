"""The hierarchical mixture-of-experts gate of Jordan & Jacobs (1994)."""

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from .._kernels import hme_leaf_log_proba, hme_node_targets
from .._threads import kernel_threads
from ._base import BaseGate
from ._softmax import SoftmaxGate


class HMEGate(BaseGate):
    """Hierarchical mixture-of-experts gate: a soft binary tree of logistic gates.

    The gate of Jordan & Jacobs (1994). A complete binary tree of depth
    ``depth`` has ``2**depth - 1`` internal nodes, each holding a two-way
    logistic gate that sends a row to its left or right child; the
    ``2**depth`` leaves are the experts, left to right. A row reaches a leaf
    with the product of the branch probabilities along the path, so the gate
    probabilities are a proper distribution over the experts by construction.
    Experts under the same node share the decisions above it: the tree splits
    the input space softly, coarse splits first.

    Each node is a :class:`SoftmaxGate` with two columns (left, right), with
    its penalty, internal standardisation and warm-started L-BFGS M-step. So
    ``depth=1`` is exactly the softmax gate with two experts.

    Parameters
    ----------
    depth : int, default=2
        Depth of the tree; the gate routes between exactly ``2**depth``
        experts, and the mixture's ``n_experts`` must equal that.
    C : float, default=1.0
        Inverse strength of the L2 penalty of every node's gate (see
        :class:`SoftmaxGate`); ``np.inf`` turns it off.
    max_iter : int, default=3
        Maximum L-BFGS iterations per node and M-step (a few suffice, as
        EM warm-starts each node; see :class:`SoftmaxGate`).
    tol : float, default=1e-6
        Gradient tolerance of each node's L-BFGS (see :class:`SoftmaxGate`).

    Attributes
    ----------
    nodes_ : list of SoftmaxGate
        The ``2**depth - 1`` fitted node gates in heap order: node ``j`` has
        children ``2j + 1`` (column 0 of its gate, left) and ``2j + 2``
        (column 1, right); the children of the last level are the leaves,
        i.e. the experts ``0, ..., 2**depth - 1`` from left to right.
    n_experts_ : int
        Number of experts (leaves), ``2**depth``.
    leaf_experts_ : ndarray of shape (n_experts,)
        The expert at each leaf, left to right, chosen at the first M-step so
        that experts whose starting regions lie close together in the gate's
        input space become siblings.

    See Also
    --------
    SoftmaxGate : A single multinomial logit over all experts.
    TreeGate : Hard regions cut by a decision tree.

    Notes
    -----
    Write ``s_j(x)`` for the probability that node ``j`` sends ``x`` left, a
    logistic function of the difference of its gate's two logits. The log
    gate probability of leaf ``k`` is the sum, along its root-to-leaf path, of
    ``log s_j(x)`` or ``log(1 - s_j(x))``: the *downward* recursion, compiled
    as ``skmoe._kernels.hme_leaf_log_proba`` with the log-sigmoids computed
    without overflow.

    The gate's EM objective ``sum_i w_i sum_k R_ik log g_k(x_i)`` is therefore
    a sum over nodes of ``sum_i w_i (a_ij log s_j(x_i) + b_ij log(1 -
    s_j(x_i)))``, where ``a_ij`` and ``b_ij`` are the posterior
    (responsibility) masses of the leaves below node ``j``'s left and right
    child: the *upward* recursion, compiled as
    ``skmoe._kernels.hme_node_targets``. Their sum is the posterior
    probability that row ``i``'s path passes through node ``j``. Each node's
    M-step is a weighted logistic regression on these soft targets (a row
    weighs ``w_i`` times its reach, which the soft-target loss does by itself
    when the targets do not sum to one), and the nodes have separate
    parameters, so the M-step decomposes into one independent problem per
    node, as in the paper. Every node's step is a generalised EM step (its
    objective cannot go down), hence so is the gate's, and with exact expert
    updates the likelihood of the mixture cannot decrease.

    The penalty is ``||V_j||^2 / (2 C)`` for every node, on the standardised
    coefficients as in :class:`SoftmaxGate`. The gate has ``2 (2**depth - 1)
    (n_features + 1)`` parameters (two columns per node, identified by the
    penalty), against ``2**depth (n_features + 1)`` for the softmax gate;
    the M-step runs one L-BFGS per node on all rows.

    Only siblings in the tree share a split, and a start that puts two far
    apart regimes under the same node leads EM to a poorer optimum. So at the
    first M-step the gate places the experts on the leaves by a balanced
    recursive bisection of their starting regions: the experts' centres
    (responsibility-weighted means of the standardised inputs) are split in
    two halves along their principal axis, each half again, down to the
    leaves. Several starts (``n_init``) still help.

    References
    ----------
    M. I. Jordan and R. A. Jacobs, "Hierarchical mixtures of experts and the
    EM algorithm", Neural Computation 6(2):181-214, 1994.

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe.gates import HMEGate
    >>> X = np.array([[-2.0, -1.0], [-2.0, 1.0], [2.0, -1.0], [2.0, 1.0]])
    >>> R = np.eye(4)  # each quadrant belongs to its own expert
    >>> gate = HMEGate(depth=2).fit(X, R)
    >>> len(gate.nodes_)
    3
    >>> gate.predict_proba(X).argmax(axis=1)
    array([0, 1, 2, 3])
    """

    _parameter_constraints: dict = {
        "depth": [Interval(Integral, 1, None, closed="left")],
        **SoftmaxGate._parameter_constraints,
    }

    def __init__(self, depth=2, C=1.0, max_iter=3, tol=1e-6):
        self.depth = depth
        self.C = C
        self.max_iter = max_iter
        self.tol = tol

    def _initialize(self, X, n_experts, sample_weight):
        self._validate_params()
        n_leaves = 2**self.depth
        if n_experts != n_leaves:
            if n_experts >= 2 and n_experts & (n_experts - 1) == 0:
                alternative = f"depth={n_experts.bit_length() - 1}"
            else:
                alternative = "a depth with 2**depth == n_experts (n_experts a power of two)"
            raise ValueError(
                f"HMEGate(depth={self.depth}) has {n_leaves} leaves, one per expert, "
                f"but n_experts={n_experts}; use n_experts={n_leaves} or {alternative}."
            )
        self.n_experts_ = n_experts
        self.leaf_experts_ = None  # placed at the first M-step
        self.nodes_ = []
        for _ in range(n_leaves - 1):
            node = SoftmaxGate(C=self.C, max_iter=self.max_iter, tol=self.tol)
            node._initialize(X, 2, sample_weight)
            self.nodes_.append(node)

    def _m_step(self, X, responsibilities, sample_weight):
        if self.leaf_experts_ is None:
            self.leaf_experts_ = self._place_experts(X, responsibilities, sample_weight)
        responsibilities = np.ascontiguousarray(
            responsibilities[:, self.leaf_experts_], dtype=np.float64
        )
        n_samples = responsibilities.shape[0]
        targets = np.empty((n_samples, len(self.nodes_), 2))
        hme_node_targets(responsibilities, targets, kernel_threads(responsibilities.size))
        for j, node in enumerate(self.nodes_):
            node._m_step(X, targets[:, j, :], sample_weight)
        return self

    def _place_experts(self, X, responsibilities, sample_weight):
        """Leaf order of the experts: balanced bisection of their centres."""
        mass = responsibilities * sample_weight[:, None]
        std_X = (X - self.nodes_[0]._mean) / self.nodes_[0]._scale
        centres = (mass.T @ std_X) / np.maximum(mass.sum(axis=0), np.finfo(float).tiny)[:, None]

        def bisect(experts):
            if experts.size == 1:
                return experts
            points = centres[experts] - centres[experts].mean(axis=0)
            if points.shape[1] and np.any(points):
                axis = np.linalg.svd(points, full_matrices=False)[2][0]
                experts = experts[np.argsort(points @ axis, kind="stable")]
            half = experts.size // 2
            return np.concatenate([bisect(experts[:half]), bisect(experts[half:])])

        return bisect(np.arange(self.n_experts_))

    def _node_logits(self, X):
        """Every node's (left, right) logits: one matrix product, shape (n, n_nodes, 2)."""
        coef = np.stack([node.coef_ for node in self.nodes_], axis=1)  # (d, n_nodes, 2)
        intercept = np.stack([node.intercept_ for node in self.nodes_])  # (n_nodes, 2)
        logits = X @ coef.reshape(X.shape[1], 2 * len(self.nodes_))
        logits += intercept.ravel()
        return np.ascontiguousarray(logits).reshape(X.shape[0], len(self.nodes_), 2)

    def _logits(self, X):
        check_is_fitted(self)
        leaf_log_proba = np.empty((X.shape[0], self.n_experts_))
        hme_leaf_log_proba(
            self._node_logits(X), leaf_log_proba, kernel_threads(leaf_log_proba.size)
        )
        if self.leaf_experts_ is None:  # before the first M-step all leaves are alike
            return leaf_log_proba
        expert_log_proba = np.empty_like(leaf_log_proba)
        expert_log_proba[:, self.leaf_experts_] = leaf_log_proba
        return expert_log_proba
