"""
=======================================
Piecewise-linear regression with a gate
=======================================

A target that follows a different straight line in each of three regions of
the input cannot be fitted by one linear model. A mixture of three linear
experts can: each expert fits one line, and the gate learns which line to
trust for which input.

This example fits :class:`~skmoe.MixtureOfExpertsRegressor` to such data,
draws the experts, the mixture's mean and its predictive spread, and the
gate's probabilities, and compares the held-out :math:`R^2` with a single
:class:`~sklearn.linear_model.LinearRegression`.
"""

# %%
# Data with three linear regimes
# ------------------------------
#
# ``x`` is uniform on :math:`[-3, 3]`; the breakpoints at :math:`-1` and
# :math:`1` split it into three regimes, each with its own slope and
# intercept, and the target has Gaussian noise of standard deviation 0.3.
# The lines jump at the breakpoints, so no single smooth curve passes
# through the data.

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import train_test_split

from skmoe import MixtureOfExpertsRegressor
from skmoe.gates import SoftmaxGate

rng = np.random.RandomState(0)
n_samples = 600
x = rng.uniform(-3, 3, size=n_samples)
regime = np.digitize(x, [-1.0, 1.0])  # 0, 1 or 2
slopes = np.array([2.0, -1.5, 2.0])
intercepts = np.array([6.0, 0.0, -6.0])
y = slopes[regime] * x + intercepts[regime] + 0.3 * rng.randn(n_samples)

X = x.reshape(-1, 1)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

# %%
# Fit a mixture of three linear experts
# -------------------------------------
#
# Each expert is a :class:`~sklearn.linear_model.LinearRegression`; EM
# alternates between assigning each sample softly to the experts and
# refitting the experts (weighted by those assignments) and the gate. The
# gate here is the default softmax gate on ``x``.

moe = MixtureOfExpertsRegressor(3, estimator=LinearRegression(), random_state=0)
moe.fit(X_train, y_train)

print(f"EM converged={moe.converged_} after {moe.n_iter_} iterations")
for k, expert in enumerate(moe.experts_):
    print(
        f"expert {k}: y = {expert.coef_[0]:+.2f} x {expert.intercept_:+.2f}, "
        f"noise std {np.sqrt(moe.noise_variance_[k]):.2f}, "
        f"share of the data {moe.expert_share_[k]:.2f}"
    )

# %%
# The experts recover the three true lines (up to their order, which is
# arbitrary) and a noise standard deviation close to the true 0.3.
#
# Compare with a single linear model
# ----------------------------------
#
# A single straight line cannot follow the zig-zag; the mixture can. The
# held-out log-likelihood :meth:`~skmoe.MixtureOfExpertsRegressor.log_likelihood`
# is also printed: it rewards a model for putting probability where the
# targets are, not just for its mean.

single = LinearRegression().fit(X_train, y_train)
print(f"held-out R^2, single LinearRegression: {single.score(X_test, y_test):.3f}")
print(f"held-out R^2, mixture of 3 experts:    {moe.score(X_test, y_test):.3f}")
print(f"held-out mean log p(y | x), mixture:   {moe.log_likelihood(X_test, y_test).mean():.3f}")

# %%
# Experts, mixture and gate
# -------------------------
#
# The top panel shows the data, each expert's line, the mixture's mean
# :math:`\sum_k g_k(x) \mu_k(x)` and a band of two predictive standard
# deviations from ``predict(X, return_std=True)``. The bottom panel shows the
# gate's probabilities ``predict_gate(X)``: the region where each expert is
# trusted.
#
# Each expert is drawn solid where the gate gives it most weight and faded
# elsewhere, where it is an extrapolation nobody uses. Near the breakpoints
# the gate hesitates between two experts; there the mixture's mean lies
# between their lines and the standard deviation widens, because it includes
# the experts' disagreement and not only their noise.

x_grid = np.linspace(-3, 3, 500).reshape(-1, 1)
y_mean, y_std = moe.predict(x_grid, return_std=True)
gate = moe.predict_gate(x_grid)
expert_means = moe.predict_experts(x_grid)
colors = ["tab:blue", "tab:orange", "tab:green"]

fig, (ax_fit, ax_gate) = plt.subplots(
    2, 1, figsize=(7, 7), sharex=True, height_ratios=[2, 1], layout="constrained"
)
ax_fit.scatter(x, y, s=6, color="0.6", alpha=0.6, label="data")
for k in range(moe.n_experts):
    trusted = np.where(gate.argmax(axis=1) == k, expert_means[:, k], np.nan)
    ax_fit.plot(x_grid[:, 0], expert_means[:, k], color=colors[k], lw=1, alpha=0.3)
    ax_fit.plot(x_grid[:, 0], trusted, color=colors[k], lw=2, label=f"expert {k}")
ax_fit.plot(x_grid[:, 0], y_mean, color="k", lw=1.5, ls="--", label="mixture mean")
ax_fit.fill_between(
    x_grid[:, 0],
    y_mean - 2 * y_std,
    y_mean + 2 * y_std,
    color="k",
    alpha=0.12,
    label=r"mean $\pm$ 2 std",
)
ax_fit.set_ylim(y.min() - 1, y.max() + 1)
ax_fit.set_ylabel("y")
ax_fit.set_title("Three linear experts and their mixture")
ax_fit.legend(loc="lower left", ncols=2, fontsize="small")

for k in range(moe.n_experts):
    ax_gate.plot(x_grid[:, 0], gate[:, k], color=colors[k], lw=2, label=f"expert {k}")
for breakpoint in (-1.0, 1.0):
    ax_gate.axvline(breakpoint, color="0.5", ls=":", lw=1)
ax_gate.set_ylim(-0.05, 1.05)
ax_gate.set_xlabel("x")
ax_gate.set_ylabel("gate probability")
ax_gate.set_title("Gate: which expert is trusted where (dotted: true breakpoints)")
plt.show()

# %%
# How sharp should the gate switch?
# ---------------------------------
#
# The gate is an L2-penalised multinomial logit on ``x``
# (:class:`~skmoe.gates.SoftmaxGate`). Its default penalty is weak
# (``C=1e4``), so it may switch as sharply as the data say; a strong penalty
# (small ``C``) makes the switches soft: near a breakpoint the gate keeps some
# weight on the neighbouring expert, which pulls the mixture's mean off the
# true jump. Here the regimes change abruptly, so the weak penalty fits
# better. In practice, tune ``C`` by cross-validation as ``gate__C`` (see
# :ref:`sphx_glr_auto_examples_plot_concomitant_variables.py`).

for C in [1.0, 1e4]:
    sharper = MixtureOfExpertsRegressor(
        3, estimator=LinearRegression(), gate=SoftmaxGate(C=C), random_state=0
    ).fit(X_train, y_train)
    print(f"gate C={C:>5}: held-out R^2 {sharper.score(X_test, y_test):.3f}")
