"""The hierarchical mixture-of-experts gate of Jordan & Jacobs (1994)."""

from collections import deque
from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from .._kernels import hme_leaf_log_proba, hme_node_targets
from .._threads import kernel_threads
from ._base import BaseGate
from ._softmax import SoftmaxGate


def _binary_tree(n_leaves):
    """The ``children`` array of the most balanced binary tree with ``n_leaves`` leaves.

    A node over ``m`` leaves has ``ceil(m / 2)`` of them on its left and
    ``floor(m / 2)`` on its right, so leaf depths differ by at most one and a
    power of two gives the complete tree. Row ``j`` holds internal node
    ``j``'s (left, right) children: an internal node's index, or ``-1 - leaf``
    for a leaf. Nodes are numbered level by level (breadth first), so parents
    come before their children and a complete tree is in heap order (node
    ``j``'s children are ``2j + 1`` and ``2j + 2``); leaves are numbered left
    to right, so every subtree holds a contiguous range of them.
    """
    children = np.empty((n_leaves - 1, 2), dtype=np.intp)
    pending = deque([(0, n_leaves)])  # (first leaf, leaf count) of nodes 0, 1, 2, ...
    n_nodes = 1
    for node in range(n_leaves - 1):
        first, count = pending.popleft()
        n_left = (count + 1) // 2
        for side, (start, size) in enumerate(((first, n_left), (first + n_left, count - n_left))):
            if size == 1:
                children[node, side] = -1 - start
            else:
                children[node, side] = n_nodes
                pending.append((start, size))
                n_nodes += 1
    return children


class HMEGate(BaseGate):
    """Hierarchical mixture-of-experts gate: a soft binary tree of logistic gates.

    The gate of Jordan & Jacobs (1994). A binary tree with one leaf per
    expert has ``n_experts - 1`` internal nodes, each holding a two-way
    logistic gate that sends a row to its left or right child. A row reaches
    a leaf with the product of the branch probabilities along the path, so
    the gate probabilities are a proper distribution over the experts by
    construction. Experts under the same node share the decisions above it:
    the tree splits the input space softly, coarse splits first.

    By default the tree is shaped by the number of experts: as balanced as
    possible, each node splitting its ``m`` leaves into ``ceil(m / 2)`` on the
    left and ``floor(m / 2)`` on the right (so any ``n_experts >= 2`` works,
    and a power of two gives the complete tree). ``depth`` asks for the
    complete tree of that depth instead.

    Each node is a :class:`SoftmaxGate` with two columns (left, right), with
    its penalty, internal standardisation and warm-started L-BFGS M-step. So
    with two experts the gate is exactly the softmax gate. ``X`` may be a
    ``scipy.sparse`` matrix where the node gates accept one: the HME gate
    itself never densifies it.

    Parameters
    ----------
    depth : int or None, default=None
        None: a tree with exactly ``n_experts`` leaves, built when the gate is
        fit (``n_experts >= 2``). An int: the complete tree of that depth,
        whose ``2**depth`` leaves must then match the mixture's
        ``n_experts``.
    C : float, default=1e4
        Inverse strength of the L2 penalty of every node's gate (see
        :class:`SoftmaxGate`); ``np.inf`` turns it off.
    max_iter : int, default=100
        Maximum L-BFGS iterations per node and M-step (EM warm-starts each
        node and solves it as precisely as it needs; see :class:`SoftmaxGate`).
    tol : float, default=1e-6
        Gradient tolerance of each node's L-BFGS at convergence (see
        :class:`SoftmaxGate`).

    Attributes
    ----------
    children_ : ndarray of shape (n_experts - 1, 2), dtype=intp
        The tree: row ``j`` holds internal node ``j``'s left and right child
        (column 0 and column 1 of its gate). An entry ``c >= 0`` is the
        internal node ``c``, an entry ``c < 0`` the leaf ``-1 - c``. Node 0 is
        the root, nodes are numbered level by level (every node after its
        parent; a complete tree is in heap order: node ``j`` has children
        ``2j + 1`` and ``2j + 2``), and leaves are numbered left to right.
    nodes_ : list of SoftmaxGate
        The ``n_experts - 1`` fitted node gates: ``nodes_[j]`` is node ``j``
        of ``children_``.
    n_experts_ : int
        Number of experts (leaves).
    leaf_experts_ : ndarray of shape (n_experts,)
        The expert at each leaf, left to right, chosen at the first M-step so
        that experts whose starting regions lie close together in the gate's
        input space share a subtree.

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
    as ``skmoe._kernels.hme_leaf_log_proba`` (nodes visited from the root on,
    the log-sigmoids computed without overflow).

    The gate's EM objective ``sum_i w_i sum_k R_ik log g_k(x_i)`` is therefore
    a sum over nodes of ``sum_i w_i (a_ij log s_j(x_i) + b_ij log(1 -
    s_j(x_i)))``, where ``a_ij`` and ``b_ij`` are the posterior
    (responsibility) masses of the leaves below node ``j``'s left and right
    child: the *upward* recursion, compiled as
    ``skmoe._kernels.hme_node_targets`` (nodes visited from the last to the
    root). Their sum is the posterior probability that row ``i``'s path
    passes through node ``j``. Each node's M-step is a weighted logistic
    regression on these soft targets (a row weighs ``w_i`` times its reach,
    which the soft-target loss does by itself when the targets do not sum to
    one), and the nodes have separate parameters, so the M-step decomposes
    into one independent problem per node, as in the paper. Every node's step
    is a generalised EM step (its objective cannot go down), hence so is the
    gate's, and with exact expert updates the likelihood of the mixture
    cannot decrease. Both recursions cost O(n_experts) per row.

    The penalty is ``||V_j||^2 / (2 C)`` for every node, on the standardised
    coefficients as in :class:`SoftmaxGate`. Each node stores two columns of
    ``n_features + 1`` coefficients, of which one column is free (a softmax
    is unchanged by adding the same vector to both), so the gate has
    ``(n_experts - 1) (n_features + 1)`` free parameters, as many as the
    softmax gate; the M-step runs one L-BFGS per node on all rows.

    Only experts in the same subtree share its splits, and a start that puts
    two far apart regimes under the same node leads EM to a poorer optimum.
    So at the first M-step the gate places the experts on the leaves by a
    recursive bisection of their starting regions that follows the tree: the
    experts' centres (responsibility-weighted means of the inputs, in the
    standardised units of the root's gate) are sorted along their principal
    axis and cut in two groups of the sizes of the root's left and right
    subtrees, each group again for its subtree, down to the leaves. Where the
    two groups differ in size, the cut is made from the end of the axis that
    leaves the smaller scatter of centres within the groups. Several starts
    (``n_init``) still help.

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
    >>> gate = HMEGate().fit(X, R)
    >>> len(gate.nodes_)
    3
    >>> gate.children_  # the root's children are nodes 1 and 2, theirs leaves
    array([[ 1,  2],
           [-1, -2],
           [-3, -4]])
    >>> gate.predict_proba(X).argmax(axis=1)
    array([0, 1, 2, 3])

    Three experts make an unbalanced tree: two leaves under node 1 on the
    left, one leaf on the right of the root.

    >>> HMEGate().fit(X[:3], np.eye(3)).children_
    array([[ 1, -3],
           [-1, -2]])
    """

    _parameter_constraints: dict = {
        "depth": [Interval(Integral, 1, None, closed="left"), None],
        **SoftmaxGate._parameter_constraints,
    }

    #: ``X`` reaches the nodes' :class:`SoftmaxGate` as it is (never densified here).
    _accepts_sparse = True

    def __init__(self, depth=None, C=1e4, max_iter=100, tol=1e-6):
        self.depth = depth
        self.C = C
        self.max_iter = max_iter
        self.tol = tol

    def _initialize(self, X, n_experts, sample_weight):
        self._validate_params()
        if self.depth is None:
            if n_experts < 2:
                raise ValueError(
                    f"HMEGate needs at least two experts (a tree with one gate), but "
                    f"n_experts={n_experts}; use n_experts >= 2."
                )
            n_leaves = n_experts
        else:
            n_leaves = 2**self.depth
            if n_experts != n_leaves:
                if n_experts >= 2 and n_experts & (n_experts - 1) == 0:
                    alternative = f"depth={n_experts.bit_length() - 1} or "
                else:
                    alternative = ""
                raise ValueError(
                    f"HMEGate(depth={self.depth}) has {n_leaves} leaves, one per expert, "
                    f"but n_experts={n_experts}; use n_experts={n_leaves}, or {alternative}"
                    "depth=None (the default) for a tree with one leaf per expert."
                )
        self.n_experts_ = n_experts
        self.children_ = _binary_tree(n_leaves)
        self.leaf_experts_ = None  # placed at the first M-step
        self.nodes_ = []
        for _ in range(n_leaves - 1):
            node = SoftmaxGate(C=self.C, max_iter=self.max_iter, tol=self.tol)
            node._initialize(X, 2, sample_weight)
            self.nodes_.append(node)

    def _m_step(self, X, responsibilities, sample_weight, tol=None, max_iter=None):
        if self.leaf_experts_ is None:
            self.leaf_experts_ = self._place_experts(X, responsibilities, sample_weight)
        responsibilities = np.ascontiguousarray(
            responsibilities[:, self.leaf_experts_], dtype=np.float64
        )
        n_samples = responsibilities.shape[0]
        targets = np.empty((n_samples, len(self.nodes_), 2))
        hme_node_targets(
            self.children_, responsibilities, targets, kernel_threads(responsibilities.size)
        )
        for j, node in enumerate(self.nodes_):
            node._m_step(X, targets[:, j, :], sample_weight, tol, max_iter)
        return self

    def _n_parameters(self, n_redundant=0):
        """The nodes' free parameters: ``n_features - n_redundant + 1`` per two-way node.

        Each node is a two-column :class:`SoftmaxGate`, of which one column is
        free (see :meth:`SoftmaxGate._n_parameters`), so the gate has
        ``(n_experts - 1) * (n_features - n_redundant + 1)`` free parameters,
        as many as the softmax gate.
        """
        check_is_fitted(self)
        return sum(node._n_parameters(n_redundant) for node in self.nodes_)

    def _parameter_vector(self):
        return np.concatenate([node._parameter_vector() for node in self.nodes_])

    def _set_parameter_vector(self, vector):
        for node, part in zip(self.nodes_, np.split(vector, len(self.nodes_))):
            node._set_parameter_vector(part)

    def _place_experts(self, X, responsibilities, sample_weight):
        """Leaf order of the experts: recursive bisection of their centres along the tree.

        ``X`` may be sparse: the centres are weighted means in input units,
        ``mass.T @ X``, standardised afterwards (a (K, d) array).
        """
        mass = responsibilities * sample_weight[:, None]
        mass_sum = mass.sum(axis=0)
        sums = np.asarray(mass.T @ X)  # (K, d); a sparse X stays sparse
        centres = sums / np.maximum(mass_sum, np.finfo(float).tiny)[:, None]
        root = self.nodes_[0]
        centres = (centres - root._mean) / root._scale
        centres[mass_sum <= 0] = 0.0  # an expert without mass sits at the inputs' mean

        children = self.children_
        n_leaves_below = np.empty(len(children), dtype=np.intp)
        for j in range(len(children) - 1, -1, -1):  # children come after their parents
            n_leaves_below[j] = sum(1 if c < 0 else n_leaves_below[c] for c in children[j])

        def scatter(points):
            return np.sum((points - points.mean(axis=0)) ** 2) if len(points) else 0.0

        def place(node, experts):
            """The experts in left-to-right leaf order of the subtree at ``node``."""
            if node < 0:
                return [(-1 - node, experts[0])]
            left, right = children[node]
            n_left = 1 if left < 0 else n_leaves_below[left]
            points = centres[experts] - centres[experts].mean(axis=0)
            if points.shape[1] and np.any(points):
                axis = np.linalg.svd(points, full_matrices=False)[2][0]
                experts = experts[np.argsort(points @ axis, kind="stable")]
                if 2 * n_left != len(experts):  # unequal groups: cut from the closer end
                    reverse = experts[::-1]
                    if scatter(centres[reverse[:n_left]]) + scatter(
                        centres[reverse[n_left:]]
                    ) < scatter(centres[experts[:n_left]]) + scatter(centres[experts[n_left:]]):
                        experts = reverse
            return place(left, experts[:n_left]) + place(right, experts[n_left:])

        leaf_experts = np.empty(self.n_experts_, dtype=np.intp)
        for leaf, expert in place(0, np.arange(self.n_experts_)):
            leaf_experts[leaf] = expert
        return leaf_experts

    def _node_logits(self, X):
        """Every node's (left, right) logits: one matrix product, shape (n, n_nodes, 2).

        ``X @ coef`` is dense for a dense or a sparse ``X``.
        """
        coef = np.stack([node.coef_ for node in self.nodes_], axis=1)  # (d, n_nodes, 2)
        intercept = np.stack([node.intercept_ for node in self.nodes_])  # (n_nodes, 2)
        logits = np.asarray(X @ coef.reshape(X.shape[1], 2 * len(self.nodes_)))
        logits += intercept.ravel()
        return np.ascontiguousarray(logits).reshape(X.shape[0], len(self.nodes_), 2)

    def _logits(self, X):
        check_is_fitted(self)
        leaf_log_proba = np.empty((X.shape[0], self.n_experts_))
        hme_leaf_log_proba(
            self.children_,
            self._node_logits(X),
            leaf_log_proba,
            kernel_threads(leaf_log_proba.size),
        )
        if self.leaf_experts_ is None:  # before the first M-step all leaves are alike
            return leaf_log_proba
        expert_log_proba = np.empty_like(leaf_log_proba)
        expert_log_proba[:, self.leaf_experts_] = leaf_log_proba
        return expert_log_proba
