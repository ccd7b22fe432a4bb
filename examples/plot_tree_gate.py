"""
=================================================
A tree gate for regimes cut by feature thresholds
=================================================

In tabular data a regime often changes when one feature crosses a threshold:
a price band, an hour of the day, a machine state. The default softmax gate
separates experts by oblique straight lines, which can only approximate such
cuts when they are nested (one threshold applies only on one side of
another). A :class:`~skmoe.gates.TreeGate` cuts the inputs with a decision
tree, so it can represent them exactly, and its rules can be read as text.

This example fits :class:`~skmoe.MixtureOfExpertsRegressor` with four linear
experts and a tree gate to data with four linear regimes, compares it with
the same mixture under the default softmax gate, prints the tree's rules and
draws which expert each gate trusts where.
"""

# %%
# Data: four linear regimes behind nested thresholds
# --------------------------------------------------
#
# Five features are uniform on :math:`[-2, 2]`; only ``x0`` and ``x1`` matter,
# the other three are noise that the gate must learn to ignore. The regime is
# set by a small tree: ``x0 > 0.5`` first, then ``x1 > -0.3`` on the left
# but ``x1 > 1`` on the right. Each regime has its own linear function of
# ``x0`` and ``x1``, and the target has Gaussian noise of standard deviation
# 0.3. We keep 4000 rows for training and 1000 for testing.

import matplotlib.pyplot as plt
import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

from skmoe import MixtureOfExpertsRegressor
from skmoe.gates import TreeGate

feature_names = ["x0", "x1", "noise0", "noise1", "noise2"]
rng = np.random.RandomState(0)
n_samples = 5000
X = rng.uniform(-2, 2, size=(n_samples, len(feature_names)))


def true_regime(X):
    """0, 1 on the left of x0 = 0.5 (split at x1 = -0.3); 2, 3 on the right (at x1 = 1)."""
    left = X[:, 0] <= 0.5
    return np.where(left, X[:, 1] > -0.3, 2 + (X[:, 1] > 1.0)).astype(int)


coefs = np.array([[1.5, 1.0], [-1.0, 2.0], [2.0, -1.5], [-0.5, -1.0]])  # on (x0, x1)
intercepts = np.array([0.0, 3.0, -2.0, 4.0])


def true_mean(X):
    """The true regression function E[y | x]."""
    regime = true_regime(X)
    return np.einsum("ij,ij->i", X[:, :2], coefs[regime]) + intercepts[regime]


y = true_mean(X) + 0.3 * rng.randn(n_samples)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=1000, random_state=0)

# %%
# Fit the same mixture with a tree gate and with a softmax gate
# -------------------------------------------------------------
#
# Both mixtures have four :class:`~sklearn.linear_model.LinearRegression`
# experts on all five features. The tree gate may grow to depth 3, one level
# more than the true tree needs. A tree gate keeps the regions it starts
# from, so by default EM starts it from the responsibilities of a
# softmax-gated fit, which finds the experts first.
#
# The best any model can do is the true regression function: its held-out
# :math:`R^2` is below 1 only because of the noise.

tree_moe = MixtureOfExpertsRegressor(
    4, estimator=LinearRegression(), gate=TreeGate(max_depth=3), random_state=0
).fit(X_train, y_train)
softmax_moe = MixtureOfExpertsRegressor(4, estimator=LinearRegression(), random_state=0).fit(
    X_train, y_train
)

print(f"held-out R^2, true regression function: {r2_score(y_test, true_mean(X_test)):.4f}")
print(f"held-out R^2, tree-gated mixture:       {tree_moe.score(X_test, y_test):.4f}")
print(f"held-out R^2, softmax-gated mixture:    {softmax_moe.score(X_test, y_test):.4f}")

# %%
# The tree-gated mixture is practically as good as the truth; the softmax-gated one,
# with the same experts, loses accuracy near the thresholds, where its
# oblique boundaries send rows to the wrong expert.
#
# The gate's rules
# ----------------
#
# :meth:`~skmoe.gates.TreeGate.export_text` prints the tree with each leaf's
# expert probabilities. The first two levels are the true thresholds. The
# third, one more than needed, only splits off thin slivers (along a
# threshold or at the edge of the data) where the gate is a little less
# sure; it never changes which expert wins. No rule uses a noise feature.
# The experts' fitted lines tell which regime each expert found (their
# order is arbitrary).

print(tree_moe.gate_.export_text(feature_names=feature_names))
for k, expert in enumerate(tree_moe.experts_):
    print(
        f"expert {k}: y = {expert.coef_[0]:+.2f} x0 {expert.coef_[1]:+.2f} x1 "
        f"{expert.intercept_:+.2f}  (largest noise coefficient "
        f"{np.abs(expert.coef_[2:]).max():.2f})"
    )

# %%
# Which expert each gate trusts where
# -----------------------------------
#
# Each panel colours a grid over the :math:`(x_0, x_1)` plane, with the noise
# features fixed at 0, by the expert with the highest gate probability,
# ``predict_gate(X).argmax(axis=1)``; the colour fades where the gate
# hesitates (alpha is that highest probability). The dashed lines are the
# true thresholds. Expert numbers are arbitrary and differ between the two
# mixtures, so each expert is coloured by the true regime it fits most of
# (matched on the training rows), and the same colour means the same regime
# in both panels.

xx, yy = np.meshgrid(np.linspace(-2, 2, 300), np.linspace(-2, 2, 300))
grid = np.zeros((xx.size, len(feature_names)))
grid[:, 0], grid[:, 1] = xx.ravel(), yy.ravel()
regime_colors = np.array(
    [[0.12, 0.47, 0.71], [1.0, 0.5, 0.05], [0.17, 0.63, 0.17], [0.84, 0.15, 0.16]]
)  # tab:blue, tab:orange, tab:green, tab:red


def expert_colors(moe):
    """The colour of each expert: that of the true regime it takes most training rows of."""
    winner = moe.predict_gate(X_train).argmax(axis=1)
    counts = np.zeros((moe.n_experts, len(coefs)))
    np.add.at(counts, (winner, true_regime(X_train)), 1)
    experts, regimes = linear_sum_assignment(counts, maximize=True)
    return regime_colors[regimes[np.argsort(experts)]]


fig, axes = plt.subplots(1, 2, figsize=(11, 5), sharey=True, layout="constrained")
for ax, moe, name in [(axes[0], tree_moe, "Tree gate"), (axes[1], softmax_moe, "Softmax gate")]:
    gate = moe.predict_gate(grid)
    colors = expert_colors(moe)
    rgba = np.column_stack([colors[gate.argmax(axis=1)], gate.max(axis=1)])
    ax.imshow(rgba.reshape(xx.shape + (4,)), origin="lower", extent=(-2, 2, -2, 2))
    ax.plot([0.5, 0.5], [-2, 2], "k--", lw=1.5, label="true thresholds")
    ax.plot([-2, 0.5], [-0.3, -0.3], "k--", lw=1.5)
    ax.plot([0.5, 2], [1.0, 1.0], "k--", lw=1.5)
    for k in range(moe.n_experts):
        ax.plot([], [], color=colors[k], lw=8, label=f"expert {k}")
    ax.set_title(f"{name}: held-out $R^2$ = {moe.score(X_test, y_test):.3f}")
    ax.set_xlabel("x0")
    ax.legend(loc="lower right", fontsize="small", framealpha=0.9)
axes[0].set_ylabel("x1")
plt.show()

# %%
# The tree gate's regions are the true rectangles, with sharp edges: each
# leaf is confident. A softmax gate cannot draw them. Its boundary between
# two experts is straight, perpendicular to the difference of their weight
# vectors, and the true regions meet in "T" junctions. At
# :math:`(0.5, -0.3)` the vertical cut ``x0 = 0.5`` separates the right
# regime from both left ones, so both of those weight differences point
# along ``x0``; then so does the difference between the two left regimes,
# whose boundary would have to be vertical too, not the horizontal
# ``x1 = -0.3``.
# The softmax gate compromises with tilted boundaries, and near them the
# wrong expert is used.
#
# A tree gate suits regimes cut by thresholds on single features; a softmax
# gate suits smooth or oblique transitions, and its boundaries move
# continuously as the inputs change. The tree's size is controlled by
# ``max_depth`` and ``min_samples_leaf``, which can be tuned by
# cross-validation as ``gate__max_depth`` and ``gate__min_samples_leaf``.
