"""The numbers dismax reads from environment variables, read and checked in one place.

``DISMAX_NET_TIMEOUT`` (download socket timeout, seconds > 0), ``DISMAX_TIMING_SECONDS`` (the
Cost table's minimum timing, seconds >= 0) and ``DISMAX_WORKERS`` (DataLoader workers of a
streamed set, an integer >= 0). Each is written in the one grammar of typed numbers
(:mod:`dismax_cli.numbers`); unset or blank means the default. A bad value is an
:class:`~dismax_cli.config_types.InvalidValueError` (exit 2), worded the same for all three,
and every command checks all three before torch loads (:func:`check_environment`), whether or
not it would use them (README "Design notes"). This module imports nothing heavy.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from dismax_cli.config_types import InvalidValueError
from dismax_cli.errors import quote_value as q
from dismax_cli.numbers import parse_decimal, parse_integer


@dataclass(frozen=True)
class EnvNumber:
    """One numeric environment variable: its name, whether it is an integer, its lower bound
    (``low_open``: the bound itself is refused), what to write, for the message, and its upper
    bound (a socket timeout past ~9.2e9 s overflows the platform's time_t)."""

    name: str
    integer: bool
    low: float
    low_open: bool
    use: str
    high: float = math.inf


NET_TIMEOUT = EnvNumber(
    "DISMAX_NET_TIMEOUT", False, 0.0, True, "a number of seconds > 0 and <= 86,400, e.g. 10",
    high=86_400,
)  # fmt: skip
TIMING_SECONDS = EnvNumber(
    "DISMAX_TIMING_SECONDS", False, 0.0, False,
    "a number of seconds from 0 to 86,400 (0 times only the fixed minimum of rounds)",
    high=86_400,
)  # fmt: skip
WORKERS = EnvNumber(
    "DISMAX_WORKERS", True, 0, False, "an integer from 0 to 256 (0 decodes in the main process)",
    high=256,
)  # fmt: skip
#: Every numeric variable, in the order :func:`check_environment` reads them.
ENV_NUMBERS = (NET_TIMEOUT, TIMING_SECONDS, WORKERS)


def env_number(variable: EnvNumber) -> float | int | None:
    """The value of ``variable`` in the environment, or None when it is unset or blank.

    Raises:
        InvalidValueError: (exit 2) for text that is not a number of the variable's kind
            (``abc``, ``1_0``, ``2.5`` for an integer, ``inf``) or one below its bound:
            ``DISMAX_WORKERS='-1' is invalid: use an integer >= 0 (...), or unset it for the
            default``.
    """
    text = os.environ.get(variable.name)
    if text is None or not text.strip():
        return None
    value: float | int | None
    value = parse_integer(text) if variable.integer else parse_decimal(text)
    low_ok = value is not None and (
        value > variable.low if variable.low_open else value >= variable.low
    )
    if value is None or not math.isfinite(value) or not low_ok or value > variable.high:
        raise InvalidValueError(
            variable.name,
            f"{variable.name}={q(text)} is invalid: use {variable.use}, or unset it for the "
            "default",
        )
    return value


def check_environment() -> None:
    """Read every numeric variable (:data:`ENV_NUMBERS`) so that a bad one answers at once.

    Raises:
        InvalidValueError: (exit 2) for the first bad variable.
    """
    for variable in ENV_NUMBERS:
        env_number(variable)


__all__ = [
    "ENV_NUMBERS",
    "NET_TIMEOUT",
    "TIMING_SECONDS",
    "WORKERS",
    "EnvNumber",
    "check_environment",
    "env_number",
]
