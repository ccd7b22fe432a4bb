"""
=====================================
Count data: a mixture of Poisson GLMs
=====================================

Counts such as doctor visits per year often come from a population of two
kinds of people: occasional users, whose visits barely depend on their
health, and frequent users, whose visits rise steeply with it (the latent
classes of Deb & Trivedi's health-care models). One Poisson regression
averages the two and is overdispersed; a mixture of two Poisson experts,
``likelihood="poisson"``, fits each class with its own regression and lets
a gate say how likely each person is to belong to it.

The data here are generated, so the truth is known.
"""

# %%
# Two latent classes of users
# ---------------------------
#
# ``illness`` raises both the chance of being a frequent user (the gate) and
# the frequent users' visit rate; occasional users visit about once a year.

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import poisson
from sklearn.linear_model import PoissonRegressor
from sklearn.model_selection import train_test_split

from skmoe import MixtureOfExpertsRegressor

rng = np.random.default_rng(0)
n = 6000
illness = rng.normal(size=n)
income = rng.normal(size=n)
frequent = rng.uniform(size=n) < 1 / (1 + np.exp(-(1.5 * illness - 0.5)))
rate = np.where(frequent, np.exp(1.6 + 0.5 * illness - 0.1 * income), np.exp(0.1 * illness))
visits = rng.poisson(rate).astype(float)
X = np.column_stack([illness, income])
X_train, X_test, y_train, y_test = train_test_split(X, visits, random_state=0)
print(f"mean {visits.mean():.2f}, variance {visits.var():.2f} (a Poisson has them equal)")

# %%
# One Poisson regression against a mixture of two
# -----------------------------------------------
#
# The mixture's experts are ``PoissonRegressor`` models with a negligible
# penalty (the default for ``likelihood="poisson"``), fitted by EM with the gate.

single = PoissonRegressor(alpha=0.0, solver="newton-cholesky").fit(X_train, y_train)
single_ll = poisson.logpmf(y_test, single.predict(X_test)).mean()
mixture = MixtureOfExpertsRegressor(2, likelihood="poisson", n_init=3, random_state=0)
mixture.fit(X_train, y_train)
print(
    f"held-out mean log-likelihood: one Poisson GLM {single_ll:.3f}, "
    f"mixture of two {mixture.log_likelihood(X_test, y_test).mean():.3f}"
)
for k, expert in enumerate(mixture.experts_):
    print(
        f"expert {k}: intercept {expert.intercept_:.2f}, illness {expert.coef_[0]:.2f}, "
        f"income {expert.coef_[1]:.2f}, share {mixture.expert_share_[k]:.2f}"
    )
one = MixtureOfExpertsRegressor(1, likelihood="poisson").fit(X_train, y_train)
print(
    f"BIC (lower is better): one expert {one.bic(X_train, y_train):.0f}, "
    f"two experts {mixture.bic(X_train, y_train):.0f}"
)

# %%
# The predictive distribution of the visits
# -----------------------------------------
#
# For a healthy and an ill person, the mixture's probability of each count
# (``predict_distribution(X).pdf`` of integers) against the single GLM's:
# the mixture puts mass both near zero and on a long tail, where the single
# Poisson is one narrow hump.

people = np.array([[-1.0, 0.0], [1.5, 0.0]])
counts = np.arange(0, 30)
pmf = mixture.predict_distribution(people).pdf(np.tile(counts, (2, 1)))
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
for ax, person, row in zip(axes, people, pmf):
    ax.bar(counts, row, color="tab:blue", alpha=0.6, label="mixture of 2 Poisson GLMs")
    ax.plot(
        counts,
        poisson.pmf(counts, single.predict(person[None])[0]),
        "k.-",
        label="one Poisson GLM",
    )
    ax.set_title(f"illness = {person[0]:+.1f}")
    ax.set_xlabel("visits")
axes[0].set_ylabel("probability")
axes[0].legend()
fig.tight_layout()
plt.show()

# %%
# 90% prediction intervals of the mixture are exact quantiles of its
# distribution. For counts the bounds are whole numbers, so an interval holds
# at least 90% of the probability, usually more:

bounds = mixture.predict_interval(X_test, confidence=0.9)
covered = np.mean((y_test >= bounds[:, 0]) & (y_test <= bounds[:, 1]))
print(f"held-out rows inside their 90% interval: {covered:.3f}")
