"""The ``--bootstrap`` setting of a benchmark: its default, bound and check (no torch, no numpy).

Kept apart from :mod:`dismax_cli.evidence` (which computes the intervals with numpy and the
library) so that :class:`~dismax_cli.benchmark_config.BenchmarkConfig` validates without
loading them: a bad value is a fast usage error (README "Design notes", "Exit codes").
"""

from __future__ import annotations

from dismax_cli.config_types import InvalidValueError
from dismax_cli.errors import quote_value as q

#: The most resamples ``--bootstrap`` takes (about 2 s per metric per 1,000 on 10k + 10k).
MAX_BOOTSTRAP = 100_000
#: ``--bootstrap`` default: resamples per interval.
DEFAULT_BOOTSTRAP = 1000


def check_bootstrap(value: object) -> int:
    """Return ``value`` if it is a number of bootstrap resamples: an integer in [0, MAX].

    Raises:
        InvalidValueError: (key ``bootstrap``) naming the range.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_BOOTSTRAP:
        raise InvalidValueError(
            "bootstrap",
            f"bootstrap={q(value)} is invalid: use an integer from 0 to {MAX_BOOTSTRAP:,} "
            f"(resamples per interval; 0 skips the intervals, {DEFAULT_BOOTSTRAP} is the default)",
        )
    return value


__all__ = ["DEFAULT_BOOTSTRAP", "MAX_BOOTSTRAP", "check_bootstrap"]
