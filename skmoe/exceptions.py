"""Warnings raised by skmoe."""


class ExpertCollapseWarning(UserWarning):
    """An expert lost (almost) all responsibility during EM and was re-seeded or frozen."""


class ExpertFitError(RuntimeError):
    """An expert's own ``fit`` raised during EM; the original error is chained as its cause."""
