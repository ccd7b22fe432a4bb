"""
==================================================
Mixtures of classifiers against single classifiers
==================================================

When the rule that separates two classes changes from one region of the
input space to another, a single linear classifier fails and a flexible one
has to learn every region's rule from scratch. A
:class:`~skmoe.MixtureOfExpertsClassifier` sits in between: a few linear
experts, and a gate that decides which expert's rule holds where.

This example compares, on a generated two-class problem whose boundary is a
different straight line in each quadrant of the plane,

* a mixture of four experts with the default experts
  (:class:`~skmoe.experts.WeightedLogisticRegression`);
* a mixture of four :class:`~sklearn.linear_model.LogisticRegression`
  experts;
* a single :class:`~sklearn.linear_model.LogisticRegression`;
* a :class:`~sklearn.ensemble.HistGradientBoostingClassifier`,

on held-out accuracy, held-out log-loss and fit time, and draws their
decision regions.
"""

# %%
# A different linear rule in each quadrant
# ----------------------------------------
#
# Points are uniform on :math:`[-3, 3]^2`. In each quadrant the boundary
# between the classes is a straight line through the quadrant's centre,
# with an orientation of its own, and the log-odds of class 1 are 4 times
# the signed distance-like margin :math:`w \cdot (x - c)` from it (:math:`w`
# the quadrant's normal vector, :math:`c` its centre). Labels are drawn
# from these probabilities, so some label noise is left near every
# boundary. The test set is large (20,000
# rows) so that differences of a fraction of a percent in accuracy are
# measured, not noise.
#
# Since the true probabilities are known, so are the best achievable
# scores: the accuracy of always predicting the more probable class, and the
# log-loss of the true probabilities (the Bayes rates).

import time

import matplotlib.pyplot as plt
import numpy as np
from scipy.special import expit
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss

from skmoe import MixtureOfExpertsClassifier

rng = np.random.RandomState(0)
# One row per quadrant, numbered (x0 >= 0) + 2 * (x1 >= 0): the normal
# (w0, w1) of that quadrant's boundary, which passes through the quadrant's
# centre (+-1.5, +-1.5).
normals = np.array(
    [
        [1.0, 1.0],  # x0 < 0, x1 < 0
        [1.0, -0.2],  # x0 >= 0, x1 < 0
        [-0.3, 1.0],  # x0 < 0, x1 >= 0
        [-1.0, 1.0],  # x0 >= 0, x1 >= 0
    ]
)
centres = np.array([[-1.5, -1.5], [1.5, -1.5], [-1.5, 1.5], [1.5, 1.5]])


def true_proba(X):
    quadrant = (X[:, 0] >= 0).astype(int) + 2 * (X[:, 1] >= 0).astype(int)
    margin = np.einsum("ij,ij->i", X - centres[quadrant], normals[quadrant])
    return expit(4 * margin)


def make_data(n_samples):
    X = rng.uniform(-3, 3, size=(n_samples, 2))
    y = (rng.uniform(size=n_samples) < true_proba(X)).astype(int)
    return X, y


X_train, y_train = make_data(2_000)
X_test, y_test = make_data(20_000)

p_test = true_proba(X_test)
bayes_accuracy = accuracy_score(y_test, p_test > 0.5)
bayes_log_loss = log_loss(y_test, p_test)

# %%
# Fit the four models
# -------------------
#
# The mixtures get four experts, one per quadrant, and three EM starts of
# different kinds (``n_init=3``): several splits of the plane explain the
# labels almost equally well, and EM only finds a local maximum from each
# start. The single models keep their defaults.
#
# Each fit is timed with :func:`time.perf_counter`, twice, keeping the
# faster run: on a shared machine a single run can be slowed several times
# over by other processes.

models = {
    "mixture, default experts": MixtureOfExpertsClassifier(n_experts=4, n_init=3, random_state=0),
    "mixture, LogisticRegression experts": MixtureOfExpertsClassifier(
        n_experts=4, estimator=LogisticRegression(), n_init=3, random_state=0
    ),
    "single LogisticRegression": LogisticRegression(),
    "HistGradientBoostingClassifier": HistGradientBoostingClassifier(random_state=0),
}
scores = {}
for name, model in models.items():
    fit_times = []
    for _ in range(2):
        start = time.perf_counter()
        model.fit(X_train, y_train)
        fit_times.append(time.perf_counter() - start)
    proba = model.predict_proba(X_test)[:, 1]
    scores[name] = (
        accuracy_score(y_test, proba > 0.5),
        log_loss(y_test, proba),
        min(fit_times),
    )

print(f"{'model':<37} {'accuracy':>8} {'log-loss':>8} {'fit (s)':>8}")
for name, (accuracy, loss, fit_time) in scores.items():
    print(f"{name:<37} {accuracy:8.4f} {loss:8.4f} {fit_time:8.2f}")
print(f"{'true probabilities (Bayes rates)':<37} {bayes_accuracy:8.4f} {bayes_log_loss:8.4f}")

for name in ["mixture, default experts", "mixture, LogisticRegression experts"]:
    model = models[name]
    print(
        f"{name}: training log-likelihood of each start "
        f"{np.round(model.init_log_likelihoods_, 4)}, kept {model.log_likelihood_:.4f} "
        f"after {model.n_iter_} EM iterations"
    )

# %%
# What to look for in the table:
#
# * the single logistic regression, with one straight boundary for the
#   whole plane, is far from the Bayes rates;
# * the distance of each model's accuracy and log-loss from the Bayes row:
#   a mixture whose experts and gate match the structure of the problem can
#   come close to it with 2,000 training rows;
# * the gradient-boosted trees approximate each tilted boundary by
#   axis-aligned steps; compare their log-loss, which also judges how well
#   the probabilities near the boundaries are calibrated, with the
#   mixtures';
# * the two kinds of expert differ in their penalty:
#   ``WeightedLogisticRegression`` has a weak penalty on standardised
#   coefficients, ``LogisticRegression`` the default ``C=1``. Compare the
#   gap between the two mixtures with their gap to the other models: with
#   hundreds of rows per expert and two coefficients each, the penalty has
#   little to do;
# * the starts' training log-likelihoods: the starts end in different local
#   maxima, which is why the mixtures use ``n_init=3``;
# * fit times: the mixtures refit four experts and the gate at each of
#   dozens of EM iterations, times three starts, and cost more than a
#   single logistic regression by orders of magnitude.
#
# Decision regions
# ----------------
#
# Each panel shows a model's probability of class 1 on a grid over the
# plane, its decision boundary (probability 0.5, black) and, dashed white,
# the true boundary. The first panel is the truth itself; the last shows
# which expert the gate of the first mixture trusts where
# (``predict_gate(X).argmax(axis=1)``, faded where the gate hesitates),
# against the true quadrants (dotted).

xx, yy = np.meshgrid(np.linspace(-3, 3, 200), np.linspace(-3, 3, 200))
grid = np.column_stack([xx.ravel(), yy.ravel()])
true_grid = true_proba(grid).reshape(xx.shape)

fig, axes = plt.subplots(2, 3, figsize=(13, 8.5), sharex=True, sharey=True, layout="constrained")
panels = [("truth", None)] + list(models.items())
for ax, (name, model) in zip(axes.flat, panels):
    proba = true_grid if model is None else (model.predict_proba(grid)[:, 1].reshape(xx.shape))
    image = ax.contourf(xx, yy, proba, levels=np.linspace(0, 1, 11), cmap="RdBu_r")
    ax.contour(xx, yy, proba, levels=[0.5], colors="k", linewidths=1.5)
    ax.contour(xx, yy, true_grid, levels=[0.5], colors="w", linewidths=1.2, linestyles="--")
    if model is None:
        ax.set_title(
            f"truth: accuracy {bayes_accuracy:.3f}, log-loss {bayes_log_loss:.3f}",
            fontsize="medium",
        )
    else:
        accuracy, loss, _ = scores[name]
        ax.set_title(f"{name}\naccuracy {accuracy:.3f}, log-loss {loss:.3f}", fontsize="medium")

gate = models["mixture, default experts"].predict_gate(grid)
gate_colors = plt.get_cmap("tab10")(np.arange(gate.shape[1]))
region = np.zeros(gate.shape[:1] + (4,))
region[:, :3] = gate_colors[gate.argmax(axis=1), :3]
region[:, 3] = gate.max(axis=1)
ax_gate = axes.flat[-1]
ax_gate.imshow(
    region.reshape(xx.shape + (4,)), origin="lower", extent=(-3, 3, -3, 3), aspect="auto"
)
ax_gate.axhline(0, color="k", ls=":", lw=1)
ax_gate.axvline(0, color="k", ls=":", lw=1)
ax_gate.set_title(
    "gate of the mixture with default experts\n(colour: trusted expert; dotted: true quadrants)",
    fontsize="medium",
)
for ax in axes[1]:
    ax.set_xlabel("x0")
for ax in axes[:, 0]:
    ax.set_ylabel("x1")
fig.colorbar(image, ax=axes, shrink=0.6, label="P(y = 1 | x)")
plt.show()

# %%
# The softmax gate cuts the plane into convex regions with straight edges,
# and the four quadrants are such regions, so a gate of this kind can match
# them; compare the gate's regions in the last panel with the dotted
# quadrants. Where the true regions are not separated by straight
# lines, the tree gate (``gate="tree"``) or more experts are the options to
# try, chosen by cross-validated log-likelihood
# (:class:`~skmoe.MixtureOfExpertsClassifierCV`).
