"""The hierarchical mixture-of-experts gate (Jordan & Jacobs 1994) and its kernels.

The compiled recursions are checked against NumPy references written from
their definitions:

* downward, ``hme_leaf_log_proba``: the log gate probability of a leaf is the
  sum of ``log sigmoid(+-(z_j0 - z_j1))`` over the nodes ``j`` on its
  root-to-leaf path (heap order: node ``j`` has children ``2j+1``, ``2j+2``);
* upward, ``hme_node_targets``: node ``j``'s targets are the responsibility
  mass of the leaves below its left and its right child.

The gate is then checked on data generated from a depth-2 HME with
linear-Gaussian experts (known truth), in the EM engine (exact monotonicity,
depth 1 == softmax gate) and through the scikit-learn API.
"""

import pickle
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import expit, log_expit, log_softmax, logsumexp
from scipy.stats import norm
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor, SoftmaxGate
from skmoe._kernels import hme_leaf_log_proba, hme_node_targets
from skmoe.gates import HMEGate

RTOL = 1e-10
DEPTHS = (1, 2, 3, 5)
N_SAMPLES = (1, 7, 1000)


# --------------------------------------------------------------------------
# References, helpers and the true model
# --------------------------------------------------------------------------


def path(depth, leaf):
    """(node, went_left) pairs from the root to ``leaf``, in heap order."""
    node, steps = 2**depth - 1 + leaf, []
    while node > 0:
        parent = (node - 1) // 2
        steps.append((parent, node == 2 * parent + 1))
        node = parent
    return steps[::-1]


def reference_leaf_log_proba(node_logits):
    """Sum of log branch probabilities along each root-to-leaf path."""
    n, n_nodes, _ = node_logits.shape
    depth = int(np.log2(n_nodes + 1))
    diff = node_logits[:, :, 0] - node_logits[:, :, 1]
    out = np.zeros((n, n_nodes + 1))
    for leaf in range(n_nodes + 1):
        for node, left in path(depth, leaf):
            out[:, leaf] += log_expit(diff[:, node] if left else -diff[:, node])
    return out


def reference_node_targets(responsibilities):
    """Mass of the leaves below each node's left and right child, by leaf ranges."""
    n, n_leaves = responsibilities.shape
    depth = int(np.log2(n_leaves))
    targets = np.empty((n, n_leaves - 1, 2))
    for level in range(depth):
        width = 2 ** (depth - level)  # leaves below a node of this level
        for position in range(2**level):
            lo, mid = position * width, position * width + width // 2
            node = 2**level - 1 + position
            targets[:, node, 0] = responsibilities[:, lo:mid].sum(axis=1)
            targets[:, node, 1] = responsibilities[:, mid : lo + width].sum(axis=1)
    return targets


def run_leaf_log_proba(node_logits, n_threads=1):
    """Call the kernel on a NaN-filled buffer, so unwritten entries show."""
    out = np.full((node_logits.shape[0], node_logits.shape[1] + 1), np.nan)
    hme_leaf_log_proba(node_logits, out, n_threads)
    return out


def run_node_targets(responsibilities, n_threads=1):
    n, n_leaves = responsibilities.shape
    out = np.full((n, n_leaves - 1, 2), np.nan)
    hme_node_targets(responsibilities, out, n_threads)
    return out


def random_node_logits(rng, n, depth):
    return rng.normal(scale=3.0, size=(n, 2**depth - 1, 2))


def random_responsibilities(rng, n, depth):
    return rng.dirichlet(np.full(2**depth, 0.7), size=n)


@dataclass
class HMETruth:
    """A depth-2 HME with linear-Gaussian experts: the true model.

    Node j sends x left with probability sigmoid(x . gate_coef[j] +
    gate_intercept[j]); leaves (experts) 0, 1 sit under node 1 and 2, 3 under
    node 2.
    """

    gate_coef: np.ndarray  # (3, d)
    gate_intercept: np.ndarray  # (3,)
    coef: np.ndarray  # (4, d)
    intercept: np.ndarray  # (4,)
    noise_std: np.ndarray  # (4,)

    def log_gate(self, X):
        z = X @ self.gate_coef.T + self.gate_intercept
        left, right = log_expit(z), log_expit(-z)
        return np.stack(
            [left[:, 0] + left[:, 1], left[:, 0] + right[:, 1],
             right[:, 0] + left[:, 2], right[:, 0] + right[:, 2]],
            axis=1,
        )

    def sample(self, n, rng):
        X = rng.normal(size=(n, self.coef.shape[1]))
        gate = np.exp(self.log_gate(X))
        expert = (gate.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1)
        means = X @ self.coef.T + self.intercept
        return X, means[np.arange(n), expert] + self.noise_std[expert] * rng.normal(size=n)

    def log_likelihood(self, X, y):
        """log p(y | x) per row under the true parameters."""
        means = X @ self.coef.T + self.intercept
        return logsumexp(
            self.log_gate(X) + norm.logpdf(y[:, None], means, self.noise_std), axis=1
        )


@pytest.fixture(scope="module")
def hme_truth():
    """d=4: the root splits on x0, node 1 on x1, node 2 on x2; 5000 + 5000 rows."""
    truth = HMETruth(
        gate_coef=np.array([[3.0, 0.0, 0.0, 0.0], [0.0, 3.0, -0.5, 0.0], [0.0, 0.0, -3.0, 1.0]]),
        gate_intercept=np.array([0.3, -0.5, 0.5]),
        coef=np.array(
            [[2.0, -1.0, 0.5, 0.0], [-1.5, 2.0, 0.0, 1.0], [0.0, 0.5, -2.0, -1.0],
             [1.0, 1.0, 1.0, -1.5]]
        ),
        intercept=np.array([1.0, -1.0, 3.0, 0.0]),
        noise_std=np.array([0.5, 0.6, 0.4, 0.7]),
    )
    rng = np.random.default_rng(0)
    X, y = truth.sample(5000, rng)
    X_test, y_test = truth.sample(5000, rng)
    return truth, X, y, X_test, y_test


def gate_objective(gate, X, responsibilities, sample_weight):
    """sum_i w_i sum_k R_ik log g_k(x_i), from the gate's leaf log-probabilities."""
    return np.sum(sample_weight[:, None] * responsibilities * gate._logits(X))


# --------------------------------------------------------------------------
# Kernels: agreement with the references
# --------------------------------------------------------------------------


@pytest.mark.parametrize("n_threads", (1, 2))
@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("n", N_SAMPLES)
def test_leaf_log_proba_matches_reference(n, depth, n_threads):
    rng = np.random.default_rng(0)
    node_logits = random_node_logits(rng, n, depth)
    out = run_leaf_log_proba(node_logits, n_threads)
    # Every path term is <= 0: no cancellation, so a pure relative tolerance.
    assert_allclose(out, reference_leaf_log_proba(node_logits), rtol=RTOL, atol=0)
    assert_allclose(np.exp(out).sum(axis=1), 1.0, rtol=1e-13)


@pytest.mark.parametrize("n_threads", (1, 2))
@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("n", N_SAMPLES)
def test_node_targets_match_reference(n, depth, n_threads):
    rng = np.random.default_rng(1)
    responsibilities = random_responsibilities(rng, n, depth)
    targets = run_node_targets(responsibilities, n_threads)
    # Sums of non-negative numbers, in a different order: relative tolerance.
    assert_allclose(targets, reference_node_targets(responsibilities), rtol=RTOL, atol=0)


def test_depth_one_leaf_log_proba_is_log_softmax():
    """One node with two columns is the softmax gate over two experts."""
    rng = np.random.default_rng(2)
    node_logits = random_node_logits(rng, 500, 1)
    assert_allclose(
        run_leaf_log_proba(node_logits), log_softmax(node_logits[:, 0, :], axis=1),
        rtol=RTOL, atol=0,
    )
    responsibilities = random_responsibilities(rng, 500, 1)
    assert_array_equal(run_node_targets(responsibilities)[:, 0, :], responsibilities)


@pytest.mark.parametrize("depth", DEPTHS)
def test_node_targets_add_up(depth):
    """Root reach = row sum of R; a node's reach = its parent's mass on that side.

    Also for rows that do not sum to one (the kernel does not assume they do)
    and for zero rows.
    """
    rng = np.random.default_rng(3)
    responsibilities = random_responsibilities(rng, 200, depth)
    responsibilities *= rng.uniform(0.0, 5.0, size=(200, 1))
    responsibilities[::10] = 0.0
    targets = run_node_targets(responsibilities)
    reach = targets.sum(axis=2)
    assert_allclose(reach[:, 0], responsibilities.sum(axis=1), rtol=1e-13, atol=0)
    for node in range(1, 2**depth - 1):
        parent, side = (node - 1) // 2, (node - 1) % 2
        assert_array_equal(reach[:, node], targets[:, parent, side])
    assert_array_equal(targets[::10], 0.0)


@pytest.mark.parametrize("depth", DEPTHS)
def test_kernels_identical_across_thread_counts(depth):
    """Rows are independent: per-row outputs are bitwise identical."""
    rng = np.random.default_rng(4)
    n = 20_000  # enough rows for both threads to get work
    node_logits = random_node_logits(rng, n, depth)
    assert_array_equal(
        run_leaf_log_proba(node_logits, 1), run_leaf_log_proba(node_logits, 2), strict=True
    )
    responsibilities = random_responsibilities(rng, n, depth)
    assert_array_equal(
        run_node_targets(responsibilities, 1), run_node_targets(responsibilities, 2), strict=True
    )


@pytest.mark.parametrize("depth", (1, 2, 3))
def test_leaf_log_proba_extreme_logits(depth):
    """exp(+-2e3) over- and underflows; the log-sigmoids must not."""
    rng = np.random.default_rng(5)
    n_nodes = 2**depth - 1
    values = np.array([1e3, -1e3, 700.0, -700.0, 0.0, 999.0])
    node_logits = rng.choice(values, size=(50, n_nodes, 2))
    out = run_leaf_log_proba(node_logits)
    assert np.all(np.isfinite(out))
    assert_allclose(out, reference_leaf_log_proba(node_logits), rtol=RTOL, atol=0)
    assert_allclose(np.exp(out).sum(axis=1), 1.0, rtol=1e-13)
    # A difference of 2e3 on the path gives log-probability ~ -2e3, not -inf.
    node_logits[0, 0] = [-1e3, 1e3]
    assert run_leaf_log_proba(node_logits)[0, 0] <= -2e3 + 1e-9


def test_kernels_reject_bad_shapes_dtypes_and_thread_counts():
    rng = np.random.default_rng(6)
    node_logits = random_node_logits(rng, 5, 2)
    tree = "but a complete binary tree has 2**depth - 1 internal nodes and 2**depth leaves"
    msg = "node_logits gives 4 internal nodes and 5 leaves, " + tree
    with pytest.raises(ValueError, match=re.escape(msg)):
        hme_leaf_log_proba(np.zeros((5, 4, 2)), np.empty((5, 5)))
    msg = "responsibilities gives 0 internal nodes and 1 leaves, " + tree
    with pytest.raises(ValueError, match=re.escape(msg)):
        hme_node_targets(np.zeros((5, 1)), np.empty((5, 0, 2)))
    msg = "responsibilities gives 2 internal nodes and 3 leaves, " + tree
    with pytest.raises(ValueError, match=re.escape(msg)):
        hme_node_targets(np.zeros((5, 3)), np.empty((5, 2, 2)))
    with pytest.raises(
        ValueError, match=re.escape("leaf_log_proba_out has shape (5, 3), expected (5, 4)")
    ):
        hme_leaf_log_proba(node_logits, np.empty((5, 3)))
    with pytest.raises(ValueError, match=re.escape("node_logits has shape (5, 3, 3)")):
        hme_leaf_log_proba(np.zeros((5, 3, 3)), np.empty((5, 4)))
    with pytest.raises(ValueError, match=re.escape("targets_out has shape (4, 3, 2)")):
        hme_node_targets(np.zeros((5, 4)), np.empty((4, 3, 2)))
    with pytest.raises(ValueError, match="n_threads must be >= 1, got 0"):
        hme_leaf_log_proba(node_logits, np.empty((5, 4)), 0)
    with pytest.raises(ValueError):  # float32 is refused by the typed memoryview
        hme_leaf_log_proba(node_logits.astype(np.float32), np.empty((5, 4)))
    with pytest.raises(ValueError):  # so is a non C-contiguous buffer
        hme_node_targets(np.asfortranarray(np.zeros((5, 4))), np.empty((5, 3, 2)))


# --------------------------------------------------------------------------
# The gate on its own
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted_gate():
    """A depth-3 gate fit to soft targets with structure, with sample weights."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(400, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -1.0]
    responsibilities = rng.dirichlet(np.full(8, 0.5), size=400)
    sample_weight = rng.uniform(0.2, 2.0, size=400)
    gate = HMEGate(depth=3, C=0.5).fit(X, responsibilities, sample_weight)
    return gate, X, responsibilities, sample_weight


def test_logits_are_normalised_products_along_paths(fitted_gate):
    gate, X, _, _ = fitted_gate
    logits = gate._logits(X)
    assert_allclose(np.exp(logits).sum(axis=1), 1.0, rtol=1e-13)
    assert_allclose(gate.predict_log_proba(X), logits, rtol=1e-12, atol=1e-12)
    # Node j's column 0 is its left branch; a leaf's probability is the product
    # of its nodes' branch probabilities, and leaf_experts_ says whose it is.
    node_proba = [node.predict_proba(X) for node in gate.nodes_]
    expected = np.ones((X.shape[0], 8))
    for leaf in range(8):
        for node, left in path(3, leaf):
            expected[:, gate.leaf_experts_[leaf]] *= node_proba[node][:, 0 if left else 1]
    assert_allclose(np.exp(logits), expected, rtol=1e-12)


def test_gate_objective_is_the_sum_of_the_node_objectives(fitted_gate):
    """The decomposition that makes the M-step one logistic regression per node."""
    gate, X, responsibilities, sample_weight = fitted_gate
    targets = run_node_targets(np.ascontiguousarray(responsibilities[:, gate.leaf_experts_]))
    node_terms = [
        np.sum(sample_weight[:, None] * targets[:, j, :] * node.predict_log_proba(X))
        for j, node in enumerate(gate.nodes_)
    ]
    assert_allclose(
        gate_objective(gate, X, responsibilities, sample_weight), np.sum(node_terms), rtol=1e-12
    )


@pytest.mark.parametrize("C", [0.5, np.inf])
def test_m_step_never_decreases_the_penalised_gate_objective(fitted_gate, C):
    """Generalised EM: a (truncated) warm-started M-step on new targets cannot go down."""
    _, X, _, sample_weight = fitted_gate
    rng = np.random.default_rng(8)
    gate = HMEGate(depth=3, C=C, max_iter=2).fit(X, rng.dirichlet(np.ones(8), size=400))

    def penalised():
        penalty = sum(
            0.5 * np.sum((node.coef_ * node._scale[:, None]) ** 2) / C for node in gate.nodes_
        )
        return gate_objective(gate, X, new_targets, sample_weight) - penalty

    for _ in range(5):
        new_targets = rng.dirichlet(np.full(8, 0.5), size=400)
        before = penalised()
        gate._m_step(X, new_targets, sample_weight)
        assert penalised() >= before - 1e-12 * abs(before)


def test_no_gate_features_gives_the_mean_responsibilities():
    """Intercept-only nodes: the path products telescope to the weighted mean of R."""
    rng = np.random.default_rng(9)
    responsibilities = rng.dirichlet(np.ones(4), size=300)
    sample_weight = rng.uniform(0.5, 2.0, size=300)
    gate = HMEGate(depth=2, tol=1e-12).fit(np.empty((300, 0)), responsibilities, sample_weight)
    expected = np.average(responsibilities, axis=0, weights=sample_weight)
    assert_allclose(gate.predict_proba(np.empty((3, 0))), np.tile(expected, (3, 1)), rtol=1e-8)


@pytest.mark.parametrize(
    "n_experts, depth, advice",
    [(3, 2, "use n_experts=4 or a depth with 2**depth == n_experts"),
     (8, 2, "use n_experts=4 or depth=3"),
     (2, 3, "use n_experts=8 or depth=1")],
)
def test_wrong_number_of_experts_is_explained(hme_truth, n_experts, depth, advice):
    _, X, y, _, _ = hme_truth
    moe = MixtureOfExpertsRegressor(n_experts, gate=HMEGate(depth=depth))
    msg = re.escape(
        f"HMEGate(depth={depth}) has {2**depth} leaves, one per expert, but "
        f"n_experts={n_experts}; {advice}"
    )
    with pytest.raises(ValueError, match=msg):
        moe.fit(X[:100], y[:100])


def test_invalid_depth_is_rejected():
    with pytest.raises(ValueError, match="'depth' parameter of HMEGate must be an int"):
        HMEGate(depth=0).fit(np.zeros((4, 1)), np.full((4, 1), 1.0))


def test_clone_and_pickle(fitted_gate):
    gate, X, _, _ = fitted_gate
    params = dict(depth=3, C=0.25, max_iter=7, tol=1e-3)
    cloned = clone(HMEGate(**params))
    assert cloned.get_params() == params
    assert not hasattr(cloned, "nodes_")
    cloned = clone(gate)
    assert cloned.get_params() == gate.get_params() and not hasattr(cloned, "nodes_")
    restored = pickle.loads(pickle.dumps(gate))
    assert_array_equal(restored._logits(X), gate._logits(X), strict=True)
    assert all(isinstance(node, SoftmaxGate) for node in restored.nodes_)


# --------------------------------------------------------------------------
# In the EM engine
# --------------------------------------------------------------------------


def test_depth_one_is_the_softmax_gate(hme_truth):
    """Identical computations up to rounding: log-sigmoid of the logit
    difference against the E-step's log-softmax.  Measured after 30 EM
    iterations: 2.5e-15 relative in the log-likelihood history, 4e-16 in the
    noise variances, 6e-16 (absolute) in the gate coefficients, 3e-16 in the
    gate probabilities, 5e-16 of the largest prediction (4e-12 relative for
    predictions near zero).
    """
    _, X, y, X_test, _ = hme_truth
    X, y = X[:2000], y[:2000]
    start = np.random.default_rng(1).dirichlet([1.0, 1.0], size=2000)
    params = dict(estimator=LinearRegression(), init=start, random_state=0, tol=0.0, max_iter=30)
    hme = MixtureOfExpertsRegressor(2, gate=HMEGate(depth=1), **params)
    softmax = MixtureOfExpertsRegressor(2, gate=SoftmaxGate(), **params)
    with pytest.warns(ConvergenceWarning):
        hme.fit(X, y)
    with pytest.warns(ConvergenceWarning):
        softmax.fit(X, y)
    assert_allclose(
        hme.log_likelihood_history_, softmax.log_likelihood_history_, rtol=RTOL, atol=0
    )
    assert_allclose(hme.noise_variance_, softmax.noise_variance_, rtol=RTOL, atol=0)
    node = hme.gate_.nodes_[0]
    scale = np.abs(softmax.gate_.coef_).max()
    assert_allclose(node.coef_, softmax.gate_.coef_, rtol=RTOL, atol=RTOL * scale)
    assert_allclose(node.intercept_, softmax.gate_.intercept_, rtol=RTOL, atol=RTOL * scale)
    assert_allclose(hme.predict_gate(X_test), softmax.predict_gate(X_test), rtol=RTOL, atol=1e-15)
    prediction = softmax.predict(X_test)
    assert_allclose(
        hme.predict(X_test), prediction, rtol=RTOL, atol=RTOL * np.abs(prediction).max()
    )


def test_log_likelihood_never_decreases(hme_truth):
    """Exact M-steps make EM monotone: weighted least squares on every row
    (``min_responsibility=0``), each node an unpenalised GEM step."""
    _, X, y, _, _ = hme_truth
    moe = MixtureOfExpertsRegressor(
        4, estimator=LinearRegression(), gate=HMEGate(depth=2, C=np.inf),
        min_responsibility=0.0, tol=0.0, max_iter=40, random_state=1,
    )
    with pytest.warns(ConvergenceWarning):
        moe.fit(X[:2000], y[:2000])
    history = moe.log_likelihood_history_
    assert history.shape == (41,)
    decreases = np.diff(history)
    assert np.all(decreases >= -1e-8 * np.abs(history[1:])), decreases.min()
    assert history[-1] > history[0] + 0.1  # it did learn something


def test_recovers_the_true_model(hme_truth):
    """Held-out mean log-likelihood within 1% of the true model's (measured 0.3%).

    The optimum needs true siblings (experts 0, 1 and 2, 3) under the same
    node. Before the gate placed experts on leaves by bisecting their
    starting regions, only 4 of 12 single k-means starts got there (the others
    stopped at training log-likelihood -1.42 or -1.43); with it, single starts
    from random states 0..7 all reached -1.3231.
    """
    truth, X, y, X_test, y_test = hme_truth
    moe = MixtureOfExpertsRegressor(
        4, estimator=LinearRegression(), gate=HMEGate(depth=2), n_init=3, random_state=0
    ).fit(X, y)
    fitted = moe.score_samples(X_test, y_test).mean()
    true = truth.log_likelihood(X_test, y_test).mean()
    assert abs(fitted - true) <= 0.01 * abs(true), (fitted, true)
    # The fitted tree pairs the experts as the true one does.
    match = [int(np.argmin(((truth.coef - e.coef_) ** 2).sum(axis=1))) for e in moe.experts_]
    assert sorted(match) == [0, 1, 2, 3]
    leaves = [match[k] for k in moe.gate_.leaf_experts_]
    assert {frozenset(leaves[:2]), frozenset(leaves[2:])} == {frozenset({0, 1}), frozenset({2, 3})}


# --------------------------------------------------------------------------
# Classification, sample weights, model selection
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sign_flip_classes():
    """Binary classes whose dependence on x1 flips sign at x0 = 0."""
    rng = np.random.default_rng(7)
    n = 3000
    X = rng.normal(size=(n, 3))
    right = rng.uniform(size=n) < expit(4.0 * X[:, 0])
    logit = np.where(right, 3.0 * X[:, 1] + 1.0 * X[:, 2], -3.0 * X[:, 1] + 1.0 * X[:, 2])
    y = (rng.uniform(size=n) < expit(logit)).astype(int)
    return X[:2000], y[:2000], X[2000:], y[2000:]


def test_classifier_with_logistic_experts(sign_flip_classes):
    """Measured: accuracy 0.760 held out, against 0.605 for one logistic regression."""
    X, y, X_test, y_test = sign_flip_classes
    moe = MixtureOfExpertsClassifier(
        4, estimator=LogisticRegression(), gate=HMEGate(depth=2), random_state=0
    ).fit(X, y)
    proba = moe.predict_proba(X_test)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert_allclose(moe.predict_gate(X_test).sum(axis=1), 1.0, rtol=1e-12)
    single = LogisticRegression().fit(X, y).score(X_test, y_test)
    assert moe.score(X_test, y_test) >= single + 0.1, (moe.score(X_test, y_test), single)


def test_classifier_sample_weight_equals_repeated_rows(sign_flip_classes):
    """Integer weights are repeated rows, from the same starting responsibilities.

    Measured: predict_proba within 4e-8, gate probabilities within 2e-7,
    log-likelihood within 2e-9 relative (limited by the solvers' tolerances).
    """
    X, y = sign_flip_classes[0][:300], sign_flip_classes[1][:300]
    weights = np.random.default_rng(0).integers(0, 3, size=300)
    start = np.random.default_rng(1).dirichlet(np.ones(4), size=300)
    params = dict(
        estimator=LogisticRegression(tol=1e-10, max_iter=1000),
        gate=HMEGate(depth=2, tol=1e-10), max_iter=10, tol=0.0,
    )
    weighted = MixtureOfExpertsClassifier(4, init=start, **params)
    repeated = MixtureOfExpertsClassifier(4, init=np.repeat(start, weights, axis=0), **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted.fit(X, y, sample_weight=weights)
        repeated.fit(np.repeat(X, weights, axis=0), np.repeat(y, weights))
    assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X), rtol=1e-6)
    assert_allclose(weighted.predict_gate(X), repeated.predict_gate(X), rtol=1e-5, atol=1e-7)
    assert_allclose(weighted.log_likelihood_, repeated.log_likelihood_, rtol=1e-8)


def test_grid_search_over_the_gate_penalty(hme_truth):
    """A gate crushed to constant mixing proportions (tiny C) loses to C=1."""
    _, X, y, _, _ = hme_truth
    X, y = X[:1500], y[:1500]
    weights = np.random.default_rng(0).uniform(0.5, 2.0, size=1500)
    search = GridSearchCV(
        MixtureOfExpertsRegressor(
            2, estimator=LinearRegression(), gate=HMEGate(depth=1), random_state=0
        ),
        {"gate__C": [1e-5, 1.0]},
        cv=2,
    ).fit(X, y, sample_weight=weights)
    assert search.best_params_ == {"gate__C": 1.0}
    assert search.best_estimator_.gate_.nodes_[0].C == 1.0
    scores = search.cv_results_["mean_test_score"]
    assert scores[1] > scores[0], scores


def test_fitted_mixture_pickles(hme_truth):
    _, X, y, X_test, y_test = hme_truth
    moe = MixtureOfExpertsRegressor(
        4, estimator=LinearRegression(), gate=HMEGate(depth=2), max_iter=5, random_state=0
    )
    with pytest.warns(ConvergenceWarning):
        moe.fit(X[:1000], y[:1000])
    restored = pickle.loads(pickle.dumps(moe))
    assert_array_equal(restored.predict(X_test), moe.predict(X_test), strict=True)
    assert_array_equal(restored.predict_gate(X_test), moe.predict_gate(X_test), strict=True)
    assert_array_equal(
        restored.score_samples(X_test, y_test), moe.score_samples(X_test, y_test), strict=True
    )
    assert clone(moe).get_params()["gate__depth"] == 2
