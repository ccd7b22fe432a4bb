"""Column and row subsets: which features the gate and the experts see.

Classical mixtures of regressions call the gate's inputs *concomitant
variables*; they need not be the experts' regressors.
"""

import numpy as np
import scipy.sparse as sp


def resolve_columns(spec, n_features, feature_names, param_name):
    """Turn a column specification into sorted-as-given integer indices.

    Parameters
    ----------
    spec : None, or array-like of int, str or bool
        ``None`` selects every column; integers are column positions; strings
        are column names (needs a DataFrame at fit); booleans are a mask of
        length ``n_features``.
    n_features : int
    feature_names : ndarray of str or None
        ``feature_names_in_`` of the estimator, if any.
    param_name : str
        Name of the parameter, for error messages.
    """
    if spec is None:
        return np.arange(n_features)
    spec = np.asarray(spec)
    if spec.ndim != 1:
        raise ValueError(f"{param_name} must be one-dimensional; got shape {spec.shape}.")
    if spec.dtype == bool:
        if spec.shape[0] != n_features:
            raise ValueError(
                f"{param_name} is a boolean mask of length {spec.shape[0]}, but X has "
                f"{n_features} features; give one entry per feature."
            )
        return np.flatnonzero(spec)
    if spec.size == 0:
        return np.zeros(0, dtype=np.intp)
    if spec.dtype.kind in "iu":
        if spec.min() < -n_features or spec.max() >= n_features:
            raise ValueError(
                f"{param_name} has column indices outside [0, {n_features}); X has "
                f"{n_features} features."
            )
        return np.where(spec < 0, spec + n_features, spec).astype(np.intp)
    if spec.dtype.kind in "UO":
        if feature_names is None:
            raise ValueError(
                f"{param_name} names columns, but X has no feature names; pass a pandas "
                "DataFrame or give column indices."
            )
        position = {name: i for i, name in enumerate(feature_names)}
        missing = [name for name in spec if name not in position]
        if missing:
            raise ValueError(f"{param_name} names columns not in X: {missing}.")
        return np.array([position[name] for name in spec], dtype=np.intp)
    raise ValueError(
        f"{param_name} must hold column indices, column names or a boolean mask; "
        f"got dtype {spec.dtype}."
    )


def take_columns(X, columns):
    """``X[:, columns]`` of an array, sparse matrix or DataFrame.

    No copy when all columns are kept in order; a dense subset is C-ordered
    (the kernels read rows).
    """
    if columns.shape[0] == X.shape[1] and np.array_equal(columns, np.arange(X.shape[1])):
        return X
    if hasattr(X, "iloc"):
        return X.iloc[:, columns]
    if sp.issparse(X):
        return X[:, columns]
    return np.ascontiguousarray(X[:, columns])


def take_rows(X, rows):
    """``X[rows]`` of an array, sparse matrix or DataFrame (rows: mask, indices or slice)."""
    if isinstance(rows, slice) and rows == slice(None):
        return X
    if hasattr(X, "iloc"):
        return X.iloc[rows]
    if isinstance(X, np.ndarray) and not isinstance(rows, slice) and rows.dtype != bool:
        return np.take(X, rows, axis=0)  # several times faster than X[rows] on rows of X
    return X[rows]
