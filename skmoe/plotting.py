"""Plots of a fitted mixture: its experts, gate, predictive intervals and EM's progress.

Needs matplotlib, which is not a dependency of skmoe: install it with
``pip install "skmoe[plots]"``. matplotlib is imported when a function is
called, not when this module is.

When ``X`` has more columns than a plot shows, the model is drawn on a
slice: the plotted feature(s) vary over a grid, every other column is held
at its median (its most frequent value for non-numeric DataFrame columns).
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted

__all__ = ["plot_regression_1d", "plot_gate_regions", "plot_convergence"]


def plot_regression_1d(model, X, y=None, *, feature=0, confidence=0.9, ax=None, gate_ax=None):
    """Draw a regressor's experts, mean and predictive interval against one feature.

    On ``ax``: the data ``(x, y)`` when ``y`` is given, each expert's mean
    (``model.predict_experts``), the mixture's mean and the central interval
    of its predictive distribution holding ``confidence`` of the probability
    (``model.predict_interval``, exact mixture quantiles, so the band may be
    asymmetric). On ``gate_ax``: the gate's probability of each expert
    (``model.predict_gate``). Everything is evaluated on a grid of 300
    points over the range of the feature in ``X``; with more than one column
    in ``X`` the others are held at their median.

    Parameters
    ----------
    model : fitted MixtureOfExpertsRegressor
        The mixture.
    X : {array-like, DataFrame} of shape (n_samples, n_features)
        Data of the kind the model was fitted on (a 1-D array for a model of
        a single feature); it sets the grid's range and the held values.
    y : array-like of shape (n_samples,), default=None
        Targets, drawn as points when given.
    feature : int or str, default=0
        The column to plot against: its position, or its name for a model
        fitted on a DataFrame.
    confidence : float in (0, 1), default=0.9
        Probability inside the drawn interval.
    ax : matplotlib Axes, default=None
        Axes for the fit. With ``ax`` and ``gate_ax`` both None, a new figure
        holds both, the gate below the fit; with only ``ax`` given, the gate
        is not drawn.
    gate_ax : matplotlib Axes, default=None
        Axes for the gate probabilities.

    Returns
    -------
    ax : matplotlib Axes
        The fit's axes.
    gate_ax : matplotlib Axes or None
        The gate's axes, None when not drawn.

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe import MixtureOfExpertsRegressor
    >>> from skmoe.plotting import plot_regression_1d
    >>> rng = np.random.RandomState(0)
    >>> x = rng.uniform(-2, 2, size=300)
    >>> y = np.abs(x) + 0.1 * rng.randn(300)
    >>> moe = MixtureOfExpertsRegressor(2, random_state=0).fit(x.reshape(-1, 1), y)
    >>> ax, gate_ax = plot_regression_1d(moe, x, y)  # doctest: +SKIP
    """
    plt = _pyplot()
    check_is_fitted(model, "experts_")
    if not hasattr(model, "predict_interval"):
        raise TypeError(
            f"plot_regression_1d draws a regressor's predictive interval; "
            f"{type(model).__name__} has no predict_interval. For a classifier, "
            "use plot_gate_regions."
        )
    X = _as_2d(model, X)
    column, name = _resolve_feature(model, X, feature)
    values = _column(X, column)
    grid = np.linspace(np.nanmin(values), np.nanmax(values), 300)
    X_grid = _slice(X, [column], [grid])
    expert_means = model.predict_experts(X_grid)
    mean = model.predict(X_grid)
    bounds = model.predict_interval(X_grid, confidence=confidence)
    labels = _expert_labels(model)

    if ax is None:
        if gate_ax is None:
            _, (ax, gate_ax) = plt.subplots(
                2, 1, sharex=True, height_ratios=[2, 1], layout="constrained"
            )
        else:
            _, ax = plt.subplots()
    if y is not None:
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        ax.scatter(values, y, s=8, color="0.6", alpha=0.6, label="data", zorder=1)
    ax.fill_between(
        grid,
        bounds[:, 0],
        bounds[:, 1],
        color="k",
        alpha=0.15,
        lw=0,
        label=f"{100 * confidence:g}% interval",
        zorder=2,
    )
    for k, label in enumerate(labels):
        ax.plot(grid, expert_means[:, k], color=f"C{k}", lw=1.5, label=label, zorder=3)
    ax.plot(grid, mean, color="k", lw=1.5, ls="--", label="mixture mean", zorder=4)
    low = np.nanmin(bounds[:, 0]) if y is None else min(np.nanmin(y), np.nanmin(bounds[:, 0]))
    high = np.nanmax(bounds[:, 1]) if y is None else max(np.nanmax(y), np.nanmax(bounds[:, 1]))
    pad = 0.05 * (high - low) if high > low else 1.0
    ax.set_ylim(low - pad, high + pad)  # experts' extrapolations may run off
    ax.set_ylabel("y")
    ax.legend(fontsize="small")
    if gate_ax is None:
        ax.set_xlabel(name)
        return ax, None

    gate = model.predict_gate(X_grid)
    for k, label in enumerate(labels):
        gate_ax.plot(grid, gate[:, k], color=f"C{k}", lw=1.5, label=label)
    gate_ax.set_ylim(-0.05, 1.05)
    gate_ax.set_xlabel(name)
    gate_ax.set_ylabel("gate probability")
    return ax, gate_ax


def plot_gate_regions(model, X, *, features=(0, 1), resolution=200, ax=None):
    """Draw where the gate prefers each expert, over two features.

    The most probable expert of ``model.predict_gate`` on a
    ``resolution`` x ``resolution`` grid over the range of the two features
    in ``X`` (plus a 5% margin) is drawn as coloured regions, and the points
    of ``X`` coloured by their own most probable expert. Works for
    regressors and classifiers; with more than two columns in ``X`` the
    others are held at their median.

    Parameters
    ----------
    model : fitted MixtureOfExpertsRegressor or MixtureOfExpertsClassifier
        The mixture.
    X : {array-like, DataFrame} of shape (n_samples, n_features)
        Data of the kind the model was fitted on.
    features : pair of int or str, default=(0, 1)
        The columns on the horizontal and vertical axes: positions, or names
        for a model fitted on a DataFrame.
    resolution : int, default=200
        Grid points along each axis.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        The axes drawn on; the regions are its ``QuadMesh`` (``pcolormesh``).

    Examples
    --------
    >>> from sklearn.datasets import make_moons
    >>> from skmoe import MixtureOfExpertsClassifier
    >>> from skmoe.plotting import plot_gate_regions
    >>> X, y = make_moons(300, noise=0.2, random_state=0)
    >>> moe = MixtureOfExpertsClassifier(3, random_state=0).fit(X, y)
    >>> ax = plot_gate_regions(moe, X)  # doctest: +SKIP
    """
    plt = _pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    check_is_fitted(model, "gate_")
    X = _as_2d(model, X)
    if len(features) != 2:
        raise ValueError(f"features must name two columns; got {len(features)}.")
    (first, first_name), (second, second_name) = (
        _resolve_feature(model, X, feature) for feature in features
    )
    if first == second:
        raise ValueError(f"features must be two different columns; got {features}.")
    axes_values = [_column(X, first), _column(X, second)]
    grids = []
    for values in axes_values:
        low, high = np.nanmin(values), np.nanmax(values)
        pad = 0.05 * (high - low) if high > low else 0.5
        grids.append(np.linspace(low - pad, high + pad, resolution))
    grid_x, grid_y = np.meshgrid(*grids)
    X_grid = _slice(X, [first, second], [grid_x.ravel(), grid_y.ravel()])
    regions = model.predict_gate(X_grid).argmax(axis=1).reshape(grid_x.shape)
    assigned = model.predict_gate(X).argmax(axis=1)

    n_experts = len(model.experts_)
    colors = ListedColormap([f"C{k}" for k in range(n_experts)])
    scale = {"cmap": colors, "vmin": -0.5, "vmax": n_experts - 0.5}
    if ax is None:
        _, ax = plt.subplots(layout="constrained")
    ax.pcolormesh(grid_x, grid_y, regions, shading="auto", alpha=0.3, **scale)
    ax.scatter(*axes_values, c=assigned, s=12, edgecolors="k", linewidths=0.3, **scale)
    ax.legend(
        handles=[
            Patch(color=f"C{k}", alpha=0.6, label=label)
            for k, label in enumerate(_expert_labels(model))
        ],
        title="most probable expert",
        fontsize="small",
    )
    ax.set_xlabel(first_name)
    ax.set_ylabel(second_name)
    return ax


def plot_convergence(model, ax=None):
    """Draw EM's mean training log-likelihood per iteration.

    ``model.log_likelihood_history_`` (after the initial M-step, at 0, then
    after every iteration), and with ``early_stopping`` the held-out
    ``validation_log_likelihood_history_`` too. The held-out score is
    recorded once per EM step or accelerated (SQUAREM) cycle of two or three
    iterations, so its curve can be shorter.

    Parameters
    ----------
    model : fitted MixtureOfExpertsRegressor or MixtureOfExpertsClassifier
        The mixture.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        The axes drawn on.

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe import MixtureOfExpertsRegressor
    >>> from skmoe.plotting import plot_convergence
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(-2, 2, size=(300, 1))
    >>> y = np.abs(X[:, 0]) + 0.1 * rng.randn(300)
    >>> moe = MixtureOfExpertsRegressor(2, random_state=0).fit(X, y)
    >>> ax = plot_convergence(moe)  # doctest: +SKIP
    """
    plt = _pyplot()
    check_is_fitted(model, "log_likelihood_history_")
    if ax is None:
        _, ax = plt.subplots(layout="constrained")
    history = np.asarray(model.log_likelihood_history_)
    ax.plot(np.arange(history.size), history, marker="o", ms=3, label="training")
    validation = getattr(model, "validation_log_likelihood_history_", None)
    if validation is not None:
        validation = np.asarray(validation)
        ax.plot(
            np.arange(validation.size), validation, marker="s", ms=3, label="validation (held out)"
        )
    ax.set_xlabel("EM iteration")
    ax.set_ylabel("mean log-likelihood per sample")
    ax.legend(fontsize="small")
    return ax


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            'skmoe.plotting needs matplotlib, which is not installed: pip install "skmoe[plots]"'
        ) from error
    return plt


def _expert_labels(model):
    if isinstance(model.estimator, list):
        return [str(name) for name, _ in model.estimator]
    return [f"expert {k}" for k in range(len(model.experts_))]


def _as_2d(model, X):
    """``X`` as a 2-D array or DataFrame; a 1-D array is one column."""
    if hasattr(X, "iloc"):
        return X
    if hasattr(X, "toarray"):
        X = X.toarray()
    X = np.asarray(X)
    if X.ndim == 1 and model.n_features_in_ == 1:
        return X.reshape(-1, 1)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {X.shape}.")
    return X


def _resolve_feature(model, X, feature):
    """The position and display name of ``feature`` (a position or a column name)."""
    names = getattr(model, "feature_names_in_", None)
    n_features = X.shape[1]
    if isinstance(feature, str):
        if names is None or feature not in list(names):
            raise ValueError(f"feature {feature!r} is not a column the model was fitted on.")
        position = list(names).index(feature)
    else:
        position = int(feature)
        if not -n_features <= position < n_features:
            raise ValueError(f"feature={feature} is out of range; X has {n_features} columns.")
        position %= n_features
    name = str(names[position]) if names is not None else f"x{position}"
    return position, name


def _column(X, position):
    if hasattr(X, "iloc"):
        return np.asarray(X.iloc[:, position], dtype=np.float64)
    return np.asarray(X[:, position], dtype=np.float64)


def _slice(X, positions, grids):
    """Rows where the columns ``positions`` take ``grids`` and the others a typical value."""
    n_rows = len(grids[0])
    if hasattr(X, "iloc"):
        import pandas as pd

        rows = X.iloc[np.zeros(n_rows, dtype=np.intp)].reset_index(drop=True)
        for j, column in enumerate(X.columns):
            if j in positions:
                rows[column] = grids[positions.index(j)]
            elif pd.api.types.is_numeric_dtype(X[column]):
                rows[column] = X[column].median()
            else:  # the most frequent value, its dtype (say categorical) kept
                first = np.flatnonzero((X[column] == X[column].mode().iloc[0]).to_numpy())[0]
                rows[column] = X[column].iloc[np.full(n_rows, first)].reset_index(drop=True)
        return rows
    held = np.empty(X.shape[1])
    others = [j for j in range(X.shape[1]) if j not in positions]
    if others:
        held[others] = np.nanmedian(np.asarray(X[:, others], dtype=np.float64), axis=0)
    rows = np.tile(held, (n_rows, 1))
    for position, grid in zip(positions, grids):
        rows[:, position] = grid
    return rows
