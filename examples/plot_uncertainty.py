"""
=========================================
Predictive uncertainty of a mixture
=========================================

A mixture of experts predicts a whole conditional distribution
:math:`p(y \\mid x) = \\sum_k g_k(x)\\, \\mathcal{N}(y;\\ \\mu_k(x), \\sigma_k^2)`,
not just a mean. Where one expert is in charge, that distribution is that
expert's Gaussian; where the gate hesitates, it is a blend of two
Gaussians with different centres and widths: skewed, wide, or bimodal.

This example fits :class:`~skmoe.MixtureOfExpertsRegressor` to data from two
noisy regimes and reads its predictive distribution: central intervals
(``predict_interval``) and their held-out coverage, quantiles
(``predict_quantiles``), and densities (``predict_distribution``). It draws
the fit with :func:`skmoe.plotting.plot_regression_1d` and EM's progress with
:func:`skmoe.plotting.plot_convergence`, and prints the fitted coefficients
with :mod:`skmoe.inspection`.
"""

# %%
# Two regimes with different noise
# --------------------------------
#
# Regime A follows :math:`y = 2x - 1` with noise of standard deviation 0.25,
# regime B follows :math:`y = 2 - x/2` with standard deviation 0.8. The
# probability of regime A grows with :math:`x` as a logistic curve,
# :math:`P(A \mid x) = 1 / (1 + e^{-1.5 x})`: for :math:`x \ll 0` nearly all
# samples are from B, for :math:`x \gg 0` from A, and around 0 from both.
# The two lines cross at :math:`x = 1.2`.

import matplotlib.pyplot as plt
import numpy as np
from scipy.special import expit
from scipy.stats import norm
from sklearn.model_selection import train_test_split

from skmoe import MixtureOfExpertsRegressor
from skmoe.inspection import expert_coefficients, gate_coefficients
from skmoe.plotting import plot_convergence, plot_regression_1d


def true_density(x, y):
    """``p(y | x)`` of the data-generating model."""
    share_a = expit(1.5 * x)
    return share_a * norm.pdf(y, 2 * x - 1, 0.25) + (1 - share_a) * norm.pdf(y, 2 - x / 2, 0.8)


rng = np.random.RandomState(0)
n_samples = 2000
x = rng.uniform(-3, 3, size=n_samples)
regime_a = rng.uniform(size=n_samples) < expit(1.5 * x)
y = np.where(
    regime_a, 2 * x - 1 + 0.25 * rng.randn(n_samples), 2 - x / 2 + 0.8 * rng.randn(n_samples)
)

X = x.reshape(-1, 1)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, random_state=0)

# %%
# Fit two linear experts
# ----------------------
#
# The default expert is a linear model; each expert also gets its own noise
# variance, so the mixture can learn that one regime is noisier.

moe = MixtureOfExpertsRegressor(2, random_state=0).fit(X_train, y_train)
print(f"EM converged={moe.converged_} after {moe.n_iter_} iterations")
print("noise std of each expert:", np.round(np.sqrt(moe.noise_variance_), 3))

# %%
# The coefficient tables of :mod:`skmoe.inspection` put the experts side by
# side: one expert has slope close to 2 and intercept -1, the other slope
# -0.5 and intercept 2. The softmax gate's columns are defined up to a
# common shift; the difference between them, :math:`\pm 1.5` on ``x0``, is
# the slope of the log-odds of one regime against the other.

print(expert_coefficients(moe).round(3))
print(gate_coefficients(moe).round(3))

# %%
# Intervals and their coverage
# ----------------------------
#
# ``predict_interval(X, 0.9)`` returns the central 90% interval of each
# row's predictive distribution, from the exact quantiles of the mixture. A
# Gaussian interval around the mean (:math:`\pm 1.645` standard deviations
# from ``predict(X, return_std=True)``) has the right spread but not the
# right shape: symmetric, where the mixture is skewed or bimodal. On
# held-out data the mixture's intervals cover close to 90% in each region of
# ``x``; the Gaussian ones cover more than they claim, because they are
# wider on average, most of all where the quiet expert A is in charge.

bounds = moe.predict_interval(X_test, confidence=0.9)
mean, std = moe.predict(X_test, return_std=True)
gaussian = np.column_stack([mean - norm.ppf(0.95) * std, mean + norm.ppf(0.95) * std])
print("held-out coverage of 90% intervals (mean width)")
for name, interval in [("mixture quantiles", bounds), ("mean +- 1.645 std", gaussian)]:
    inside = (interval[:, 0] <= y_test) & (y_test <= interval[:, 1])
    regions = [
        f"x{label}: {inside[rows].mean():.3f}"
        for label, rows in [
            (" < -1", X_test[:, 0] < -1),
            (" in [-1, 1]", np.abs(X_test[:, 0]) <= 1),
            (" > 1", X_test[:, 0] > 1),
        ]
    ]
    width = np.mean(interval[:, 1] - interval[:, 0])
    print(f"  {name:<18} all: {inside.mean():.3f} ({width:.2f});  " + ", ".join(regions))

# %%
# The fit, its interval and the gate
# ----------------------------------
#
# :func:`~skmoe.plotting.plot_regression_1d` draws the data, each expert's
# line, the mixture's mean and its 90% interval, and below, the gate's
# probability of each expert. Where the gate is torn between the two
# experts (around :math:`x = 0`), the interval spans both lines, and the
# mean runs between the two clouds of points where few of them lie.

ax, gate_ax = plot_regression_1d(moe, X_test, y_test, confidence=0.9)
ax.set_title("Two experts, their mixture and its 90% interval")
plt.show()

# %%
# Quantiles
# ---------
#
# ``predict_quantiles`` gives any quantiles of the predictive distribution,
# one column per probability. Where one expert is in charge they are evenly
# spaced around its line, at that expert's noise level. Where the two
# regimes share the rows they are not: the median jumps from one regime to
# the other as the gate's weight passes one half, and the quantiles crowd
# into the quiet regime A.

levels = [0.05, 0.25, 0.5, 0.75, 0.95]
x_grid = np.linspace(-3, 3, 300).reshape(-1, 1)
quantiles = moe.predict_quantiles(x_grid, levels)

fig, ax = plt.subplots(layout="constrained")
ax.scatter(X_test[:, 0], y_test, s=6, color="0.7", label="held-out data")
for j, level in enumerate(levels):
    ax.plot(
        x_grid[:, 0],
        quantiles[:, j],
        color=plt.cm.viridis(j / (len(levels) - 1)),
        label=f"q = {level}",
    )
ax.set_xlabel("x0")
ax.set_ylabel("y")
ax.set_title("Quantiles of the predictive distribution")
ax.legend(fontsize="small")
plt.show()

# %%
# Densities
# ---------
#
# ``predict_distribution(X)`` returns all rows' predictive distributions as
# one object with ``pdf``, ``cdf``, ``ppf``, ``interval``, ``sample``... At
# :math:`x = -0.5` the gate gives each regime a fair share and the density
# has two modes, one narrow (regime A) and one wide (regime B): no mean and
# standard deviation can describe it. At :math:`x = 2.5` regime A is in
# charge and the density is a single narrow Gaussian. The dashed lines are
# the true densities.

x_values = np.array([[-0.5], [2.5]])
distribution = moe.predict_distribution(x_values)
y_grid = np.linspace(-7, 6, 600)
density = distribution.pdf(np.broadcast_to(y_grid, (len(x_values), y_grid.size)))
print("gate weights at x = -0.5 and 2.5:", np.round(distribution.weights, 3).tolist())

fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
for row, ax in enumerate(axes):
    x_value = x_values[row, 0]
    ax.plot(y_grid, density[row], color="C0", label="mixture")
    ax.plot(y_grid, true_density(x_value, y_grid), color="k", ls="--", lw=1, label="truth")
    ax.set_title(f"p(y | x = {x_value})")
    ax.set_xlabel("y")
axes[0].set_ylabel("density")
axes[0].legend(fontsize="small")
plt.show()

# %%
# EM's progress
# -------------
#
# :func:`~skmoe.plotting.plot_convergence` draws the mean training
# log-likelihood after each EM iteration: it never decreases, and flattens
# as EM converges.

ax = plot_convergence(moe)
ax.set_title("EM on the two-regime data")
plt.show()
