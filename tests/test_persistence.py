"""Saved and restored models predict exactly what the originals did.

For both estimators, each gate, sparse routing (``top_k=2`` of 3 experts),
and two kinds of fit (a numeric array with the default experts, and a
DataFrame with a pandas categorical column and HistGradientBoosting experts,
so that ``gate_encoder_`` is a ColumnTransformer), a model saved and loaded
with pickle, joblib and skops gives bit-identical outputs from every public
prediction method.

What holds of the saved bytes (the equalities are asserted below):

* ``pickle.dumps(restored) != pickle.dumps(original)``, although both hold
  the same state. Pickle writes an object met a second time as a
  back-reference to its first copy (the memo), so the bytes depend on which
  objects are *shared*, and unpickling changes that. Two instances found
  here: (1) numpy dtypes: a fitted model's float64 arrays and numpy scalars
  share numpy's canonical ``dtype('float64')``, pickled once; unpickled
  arrays get a copy (``np.dtype("f8", False, True)``) while a numpy scalar
  (the regressor's noise-variance floor) gets the canonical dtype back, so
  the restored regressor pickles two dtype objects where the original
  pickled one. (2) attribute names: the original's parameter names ("tol",
  "random_state", ...) are the same interned strings in the mixture and its
  experts; after unpickling, the mixture's ``__dict__`` keys are the strings
  read from the pickle and no longer the experts' ones. Hence the checks:
  with the memo switched off (``Pickler.fast``) the bytes are identical,
  and from the first restored copy on ``pickle.dumps`` is a fixed point.
* joblib files are a fixed point in the same way, except with the tree gate:
  scikit-learn's ``Tree`` keeps its nodes in a structured array with 7 bytes
  of padding per node that scikit-learn never sets; after a joblib round
  trip they hold arbitrary bytes, different on each load (a plain
  ``DecisionTreeRegressor`` shows the same). Compared without the padding,
  the tree gate's restored state is identical too.
"""

import functools
import io
import pickle
import warnings

import joblib
import numpy as np
import pytest
from numpy.lib import recfunctions
from numpy.testing import assert_array_equal
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from skmoe import MixtureOfExpertsClassifier, MixtureOfExpertsRegressor
from skmoe.exceptions import ExpertCollapseWarning

pd = pytest.importorskip("pandas")  # the round trips include DataFrames

KINDS = ["regressor", "classifier"]
GATES = ["softmax", "tree", "hme"]
DATA = ["array", "frame"]
CASES = [(kind, gate, data) for kind in KINDS for gate in GATES for data in DATA]
CASE_IDS = ["-".join(case) for case in CASES]


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread():
    # HistGradientBoosting's OpenMP teams spin for the cores on a loaded machine
    # (a fit here took 10 s with them, 2 s without); the outputs do not depend on it.
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def _frame(rng, n):
    return pd.DataFrame(
        {
            "size": rng.normal(size=n),
            "age": rng.uniform(0, 10, size=n),
            "colour": pd.Categorical(
                rng.choice(["red", "green", "blue"], size=n), categories=["blue", "green", "red"]
            ),
        }
    )


@functools.cache
def _problem(kind, data):
    """Training and test data: ``(X, y, X_test, y_test)``."""
    rng = np.random.default_rng(0)
    n, n_test = 150, 40
    if data == "frame":
        X, X_test = _frame(rng, n), _frame(rng, n_test)
        signal = [
            np.where(Z["colour"] == "red", 3.0, -Z["size"]) + Z["age"] / 5 for Z in (X, X_test)
        ]
    else:
        X, X_test = rng.normal(size=(n, 3)), rng.normal(size=(n_test, 3))
        signal = [np.where(Z[:, 0] > 0, 2 * Z[:, 1], -Z[:, 2]) for Z in (X, X_test)]
    noisy = [s + 0.2 * rng.normal(size=s.shape[0]) for s in signal]
    if kind == "classifier":  # three string classes
        labels = np.array(["low", "mid", "high"])
        noisy = [labels[np.digitize(s, [-0.5, 1.0])] for s in noisy]
    return X, noisy[0], X_test, noisy[1]


@functools.cache
def _fitted(kind, gate, data):
    X, y, _, _ = _problem(kind, data)
    if kind == "regressor":
        Model, HGB = MixtureOfExpertsRegressor, HistGradientBoostingRegressor
    else:
        Model, HGB = MixtureOfExpertsClassifier, HistGradientBoostingClassifier
    # HistGradientBoosting takes the categorical column as it is (categorical_features
    # defaults to "from_dtype"); the gate one-hot encodes it.
    estimator = HGB(max_iter=5, max_leaf_nodes=4, random_state=0) if data == "frame" else None
    model = Model(3, estimator=estimator, gate=gate, top_k=2, max_iter=4, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", ExpertCollapseWarning)
        model.fit(X, y)
    if data == "frame":
        assert isinstance(model.gate_encoder_, ColumnTransformer)
        assert_array_equal(model.feature_names_in_, ["size", "age", "colour"])
    else:
        assert model.gate_encoder_ is None
    return model


def _outputs(model, X, y):
    """Every public prediction method's output on ``X`` (and ``y``), by name."""
    out = {
        "predict": model.predict(X),
        "predict_gate": model.predict_gate(X),
        "predict_experts": model.predict_experts(X),
        "log_likelihood": model.log_likelihood(X, y),
        "score": np.asarray(model.score(X, y)),
    }
    if isinstance(model, MixtureOfExpertsRegressor):
        out["predict mean"], out["predict std"] = model.predict(X, return_std=True)
    else:
        out["predict_proba"] = model.predict_proba(X)
        out["predict_log_proba"] = model.predict_log_proba(X)
    return out


def _assert_same_predictions(restored, original, kind, data):
    X, y, X_test, y_test = _problem(kind, data)
    assert type(restored) is type(original)
    for X_, y_ in [(X, y), (X_test, y_test)]:
        expected, got = _outputs(original, X_, y_), _outputs(restored, X_, y_)
        assert got.keys() == expected.keys()
        for name in expected:
            assert_array_equal(got[name], expected[name], err_msg=name, strict=True)


def _padded(array):
    """Whether a structured array has padding bytes between or after its fields."""
    return array.dtype.names is not None and (
        recfunctions.repack_fields(array[:0]).dtype.itemsize < array.dtype.itemsize
    )


class _StatePickler(pickle.Pickler):
    """Pickle's bytes of an object's state alone: without the memo (so they do not
    depend on which objects are shared), and without the padding bytes of
    structured arrays (whose contents are not part of the state)."""

    def __init__(self, file):
        super().__init__(file, protocol=pickle.DEFAULT_PROTOCOL)
        self.fast = True

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray) and _padded(obj):
            return np.asarray, (recfunctions.repack_fields(obj),)
        return NotImplemented


def _state_bytes(obj):
    buffer = io.BytesIO()
    _StatePickler(buffer).dump(obj)
    return buffer.getvalue()


def _joblib_bytes(obj, path):
    joblib.dump(obj, path)
    return path.read_bytes()


@pytest.mark.parametrize("kind, gate, data", CASES, ids=CASE_IDS)
def test_pickle_round_trip_is_bit_identical(kind, gate, data):
    model = _fitted(kind, gate, data)
    restored = pickle.loads(pickle.dumps(model))
    _assert_same_predictions(restored, model, kind, data)
    # The same state, byte for byte, once the memo's sharing is left out ...
    assert _state_bytes(restored) == _state_bytes(model)
    # ... and pickling is a fixed point from the first restored copy on.
    once = pickle.dumps(restored)
    assert pickle.dumps(pickle.loads(once)) == once


@pytest.mark.parametrize("kind, gate, data", CASES, ids=CASE_IDS)
def test_joblib_round_trip_is_bit_identical(kind, gate, data, tmp_path):
    model = _fitted(kind, gate, data)
    joblib.dump(model, tmp_path / "model.joblib")
    restored = joblib.load(tmp_path / "model.joblib")
    _assert_same_predictions(restored, model, kind, data)
    assert _state_bytes(restored) == _state_bytes(model)
    if gate != "tree":  # the tree gate's node padding is not initialised (see above)
        once = _joblib_bytes(restored, tmp_path / "once.joblib")
        twice = _joblib_bytes(joblib.load(tmp_path / "once.joblib"), tmp_path / "twice.joblib")
        assert twice == once


def _skops_round_trip(model, path):
    """Dump with skops; return the untrusted types and the types outside skmoe and sklearn."""
    sio = pytest.importorskip("skops.io")
    sio.dump(model, path)
    untrusted = sio.get_untrusted_types(file=path)
    outside = [t for t in untrusted if not t.startswith(("skmoe.", "sklearn."))]
    return sio, untrusted, outside


@pytest.mark.parametrize("kind, gate, data", CASES, ids=CASE_IDS)
def test_skops_round_trip_is_bit_identical(kind, gate, data, tmp_path):
    model = _fitted(kind, gate, data)
    sio, untrusted, outside = _skops_round_trip(model, tmp_path / "model.skops")
    # The mixture and its gate are reported (and no numpy or scipy type, for
    # any of these models: skops trusts those it knows by default) ...
    assert type(model).__module__ + "." + type(model).__name__ in untrusted
    assert any(t.startswith("skmoe.gates.") for t in untrusted)
    trusted = [t for t in untrusted if t.startswith(("skmoe.", "sklearn."))]
    if data == "array":
        # ... and every other type is skmoe's or scikit-learn's.
        assert outside == []
    else:
        # With categorical columns, scikit-learn's HistGradientBoosting keeps a
        # FunctionTransformer(func=functools.partial(check_array, ...)) in its
        # _preprocessor, and skops reports functools.partial as untrusted: the
        # types outside skmoe and scikit-learn are exactly those its experts need
        # when saved on their own, and today that is functools.partial alone.
        expert_outside = set()
        for k, expert in enumerate(model.experts_):
            _, _, alone = _skops_round_trip(expert, tmp_path / f"expert{k}.skops")
            expert_outside.update(alone)
        assert outside == sorted(expert_outside)
        assert set(outside) <= {"functools.partial"}
        if outside:  # trusting only skmoe and scikit-learn types is then not enough
            with pytest.raises(
                sio.exceptions.UntrustedTypesFoundException, match="functools.partial"
            ):
                sio.load(tmp_path / "model.skops", trusted=trusted)
        trusted += outside
    restored = sio.load(tmp_path / "model.skops", trusted=trusted)
    _assert_same_predictions(restored, model, kind, data)
