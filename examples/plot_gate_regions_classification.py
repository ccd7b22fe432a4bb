"""
===============================================
Classification with a rule that flips by region
===============================================

In the left half of the plane, the positive class lies *above* a rising
line; in the right half, *below* a flat one. Each half on its own is an easy
problem for a logistic regression, but one logistic regression for the whole
plane has a single straight boundary and cannot follow the switch.

A :class:`~skmoe.MixtureOfExpertsClassifier` with two logistic experts
learns both rules and a gate that sends each half of the plane to the right
expert. This example draws the mixture's class probabilities and the gate's
regions, and compares the held-out accuracy with a single
:class:`~sklearn.linear_model.LogisticRegression`.
"""

# %%
# Data: two logistic rules, switched by the sign of ``x0``
# --------------------------------------------------------
#
# Points are uniform on the square :math:`[-3, 3]^2`. Left of ``x0 = 0`` the
# log-odds of class 1 are :math:`5 (x_1 - x_0 - 1)`; right of it they are
# :math:`-5 (x_1 - 0.5)`. Labels are drawn from these probabilities, so some
# label noise is left near each boundary.

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_rgb
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from skmoe import MixtureOfExpertsClassifier

rng = np.random.RandomState(0)
n_samples = 1000
X = rng.uniform(-3, 3, size=(n_samples, 2))
log_odds = np.where(X[:, 0] < 0, 5 * (X[:, 1] - X[:, 0] - 1), -5 * (X[:, 1] - 0.5))
y = (rng.uniform(size=n_samples) < expit(log_odds)).astype(int)

X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)

# %%
# Fit a mixture of two logistic experts
# -------------------------------------
#
# The default expert of the classifier is
# :class:`~sklearn.linear_model.LogisticRegression` and the default gate a
# softmax (multinomial logit) on all the features. EM finds a local maximum
# of the likelihood; in classification several splits of the plane can
# explain the labels almost equally well, so we run a few starts
# (``n_init=3``) and keep the best one.

moe = MixtureOfExpertsClassifier(n_experts=2, n_init=3, random_state=0)
moe.fit(X_train, y_train)
single = LogisticRegression().fit(X_train, y_train)

print(f"final training log-likelihood of each start: {np.round(moe.init_log_likelihoods_, 4)}")
print(f"held-out accuracy, single LogisticRegression: {single.score(X_test, y_test):.3f}")
print(f"held-out accuracy, mixture of 2 experts:      {moe.score(X_test, y_test):.3f}")

# The labels are random, so even the true rule errs near its boundaries: its
# expected accuracy is the mean of max(p, 1 - p) under the true probabilities.
p_true = expit(log_odds)
best_accuracy = np.maximum(p_true, 1 - p_true).mean()
print(f"expected accuracy of the true rule:           {best_accuracy:.3f}")

# %%
# The single model can only draw one straight boundary, which is right in
# at most one half of the plane; the mixture comes close to the accuracy of
# the true rule.
#
# Probabilities and gate regions
# ------------------------------
#
# On the left, the mixture's probability of class 1,
# ``predict_proba(X)[:, 1]``, with the held-out points (white: class 0,
# black: class 1). Its boundary bends at ``x0 = 0``, which no single linear
# model can do.
#
# On the right, which expert the gate trusts where: each point of the plane
# is coloured by the expert with the highest gate probability,
# ``predict_gate(X).argmax(axis=1)``, and the colour fades where the gate
# hesitates (alpha is the winning gate probability). The lines are each
# expert's own decision boundary (its probability of class 1 is 0.5): the
# gate uses each expert only on the side of the plane where its boundary is
# the right one.

xx, yy = np.meshgrid(np.linspace(-3, 3, 200), np.linspace(-3, 3, 200))
grid = np.column_stack([xx.ravel(), yy.ravel()])
proba = moe.predict_proba(grid)[:, 1].reshape(xx.shape)
gate = moe.predict_gate(grid)
expert_proba = moe.predict_experts(grid)[:, :, 1]

# Pale colours for the regions, dark ones for each expert's boundary line.
region_colors = np.array([to_rgb("tab:purple"), to_rgb("tab:green")])
line_colors = ["indigo", "darkgreen"]
region_rgba = np.zeros(gate.shape[:1] + (4,))
region_rgba[:, :3] = region_colors[gate.argmax(axis=1)]
region_rgba[:, 3] = 0.6 * gate.max(axis=1)
region_rgba = region_rgba.reshape(xx.shape + (4,))

fig, (ax_proba, ax_gate) = plt.subplots(1, 2, figsize=(11, 5), sharey=True, layout="constrained")
contour = ax_proba.contourf(xx, yy, proba, levels=np.linspace(0, 1, 11), cmap="RdBu_r")
ax_proba.contour(xx, yy, proba, levels=[0.5], colors="k", linewidths=1.5)
for label, face in [(0, "white"), (1, "black")]:
    ax_proba.scatter(
        *X_test[y_test == label].T,
        s=16,
        c=face,
        edgecolors="0.3",
        linewidths=0.5,
        label=f"held-out, class {label}",
    )
ax_proba.legend(loc="lower right", fontsize="small", framealpha=0.9)
fig.colorbar(contour, ax=ax_proba, label="P(y = 1 | x) of the mixture")
ax_proba.set_title("Mixture probability (black: 0.5) and held-out data")
ax_proba.set_xlabel("x0")
ax_proba.set_ylabel("x1")

ax_gate.imshow(region_rgba, origin="lower", extent=(-3, 3, -3, 3), aspect="auto")
for k in range(moe.n_experts):
    ax_gate.contour(
        xx,
        yy,
        expert_proba[:, k].reshape(xx.shape),
        levels=[0.5],
        colors=[line_colors[k]],
        linewidths=2,
        linestyles="--",
    )
    ax_gate.plot([], [], color=region_colors[k], alpha=0.6, lw=8, label=f"gate picks expert {k}")
    ax_gate.plot([], [], color=line_colors[k], lw=2, ls="--", label=f"expert {k}'s own boundary")
ax_gate.axvline(0, color="k", ls=":", lw=1, label="true switch, x0 = 0")
ax_gate.set_xlim(-3, 3)
ax_gate.set_ylim(-3, 3)
ax_gate.set_title("Gate regions (alpha: winning gate probability)")
ax_gate.set_xlabel("x0")
ax_gate.legend(loc="lower left", fontsize="small", framealpha=0.9)
plt.show()

# %%
# The gate is a linear function of the inputs passed through a softmax, so
# with two experts its regions are separated by a straight line; here it
# lands close to the true switch at ``x0 = 0``. Regions with curved or
# several boundaries need more experts, or experts that are themselves
# more flexible (any scikit-learn classifier with ``predict_proba`` and
# ``sample_weight`` in ``fit`` can be an expert).
