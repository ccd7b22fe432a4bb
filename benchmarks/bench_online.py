"""Online EM (``partial_fit``) against the batch fit on the same rows.

A softmax-gated mixture of 4 linear-Gaussian experts (d = 10, the truth of
``_data.make_truth``) arrives as 100 chunks, 1e6 rows in all (quick: 5e5).
Each chunk is generated when its turn comes, from its own seed, so the
stream never holds more than one; the batch fit regenerates the same rows
and fits them all at once (they fit in memory: 88 MB for 1e6 rows).
``MixtureOfExpertsRegressor(4, random_state=0)`` with its defaults for both.

Reported: the mean log-likelihood of 100,000 held-out rows under each
model (and under the truth), the time of each, and the stream's peak
memory as traced by ``tracemalloc`` (NumPy's buffers included), as a
multiple of one chunk's bytes (X and y): during the first call (an
in-memory fit on the first chunk), then over the first and the second
half of the remaining chunks, whose peaks must not grow with the stream's
length. The stream runs twice, timed without tracing, then traced.
"""

import time
import tracemalloc

import numpy as np
from scipy.special import log_softmax, logsumexp
from scipy.stats import norm

from skmoe import MixtureOfExpertsRegressor

from _data import make_truth
from _timing import print_table, verdict

N_FEATURES, N_EXPERTS, N_CHUNKS, SEED = 10, 4, 100, 11
TARGET_LOG_LIKELIHOOD = 0.01  # relative gap to the batch fit's held-out log-likelihood
TARGET_MEMORY = 6.0  # the stream's peak, in chunks (X and y)
TARGET_GROWTH = 1.1  # second half's peak over the first half's


def _truth_log_likelihood(truth, X, y):
    """Mean log-likelihood of ``(X, y)`` under the true mixture."""
    log_gate = log_softmax(X @ truth.gate_coef + truth.gate_intercept, axis=1)
    means = np.einsum("nd,kd->nk", X, truth.coef[:, :, 0]) + truth.intercept[:, 0]
    log_density = norm.logpdf(y[:, None], means, truth.noise_std)
    return float(logsumexp(log_gate + log_density, axis=1).mean())


def _chunk(truth, index, size):
    """Chunk ``index`` of the stream: the same rows every time it is asked for.

    Seeded by ``(SEED, index)``; the held-out rows by ``(SEED, N_CHUNKS)``.
    """
    return truth.sample_regression(size, np.random.default_rng((SEED, index)))


def _model():
    return MixtureOfExpertsRegressor(N_EXPERTS, random_state=0)


def _timed_stream(truth, size):
    model = _model()
    start = time.perf_counter()
    for index in range(N_CHUNKS):
        model.partial_fit(*_chunk(truth, index, size))
    return model, time.perf_counter() - start


def _traced_stream(truth, size):
    """Peak traced bytes of the first call, and of each half of the other chunks."""
    model = _model()
    peaks = []
    tracemalloc.start()
    try:
        for index in range(N_CHUNKS):
            if index in (1, N_CHUNKS // 2):
                peaks.append(tracemalloc.get_traced_memory()[1])
                tracemalloc.reset_peak()
            model.partial_fit(*_chunk(truth, index, size))
        peaks.append(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()
    return model, peaks


def run(quick=False):
    """Print the table; return the target verdict lines."""
    n_rows = 500_000 if quick else 1_000_000
    size = n_rows // N_CHUNKS
    truth = make_truth(N_FEATURES, N_EXPERTS, seed=SEED)
    X_test, y_test = truth.sample_regression(100_000, np.random.default_rng((SEED, N_CHUNKS)))

    online, online_seconds = _timed_stream(truth, size)
    traced, peaks = _traced_stream(truth, size)
    parts = [_chunk(truth, index, size) for index in range(N_CHUNKS)]
    X, y = np.vstack([X for X, _ in parts]), np.concatenate([y for _, y in parts])
    del parts
    start = time.perf_counter()
    batch = _model().fit(X, y)
    batch_seconds = time.perf_counter() - start
    del X, y

    def held_out(model):
        return float(model.log_likelihood(X_test, y_test).mean())

    batch_ll, online_ll = held_out(batch), held_out(online)
    gap = (batch_ll - online_ll) / abs(batch_ll)
    chunk_bytes = size * (N_FEATURES + 1) * 8
    first, early, late = (peak / chunk_bytes for peak in peaks)
    rows = [
        ["truth", "", f"{_truth_log_likelihood(truth, X_test, y_test):.5f}", "", ""],
        [
            f"batch fit ({n_rows:,} rows)",
            f"{batch.n_iter_} EM iterations",
            f"{batch_ll:.5f}",
            "",
            f"{batch_seconds:.1f}",
        ],
        [
            f"partial_fit ({N_CHUNKS} x {size:,} rows)",
            f"{online.n_iter_} chunks",
            f"{online_ll:.5f}",
            f"{gap:+.2%}",
            f"{online_seconds:.1f}",
        ],
    ]
    targets = [
        verdict(
            f"partial_fit within 1% of batch held-out log-likelihood (measured {gap:+.3%} below)",
            gap <= TARGET_LOG_LIKELIHOOD,
        ),
        verdict(
            f"peak memory bounded by the chunk size: stream's peak <= "
            f"{TARGET_MEMORY:g} chunks (measured {max(early, late):.2f}) and not growing "
            f"(second half / first half {late / early:.2f} <= {TARGET_GROWTH})",
            max(early, late) <= TARGET_MEMORY and late <= TARGET_GROWTH * early,
        ),
    ]
    print_table(
        f"Online EM: partial_fit vs batch fit, MoE({N_EXPERTS} x WeightedLeastSquares), "
        f"d={N_FEATURES}, {n_rows:,} rows; held-out mean log-likelihood of 100,000 rows",
        ["model", "work", "held-out log-lik", "gap to batch", "seconds"],
        rows,
        notes=[
            f"partial_fit's stream, peak traced memory (tracemalloc; the chunk and its "
            f"generation included) in chunks of {chunk_bytes / 1e6:.2f} MB (X and y of "
            f"{size:,} rows): first call (a fit on "
            f"the first chunk) {first:.2f}; chunks 2-{N_CHUNKS // 2} {early:.2f}; chunks "
            f"{N_CHUNKS // 2 + 1}-{N_CHUNKS} {late:.2f}. The batch fit holds all "
            f"{N_CHUNKS} chunks ({N_CHUNKS * chunk_bytes / 1e6:.0f} MB) before it starts.",
            f"the traced stream reached the same model: held-out log-likelihood "
            f"{held_out(traced):.5f}.",
        ],
        targets=targets,
    )
    return targets


if __name__ == "__main__":
    import sys

    run(quick="--quick" in sys.argv)
