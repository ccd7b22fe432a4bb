"""How many OpenMP threads a kernel call should use."""

from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

# Below this many matrix entries a kernel pass takes microseconds: waking a
# thread team costs more than it saves, and on few cores a team still spinning
# after the pass starves the BLAS threads of the matrix products around it
# (measured: a 1500 x 3 EM fit ran 25x slower with two threads than with one).
_MIN_ENTRIES_PER_THREAD = 1 << 16


def kernel_threads(n_entries):
    """Threads for one pass over ``n_entries`` matrix entries.

    Respects ``OMP_NUM_THREADS`` and threadpoolctl limits.
    """
    return max(1, min(_openmp_effective_n_threads(), n_entries // _MIN_ENTRIES_PER_THREAD))
