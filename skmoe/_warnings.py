"""Warnings that point at the user's line, not at the line of skmoe that raised them."""

import sys
import warnings

# Frames of these packages are skipped: a warning raised deep inside EM (also in
# tasks Dask runs), or in a fit that GridSearchCV or joblib called, is shown at
# the user's call.
_LIBRARY_PREFIXES = ("skmoe.", "sklearn.", "joblib.", "dask.", "distributed.")


def warn(message, category):
    """``warnings.warn`` with the ``stacklevel`` of the first caller outside the libraries.

    The depth from a user's ``fit`` to the code that warns varies (EM runs
    starts, steps and refits inside it), so a fixed ``stacklevel`` would
    point at some frame of skmoe or scikit-learn.
    """
    frame, level = sys._getframe(1), 2  # stacklevel 2 is our caller
    while frame is not None and (frame.f_globals.get("__name__", "") + ".").startswith(
        _LIBRARY_PREFIXES
    ):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
