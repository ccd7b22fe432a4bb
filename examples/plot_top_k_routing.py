"""
=======================================
Sparse top-k routing with eight experts
=======================================

Large neural mixtures of experts send each input to a few of their experts
only (Mixtral, for instance, to 2 of 8), so that the cost of a prediction
grows with the number of experts used, not the number of experts there are.
:class:`~skmoe.MixtureOfExpertsRegressor` does the same with ``top_k``: each
row keeps its ``top_k`` largest gate probabilities, renormalised, and only
those experts are evaluated on it, in training and in prediction.

This example fits eight linear experts with dense routing (``top_k=None``,
every expert sees every row) and with ``top_k=2``, predicts with
``top_k`` 1, 2 and dense from each, and compares fit time, prediction time,
held-out :math:`R^2` and held-out log-likelihood.
"""

# %%
# Eight regimes around the origin
# -------------------------------
#
# Four features are uniform on :math:`[-2, 2]`. The angle of ``(x0, x1)``
# around the origin cuts the plane into eight equal sectors, and in each
# sector the target is a different linear function of all four features,
# with Gaussian noise of standard deviation 0.3. A softmax gate on the
# features can draw exactly these sectors (each expert's region is where its
# linear score is the largest), so eight linear experts can fit the data.
#
# The test set is large (100,000 rows) so that prediction times are long
# enough to measure.

import time

import matplotlib.pyplot as plt
import numpy as np

from skmoe import MixtureOfExpertsRegressor

rng = np.random.RandomState(0)
n_features, n_regimes = 4, 8
coef = rng.randn(n_regimes, n_features)
intercept = rng.uniform(-3, 3, size=n_regimes)


def make_data(n_samples):
    X = rng.uniform(-2, 2, size=(n_samples, n_features))
    angle = np.arctan2(X[:, 1], X[:, 0])
    regime = ((angle + np.pi) / (2 * np.pi) * n_regimes).astype(int) % n_regimes
    y = np.einsum("ij,ij->i", X, coef[regime]) + intercept[regime]
    return X, y + 0.3 * rng.randn(n_samples)


X_train, y_train = make_data(6_000)
X_test, y_test = make_data(100_000)

# %%
# ``top_k=1`` cannot be trained
# -----------------------------
#
# With one expert per row, each row's responsibility is the gate's own
# choice, a target the gate already fits, so EM could never move the gate.
# The estimator refuses it at ``fit`` and says what to do instead:

try:
    MixtureOfExpertsRegressor(8, top_k=1).fit(X_train, y_train)
except ValueError as error:
    print(f"ValueError: {error}")

# %%
# So top-1 routing is a prediction-time setting: train with ``top_k=2`` (or
# dense) and predict after ``set_params(top_k=1)``. ``top_k`` is read at
# prediction time, so one fitted model can predict with any ``top_k``.
#
# Fit with dense and with top-2 routing
# -------------------------------------
#
# Both fits use the default linear experts and the same start
# (``random_state=0``); ``max_iter=300`` lets both reach EM's convergence
# test. Each fit is timed with :func:`time.perf_counter` and run twice,
# keeping the faster run: the same fit can take several times longer
# when other processes compete for the cores, and the faster run is the
# less disturbed. The number of EM iterations and the time per iteration
# say where the time went.

models = {}
fit_times = {}
for train_k in [None, 2]:
    times = []
    for _ in range(2):
        model = MixtureOfExpertsRegressor(8, top_k=train_k, max_iter=300, random_state=0)
        start = time.perf_counter()
        model.fit(X_train, y_train)
        times.append(time.perf_counter() - start)
    fit_times[train_k] = min(times)
    models[train_k] = model
    print(
        f"trained with top_k={train_k!s:<4}: fit {fit_times[train_k]:5.2f} s, "
        f"{model.n_iter_:3d} EM iterations "
        f"({1000 * fit_times[train_k] / model.n_iter_:.0f} ms each), "
        f"converged={model.converged_}, training log-lik {model.log_likelihood_:.3f}"
    )

# %%
# Predict with top-1, top-2 and dense routing
# -------------------------------------------
#
# For each fitted model and each prediction-time ``top_k``, the table gives
# the time of ``predict`` on the 100,000 test rows (best of five calls),
# the test :math:`R^2` and the test mean log-likelihood
# :math:`\frac{1}{n} \sum_i \log p(y_i \mid x_i)`. For reference, the true
# model's expected log-likelihood is that of the noise,
# :math:`-\frac{1}{2}\log(2 \pi \cdot 0.3^2) - \frac{1}{2}`.

print(f"true model's expected log-likelihood: {-0.5 * np.log(2 * np.pi * 0.09) - 0.5:.3f}\n")
print(f"{'trained':>8} {'predicted':>9} {'predict (ms)':>12} {'R^2':>7} {'log-lik':>8}")
rows = []
for train_k, model in models.items():
    for predict_k in [1, 2, None]:
        model.set_params(top_k=predict_k)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            model.predict(X_test)
            times.append(time.perf_counter() - start)
        r2 = model.score(X_test, y_test)
        log_lik = model.log_likelihood(X_test, y_test).mean()
        rows.append((train_k, predict_k, 1000 * min(times), r2, log_lik))
        print(
            f"{train_k!s:>8} {predict_k!s:>9} {1000 * min(times):12.0f} {r2:7.4f} {log_lik:8.3f}"
        )
    model.set_params(top_k=train_k)  # back to the routing it was trained with

# %%
# What to look for in the table:
#
# * **Prediction time** grows with the prediction-time ``top_k``: dense
#   prediction evaluates all eight experts on every row, top-1 only one.
# * **R2 barely depends on the prediction-time routing** of a given model:
#   the experts a row drops have small gate probabilities, so they move the
#   mixture's mean little.
# * **The log-likelihood can drop sharply with top-1 prediction.** Near a
#   boundary between sectors the gate hesitates; top-1 keeps one expert and
#   renormalises its weight to 1, so a row that belongs to the other side
#   gets a density from the wrong expert only, far out in its tail. Such
#   rows pull the mean log-likelihood down even when the mean prediction
#   hardly changes (the count is printed below). Top-2 keeps the runner-up
#   and avoids most of this.
# * **Fit time** is the time per EM iteration times the number of
#   iterations, and ``top_k`` acts on both. Per iteration, sparse routing
#   saves little with linear experts: the refit of all eight is one compiled
#   pass over ``X`` whatever the routing, and the default
#   ``min_responsibility`` already skips, in dense training, the rows an
#   expert is not responsible for. In the number of iterations sparse
#   routing can lose: an expert cut off from a row gets no signal from it,
#   so the gate's boundaries move more slowly. Compare the two lines printed
#   after the fits. Sparse training has more to gain when each expert's
#   refit is expensive and grows with its rows (trees, boosting).
#
# How concentrated is top-1's loss? Per row, the dense-trained model's
# log-likelihood with top-1 routing minus that with dense routing:

dense_model = models[None]
dense_rows = dense_model.set_params(top_k=None).log_likelihood(X_test, y_test)
top1_rows = dense_model.set_params(top_k=1).log_likelihood(X_test, y_test)
dense_model.set_params(top_k=None)
loss = dense_rows - top1_rows
big = loss > 1.0
print(f"mean log-likelihood lost by top-1 routing: {loss.mean():.3f} per row")
print(
    f"rows losing more than 1 nat: {big.mean():.2%} of the test rows; "
    f"their losses alone amount to {loss[big].sum() / loss.size:.3f} per row"
)

# %%
# The trade-off, drawn
# --------------------
#
# Left: prediction time against test log-likelihood, one point per
# (training, prediction) routing. Right: the training log-likelihood after
# every EM iteration, which shows how fast each routing converges.

fig, (ax_trade, ax_em) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
markers = {1: "v", 2: "s", None: "o"}
colors = {None: "tab:blue", 2: "tab:orange"}
for train_k, predict_k, predict_ms, r2, log_lik in rows:
    # Dense-trained models as large hollow markers, so that coinciding
    # points of the two models stay visible.
    hollow = train_k is None
    ax_trade.scatter(
        predict_ms,
        log_lik,
        s=160 if hollow else 50,
        marker=markers[predict_k],
        facecolors="none" if hollow else colors[train_k],
        edgecolors=colors[train_k],
        linewidths=1.5,
        label=f"trained {train_k}, predicted {predict_k}: R2 {r2:.4f}",
    )
ax_trade.set_xlabel("predict time on 100,000 rows (ms)")
ax_trade.set_ylabel("test mean log p(y | x)")
ax_trade.set_title("Prediction cost against held-out log-likelihood")
ax_trade.legend(title="top_k", fontsize="x-small", title_fontsize="small", loc="center right")

for train_k, model in models.items():
    history = model.log_likelihood_history_
    ax_em.plot(
        np.arange(len(history)),
        history,
        color=colors[train_k],
        label=f"top_k={train_k}: {fit_times[train_k]:.1f} s, {model.n_iter_} iterations",
    )
ax_em.set_ylim(max(min(m.log_likelihood_history_[0] for m in models.values()), -3), None)
ax_em.set_xlabel("EM iteration")
ax_em.set_ylabel("training mean log p(y | x)")
ax_em.set_title("EM's progress with dense and top-2 routing")
ax_em.legend(fontsize="small", loc="lower right")
plt.show()
