"""Run the skmoe benchmark suite: ``python benchmarks/run.py [--quick] [--sections ...]``.

Sections (one module each): kernels (a), gate (b), fits (c), scaling (d),
refits (thresholded refits against exact EM), topk (top-k against dense prediction);
tables (real public tables, outside the repository) only when asked for.
Every table compares candidates measured side by side in this one run
(interleaved rounds, medians); see README.md for how to read them. The run
ends with every target verdict in one list.
"""

import argparse
import os
import platform
import sys
import time

import bench_convergence
import bench_dask
import bench_families
import bench_fits
import bench_gate_mstep
import bench_kernels
import bench_online
import bench_optimum
import bench_refits
import bench_scaling
import bench_tables
import bench_topk
import numpy as np
import scipy
import sklearn
from threadpoolctl import threadpool_info

import skmoe

SECTIONS = {
    "kernels": bench_kernels,
    "gate": bench_gate_mstep,
    "fits": bench_fits,
    "convergence": bench_convergence,
    "families": bench_families,
    "scaling": bench_scaling,
    "refits": bench_refits,
    "topk": bench_topk,
    "online": bench_online,
    "dask": bench_dask,
    "optimum": bench_optimum,
    "tables": bench_tables,
}
# Long: hundreds of tightly converged starts (optimum); data from outside the
# repository (tables); a LocalCluster with data on disk (dask, which needs
# the distributed extra). Run them with --sections.
DEFAULT_SECTIONS = [name for name in SECTIONS if name not in ("optimum", "tables", "dask")]


def _load():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _environment():
    pools = ", ".join(f"{p['internal_api']} x{p['num_threads']}" for p in threadpool_info())
    return [
        f"skmoe {skmoe.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"scikit-learn {sklearn.__version__}, Python {platform.python_version()}",
        f"{os.cpu_count()} CPUs ({platform.machine()}); thread pools: {pools}",
        "OMP_NUM_THREADS={}, OPENBLAS_NUM_THREADS={}".format(
            os.environ.get("OMP_NUM_THREADS", "unset"),
            os.environ.get("OPENBLAS_NUM_THREADS", "unset"),
        ),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: the whole suite in about two minutes"
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=list(SECTIONS),
        default=DEFAULT_SECTIONS,
        help="run only these sections (default: all but tables)",
    )
    args = parser.parse_args(argv)
    # Long runs are often piped to a file: show each table as soon as it is done.
    sys.stdout.reconfigure(line_buffering=True)

    print(f"skmoe benchmarks ({'quick' if args.quick else 'full'} run)")
    for line in _environment():
        print(line)
    verdicts = []
    start = time.perf_counter()
    for name in args.sections:
        section_start = time.perf_counter()
        # Other users' load is the main source of noise here, so it is recorded.
        load_before = _load()
        verdicts += SECTIONS[name].run(args.quick)
        print(
            f"[{name}: {time.perf_counter() - section_start:.0f} s; load average "
            f"before {load_before}, after {_load()}]"
        )
    print(f"\nAll targets ({time.perf_counter() - start:.0f} s in total)\n===========")
    if args.quick:
        print(
            "(quick run: sizes below those the targets are set at, so these verdicts "
            "only indicate; the full run decides)"
        )
    for line in verdicts:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
