"""The ``skmoe`` command (skmoe._cli): every subcommand end to end on temporary files.

Most tests call ``main([...])`` in-process; a few run ``python -m skmoe``
in a subprocess to check exit statuses and that no traceback reaches the
user.
"""

import argparse
import contextlib
import io
import os
import subprocess
import sys

import joblib
import numpy as np
import pytest
from numpy.testing import assert_allclose
from threadpoolctl import threadpool_limits

from skmoe._cli import _infer_task, main

pd = pytest.importorskip("pandas")


@pytest.fixture(autouse=True)
def one_thread():
    # The test machine is shared: OpenMP threads competing for its cores make
    # gradient boosting orders of magnitude slower.
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Small tables in a temporary directory: their paths by name."""
    folder = tmp_path_factory.mktemp("tables")
    rng = np.random.default_rng(0)
    n = 240
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    city = rng.choice(["north", "south", "east"], n)
    y = np.where(x1 > 0, 2 * x2 + 1, -x2) + 1.5 * (city == "north") + 0.2 * rng.normal(size=n)

    plain = pd.DataFrame({"x1": x1, "x2": x2, "y": y})
    plain.to_csv(folder / "plain.csv", index=False)
    plain.drop(columns="y").iloc[:40].to_csv(folder / "plain_new.csv", index=False)

    houses = pd.DataFrame({"id": np.arange(n), "x1": x1, "x2": x2, "city": city, "price": y})
    houses.loc[rng.choice(n, 15, replace=False), "x2"] = np.nan
    houses.loc[[3, 7], "price"] = np.nan
    houses.to_csv(folder / "houses.csv", index=False)
    new = houses.drop(columns="price").iloc[:30].copy()
    new.loc[0, "city"] = "west"  # not seen at fit
    new.to_csv(folder / "houses_new.csv", index=False)

    logit = np.where(x1 > 0, 3.0, -3.0) * x2
    label = np.where(rng.uniform(size=n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    clf = pd.DataFrame({"x1": x1, "x2": x2, "label": label})
    clf.to_csv(folder / "clf.csv", index=False)

    rate = np.exp(0.5 + np.where(x1 > 0, x2, -x2))
    pd.DataFrame({"x1": x1, "x2": x2, "visits": rng.poisson(rate)}).to_csv(
        folder / "counts.csv", index=False
    )
    return {
        name: str(folder / f"{name}.csv")
        for name in ["plain", "plain_new", "houses", "houses_new", "clf", "counts"]
    } | {"dir": folder}


@pytest.fixture(scope="module")
def plain_model(data):
    path = str(data["dir"] / "plain.joblib")
    assert main(["fit", data["plain"], "--target", "y", "-k", "2", "-q", "-o", path]) == 0
    return path


@pytest.fixture(scope="module")
def houses_model(data):
    """A model of a table with a text column, missing values and missing targets.

    Returns the model's path and what ``skmoe fit`` printed on stdout and stderr.
    """
    path = str(data["dir"] / "houses.joblib")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        # Few iterations, to be quick: EM's warning that it did not converge is expected.
        status = main(
            ["fit", data["houses"], "-t", "price", "--drop", "id", "--max-iter", "20", "-o", path]
        )
    assert status == 0
    return path, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def clf_model(data):
    path = str(data["dir"] / "clf.joblib")
    assert main(["fit", data["clf"], "-t", "label", "-q", "-o", path]) == 0
    return path


# ----------------------------------------------------------------------
# fit and predict
# ----------------------------------------------------------------------


def test_fit_saves_model_and_metadata(plain_model):
    saved = joblib.load(plain_model)
    assert saved["task"] == "regression" and saved["target"] == "y"
    assert saved["features"] == ["x1", "x2"] and saved["categories"] == {}
    assert saved["model"].n_experts == 2
    assert_allclose(saved["training"]["gate_share"].sum(), 1.0)


def test_predict_regression_matches_the_model(data, plain_model, tmp_path):
    out = tmp_path / "pred.csv"
    assert main(["predict", plain_model, data["plain_new"], "-o", str(out)]) == 0
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["prediction", "std", "lower_90", "upper_90"]
    assert len(pred) == 40
    assert np.isfinite(pred.to_numpy()).all()

    model = joblib.load(plain_model)["model"]
    X = pd.read_csv(data["plain_new"])
    mean, std = model.predict(X, return_std=True)
    assert_allclose(pred["prediction"], mean, rtol=1e-10)
    assert_allclose(pred["std"], std, rtol=1e-10)
    assert_allclose(pred[["lower_90", "upper_90"]], model.predict_interval(X, 0.9), rtol=1e-10)


def test_predict_level_and_stdout(data, plain_model, capsys):
    assert main(["predict", plain_model, data["plain_new"], "--level", "0.5"]) == 0
    pred = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(pred.columns) == ["prediction", "std", "lower_50", "upper_50"]
    assert len(pred) == 40
    model = joblib.load(plain_model)["model"]
    wide = model.predict_interval(pd.read_csv(data["plain_new"]), 0.9)
    assert ((pred["upper_50"] - pred["lower_50"]) < wide[:, 1] - wide[:, 0]).all()


def test_categorical_and_missing_values(data, houses_model, tmp_path):
    path, out, err = houses_model
    assert "dropping 2 row(s)" in err  # the rows without a target
    assert "skmoe: warning: ConvergenceWarning: EM did not converge" in err
    assert "238 rows" in out and "Saved to" in out
    saved = joblib.load(path)
    assert saved["features"] == ["x1", "x2", "city"]
    assert saved["numeric"] == ["x1", "x2"]
    assert saved["categories"] == {"city": ["east", "north", "south"]}
    # Linear experts cannot take text or NaN: they get them encoded.
    assert type(saved["model"].experts_[0]).__name__ == "Pipeline"

    out = tmp_path / "pred.csv"
    assert main(["predict", path, data["houses_new"], "-o", str(out)]) == 0
    pred = pd.read_csv(out)
    assert len(pred) == 30 and np.isfinite(pred.to_numpy()).all()


def test_hgb_experts_take_categories_as_they_are(data, tmp_path):
    path = str(tmp_path / "hgb.joblib")
    assert (
        main(
            [
                "fit",
                data["houses"],
                "-t",
                "price",
                "--drop",
                "id",
                "--expert",
                "hgb",
                "--max-iter",
                "2",
                "-q",
                "-o",
                path,
            ]
        )
        == 0
    )
    model = joblib.load(path)["model"]
    assert type(model.experts_[0]).__name__ == "HistGradientBoostingRegressor"


@pytest.mark.parametrize("options", [["--expert", "poisson"], ["--likelihood", "poisson"]])
def test_count_target(options, data, tmp_path):
    path = str(tmp_path / "m.joblib")
    assert main(["fit", data["counts"], "-t", "visits", "-q", "-o", path] + options) == 0
    model = joblib.load(path)["model"]
    assert model.likelihood == "poisson"
    assert type(model.experts_[0]).__name__ == "PoissonRegressor"
    out = tmp_path / "pred.csv"
    assert main(["predict", path, data["counts"], "-o", str(out)]) == 0
    pred = pd.read_csv(out)
    assert (pred["prediction"] > 0).all() and (pred["lower_90"] >= 0).all()


def test_sparse_routing_and_more_experts(data, tmp_path):
    path = str(tmp_path / "m.joblib")
    assert (
        main(
            [
                "fit",
                data["plain"],
                "-t",
                "y",
                "-k",
                "3",
                "--top-k",
                "2",
                "--expert",
                "ridge",
                "-q",
                "-o",
                path,
            ]
        )
        == 0
    )
    model = joblib.load(path)["model"]
    assert model.top_k == 2 and len(model.experts_) == 3
    assert type(model.experts_[0]).__name__ == "Ridge"


def test_classification(data, clf_model, tmp_path):
    saved = joblib.load(clf_model)
    assert saved["task"] == "classification"  # a text target
    out = tmp_path / "pred.csv"
    assert main(["predict", clf_model, data["clf"], "-o", str(out)]) == 0
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["prediction", "proba_no", "proba_yes"]
    assert len(pred) == 240
    assert_allclose(pred[["proba_no", "proba_yes"]].sum(axis=1), 1.0)
    X = pd.read_csv(data["clf"]).drop(columns="label")
    assert (pred["prediction"].to_numpy() == saved["model"].predict(X)).all()


@pytest.mark.parametrize(
    "values, options, task",
    [
        (["a", "b", "a"], {}, "classification"),
        ([True, False, True], {}, "classification"),
        ([0, 1, 2, 1], {}, "classification"),
        ([0.0, 1.0, 2.0, 1.0], {}, "classification"),
        (np.arange(11), {}, "regression"),  # more whole numbers than the rule's 10 classes
        ([0.5, 1.0, 2.0], {}, "regression"),
        ([0, 1, 2, 1], {"likelihood": "poisson"}, "regression"),
        ([0, 1, 2, 1], {"expert": "ridge"}, "regression"),
        ([0.5, 1.0, 2.0], {"expert": "logistic"}, "classification"),
        ([0.5, 1.0, 2.0], {"expert": "tree"}, "regression"),
        ([0, 1, 2, 1], {"task": "regression"}, "regression"),
    ],
)
def test_auto_task(values, options, task):
    args = argparse.Namespace(**({"task": "auto", "likelihood": None, "expert": None} | options))
    assert _infer_task(pd.Series(values), args)[0] == task


# ----------------------------------------------------------------------
# evaluate, inspect, demo
# ----------------------------------------------------------------------


def test_evaluate_regression(data, capsys):
    assert main(["evaluate", data["plain"], "-t", "y", "--cv", "3", "--verbose"]) == 0
    captured = capsys.readouterr()
    assert "fold 3/3: mixture of 2 linear experts" in captured.err  # progress, on stderr
    lines = captured.out.splitlines()
    assert lines[0].startswith("3-fold cross-validation, regression of 'y' on 240 rows")
    # label: score, "+/-", spread, held-out log-likelihood (none for HGB's regressor), time
    rows = {line.split("  ")[0]: line.split("  ", 1)[1].split() for line in lines[2:]}
    assert set(rows) == {
        "mixture of 2 linear experts",
        "single linear expert",
        "gradient boosting (HGB)",
    }
    mixture, single = rows["mixture of 2 linear experts"], rows["single linear expert"]
    assert len(mixture) == len(single) == 5 and len(rows["gradient boosting (HGB)"]) == 4
    assert float(mixture[0]) > float(single[0]) + 0.1  # R2: the regimes need two experts
    assert float(mixture[3]) > float(single[3])  # held-out log-likelihood


def test_evaluate_with_hme_gate_and_top_k(data, capsys):
    # The single expert takes neither option: one expert has nothing to gate.
    assert (
        main(
            [
                "evaluate",
                data["plain"],
                "-t",
                "y",
                "--cv",
                "2",
                "-k",
                "3",
                "--gate",
                "hme",
                "--top-k",
                "2",
                "-q",
            ]
        )
        == 0
    )
    assert "single linear expert" in capsys.readouterr().out


def test_evaluate_classification(data, capsys):
    assert main(["evaluate", data["clf"], "-t", "label", "--cv", "2", "-q"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out
    boosting = next(line for line in out.splitlines() if line.startswith("gradient"))
    assert len(boosting.split()) == 8  # 3 words of label, then a log p(true class)
    assert np.isfinite(float(boosting.split()[-2]))


def test_inspect_softmax_gate(houses_model, capsys):
    assert main(["inspect", houses_model[0]]) == 0
    out = capsys.readouterr().out
    assert "categorical columns: city (3 categories)" in out
    assert "expert 0" in out and "expert 1" in out
    assert "gate coefficients" in out
    for column in ["x1", "missingindicator_x2", "city_north", "intercept"]:
        assert column in out


@pytest.mark.parametrize(
    "gate, shown",
    [("tree", ["gate rules", "|--- x1 <="]), ("hme", ["gate coefficients", "node 0 left"])],
)
def test_inspect_linear_experts_and_other_gates(gate, shown, data, tmp_path, capsys):
    path = str(tmp_path / "m.joblib")
    assert main(["fit", data["plain"], "-t", "y", "--gate", gate, "-q", "-o", path]) == 0
    assert main(["inspect", path]) == 0
    out = capsys.readouterr().out
    assert "WeightedLeastSquares" in out and "expert coefficients" in out
    assert "likelihood: gaussian" in out
    for text in shown:
        assert text in out


def test_demo_writes_table_and_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["demo", "--n-samples", "1000", "--output-dir", str(tmp_path / "fig")]) == 0
    out = capsys.readouterr().out
    assert "MixtureOfExperts(3 x Ridge)" in out and "MixtureOfExperts(2 x Logistic)" in out
    assert (tmp_path / "fig" / "skmoe-demo.png").stat().st_size > 0


def test_demo_without_matplotlib(tmp_path, capsys, monkeypatch):
    for name in ["matplotlib", "matplotlib.figure"]:
        monkeypatch.setitem(sys.modules, name, None)  # import fails
    assert main(["demo", "--n-samples", "400", "--output-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "MixtureOfExperts(3 x Ridge)" in captured.out
    assert "matplotlib is not installed" in captured.err
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------
# progress
# ----------------------------------------------------------------------


def test_progress_only_on_a_terminal_or_when_asked(data, tmp_path, capsys, monkeypatch):
    path = str(tmp_path / "m.joblib")
    fit = ["fit", data["plain"], "-t", "y", "-o", path]
    assert main(fit) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # stderr is not a terminal here
    assert "Saved to" in captured.out

    assert main(fit + ["--verbose"]) == 0
    err = capsys.readouterr().err
    assert "iteration 1/100: mean log-likelihood" in err and "elapsed" in err

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(fit) == 0
    captured = capsys.readouterr()
    assert "read " in captured.err and "EM converged after" in captured.err
    assert "EM converged after" not in captured.out  # progress stays off stdout

    assert main(fit + ["--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# ----------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments, status, message",
    [
        (["fit", "{houses}", "-t", "prise", "-o", "{out}"], 2, "did you mean 'price'"),
        (["fit", "{houses}", "-t", "price", "--drop", "ID", "-o", "{out}"], 2, "--drop 'ID'"),
        (["fit", "{clf}", "-t", "label", "--expert", "ridge", "-o", "{out}"], 2, "not numeric"),
        (
            [
                "fit",
                "{clf}",
                "-t",
                "label",
                "--task",
                "classification",
                "--expert",
                "linear",
                "-o",
                "{out}",
            ],
            2,
            "for classification choose one of logistic, tree, hgb",
        ),
        (
            [
                "fit",
                "{clf}",
                "-t",
                "label",
                "--task",
                "classification",
                "--likelihood",
                "gamma",
                "-o",
                "{out}",
            ],
            2,
            "--likelihood applies to regression only",
        ),
        (
            ["fit", "{plain}", "-t", "y", "--expert", "logistic", "-o", "{out}"],
            2,
            "(asked for by --expert logistic); for regression use --task regression",
        ),
        (
            ["fit", "{plain}", "-t", "y", "--task", "classification", "-o", "{out}"],
            2,
            "holds fractional numbers (such as",
        ),
        (["fit", "{plain}", "-t", "y", "--top-k", "3", "-o", "{out}"], 2, "--top-k"),
        (["fit", "{dir}/data.xlsx", "-t", "y", "-o", "{out}"], 2, "unsupported file type"),
        (["fit", "{dir}/absent.csv", "-t", "y", "-o", "{out}"], 1, "absent.csv: no such file"),
        (
            ["fit", "{plain}", "-t", "y", "-o", "{dir}/no/such/dir/m.joblib"],
            1,
            "directory does not exist",
        ),
        (["predict", "{plain}", "{plain}"], 1, "not a model saved by 'skmoe fit'"),
        (["predict", "{dir}/absent.joblib", "{plain}"], 1, "no such file"),
        (["predict", "{clf_model}", "{clf}", "--level", "0.5"], 2, "regression models only"),
        (["predict", "{plain_model}", "{plain_new}", "--level", "1.5"], 2, "--level"),
        (
            ["predict", "{plain_model}", "{plain_new}", "-o", "{dir}/out.json"],
            2,
            "unsupported file type",
        ),
    ],
)
def test_user_errors(arguments, status, message, data, plain_model, clf_model, tmp_path, capsys):
    names = {key: str(value) for key, value in data.items()}
    names |= {
        "out": str(tmp_path / "m.joblib"),
        "plain_model": plain_model,
        "clf_model": clf_model,
    }
    assert main([argument.format(**names) for argument in arguments]) == status
    err = capsys.readouterr().err
    assert err.startswith("skmoe: error: ") and message in err
    assert "Traceback" not in err


def test_predict_names_the_absent_and_non_numeric_columns(data, plain_model, tmp_path, capsys):
    assert main(["predict", plain_model, data["clf"]]) == 0  # others columns are ignored
    capsys.readouterr()
    pd.DataFrame({"x1": [1.0]}).to_csv(tmp_path / "short.csv", index=False)
    assert main(["predict", plain_model, str(tmp_path / "short.csv")]) == 1
    assert "lacks the column(s) 'x2'" in capsys.readouterr().err
    pd.DataFrame({"x1": [1.0, 2.0], "x2": ["0.5", "abc"]}).to_csv(
        tmp_path / "bad.csv", index=False
    )
    assert main(["predict", plain_model, str(tmp_path / "bad.csv")]) == 1
    err = capsys.readouterr().err
    assert "column 'x2'" in err and "'abc'" in err and "was numeric" in err


def test_argparse_usage_errors(data, capsys):
    assert main(["fit", data["plain"], "-t", "y", "--expert", "forest", "-o", "m"]) == 2
    assert "invalid choice: 'forest'" in capsys.readouterr().err
    assert main([]) == 2
    assert main(["evaluate", data["plain"], "-t", "y", "--cv", "1"]) == 2


@pytest.mark.parametrize(
    "command", [[], ["fit"], ["predict"], ["evaluate"], ["inspect"], ["demo"]]
)
def test_help(command, capsys):
    assert main(command + ["--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "usage: skmoe" in out


def test_help_documents_the_rules(capsys):
    main(["fit", "--help"])
    out = capsys.readouterr().out
    assert "--task auto" in out and "at most 10 distinct values" in out
    assert "Missing values" in out and "one-hot" in out
    for expert in ["linear", "ridge", "tree", "hgb", "logistic", "poisson", "gamma"]:
        assert f"  {expert} " in out


def test_pandas_missing(data, plain_model, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pandas", None)
    assert main(["predict", plain_model, data["plain_new"]]) == 1
    assert "pip install pandas" in capsys.readouterr().err


def test_parquet_without_pyarrow(data, plain_model, monkeypatch, capsys, tmp_path):
    for engine in ["pyarrow", "fastparquet"]:
        monkeypatch.setitem(sys.modules, engine, None)
    (tmp_path / "data.parquet").write_bytes(b"PAR1")
    assert main(["fit", str(tmp_path / "data.parquet"), "-t", "y", "-o", "m.joblib"]) == 1
    assert "reading Parquet files needs pyarrow" in capsys.readouterr().err
    assert (
        main(["predict", plain_model, data["plain_new"], "-o", str(tmp_path / "pred.parquet")])
        == 1
    )
    assert "writing Parquet files needs pyarrow" in capsys.readouterr().err


def test_parquet_round_trip(data, plain_model, tmp_path):
    pytest.importorskip("pyarrow")
    pd.read_csv(data["plain"]).to_parquet(tmp_path / "plain.parquet")
    path = str(tmp_path / "m.joblib")
    assert main(["fit", str(tmp_path / "plain.parquet"), "-t", "y", "-q", "-o", path]) == 0
    out = tmp_path / "pred.parquet"
    assert main(["predict", path, str(tmp_path / "plain.parquet"), "-o", str(out)]) == 0
    assert len(pd.read_parquet(out)) == 240


# ----------------------------------------------------------------------
# python -m skmoe, in a subprocess
# ----------------------------------------------------------------------


def _run(arguments, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "skmoe", *arguments],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_subprocess_exit_statuses(data, plain_model, tmp_path):
    unknown = _run(["fit", data["plain"], "--target", "nope", "-o", "m.joblib"], tmp_path)
    assert unknown.returncode == 2
    assert "skmoe: error: --target 'nope' is not a column" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    missing = _run(["predict", plain_model, "absent.csv"], tmp_path)
    assert missing.returncode == 1
    assert missing.stderr == "skmoe: error: absent.csv: no such file\n"


def test_subprocess_stdout_closed_early(plain_model, tmp_path):
    # More predictions than a pipe holds, read by a reader that stops early (| head -1).
    rng = np.random.default_rng(1)
    pd.DataFrame(rng.normal(size=(3000, 2)), columns=["x1", "x2"]).to_csv(
        tmp_path / "many.csv", index=False
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "skmoe", "predict", plain_model, "many.csv"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline() == "prediction,std,lower_90,upper_90\n"
    assert np.isfinite([float(value) for value in process.stdout.readline().split(",")]).all()
    process.stdout.close()
    stderr = process.stderr.read()
    process.wait(timeout=120)
    process.stderr.close()
    assert stderr == ""  # no BrokenPipeError traceback
