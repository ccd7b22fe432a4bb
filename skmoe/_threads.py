"""Thread pools: OpenMP threads per kernel call, and BLAS held to one thread."""

from functools import cache

from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
from threadpoolctl import ThreadpoolController

# Below this many matrix entries a kernel pass takes microseconds: waking a
# thread team costs more than it saves, and on few cores a team still spinning
# after the pass starves the BLAS threads of the matrix products around it
# (measured: a 1500 x 3 EM fit ran 25x slower with two threads than with one).
# At 2^14 rather than 2^16, two threads serve 20,000 rows of 3 experts: a
# 3-class classifier fit took 1.02 s against 1.32 s, and fits of 1500 to
# 20,000 rows were no slower (medians of 3, side by side, 2 cores).
_MIN_ENTRIES_PER_THREAD = 1 << 14


def kernel_threads(n_entries):
    """Threads for one pass over ``n_entries`` matrix entries.

    Respects ``OMP_NUM_THREADS`` and threadpoolctl limits.
    """
    return max(1, min(_openmp_effective_n_threads(), n_entries // _MIN_ENTRIES_PER_THREAD))


@cache
def _controller():
    # Scanning the loaded libraries costs ~2 ms; EM limits BLAS once per
    # M-step, so the scan is done once (NumPy's and SciPy's BLAS are loaded by then).
    return ThreadpoolController()


def blas_threads():
    """The number of threads BLAS may use now (the smallest over the loaded BLAS libraries)."""
    return min(
        (info["num_threads"] for info in _controller().info() if info["user_api"] == "blas"),
        default=1,
    )


def blas_limited_to(n_threads):
    """Context manager: BLAS libraries limited to ``n_threads`` threads inside it."""
    return _controller().limit(limits=n_threads, user_api="blas")


def single_threaded_blas():
    """Context manager: BLAS libraries limited to one thread inside it."""
    return blas_limited_to(1)
