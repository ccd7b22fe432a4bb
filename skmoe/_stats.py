"""Column statistics of large arrays without full-size temporaries."""

import numpy as np

# Rows per block: a block of a 20-column float64 array is 10 MB.
_BLOCK_ROWS = 1 << 16


def weighted_mean_scale(X, sample_weight):
    """Weighted column means and standard deviations; constant columns get scale 1.

    ``np.average((X - mean) ** 2, weights=w)`` would allocate two arrays the
    size of ``X``; here the squared deviations are summed block by block.
    """
    n_samples, n_features = X.shape
    total_weight = sample_weight.sum()
    mean = (sample_weight @ X) / total_weight
    squares = np.zeros(n_features)
    for start in range(0, n_samples, _BLOCK_ROWS):
        deviation = X[start : start + _BLOCK_ROWS] - mean
        deviation *= deviation
        squares += sample_weight[start : start + _BLOCK_ROWS] @ deviation
    scale = np.sqrt(squares / total_weight)
    scale[scale <= np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0)] = 1.0
    return mean, scale
