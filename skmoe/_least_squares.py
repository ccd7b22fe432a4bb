"""K weighted (ridge) least-squares fits from their moments: accumulate, then finalise.

Every least-squares refit of skmoe's linear experts goes through these two
steps, whatever holds the rows:

* in memory (:func:`skmoe.experts.fit_least_squares_many`), the moments of
  all rows, about each fit's own weighted mean;
* on a Dask collection (:mod:`skmoe._dask`), the sums of the partitions'
  moments about the global mean;
* in ``partial_fit`` (:mod:`skmoe._online`), running averages of the chunks'
  moments about the first chunk's mean.

The moments are taken about a centre near the data, so that no sum of
squares suffers the cancellation of raw moments; moments about the same
centre add up over disjoint sets of rows.
"""

import numpy as np

from ._kernels import weighted_gram
from ._linalg import solve_normal_equations


def least_squares_moments(X, y, weights, centre=None, n_threads=1):
    """The weighted moments of ``z_i = [x_i, y_i] - centre`` for K fits, in two passes.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        C-ordered float64 inputs.
    y : ndarray of shape (n_samples,)
        Targets.
    weights : ndarray of shape (n_samples, K)
        Non-negative row weights of each fit; 0 leaves the row out.
    centre : ndarray of shape (n_features + 1,) or (K, n_features + 1), default=None
        The centre of ``[x, y]``, shared or one per fit; None: each fit's own
        weighted mean (its column of ``weights`` needs a positive sum), from
        the first pass's sums, about which ``first`` is zero up to rounding.
    n_threads : int, default=1
        Threads of the compiled Gram kernel (callers hold BLAS to one).

    Returns
    -------
    mass : ndarray of shape (K,)
        ``sum_i w_ik``.
    first : ndarray of shape (K, n_features + 1)
        ``sum_i w_ik z_ik``.
    second : ndarray of shape (K, n_features + 1, n_features + 1)
        ``sum_i w_ik z_ik z_ik^T`` (:func:`skmoe._kernels.weighted_gram`).
    centre : ndarray of shape (K, n_features + 1)
        The centres, for :func:`least_squares_from_moments`.
    """
    n_experts, width = weights.shape[1], X.shape[1] + 1
    mass = weights.sum(axis=0)
    sums = np.empty((n_experts, width))
    sums[:, :-1] = weights.T @ X
    sums[:, -1] = y @ weights
    if centre is None:
        centre = sums / mass[:, None]
    centre = np.ascontiguousarray(np.broadcast_to(centre, (n_experts, width)))
    second = np.empty((n_experts, width, width))
    weighted_gram(X, y, weights, centre, second, n_threads)
    return mass, sums - mass[:, None] * centre, second, centre


def least_squares_from_moments(mass, first, second, centre, alpha, fit_intercept):
    """K weighted (ridge) least-squares fits from their moments about ``centre``.

    Each fit's moments are moved to its own weighted mean (with an
    intercept) or to the origin (without), which gives its normal equations
    ``(G_xx + alpha I) coef = G_xy``; the residual sum of squares is
    ``v^T G v`` with ``v = [-coef, 1]``.

    Parameters
    ----------
    mass, first, second : ndarray
        The moments of :func:`least_squares_moments` (or sums of them).
    centre : ndarray of shape (n_features + 1,) or (K, n_features + 1)
        The centre they were taken about. A fit without an intercept has its
        moments moved to the origin: any centre serves it.
    alpha : sequence of K floats
        L2 penalties on the coefficients (not the intercepts).
    fit_intercept : sequence of K bools
        Whether each fit has an intercept.

    Returns
    -------
    coef : ndarray of shape (K, n_features)
    intercept : ndarray of shape (K,)
    gram : ndarray of shape (K, n_features, n_features)
        The weighted cross products of ``X`` about each fit's mean (or the
        origin), without penalty: their eigenvalues are the squared singular
        values of the weighted centred ``X``.
    rss : ndarray of shape (K,)
        Weighted residual sums of squares.
    """
    n_experts, width = first.shape
    n_features = width - 1
    centres = np.broadcast_to(centre, (n_experts, width))
    coef = np.empty((n_experts, n_features))
    intercept = np.empty(n_experts)
    gram = np.empty((n_experts, n_features, n_features))
    rss = np.empty(n_experts)
    for k in range(n_experts):
        if fit_intercept[k]:
            moments = second[k] - np.outer(first[k], first[k]) / mass[k]
            origin = centres[k] + first[k] / mass[k]
        else:
            c = centres[k]
            moments = (
                second[k]
                + np.outer(first[k], c)
                + np.outer(c, first[k])
                + mass[k] * np.outer(c, c)
            )
            origin = np.zeros(width)
        gram[k] = moments[:n_features, :n_features]
        normal = gram[k].copy()
        normal[np.diag_indices_from(normal)] += alpha[k]
        coef[k] = solve_normal_equations(normal, moments[:n_features, n_features])
        intercept[k] = origin[n_features] - origin[:n_features] @ coef[k]
        v = np.append(-coef[k], 1.0)
        rss[k] = max(float(v @ moments @ v), 0.0)
    return coef, intercept, gram, rss
