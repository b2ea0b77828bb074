"""The one exception type for mistakes a user can make.

Library code raises :class:`DismaxError` with a one-line message that names the offending value
and the fix; the CLI prints that line to stderr and exits non-zero without a traceback.
"""

from __future__ import annotations


class DismaxError(Exception):
    """A user-facing error: bad input, missing file or dataset, incompatible checkpoint."""


__all__ = ["DismaxError"]
