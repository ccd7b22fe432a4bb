"""skmoe: mixture-of-experts estimators for scikit-learn, trained by EM.

Layout: :mod:`skmoe._base` is the EM engine; :mod:`skmoe._regression` and
:mod:`skmoe._classification` the estimators; :mod:`skmoe.gates` the gating
networks; :mod:`skmoe._likelihoods` how experts score targets;
:mod:`skmoe._experts` how user estimators become experts; :mod:`skmoe.experts`
experts made for EM; ``_kernels.pyx`` the compiled E-step and gate loss.
"""

from ._classification import MixtureOfExpertsClassifier
from ._regression import MixtureOfExpertsRegressor
from .gates import HMEGate, SoftmaxGate, TreeGate

__version__ = "0.1.0.dev0"

__all__ = [
    "MixtureOfExpertsRegressor",
    "MixtureOfExpertsClassifier",
    "SoftmaxGate",
    "TreeGate",
    "HMEGate",
]
