"""Shared helpers: an interleaved median-of-repeats timer, timing under
thread-pool limits, and a plain-text table printer.

The benchmark machine is shared, so load from other processes comes and goes.
Timing candidate A for a while and then candidate B would fold that drift into
their ratio; instead every repeat runs each candidate once, in an order that
rotates from repeat to repeat, and the median over repeats is reported.
"""

import time

from threadpoolctl import threadpool_limits

# Thread-pool limits to compare a fit under. On a busy 2-core machine a pool
# whose worker is descheduled stalls the whole call at its next barrier.
THREAD_LIMITS = {
    "default": None,
    "BLAS 1 thread": {"blas": 1},
    "OpenMP 1 thread": {"openmp": 1},
    "BLAS + OpenMP 1 thread": {"blas": 1, "openmp": 1},
}


def _calibrate(func, min_time):
    """Calls per measurement so that one measurement lasts at least ``min_time``."""
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            func()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return number
        # Aim 20% over the threshold; grow at most 10x per step to absorb noise.
        wanted = int(number * 1.2 * min_time / max(elapsed, 1e-9))
        number = min(10 * number, max(number + 1, wanted))


def median(values):
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def time_interleaved(candidates, repeats, min_time=0.0, warmup=True):
    """Median seconds per call of each candidate, measured side by side.

    Parameters
    ----------
    candidates : dict of name -> zero-argument callable
    repeats : int
        Rounds; each round times every candidate once, rotating the order.
    min_time : float
        Fast candidates are called several times per measurement (the same
        number in every round) until a measurement lasts this long, so timer
        resolution and call overhead stay negligible. The calibration calls
        double as the warm-up.
    warmup : bool
        With ``min_time=0``, still call each candidate once untimed first
        (first-call costs: page faults, lazy imports). Long fits pass False:
        their first-call costs are negligible and a warm-up doubles run time.

    Returns
    -------
    dict of name -> median seconds per call
    """
    names = list(candidates)
    if warmup or min_time > 0:
        numbers = {name: _calibrate(candidates[name], min_time) for name in names}
    else:
        numbers = dict.fromkeys(names, 1)
    samples = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            func, number = candidates[name], numbers[name]
            start = time.perf_counter()
            for _ in range(number):
                func()
            samples[name].append((time.perf_counter() - start) / number)
    return {name: median(samples[name]) for name in names}


def time_thread_limits(func, repeats):
    """Median seconds of ``func`` under each of THREAD_LIMITS, interleaved."""

    def limited(limits):
        def call():
            with threadpool_limits(limits=limits):
                func()

        return call if limits else func

    return time_interleaved(
        {name: limited(limits) for name, limits in THREAD_LIMITS.items()}, repeats, warmup=False
    )


def print_thread_table(title, times):
    """Table of ``time_thread_limits`` results, relative to the default."""
    print_table(
        title,
        ["thread pools", "seconds", "x default"],
        [[name, f"{t:.3f}", f"{t / times['default']:.2f}"] for name, t in times.items()],
    )


def verdict(description, met):
    """The closing line of a table that has a target."""
    return f"target: {description} -> {'MET' if met else 'NOT MET'}"


def print_table(title, header, rows, notes=(), targets=()):
    """Plain-text table: a title, right-aligned columns, then notes and target lines.

    Cells are printed as given (format numbers before passing them).
    """
    cells = [list(map(str, header))] + [list(map(str, row)) for row in rows]
    widths = [max(len(row[j]) for row in cells) for j in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print(f"\n{title}\n{'=' * len(title)}")
    for i, row in enumerate(cells):
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths)))
        if i == 0:
            print(line)
    for note in notes:
        print(note)
    for target in targets:
        print(target)
