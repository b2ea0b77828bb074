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

import math
import os

from dismax_cli.config import InvalidValueError

#: The environment variable read by :func:`timing_seconds`.
TIMING_SECONDS_VARIABLE = "DISMAX_TIMING_SECONDS"


def timing_seconds(default: float) -> float:
    """The minimum CPU-seconds each timed item gets: ``DISMAX_TIMING_SECONDS`` or ``default``.

    Raises:
        InvalidValueError: the variable is set to something that is not a finite number ≥ 0
            (the CLI exits 2 naming it).
    """
    text = os.environ.get(TIMING_SECONDS_VARIABLE, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise InvalidValueError(
            TIMING_SECONDS_VARIABLE,
            f"{TIMING_SECONDS_VARIABLE}={text!r} is invalid: use a number of seconds ≥ 0 "
            "(0 times only the fixed minimum of rounds), or unset it for the default",
        )
    return value
