"""The one exception type for mistakes a user can make.

Library code raises :class:`DismaxError` with a one-line message that names the offending value
and the fix; the CLI prints that line to stderr and exits non-zero without a traceback.
"""

from __future__ import annotations

import os


class DismaxError(Exception):
    """A user-facing error: bad input, missing file or dataset, incompatible checkpoint."""


def quote_path(path: str | os.PathLike[str]) -> str:
    """``'PATH'``: a path as messages show it, between single quotes, as typed.

    Quotes, backslashes and non-ASCII letters stay as they are (no Python ``repr`` escapes, no
    switch to double quotes); only control characters (a newline in a file name) are written as
    escapes, so the message stays one line. README "Design notes".
    """
    text = os.fsdecode(path)
    shown = "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )
    return f"'{shown}'"


__all__ = ["DismaxError", "quote_path"]
