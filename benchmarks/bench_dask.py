"""Section: EM on a Dask cluster (issue #14), out of core, against LightGBM's Dask fit.

``MixtureOfExpertsRegressor(8)`` (softmax gate, ``WeightedLeastSquares``
experts) is fitted on a Dask array that is never materialised in memory:
each chunk of rows is generated from its own seed by the known mixture of
``_data.make_truth`` (d = 20, 8 experts) on a worker, which writes it to disk
(``dask.array.to_npy_stack``, a temporary directory); the fit reads the
chunks back on every pass (``from_npy_stack``, loaded, not memory-mapped, so
that the workers' resident memory counts what they hold). The cluster is a
``LocalCluster`` of two worker processes of one thread each whose memory
limits add up to well below the largest data set.

The model is first fitted in memory on the collection's first 50,000 rows
(to convergence, default ``tol``), then continued on all rows by a fixed
number of EM iterations (``warm_start=True``, ``tol=0``): the default start
of a Dask fit, a fit on a sample, would run the sample fit with ``tol=0``
and the same ``max_iter`` too. Reported per size:

* seconds per EM iteration on all rows (the sample fit excluded), and the
  log-log slope of that time against n (1: linear);
* passes over the data per iteration (the fused E-step pass and the gate's
  L-BFGS evaluations), and whether the responsibilities were kept on the
  workers or recomputed by each pass (kept while two copies take at most
  half the workers' memory limits);
* bytes that reached the driver per iteration (what the partitions return:
  ``O(K d^2)`` numbers each) and bytes moved between workers;
* the workers' peak resident memory (``VmHWM`` of each worker process, reset
  before every fit), against the data's size;
* held-out R^2 (200,000 rows from the same mixture, predicted in memory).

Beside it, ``lightgbm.dask.DaskLGBMRegressor()`` with default settings on the
same collection, on a cluster of its own with room for the data: it trains
on data held whole in the workers' memory. Sizes not run are marked.
"""

import logging
import os
import tempfile
import time
import warnings

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score

from skmoe import MixtureOfExpertsRegressor, _dask

from _data import make_truth
from _timing import print_table, verdict

N_FEATURES, N_EXPERTS = 20, 8
CHUNK_ROWS = 100_000
SAMPLE_ROWS = 50_000
WORKER_MEMORY = 450e6  # bytes per worker, two workers; a fresh worker holds about 230 MB
LIGHTGBM_WORKER_MEMORY = 4e9
TARGET_SLOPE = 1.15


def _chunk(seed_block, truth, seed, block_info=None):
    """One chunk of rows ``[X, y]`` of the mixture, from the chunk's own seed."""
    rng = np.random.default_rng([seed, int(seed_block[0, 0])])
    X, y = truth.sample_regression(block_info[None]["chunk-shape"][0], rng)
    return np.column_stack([X, y])


def lazy_data(n, truth, seed=0):
    """``[X, y]`` as a Dask array of n rows, each chunk generated where it is computed."""
    n_chunks = -(-n // CHUNK_ROWS)
    rows = (CHUNK_ROWS,) * (n // CHUNK_ROWS) + ((n % CHUNK_ROWS,) if n % CHUNK_ROWS else ())
    chunk_ids = da.from_array(np.arange(n_chunks).reshape(-1, 1), chunks=1)
    return da.map_blocks(
        _chunk,
        chunk_ids,
        truth=truth,
        seed=seed,
        chunks=(rows, (N_FEATURES + 1,)),
        dtype=np.float64,
        meta=np.empty((0, 0)),
    )


def on_disk(n, truth, directory):
    """``(X, y)`` read from an npy stack that the workers wrote, chunk by chunk."""
    path = os.path.join(directory, f"data{n}")
    if not os.path.exists(path):
        da.to_npy_stack(path, lazy_data(n, truth))
    Z = da.from_npy_stack(path, mmap_mode=None)
    return Z[:, :N_FEATURES], Z[:, N_FEATURES]


def _worker_peak():
    """This process's peak resident set size (``VmHWM``, Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _fresh_peak():
    """Return the memory glibc holds on to, reset the peak to the current size; return it."""
    import ctypes
    import gc

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as refs:  # "5": reset VmHWM
        refs.write("5")
    return _worker_peak()


def _peak_worker_bytes(client):
    """The largest peak resident set size (``VmHWM``) over the worker processes."""
    return max(client.run(_worker_peak).values())


def _reset_workers(client):
    """Workers without data and with their peak memory reset (restarting them takes long)."""
    client.cancel(list(client.futures))
    return max(client.run(_fresh_peak).values())


def _moved_bytes(client):
    return sum(client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total).values())


def _nbytes(value):
    if isinstance(value, dict):
        return sum(_nbytes(item) for item in value.values())
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(item) for item in value if item is not None)
    return np.asarray(value).nbytes


def _fit_moe(client, X, y, max_iter):
    """Fit on clean workers; time the EM on all rows and count what travelled."""
    baseline = _reset_workers(client)
    passes, received, em_time = [], [], {}
    gather, run = _dask._gather, _dask._DaskEM._run

    def counting_gather(blocks):
        parts = gather(blocks)
        passes.append(len(parts))
        received.append(_nbytes(parts))
        return parts

    def timed_run(self, data, state):
        em_time["keep"] = data.keep
        moved = _moved_bytes(client)
        start, before = time.perf_counter(), len(received)
        state = run(self, data, state)
        em_time["seconds"] = time.perf_counter() - start
        em_time["passes"] = len(received) - before
        em_time["bytes"] = sum(received[before:])
        em_time["moved"] = _moved_bytes(client) - moved
        return state

    _dask._gather, _dask._DaskEM._run = counting_gather, timed_run
    try:
        model = (
            MixtureOfExpertsRegressor(N_EXPERTS, random_state=0)
            .fit(X[:SAMPLE_ROWS].compute(), y[:SAMPLE_ROWS].compute())
            .set_params(warm_start=True, max_iter=max_iter, tol=0)
        )
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # tol=0: a fixed budget
            model.fit(X, y)
        seconds = time.perf_counter() - start
    finally:
        _dask._gather, _dask._DaskEM._run = gather, run
    n_iter = model.n_iter_
    return model, {
        "fit": seconds,
        "per_iter": em_time["seconds"] / n_iter,
        "n_iter": n_iter,
        "passes": em_time["passes"] / n_iter,
        "driver": em_time["bytes"] / n_iter,
        "moved": em_time["moved"] / n_iter,
        "keep": em_time["keep"],
        "peak": _peak_worker_bytes(client),
        "baseline": baseline,
        "partitions": X.numblocks[0],
    }


def _fit_lightgbm(client, X, y):
    import lightgbm.dask as lgb_dask

    _reset_workers(client)
    model = lgb_dask.DaskLGBMRegressor(client=client, verbose=-1)
    start = time.perf_counter()
    # LightGBM hands its workers sockets that Dask tries, and fails, to serialise
    # for its logs; the training itself is unaffected.
    pickle_log = logging.getLogger("distributed.protocol.pickle")
    level = pickle_log.level
    pickle_log.setLevel(logging.CRITICAL)
    try:
        model.fit(X, y)
    finally:
        pickle_log.setLevel(level)
    seconds = time.perf_counter() - start
    return model.to_local(), {"fit": seconds, "peak": _peak_worker_bytes(client)}


def _cluster(memory_limit):
    return LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        memory_limit=memory_limit,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )


def run(quick=False):
    sizes = [10**6, 5 * 10**6] if quick else [10**6, 5 * 10**6, 2 * 10**7]
    lightgbm_sizes = [10**6] if quick else [10**6, 5 * 10**6]
    max_iter = 4 if quick else 8
    truth = make_truth(N_FEATURES, N_EXPERTS, seed=3)
    X_test, y_test = truth.sample_regression(200_000, np.random.default_rng(12345))
    try:
        import lightgbm.dask  # noqa: F401
    except ImportError:
        lightgbm_sizes = []
    memory_limit = 2 * WORKER_MEMORY
    moe, lgb = {}, {}
    with tempfile.TemporaryDirectory() as directory:
        with _cluster(WORKER_MEMORY) as cluster, Client(cluster) as client:
            for n in sizes:
                X, y = on_disk(n, truth, directory)
                model, moe[n] = _fit_moe(client, X, y, max_iter)
                moe[n]["r2"] = r2_score(y_test, model.predict(X_test))
        with _cluster(LIGHTGBM_WORKER_MEMORY) as cluster, Client(cluster) as client:
            for n in lightgbm_sizes:
                local, lgb[n] = _fit_lightgbm(client, *on_disk(n, truth, directory))
                lgb[n]["r2"] = r2_score(y_test, local.predict(X_test))
    rows = []
    for n in [10**6, 5 * 10**6, 2 * 10**7]:
        data_bytes = n * (N_FEATURES + 1) * 8
        if n not in moe:
            rows.append(
                [f"{n:.0e}", "", f"{data_bytes / 1e6:.0f}", f"{data_bytes / memory_limit:.1f}"]
                + ["not run (quick)"]
                + [""] * 10
            )
            continue
        fit = moe[n]
        rows.append(
            [
                f"{n:.0e}",
                fit["partitions"],
                f"{data_bytes / 1e6:.0f}",
                f"{data_bytes / memory_limit:.1f}",
                "kept" if fit["keep"] else "recomputed",
                fit["n_iter"],
                f"{fit['per_iter']:.2f}",
                f"{fit['passes']:.1f}",
                f"{fit['driver'] / 1e3:.0f}",
                f"{fit['moved'] / 1e6:.2f}",
                f"{fit['peak'] / 1e6:.0f}",
                f"{fit['fit']:.1f}",
                f"{fit['r2']:.4f}",
                f"{lgb[n]['fit']:.1f}" if n in lgb else "not run",
                f"{lgb[n]['r2']:.4f}" if n in lgb else "",
            ]
        )
    ns = sorted(moe)
    slope = np.polyfit(np.log(ns), np.log([moe[n]["per_iter"] for n in ns]), 1)[0]
    largest = ns[-1] * (N_FEATURES + 1) * 8
    peak = moe[ns[-1]]["peak"]
    per_partition = max(moe[n]["driver"] / (moe[n]["passes"] * moe[n]["partitions"]) for n in ns)
    moments = 8 * N_EXPERTS * (N_FEATURES + 2) ** 2
    targets = [
        verdict(
            f"slope of seconds per EM iteration vs n <= {TARGET_SLOPE} (measured {slope:.2f})",
            slope <= TARGET_SLOPE,
        ),
        verdict(
            f"peak worker memory < data size at n={ns[-1]:.0e} (measured "
            f"{peak / 1e6:.0f} MB per worker vs {largest / 1e6:.0f} MB)",
            peak < largest,
        ),
        verdict(
            f"bytes to the driver per partition and pass <= 2 x the experts' moments "
            f"({2 * moments / 1e3:.0f} KB; measured {per_partition / 1e3:.1f} KB)",
            per_partition <= 2 * moments,
        ),
    ]
    print_table(
        f"dask. EM on a LocalCluster (2 workers x 1 thread, {WORKER_MEMORY / 1e6:.0f} MB "
        f"each): MoE({N_EXPERTS} x WeightedLeastSquares), d={N_FEATURES}, chunks of "
        f"{CHUNK_ROWS} rows read from disk, {max_iter} EM iterations (tol=0) from an "
        f"in-memory fit on {SAMPLE_ROWS} rows; DaskLGBMRegressor() beside it",
        [
            "n",
            "parts",
            "data MB",
            "data/limit",
            "resp.",
            "iter",
            "s/iter",
            "passes/iter",
            "KB to driver/iter",
            "MB moved/iter",
            "peak worker MB",
            "MoE fit s",
            "MoE R2",
            "LGBM fit s",
            "LGBM R2",
        ],
        rows,
        notes=[
            f"log-log slope of s/iter vs n: {slope:.2f}",
            "resp.: responsibilities kept on the workers, or recomputed by every pass (when "
            "two copies would take more than half the memory limits)",
            "MB moved/iter: bytes sent between workers; peak worker MB: the larger worker's "
            f"VmHWM over the fit (before it: {moe[ns[0]]['baseline'] / 1e6:.0f} MB)",
            f"LGBM: default settings, on a cluster of 2 workers x "
            f"{LIGHTGBM_WORKER_MEMORY / 1e9:.0f} GB (it holds the data whole in the workers' "
            "memory); not run at sizes marked so",
            "R2 on 200,000 held-out rows of the same mixture",
        ],
        targets=targets,
    )
    return targets


if __name__ == "__main__":
    import sys

    run(quick="--quick" in sys.argv)
