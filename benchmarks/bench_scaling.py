"""Section d: how fit time and peak memory grow with the number of rows.

``MixtureOfExpertsRegressor(8, max_iter=20, tol=0)`` (its default linear
experts, ``WeightedLeastSquares(alpha=1.0)``: the model of ``Ridge()``) runs
exactly 20 EM iterations at every n, so time per row is comparable across n;
``HistGradientBoostingRegressor()`` at the same n gives the ratio to a strong
generic baseline. d = 20 features.

Every fit runs in a fresh subprocess (this file run with ``--child``), which
loads the data from a ``.npy`` file, warms up with a fit on 500 rows (lazy
imports, allocator set-up), reads its peak resident set size (``VmHWM`` on
Linux), fits once, timed, and reads the peak again. The difference is
the memory the fit needed beyond its input, everything included (NumPy,
BLAS/LAPACK work space, OpenMP buffers), reported as a multiple of
``X.nbytes``. At small n the input is smaller than RSS noise (a few MB), so
only the largest n say much about memory. Each round runs every (n, model)
pair, in alternating order, so that load drift hits all sizes alike.

The slope of log(time) against log(n) over the largest decade is the one the
target applies to: at small n fixed costs (k-means set-up, Python overhead
per EM iteration) flatten the all-points slope.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

from skmoe import MixtureOfExpertsRegressor

from _data import make_truth
from _timing import median, print_table, verdict

N_FEATURES, N_EXPERTS, MAX_ITER = 20, 8, 20
TARGET_SLOPE, TARGET_HGB_RATIO, TARGET_MEMORY = 1.15, 3.0, 3.0


def _make_model(name):
    if name == "moe":
        return MixtureOfExpertsRegressor(N_EXPERTS, max_iter=MAX_ITER, tol=0, random_state=0)
    # random_state only fixes the early-stopping split, for reproducible fits.
    return HistGradientBoostingRegressor(random_state=0)


def _peak_rss_bytes():
    """Peak resident set size of this process so far.

    Linux: ``VmHWM``, the peak of the current address space. ``ru_maxrss``
    would not do there: it survives ``exec``, so a child starts with the peak
    of its (large) parent. Elsewhere ``ru_maxrss`` is the best there is.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, else KiB


def _child(name, x_path, y_path):
    """Fit one model on the saved data; print seconds and peak memory beyond the input."""
    X, y = np.load(x_path), np.load(y_path)
    warnings.simplefilter("ignore")  # tol=0 never converges, by design
    _make_model(name).fit(X[:500], y[:500])
    model = _make_model(name)
    baseline = _peak_rss_bytes()
    start = time.perf_counter()
    model.fit(X, y)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "extra_bytes": _peak_rss_bytes() - baseline}))


def _fit_in_subprocess(name, x_path, y_path):
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", name, x_path, y_path],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _slope(ns, seconds):
    return np.polyfit(np.log(ns), np.log(seconds), 1)[0]


def run(quick):
    sizes = [10**3, 10**4, 10**5] if quick else [10**3, 10**4, 10**5, 10**6]
    # Single fits where the mixture takes long (the full run's 1e6 alone takes
    # minutes), so that the suite stays within its time budget.
    repeats = {n: (1 if quick or n >= 10**6 else 3) for n in sizes}
    truth = make_truth(N_FEATURES, N_EXPERTS, seed=3)
    runs = {(n, name): [] for n in sizes for name in ("moe", "hgb")}
    with tempfile.TemporaryDirectory() as tmp:
        paths, nbytes = {}, {}
        for n in sizes:
            X, y = truth.sample_regression(n, np.random.default_rng(n))
            paths[n] = (os.path.join(tmp, f"X{n}.npy"), os.path.join(tmp, f"y{n}.npy"))
            np.save(paths[n][0], X)
            np.save(paths[n][1], y)
            nbytes[n] = X.nbytes
        del X, y
        # Rounds go over every (n, model), not one n after the other: the slope
        # compares sizes, so load drift must hit all of them alike.
        for r in range(max(repeats.values())):
            order = [key for key in runs if r < repeats[key[0]]]
            for n, name in order if r % 2 == 0 else order[::-1]:
                runs[n, name].append(_fit_in_subprocess(name, *paths[n]))
    results = {
        n: {
            name: (
                median([run["seconds"] for run in runs[n, name]]),
                median([run["extra_bytes"] for run in runs[n, name]]) / nbytes[n],
            )
            for name in ("moe", "hgb")
        }
        for n in sizes
    }
    moe_t = [results[n]["moe"][0] for n in sizes]
    hgb_t = [results[n]["hgb"][0] for n in sizes]
    rows = []
    for n in sizes:
        (moe, moe_mem), (hgb, hgb_mem) = results[n]["moe"], results[n]["hgb"]
        rows.append(
            [
                f"{n:.0e}",
                repeats[n],
                f"{moe:.2f}",
                f"{moe / n * 1e6 / MAX_ITER:.2f}",
                f"{hgb:.2f}",
                f"{moe / hgb:.2f}",
                f"{moe_mem:.2f}",
                f"{hgb_mem:.2f}",
            ]
        )
    top, below = sizes[-1], sizes[-2]
    last_slope = _slope([below, top], [moe_t[-2], moe_t[-1]])
    ratio, memory = results[top]["moe"][0] / results[top]["hgb"][0], results[top]["moe"][1]
    targets = [
        verdict(
            f"slope of MoE fit time vs n over {below:.0e}..{top:.0e} <= {TARGET_SLOPE} "
            f"(measured {last_slope:.2f})",
            last_slope <= TARGET_SLOPE,
        ),
        verdict(
            f"MoE fit time at n={top:.0e} <= {TARGET_HGB_RATIO:g}x HGB's (measured {ratio:.2f}x)",
            ratio <= TARGET_HGB_RATIO,
        ),
        verdict(
            f"MoE peak memory beyond input at n={top:.0e} <= {TARGET_MEMORY:g}x X.nbytes "
            f"(measured {memory:.2f}x)",
            memory <= TARGET_MEMORY,
        ),
    ]
    print_table(
        f"d. scaling: MoE({N_EXPERTS} x WeightedLeastSquares, max_iter={MAX_ITER}, tol=0) vs "
        f"HistGradientBoostingRegressor, d={N_FEATURES} (median of reps; one subprocess per fit)",
        [
            "n",
            "reps",
            "MoE fit s",
            "MoE us/row/iter",
            "HGB fit s",
            "MoE/HGB",
            "MoE mem/X",
            "HGB mem/X",
        ],
        rows,
        notes=[
            f"log-log slope of fit time vs n, all points: MoE {_slope(sizes, moe_t):.2f}, "
            f"HGB {_slope(sizes, hgb_t):.2f}; largest decade: MoE {last_slope:.2f}, "
            f"HGB {_slope([below, top], hgb_t[-2:]):.2f}",
            "mem/X = (peak RSS during fit - peak RSS before) / X.nbytes",
        ],
        targets=targets,
    )
    return targets


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    _child(*sys.argv[2:5])
