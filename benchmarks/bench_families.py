"""Likelihood families: Poisson and gamma mixtures against R's flexmix from the same start.

Data: three log-link GLM experts under a softmax gate (d = 5), counts
(Poisson) or positive targets (gamma with shapes 2, 5 and 10). skmoe fits
``MixtureOfExpertsRegressor(3, likelihood=family)`` with its default experts
(unpenalised ``PoissonRegressor`` / ``GammaRegressor``, Newton's method) and
an unpenalised gate, as flexmix's ``FLXMRglm`` + ``FLXPmultinom``, both from
the same k-means partition and to a tight tolerance. The table gives the
training mean log-likelihood of each, their relative gap, the EM iterations
and the fit seconds (flexmix's by R's own timer). flexmix's ``FLXMRglm``
fits a gamma GLM with the canonical inverse link only (and fails to start on
these data), a different model from the log link here: the gamma row is
skmoe's alone.
"""

import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from _flexmix import fit_flexmix, unavailable
from _timing import print_table, time_interleaved, verdict
from skmoe import MixtureOfExpertsRegressor
from skmoe.gates import SoftmaxGate

N_EXPERTS = 3
INTERCEPTS = np.array([0.5, 1.5, 2.5])
SHAPES = np.array([2.0, 5.0, 10.0])


def _data(family, n_samples, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, 5))
    gate = np.exp(X @ (1.5 * rng.normal(size=(5, N_EXPERTS))))
    gate /= gate.sum(axis=1, keepdims=True)
    regime = (rng.uniform(size=(n_samples, 1)) > gate.cumsum(axis=1)).sum(axis=1)
    coef = rng.normal(scale=0.4, size=(N_EXPERTS, 5))
    mean = np.exp(np.einsum("nd,nd->n", X, coef[regime]) + INTERCEPTS[regime])
    if family == "poisson":
        return X, rng.poisson(mean).astype(float)
    return X, rng.gamma(SHAPES[regime], mean / SHAPES[regime])


def run(quick=False):
    """Print the table; return the target verdict lines."""
    n_samples = 20_000 if quick else 200_000
    rows, targets = [], []
    for family in ("poisson", "gamma"):
        X, y = _data(family, n_samples)
        columns = np.column_stack([X, np.log1p(y)])
        columns = (columns - columns.mean(axis=0)) / columns.std(axis=0)
        start = KMeans(N_EXPERTS, n_init=1, random_state=0).fit_predict(columns)
        model = MixtureOfExpertsRegressor(
            N_EXPERTS, likelihood=family, gate=SoftmaxGate(C=np.inf),
            init=np.eye(N_EXPERTS)[start], tol=1e-8, max_iter=1000, random_state=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            seconds = time_interleaved({"skmoe": lambda: model.fit(X, y)}, 1, warmup=False)
        flexmix = ("not comparable (inverse link only)" if family == "gamma" else
                   fit_flexmix(X, y, N_EXPERTS, start=start, family=family, tol=1e-10))
        if isinstance(flexmix, str):
            rows.append([family, n_samples, f"{model.log_likelihood_:.6f}", flexmix, "",
                         model.n_iter_, "", f"{seconds['skmoe']:.2f}", ""])
            continue
        gap = (flexmix["train_log_lik"] - model.log_likelihood_) / abs(flexmix["train_log_lik"])
        speedup = flexmix["seconds"] / seconds["skmoe"]
        rows.append([family, n_samples, f"{model.log_likelihood_:.6f}",
                     f"{flexmix['train_log_lik']:.6f}", f"{gap:.1e}", model.n_iter_,
                     flexmix["n_iter"], f"{seconds['skmoe']:.2f}", f"{flexmix['seconds']:.2f}"])
        if family == "poisson":
            targets.append(verdict(
                f"Poisson mixture: flexmix's log-likelihood within 1e-4 relative from the same "
                f"start and >= 50x faster at 200,000 rows (measured {gap:.1e}, {speedup:.1f}x "
                f"at {n_samples:,} rows)",
                abs(gap) <= 1e-4 and speedup >= 50 and n_samples >= 200_000,
            ))
    reason = unavailable()
    print_table(
        "Families: Poisson and gamma mixtures of GLMs against flexmix, same k-means start",
        ["family", "rows", "skmoe LL", "flexmix LL", "rel gap", "skmoe iters",
         "flexmix iters", "skmoe s", "flexmix s"],
        rows,
        notes=[f"flexmix {reason}"] if reason else [
            "rel gap = (flexmix - skmoe) / |flexmix| (negative: skmoe higher); both "
            "unpenalised, tolerance 1e-8 (skmoe, mean log-likelihood) and 1e-10 (flexmix)."],
        targets=targets,
    )
    return targets


if __name__ == "__main__":
    run()
