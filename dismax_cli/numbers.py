"""The one grammar of numbers typed as text: environment variables, ``--require`` thresholds,
numeric command-line options.

Python's ``float``/``int`` also take ``1_0``, Arabic-Indic digits (``٣``) and full-width ones
(``１``); a value a person types is read only in plain ASCII decimal notation, the same
everywhere (README "Design notes"): an optional sign, digits with an optional decimal point,
an optional exponent (``10``, ``-0.5``, ``.5``, ``1e3``). Spaces around the value are ignored.
This module imports nothing of the library (the CLI's early checks use it).
"""

from __future__ import annotations

import re

#: A decimal number in ASCII: ``10``, ``+0.5``, ``.5``, ``5.``, ``1e-3``.
DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: An integer in ASCII: ``10``, ``-3``, ``+0``.
INTEGER = re.compile(r"[+-]?[0-9]+")


def parse_decimal(text: str) -> float | None:
    """The float of ``text`` in :data:`DECIMAL` notation (spaces around it ignored), else None.

    A finite spelling too large for a float (``1e999``) gives ``inf``: callers that need a
    finite number check :func:`math.isfinite`.
    """
    text = text.strip()
    return float(text) if DECIMAL.fullmatch(text) else None


def parse_integer(text: str) -> int | None:
    """The int of ``text`` in :data:`INTEGER` notation (spaces around it ignored), else None."""
    text = text.strip()
    return int(text) if INTEGER.fullmatch(text) else None


__all__ = ["DECIMAL", "INTEGER", "parse_decimal", "parse_integer"]
