"""The demonstration behind ``skmoe demo`` and ``examples/demo.py``.

Generates tabular data whose target follows different linear laws in
different regions of the input space (a gated mixture of experts, which one
linear model cannot represent), fits a mixture of ridge experts and a single
ridge regression, and prints how they compare on held-out data. Then does
the same for classification with logistic experts. :func:`save_figure`
draws the fitted gates and the held-out predictions (needs matplotlib).
"""

import sys
import time

import numpy as np
from scipy.special import expit, softmax
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split

from ._classification import MixtureOfExpertsClassifier
from ._regression import MixtureOfExpertsRegressor

FIGURE_NAME = "skmoe-demo.png"


def regression_data(n=20_000, seed=0):
    """Three regimes chosen by a softmax gate on the inputs; a linear law in each.

    Parameters
    ----------
    n : int, default=20_000
        Number of rows.
    seed : int, default=0
        Seed of the generator.

    Returns
    -------
    X : ndarray of shape (n, 5)
        Standard normal features; the gate uses the first two.
    y : ndarray of shape (n,)
        Targets, with noise of standard deviation 0.3.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    gate = softmax(X[:, :2] @ np.array([[3.0, -3.0, 0.0], [0.0, 3.0, -3.0]]), axis=1)
    regime = (gate.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1)
    coef = rng.normal(scale=2.0, size=(3, 5))
    y = np.einsum("nd,nd->n", X, coef[regime]) + np.array([1.0, -1.0, 3.0])[regime]
    return X, y + 0.3 * rng.normal(size=n)


def classification_data(n=20_000, seed=1):
    """Two logistic experts with opposite slopes, switched by the sign of x0.

    Parameters
    ----------
    n : int, default=20_000
        Number of rows.
    seed : int, default=1
        Seed of the generator.

    Returns
    -------
    X : ndarray of shape (n, 3)
        Standard normal features.
    y : ndarray of shape (n,)
        Labels 0 and 1.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    right = rng.uniform(size=n) < expit(4.0 * X[:, 0])
    logit = np.where(right, 3.0, -3.0) * X[:, 1] + X[:, 2]
    return X, (rng.uniform(size=n) < expit(logit)).astype(int)


def _timed_fit(model, X, y):
    start = time.perf_counter()
    model.fit(X, y)
    return time.perf_counter() - start


def run(n_samples=20_000, file=None):
    """Fit the mixtures and their single experts, print the held-out comparison.

    Parameters
    ----------
    n_samples : int, default=20_000
        Rows of each generated data set; a quarter is held out.
    file : file-like, default=None
        Where to print; ``sys.stdout`` when None.

    Returns
    -------
    results : dict
        ``"regression"`` and ``"classification"``, each a dict of the
        fitted ``"single"`` model and ``"mixture"`` and the held-out
        ``"X_test"`` and ``"y_test"``, for :func:`save_figure`.
    """
    out = sys.stdout if file is None else file
    results = {}

    print(f"Regression: {n_samples:,} rows, 5 features, 3 gated linear regimes", file=out)
    X_train, X_test, y_train, y_test = train_test_split(
        *regression_data(n_samples), random_state=0
    )
    single, moe = Ridge(), MixtureOfExpertsRegressor(3, estimator=Ridge(), random_state=0)
    print(f"{'model':<34}{'fit (s)':>9}{'held-out R2':>13}{'mean log p(y|x)':>17}", file=out)
    for name, model in [("Ridge (single expert)", single), ("MixtureOfExperts(3 x Ridge)", moe)]:
        seconds = _timed_fit(model, X_train, y_train)
        # A single ridge regression has no noise model, so no log-likelihood.
        ll = f"{moe.log_likelihood(X_test, y_test).mean():.3f}" if model is moe else "-"
        print(f"{name:<34}{seconds:>9.2f}{model.score(X_test, y_test):>13.3f}{ll:>17}", file=out)
    print(
        f"EM: {moe.n_iter_} iterations, converged={moe.converged_}, "
        f"expert shares {np.round(moe.expert_share_, 2)}",
        file=out,
    )
    results["regression"] = {"single": single, "mixture": moe, "X_test": X_test, "y_test": y_test}

    print(f"\nClassification: {n_samples:,} rows, 3 features, 2 gated logistic experts", file=out)
    X_train, X_test, y_train, y_test = train_test_split(
        *classification_data(n_samples), random_state=0
    )
    single = LogisticRegression()
    moe = MixtureOfExpertsClassifier(2, estimator=LogisticRegression(), random_state=0)
    print(f"{'model':<34}{'fit (s)':>9}{'held-out acc':>13}", file=out)
    for name, model in [
        ("LogisticRegression (single)", single),
        ("MixtureOfExperts(2 x Logistic)", moe),
    ]:
        seconds = _timed_fit(model, X_train, y_train)
        print(f"{name:<34}{seconds:>9.2f}{model.score(X_test, y_test):>13.3f}", file=out)
    results["classification"] = {
        "single": single,
        "mixture": moe,
        "X_test": X_test,
        "y_test": y_test,
    }
    return results


def save_figure(results, path):
    """Draw the demonstration's fitted gates and held-out predictions into ``path``.

    Three panels: where the regression mixture's gate prefers each expert
    over the two features it was generated from, the same for the
    classifier, and the held-out regression targets against the
    predictions of the single ridge regression and of the mixture.

    Parameters
    ----------
    results : dict
        What :func:`run` returned.
    path : str or path-like
        The image file; its extension chooses the format (``.png``, ``.pdf``...).

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    """
    # A Figure without pyplot: no GUI backend and no global figure state.
    from matplotlib.figure import Figure

    from .plotting import plot_gate_regions

    figure = Figure(figsize=(15, 4.5), layout="constrained")
    gate_reg, gate_clf, fit_ax = figure.subplots(1, 3)
    shown = 500  # points drawn on the gate maps: enough to see, few enough to read
    regression, classification = results["regression"], results["classification"]
    plot_gate_regions(regression["mixture"], regression["X_test"][:shown], ax=gate_reg)
    gate_reg.set_title("Regression: the gate's regions (3 Ridge experts)")
    plot_gate_regions(classification["mixture"], classification["X_test"][:shown], ax=gate_clf)
    gate_clf.set_title("Classification: the gate's regions (2 logistic experts)")

    X_test, y_test = regression["X_test"][: 2 * shown], regression["y_test"][: 2 * shown]
    for name, model, color in [
        ("single Ridge", regression["single"], "0.6"),
        ("mixture of experts", regression["mixture"], "C0"),
    ]:
        fit_ax.scatter(y_test, model.predict(X_test), s=6, color=color, label=name)
    low, high = y_test.min(), y_test.max()
    fit_ax.plot([low, high], [low, high], color="k", linewidth=0.8)
    fit_ax.set_xlabel("held-out target")
    fit_ax.set_ylabel("prediction")
    fit_ax.set_title("Regression: held-out predictions")
    fit_ax.legend(fontsize="small")
    figure.savefig(path, dpi=110)
