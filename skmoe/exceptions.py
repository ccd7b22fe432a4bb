"""Warnings raised by skmoe."""


class ExpertCollapseWarning(UserWarning):
    """An expert lost (almost) all responsibility during EM and was re-seeded or frozen."""
