"""skmoe: mixture-of-experts estimators for scikit-learn, trained by EM.

Layout: :mod:`skmoe._base` is the EM engine; :mod:`skmoe._regression` and
:mod:`skmoe._classification` the estimators; :mod:`skmoe._model_selection`
their cross-validated choice of ``n_experts`` (scored by
:mod:`skmoe.metrics`); :mod:`skmoe.gates` the gating networks;
:mod:`skmoe._initialization` EM's starts; :mod:`skmoe._distribution` the
predictive distribution; :mod:`skmoe._inputs` what each part
sees of ``X``;
:mod:`skmoe.likelihoods` how experts score targets;
:mod:`skmoe._experts` how user estimators become experts; :mod:`skmoe.experts`
experts made for EM; ``_kernels.pyx`` the compiled E-step and gate loss.
"""

from importlib import import_module as _import_module

try:  # the compiled core first, for a clear error when it is missing
    _import_module(__name__ + "._kernels")
except ModuleNotFoundError as error:
    if error.name != __name__ + "._kernels":
        raise
    import os

    package = os.path.dirname(os.path.abspath(__file__))
    raise ImportError(
        f"skmoe's compiled core ({__name__}._kernels) is not built. You are probably "
        f"importing the skmoe source tree at {package} instead of the installed "
        "package (Python looks in the current directory first, so this happens when "
        f"running from {os.path.dirname(package)}). Install skmoe with 'pip install .' "
        "(or 'pip install -e .' for development, which builds the core in place) and run "
        "Python from another directory."
    ) from error

from ._classification import MixtureOfExpertsClassifier
from ._distribution import MixtureDistribution
from ._model_selection import MixtureOfExpertsClassifierCV, MixtureOfExpertsRegressorCV
from ._regression import MixtureOfExpertsRegressor
from .gates import HMEGate, SoftmaxGate, TreeGate

__version__ = "0.1.0.dev0"

__all__ = [
    "MixtureOfExpertsRegressor",
    "MixtureOfExpertsClassifier",
    "MixtureOfExpertsRegressorCV",
    "MixtureOfExpertsClassifierCV",
    "MixtureDistribution",
    "SoftmaxGate",
    "TreeGate",
    "HMEGate",
]
