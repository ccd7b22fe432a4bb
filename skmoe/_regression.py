"""Mixture of experts for regression: experts around any regressor, with a noise family."""

from numbers import Real

import numpy as np
from sklearn.base import RegressorMixin, _fit_context
from sklearn.linear_model import GammaRegressor, PoissonRegressor, TweedieRegressor
from sklearn.metrics import r2_score
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_array, check_is_fitted

from ._base import BaseMixtureOfExperts, _blockwise
from ._distribution import MixtureDistribution
from ._docstrings import fill
from ._online import check_partial_fit
from ._warnings import warn
from .experts import WeightedLeastSquares
from .likelihoods import (
    BaseLikelihood,
    GammaLikelihood,
    GaussianLikelihood,
    PoissonLikelihood,
    StudentTLikelihood,
    TweedieLikelihood,
    check_likelihood,
)


class MixtureOfExpertsRegressor(RegressorMixin, BaseMixtureOfExperts):
    """Mixture of experts regressor trained by EM.

    ``p(y | x) = sum_k g_k(x) f(y; mu_k(x), theta_k)``: a gate ``g`` chooses
    between experts, each any scikit-learn regressor ``mu_k`` (the mean of
    ``y``) with its own parameters ``theta_k`` of the family ``f`` (by
    default Gaussian with a noise variance ``s2_k``; see ``likelihood``). EM
    alternates responsibilities (compiled E-step) with responsibility-weighted
    refits of the experts and the gate.

    Parameters
    ----------
    n_experts : int, default=2
        Number of experts.

    estimator : regressor or list of (str, regressor), default=None
        The expert, cloned once per expert; ``None`` means
        ``WeightedLeastSquares()``, unpenalised least squares (the model of
        ``LinearRegression()``, as in classical mixtures of regressions)
        fitted without copying the data (see :mod:`skmoe.experts`). A list
        of ``(name, estimator)`` pairs gives one (possibly different) expert
        each, whose parameters are reachable as ``<name>__<param>``. Experts
        must accept ``sample_weight`` in ``fit`` (a ``Pipeline``: its final
        step), since EM weights each sample by its responsibility; others are
        refused with a ``TypeError``.

    %(shared_parameters)s

    noise_variance_floor : float, default=1e-6
        Lower bound on each expert's noise variance, relative to the weighted
        variance of ``y``; it stops an expert that fits a few points exactly
        from making the likelihood infinite (Gaussian likelihood).

    likelihood : {"gaussian", "poisson", "gamma", "tweedie", "student_t", "auto"} or \
BaseLikelihood, default="gaussian"
        The family of ``y`` around each expert's prediction, its mean:
        ``"gaussian"``, a noise variance per expert; ``"poisson"``, counts
        (non-negative targets); ``"gamma"``, positive right-skewed targets,
        with a shape per expert; ``"tweedie"``, non-negative targets with
        exact zeros (compound Poisson-gamma, a dispersion per expert; the
        power of the experts' ``TweedieRegressor`` if they declare one in
        (1, 2), else 1.5; ``TweedieLikelihood(power=...)`` to give it);
        ``"student_t"``, heavy tails (4 degrees of freedom;
        ``StudentTLikelihood(df=...)`` for others, ``df=None`` to estimate
        them), robust to gross outliers, a scale per expert; ``"auto"``, the
        family the experts' loss declares (``PoissonRegressor``,
        ``GammaRegressor``, ``TweedieRegressor`` by its power,
        ``HistGradientBoostingRegressor(loss="poisson" or "gamma")``; a
        pipeline's final step), else Gaussian; or an instance of a subclass
        of :class:`skmoe.likelihoods.BaseLikelihood`. With ``estimator=None``
        the experts match the family: ``WeightedLeastSquares()``, or a
        log-link GLM with a negligible penalty (``alpha=1e-8``). Targets the
        family cannot score are refused before any fitting.

    Attributes
    ----------
    %(shared_attributes)s

    noise_variance_ : ndarray of shape (n_experts,)
        Each expert's noise variance (Gaussian likelihood).

    likelihood_params_ : dict of ndarray
        The likelihood's fitted parameters, one value per expert:
        ``{"variance": ...}`` (Gaussian; Student-t's squared scales, with
        ``"df"`` when estimated), ``{"shape": ...}`` (gamma),
        ``{"dispersion": ...}`` (Tweedie), ``{}`` (Poisson).

    See Also
    --------
    MixtureOfExpertsClassifier : The same model for classification.
    sklearn.mixture.GaussianMixture : Unsupervised mixtures fitted by EM.

    Notes
    -----
    EM is exact (the log-likelihood never decreases) when the experts' refits
    are weighted maximum-likelihood steps, as for ``LinearRegression``, and
    the gate is unpenalised (``SoftmaxGate(C=np.inf)``; with the default
    weak penalty, the penalised log-likelihood never decreases); with
    penalised or non-parametric experts it is a well-behaved heuristic.

    References
    ----------
    Jacobs, Jordan, Nowlan & Hinton, "Adaptive mixtures of local experts",
    Neural Computation 3 (1991). Jordan & Jacobs, "Hierarchical mixtures of
    experts and the EM algorithm", Neural Computation 6 (1994).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LinearRegression
    >>> from skmoe import MixtureOfExpertsRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(-3, 3, size=(400, 1))
    >>> y = np.where(X[:, 0] < 0, -2 * X[:, 0], 3 * X[:, 0]) + 0.1 * rng.randn(400)
    >>> moe = MixtureOfExpertsRegressor(2, estimator=LinearRegression(), random_state=0)
    >>> moe.fit(X, y).score(X, y) > 0.99
    True
    """

    _parameter_constraints: dict = {
        **BaseMixtureOfExperts._parameter_constraints,
        "noise_variance_floor": [Interval(Real, 0, None, closed="neither")],
        "likelihood": [
            StrOptions({"gaussian", "poisson", "gamma", "tweedie", "student_t", "auto"}),
            BaseLikelihood,
        ],
    }
    _y_numeric = True
    _expert_method = "predict"

    def __init__(
        self,
        n_experts=2,
        *,
        estimator=None,
        gate="softmax",
        gate_features=None,
        expert_features=None,
        init="auto",
        n_init=1,
        max_iter=100,
        tol=1e-4,
        accelerate=True,
        random_state=None,
        n_jobs=None,
        verbose=0,
        warm_start=False,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        top_k=None,
        min_responsibility=1e-3,
        min_expert_share=0.0,
        noise_variance_floor=1e-6,
        likelihood="gaussian",
    ):
        super().__init__(
            n_experts,
            estimator=estimator,
            gate=gate,
            gate_features=gate_features,
            expert_features=expert_features,
            init=init,
            n_init=n_init,
            max_iter=max_iter,
            tol=tol,
            accelerate=accelerate,
            random_state=random_state,
            n_jobs=n_jobs,
            verbose=verbose,
            warm_start=warm_start,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            top_k=top_k,
            min_responsibility=min_responsibility,
            min_expert_share=min_expert_share,
        )
        self.noise_variance_floor = noise_variance_floor
        self.likelihood = likelihood

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None, exposure=None):
        """Fit the mixture of experts by EM.

        A fit is all or nothing: if it raises (or is interrupted), the
        estimator keeps the fitted state it had before, or stays unfitted.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Training data. Missing values, sparse matrices and pandas
            categorical columns reach each expert as they are, if it takes
            them; the gate gets a numeric view (see the user guide).
        y : array-like of shape (n_samples,)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; EM maximises the weighted log-likelihood.
        exposure : array-like of shape (n_samples,), default=None
            With ``likelihood="poisson"``: each row's positive exposure ``e``
            (time at risk, area, policy years), so that ``y ~ Poisson(e
            mu(x))`` and the experts model the rate ``mu`` (a GLM's offset
            ``log e``). Pass the same ``exposure`` to ``predict`` for counts,
            or leave it out there for rates.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit_all_or_nothing(X, y, sample_weight, exposure=exposure)

    @available_if(check_partial_fit)
    def partial_fit(self, X, y, sample_weight=None):
        """Update the mixture with one chunk of rows, by stepwise online EM.

        For data that arrive in chunks or do not fit in memory: each call
        runs an E-step on the chunk and moves the model's running
        statistics towards the chunk's (see :mod:`skmoe._online` for the
        method, its step sizes and the experts and gates it supports). The
        first call starts the model from that chunk.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            A chunk of training data.
        y : array-like of shape (n_samples,)
            Its targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights.

        Returns
        -------
        self : object
            The updated estimator.
        """
        return self._partial_fit(X, y, sample_weight, classes=None)

    def _default_expert(self):
        # Unpenalised in effect, as classical mixtures of GLMs: alpha=1e-8 only
        # keeps Newton's Hessian invertible where an expert's rows leave a
        # column constant (measured on randhie: alpha=0 fell back to lbfgs
        # with warnings, for the same log-likelihood). Newton's method is
        # blind to the features' scales.
        if self.likelihood == "poisson":
            return PoissonRegressor(alpha=1e-8, solver="newton-cholesky")
        if self.likelihood == "gamma":
            return GammaRegressor(alpha=1e-8, solver="newton-cholesky")
        if self.likelihood == "tweedie":
            return TweedieRegressor(
                power=_TWEEDIE_POWER, link="log", alpha=1e-8, solver="newton-cholesky"
            )
        return WeightedLeastSquares()

    def _prepare_target(self, y, sample_weight, exposure=None):
        y = np.ascontiguousarray(y, dtype=np.float64)
        family, power = self.likelihood, None
        if family in ("auto", "tweedie"):
            declared, power = _declared_family(self.estimator)
            family = declared if family == "auto" else "tweedie"
        if family == "gaussian":
            likelihood = GaussianLikelihood(self._variance_floor(y, sample_weight))
        elif family == "poisson":
            likelihood = PoissonLikelihood()
        elif family == "gamma":
            likelihood = GammaLikelihood()
        elif family == "tweedie":
            likelihood = TweedieLikelihood(_TWEEDIE_POWER if power is None else power)
        elif family == "student_t":
            likelihood = StudentTLikelihood(variance_floor=self._variance_floor(y, sample_weight))
        else:
            likelihood = check_likelihood(self.likelihood)
        likelihood.check_target(y)
        # Scoring such a model without its exposure is most likely a mistake (_warn_without).
        self._fitted_with_exposure = exposure is not None
        if exposure is None:
            return y, y, likelihood
        exposure = self._check_exposure(exposure, y.shape[0], likelihood)
        # The experts fit rates; the likelihood scores counts over exposures.
        return y / exposure, np.column_stack([y, exposure]), likelihood

    @staticmethod
    def _check_exposure(exposure, n_samples, likelihood):
        if not isinstance(likelihood, PoissonLikelihood):
            raise ValueError(
                f"exposure is for likelihood='poisson' (counts over an exposure); this model's "
                f"likelihood is {type(likelihood).__name__}. Leave exposure out, or use "
                "likelihood='poisson'."
            )
        exposure = check_array(
            exposure, ensure_2d=False, dtype=np.float64, input_name="exposure"
        ).reshape(-1)
        if exposure.shape[0] != n_samples:
            raise ValueError(f"exposure has {exposure.shape[0]} values but y has {n_samples}.")
        if not np.all(exposure > 0):
            raise ValueError(
                f"exposure must be positive, but it has {np.count_nonzero(~(exposure > 0))} "
                "values <= 0; drop those rows (they carry no information)."
            )
        return exposure

    def _warn_without(self, exposure, method):
        """Warn when a model fitted with an exposure scores counts without one.

        ``y`` is then compared with the mixture at exposure 1 (the rates): right
        for rates, wrong for counts, and what ``GridSearchCV`` and
        ``cross_validate`` do unless the exposure is routed to ``score``.
        """
        if exposure is None and getattr(self, "_fitted_with_exposure", False):
            warn(
                f"{method} got no exposure, but this model was fitted with one: y is compared "
                "with the mixture at exposure 1 (rates). If y holds counts, pass exposure=...; "
                "in GridSearchCV or cross_validate, turn on metadata routing "
                "(sklearn.set_config(enable_metadata_routing=True)) and route it with "
                "set_fit_request(exposure=True).set_score_request(exposure=True).",
                UserWarning,
            )

    def _check_X_y(self, X, y, exposure=None):
        X, y_code = super()._check_X_y(X, y)
        if exposure is None:
            return X, y_code
        check_is_fitted(self)
        exposure = self._check_exposure(exposure, y_code.shape[0], self._likelihood)
        return X, np.column_stack([y_code, exposure])

    def _variance_floor(self, y, sample_weight):
        """``noise_variance_floor`` relative to the weighted variance of ``y``."""
        mean = np.average(y, weights=sample_weight)
        var_y = np.average((y - mean) ** 2, weights=sample_weight)
        return self.noise_variance_floor * (var_y if var_y > 0 else 1.0)

    def _encode_target(self, y):
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        return np.ascontiguousarray(y.reshape(-1))  # a column slice is strided

    def _init_target_columns(self, y_code):
        if y_code.ndim == 2:  # counts and exposures: cluster on the rates
            return (y_code[:, 0] / y_code[:, 1])[:, None]
        return y_code[:, None]

    def _store_likelihood_params(self, params):
        self.likelihood_params_ = dict(params)
        if isinstance(self._likelihood, GaussianLikelihood):
            self.noise_variance_ = params["variance"]
        else:  # a refit with another family must not leave the old variances behind
            self.__dict__.pop("noise_variance_", None)

    @_blockwise
    def log_likelihood(self, X, y, exposure=None):
        """Log-likelihood ``log p(y | x)`` of each row under the mixture.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.
        y : array-like of shape (n_samples,)
            Targets.
        exposure : array-like of shape (n_samples,), default=None
            Each row's exposure (``likelihood="poisson"``): ``y`` counts over it.

        Returns
        -------
        log_likelihood : ndarray of shape (n_samples,)
            ``log sum_k g_k(x) p_k(y | x)`` for each row.
        """
        self._warn_without(exposure, "log_likelihood")
        return self._posterior(*self._check_X_y(X, y, exposure))[1]

    @_blockwise
    def predict_responsibilities(self, X, y, exposure=None):
        """Posterior probability of each expert given the input and the target.

        ``p(expert k | x, y) = g_k(x) p_k(y | x) / p(y | x)``, what EM used
        as the rows' soft assignments: unlike :meth:`predict_gate`, which sees
        ``x`` only, it says which regime a row with a known target belongs to.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.
        y : array-like of shape (n_samples,)
            Targets.
        exposure : array-like of shape (n_samples,), default=None
            Each row's exposure (``likelihood="poisson"``): ``y`` counts over it.

        Returns
        -------
        responsibilities : ndarray of shape (n_samples, n_experts)
            Rows sum to one.
        """
        return self._posterior(*self._check_X_y(X, y, exposure))[0]

    def score(self, X, y, sample_weight=None, exposure=None):
        """Coefficient of determination R2 of :meth:`predict` on ``(X, y)``.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.
        y : array-like of shape (n_samples,)
            True targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.
        exposure : array-like of shape (n_samples,), default=None
            Each row's exposure (``likelihood="poisson"``): ``y`` counts over it.

        Returns
        -------
        score : float
            R2 of ``self.predict(X, exposure=exposure)``.
        """
        self._warn_without(exposure, "score")
        return r2_score(y, self.predict(X, exposure=exposure), sample_weight=sample_weight)

    @_blockwise
    def predict(self, X, return_std=False, exposure=None):
        """Predict the mixture's mean, and optionally its standard deviation.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.
        return_std : bool, default=False
            Also return the standard deviation of ``p(y | x)``, which combines
            the experts' noise and their disagreement.
        exposure : array-like of shape (n_samples,), default=None
            Each row's exposure, for a model fitted with
            ``likelihood="poisson"``: the prediction is then for counts over
            that exposure, not for the rate (exposure 1).

        Returns
        -------
        y_mean : ndarray of shape (n_samples,)
            ``sum_k g_k(x) mu_k(x)``.
        y_std : ndarray of shape (n_samples,)
            Only with ``return_std=True``.
        """
        distribution = self.predict_distribution(X, exposure)
        if not return_std:
            return distribution.mean()
        return distribution.mean(), distribution.std()

    def predict_distribution(self, X, exposure=None):
        """The predictive distribution ``p(y | x)`` of every row, as one object.

        A mixture of the experts' distributions weighted by the gate (after
        ``top_k`` routing), with ``mean()``, ``var()``, ``std()``,
        ``logpdf(y)``, ``pdf(y)``, ``cdf(y)``, ``ppf(q)``, ``interval(confidence)``
        and ``sample(n_draws, random_state)``, all vectorised over the rows,
        and its parts ``weights``, ``means`` and ``scales`` (n, n_experts).

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.
        exposure : array-like of shape (n_samples,), default=None
            Each row's exposure, for a model fitted with
            ``likelihood="poisson"``: the prediction is then for counts over
            that exposure, not for the rate (exposure 1).

        Returns
        -------
        distribution : MixtureDistribution
            The ``n_samples`` distributions.
        """
        X = self._check_X(X)
        expert_ids, route_weights, outputs = self._predict_parts(X)
        if exposure is not None:
            check_is_fitted(self)
            exposure = self._check_exposure(exposure, X.given.shape[0], self._likelihood)
            outputs = outputs * exposure[:, None]
        return MixtureDistribution(
            np.ascontiguousarray(expert_ids),
            route_weights,
            outputs,
            self._likelihood_params,
            self._likelihood,
            self.n_experts,
        )

    @_blockwise
    def predict_interval(self, X, confidence=0.9, exposure=None):
        """Central prediction intervals of the mixture's predictive distribution.

        Exact quantiles of the mixture (not a Gaussian around its mean), so
        an interval may be asymmetric, and wide where the experts disagree.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.
        confidence : float in (0, 1), default=0.9
            Probability between the bounds.
        exposure : array-like of shape (n_samples,), default=None
            Each row's exposure, for a model fitted with
            ``likelihood="poisson"``: the prediction is then for counts over
            that exposure, not for the rate (exposure 1).

        Returns
        -------
        bounds : ndarray of shape (n_samples, 2)
            Lower and upper bounds.
        """
        return self.predict_distribution(X, exposure).interval(confidence)

    @_blockwise
    def predict_quantiles(self, X, q, exposure=None):
        """Quantiles of the mixture's predictive distribution.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Input data.
        q : float or array-like of shape (n_quantiles,)
            Probabilities in [0, 1].
        exposure : array-like of shape (n_samples,), default=None
            Each row's exposure, for a model fitted with
            ``likelihood="poisson"``: the prediction is then for counts over
            that exposure, not for the rate (exposure 1).

        Returns
        -------
        quantiles : ndarray of shape (n_samples, n_quantiles)
            One column per probability in ``q``.
        """
        distribution = self.predict_distribution(X, exposure)
        levels = np.atleast_1d(np.asarray(q, dtype=np.float64))
        if levels.ndim != 1:
            raise ValueError(
                f"q must be a probability or a 1-D array of them, got shape {levels.shape}."
            )
        return distribution.ppf(np.broadcast_to(levels, (len(distribution), levels.size)))


# The Tweedie power when neither the user nor the experts give one.
_TWEEDIE_POWER = 1.5


def _declared_family(estimator):
    """The family the experts' loss declares, and its Tweedie power (else None).

    ``("gaussian", None)`` unless all experts declare the same other family.
    A scikit-learn GLM says it by its class (``PoissonRegressor``,
    ``GammaRegressor``) or its ``power`` (``TweedieRegressor`` and skmoe's
    ``WeightedTweedieRegressor``: 1 Poisson, 2 gamma, between them Tweedie),
    gradient boosting by its ``loss``; a pipeline by its final step.
    """
    experts = [expert for _, expert in estimator] if isinstance(estimator, list) else [estimator]
    families = set()
    for expert in experts:
        while hasattr(expert, "steps"):  # a Pipeline: its final step fits y
            expert = expert.steps[-1][1]
        name = type(expert).__name__
        params = expert.get_params() if hasattr(expert, "get_params") else {}
        tweedie = name in ("TweedieRegressor", "WeightedTweedieRegressor")
        power = params.get("power") if tweedie else None
        if name == "PoissonRegressor" or params.get("loss") == "poisson" or power == 1:
            families.add(("poisson", None))
        elif name == "GammaRegressor" or params.get("loss") == "gamma" or power == 2:
            families.add(("gamma", None))
        elif power is not None and 1 < power < 2:
            families.add(("tweedie", float(power)))
        else:
            families.add(("gaussian", None))
    return families.pop() if len(families) == 1 else ("gaussian", None)


MixtureOfExpertsRegressor.__doc__ = fill(MixtureOfExpertsRegressor.__doc__)
