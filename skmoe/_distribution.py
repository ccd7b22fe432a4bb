"""The predictive distribution of a mixture of experts, for many rows at once.

``p(y | x_i) = sum_j w_ij f(y; o_ij, theta_ij)``: each row's routed experts
``j`` (all of them, or its top-k), their gate weights ``w``, their outputs
``o`` and the likelihood's parameters ``theta`` for them. The family ``f``
(its density, CDF, quantiles, moments and sampling) belongs to the
likelihood object (:mod:`skmoe.likelihoods`); this module only mixes, so a
new family gets intervals, quantiles and sampling for free.
"""

import numpy as np
from scipy.special import logsumexp
from sklearn.utils import check_random_state

from ._routing import scatter_routes

# Quantiles: Newton's method inside a shrinking bracket, at most this many steps.
_MAX_ROOT_STEPS = 200


class MixtureDistribution:
    """Predictive distributions ``p(y | x)`` of ``n`` rows, in the manner of ``scipy.stats``.

    Returned by :meth:`MixtureOfExpertsRegressor.predict_distribution`; not
    built by hand. Every method is vectorised over the rows.

    Wherever a method takes ``y`` (or ``q``), it is a scalar (the same value
    for every row), an array of shape ``(n,)`` (one per row), or of shape
    ``(n, m)`` (``m`` values per row); the result has that shape, with a
    scalar read as ``(n,)``.

    Attributes
    ----------
    weights : ndarray of shape (n, n_experts)
        Each row's gate probabilities after routing (0 for the experts a
        row is not routed to under ``top_k``).
    means : ndarray of shape (n, n_experts)
        Each expert's mean for each row (0 where the row is not routed to it).
    scales : ndarray of shape (n, n_experts)
        Each expert's standard deviation for each row (0 where not routed).
    """

    def __init__(self, expert_ids, route_weights, outputs, params, likelihood, n_experts):
        self._expert_ids = expert_ids  # (n, k): the numbers of each row's routed experts
        self._weights = route_weights  # (n, k): their gate weights, summing to one per row
        self._outputs = outputs  # (n, k): their outputs
        self._params = likelihood.gather_params(params, expert_ids)  # per route
        self._likelihood = likelihood
        self._n_experts = n_experts

    def __len__(self):
        return self._weights.shape[0]

    def _dense(self, values):
        return scatter_routes(self._expert_ids, values, self._n_experts, 0.0)

    @property
    def weights(self):
        return self._dense(self._weights)

    @property
    def means(self):
        return self._dense(self._likelihood.mean(self._outputs, self._params))

    @property
    def scales(self):
        return self._dense(np.sqrt(self._likelihood.variance(self._outputs, self._params)))

    # ------------------------------------------------------------------
    # Moments
    # ------------------------------------------------------------------

    def mean(self):
        """The mean of each row's distribution, shape ``(n,)``."""
        return np.einsum(
            "nk,nk->n", self._weights, self._likelihood.mean(self._outputs, self._params)
        )

    def var(self):
        """The variance of each row's distribution: the experts' own plus their spread."""
        means = self._likelihood.mean(self._outputs, self._params)
        second = self._likelihood.variance(self._outputs, self._params) + means**2
        mean = np.einsum("nk,nk->n", self._weights, means)
        return np.maximum(np.einsum("nk,nk->n", self._weights, second) - mean**2, 0.0)

    def std(self):
        """The standard deviation of each row's distribution, shape ``(n,)``."""
        return np.sqrt(self.var())

    # ------------------------------------------------------------------
    # Density and distribution function
    # ------------------------------------------------------------------

    def _per_row(self, values, name):
        """``values`` as an (n, m) array, and whether the caller gave one value per row."""
        values = np.asarray(values, dtype=np.float64)
        n = len(self)
        if values.ndim == 0:
            return np.full((n, 1), float(values)), True
        if values.shape[0] != n or values.ndim > 2:
            raise ValueError(
                f"{name} has shape {values.shape}; give a scalar, one value per row "
                f"(shape ({n},)) or several per row (shape ({n}, m))."
            )
        return values.reshape(n, -1), values.ndim == 1

    def logpdf(self, y):
        """Log-density of ``y`` under each row's distribution."""
        values, flat = self._per_row(y, "y")
        log_density = self._likelihood.logpdf(
            values[:, :, None], self._outputs[:, None, :], _expand(self._params)
        )
        with np.errstate(divide="ignore"):  # routes of weight 0 contribute nothing
            log_weights = np.log(self._weights)[:, None, :]
        result = logsumexp(log_density + log_weights, axis=2)
        return result[:, 0] if flat else result

    def pdf(self, y):
        """Density of ``y`` under each row's distribution."""
        return np.exp(self.logpdf(y))

    def _cdf(self, values):
        """Mixture CDF at an (n, m) array of values."""
        cdf = self._likelihood.cdf(
            values[:, :, None], self._outputs[:, None, :], _expand(self._params)
        )
        return np.einsum("nmk,nk->nm", cdf, self._weights)

    def cdf(self, y):
        """Probability that ``y`` is not exceeded, under each row's distribution."""
        values, flat = self._per_row(y, "y")
        result = self._cdf(values)
        return result[:, 0] if flat else result

    # ------------------------------------------------------------------
    # Quantiles and intervals
    # ------------------------------------------------------------------

    def ppf(self, q):
        """Quantiles: the ``y`` at which each row's CDF reaches ``q``.

        For a discrete family (Poisson), the smallest integer at which it
        reaches ``q``.

        Exact to the solver's precision (the CDF matches ``q`` to about
        1e-12): the quantile of a mixture lies between the smallest and the
        largest of its experts' quantiles at ``q``, and Newton's method on
        the mixture CDF runs inside that bracket, falling back to bisection
        whenever a step would leave it.
        """
        levels, flat = self._per_row(q, "q")
        if np.any((levels < 0) | (levels > 1)) or np.isnan(levels).any():
            raise ValueError("q must hold probabilities in [0, 1].")
        n, m = levels.shape
        result = np.empty((n, m))
        result[levels == 0] = -np.inf
        result[levels == 1] = np.inf
        inner = (levels > 0) & (levels < 1)
        rows, columns = np.nonzero(inner)
        if rows.size:
            result[rows, columns] = self._solve_quantiles(rows, levels[rows, columns])
        return result[:, 0] if flat else result

    def _solve_quantiles(self, rows, levels):
        """Quantiles of the mixtures of ``rows`` (repeated as needed) at ``levels``."""
        outputs, weights = self._outputs[rows], self._weights[rows]
        params = {name: value[rows] for name, value in self._params.items()}
        component = self._likelihood.ppf(levels[:, None], outputs, params)
        routed = weights > 0
        low = np.where(routed, component, np.inf).min(axis=1)
        high = np.where(routed, component, -np.inf).max(axis=1)
        if getattr(self._likelihood, "discrete", False):
            return self._solve_discrete(low, high, levels, outputs, weights, params)
        x = 0.5 * (low + high)
        active = np.flatnonzero(high > low)
        x[high <= low] = low[high <= low]  # every routed expert agrees
        if getattr(self._likelihood, "atom_at_zero", False):
            # A quantile inside the mass at 0 is 0 exactly, not a root of the CDF.
            zero = np.zeros((active.size, 1))
            sub = {name: value[active] for name, value in params.items()}
            at_zero = (
                np.einsum(
                    "nk,nk->n", self._likelihood.cdf(zero, outputs[active], sub), weights[active]
                )
                >= levels[active]
            )
            x[active[at_zero]] = 0.0
            active = active[~at_zero]
        for _ in range(_MAX_ROOT_STEPS):
            if active.size == 0:
                break
            xa = x[active]
            sub = {name: value[active] for name, value in params.items()}
            cdf = (
                np.einsum(
                    "nk,nk->n",
                    self._likelihood.cdf(xa[:, None], outputs[active], sub),
                    weights[active],
                )
                - levels[active]
            )
            density = np.einsum(
                "nk,nk->n",
                np.exp(self._likelihood.logpdf(xa[:, None], outputs[active], sub)),
                weights[active],
            )
            low[active] = np.where(cdf < 0, xa, low[active])
            high[active] = np.where(cdf > 0, xa, high[active])
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                step = xa - cdf / density  # a vanishing density: bisect instead
            inside = (step > low[active]) & (step < high[active]) & np.isfinite(step)
            x[active] = np.where(inside, step, 0.5 * (low[active] + high[active]))
            width = high[active] - low[active]
            done = (np.abs(cdf) <= 1e-13) | (width <= 1e-15 * (1.0 + np.abs(xa)))
            x[active[done]] = xa[done]
            active = active[~done]
        return x

    def _solve_discrete(self, low, high, levels, outputs, weights, params):
        """The smallest integer whose mixture CDF reaches ``levels``, by bisection.

        Below every expert's quantile the mixture's CDF is under ``q``, at
        the largest it is at least ``q``: bisect on the integers between.
        """
        low, high = low - 1, high.copy()
        while True:
            active = np.flatnonzero(high - low > 1)
            if active.size == 0:
                return high
            middle = np.floor(0.5 * (low[active] + high[active]))
            sub = {name: value[active] for name, value in params.items()}
            cdf = np.einsum(
                "nk,nk->n",
                self._likelihood.cdf(middle[:, None], outputs[active], sub),
                weights[active],
            )
            reached = cdf >= levels[active]
            high[active] = np.where(reached, middle, high[active])
            low[active] = np.where(reached, low[active], middle)

    def interval(self, confidence=0.9):
        """The central interval holding ``confidence`` of each row's probability.

        Parameters
        ----------
        confidence : float in (0, 1), default=0.9
            Probability between the bounds.

        Returns
        -------
        bounds : ndarray of shape (n, 2)
            Lower and upper bounds: the ``(1 - confidence) / 2`` and
            ``(1 + confidence) / 2`` quantiles.
        """
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {confidence!r}.")
        n = len(self)
        tails = np.tile([(1 - confidence) / 2, (1 + confidence) / 2], (n, 1))
        return self.ppf(tails)

    # ------------------------------------------------------------------
    # Sampling
    # ------------------------------------------------------------------

    def sample(self, n_draws=1, random_state=None):
        """Draws from each row's distribution.

        Parameters
        ----------
        n_draws : int, default=1
            Draws per row.
        random_state : int, RandomState instance or None, default=None
            Seeds the draws.

        Returns
        -------
        draws : ndarray of shape (n, n_draws)
            An expert is drawn by its gate weight, then a value from it.
        """
        rng = check_random_state(random_state)
        n = len(self)
        cumulative = np.cumsum(self._weights, axis=1)
        uniform = rng.uniform(size=(n, n_draws)) * cumulative[:, -1:]
        chosen = np.minimum(
            (uniform[:, :, None] > cumulative[:, None, :]).sum(axis=2),
            self._weights.shape[1] - 1,
        )
        outputs = np.take_along_axis(self._outputs, chosen, axis=1)
        params = {
            name: np.take_along_axis(value, chosen, axis=1) for name, value in self._params.items()
        }
        return self._likelihood.sample(outputs, params, rng)


def _expand(params):
    """Per-route parameters (n, k) broadcast against (n, m, k) values."""
    return {name: value[:, None, :] for name, value in params.items()}
