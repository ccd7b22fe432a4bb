"""Gates: the part of a mixture of experts that says which expert to trust where.

A gate is a :class:`BaseGate`; the estimators accept one as ``gate=`` or a
name from :data:`GATES`.
"""

from sklearn.base import clone

from ._base import BaseGate
from ._hme import HMEGate
from ._softmax import SoftmaxGate
from ._tree import TreeGate

#: Gate names accepted by the estimators' ``gate`` parameter.
GATES = {"softmax": SoftmaxGate, "tree": TreeGate, "hme": HMEGate}


def make_gate(gate):
    """Return an unfitted gate from a name in :data:`GATES` or a gate instance."""
    if isinstance(gate, str):
        return GATES[gate]()
    return clone(gate)


__all__ = ["BaseGate", "SoftmaxGate", "TreeGate", "HMEGate", "GATES", "make_gate"]
