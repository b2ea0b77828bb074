"""The one exception type for mistakes a user can make.

Library code raises :class:`DismaxError` with a one-line message that names the offending value
and the fix; the CLI prints that line to stderr and exits non-zero without a traceback.
"""

from __future__ import annotations

import base64
import math
import os
from collections.abc import Mapping


class DismaxError(Exception):
    """A user-facing error: bad input, missing file or dataset, incompatible checkpoint."""


def quote_path(path: str | os.PathLike[str]) -> str:
    """``'PATH'``: a path as messages show it, between single quotes, as typed.

    Quotes, backslashes and non-ASCII letters stay as they are (no Python ``repr`` escapes, no
    switch to double quotes); only control characters (a newline in a file name) are written as
    escapes, so the message stays one line. A byte that is not UTF-8 (a command-line argument
    or file name decoded with ``surrogateescape``) is shown as the byte it was, ``\\xff``.
    README "Design notes".
    """
    text = os.fsdecode(path)
    return f"'{''.join(map(_shown_char, text))}'"


def _shown_char(ch: str) -> str:
    """One character of a quoted value: as it is, or escaped when it is not printable."""
    if ch.isprintable() or ch == " ":
        return ch
    if "\udc80" <= ch <= "\udcff":  # surrogateescape's stand-in for the byte 0x80..0xff
        return f"\\x{ord(ch) - 0xDC00:02x}"
    return ch.encode("unicode_escape").decode("ascii")


def undecodable_bytes(text: str) -> str | None:
    """The bytes of ``text`` that were not UTF-8 (``surrogateescape``), escaped (``\\xff``);
    None when there are none. A message names them apart from control characters."""
    found = [_shown_char(ch) for ch in text if "\udc80" <= ch <= "\udcff"]
    return " ".join(dict.fromkeys(found)) if found else None


def quote_value(value: object) -> str:
    """A value as messages show it, in the quoting of :func:`quote_path`, never Python's repr.

    Text and paths: between single quotes as typed (``'foo'``, ``'it's'``, ``'runs/x'``, not
    ``"it's"`` or ``PosixPath('runs/x')``); ``None``, ``True``, ``False`` as a config file
    writes them (``null``, ``true``, ``false``); numbers as they print, non-finite ones in YAML's
    spelling (``.inf``, ``-.inf``, ``.nan``); bytes as YAML's ``!!binary BASE64``; a list or
    tuple as a YAML flow list, its items as typed (``[a, b]``, ``[30, 7]``, ``[true]``, not
    ``['a', 'b']``; an item holding a space, comma, bracket or quote is quoted as text
    is); a mapping as a YAML flow mapping (``{a: 1}``, not ``{'a': 1}``). Control characters are
    escaped everywhere, so the message stays one line. README "Design notes".
    """
    if isinstance(value, str | os.PathLike):
        return quote_path(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_list_item(v) for v in value) + "]"
    if isinstance(value, Mapping):
        pairs = (f"{_list_item(k)}: {_list_item(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    return _scalar(value)


#: Characters a POSIX shell reads literally (those :func:`shlex.quote` leaves bare).
_SHELL_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_")


def shell_word(word: str | os.PathLike[str]) -> str:
    """One word of a command line, quoted for a POSIX shell as :func:`shlex.quote` does.

    ``my run`` -> ``'my run'``, ``it's`` -> ``'it'"'"'s'``, ``runs/x`` stays bare; control
    characters are then escaped (as :func:`quote_path` does) so the message stays one line.
    """
    text = os.fsdecode(word)
    if text and all(ch in _SHELL_SAFE for ch in text):
        return text
    return quote_path(text.replace("'", "'\"'\"'"))


def shell_command(*words: str | os.PathLike[str]) -> str:
    """A suggested command line, ``dismax WORD...``, every word quoted by :func:`shell_word`.

    Messages suggest commands with it so that a copied line runs as shown: ``dismax calibrate
    'my run'``, ``dismax train --out 'it'"'"'s unfin' --resume``. README "Design notes".
    """
    return " ".join(["dismax", *(shell_word(w) for w in words)])


def read_failure(exc: OSError | UnicodeDecodeError) -> str:
    """Why a text file could not be read, as the end of ``FILE ...``: never Python's codec words.

    ``is not UTF-8 text (byte 0x80 at offset 64; it looks binary)`` for undecodable bytes,
    else ``cannot be read (Permission denied)``; the caller adds the fix.
    """
    if isinstance(exc, UnicodeDecodeError):
        byte = exc.object[exc.start] if exc.start < len(exc.object) else None
        at = f"byte 0x{byte:02x} at offset {exc.start}" if byte is not None else "its end"
        binary = b"\0" in exc.object[:4096] or exc.object[:2] in (b"PK", b"\x80\x02")
        return f"is not UTF-8 text ({at}{'; it looks binary' if binary else ''})"
    return f"cannot be read ({exc.strerror or exc})"


def kind_of(value: object) -> str:
    """What a config or report value is, in plain words: ``a number``, ``text``, ``a list``.

    Messages use it instead of a Python type name (``int``, ``str``, ``dict``).
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bytes | bytearray):
        return "binary data"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple | set | frozenset):
        return "a list"
    return "a value of another kind"


def _scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    if isinstance(value, bytes | bytearray):
        return "!!binary " + base64.b64encode(bytes(value)).decode("ascii")
    return quote_path(str(value))[1:-1]  # control characters escaped, no quotes


def _list_item(value: object) -> str:
    if isinstance(value, str | os.PathLike):
        text = os.fsdecode(value)
        plain = text and text.isprintable() and not any(c in text for c in " ,[]{}'\"#")
        return text if plain else quote_path(text)
    return quote_value(value)


__all__ = [
    "DismaxError",
    "kind_of",
    "quote_path",
    "quote_value",
    "read_failure",
    "shell_command",
    "shell_word",
    "undecodable_bytes",
]
