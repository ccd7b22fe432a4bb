"""The ``skmoe`` command: mixtures of experts on CSV and Parquet tables, from the shell.

``skmoe fit`` fits a mixture to a table and saves it with joblib, ``predict``
applies a saved model to new rows, ``evaluate`` cross-validates a mixture
against its single expert and gradient boosting, ``inspect`` prints a saved
model's experts and gate, and ``demo`` runs the README's demonstration.
``skmoe COMMAND --help`` documents each one.

Tables are read with pandas, which the command needs and the package does
not. A user's mistake is reported as ``skmoe: error: ...`` without a
traceback: exit status 2 when the command line does not fit (an unknown
column, an option the task does not take), 1 for any other failure (a
missing or unreadable file, data the model refuses).
"""

import argparse
import contextlib
import difflib
import importlib
import os
import sys
import textwrap
import time
import warnings

import joblib
import numpy as np
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import GammaRegressor, PoissonRegressor, Ridge
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from . import __version__, _demo
from ._classification import MixtureOfExpertsClassifier
from ._regression import MixtureOfExpertsRegressor
from .exceptions import ExpertFitError
from .experts import WeightedLeastSquares, WeightedLogisticRegression
from .inspection import expert_coefficients, gate_coefficients

# What 'skmoe fit' writes: a dict with this "format" and "format_version".
_FORMAT = "skmoe-cli-model"
_FORMAT_VERSION = 1

# --task auto: a whole-number target with at most this many values is a class label.
_MAX_AUTO_CLASSES = 10

# Expert names: the tasks each serves (its default first) and its line in --help.
_EXPERTS = {
    "linear": (("regression",), "least squares"),
    "ridge": (("regression",), "ridge regression (scikit-learn's Ridge, alpha=1)"),
    "poisson": (("regression",), "Poisson GLM, log link, for counts (Poisson likelihood)"),
    "gamma": (("regression",), "gamma GLM, log link, for positive targets (gamma likelihood)"),
    "logistic": (("classification",), "multinomial logistic regression"),
    "tree": (("regression", "classification"), "decision tree, depth <= 4, leaves >= 20 rows"),
    "hgb": (("regression", "classification"), "histogram gradient boosting"),
}

_LIKELIHOODS = ("gaussian", "poisson", "gamma", "student_t")

# Compression suffixes pandas reads by itself, skipped to find the table's kind.
_COMPRESSION = (".gz", ".bz2", ".xz", ".zip", ".zst")
_TABLE_KINDS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}

_COLUMNS_HELP = f"""\
how columns are used:
  Every column but the target (and those given to --drop) is a feature.
  Numeric columns are numbers. Any other column (text; true/false with gaps)
  is categorical: the gate one-hot encodes it, 'hgb' experts take it as a
  category, other experts get it one-hot encoded. A category that was not in
  the training data counts as missing at prediction.
  Missing values (empty cells, NA, NaN): the softmax and hme gates fill in
  the column's mean and add a column saying which values were missing, the
  tree gate and 'hgb' experts split on them as they are, other experts get
  the mean plus the same indicator column. New data may have missing values
  only in columns that had some in the training data, unless the gate is a
  tree and the experts 'hgb'. Rows whose target is missing are dropped.

--task auto (the default):
  regression when --likelihood is given or --expert is linear, ridge,
  poisson or gamma; classification when --expert is logistic; otherwise
  classification when the target is not numeric (text, true/false) or holds
  whole numbers with at most {_MAX_AUTO_CLASSES} distinct values, regression otherwise.

experts (--expert):
  regression:      linear (the default), ridge, poisson, gamma, tree, hgb
  classification:  logistic (the default), tree, hgb
""" + "\n".join(f"  {name:<9} {description}" for name, (_, description) in _EXPERTS.items())


class CommandError(Exception):
    """A failure the user can fix, reported as ``skmoe: error: <message>``.

    Parameters
    ----------
    message : str
        What went wrong, and how to fix it when that is not obvious.
    status : int, default=1
        The exit status: 2 for a command line that does not fit (usage),
        1 otherwise.
    """

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


def _usage_error(message):
    return CommandError(message, status=2)


# ----------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------


def _pandas():
    try:
        import pandas
    except ImportError:
        raise CommandError(
            "the skmoe command reads tables with pandas, which is not installed: "
            "pip install pandas"
        ) from None
    return pandas


def _table_kind(path):
    """``"csv"``, ``"tsv"`` or ``"parquet"``, from the file name; a usage error otherwise."""
    name = os.path.basename(str(path)).lower()
    for suffix in _COMPRESSION:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    kind = _TABLE_KINDS.get(os.path.splitext(name)[1])
    if kind is None:
        raise _usage_error(
            f"{path}: unsupported file type; give a .csv or .tsv file (compressed or not) "
            "or a .parquet file"
        )
    return kind


def _read_table(path, text_columns=()):
    """Read a CSV, TSV or Parquet table; ``text_columns`` are read as text from CSV."""
    pd = _pandas()
    kind = _table_kind(path)
    if not os.path.exists(path):
        raise CommandError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CommandError(f"{path} is a directory, not a table")
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
        else:
            # Read a categorical column as text, as at fit, even where its new
            # values all look like numbers.
            frame = pd.read_csv(
                path,
                sep="\t" if kind == "tsv" else ",",
                dtype={name: str for name in text_columns} or None,
            )
    except ImportError:
        raise CommandError(
            f"{path}: reading Parquet files needs pyarrow, which is not installed: "
            "pip install pyarrow"
        ) from None
    except UnicodeDecodeError as error:
        raise CommandError(f"{path} is not a UTF-8 text table ({error.reason})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise CommandError(f"cannot read {path}: {error}") from None
    if frame.shape[0] == 0:
        raise CommandError(f"{path} has no rows")
    return frame


def _write_table(frame, path):
    """Write to ``path`` (CSV, TSV or Parquet by its name), or CSV to stdout when None."""
    if path is None:
        frame.to_csv(sys.stdout, index=False)
        return
    kind = _table_kind(path)
    try:
        if kind == "parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, sep="\t" if kind == "tsv" else ",", index=False)
    except ImportError:
        raise CommandError(
            f"{path}: writing Parquet files needs pyarrow, which is not installed: "
            "pip install pyarrow"
        ) from None
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror or error}") from None


def _check_columns(frame, names, path, what):
    """A usage error naming the first of ``names`` missing from ``frame``, with close matches."""
    columns = [str(name) for name in frame.columns]
    for name in names:
        if name not in columns:
            close = difflib.get_close_matches(name, columns, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            listed = ", ".join(columns[:20]) + (", ..." if len(columns) > 20 else "")
            raise _usage_error(
                f"{what} {name!r} is not a column of {path}{hint} (its columns: {listed})"
            )


def _as_text(column):
    """The column's values as strings, missing values kept missing."""
    return column.astype(str).astype(object).where(column.notna())


def _is_numeric(column):
    """Numbers, booleans included (as 0 and 1)."""
    return _pandas().api.types.is_numeric_dtype(column)


def _is_quantity(column):
    """Numbers that can be a regression target: booleans are classes."""
    return _is_numeric(column) and not _pandas().api.types.is_bool_dtype(column)


def _column_treatment(frame, features):
    """``(numeric, categories)``: the numeric columns and each categorical column's categories."""
    numeric = [name for name in features if _is_numeric(frame[name])]
    categories = {
        name: sorted(_as_text(frame[name]).dropna().unique())
        for name in features
        if name not in numeric
    }
    return numeric, categories


def _feature_frame(frame, features, numeric, categories, path):
    """The model's input: numeric columns as floats, the others as fixed categories.

    The same conversion at fit and at prediction, so that the gate's
    encoding and the experts' see the same columns: a category the
    training data did not have becomes missing.
    """
    pd = _pandas()
    columns = {}
    for name in features:
        column = frame[name]
        if name in categories:
            text = _as_text(column)
            known = text.where(text.isin(categories[name]))
            columns[name] = pd.Categorical(known, categories=categories[name])
            continue
        if not _is_numeric(column):  # such as a number column with a typo in it
            values = pd.to_numeric(column, errors="coerce")
            bad = column[values.isna() & column.notna()]
            if len(bad):
                raise CommandError(
                    f"column {name!r} of {path} holds non-numbers (such as {bad.iloc[0]!r}) "
                    "but was numeric in the training data"
                )
            column = values
        columns[name] = column.astype(np.float64)
    return pd.DataFrame(columns, index=frame.index)


# ----------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------


def _infer_task(y, args):
    """``(task, reason)``: the task from --task, --likelihood, --expert or the target (see --help).

    ``reason`` names the option that set the task, or is None when the
    target did.
    """
    if args.task != "auto":
        return args.task, f"--task {args.task}"
    if args.likelihood is not None:
        return "regression", f"--likelihood {args.likelihood}"
    if args.expert is not None and len(_EXPERTS[args.expert][0]) == 1:
        return _EXPERTS[args.expert][0][0], f"--expert {args.expert}"
    if not _is_quantity(y):
        return "classification", None
    values = y.to_numpy(dtype=np.float64)
    if np.all(values == np.round(values)) and np.unique(values).size <= _MAX_AUTO_CLASSES:
        return "classification", None
    return "regression", None


def _expert_name(args, task):
    """The expert's name: --expert, checked against the task, else the task's default."""
    if args.expert is not None:
        tasks = _EXPERTS[args.expert][0]
        if task not in tasks:
            fitting = [name for name, (served, _) in _EXPERTS.items() if task in served]
            raise _usage_error(
                f"--expert {args.expert} is a {tasks[0]} expert; for {task} choose one of "
                f"{', '.join(fitting)}"
            )
        return args.expert
    if task == "classification":
        return "logistic"
    return args.likelihood if args.likelihood in ("poisson", "gamma") else "linear"


def _make_expert(name, task):
    """A fresh expert of the given name (see ``_EXPERTS``)."""
    regression = task == "regression"
    if name == "linear":
        return WeightedLeastSquares()
    if name == "ridge":
        return Ridge()
    if name == "poisson":  # as the regressor's default Poisson expert
        return PoissonRegressor(alpha=1e-8, solver="newton-cholesky")
    if name == "gamma":
        return GammaRegressor(alpha=1e-8, solver="newton-cholesky")
    if name == "logistic":
        return WeightedLogisticRegression(warm_start=True)
    if name == "tree":
        # Shallow: a deep tree fits its rows exactly and takes every row's responsibility.
        tree = DecisionTreeRegressor if regression else DecisionTreeClassifier
        return tree(max_depth=4, min_samples_leaf=20)
    return HistGradientBoostingRegressor() if regression else HistGradientBoostingClassifier()


def _encoded(expert, numeric, categories):
    """``expert`` behind the encoding of the categorical and missing values it cannot take."""
    parts = []
    if numeric:
        parts.append(
            (
                "numeric",
                SimpleImputer(strategy="mean", add_indicator=True, keep_empty_features=True),
                numeric,
            )
        )
    if categories:
        # Each expert sees only its own rows, so it may meet unseen categories.
        parts.append(
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                list(categories),
            )
        )
    return make_pipeline(ColumnTransformer(parts, sparse_threshold=0.0), expert)


def _make_model(setup, args, n_experts):
    """The mixture of ``n_experts`` experts described by the command line."""
    expert = _make_expert(setup["expert"], setup["task"])
    if setup["expert"] != "hgb" and (setup["categories"] or setup["missing"]):
        expert = _encoded(expert, setup["numeric"], setup["categories"])
    single = n_experts == 1  # evaluate's baseline: its gate is constant, whatever its kind
    params = dict(
        estimator=expert,
        gate="softmax" if single else args.gate,
        top_k=None if single else args.top_k,
        n_init=args.n_init,
        max_iter=args.max_iter,
        random_state=args.random_state,
        n_jobs=args.n_jobs,
    )
    if setup["task"] == "classification":
        return MixtureOfExpertsClassifier(n_experts, **params)
    return MixtureOfExpertsRegressor(n_experts, likelihood=setup["likelihood"], **params)


def _training_setup(args):
    """Read the training table and settle the task, the expert and the columns' treatment."""
    if args.top_k is not None and not 2 <= args.top_k <= args.n_experts:
        raise _usage_error(
            f"--top-k must be between 2 and --n-experts ({args.n_experts}); got {args.top_k}"
        )
    frame = _read_table(args.data)
    dropped = args.drop or []
    _check_columns(frame, [args.target], args.data, "--target")
    _check_columns(frame, dropped, args.data, "--drop")
    frame.columns = [str(name) for name in frame.columns]
    y = frame[args.target]
    if y.isna().any():
        _note(
            args,
            f"dropping {int(y.isna().sum())} row(s) of {args.data} whose target "
            f"{args.target!r} is missing",
        )
        frame, y = frame[y.notna()], y[y.notna()]
        if frame.shape[0] == 0:
            raise CommandError(f"every row of {args.data} misses the target {args.target!r}")
    task, reason = _infer_task(y, args)
    if task == "classification" and args.likelihood is not None:
        raise _usage_error("--likelihood applies to regression only")
    if task == "classification" and _is_quantity(y):
        values = y.to_numpy(dtype=np.float64)
        fractional = values[values != np.round(values)]
        if fractional.size:
            raise _usage_error(
                f"the target {args.target!r} holds fractional numbers (such as "
                f"{fractional[0]:g}), which are not classes, so it cannot be the target of a "
                f"classification (asked for by {reason}); for regression use --task regression, "
                "and an expert for it"
            )
    if task == "regression" and not _is_quantity(y):
        raise _usage_error(
            f"the target {args.target!r} is not numeric, so it cannot be the target of a "
            f"regression (asked for by {reason}); for classification use --task "
            "classification, and an expert for it"
        )
    features = [name for name in frame.columns if name != args.target and name not in dropped]
    if not features:
        raise _usage_error(f"{args.data} has no feature columns besides the target")
    numeric, categories = _column_treatment(frame, features)
    X = _feature_frame(frame, features, numeric, categories, args.data)
    expert = _expert_name(args, task)
    # The GLM experts come with their family, unless --likelihood says otherwise.
    likelihood = args.likelihood or (expert if expert in ("poisson", "gamma") else "gaussian")
    return {
        "task": task,
        "expert": expert,
        "likelihood": likelihood,
        "target": args.target,
        "features": features,
        "numeric": numeric,
        "categories": categories,
        "missing": bool(X.isna().to_numpy().any()),
        "X": X,
        "y": y.to_numpy(dtype=np.float64) if task == "regression" else y.to_numpy(),
    }


def _plural(count, noun):
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _describe(estimator):
    """An estimator's class, a pipeline's as its steps' classes."""
    steps = getattr(estimator, "steps", None)
    if steps is None:
        return type(estimator).__name__
    return " > ".join(_describe(step) for _, step in steps)


# ----------------------------------------------------------------------
# Saved models
# ----------------------------------------------------------------------


def _load_model(path):
    """The dict saved by ``skmoe fit`` at ``path``."""
    if not os.path.isfile(path):
        raise CommandError(f"{path}: no such file")
    try:
        saved = joblib.load(path)
    except Exception as error:  # unpickling arbitrary bytes can raise anything
        raise CommandError(
            f"cannot read {path}: it is not a model saved by 'skmoe fit' "
            f"({type(error).__name__}: {error})"
        ) from None
    if not isinstance(saved, dict) or saved.get("format") != _FORMAT:
        raise CommandError(f"{path} is not a model saved by 'skmoe fit'")
    if saved["format_version"] > _FORMAT_VERSION:
        raise CommandError(
            f"{path} was saved by a newer skmoe ({saved['skmoe_version']}); upgrade skmoe "
            "to read it"
        )
    return saved


# ----------------------------------------------------------------------
# Messages and progress
# ----------------------------------------------------------------------


def _progress_level(args):
    """0 quiet, 1 progress (the default on a terminal), 2 every EM iteration (--verbose)."""
    if args.quiet:
        return 0
    if args.verbose:
        return 2
    return 1 if sys.stderr.isatty() else 0


def _note(args, message):
    if not args.quiet:
        print(f"skmoe: note: {message}", file=sys.stderr)


def _progress(args, message):
    if _progress_level(args):
        print(message, file=sys.stderr, flush=True)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"skmoe: warning: {category.__name__}: {message}", file=sys.stderr)


# ----------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------


def _fit(args):
    # A model path that cannot be written fails before the fit, not after it.
    if os.path.isdir(args.output):
        raise CommandError(f"{args.output} is a directory; give the model file's name")
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        raise CommandError(f"cannot write {args.output}: its directory does not exist")
    started = time.perf_counter()
    setup = _training_setup(args)
    X, y = setup["X"], setup["y"]
    _progress(
        args,
        f"read {args.data}: {X.shape[0]} rows, "
        f"{_plural(X.shape[1], 'feature column')} "
        f"({time.perf_counter() - started:.2g} s)",
    )
    model = _make_model(setup, args, args.n_experts)
    model.set_params(verbose=_progress_level(args))
    started = time.perf_counter()
    # The estimators report EM's progress on stdout; stdout is the command's output.
    with contextlib.redirect_stdout(sys.stderr):
        model.fit(X, y)
    seconds = time.perf_counter() - started
    model.set_params(verbose=0)
    saved = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "skmoe_version": __version__,
        "model": model,
        "task": setup["task"],
        "target": setup["target"],
        "expert": setup["expert"],
        "features": setup["features"],
        "numeric": setup["numeric"],
        "categories": setup["categories"],
        "training": {
            "file": os.path.abspath(args.data),
            "rows": X.shape[0],
            "fit_seconds": seconds,
            "gate_share": model.predict_gate(X).mean(axis=0),
        },
    }
    try:
        joblib.dump(saved, args.output, compress=3)
    except OSError as error:
        raise CommandError(f"cannot write {args.output}: {error.strerror or error}") from None
    if not args.quiet:
        status = "converged" if model.converged_ else "did not converge"
        print(
            f"{setup['task']} of {setup['target']!r} on {X.shape[0]} rows, "
            f"{_plural(X.shape[1], 'feature column')}: "
            f"{_plural(args.n_experts, setup['expert'] + ' expert')}, "
            f"{args.gate} gate; EM {status} in {model.n_iter_} iterations ({seconds:.2f} s), "
            f"mean log-likelihood {model.log_likelihood_:.4f}. Saved to {args.output}"
        )


def _predict(args):
    if args.output is not None:
        _table_kind(args.output)  # a bad output name fails before any work
    if args.level is not None and not 0 < args.level < 1:
        raise _usage_error(f"--level must be between 0 and 1 (exclusive); got {args.level}")
    saved = _load_model(args.model)
    if args.level is not None and saved["task"] == "classification":
        raise _usage_error("--level applies to regression models only")
    level = 0.9 if args.level is None else args.level
    frame = _read_table(args.data, text_columns=list(saved["categories"]))
    frame.columns = [str(name) for name in frame.columns]
    absent = [name for name in saved["features"] if name not in frame.columns]
    if absent:
        raise CommandError(
            f"{args.data} lacks the column(s) {', '.join(map(repr, absent))} that the model "
            "was fitted on"
        )
    X = _feature_frame(frame, saved["features"], saved["numeric"], saved["categories"], args.data)
    model, table = saved["model"], _pandas().DataFrame(index=range(X.shape[0]))
    if saved["task"] == "regression":
        mean, std = model.predict(X, return_std=True)
        bounds = model.predict_interval(X, confidence=level)
        percent = f"{100 * level:g}"
        table["prediction"], table["std"] = mean, std
        table[f"lower_{percent}"], table[f"upper_{percent}"] = bounds[:, 0], bounds[:, 1]
    else:
        proba = model.predict_proba(X)
        table["prediction"] = model.classes_[np.argmax(proba, axis=1)]
        for label, column in zip(model.classes_, proba.T):
            table[f"proba_{label}"] = column
    _write_table(table, args.output)
    if args.output is not None:
        _progress(args, f"wrote {X.shape[0]} predictions to {args.output}")


def _evaluate(args):
    setup = _training_setup(args)
    X, y, task = setup["X"], setup["y"], setup["task"]
    if task == "classification":
        labels, counts = np.unique(y.astype(str), return_counts=True)
        if counts.min() < args.cv:
            raise _usage_error(
                f"class {labels[np.argmin(counts)]!r} has only {counts.min()} row(s), fewer "
                f"than the {args.cv} folds; use --cv {max(2, counts.min())} or fewer"
            )
        folds = StratifiedKFold(args.cv, shuffle=True, random_state=args.random_state)
        boosting = HistGradientBoostingClassifier(random_state=args.random_state)
    else:
        folds = KFold(args.cv, shuffle=True, random_state=args.random_state)
        boosting = HistGradientBoostingRegressor(random_state=args.random_state)
    name = setup["expert"]
    models = [
        (f"mixture of {args.n_experts} {name} experts", _make_model(setup, args, args.n_experts)),
        (f"single {name} expert", _make_model(setup, args, 1)),
        ("gradient boosting (HGB)", boosting),
    ]
    scores = {label: [] for label, _ in models}
    log_liks = {label: [] for label, _ in models}
    seconds = {label: [] for label, _ in models}
    for fold, (train, test) in enumerate(folds.split(X, y), start=1):
        timing = []
        for label, template in models:
            model = clone(template)
            started = time.perf_counter()
            model.fit(X.iloc[train], y[train])
            seconds[label].append(time.perf_counter() - started)
            scores[label].append(model.score(X.iloc[test], y[test]))
            log_liks[label].append(_held_out_log_likelihood(model, X.iloc[test], y[test]))
            timing.append(f"{label} {seconds[label][-1]:.2f} s")
        _progress(args, f"fold {fold}/{args.cv}: " + ", ".join(timing))

    metric = "R2" if task == "regression" else "accuracy"
    print(
        f"{args.cv}-fold cross-validation, {task} of {args.target!r} on {X.shape[0]} rows "
        f"({metric} and mean log p(y|x) on the held-out rows)"
    )
    print(f"{'model':<32}{metric:>18}{'log-likelihood':>16}{'fit (s)':>10}")
    for label, _ in models:
        score = f"{np.mean(scores[label]):.3f} +/- {np.std(scores[label]):.3f}"
        rows = [values for values in log_liks[label] if values is not None]
        # Per row over all folds: folds of unequal size weigh by their rows.
        log_lik = f"{np.concatenate(rows).mean():.4f}" if rows else ""
        print(f"{label:<32}{score:>18}{log_lik:>16}{np.mean(seconds[label]):>10.2f}")


def _held_out_log_likelihood(model, X, y):
    """``log p(y | x)`` of each held-out row; None for a regressor without a noise model."""
    if hasattr(model, "log_likelihood"):
        return model.log_likelihood(X, y)
    if not hasattr(model, "predict_proba"):
        return None
    proba = model.predict_proba(X)
    with np.errstate(divide="ignore"):  # a zero probability of the true class is -inf
        return np.log(proba[np.arange(len(y)), np.searchsorted(model.classes_, y)])


def _inspect(args):
    pd = _pandas()
    saved = _load_model(args.model)
    model, training = saved["model"], saved["training"]
    print(
        f"{args.model}: {type(model).__name__} (skmoe {saved['skmoe_version']}), "
        f"{saved['task']} of {saved['target']!r}"
    )
    print(
        f"trained on {training['rows']} rows of {training['file']} in "
        f"{training['fit_seconds']:.2f} s; EM "
        f"{'converged' if model.converged_ else 'did not converge'} after {model.n_iter_} "
        f"iterations, mean log-likelihood {model.log_likelihood_:.4f}"
    )
    print(f"numeric columns: {', '.join(saved['numeric']) or '(none)'}")
    categorical = [
        f"{name} ({len(levels)} categories)" for name, levels in saved["categories"].items()
    ]
    print(f"categorical columns: {', '.join(categorical) or '(none)'}")
    if saved["task"] == "classification":
        print(f"classes: {', '.join(map(str, model.classes_))}")
    gate = model.gate if isinstance(model.gate, str) else type(model.gate).__name__
    print(
        f"gate: {gate}; top_k: {model.top_k}"
        + (f"; likelihood: {model.likelihood}" if saved["task"] == "regression" else "")
    )

    experts = pd.DataFrame(
        {
            "expert": [f"expert {k}" for k in range(len(model.experts_))],
            "estimator": [_describe(expert) for expert in model.experts_],
            "share": training["gate_share"],
        }
    )
    for name, values in getattr(model, "likelihood_params_", {}).items():
        experts[name] = np.ravel(values)
    print(f"\nexperts ({saved['expert']}); share: mean gate probability on the training rows")
    print(experts.to_string(index=False, float_format=lambda value: f"{value:.4g}"))
    with contextlib.suppress(ValueError):  # only linear experts on the raw columns have one
        table = expert_coefficients(model)
        print("\nexpert coefficients")
        print(table.to_string(float_format=lambda value: f"{value:.4g}"))

    if hasattr(model.gate_, "export_text"):
        print(
            "\ngate rules (each leaf: its most probable expert, then every expert's probability)"
        )
        print(model.gate_.export_text())
    else:
        print(
            "\ngate coefficients (log-odds per unit of each column; only differences "
            "between experts' columns matter)"
        )
        print(gate_coefficients(model).to_string(float_format=lambda value: f"{value:.4g}"))


def _run_demo(args):
    try:
        importlib.import_module("matplotlib.figure")
    except ImportError:
        figure = None
    else:
        figure = os.path.join(args.output_dir, _demo.FIGURE_NAME)
    results = _demo.run(args.n_samples)
    if figure is None:
        _note(args, "matplotlib is not installed, so no figure was drawn (pip install matplotlib)")
        return
    try:
        os.makedirs(args.output_dir, exist_ok=True)
        _demo.save_figure(results, figure)
    except OSError as error:
        raise CommandError(f"cannot write {figure}: {error.strerror or error}") from None
    print(f"\nFigure: {figure}")


# ----------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------


def _int_at_least(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is less than {minimum}")
        return value

    return parse


def _wrap(text):
    """``text`` wrapped to 79 columns: the help's layout is raw, to keep the epilogs' tables."""
    return "\n\n".join(textwrap.fill(part, 79) for part in text.split("\n\n"))


def _parser():
    """The argument parser of ``skmoe`` and its subcommands."""
    formatter = argparse.RawDescriptionHelpFormatter

    output = argparse.ArgumentParser(add_help=False)
    chatter = output.add_mutually_exclusive_group()
    chatter.add_argument(
        "-q", "--quiet", action="store_true", help="print nothing but results and errors"
    )
    chatter.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="report progress on stderr even when it is not a terminal "
        "(by default only when it is), and every EM iteration of a fit",
    )

    training = argparse.ArgumentParser(add_help=False)
    training.add_argument(
        "data",
        help="training table: .csv, .tsv (optionally compressed: "
        ".gz, .bz2, .xz, .zip, .zst) or .parquet (needs pyarrow)",
    )
    training.add_argument(
        "--target", "-t", required=True, metavar="COLUMN", help="the column to predict"
    )
    training.add_argument(
        "--drop",
        action="append",
        metavar="COLUMN",
        help="a column not to use as a feature, such as an identifier (repeat for several)",
    )
    training.add_argument(
        "--task",
        choices=("auto", "regression", "classification"),
        default="auto",
        help="default: auto (see below)",
    )
    training.add_argument(
        "--n-experts",
        "-k",
        type=_int_at_least(1),
        default=2,
        metavar="K",
        help="number of experts (default: 2)",
    )
    training.add_argument(
        "--expert",
        choices=list(_EXPERTS),
        metavar="NAME",
        help="the experts' model (see below; default: logistic for "
        "classification; for regression linear, or the GLM of "
        "--likelihood poisson or gamma)",
    )
    training.add_argument(
        "--gate",
        choices=("softmax", "tree", "hme"),
        default="softmax",
        help="softmax: multinomial logit; tree: a decision tree (its rules "
        "show in 'skmoe inspect'); hme: hierarchical mixture of experts "
        "(default: softmax)",
    )
    training.add_argument(
        "--top-k",
        type=_int_at_least(2),
        metavar="K",
        help="route each row to its K most probable experts only, in "
        "training and prediction (2 <= K <= --n-experts; default: all)",
    )
    training.add_argument(
        "--likelihood",
        choices=_LIKELIHOODS,
        help="regression only: the target's distribution around each "
        "expert's prediction (default: gaussian, or the family of "
        "--expert poisson or gamma)",
    )
    training.add_argument(
        "--n-init",
        type=_int_at_least(1),
        default=1,
        metavar="N",
        help="EM starts; the best is kept (default: 1)",
    )
    training.add_argument(
        "--max-iter",
        type=_int_at_least(1),
        default=100,
        metavar="N",
        help="EM iterations at most (default: 100)",
    )
    training.add_argument(
        "--random-state",
        type=int,
        default=0,
        metavar="N",
        help="seed, for reproducible fits (default: 0)",
    )
    training.add_argument(
        "--n-jobs",
        type=int,
        metavar="N",
        help="experts fitted in parallel (-1: all processors; default: 1)",
    )

    parser = argparse.ArgumentParser(
        prog="skmoe",
        formatter_class=formatter,
        description=_wrap(
            "Mixtures of experts on tables (CSV, TSV, Parquet): fit a model, predict "
            "with it, compare it by cross-validation, look inside it."
        ),
        epilog="examples:\n"
        "  skmoe fit houses.csv --target price -o model.joblib\n"
        "  skmoe predict model.joblib new_houses.csv -o predictions.csv\n"
        "  skmoe evaluate houses.csv --target price --n-experts 3 --cv 5\n"
        "  skmoe inspect model.joblib\n"
        "  skmoe demo --output-dir figures\n\n"
        "'skmoe COMMAND --help' describes a command. Exit status: 0 success, 2 a "
        "command line that\ndoes not fit (unknown column or option), 1 any other "
        "failure.",
    )
    parser.add_argument("--version", action="version", version=f"skmoe {__version__}")
    commands = parser.add_subparsers(
        title="commands", dest="command", required=True, metavar="COMMAND"
    )

    fit = commands.add_parser(
        "fit",
        parents=[training, output],
        formatter_class=formatter,
        help="fit a mixture of experts to a table and save it",
        description=_wrap(
            "Fit a mixture of experts by EM to predict one column of a table from the "
            "others, and save it with joblib (the model, the target's name, the task "
            "and the columns with their treatment, which 'skmoe predict' checks new "
            "data against). Progress (EM iterations, log-likelihood, time) goes to "
            "stderr on a terminal."
        ),
        epilog=_COLUMNS_HELP + "\n\nexamples:\n"
        "  skmoe fit houses.csv --target price -o model.joblib\n"
        "  skmoe fit houses.csv -t price --n-experts 4 --expert hgb --gate tree "
        "-o model.joblib\n"
        "  skmoe fit visits.parquet -t n_visits --likelihood poisson --drop id "
        "-o visits.joblib\n"
        "  skmoe fit churn.csv -t churned --task classification -k 3 -o churn.joblib",
    )
    fit.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="MODEL",
        help="the model file to write (joblib; such as model.joblib)",
    )
    fit.set_defaults(run=_fit)

    predict = commands.add_parser(
        "predict",
        parents=[output],
        formatter_class=formatter,
        help="predict new rows with a saved model",
        description=_wrap(
            "Predict each row of a table with a model saved by 'skmoe fit'. The table "
            "needs the model's feature columns (others, such as the target, are "
            "ignored), treated as at fit. Output: one row per input row, in order. "
            "Regression: 'prediction' (the mean), 'std' (the predictive standard "
            "deviation) and 'lower_90', 'upper_90' (a central 90% interval of the "
            "predictive distribution; --level changes it). Classification: "
            "'prediction' (the most probable class) and 'proba_<class>' for each "
            "class. Load only model files you trust: joblib runs code from them."
        ),
        epilog="examples:\n"
        "  skmoe predict model.joblib new_houses.csv -o predictions.csv\n"
        "  skmoe predict model.joblib new_houses.csv --level 0.5 | head",
    )
    predict.add_argument("model", help="a model file written by 'skmoe fit'")
    predict.add_argument("data", help="the rows to predict: .csv, .tsv or .parquet")
    predict.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write the predictions (.csv, .tsv or .parquet; default: CSV on stdout)",
    )
    predict.add_argument(
        "--level",
        type=float,
        metavar="P",
        help="regression: probability inside the interval, in (0, 1) (default: 0.9)",
    )
    predict.set_defaults(run=_predict)

    evaluate = commands.add_parser(
        "evaluate",
        parents=[training, output],
        formatter_class=formatter,
        help="cross-validate a mixture against its single expert and gradient boosting",
        description=_wrap(
            "Cross-validate the mixture the options describe against its single "
            "expert (the same model with one expert) and gradient boosting "
            "(scikit-learn's HistGradientBoosting), and print for each the held-out "
            "R2 (regression) or accuracy (classification), the mean held-out "
            "log-likelihood log p(y|x) (none for gradient boosting's regressor, "
            "which has no noise model) and the mean fit time."
        ),
        epilog=_COLUMNS_HELP + "\n\nexamples:\n"
        "  skmoe evaluate houses.csv --target price\n"
        "  skmoe evaluate houses.csv -t price --n-experts 4 --expert ridge --cv 10",
    )
    evaluate.add_argument(
        "--cv",
        type=_int_at_least(2),
        default=5,
        metavar="FOLDS",
        help="cross-validation folds (stratified for classification; default: 5)",
    )
    evaluate.set_defaults(run=_evaluate)

    inspect = commands.add_parser(
        "inspect",
        formatter_class=formatter,
        help="print a saved model's columns, experts and gate",
        description=_wrap(
            "Print what a model saved by 'skmoe fit' is made of: its columns and "
            "their treatment, EM's result, each expert with its share (the mean gate "
            "probability on the training rows) and fitted noise parameters, the "
            "experts' coefficients when they are linear models of the columns, and "
            "the gate: its coefficients per column (softmax, hme) or its rules (tree). Load "
            "only model files you trust: joblib runs code from them."
        ),
        epilog="examples:\n  skmoe inspect model.joblib",
    )
    inspect.add_argument("model", help="a model file written by 'skmoe fit'")
    inspect.set_defaults(run=_inspect)

    demo = commands.add_parser(
        "demo",
        parents=[output],
        formatter_class=formatter,
        help="run the demonstration on generated data",
        description=_wrap(
            "Fit mixtures of experts to generated data whose target follows different "
            "linear laws in different regions, compare them with their single expert "
            "on held-out rows (regression and classification), print the table and "
            f"draw a figure, {_demo.FIGURE_NAME}, of the gates and the predictions "
            "(needs matplotlib: without it the figure is skipped)."
        ),
        epilog="examples:\n  skmoe demo\n  skmoe demo --output-dir figures --n-samples 5000",
    )
    demo.add_argument(
        "--output-dir",
        default=".",
        metavar="DIR",
        help="directory of the figure, created if needed (default: .)",
    )
    demo.add_argument(
        "--n-samples",
        type=_int_at_least(100),
        default=20_000,
        metavar="N",
        help="rows of each generated data set, a quarter held out (default: 20000)",
    )
    demo.set_defaults(run=_run_demo)
    return parser


def main(argv=None):
    """Run the ``skmoe`` command.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments after the program's name; ``sys.argv[1:]`` when None.

    Returns
    -------
    status : int
        The exit status: 0 success, 2 a command line that does not fit
        (argparse's usage errors, an unknown column, an option the task
        does not take), 1 any other failure.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors: argparse printed them
        return exit_.code
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            if args.run is not _run_demo:
                _pandas()  # first: unpickling a model may need it too
            args.run(args)
        except CommandError as error:
            print(f"skmoe: error: {error}", file=sys.stderr)
            return error.status
        except BrokenPipeError:
            # The reader of stdout left (| head): stop quietly, and keep Python's
            # final flush from failing again.
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        except KeyboardInterrupt:
            print("skmoe: interrupted", file=sys.stderr)
            return 130
        except (ValueError, ExpertFitError, OSError) as error:
            # What the estimators and pandas say of data they refuse.
            print(f"skmoe: error: {error}", file=sys.stderr)
            return 1
    return 0
