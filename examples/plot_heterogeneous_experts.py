"""
======================================
Experts of different kinds in one gate
======================================

The experts of a mixture need not be alike. Here the target is a straight
line on one half of the input and a staircase on the other: a linear model
is right on the first half, a shallow decision tree on the second, and
neither is right everywhere.

:class:`~skmoe.MixtureOfExpertsRegressor` takes a list of ``(name,
estimator)`` pairs as ``estimator``, one per expert, here a
:class:`~sklearn.linear_model.Ridge` and a
:class:`~sklearn.tree.DecisionTreeRegressor`. EM fits them jointly with a
gate that learns which of the two to trust for which input. This example
shows the gate's choice, ``predict_gate``, and compares the held-out
:math:`R^2` and log-likelihood of the mixture with each model on its own,
with a tree whose depth is tuned by cross-validation, and with mixtures of
two experts of the same kind.
"""

# %%
# A line on the left, a staircase on the right
# --------------------------------------------
#
# ``x`` is uniform on :math:`[-4, 4]`. For :math:`x < 0` the target is the
# line :math:`1.5 x + 2`; for :math:`x \ge 0` it is the staircase
# :math:`2 \lfloor x \rfloor - 1`, which jumps by 2 at every integer. Both
# have Gaussian noise of standard deviation 0.3.

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.tree import DecisionTreeRegressor

from skmoe import MixtureOfExpertsRegressor

rng = np.random.RandomState(0)
n_samples = 800
x = rng.uniform(-4, 4, size=n_samples)
y = np.where(x < 0, 1.5 * x + 2, 2.0 * np.floor(x) - 1) + 0.3 * rng.randn(n_samples)

X = x.reshape(-1, 1)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

# %%
# A mixture of a linear expert and a tree expert
# ----------------------------------------------
#
# The tree is kept shallow (``max_depth=3``, at most eight leaves): enough for
# the four steps on the right, far too few to follow a sloped line. The
# gate is the default softmax gate on ``x``.
#
# EM only finds a local maximum of the likelihood, and with experts this
# different the start matters: a start that splits the rows across the two
# halves the wrong way can leave each expert fitting a mix of line and
# staircase. ``n_init=3`` runs three starts of different kinds (k-means on
# ``x`` and ``y``, ranks of a single expert's residuals, random
# responsibilities) and keeps the one with the highest training
# log-likelihood. Compare the starts' log-likelihoods printed below, and the
# held-out :math:`R^2` of the first start alone (``n_init=1``) with that of
# the best of three.


def heterogeneous_mixture(n_init):
    return MixtureOfExpertsRegressor(
        n_experts=2,
        estimator=[("linear", Ridge()), ("tree", DecisionTreeRegressor(max_depth=3))],
        n_init=n_init,
        random_state=0,
    )


moe = heterogeneous_mixture(n_init=3).fit(X_train, y_train)
for method, log_lik in zip(moe.init_methods_, moe.init_log_likelihoods_):
    print(f"start {method:>9}: training log-likelihood per row {log_lik:.3f}")
print(f"kept start converged={moe.converged_} after {moe.n_iter_} iterations")
print(
    f"share of the training data: linear {moe.expert_share_[0]:.2f}, "
    f"tree {moe.expert_share_[1]:.2f}"
)

one_start = heterogeneous_mixture(n_init=1).fit(X_train, y_train)
print(
    f"held-out R^2 with the first start alone (n_init=1, {one_start.init_methods_[0]}): "
    f"{one_start.score(X_test, y_test):.3f}"
)
print(f"held-out R^2 with the best of three starts (n_init=3): {moe.score(X_test, y_test):.3f}")

# %%
# Which expert does the gate trust where?
# ---------------------------------------
#
# The top panel shows the data, each expert's own prediction
# (``predict_experts``), drawn solid where the gate gives it most weight and
# faded elsewhere, and the mixture's mean. The bottom panel shows the gate's
# probabilities, ``predict_gate``. Look for the gate's switch near
# :math:`x = 0`, where the true function changes kind; away from it, each
# expert's faded part shows how wrong it would be on the other half.

x_grid = np.linspace(-4, 4, 800).reshape(-1, 1)
gate = moe.predict_gate(x_grid)
expert_means = moe.predict_experts(x_grid)
y_mean = moe.predict(x_grid)
names = ["linear (Ridge)", "tree (max_depth=3)"]
colors = ["tab:blue", "tab:orange"]

fig, (ax_fit, ax_gate) = plt.subplots(
    2, 1, figsize=(7, 7), sharex=True, height_ratios=[2, 1], layout="constrained"
)
ax_fit.scatter(x, y, s=6, color="0.6", alpha=0.6, label="data")
for k in range(2):
    trusted = np.where(gate.argmax(axis=1) == k, expert_means[:, k], np.nan)
    ax_fit.plot(x_grid[:, 0], expert_means[:, k], color=colors[k], lw=1, alpha=0.35)
    ax_fit.plot(x_grid[:, 0], trusted, color=colors[k], lw=2.5, label=names[k])
ax_fit.plot(x_grid[:, 0], y_mean, color="k", lw=1, ls="--", label="mixture mean")
ax_fit.set_ylabel("y")
ax_fit.set_title("A linear expert and a tree expert (faded: where the gate ignores it)")
ax_fit.legend(loc="upper left", fontsize="small")

for k in range(2):
    ax_gate.plot(x_grid[:, 0], gate[:, k], color=colors[k], lw=2, label=names[k])
ax_gate.axvline(0, color="0.5", ls=":", lw=1, label="true switch, x = 0")
ax_gate.set_ylim(-0.05, 1.05)
ax_gate.set_xlabel("x")
ax_gate.set_ylabel("gate probability")
ax_gate.set_title("predict_gate: the probability of each expert")
ax_gate.legend(loc="center left", fontsize="small")
plt.show()

switch = x_grid[np.argmax(gate[:, 1] > 0.5), 0]
print(f"the gate hands over from the linear expert to the tree at x = {switch:.2f}")

# %%
# Against single models and mixtures of one kind
# ----------------------------------------------
#
# The contenders, all fitted on the same training rows:
#
# * each expert on its own: ``Ridge`` and the depth-3 tree;
# * a single tree whose ``max_depth`` is chosen by 5-fold cross-validation,
#   the fair baseline: a deep enough tree can approximate the line with many
#   small steps;
# * mixtures of two experts of the same kind (two ``Ridge``, two depth-3
#   trees), each with the same three starts.
#
# :math:`R^2` judges the mean prediction only. The held-out log-likelihood
# judges the whole predictive distribution: for a single model it is the one
# of a Gaussian around its prediction with the training residuals' variance,
# which is what a mixture with ``n_experts=1`` fits, so it is computed that
# way.

tuned = GridSearchCV(DecisionTreeRegressor(random_state=0), {"max_depth": range(2, 11)}, cv=5).fit(
    X_train, y_train
)
best_depth = tuned.best_params_["max_depth"]

contenders = {
    "Ridge alone": MixtureOfExpertsRegressor(1, estimator=Ridge()),
    "tree, max_depth=3, alone": MixtureOfExpertsRegressor(
        1, estimator=DecisionTreeRegressor(max_depth=3, random_state=0)
    ),
    f"tree, max_depth={best_depth} (CV-tuned)": MixtureOfExpertsRegressor(
        1, estimator=DecisionTreeRegressor(max_depth=best_depth, random_state=0)
    ),
    "mixture of 2 Ridge": MixtureOfExpertsRegressor(
        2, estimator=Ridge(), n_init=3, random_state=0
    ),
    "mixture of 2 trees (depth 3)": MixtureOfExpertsRegressor(
        2, estimator=DecisionTreeRegressor(max_depth=3), n_init=3, random_state=0
    ),
    "mixture of Ridge + tree": moe,
}
print(f"{'model':<32} {'R^2':>7} {'mean log p(y|x)':>16}")
results = {}
for name, model in contenders.items():
    if model is not moe:
        model.fit(X_train, y_train)
    r2 = model.score(X_test, y_test)
    log_lik = model.log_likelihood(X_test, y_test).mean()
    results[name] = (r2, log_lik)
    print(f"{name:<32} {r2:7.3f} {log_lik:16.3f}")

# %%
# Read the table for three things. A single ``Ridge`` misses the staircase
# and the depth-3 tree alone misses the slope: each is right on one half
# only. The CV-tuned tree is the strong baseline for the mean; compare its
# :math:`R^2` with the mixture's: with 600 training rows a deep tree can
# afford enough leaves to follow the line in many small steps, so the gap in
# :math:`R^2` is small. Compare the log-likelihood column too: the
# mixture's linear expert fits the left half with one line, without the
# tree's small steps, and each expert has its own noise variance, so its
# predictive distribution can be tighter than a single model's. Mixtures of
# two experts of one kind are the control: two lines cannot follow four
# steps, and two shallow trees can only approximate the line by steps.

fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True, layout="constrained")
labels = list(results)
dot_colors = ["0.6"] * (len(labels) - 1) + ["tab:green"]
for column, (ax, title) in enumerate(
    zip(axes, [r"held-out $R^2$", r"held-out mean $\log p(y \mid x)$"])
):
    values = [results[name][column] for name in labels]
    ax.hlines(labels, min(values), values, color="0.85", lw=2)
    ax.scatter(values, labels, s=60, color=dot_colors, zorder=3)
    ax.set_xlabel(title)
    ax.grid(axis="x", alpha=0.4)
axes[0].invert_yaxis()
fig.suptitle("Each contender on the held-out rows (right is better)")
plt.show()
