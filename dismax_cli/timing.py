"""How long the benchmark's Cost columns time each method: ``DISMAX_TIMING_SECONDS``.

The inference timers (:func:`dismax_cli.evaluation.measure_throughputs`,
:func:`dismax_cli.detection.measure_score_costs`) run a fixed minimum of interleaved rounds, then
more rounds until every method (or detector) has been timed for a minimum number of CPU-seconds
(1 s per method, 0.25 s per detector by default: small sets need hundreds of samples for a
stable median). ``DISMAX_TIMING_SECONDS=S`` sets that minimum for both to ``S`` seconds; ``0``
keeps only the fixed rounds (quick runs and the test suite, which read the Cost table's shape,
not its speeds). Torch-free: the CLI checks the variable before any work.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import TypeVar

K = TypeVar("K")
B = TypeVar("B")

#: The environment variable read by :func:`timing_seconds`.
TIMING_SECONDS_VARIABLE = "DISMAX_TIMING_SECONDS"


def timing_seconds(default: float) -> float:
    """The minimum CPU-seconds each timed item gets: ``DISMAX_TIMING_SECONDS`` or ``default``.

    Raises:
        InvalidValueError: the variable is set to something that is not a number from 0 to
            86,400 (:data:`dismax_cli.env_settings.TIMING_SECONDS`; the CLI exits 2 naming it).
    """
    from dismax_cli.env_settings import TIMING_SECONDS, env_number

    value = env_number(TIMING_SECONDS)  # ASCII decimals only, as --require (dismax_cli.numbers)
    return default if value is None else float(value)


def interleaved_seconds(
    timed: dict[K, Callable[[B], float]],
    batches: Sequence[B],
    *,
    rounds: int,
    min_seconds: float,
    max_rounds: int,
) -> dict[K, float]:
    """Seconds per pass over ``batches`` of every item, timed interleaved in one state.

    ``timed[name](batch)`` runs one item on one batch and returns the seconds it took (CPU time
    on CPU, synchronised wall clock on CUDA: the caller's clock). Every item is warmed up on the
    first batch; then, at least ``rounds`` times and more (up to ``max_rounds``) until every item
    has been timed for ``min_seconds``, each batch is run by every item in an order that rotates
    every round, each timed run right after an untimed run of the same item on the same batch
    (so that no item is timed in the state its neighbour left: issue 11, README "Design notes").
    A batch's time is the median over rounds; a pass is the sum of those medians.

    Used by :func:`dismax_cli.evaluation.measure_throughputs` (models and ensembles) and
    :func:`dismax_cli.detection.measure_score_costs` (detectors).
    """
    names = list(timed)
    for name in names:  # warm-up: allocator, kernels, caches
        timed[name](batches[0])
    times: dict[K, list[list[float]]] = {n: [[] for _ in batches] for n in names}
    spent = dict.fromkeys(names, 0.0)
    r = 0
    # At least ``rounds``; more while an item has been timed for under ``min_seconds`` in all
    # (small sets: a batch of digits takes milliseconds, too short for one reading).
    while r < rounds or (r < max_rounds and min(spent.values()) < min_seconds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for k, batch in enumerate(batches):
            for name in order:
                timed[name](batch)  # untimed: the same state for every item
                seconds = timed[name](batch)
                times[name][k].append(seconds)
                spent[name] += seconds
        r += 1
    return {n: sum(statistics.median(t) for t in times[n]) for n in names}
