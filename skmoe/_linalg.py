"""Small dense linear algebra shared by the batch solvers."""

import warnings

import numpy as np
from scipy import linalg


def solve_normal_equations(gram, moment):
    """``gram^-1 moment`` by Cholesky; the minimum-norm solution if ``gram`` is singular.

    The minimum-norm solution is what ``LinearRegression`` returns for
    rank-deficient data (fewer rows than features, a constant column).
    """
    if gram.shape[0] == 0:
        return np.zeros(0)
    try:
        with warnings.catch_warnings():
            # Ill-conditioned (numerically singular) is handled like singular.
            warnings.simplefilter("error", linalg.LinAlgWarning)
            return linalg.solve(gram, moment, assume_a="pos", check_finite=False)
    except (linalg.LinAlgError, linalg.LinAlgWarning):
        return linalg.lstsq(gram, moment, check_finite=False)[0]
