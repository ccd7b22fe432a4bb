"""What the gates take as X: sparse matrices, missing values (NaN), named columns."""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import approx_fprime

from skmoe._kernels import softmax_gate_objective
from skmoe._multinomial import _sparse_soft_target_objective
from skmoe._stats import weighted_mean_scale
from skmoe.gates import BaseGate, HMEGate, SoftmaxGate, TreeGate


def sparse_data(n, d, k, density, seed, informative=2):
    """A CSR matrix with normal nonzeros, uneven weights and responsibilities
    that follow its first ``informative`` columns (a softmax of them)."""
    rng = np.random.default_rng(seed)
    X = sp.random(
        n,
        d,
        density=density,
        format="csr",
        random_state=rng,
        data_rvs=lambda size: rng.normal(1.0, 2.0, size=size),
    )
    direction = rng.normal(size=(d, k))
    direction[informative:] = 0.0
    logits = X @ direction * 3.0
    R = np.exp(logits - logits.max(axis=1, keepdims=True))
    R /= R.sum(axis=1, keepdims=True)
    return X, R, rng.uniform(0.5, 2.0, size=n)


@pytest.fixture(scope="module")
def small():
    return sparse_data(3000, 7, 4, 0.3, seed=0)


# -- column statistics ------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_weighted_mean_scale_of_a_sparse_matrix_matches_dense(small, fmt):
    X, _, w = small
    X = X.asformat(fmt)
    mean, scale = weighted_mean_scale(X, w)
    dense_mean, dense_scale = weighted_mean_scale(X.toarray(), w)
    assert_allclose(mean, dense_mean, rtol=1e-12)
    assert_allclose(scale, dense_scale, rtol=1e-12)
    assert_allclose(mean, np.average(X.toarray(), weights=w, axis=0), rtol=1e-12)


def test_weighted_mean_scale_sparse_duplicates_constants_and_large_means():
    rng = np.random.default_rng(1)
    dense = np.zeros((400, 4))
    dense[:, 1] = 3.0  # constant: scale 1, whatever the rounding of its mean
    dense[::3, 2] = rng.normal(size=134)
    dense[:, 3] = 1e6 + rng.normal(size=400)  # a spread far below the mean
    w = rng.uniform(0.5, 2.0, size=400)
    csr = sp.csr_matrix(dense)
    # Every entry stored twice, halved: the duplicates must be summed first.
    counts = np.diff(csr.indptr)
    doubled = sp.csr_matrix(
        (np.repeat(csr.data / 2, 2), np.repeat(csr.indices, 2), np.r_[0, np.cumsum(2 * counts)]),
        shape=dense.shape,
    )
    assert doubled.nnz == 2 * csr.nnz and not doubled.has_canonical_format
    for X in (csr, csr.tocsc(), doubled, doubled.tocsc(), dense):
        mean, scale = weighted_mean_scale(X, w)
        assert_array_equal(scale[:2], [1.0, 1.0])
        expected = np.sqrt(
            np.average((dense - np.average(dense, weights=w, axis=0)) ** 2, weights=w, axis=0)
        )
        assert_allclose(scale[2:], expected[2:], rtol=1e-9)


# -- SoftmaxGate: the sparse objective ---------------------------------------


def objective_args(X, R, w, n_experts, seed):
    rng = np.random.default_rng(seed)
    gate = SoftmaxGate(C=2.0)
    gate._initialize(X, n_experts, w)
    theta = rng.normal(size=(X.shape[1] + 1) * n_experts)
    return gate, theta, (R, w, w.sum(), 1)


def test_sparse_objective_matches_the_dense_kernel(small):
    X, R, w = small
    # Targets whose rows do not sum to one, as the hierarchical gate's nodes get.
    R = R * np.random.default_rng(2).uniform(0.1, 1.0, size=(R.shape[0], 1))
    gate, theta, args = objective_args(X, R, w, 4, seed=3)
    loss, grad = gate._objective(theta, X, *args)
    dense_loss, dense_grad = gate._objective(theta, X.toarray(), *args)
    assert_allclose(loss, dense_loss, rtol=1e-10)
    assert_allclose(grad, dense_grad, rtol=1e-10, atol=1e-10 * np.abs(dense_grad).max())
    # And the raw loss-and-gradient functions, outside the standardisation.
    _, coef, intercept = gate._unpack(theta)
    outputs = []
    for function, data in (
        (_sparse_soft_target_objective, X),
        (softmax_gate_objective, X.toarray()),
    ):
        grad_coef, grad_intercept = np.empty_like(coef), np.empty_like(intercept)
        value = function(data, coef, intercept, R, w, grad_coef, grad_intercept, 1)
        outputs.append((value, grad_coef, grad_intercept))
    for sparse_part, dense_part in zip(*outputs):
        assert_allclose(sparse_part, dense_part, rtol=1e-10, atol=1e-12)


def test_sparse_objective_gradient_by_finite_differences(small):
    X, R, w = small
    gate, theta, args = objective_args(X[:500], R[:500] * 0.7, w[:500], 4, seed=4)
    loss, grad = gate._objective(theta, X[:500], *args)
    numerical = approx_fprime(theta, lambda t: gate._objective(t, X[:500], *args)[0], 1e-6)
    assert_allclose(grad, numerical, rtol=1e-5, atol=1e-6)


def test_sparse_objective_is_stable_for_huge_logits(small):
    X, R, w = small
    gate, theta, args = objective_args(X, R, w, 4, seed=5)
    loss, grad = gate._objective(theta * 1e3, X, *args)
    dense_loss, dense_grad = gate._objective(theta * 1e3, X.toarray(), *args)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert_allclose(loss, dense_loss, rtol=1e-10)


@pytest.mark.parametrize("max_iter", [3, 50])
def test_softmax_gate_fits_csr_as_it_fits_the_dense_array(small, max_iter):
    """EM's three L-BFGS steps, and a fit to the tolerance (23 steps here).

    With a tighter ``tol`` the two runs part by up to 1e-7: the loss is flat
    along the direction that adds a constant to every expert's coefficients
    (only the penalty, of curvature ``1 / (C * total weight)``, holds it).
    """
    X, R, w = small
    sparse_gate = SoftmaxGate(max_iter=max_iter).fit(X, R, w)
    dense_gate = SoftmaxGate(max_iter=max_iter).fit(X.toarray(), R, w)
    assert sparse_gate.n_iter_ == dense_gate.n_iter_ <= max_iter
    assert_allclose(sparse_gate.coef_, dense_gate.coef_, rtol=1e-8, atol=1e-8)
    assert_allclose(sparse_gate.intercept_, dense_gate.intercept_, rtol=1e-8, atol=1e-8)
    # Warm-started steps on other rows, with the first fit's standardisation.
    sparse_gate.partial_fit(X[::2], R[::2])
    dense_gate.partial_fit(X[::2].toarray(), R[::2])
    assert_allclose(sparse_gate.coef_, dense_gate.coef_, rtol=1e-8, atol=1e-8)
    assert_allclose(sparse_gate.intercept_, dense_gate.intercept_, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_softmax_gate_public_methods_take_any_sparse_format(small, fmt):
    X, R, w = small
    gate = SoftmaxGate().fit(X.asformat(fmt), R, w)
    expected = gate.decision_function(X.toarray())
    assert_allclose(gate.decision_function(X.asformat(fmt)), expected, rtol=1e-12)
    assert_allclose(gate.predict_proba(X.asformat(fmt)).sum(axis=1), 1.0)
    assert_allclose(gate.predict_log_proba(sp.csr_array(X)), gate.predict_log_proba(X))


@pytest.mark.parametrize("top_k", [1, 2, None])
def test_softmax_gate_routes_sparse_rows_as_dense_ones(small, top_k):
    X, R, w = small
    gate = SoftmaxGate().fit(X, R, w)
    experts, weights = gate._routes(X, top_k)
    dense_experts, dense_weights = gate._routes(X.toarray(), top_k)
    assert_array_equal(experts, dense_experts)
    assert_allclose(weights, dense_weights, rtol=1e-10)


def test_a_large_sparse_matrix_is_never_made_dense(monkeypatch):
    X, R, w = sparse_data(2000, 500, 3, 0.01, seed=6, informative=500)

    def refuse(self, *args, **kwargs):
        raise AssertionError("the gate made a sparse X dense")

    for cls in (sp.csr_matrix, sp.csc_matrix, sp.coo_matrix):
        for method in ("toarray", "todense", "__array__"):
            monkeypatch.setattr(cls, method, refuse, raising=False)
    gate = SoftmaxGate(max_iter=20).fit(X, R, w)
    gate.partial_fit(X, R)
    proba = gate.predict_proba(X.tocsc())
    experts, weights = gate._routes(X, 2)
    # It learnt the softmax of X that made the responsibilities (measured 0.98).
    assert np.mean(proba.argmax(axis=1) == R.argmax(axis=1)) > 0.95
    assert_array_equal(experts[:, 0], proba.argmax(axis=1))
    monkeypatch.undo()
    assert_allclose(gate.decision_function(X.toarray()), gate.decision_function(X), atol=1e-10)


def test_tree_gate_fits_and_routes_sparse_inputs(small):
    X, R, w = small
    sparse_gate = TreeGate(max_depth=3, random_state=0).fit(X, R, w)
    dense_gate = TreeGate(max_depth=3, random_state=0).fit(X.toarray(), R, w)
    assert_allclose(sparse_gate.node_proba_, dense_gate.node_proba_)
    assert_allclose(sparse_gate.decision_function(X), dense_gate.decision_function(X.toarray()))
    assert_allclose(sparse_gate.decision_function(X.toarray()), sparse_gate.decision_function(X))


def test_a_gate_left_dense_only_refuses_sparse_inputs(small):
    class DenseGate(BaseGate):
        def _initialize(self, X, n_experts, sample_weight):
            self.n_experts_ = n_experts

        def _m_step(self, X, responsibilities, sample_weight):
            return self

        def _logits(self, X):
            return np.zeros((X.shape[0], self.n_experts_))

    assert not BaseGate._accepts_sparse and not BaseGate._accepts_nan
    assert SoftmaxGate._accepts_sparse and TreeGate._accepts_sparse
    X, R, _ = small
    with pytest.raises(TypeError, match="Sparse data was passed"):
        DenseGate().fit(X, R)


# -- missing values -----------------------------------------------------------


def nan_regimes(n, rng):
    """Three regimes: x0 missing, x0 <= 0, x0 > 0; x1 is noise."""
    X = rng.uniform(-2, 2, size=(n, 2))
    regime = np.where(X[:, 0] > 0, 2, 1)
    missing = rng.uniform(size=n) < 0.3
    X[missing, 0] = np.nan
    regime[missing] = 0
    return X, regime


def test_tree_gate_routes_rows_by_their_missing_values():
    rng = np.random.default_rng(7)
    X, regime = nan_regimes(3000, rng)
    R = np.full((3000, 3), 0.05)
    R[np.arange(3000), regime] = 0.9
    gate = TreeGate(max_depth=2, random_state=0).fit(X, R)
    X_new, regime_new = nan_regimes(1000, rng)
    assert_array_equal(gate.predict_proba(X_new).argmax(axis=1), regime_new)
    assert gate.predict_proba(X_new)[np.isnan(X_new[:, 0]), 0].min() > 0.85
    assert np.isnan(gate.decision_function(X_new)).sum() == 0


def test_a_tree_gate_fitted_without_nan_still_routes_nan_rows():
    rng = np.random.default_rng(8)
    X = rng.uniform(-2, 2, size=(500, 2))
    R = np.column_stack([X[:, 0] <= 0, X[:, 0] > 0]).astype(float)
    gate = TreeGate(max_depth=1, random_state=0).fit(X, R)
    proba = gate.predict_proba(np.array([[np.nan, 0.0], [-1.0, np.nan]]))
    assert_allclose(proba.sum(axis=1), 1.0)
    assert proba[1].argmax() == 0


@pytest.mark.parametrize("gate", [SoftmaxGate(), HMEGate(depth=1)], ids=["softmax", "hme"])
def test_linear_gates_refuse_missing_values_clearly(gate):
    rng = np.random.default_rng(9)
    X = rng.normal(size=(50, 3))
    R = rng.dirichlet(np.ones(2), size=50)
    message = f"{type(gate).__name__} does not accept missing values .NaN.; impute them"
    X_nan = X.copy()
    X_nan[4, 1] = np.nan
    for method in (gate.fit, gate.partial_fit):  # refused before any fitting
        with pytest.raises(ValueError, match=message):
            method(X_nan, R)
    if isinstance(gate, HMEGate):
        return  # its fitted methods validate X with the same BaseGate code as below
    gate.fit(X, R)
    with pytest.raises(ValueError, match=message):
        gate.partial_fit(X_nan, R)
    for method in (gate.decision_function, gate.predict_proba, gate.predict_log_proba):
        with pytest.raises(ValueError, match=message):
            method(X_nan)
    if gate._accepts_sparse:
        with pytest.raises(ValueError, match=message):
            gate.decision_function(sp.csr_matrix(X_nan))


@pytest.mark.parametrize(
    "gate", [SoftmaxGate(), TreeGate(), HMEGate(depth=1)], ids=["softmax", "tree", "hme"]
)
def test_every_gate_refuses_infinity(gate):
    rng = np.random.default_rng(10)
    X = rng.normal(size=(50, 3))
    X[3, 0] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        gate.fit(X, rng.dirichlet(np.ones(2), size=50))


def test_tree_gate_refuses_nan_in_sparse_inputs():
    X = sp.csr_matrix(np.array([[1.0, 0.0], [np.nan, 2.0], [0.0, 3.0]]))
    with pytest.raises(ValueError, match="TreeGate handles missing values .NaN. in dense X only"):
        TreeGate(min_samples_leaf=1).fit(X, np.eye(3)[:, :2])


# -- export_text ---------------------------------------------------------------


@pytest.fixture(scope="module")
def two_feature_tree():
    rng = np.random.default_rng(11)
    X = rng.uniform(-2, 2, size=(400, 2))
    R = np.column_stack([X[:, 1] <= 0.5, X[:, 1] > 0.5]).astype(float)
    return TreeGate(max_depth=1, random_state=0).fit(X, R)


def test_export_text_takes_names_as_any_sequence(two_feature_tree):
    pd = pytest.importorskip("pandas")
    for names in (np.array(["age", "income"]), ["age", "income"], pd.Index(["age", "income"])):
        first = two_feature_tree.export_text(feature_names=names).splitlines()[0]
        assert first.startswith("|--- income <= 0.5"), first


def test_export_text_uses_the_gates_own_feature_names(two_feature_tree):
    from copy import deepcopy

    gate = deepcopy(two_feature_tree)
    assert gate.export_text().startswith("|--- x[1] <= ")
    gate.feature_names_in_ = np.array(["age", "income"], dtype=object)
    assert gate.export_text().startswith("|--- income <= ")
    assert gate.export_text(feature_names=["a", "b"]).startswith("|--- b <= ")


def test_export_text_says_how_many_names_it_needs(two_feature_tree):
    with pytest.raises(ValueError, match="export_text needs 2 feature names.*got 3"):
        two_feature_tree.export_text(feature_names=np.array(["a", "b", "c"]))
