"""What each part of the mixture sees of ``X``.

The experts get ``X`` as the user gave it (a DataFrame stays a DataFrame,
sparse stays sparse, missing values stay missing), provided each expert can
take it: that is checked per expert, before any fitting. The gate gets a
numeric view:

=======================  ==========================  ===========================  =====================
input                    experts                     softmax and HME gates        tree gate
=======================  ==========================  ===========================  =====================
dense numeric            as given                    as given                     as given
missing values (NaN)     those that accept NaN       mean imputed, plus one       as given (trees split
                                                     missing-indicator column     on missing values)
                                                     per column with NaN at fit
``scipy.sparse``         those that accept sparse    CSR, never densified         CSR
pandas categorical or    those that accept them      one-hot encoded (unknown     one-hot encoded
string columns                                       categories: all zeros)
=======================  ==========================  ===========================  =====================

The gate's encoding is fitted once per ``fit`` (``gate_encoder_``; None when
the gate's columns are used as they are).
"""

import numpy as np
import scipy.sparse as sp
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.utils import get_tags
from sklearn.utils.validation import check_array, validate_data

from ._features import take_columns


def _is_dataframe(X):
    return hasattr(X, "iloc") and hasattr(X, "dtypes")


def _non_numeric_columns(X):
    """Names of a DataFrame's columns that are not numbers (categorical, string, object)."""
    return [
        name
        for name, dtype in X.dtypes.items()
        if not (dtype.kind in "biuf" and not hasattr(dtype, "categories"))
    ]


def validate_X(estimator, X, *, reset):
    """Validate ``X`` for ``fit`` (``reset=True``) or prediction; return ``(X_given, X_array)``.

    ``X_given`` is what the experts receive: a DataFrame stays one (after
    its column names and count are checked), sparse input becomes CSR
    float64, anything else a C-ordered float64 array. ``X_array`` is the
    same data as a dense float64 array, or None for sparse input and for
    DataFrames with non-numeric columns. Missing values are allowed here
    (each part checks what it can take); infinities are not.
    """
    if _is_dataframe(X) and _non_numeric_columns(X):
        validate_data(estimator, X, skip_check_array=True, reset=reset)
        if X.shape[0] == 0:
            raise ValueError(
                f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required."
            )
        numeric = X.drop(columns=_non_numeric_columns(X)).to_numpy(dtype=np.float64)
        if np.isinf(numeric).any():
            raise ValueError(
                "Input X contains infinity or a value too large for dtype('float64')."
            )
        return X, None
    try:
        X_array = validate_data(
            estimator,
            X,
            accept_sparse=("csr", "csc"),
            dtype=np.float64,
            order="C",
            ensure_all_finite="allow-nan",
            reset=reset,
        )
    except ValueError as error:
        if "could not convert" in str(error):
            raise ValueError(
                f"X has non-numeric values ({error}). Pass a pandas DataFrame whose text "
                "columns have a categorical or string dtype: each expert that accepts "
                "them gets them as they are, and the gate one-hot encodes them."
            ) from error
        raise
    if sp.issparse(X_array):
        X_array = X_array.tocsr()
        return X_array, None
    if _is_dataframe(X):
        return X, X_array
    return X_array, X_array


def has_missing(X):
    """Whether ``X`` (float array, sparse matrix or DataFrame, no inf) holds a missing value."""
    if _is_dataframe(X):
        return bool(X.isna().to_numpy().any())
    values = X.data if sp.issparse(X) else X
    # One pass without an (n, d) mask: the sum is NaN if some value is, and with
    # no inf among the values only otherwise when partial sums overflow both ways.
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.isnan(np.sum(values)):
            return False
    return bool(np.isnan(values).any())


def _first_step(expert):
    """A pipeline's first real step (what receives ``X``), recursively; else the expert."""
    while isinstance(expert, Pipeline):
        steps = [step for _, step in expert.steps if step not in (None, "passthrough")]
        if not steps:
            break
        expert = steps[0]
    return expert


def expert_accepts(expert):
    """``(nan, sparse, categorical, text)``: which kinds of input ``expert`` takes.

    ``categorical`` is pandas ``category`` columns, ``text`` other non-numeric
    (string, object) columns. Read from the scikit-learn tags of what first
    receives ``X`` (a pipeline's first step, whose tags scikit-learn does not
    propagate for missing values). Two cases the tags miss: a
    ``ColumnTransformer`` first step routes columns to its own transformers,
    so it is trusted with everything; and HistGradientBoosting models take
    ``category`` columns (not text) unless ``categorical_features=None``.
    """
    first = _first_step(expert)
    if isinstance(first, ColumnTransformer):
        return True, True, True, True
    tags = get_tags(first).input_tags
    categorical, text = tags.categorical or tags.string, tags.string
    if type(first).__name__.startswith("HistGradientBoosting"):
        categorical = first.get_params().get("categorical_features") is not None
    return tags.allow_nan, tags.sparse, categorical, text


def check_experts_accept(named_experts, X):
    """Raise a ValueError naming the first expert that cannot take ``X`` as it is."""
    missing = has_missing(X)
    sparse = sp.issparse(X)
    non_numeric = _non_numeric_columns(X) if _is_dataframe(X) else []
    categorical = [name for name in non_numeric if hasattr(X[name].dtype, "categories")]
    text = [name for name in non_numeric if name not in categorical]
    for name, expert in named_experts:
        takes_nan, takes_sparse, takes_categorical, takes_text = expert_accepts(expert)
        kind = type(expert).__name__
        if missing and not takes_nan:
            raise ValueError(
                f"Input X contains NaN, and expert {name!r} ({kind}) does not accept missing "
                "values. Impute them inside the expert (e.g. make_pipeline(SimpleImputer(), "
                f"{kind}())) or use experts that handle them, such as HistGradientBoosting "
                "models or decision trees."
            )
        if sparse and not takes_sparse:
            raise ValueError(
                f"X is a sparse matrix, and expert {name!r} ({kind}) does not accept sparse "
                "input. Use experts that do (Ridge, LogisticRegression, trees), or convert X "
                "with X.toarray() if it fits in memory."
            )
        if text and takes_categorical and not takes_text:
            raise ValueError(
                f"X has text columns {text}, and expert {name!r} ({kind}) takes categorical "
                "columns only as pandas 'category' dtype: convert them with "
                "X[columns] = X[columns].astype('category')."
            )
        if (categorical and not takes_categorical) or (text and not takes_text):
            raise ValueError(
                f"X has non-numeric columns {non_numeric}, and expert {name!r} ({kind}) does "
                "not accept them. Encode them inside the expert (a Pipeline starting with a "
                "ColumnTransformer and OneHotEncoder), use HistGradientBoosting experts with "
                "categorical dtypes, or leave them out with expert_features."
            )


def fit_gate_encoder(X_gate, accepts_nan):
    """The gate's encoding of its columns, fitted on ``X_gate``; None if they are used as given.

    See the module docstring for the treatment of each kind of input.
    """
    categorical = _non_numeric_columns(X_gate) if _is_dataframe(X_gate) else []
    impute = has_missing(X_gate) and not accepts_nan
    if categorical:
        numeric = [name for name in X_gate.columns if name not in categorical]
        encoder = ColumnTransformer(
            [
                ("numeric", _imputer() if impute else "passthrough", numeric),
                (
                    "categorical",
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                    categorical,
                ),
            ],
            sparse_threshold=0.0,
            verbose_feature_names_out=False,
        )
        return encoder.fit(X_gate)
    if impute:
        return _imputer().fit(X_gate)
    return None


def _imputer():
    # Mean imputation plus an indicator column per column with missing values,
    # so that the gate can route on missingness itself.
    return SimpleImputer(strategy="mean", add_indicator=True, keep_empty_features=True)


def gate_input(encoder, X, X_array, columns, accepts_nan):
    """The gate's view of ``columns`` of validated ``X``, as :func:`validate_X` returns it.

    Taken straight from the dense ``X_array`` when the columns need no
    encoding, so the common case costs no conversion.
    """
    if encoder is None and X_array is not None:
        view = take_columns(X_array, columns)
        check_gate_missing(view, accepts_nan)
        return view
    return gate_view(encoder, take_columns(X, columns), accepts_nan)


def gate_view(encoder, X_gate, accepts_nan):
    """The gate's numeric view of its columns: dense C-ordered float64, or CSR."""
    if encoder is not None:
        X_gate = encoder.transform(X_gate)
    if sp.issparse(X_gate):
        view = X_gate.tocsr().astype(np.float64, copy=False)
    else:
        view = check_array(
            X_gate,
            dtype=np.float64,
            order="C",
            ensure_all_finite=False,
            ensure_min_features=0,
            input_name="X",
        )
    check_gate_missing(view, accepts_nan)
    return view


def check_gate_missing(X_gate, accepts_nan):
    """Refuse NaN in the gate's numeric view when the gate learned no treatment for them."""
    if not accepts_nan and has_missing(X_gate):
        raise ValueError(
            "Input X contains NaN in a column the gate uses, which had no missing values "
            "at fit, so the gate learned no treatment for them. Impute X before predicting, "
            "fit on data with missing values in that column, or use gate='tree', which "
            "handles missing values natively."
        )


def gate_feature_names(encoder, X_gate):
    """Names of the gate's input columns, or None when ``X_gate`` has none."""
    if encoder is not None:
        return np.asarray(encoder.get_feature_names_out(), dtype=object)
    if _is_dataframe(X_gate):
        return np.asarray(X_gate.columns, dtype=object)
    return None
