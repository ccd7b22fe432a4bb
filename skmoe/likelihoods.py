"""Expert likelihoods: how an expert's output scores a target.

A likelihood turns a fitted expert into per-row outputs (a mean, or class
probabilities), scores targets under those outputs, and re-estimates its own
parameters (a noise variance, say) in the M-step. The EM engine only talks to
this interface (:class:`BaseLikelihood`), so a family is one class.

Regression families (:class:`RegressionLikelihood`) also describe their
distribution (``mean``, ``variance``, ``logpdf``, ``cdf``, ``ppf``,
``sample``), from which :mod:`skmoe._distribution` builds the mixture's
predictive distribution.

Likelihoods are stateless: their parameters travel as a dict, so the same
object can score any EM start and be shipped to joblib workers cheaply.
"""

from abc import ABCMeta, abstractmethod

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import (
    digamma,
    gammainc,
    gammaincinv,
    gammaln,
    ndtr,
    ndtri,
    pdtr,
    polygamma,
    stdtr,
    stdtrit,
)
from scipy.stats import poisson

from ._kernels import e_step, gaussian_e_step, weighted_squared_residuals

# An expert's predicted mean of a positive family is floored here: a linear
# expert can predict 0 or less, where the family has no density.
_MIN_MEAN = 1e-10


def _weighted_variances(y, outputs, weights, floor, n_threads):
    """Each expert's weighted mean squared residual, at least ``floor``."""
    residual_sum = np.empty(outputs.shape[1])
    weighted_squared_residuals(y, outputs, weights, residual_sum, n_threads)
    mass = np.maximum(weights.sum(axis=0), np.finfo(np.float64).tiny)
    return np.maximum(residual_sum / mass, floor)


class BaseLikelihood(metaclass=ABCMeta):
    """What the EM engine needs from an expert likelihood.

    Required (abstract) methods, all on validated arrays:

    * ``expert_output(expert, X)``: a fitted expert's outputs on ``X``;
    * ``empty_outputs(n_samples, n_experts)``: a zero buffer for all experts' outputs;
    * ``can_train_on(y, weights)``: whether the targets of positive weight can
      train an expert (a classifier needs two classes);
    * ``fit_params(y, outputs, weights, n_threads)``: the M-step of the
      likelihood's own parameters, a dict of arrays of one value per expert;
    * ``e_step(y, outputs, params, gate_logits, n_threads)``: responsibilities
      (n, n_experts) and row log-likelihoods (n,);
    * ``residual(y, output)``: how far each target lies above one expert's
      output, for EM's starts.

    Optional: ``check_target(y)`` refuses targets the family cannot score;
    ``refit_scale(y, outputs, params)`` multiplies the responsibilities in
    the experts' refit weights (a latent-scale family's expected precisions),
    and ``fit_params`` then receives them as ``precision=``;
    ``n_parameters(n_experts)`` counts its free parameters (for BIC);
    ``batch_outputs(batch, experts, X)`` computes all experts' outputs through
    their batch class (``batch_predictions = True`` says it exists).
    """

    #: Whether ``batch_outputs`` can compute the outputs of batch experts.
    batch_predictions = False

    @abstractmethod
    def expert_output(self, expert, X):
        """A fitted expert's outputs on ``X``."""

    @abstractmethod
    def empty_outputs(self, n_samples, n_experts):
        """Buffer of expert outputs; rows an expert is not evaluated on stay 0."""

    @abstractmethod
    def can_train_on(self, y, weights):
        """Whether the targets of positive weight (two or more) can train an expert."""

    @abstractmethod
    def fit_params(self, y, outputs, weights, n_threads):
        """The likelihood's parameters given the experts' outputs and refit weights."""

    @abstractmethod
    def e_step(self, y, outputs, params, gate_logits, n_threads):
        """Responsibilities and row log-likelihoods."""

    @abstractmethod
    def residual(self, y, output):
        """How far each target lies above one expert's output (for EM's starts)."""

    def check_target(self, y):  # noqa: B027 (an optional hook: accept every target)
        """Refuse targets the family cannot score (a ValueError that says why)."""

    def n_parameters(self, n_experts):
        """Free parameters of the likelihood itself, for BIC and AIC."""
        return 0

    def refit_scale(self, y, outputs, params):
        """Per-row factors (n, n_experts) on the experts' refit weights; None: all 1."""
        return None

    def batch_outputs(self, batch, experts, X):
        """All experts' outputs from a batch fitter (see :mod:`skmoe._batch`)."""
        raise NotImplementedError(f"{type(self).__name__} has no batch outputs.")


_REQUIRED = ("expert_output", "empty_outputs", "can_train_on", "fit_params", "e_step", "residual")


def check_likelihood(likelihood):
    """Refuse an object that does not implement the likelihood interface."""
    if isinstance(likelihood, BaseLikelihood):
        return likelihood
    missing = [name for name in _REQUIRED if not callable(getattr(likelihood, name, None))]
    raise TypeError(
        f"likelihood must be 'gaussian', 'poisson', 'gamma', 'tweedie', 'student_t', 'auto' "
        f"or an instance of a subclass of "
        f"skmoe.likelihoods.BaseLikelihood; {type(likelihood).__name__} is neither"
        + (f" (it lacks {', '.join(missing)})" if missing else "")
        + "."
    )


class RegressionLikelihood(BaseLikelihood):
    """A family for a real target whose expert output is the expert's ``predict``, its mean.

    Subclasses give the family's log-density (``logpdf``) and the rest of its
    distribution; the E-step, the outputs and the starts' residuals are shared.
    """

    batch_predictions = True

    #: Whether the family's support is the integers (its ``ppf`` is then a step).
    discrete = False

    #: Whether the mean must be positive (outputs are floored at a tiny value).
    positive_mean = False

    def expert_output(self, expert, X):
        return self._floor(np.asarray(expert.predict(X), dtype=np.float64).reshape(X.shape[0]))

    def batch_outputs(self, batch, experts, X):
        return self._floor(batch._predict_many(experts, X))

    def _floor(self, outputs):
        return np.maximum(outputs, _MIN_MEAN) if self.positive_mean else outputs

    def empty_outputs(self, n_samples, n_experts):
        return np.zeros((n_samples, n_experts))

    def can_train_on(self, y, weights):
        """Any targets can train a regressor."""
        return True

    def residual(self, y, output):
        return y - output

    def e_step(self, y, outputs, params, gate_logits, n_threads):
        # Rows an expert is not routed to have a zero output and a -inf gate
        # logit: the floor keeps their log-density finite, the logit drops it.
        log_lik_k = self.logpdf(y[:, None], self._floor(outputs), params)
        n_samples, n_experts = outputs.shape
        resp = np.empty((n_samples, n_experts))
        log_lik = np.empty(n_samples)
        e_step(
            np.ascontiguousarray(gate_logits),
            np.ascontiguousarray(log_lik_k),
            resp,
            log_lik,
            n_threads,
        )
        return resp, log_lik

    def gather_params(self, params, expert_ids):
        """The parameters of each row's routed experts (``expert_ids``, (n, k) indices)."""
        return {name: value[expert_ids] for name, value in params.items()}

    def mean(self, outputs, params):
        return outputs

    @abstractmethod
    def variance(self, outputs, params):
        """Each expert's variance of ``y`` given its output."""

    @abstractmethod
    def logpdf(self, y, outputs, params):
        """Log-density (log-probability for a discrete family) of ``y``."""

    @abstractmethod
    def cdf(self, y, outputs, params):
        """Probability that ``y`` is not exceeded."""

    @abstractmethod
    def ppf(self, q, outputs, params):
        """Quantile function."""

    @abstractmethod
    def sample(self, outputs, params, random_state):
        """One draw per output."""


class GaussianLikelihood(RegressionLikelihood):
    """``y | x, expert k  ~  N(mu_k(x), s2_k)``; ``mu_k`` is the expert's ``predict``.

    Parameters
    ----------
    variance_floor : float
        Smallest allowed noise variance (absolute).  An expert that fits a few
        points exactly would otherwise drive its variance, and the likelihood,
        to infinity.
    """

    def __init__(self, variance_floor):
        self.variance_floor = variance_floor

    def n_parameters(self, n_experts):
        return n_experts  # a noise variance each

    def fit_params(self, y, outputs, weights, n_threads):
        """Weighted maximum-likelihood noise variances, floored.

        ``weights`` is zero wherever an expert's output was not computed.
        """
        return {
            "variance": _weighted_variances(y, outputs, weights, self.variance_floor, n_threads)
        }

    def e_step(self, y, outputs, params, gate_logits, n_threads):
        # The compiled kernel fuses the Gaussian density with the E-step.
        n_samples, n_experts = outputs.shape
        resp = np.empty((n_samples, n_experts))
        log_lik = np.empty(n_samples)
        gaussian_e_step(y, outputs, params["variance"], gate_logits, resp, log_lik, n_threads)
        return resp, log_lik

    def variance(self, outputs, params):
        return np.broadcast_to(params["variance"], np.shape(outputs))

    def logpdf(self, y, outputs, params):
        variance = params["variance"]
        return -0.5 * (np.log(2 * np.pi * variance) + (y - outputs) ** 2 / variance)

    def cdf(self, y, outputs, params):
        return ndtr((y - outputs) / np.sqrt(params["variance"]))

    def ppf(self, q, outputs, params):
        return outputs + np.sqrt(params["variance"]) * ndtri(q)

    def sample(self, outputs, params, random_state):
        return outputs + np.sqrt(params["variance"]) * random_state.standard_normal(
            np.shape(outputs)
        )


class StudentTLikelihood(RegressionLikelihood):
    """``y | x, expert k  ~  t_df(mu_k(x), s2_k)``: heavy tails, robust to gross outliers.

    The classical latent-scale EM (Peel & McLachlan 2000): a row ``i`` of
    expert ``k`` has a hidden precision ``u`` whose expectation,
    ``(df + 1) / (df + d2)`` with ``d2 = (y - mu_k)^2 / s2_k``, is small for
    an outlier. Each expert is refitted with the weights ``responsibility *
    u`` (so any expert that takes ``sample_weight`` works unchanged), and its
    scale ``s2_k`` is the ``u``-weighted mean squared residual (the
    parameter-expanded update of Kent, Tyler & Vardi 1994). Estimated
    degrees of freedom are then each expert's maximum of the
    responsibility-weighted t log-likelihood at the new means and scales
    (the ECME step of Liu & Rubin 1995, which converges faster than ECM's).

    Parameters
    ----------
    df : float or None, default=4.0
        Degrees of freedom: fixed, or ``None`` to estimate one per expert by
        EM (starting at 4, within ``[0.5, max_df]``). Smaller is
        heavier-tailed and more robust; as it grows the family tends to the
        Gaussian.
    variance_floor : float, default=0.0
        Smallest allowed squared scale (absolute).
    max_df : float, default=200.0
        Largest estimated df: beyond it the t is a Gaussian for any data.
    """

    # Where estimated degrees of freedom start, and their smallest value.
    _START_DF = 4.0
    _MIN_DF = 0.5

    def __init__(self, df=4.0, variance_floor=0.0, max_df=200.0):
        self.df = df
        self.variance_floor = variance_floor
        self.max_df = max_df

    def n_parameters(self, n_experts):
        # A scale each, and a df each when it is estimated.
        return n_experts if self.df is not None else 2 * n_experts

    def _df(self, params):
        return params["df"] if self.df is None else self.df

    def refit_scale(self, y, outputs, params):
        df = self._df(params)
        squared = (y[:, None] - outputs) ** 2 / params["variance"]
        return (df + 1.0) / (df + squared)

    def fit_params(self, y, outputs, weights, n_threads, precision=None):
        """Squared scales (the Gaussian update, with weights that hold the expected
        precisions), then estimated degrees of freedom.

        ``precision`` is what ``refit_scale`` returned for these weights (None
        at a start, when they hold no precision yet).
        """
        variance = _weighted_variances(y, outputs, weights, self.variance_floor, n_threads)
        params = {"variance": variance}
        if self.df is not None:
            return params
        if precision is None:
            params["df"] = np.full(outputs.shape[1], self._START_DF)
            return params
        # The rows' mixing weights without their precisions.
        mixing = np.divide(weights, precision, out=np.zeros_like(weights), where=precision > 0)
        squared = (y[:, None] - outputs) ** 2 / variance
        params["df"] = np.array(
            [
                self._best_df(squared[:, k], mixing[:, k], variance[k])
                for k in range(outputs.shape[1])
            ]
        )
        return params

    def _best_df(self, squared, mixing, variance):
        """The df maximising ``sum_i mixing_i log t_df(y_i)``, by a bounded search on log df."""
        rows = mixing > 0
        squared, mixing = squared[rows], mixing[rows]
        total = mixing.sum()
        if total <= 0:
            return self._START_DF

        def loss(log_df):
            df = np.exp(log_df)
            mean_log_kernel = mixing @ np.log1p(squared / df) / total
            return -(
                gammaln((df + 1) / 2)
                - gammaln(df / 2)
                - 0.5 * np.log(df)
                - (df + 1) / 2 * mean_log_kernel
            )

        bounds = (np.log(self._MIN_DF), np.log(self.max_df))
        result = minimize_scalar(loss, bounds=bounds, method="bounded", options={"xatol": 1e-6})
        return float(np.exp(result.x))

    def variance(self, outputs, params):
        df = self._df(params)
        with np.errstate(divide="ignore", invalid="ignore"):
            spread = np.where(df > 2, params["variance"] * df / (df - 2), np.inf)
        return np.broadcast_to(spread, np.shape(outputs))

    def logpdf(self, y, outputs, params):
        df, variance = self._df(params), params["variance"]
        return (
            gammaln((df + 1) / 2)
            - gammaln(df / 2)
            - 0.5 * np.log(df * np.pi * variance)
            - (df + 1) / 2 * np.log1p((y - outputs) ** 2 / (df * variance))
        )

    def cdf(self, y, outputs, params):
        return stdtr(self._df(params), (y - outputs) / np.sqrt(params["variance"]))

    def ppf(self, q, outputs, params):
        return outputs + np.sqrt(params["variance"]) * stdtrit(self._df(params), q)

    def sample(self, outputs, params, random_state):
        df = np.broadcast_to(self._df(params), np.shape(outputs))
        draws = random_state.standard_t(df)
        return outputs + np.sqrt(params["variance"]) * draws


class PoissonLikelihood(RegressionLikelihood):
    """``y | x, expert k  ~  Poisson(e mu_k(x))``: counts over an exposure ``e``.

    ``mu_k`` is the expert's ``predict``, a rate per unit of exposure. Take
    experts that predict a positive mean, such as
    :class:`~sklearn.linear_model.PoissonRegressor` (log link) or
    ``HistGradientBoostingRegressor(loss="poisson")``; a prediction of 0 or
    less is floored at 1e-10. Targets must be non-negative (counts; other
    non-negative values are scored by the same formula, as a quasi-likelihood).

    The target is the counts (exposure 1), or an (n, 2) array of counts and
    exposures (hours observed, policy years: the offset ``log e`` of a GLM).
    With an exposure the experts are refitted on the rates ``y / e`` with
    their weights multiplied by ``e`` (``refit_scale``), which for a
    Poisson GLM is the same fit as the offset; the responsibilities and the
    log-likelihood are those of the counts.
    """

    discrete = True
    positive_mean = True

    @staticmethod
    def _counts(y):
        """Counts, and exposures (None for a target of counts only)."""
        return (y[:, 0], y[:, 1]) if y.ndim == 2 else (y, None)

    def e_step(self, y, outputs, params, gate_logits, n_threads):
        counts, exposure = self._counts(y)
        if exposure is not None:
            outputs = self._floor(outputs) * exposure[:, None]
        return super().e_step(counts, outputs, params, gate_logits, n_threads)

    def residual(self, y, output):
        counts, exposure = self._counts(y)
        return (counts if exposure is None else counts / exposure) - output

    def refit_scale(self, y, outputs, params):
        return None if y.ndim == 1 else y[:, 1:2]  # each row's exposure

    def check_target(self, y):
        if np.any(y < 0):
            raise ValueError(
                f"likelihood='poisson' needs non-negative targets (counts), but y has "
                f"{np.count_nonzero(y < 0)} negative values (the smallest is {y.min():.6g}). "
                "Use likelihood='gaussian' for signed targets."
            )

    def fit_params(self, y, outputs, weights, n_threads, precision=None):
        return {}  # the variance is the mean

    def variance(self, outputs, params):
        return outputs

    def logpdf(self, y, outputs, params):
        with np.errstate(divide="ignore", invalid="ignore"):
            log_pmf = y * np.log(outputs) - outputs - gammaln(y + 1)
        return np.where(y < 0, -np.inf, log_pmf)

    def cdf(self, y, outputs, params):
        return np.where(y < 0, 0.0, pdtr(np.floor(np.maximum(y, 0)), outputs))

    def ppf(self, q, outputs, params):
        return poisson.ppf(q, outputs)

    def sample(self, outputs, params, random_state):
        return random_state.poisson(outputs).astype(np.float64)


class GammaLikelihood(RegressionLikelihood):
    """``y | x, expert k  ~  Gamma(mean mu_k(x), shape a_k)``: positive, right-skewed targets.

    ``mu_k`` is the expert's ``predict`` (take experts with a positive mean,
    such as :class:`~sklearn.linear_model.GammaRegressor`; a prediction of 0
    or less is floored at 1e-10). Each expert's shape ``a_k`` (the inverse of
    its dispersion: the variance is ``mu^2 / a``) is its weighted maximum
    likelihood estimate, by Newton's method. Targets must be positive.

    Parameters
    ----------
    max_shape : float, default=1e8
        Upper bound on the shape: an expert that fits its rows exactly would
        otherwise drive it, and the likelihood, to infinity.
    """

    positive_mean = True

    def __init__(self, max_shape=1e8):
        self.max_shape = max_shape

    def check_target(self, y):
        if np.any(y <= 0):
            raise ValueError(
                f"likelihood='gamma' needs positive targets, but y has "
                f"{np.count_nonzero(y <= 0)} values <= 0 (the smallest is {y.min():.6g}). "
                "Use likelihood='poisson' for counts with zeros, or 'gaussian'."
            )

    def n_parameters(self, n_experts):
        return n_experts  # a shape each

    def fit_params(self, y, outputs, weights, n_threads):
        """Each expert's shape: the root of ``log a - digamma(a) = mean deviance / 2``."""
        ratio = y[:, None] / self._floor(outputs)
        with np.errstate(divide="ignore", invalid="ignore"):
            half_deviance = np.where(weights > 0, ratio - np.log(ratio) - 1.0, 0.0)
        mass = np.maximum(weights.sum(axis=0), np.finfo(np.float64).tiny)
        target = np.maximum((weights * half_deviance).sum(axis=0) / mass, 1e-300)
        # Minka's closed-form start, then Newton on log a - digamma(a) = target.
        shape = (3 - target + np.sqrt((target - 3) ** 2 + 24 * target)) / (12 * target)
        shape = np.minimum(shape, self.max_shape)
        for _ in range(20):
            gap = np.log(shape) - digamma(shape) - target
            slope = 1.0 / shape - polygamma(1, shape)
            shape = np.clip(shape - gap / slope, 1e-8, self.max_shape)
        return {"shape": shape}

    def variance(self, outputs, params):
        return outputs**2 / params["shape"]

    def logpdf(self, y, outputs, params):
        shape = params["shape"]
        rate = shape / outputs
        with np.errstate(divide="ignore", invalid="ignore"):
            log_pdf = shape * np.log(rate) + (shape - 1) * np.log(y) - rate * y - gammaln(shape)
        return np.where(y > 0, log_pdf, -np.inf)

    def cdf(self, y, outputs, params):
        shape = params["shape"]
        return np.where(y > 0, gammainc(shape, np.maximum(y, 0) * shape / outputs), 0.0)

    def ppf(self, q, outputs, params):
        shape = params["shape"]
        return gammaincinv(shape, q) * outputs / shape

    def sample(self, outputs, params, random_state):
        shape = params["shape"]
        return random_state.gamma(shape, outputs / shape)


class TweedieLikelihood(RegressionLikelihood):
    """``y | x, expert k  ~  Tweedie_p(mu_k(x), phi_k)``, ``1 < p < 2``: non-negative, with zeros.

    The compound Poisson-gamma distribution of insurance claims and rainfall:
    ``N ~ Poisson(lam)`` jumps, each ``Gamma(a, theta)``, summed, so ``y`` is
    exactly 0 with probability ``exp(-lam)`` and continuous above; its mean is
    ``mu_k``, the expert's ``predict`` (take experts with a positive mean
    such as ``TweedieRegressor(power=p, link="log")``; a prediction of 0 or
    less is floored at 1e-10), and its variance ``phi_k mu^p``. The
    density has no closed form: it is summed over the number of jumps
    (the series of Dunn & Smyth 2005), in the log domain, over the terms
    that matter. Each expert's dispersion ``phi_k`` is its weighted maximum
    likelihood estimate, by a bounded search.

    Parameters
    ----------
    power : float, default=1.5
        The Tweedie power ``p``, strictly between 1 (Poisson) and 2 (gamma);
        given, not estimated.
    """

    def __init__(self, power=1.5):
        self.power = power

    def _check_power(self):
        if not 1 < self.power < 2:
            raise ValueError(
                f"TweedieLikelihood needs 1 < power < 2 (compound Poisson-gamma), got "
                f"power={self.power}. Use likelihood='poisson' for power 1 and 'gamma' for 2."
            )

    positive_mean = True

    #: Whether ``y`` has a probability mass at 0 (quantiles below it are 0).
    atom_at_zero = True

    def check_target(self, y):
        self._check_power()
        if np.any(y < 0):
            raise ValueError(
                f"likelihood='tweedie' needs non-negative targets, but y has "
                f"{np.count_nonzero(y < 0)} negative values (the smallest is {y.min():.6g}). "
                "Use likelihood='gaussian' for signed targets."
            )

    def n_parameters(self, n_experts):
        return n_experts  # a dispersion each; the power is given

    def _compound(self, outputs, dispersion):
        """Poisson rate of the jumps, and each jump's gamma shape and scale."""
        p = self.power
        rate = outputs ** (2 - p) / (dispersion * (2 - p))
        shape = (2 - p) / (p - 1)
        scale = dispersion * (p - 1) * outputs ** (p - 1)
        return rate, shape, scale

    def fit_params(self, y, outputs, weights, n_threads):
        """Each expert's dispersion: the maximum of its weighted log-likelihood."""
        dispersion = np.empty(outputs.shape[1])
        for k in range(outputs.shape[1]):
            rows = weights[:, k] > 0
            dispersion[k] = self._best_dispersion(
                y[rows], self._floor(outputs[rows, k]), weights[rows, k]
            )
        return {"dispersion": dispersion}

    def _best_dispersion(self, y, mu, weights):
        """Newton's method on ``log phi``, from the moment (Pearson) estimate.

        In ``log phi`` the density is ``exp(-(lam + y / theta))`` times a sum
        over the jumps ``j`` whose terms scale like ``phi^(-j (1 + a))``, so
        the log-likelihood's derivatives are moments of the posterior of the
        number of jumps: no numerical differentiation, a few steps.
        """
        total = weights.sum()
        if total <= 0:
            return 1.0
        log_phi = np.log(max(weights @ ((y - mu) ** 2 / mu**self.power) / total, 1e-12))
        value, slope, curvature = self._dispersion_derivatives(y, mu, weights, log_phi)
        for _ in range(50):
            step = -slope / curvature if curvature < 0 else np.sign(slope)
            step = np.clip(step, -2.0, 2.0)
            while True:  # backtrack until the weighted log-likelihood does not fall
                new = self._dispersion_derivatives(y, mu, weights, log_phi + step)
                if new[0] >= value or abs(step) < 1e-12:
                    break
                step /= 2
            log_phi += step
            value, slope, curvature = new
            if abs(step) < 1e-10:
                break
        return float(np.exp(log_phi))

    def _dispersion_derivatives(self, y, mu, weights, log_phi):
        """Mean weighted log-likelihood and its first two derivatives in ``log phi``."""
        dispersion = np.full(mu.shape, np.exp(log_phi))
        log_pdf, mean_jumps, var_jumps = self._series(y, mu, dispersion)
        rate, shape, scale = self._compound(mu, dispersion)
        exponent = rate + y / scale  # the terms' factor exp(-(lam + y / theta))
        total = weights.sum()
        value = weights @ log_pdf / total
        slope = weights @ (exponent - (1 + shape) * mean_jumps) / total
        curvature = weights @ ((1 + shape) ** 2 * var_jumps - exponent) / total
        return value, slope, curvature

    def variance(self, outputs, params):
        return params["dispersion"] * outputs**self.power

    def logpdf(self, y, outputs, params):
        y, outputs, dispersion = np.broadcast_arrays(y, outputs, params["dispersion"])
        return self._series(y.ravel(), outputs.ravel(), dispersion.ravel())[0].reshape(y.shape)

    def _series(self, y, mu, dispersion):
        """Log-density of flat arrays, with the posterior mean and variance of the jumps.

        ``-lam`` at 0 (no jump); above, the log of the sum over ``j >= 1``
        jumps of ``Poisson(j; lam) Gamma(y; j a, theta)``.
        """
        rate, shape, scale = self._compound(mu, dispersion)
        log_pdf = np.where(y == 0, -rate, -np.inf)
        mean_jumps, var_jumps = np.zeros(y.shape), np.zeros(y.shape)
        positive = np.flatnonzero(y > 0)
        # The terms peak near j = y^(2-p) / (phi (2-p)) jumps and fall off
        # like a Poisson's around it, so a window of some standard deviations
        # holds every term that matters. Rows are taken in order of their
        # peak, so that each chunk's window is no wider than its rows need.
        peak = y[positive] ** (2 - self.power) / (dispersion[positive] * (2 - self.power))
        order = np.argsort(peak, kind="stable")
        for part in np.array_split(order, max(1, order.size // 2048)):
            if part.size == 0:
                continue
            rows = positive[part]
            jumps = _jump_window(peak[part])
            # The terms' factors in j alone, once per distinct j of the chunk.
            lowest = int(jumps[0, 0]) if jumps.shape[0] == 1 else int(jumps[:, 0].min())
            span = np.arange(lowest, int(jumps.max()) + 1, dtype=np.float64)
            in_j = -gammaln(span + 1) - gammaln(span * shape)
            yc, rc, sc = y[rows, None], rate[rows, None], scale[rows, None]
            log_terms = (
                jumps * (np.log(rc) + shape * np.log(yc / sc))
                + in_j[(jumps - lowest).astype(np.intp)]
            )
            log_terms += -rc - np.log(yc) - yc / sc
            top = log_terms.max(axis=1, keepdims=True)
            posterior = np.exp(log_terms - top)
            total = posterior.sum(axis=1, keepdims=True)
            posterior /= total
            log_pdf[rows] = (top + np.log(total))[:, 0]
            mean_jumps[rows] = np.einsum("ij,ij->i", posterior, jumps)
            var_jumps[rows] = np.einsum("ij,ij->i", posterior, jumps**2) - mean_jumps[rows] ** 2
        return log_pdf, mean_jumps, var_jumps

    def cdf(self, y, outputs, params):
        y, outputs, dispersion = np.broadcast_arrays(y, outputs, params["dispersion"])
        flat_y, flat_mu = y.ravel(), outputs.ravel()
        rate, shape, scale = self._compound(flat_mu, dispersion.ravel())
        result = np.where(flat_y >= 0, np.exp(-rate), 0.0)
        positive = np.flatnonzero(flat_y > 0)
        if positive.size:
            # Mass of j >= 1 jumps whose gamma sum stays below y.
            jumps = _jump_window(rate[positive])
            mass = poisson.pmf(jumps, rate[positive, None]) * gammainc(
                jumps * shape, flat_y[positive, None] / scale[positive, None]
            )
            result[positive] += mass.sum(axis=1)
        return np.minimum(result, 1.0).reshape(y.shape)

    def ppf(self, q, outputs, params):
        """Quantiles: 0 up to the atom's mass, then the root of the CDF by bisection."""
        q, outputs, dispersion = np.broadcast_arrays(q, outputs, params["dispersion"])
        flat_q, flat_mu, flat_phi = q.ravel(), outputs.ravel(), dispersion.ravel()
        spread = np.sqrt(flat_phi * flat_mu**self.power)
        low, high = np.zeros(flat_q.shape), flat_mu + 10 * spread + 1.0
        above = self.cdf(np.zeros(flat_q.shape), flat_mu, {"dispersion": flat_phi}) < flat_q
        for _ in range(200):
            active = np.flatnonzero(above & (high - low > 1e-13 * (1 + high)))
            if active.size == 0:
                break
            middle = 0.5 * (low[active] + high[active])
            reached = (
                self.cdf(middle, flat_mu[active], {"dispersion": flat_phi[active]})
                >= (flat_q[active])
            )
            high[active] = np.where(reached, middle, high[active])
            low[active] = np.where(reached, low[active], middle)
        result = np.where(above, high, 0.0)
        result[flat_q >= 1] = np.inf
        return result.reshape(q.shape)

    def sample(self, outputs, params, random_state):
        rate, shape, scale = self._compound(outputs, params["dispersion"])
        jumps = random_state.poisson(rate)
        draws = random_state.gamma(np.maximum(jumps, 1) * shape, scale)
        return np.where(jumps > 0, draws, 0.0)


def _jump_window(centre):
    """Jump counts ``j >= 1`` around each ``centre`` (a Poisson-like spread), (n, width)."""
    half = np.ceil(8 * np.sqrt(centre) + 10)
    first = np.maximum(1.0, np.floor(centre - half))
    width = int(np.max(np.ceil(centre + half) - first)) + 1
    return first[:, None] + np.arange(width)


class CategoricalLikelihood(BaseLikelihood):
    """``y | x, expert k  ~  Categorical(p_k(x))``; ``p_k`` is ``predict_proba``.

    Parameters
    ----------
    classes : ndarray of shape (n_classes,)
        All classes, sorted.  An expert's ``predict_proba`` columns are
        aligned to them; classes an expert never saw get probability zero in
        its output and ``min_proba`` when scoring.
    min_proba : float, default=1e-10
        Floor on a class probability when scoring, so that one confident
        expert cannot make a row's log-likelihood ``-inf``.
    """

    batch_predictions = True

    def __init__(self, classes, min_proba=1e-10):
        self.classes = classes
        self.min_proba = min_proba

    def expert_output(self, expert, X):
        proba = np.zeros((X.shape[0], self.classes.shape[0]))
        columns = np.searchsorted(self.classes, expert.classes_)
        proba[:, columns] = expert.predict_proba(X)
        return proba

    def empty_outputs(self, n_samples, n_experts):
        return np.zeros((n_samples, n_experts, self.classes.shape[0]))

    def can_train_on(self, y, weights):
        """Whether the targets of positive weight (two or more) can train an expert.

        They must hold two classes: most classifiers refuse to fit on one.
        """
        present = y[weights > 0]
        return present.size >= 2 and bool(np.any(present != present[0]))

    def residual(self, y, output):
        """Each target's log-probability under one expert (for EM's starts)."""
        proba = output[np.arange(y.shape[0]), y]
        return np.log(np.maximum(proba, self.min_proba))

    def batch_outputs(self, batch, experts, X):
        proba = batch._predict_proba_many(experts, X)
        if all(np.array_equal(expert.classes_, self.classes) for expert in experts):
            return proba
        # Experts fitted on rows that lack a class (a held-out split) know fewer.
        aligned = self.empty_outputs(X.shape[0], len(experts))
        for k, expert in enumerate(experts):
            aligned[:, k, np.searchsorted(self.classes, expert.classes_)] = proba[:, k]
        return aligned

    def fit_params(self, y, outputs, weights, n_threads):
        return {}

    def e_step(self, y, outputs, params, gate_logits, n_threads):
        """``y`` holds class indices into ``classes``."""
        n_samples, n_experts = gate_logits.shape
        proba_of_y = outputs[np.arange(n_samples), :, y]
        log_lik_k = np.log(np.maximum(proba_of_y, self.min_proba))
        resp = np.empty((n_samples, n_experts))
        log_lik = np.empty(n_samples)
        e_step(gate_logits, np.ascontiguousarray(log_lik_k), resp, log_lik, n_threads)
        return resp, log_lik
