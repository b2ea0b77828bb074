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


def quote_value(value: object) -> str:
    """A value as messages show it, in the quoting of :func:`quote_path`, never Python's repr.

    Text and paths: between single quotes as typed (``'foo'``, ``'it's'``, ``'runs/x'``, not
    ``"it's"`` or ``PosixPath('runs/x')``); ``None``, ``True``, ``False`` as a config file
    writes them (``null``, ``true``, ``false``); numbers as they print; a list or tuple as a
    YAML flow list, its items as typed (``[a, b]``, ``[30, 7]``, ``[true]``, not ``['a', 'b']``;
    an item holding a space, comma, bracket or quote is quoted as text is).
    """
    if isinstance(value, str | os.PathLike):
        return quote_path(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_list_item(v) for v in value) + "]"
    return _scalar(value)


def _scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _list_item(value: object) -> str:
    if isinstance(value, str | os.PathLike):
        text = os.fsdecode(value)
        plain = text and text.isprintable() and not any(c in text for c in " ,[]{}'\"#")
        return text if plain else quote_path(text)
    return quote_value(value)


__all__ = ["DismaxError", "quote_path", "quote_value"]
