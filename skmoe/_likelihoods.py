"""Expert likelihoods: how an expert's output scores a target.

A likelihood turns a fitted expert into per-row outputs (a mean, or class
probabilities), scores targets under those outputs, and re-estimates its own
parameters (a noise variance, say) in the M-step.  The EM engine only talks to
this interface, so new families (Poisson, Student-t) slot in beside these two.
A family for regression also describes its distribution (``gather_params``,
``mean``, ``variance``, ``logpdf``, ``cdf``, ``ppf``, ``sample``), from which
:mod:`skmoe._distribution` builds the mixture's predictive distribution.

Likelihoods are stateless: their parameters travel as a dict, so the same
object can score any EM start and be shipped to joblib workers cheaply.
"""

import numpy as np
from scipy.special import ndtr, ndtri

from ._kernels import e_step, gaussian_e_step, weighted_squared_residuals


class GaussianLikelihood:
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

    def expert_output(self, expert, X):
        return np.asarray(expert.predict(X), dtype=np.float64).reshape(X.shape[0])

    def empty_outputs(self, n_samples, n_experts):
        """Buffer of expert outputs; rows an expert is not evaluated on stay 0."""
        return np.zeros((n_samples, n_experts))

    def can_train_on(self, y, weights):
        """Whether the targets of positive weight (two or more) can train an expert: any can."""
        return True

    def batch_outputs(self, batch, experts, X):
        """All experts' outputs from a batch class (see :mod:`skmoe._experts`)."""
        return batch._predict_many(experts, X)

    def residual(self, y, output):
        """How far each target lies above one expert's output (for EM's starts)."""
        return y - output

    def fit_params(self, y, outputs, weights, n_threads):
        """Weighted maximum-likelihood noise variances, floored.

        ``weights`` is zero wherever an expert's output was not computed.
        """
        residual_sum = np.empty(outputs.shape[1])
        weighted_squared_residuals(y, outputs, weights, residual_sum, n_threads)
        mass = weights.sum(axis=0)
        variance = residual_sum / np.maximum(mass, np.finfo(np.float64).tiny)
        return {"variance": np.maximum(variance, self.variance_floor)}

    def e_step(self, y, outputs, params, gate_logits, n_threads):
        n_samples, n_experts = outputs.shape
        resp = np.empty((n_samples, n_experts))
        log_lik = np.empty(n_samples)
        gaussian_e_step(y, outputs, params["variance"], gate_logits, resp, log_lik, n_threads)
        return resp, log_lik

    # The family's pieces of the predictive distribution (skmoe._distribution).
    # ``outputs`` and the gathered parameters broadcast against ``y`` / ``q``.

    def gather_params(self, params, experts):
        """The parameters of each row's routed ``experts`` (an (n, k) index array)."""
        return {"variance": params["variance"][experts]}

    def mean(self, outputs, params):
        return outputs

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


class CategoricalLikelihood:
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

    def __init__(self, classes, min_proba=1e-10):
        self.classes = classes
        self.min_proba = min_proba

    def expert_output(self, expert, X):
        proba = np.zeros((X.shape[0], self.classes.shape[0]))
        columns = np.searchsorted(self.classes, expert.classes_)
        proba[:, columns] = expert.predict_proba(X)
        return proba

    def empty_outputs(self, n_samples, n_experts):
        """Buffer of expert outputs; rows an expert is not evaluated on stay 0."""
        return np.zeros((n_samples, n_experts, self.classes.shape[0]))

    def can_train_on(self, y, weights):
        """Whether the targets of positive weight (two or more) can train an expert.

        They must hold two classes: most classifiers refuse to fit on one.
        """
        return np.unique(y[weights > 0]).shape[0] >= 2

    def residual(self, y, output):
        """Each target's log-probability under one expert (for EM's starts)."""
        proba = output[np.arange(y.shape[0]), y]
        return np.log(np.maximum(proba, self.min_proba))

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
