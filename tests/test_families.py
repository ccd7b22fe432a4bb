"""Likelihood families beyond the Gaussian: Poisson counts and gamma-distributed targets."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.stats import gamma, poisson
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import GammaRegressor, PoissonRegressor, TweedieRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skmoe import MixtureOfExpertsRegressor
from skmoe.gates import SoftmaxGate
from skmoe.likelihoods import (
    BaseLikelihood,
    PoissonLikelihood,
    TweedieLikelihood,
    check_likelihood,
)

TRUE_INTERCEPTS = np.array([0.5, 1.5, 2.5])
GAMMA_SHAPES = np.array([2.0, 5.0, 10.0])


def gated_glm_mixture(family, n_samples, seed):
    """Three log-link experts under a softmax gate, d = 5: X, y, true gate, coef."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, 5))
    gate = np.exp(X @ (1.5 * np.random.default_rng(99).normal(size=(5, 3))))
    gate /= gate.sum(axis=1, keepdims=True)
    regime = (rng.uniform(size=(n_samples, 1)) > gate.cumsum(axis=1)).sum(axis=1)
    coef = np.random.default_rng(98).normal(scale=0.4, size=(3, 5))
    means = np.exp(X @ coef.T + TRUE_INTERCEPTS)  # (n, 3): every expert's mean
    mean = means[np.arange(n_samples), regime]
    if family == "poisson":
        y = rng.poisson(mean).astype(float)
        density = poisson.pmf(y[:, None], means)
    else:
        shape = GAMMA_SHAPES[regime]
        y = rng.gamma(shape, mean / shape)
        density = gamma.pdf(y[:, None], GAMMA_SHAPES, scale=means / GAMMA_SHAPES)
    true_log_lik = np.log(np.sum(gate * density, axis=1))
    return X, y, true_log_lik, coef


@pytest.mark.parametrize("family", ["poisson", "gamma"])
def test_known_truth_is_recovered(family):
    # The setting: d = 5, n = 20,000; coefficients within 0.05, held-out
    # log-likelihood within 1% (measured: 0.027 / 0.022 and 8e-5 / 1.7e-4).
    X, y, _, coef = gated_glm_mixture(family, 20_000, seed=0)
    X_test, y_test, true_test, _ = gated_glm_mixture(family, 5_000, seed=1)
    model = MixtureOfExpertsRegressor(3, likelihood=family, n_init=3, random_state=0).fit(X, y)
    expected = PoissonRegressor if family == "poisson" else GammaRegressor
    assert all(isinstance(expert, expected) for expert in model.experts_)
    order = np.argsort([expert.intercept_ for expert in model.experts_])
    fitted = np.array([model.experts_[k].coef_ for k in order])
    assert_allclose([model.experts_[k].intercept_ for k in order], TRUE_INTERCEPTS, atol=0.05)
    assert np.abs(fitted - coef).max() < 0.05
    held_out = model.log_likelihood(X_test, y_test).mean()
    assert abs(held_out - true_test.mean()) < 0.01 * abs(true_test.mean())
    if family == "gamma":
        assert_allclose(model.likelihood_params_["shape"][order], GAMMA_SHAPES, rtol=0.15)
        assert not hasattr(model, "noise_variance_")
    else:
        assert model.likelihood_params_ == {}


def test_poisson_log_likelihood_and_quantiles_are_the_mixtures():
    X, y, _, _ = gated_glm_mixture("poisson", 3_000, seed=2)
    model = MixtureOfExpertsRegressor(3, likelihood="poisson", random_state=0).fit(X, y)
    gate, means = model.predict_gate(X[:200]), model.predict_experts(X[:200])
    reference = np.log(np.sum(gate * poisson.pmf(y[:200, None], means), axis=1))
    assert_allclose(model.log_likelihood(X[:200], y[:200]), reference, rtol=1e-10)
    distribution = model.predict_distribution(X[:200])
    counts = np.tile(np.arange(400.0), (200, 1))
    assert_allclose(distribution.pdf(counts).sum(axis=1), 1.0, rtol=1e-9)
    levels = np.tile([0.05, 0.5, 0.95], (200, 1))
    quantiles = distribution.ppf(levels)
    assert np.all(quantiles == np.round(quantiles))
    # The smallest count whose probability mass reaches q.
    assert np.all(distribution.cdf(quantiles) >= levels)
    assert np.all(distribution.cdf(quantiles - 1) < levels)
    assert_allclose(
        distribution.var(), np.sum(gate * (means + means**2), axis=1) - distribution.mean() ** 2
    )


def test_gamma_quantiles_invert_the_cdf():
    X, y, _, _ = gated_glm_mixture("gamma", 3_000, seed=3)
    model = MixtureOfExpertsRegressor(3, likelihood="gamma", random_state=0).fit(X, y)
    distribution = model.predict_distribution(X[:200])
    levels = np.tile([1e-6, 0.05, 0.5, 0.95, 1 - 1e-6], (200, 1))
    assert_allclose(distribution.cdf(distribution.ppf(levels)), levels, atol=1e-8)
    assert np.all(distribution.ppf(levels) > 0)


def test_parameter_counts_follow_the_family():
    X, y, _, _ = gated_glm_mixture("poisson", 2_000, seed=4)
    poisson_model = MixtureOfExpertsRegressor(3, likelihood="poisson", random_state=0).fit(X, y)
    gaussian = MixtureOfExpertsRegressor(3, random_state=0).fit(X, y)
    gamma_model = MixtureOfExpertsRegressor(3, likelihood="gamma", random_state=0).fit(X, y + 1)
    n = X.shape[0]
    # Gate (3 - 1) * (5 + 1) = 12, experts 3 * 6 = 18; plus 3 variances / 3 shapes / nothing.
    for model, target, k in [(poisson_model, y, 30), (gaussian, y, 33), (gamma_model, y + 1, 33)]:
        log_lik = model.log_likelihood(X, target).sum()
        assert model.bic(X, target) == pytest.approx(-2 * log_lik + k * np.log(n))


@pytest.mark.parametrize(
    "family, shift, message",
    [
        (
            "poisson",
            -1.0,
            r"likelihood='poisson' needs non-negative targets \(counts\), but y "
            r"has \d+ negative values \(the smallest is -1\)",
        ),
        (
            "gamma",
            0.0,
            r"likelihood='gamma' needs positive targets, but y has \d+ values <= 0 "
            r"\(the smallest is 0\)",
        ),
        (
            "tweedie",
            -1.0,
            r"likelihood='tweedie' needs non-negative targets, but y has \d+ "
            r"negative values \(the smallest is -1\)",
        ),
        (
            TweedieLikelihood(power=2.5),
            0.0,
            r"TweedieLikelihood needs 1 < power < 2 \(compound "
            r"Poisson-gamma\), got power=2.5",
        ),
    ],
)
def test_targets_the_family_cannot_score_are_refused(family, shift, message):
    X, y, _, _ = gated_glm_mixture("poisson", 500, seed=5)
    model = MixtureOfExpertsRegressor(2, likelihood=family)
    with pytest.raises(ValueError, match=message):
        model.fit(X, y + shift)
    assert not hasattr(model, "experts_")


def test_a_likelihood_object_must_implement_the_interface():
    class Incomplete:
        def e_step(self, *args):
            pass

    with pytest.raises(
        TypeError,
        match=r"lacks expert_output, empty_outputs, can_train_on, "
        r"fit_params, residual",
    ):
        check_likelihood(Incomplete())
    with pytest.raises(TypeError, match="Can't instantiate abstract class"):
        type("Partial", (BaseLikelihood,), {})()
    # An instance is a valid parameter value, and grid-searchable like a name.
    X, y, _, _ = gated_glm_mixture("poisson", 1_000, seed=6)
    by_object = MixtureOfExpertsRegressor(
        2, likelihood=PoissonLikelihood(), estimator=PoissonRegressor(alpha=0.0), random_state=0
    ).fit(X, y)
    by_name = MixtureOfExpertsRegressor(2, random_state=0).set_params(likelihood="poisson")
    assert_allclose(by_name.fit(X, y).log_likelihood_, by_object.log_likelihood_, rtol=1e-6)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # max_iter=30
@pytest.mark.parametrize(
    "params", [{"gate": "tree"}, {"gate": "hme"}, {"n_experts": 3, "top_k": 2}]
)
def test_every_gate_and_routing_takes_the_families(params):
    X, y, _, _ = gated_glm_mixture("poisson", 2_000, seed=7)
    model = MixtureOfExpertsRegressor(
        **{"n_experts": 2, **params}, likelihood="poisson", random_state=0, max_iter=30
    )
    model.fit(X, y)
    assert np.all(model.predict(X) > 0)
    assert np.all(np.isfinite(model.log_likelihood(X, y)))
    bounds = model.predict_interval(X[:50], 0.9)
    assert np.all(bounds[:, 0] <= bounds[:, 1])


@pytest.mark.parametrize(
    "estimator, family",
    [
        (PoissonRegressor(), "PoissonLikelihood"),
        (GammaRegressor(), "GammaLikelihood"),
        (TweedieRegressor(power=1, link="log"), "PoissonLikelihood"),
        (TweedieRegressor(power=2, link="log"), "GammaLikelihood"),
        (TweedieRegressor(power=1.3, link="log"), "TweedieLikelihood"),
        (HistGradientBoostingRegressor(loss="poisson", max_iter=10), "PoissonLikelihood"),
        (make_pipeline(StandardScaler(), GammaRegressor()), "GammaLikelihood"),
        (None, "GaussianLikelihood"),
        ([("a", PoissonRegressor()), ("b", GammaRegressor())], "GaussianLikelihood"),
    ],
)
def test_auto_takes_the_family_the_experts_loss_declares(estimator, family):
    X, y, _, _ = gated_glm_mixture("poisson", 600, seed=8)
    model = MixtureOfExpertsRegressor(
        2, estimator=estimator, likelihood="auto", random_state=0, max_iter=5
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # five iterations do not converge
        model.fit(X, y + 1)
    assert type(model._likelihood).__name__ == family


def two_lines_with_outliers(n_samples, seed, outliers):
    """Two linear regimes (noise 0.3); optionally 5% of targets moved by +-50 noise sds."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-3, 3, size=(n_samples, 1))
    y = np.where(X[:, 0] < 0, -2 * X[:, 0], 3 * X[:, 0] - 1) + 0.3 * rng.normal(size=n_samples)
    if outliers:
        moved = rng.uniform(size=n_samples) < 0.05
        y[moved] += rng.choice([-1.0, 1.0], moved.sum()) * 50 * 0.3
    return X, y


def test_student_t_experts_are_not_dragged_by_gross_outliers():
    X_test, y_test = two_lines_with_outliers(5_000, seed=1, outliers=False)
    r2 = {}
    for family in ("gaussian", "student_t"):
        for outliers in (False, True):
            X, y = two_lines_with_outliers(2_000, seed=0, outliers=outliers)
            model = MixtureOfExpertsRegressor(2, likelihood=family, n_init=3, random_state=0)
            r2[family, outliers] = model.fit(X, y).score(X_test, y_test)
    # Measured: Student-t 0.9821 clean and with outliers; Gaussian 0.9821 and 0.9729.
    assert abs(r2["student_t", True] - r2["student_t", False]) < 0.01
    assert (
        r2["gaussian", False] - r2["gaussian", True]
        > r2["student_t", False] - r2["student_t", True]
    )


def test_student_t_density_and_quantiles():
    from scipy.stats import t

    X, y = two_lines_with_outliers(1_000, seed=2, outliers=True)
    model = MixtureOfExpertsRegressor(2, likelihood="student_t", random_state=0).fit(X, y)
    scale = np.sqrt(model.likelihood_params_["variance"])
    gate, means = model.predict_gate(X[:100]), model.predict_experts(X[:100])
    reference = np.log(np.sum(gate * t.pdf(y[:100, None], 4.0, means, scale), axis=1))
    assert_allclose(model.log_likelihood(X[:100], y[:100]), reference, rtol=1e-10)
    distribution = model.predict_distribution(X[:100])
    levels = np.tile([0.01, 0.5, 0.99], (100, 1))
    assert_allclose(distribution.cdf(distribution.ppf(levels)), levels, atol=1e-8)
    assert_allclose(
        distribution.var(),
        np.sum(gate * (means**2 + 2 * scale**2), axis=1) - distribution.mean() ** 2,
    )


def test_student_t_degrees_of_freedom_are_estimated():
    # Two lines under t noise with 3 and 10 degrees of freedom: EM finds each
    # expert's df, never lowers the likelihood (the gate unpenalised: the
    # default's penalty binds on this sharp split, and EM never lowers the
    # penalised likelihood instead), and counts the df for BIC.
    from scipy.stats import t

    from skmoe.likelihoods import StudentTLikelihood

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, 2))
    right = X[:, 0] > 0
    df = np.where(right, 3.0, 10.0)
    y = np.where(right, 2 * X[:, 1] + 1, -X[:, 1] - 1) + 0.3 * rng.standard_t(df)
    model = MixtureOfExpertsRegressor(
        2, gate=SoftmaxGate(C=np.inf), likelihood=StudentTLikelihood(df=None), random_state=0
    ).fit(X, y)
    assert np.all(np.diff(model.log_likelihood_history_) >= -1e-10)
    order = np.argsort([expert.coef_[1] for expert in model.experts_])  # slope -1, then 2
    assert_allclose(model.likelihood_params_["df"][order], [10.0, 3.0], rtol=0.25)
    assert_allclose(model.likelihood_params_["variance"], 0.09, rtol=0.1)
    gate, means = model.predict_gate(X[:50]), model.predict_experts(X[:50])
    params = model.likelihood_params_
    reference = np.log(
        np.sum(
            gate * t.pdf(y[:50, None], params["df"], means, np.sqrt(params["variance"])), axis=1
        )
    )
    assert_allclose(model.log_likelihood(X[:50], y[:50]), reference, rtol=1e-10)
    fixed = MixtureOfExpertsRegressor(2, likelihood="student_t", random_state=0).fit(X, y)
    # Two parameters more (a df per expert), and a better fit than df=4 for both.
    assert model.log_likelihood_ > fixed.log_likelihood_
    extra = (
        model.bic(X, y)
        - fixed.bic(X, y)
        + 2 * (model.log_likelihood(X, y).sum() - fixed.log_likelihood(X, y).sum())
    )
    assert_allclose(extra, 2 * np.log(X.shape[0]))


@pytest.mark.parametrize(
    "power, mean, dispersion",
    [(1.5, 2.0, 1.0), (1.2, 0.3, 0.5), (1.8, 10.0, 2.0), (1.5, 50.0, 0.2)],
)
def test_tweedie_distribution_is_a_distribution(power, mean, dispersion):
    # The jump series against numerical integration: total mass one, the
    # given mean and variance phi mu^p, a CDF that integrates the density
    # and a quantile function that inverts it; draws with the same moments.
    from scipy.integrate import quad

    family, params = TweedieLikelihood(power), {"dispersion": np.array(dispersion)}

    def density(y):
        return np.exp(family.logpdf(np.array([y]), np.array([mean]), params))[0]

    at_zero = density(0.0)
    moments = [quad(lambda y, m=m: y**m * density(y), 0, np.inf, limit=500)[0] for m in range(3)]
    assert_allclose(moments[0] + at_zero, 1.0, atol=1e-8)
    assert_allclose(moments[1], mean, rtol=1e-8)
    assert_allclose(moments[2] - mean**2, dispersion * mean**power, rtol=1e-7)
    below = at_zero + quad(density, 0, mean, limit=500)[0]
    assert_allclose(family.cdf(np.array([mean]), np.array([mean]), params), below, rtol=1e-8)
    levels = np.array([0.3, 0.7, 0.95])
    quantiles = family.ppf(levels, np.full(3, mean), params)
    reached = family.cdf(quantiles, np.full(3, mean), params)
    assert np.all(
        (reached >= levels - 1e-10) & ((quantiles == 0) | (abs(reached - levels) < 1e-8))
    )
    draws = family.sample(np.full(200_000, mean), params, np.random.RandomState(0))
    assert_allclose(np.mean(draws == 0), at_zero, atol=3e-3)
    assert_allclose(draws.mean(), mean, rtol=0.02)


def test_tweedie_dispersion_is_the_weighted_maximum_likelihood():
    from scipy.optimize import minimize_scalar

    family = TweedieLikelihood(1.4)
    rng = np.random.default_rng(0)
    mean = np.exp(rng.normal(size=3_000))
    y = family.sample(mean, {"dispersion": 0.7}, rng)
    weights = rng.uniform(size=3_000)
    fitted = family.fit_params(y, mean[:, None], weights[:, None], 1)["dispersion"][0]

    def loss(log_phi):
        return -weights @ family.logpdf(y, mean, {"dispersion": np.exp(log_phi)})

    reference = np.exp(
        minimize_scalar(loss, bounds=(-5, 5), method="bounded", options={"xatol": 1e-10}).x
    )
    assert_allclose(fitted, reference, rtol=1e-7)
    assert_allclose(fitted, 0.7, rtol=0.1)


def test_tweedie_mixture_recovers_the_truth():
    family = TweedieLikelihood(1.5)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8_000, 3))
    right = X[:, 0] > 0
    mean = np.exp(np.where(right, 0.5 * X[:, 1] + 1, -0.5 * X[:, 2]))
    y = family.sample(mean, {"dispersion": np.where(right, 1.0, 0.5)}, rng)
    # An unpenalised gate, so that EM never lowers the likelihood on this sharp
    # split (see test_student_t_degrees_of_freedom_are_estimated).
    model = MixtureOfExpertsRegressor(
        2, gate=SoftmaxGate(C=np.inf), likelihood="tweedie", random_state=0
    ).fit(X, y)
    assert model._likelihood.power == 1.5
    assert np.all(np.diff(model.log_likelihood_history_) >= -1e-10)
    order = np.argsort([-expert.intercept_ for expert in model.experts_])  # right first
    coef = np.array([model.experts_[k].coef_ for k in order])
    assert_allclose(coef, [[0, 0.5, 0], [0, 0, -0.5]], atol=0.06)
    assert_allclose([model.experts_[k].intercept_ for k in order], [1.0, 0.0], atol=0.06)
    assert_allclose(model.likelihood_params_["dispersion"][order], [1.0, 0.5], rtol=0.1)
    bounds = model.predict_interval(X[:200], 0.9)
    assert np.all(bounds[:, 0] >= 0) and np.any(bounds[:, 0] == 0)  # the mass at zero


def counts_over_exposures(n_samples, seed):
    """Two log-linear rate regimes (switched by x0); counts over uniform exposures."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, 3))
    rate = np.exp(np.where(X[:, 0] > 0, 0.5 * X[:, 1] + 0.5, -0.5 * X[:, 2] - 0.5))
    exposure = rng.uniform(0.1, 5.0, size=n_samples)
    return X, rng.poisson(exposure * rate).astype(float), exposure, rate


def test_poisson_exposure_is_the_offset_of_the_counts():
    X, y, exposure, _ = counts_over_exposures(20_000, seed=0)
    model = MixtureOfExpertsRegressor(2, likelihood="poisson", random_state=0)
    model.fit(X, y, exposure=exposure)
    order = np.argsort([-expert.intercept_ for expert in model.experts_])
    coef = np.array([model.experts_[k].coef_ for k in order])
    assert_allclose(coef, [[0, 0.5, 0], [0, 0, -0.5]], atol=0.03)
    assert_allclose([model.experts_[k].intercept_ for k in order], [0.5, -0.5], atol=0.03)
    # The log-likelihood is the counts' under means exposure * rate.
    gate, rates = model.predict_gate(X[:100]), model.predict_experts(X[:100])
    reference = np.log(
        np.sum(gate * poisson.pmf(y[:100, None], exposure[:100, None] * rates), axis=1)
    )
    assert_allclose(
        model.log_likelihood(X[:100], y[:100], exposure=exposure[:100]), reference, rtol=1e-10
    )
    assert_allclose(model.log_likelihood_, model.log_likelihood(X, y, exposure=exposure).mean())
    assert_allclose(
        model.predict(X[:50], exposure=exposure[:50]), exposure[:50] * model.predict(X[:50])
    )
    # 2 experts x 3 coefficients and an intercept, a gate of 1 x 4.
    assert_allclose(
        model.bic(X, y, exposure=exposure),
        -2 * model.log_likelihood(X, y, exposure=exposure).sum() + 12 * np.log(20_000),
    )
    with pytest.warns(UserWarning, match=r"score got no exposure, but this model was fitted"):
        rates_only = model.score(X, y)
    assert model.score(X, y, exposure=exposure) > rates_only + 0.1
    bounds = model.predict_interval(X[:50], exposure=exposure[:50])
    assert np.all(bounds == np.round(bounds)) and np.all(bounds[:, 0] <= bounds[:, 1])
    # Ignoring the exposure fits the counts far worse.
    plain = MixtureOfExpertsRegressor(2, likelihood="poisson", random_state=0).fit(X, y)
    assert model.log_likelihood_ > plain.log_likelihood_ + 0.1


def test_one_expert_with_exposure_is_the_poisson_glm_with_offset():
    # scikit-learn's way to an offset: rates y / e with sample_weight e.
    X, y, exposure, _ = counts_over_exposures(3_000, seed=1)
    model = MixtureOfExpertsRegressor(1, likelihood="poisson", tol=1e-10).fit(
        X, y, exposure=exposure
    )
    reference = PoissonRegressor(alpha=1e-8, solver="newton-cholesky", tol=1e-12).fit(
        X, y / exposure, sample_weight=exposure
    )
    assert_allclose(model.experts_[0].coef_, reference.coef_, atol=1e-7)


def test_exposure_is_checked():
    X, y, exposure, _ = counts_over_exposures(500, seed=2)
    with pytest.raises(
        ValueError,
        match=r"exposure is for likelihood='poisson' \(counts over an "
        r"exposure\); this model's likelihood is "
        r"GaussianLikelihood",
    ):
        MixtureOfExpertsRegressor(2).fit(X, y, exposure=exposure)
    with pytest.raises(ValueError, match=r"exposure must be positive, but it has 1 values <= 0"):
        MixtureOfExpertsRegressor(2, likelihood="poisson").fit(
            X, y, exposure=np.r_[0.0, exposure[1:]]
        )
    with pytest.raises(ValueError, match=r"exposure has 499 values but y has 500"):
        MixtureOfExpertsRegressor(2, likelihood="poisson").fit(X, y, exposure=exposure[1:])


def test_exposure_is_split_with_the_rows_by_grid_search():
    from sklearn import config_context
    from sklearn.model_selection import GridSearchCV, KFold

    X, y, exposure, _ = counts_over_exposures(1_500, seed=3)
    grid = {"n_experts": [1, 2]}
    model = MixtureOfExpertsRegressor(likelihood="poisson", random_state=0)
    # Without metadata routing, fit gets each fold's exposure but score none: it says so.
    with pytest.warns(UserWarning, match=r"score got no exposure, but this model was fitted"):
        GridSearchCV(model, grid, cv=3).fit(X, y, exposure=exposure)
    # Routed, the folds' exposures reach fit and score: the scores are the folds' own.
    with config_context(enable_metadata_routing=True), warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        routed = clone(model).set_fit_request(exposure=True).set_score_request(exposure=True)
        search = GridSearchCV(routed, grid, cv=3).fit(X, y, exposure=exposure)
    assert search.best_params_ == {"n_experts": 2}
    train, test = next(KFold(3).split(X))
    by_hand = (
        clone(model)
        .set_params(n_experts=2)
        .fit(X[train], y[train], exposure=exposure[train])
        .score(X[test], y[test], exposure=exposure[test])
    )
    assert_allclose(search.cv_results_["split0_test_score"][1], by_hand, rtol=1e-12)
