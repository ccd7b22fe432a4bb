"""
=================================================
Tuning a mixture of experts with ``GridSearchCV``
=================================================

A mixture of experts is a scikit-learn estimator, so
:class:`~sklearn.model_selection.GridSearchCV` tunes it like any other. Its
parameters are reachable by name: ``n_experts``, the gate's as
``gate__<param>`` (here the penalty ``gate__C`` of the softmax gate) and the
experts' as ``estimator__<param>`` (here the ridge penalty
``estimator__alpha`` of the linear experts).

This example searches over all three, scores every candidate two ways at
once (the held-out log-likelihood of
:func:`skmoe.metrics.log_likelihood_scorer` and the default :math:`R^2`),
plots the cross-validated scores against ``n_experts`` and checks the chosen
model on a test set the search never saw.
"""

# %%
# Data with three regimes in four features
# ----------------------------------------
#
# Four features are uniform on :math:`[-2, 2]`. Which regime a row is in
# depends on ``x0`` and ``x1``: regime 0 where :math:`x_0 < -0.5`, regime 1
# where :math:`x_0 \ge -0.5` and :math:`x_1 < 0`, regime 2 elsewhere. In each
# regime the target is a different linear function of all four features,
# with its own noise level (standard deviations 0.3, 1.0 and 0.5).

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV, KFold, train_test_split

from skmoe import MixtureOfExpertsRegressor
from skmoe.exceptions import ExpertCollapseWarning
from skmoe.experts import WeightedLeastSquares
from skmoe.gates import SoftmaxGate
from skmoe.metrics import log_likelihood_scorer

rng = np.random.RandomState(0)
n_samples, n_features = 600, 4
X = rng.uniform(-2, 2, size=(n_samples, n_features))
regime = np.where(X[:, 0] < -0.5, 0, np.where(X[:, 1] < 0, 1, 2))
coef = rng.randn(3, n_features)
intercept = np.array([0.0, 2.0, -2.0])
noise_std = np.array([0.3, 1.0, 0.5])
y = (
    np.einsum("ij,ij->i", X, coef[regime])
    + intercept[regime]
    + noise_std[regime] * rng.randn(n_samples)
)

X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

# %%
# The search
# ----------
#
# The grid crosses
#
# * ``n_experts`` from 1 to 5; one expert is a single linear model, so the
#   search can conclude that no mixture is needed;
# * ``gate__C``, the inverse L2 penalty of the softmax gate: ``1`` (a strong
#   penalty, soft switches between experts) or ``1e4`` (the default, weak);
# * ``estimator__alpha``, the L2 penalty of the linear experts
#   (:class:`~skmoe.experts.WeightedLeastSquares`, the model of ``Ridge``):
#   ``0`` (least squares) or ``10``.
#
# That is 20 candidates, each fitted on 3 folds with ``n_init=3`` starts.
#
# ``scoring`` is a dict, so every candidate gets both scores; ``refit`` says
# which one chooses the model refitted on all the training rows. The
# log-likelihood judges the whole predictive distribution
# :math:`p(y \mid x)`, including each expert's noise level; :math:`R^2`
# judges the mean prediction only.
#
# With more experts than the data have regimes, a surplus expert can lose
# all its rows; EM then re-seeds it and warns with an
# :class:`~skmoe.exceptions.ExpertCollapseWarning`. That is expected while
# trying too many experts, so it is silenced here.

param_grid = {
    "n_experts": [1, 2, 3, 4, 5],
    "gate__C": [1.0, 1e4],
    "estimator__alpha": [0.0, 10.0],
}
mixture = MixtureOfExpertsRegressor(
    estimator=WeightedLeastSquares(), gate=SoftmaxGate(), n_init=3, random_state=0
)
search = GridSearchCV(
    mixture,
    param_grid,
    scoring={"log_likelihood": log_likelihood_scorer, "r2": "r2"},
    refit="log_likelihood",
    cv=KFold(n_splits=3, shuffle=True, random_state=0),
)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ExpertCollapseWarning)
    search.fit(X_train, y_train)

results = search.cv_results_
print(f"{'n_experts':>9} {'gate__C':>8} {'alpha':>6} {'CV log-lik':>11} {'CV R^2':>7}")
for i, params in enumerate(results["params"]):
    print(
        f"{params['n_experts']:>9} {params['gate__C']:>8g} {params['estimator__alpha']:>6g} "
        f"{results['mean_test_log_likelihood'][i]:>11.3f} {results['mean_test_r2'][i]:>7.3f}"
    )

best_by_r2 = results["params"][np.argmax(results["mean_test_r2"])]
print(f"\nchosen by the log-likelihood (refit): {search.best_params_}")
print(f"what R^2 alone would have chosen:     {best_by_r2}")

# %%
# Cross-validated scores against ``n_experts``
# --------------------------------------------
#
# One line per setting of the two penalties; the error bars are the standard
# deviation of the score over the 3 folds. Look for where the
# log-likelihood peaks, whether the strongly penalised gate (``C=1``) keeps
# up with the weak one, and how much the experts' penalty changes anything:
# each expert here fits five coefficients on dozens to hundreds of rows, so
# a ridge penalty has little to correct. Where the two scorers prefer
# different candidates (compare the two choices printed above), compare the
# gap between their mean scores with the error bars: a gap far inside the
# fold-to-fold spread is a tie, not a preference.

n_experts_values = param_grid["n_experts"]
n_splits = search.n_splits_
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True, layout="constrained")
styles = {
    (1.0, 0.0): ("tab:blue", "--"),
    (1.0, 10.0): ("tab:blue", ":"),
    (1e4, 0.0): ("tab:red", "-"),
    (1e4, 10.0): ("tab:red", "-."),
}
for (C, alpha), (color, linestyle) in styles.items():
    rows = [
        next(
            i
            for i, p in enumerate(results["params"])
            if p["n_experts"] == k and p["gate__C"] == C and p["estimator__alpha"] == alpha
        )
        for k in n_experts_values
    ]
    for ax, metric in zip(axes, ["log_likelihood", "r2"]):
        ax.errorbar(
            n_experts_values,
            results[f"mean_test_{metric}"][rows],
            yerr=results[f"std_test_{metric}"][rows],
            color=color,
            ls=linestyle,
            marker="o",
            capsize=3,
            label=f"gate__C={C:g}, estimator__alpha={alpha:g}",
        )
best = search.best_params_
for ax, title in zip(axes, [r"CV mean held-out $\log p(y \mid x)$ (refit on this)", r"CV $R^2$"]):
    ax.axvline(best["n_experts"], color="0.6", lw=1, ls=":")
    ax.set_xlabel("n_experts")
    ax.set_title(title)
    ax.set_xticks(n_experts_values)
axes[0].legend(fontsize="small", loc="lower right")
fig.suptitle("GridSearchCV over n_experts, gate__C and estimator__alpha (dotted: chosen)")
plt.show()

# %%
# The chosen model on the test set
# --------------------------------
#
# ``search`` refits the candidate with the best cross-validated
# log-likelihood on all the training rows; ``search.predict``,
# ``search.score`` and ``search.best_estimator_`` then use it. The test set
# was held out of the whole search, so its scores are an honest estimate of
# how the tuned model does on new rows. For comparison, the single linear
# model (``n_experts=1``) is refitted and scored the same way.

tuned = search.best_estimator_
single = MixtureOfExpertsRegressor(1, estimator=WeightedLeastSquares()).fit(X_train, y_train)
for name, model in [("single linear model", single), ("tuned mixture", tuned)]:
    print(
        f"{name:<20} test R^2 {model.score(X_test, y_test):.3f}, "
        f"test mean log p(y|x) {model.log_likelihood(X_test, y_test).mean():.3f}"
    )
print("noise std of the tuned mixture's experts:", np.round(np.sqrt(tuned.noise_variance_), 2))

# %%
# With the chosen number of experts, each expert's noise standard deviation
# can be compared with the three true ones (0.3, 1.0 and 0.5, in some
# order). ``n_experts`` alone, cross-validated by log-likelihood with the
# single expert among the candidates, is also what
# :class:`~skmoe.MixtureOfExpertsRegressorCV` does in one line.
