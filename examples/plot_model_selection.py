"""
==============================
Choosing the number of experts
==============================

How many experts does a data set need? Too few and the mixture cannot follow
the regimes; too many and the surplus experts fit noise. This example picks
``n_experts`` for data with three linear regimes in two ways:

* information criteria of models fitted on all the data,
  :meth:`~skmoe.MixtureOfExpertsRegressor.bic` and
  :meth:`~skmoe.MixtureOfExpertsRegressor.aic`, which charge the training
  log-likelihood for the model's free parameters;
* the cross-validated held-out log-likelihood, with
  :class:`~skmoe.MixtureOfExpertsRegressorCV`.

Both pick three experts here.
"""

# %%
# Data with three regimes
# -----------------------
#
# ``x`` is uniform on :math:`[0, 10]`; the target follows a different line in
# each of the regions :math:`x < 3`, :math:`3 \le x < 7` and :math:`x \ge 7`,
# with its own noise level.

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import KFold

from skmoe import MixtureOfExpertsRegressor, MixtureOfExpertsRegressorCV
from skmoe.exceptions import ExpertCollapseWarning

rng = np.random.RandomState(0)
n_samples = 800
x = rng.uniform(0, 10, size=n_samples)
regime = np.digitize(x, [3.0, 7.0])  # 0, 1 or 2
slopes = np.array([1.5, -2.0, 1.0])
intercepts = np.array([0.0, 10.5, -6.0])
noise_std = np.array([0.4, 0.6, 0.3])
y = slopes[regime] * x + intercepts[regime] + noise_std[regime] * rng.randn(n_samples)
X = x.reshape(-1, 1)

# %%
# Information criteria
# --------------------
#
# For each number of experts, fit a mixture of linear experts on all the data
# (three EM starts each, keeping the best) and compute
#
# .. math::
#
#    \mathrm{BIC} = -2 \sum_i \log p(y_i \mid x_i) + k \log n, \qquad
#    \mathrm{AIC} = -2 \sum_i \log p(y_i \mid x_i) + 2 k,
#
# where :math:`k` is the number of free parameters: here
# :math:`(K - 1) \cdot 2` for the softmax gate on ``x`` (one of its
# :math:`K` columns is not free), two per linear expert and one noise variance
# per expert, :math:`5K - 2` in all. Lower is better. BIC's charge grows with
# :math:`\log n`, AIC's does not, so AIC tends to choose more experts.
#
# Experts beyond the data's three regimes may lose all their samples; EM then
# re-seeds them and warns (see the user guide on collapsed experts). That is
# expected when trying too many experts, so the warning is silenced here.

candidates = range(1, 7)


def make_mixture(n_experts):
    return MixtureOfExpertsRegressor(
        n_experts, estimator=LinearRegression(), n_init=3, max_iter=300, random_state=0
    )


bic, aic = [], []
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ExpertCollapseWarning)
    for n_experts in candidates:
        model = make_mixture(n_experts).fit(X, y)
        bic.append(model.bic(X, y))
        aic.append(model.aic(X, y))

for n_experts, b, a in zip(candidates, bic, aic):
    print(f"n_experts={n_experts} (k={5 * n_experts - 2:2d}): BIC {b:7.1f}, AIC {a:7.1f}")
best_bic = candidates[int(np.argmin(bic))]
best_aic = candidates[int(np.argmin(aic))]

# %%
# Cross-validated log-likelihood
# ------------------------------
#
# :class:`~skmoe.MixtureOfExpertsRegressorCV` fits every candidate on two
# thirds of the data and scores the mean :math:`\log p(y \mid x)` of the
# third left out, three times over, then refits the best on all the data. It
# makes no assumption on how to count parameters, so it also works for
# experts that have no such count (trees, boosting, pipelines), for which
# ``bic`` and ``aic`` raise an error.

search = MixtureOfExpertsRegressorCV(
    make_mixture(1),  # n_experts is searched; the rest is kept
    n_experts=candidates,
    cv=KFold(3, shuffle=True, random_state=0),
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ExpertCollapseWarning)
    search.fit(X, y)
cv_mean = search.cv_results_["mean_test_score"]
cv_std = search.cv_results_["std_test_score"]
for n_experts, mean, std in zip(candidates, cv_mean, cv_std):
    print(f"n_experts={n_experts}: held-out mean log p(y | x) = {mean:.3f} (std {std:.3f})")

print(f"chosen n_experts: BIC {best_bic}, AIC {best_aic}, cross-validation {search.n_experts_}")

# %%
# The criteria against the number of experts
# -------------------------------------------
#
# All three curves change steeply up to three experts: each expert added
# there captures a regime. Beyond three (the insets), the training
# log-likelihood barely improves: BIC rises with its charge of
# :math:`5 \log n \approx 33` per expert, while AIC, charged 10 per expert,
# stays nearly flat, its minimum at three only narrowly ahead. The held-out
# log-likelihood falls slowly, since the surplus experts fit noise that does
# not recur in new data; its differences beyond three are within the spread
# over the folds (the error bars), and the search keeps the best mean.

fig, (ax_ic, ax_cv) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
ax_ic.plot(candidates, bic, "o-", label="BIC")
ax_ic.plot(candidates, aic, "s--", label="AIC")
ax_ic.set_xlabel("n_experts")
ax_ic.set_ylabel("criterion (lower is better)")
ax_ic.set_title(f"Information criteria: BIC picks {best_bic}, AIC picks {best_aic}")
ax_ic.legend(loc="upper center")

ax_cv.errorbar(candidates, cv_mean, yerr=cv_std, fmt="o-", capsize=3, color="tab:green")
ax_cv.set_xlabel("n_experts")
ax_cv.set_ylabel(r"held-out mean $\log p(y \mid x)$ (higher is better)")
ax_cv.set_title(f"3-fold cross-validation picks {search.n_experts_}")

# The drop to three experts dwarfs what follows: insets zoom on 3 to 6 experts.
zoom = slice(2, None)
inset_ic = ax_ic.inset_axes([0.45, 0.35, 0.5, 0.4])
inset_ic.plot(candidates[zoom], bic[zoom], "o-")
inset_ic.plot(candidates[zoom], aic[zoom], "s--")
inset_cv = ax_cv.inset_axes([0.45, 0.12, 0.5, 0.4])
inset_cv.errorbar(
    candidates[zoom], cv_mean[zoom], yerr=cv_std[zoom], fmt="o-", capsize=3, color="tab:green"
)
for inset, best in [(inset_ic, best_bic), (inset_cv, search.n_experts_)]:
    inset.axvline(best, color="0.6", ls=":", lw=1)
    inset.set_xticks(candidates[zoom])
    inset.tick_params(labelsize="small")
plt.show()

# %%
# Which to use?
# -------------
#
# BIC and AIC need a single fit per candidate, so they are the cheaper
# choice, but only for models whose free parameters can be counted: linear
# experts and the softmax, HME or tree gate (whose tree structure is not
# counted, so its BIC is optimistic). They also score the training data, and
# rest on large-sample approximations. Cross-validation costs one fit per fold
# and candidate, works for any expert, and measures directly what a mixture
# is for: the probability it gives to targets it has not seen.
