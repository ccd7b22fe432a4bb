"""R's flexmix as a reference peer, run through ``Rscript`` when it is installed.

The same model as skmoe's regressor with linear experts: GLM experts
(``FLXMRglm``: Gaussian, or Poisson and Gamma with a log link) and a
multinomial-logit concomitant gate (``FLXPmultinom``) on the same columns,
unpenalised. The benchmarks never install R; without it
(or without the flexmix package) they say the peer was skipped.
"""

import os
import shutil
import subprocess
import tempfile
import textwrap

import numpy as np

# Either one fit from the partition in column "start", or the best of "nrep"
# random starts (stepFlexmix). On the held-out rows it is scored like the
# mixtures: gate probabilities from the concomitant model, Gaussian experts
# around each component's prediction. Prints: fit seconds (R's own timer, so
# neither R's start-up nor the CSV parsing counts), EM iterations, components
# kept, held-out R2, held-out mean log-likelihood, training mean log-likelihood.
_SCRIPT = textwrap.dedent(
    """
    suppressPackageStartupMessages(library(flexmix))
    args <- commandArgs(trailingOnly = TRUE)
    train <- read.csv(args[1])
    test <- read.csv(args[2])
    k <- as.integer(args[3])
    nrep <- as.integer(args[4])
    family <- args[5]
    x <- paste(grep("^x", names(train), value = TRUE), collapse = " + ")
    formula <- as.formula(paste("y ~", x))
    model <- FLXMRglm(family = family)
    gate <- FLXPmultinom(as.formula(paste("~", x)))
    set.seed(0)
    elapsed <- system.time(m <- if (nrep == 0) {
        flexmix(formula, data = train, k = k, cluster = train$start, model = model,
                concomitant = gate, control = list(tolerance = as.numeric(args[6])))
    } else {
        # One k: stepFlexmix returns the best of its nrep fits.
        stepFlexmix(formula, data = train, k = k, nrep = nrep, model = model,
                    concomitant = gate, verbose = FALSE,
                    control = list(tolerance = 1e-10, iter.max = 5000))
    })[["elapsed"]]
    gate <- prior(m, newdata = test)
    means <- do.call(cbind, predict(m, newdata = test))
    pred <- rowSums(gate * means)
    r2 <- 1 - sum((test$y - pred)^2) / sum((test$y - mean(test$y))^2)
    ll <- NA  # held-out log-likelihood: Gaussian and Poisson experts
    if (family == "gaussian") {
        sigma <- parameters(m)["sigma", ]
        dens <- sapply(seq_len(m@k), function(j) dnorm(test$y, means[, j], sigma[j]))
        ll <- mean(log(rowSums(gate * dens)))
    } else if (family == "poisson") {
        dens <- sapply(seq_len(m@k), function(j) dpois(test$y, means[, j]))
        ll <- mean(log(rowSums(gate * dens)))
    }
    cat(elapsed, m@iter, m@k, r2, ll, as.numeric(logLik(m)) / nrow(train), "\\n")
    """
)


def unavailable():
    """Why flexmix cannot run here, or None when it can."""
    if shutil.which("Rscript") is None:
        return "skipped: Rscript is not installed"
    check = subprocess.run(["Rscript", "-e", "library(flexmix)"], capture_output=True)
    if check.returncode != 0:
        return "skipped: the R package flexmix is not installed"
    return None


def fit_flexmix(
    X, y, n_components, X_test=None, y_test=None, start=None, nrep=10, family="gaussian", tol=1e-6
):
    """Fit flexmix; return a dict of its results, or a string saying why it did not run.

    ``start`` (0-based component per training row) gives one fit from that
    partition, to flexmix's tolerance ``tol`` (its default 1e-6); otherwise
    the best of ``nrep`` random starts at 1e-10. ``family``: "gaussian",
    "poisson" or "Gamma" (R's names). Without test rows the training rows
    are scored.
    """
    reason = unavailable()
    if reason:
        return reason
    if X_test is None:
        X_test, y_test = X, y
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: os.path.join(tmp, f"{name}.csv") for name in ("train", "test")}
        header = ",".join([f"x{j}" for j in range(X.shape[1])] + ["y", "start"])
        first = np.ones_like(y) if start is None else start + 1
        for name, (A, b, c) in [
            ("train", (X, y, first)),
            ("test", (X_test, y_test, np.ones_like(y_test))),
        ]:
            np.savetxt(
                paths[name], np.column_stack([A, b, c]), delimiter=",", header=header, comments=""
            )
        script = os.path.join(tmp, "fit.R")
        with open(script, "w") as f:
            f.write(_SCRIPT)
        out = subprocess.run(
            [
                "Rscript",
                script,
                paths["train"],
                paths["test"],
                str(n_components),
                "0" if start is not None else str(nrep),
                family,
                repr(tol),
            ],
            capture_output=True,
            text=True,
        )
    if out.returncode != 0:
        return f"failed: {out.stderr.strip().splitlines()[-1:]}"
    seconds, iters, kept, r2, ll, train_ll = out.stdout.split()
    return dict(
        seconds=float(seconds),
        n_iter=int(iters),
        kept=int(kept),
        r2=float(r2),
        test_log_lik=np.nan if ll == "NA" else float(ll),
        train_log_lik=float(train_ll),
    )
