"""Several values after one flag (``--ood svhn lsun``), decided by syntax alone.

Click gives an option one value per flag; users of OOD tools write ``--ood a b c``. This module
rewrites such a token list as repeated flags (``--ood a --ood b --ood c``) before Click parses
it. It is pure: no typer or click import and no file-system access, so every case is a unit
test over token lists (``tests/test_cli_multivalue.py``). Which options take several values,
which take one and how many positional arguments a command has come from the command objects
(:func:`dismax_cli.cli.entry.command_syntax`).

The rules (README "Design notes", *Multi-value options*):

* the values of a multi-value option run until an option token (``-x``, ``--x``, ``--``; a
  lone ``-`` is a value);
* for a command with a positional argument after its options (``dismax score CHECKPOINT``), a
  path-like token also ends them while that argument is still missing: one ending in ``.pt``
  or holding a path separator, unless it is a dataset spec by syntax (a ``kind:`` prefix, a
  ``[class subset]`` or a ``LABEL=`` label; the grammar of
  :func:`dismax_cli.data.registry.check_spec`);
* ``--ood=a,b`` and ``--ood a,b`` are split at commas outside brackets (``digits[0,2]`` stays
  one spec), except for the options in ``keep_commas`` (``--require``); the flag may also be
  repeated;
* a bare name could be either (``dismax score --ood uniform myrun``): when the command's
  positional argument is then missing, :class:`AmbiguousValuesError` says how to write it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

#: Path separators: a bare dataset spec never holds one (``npz:PATH`` has a ``kind:`` prefix).
PATH_SEPARATORS = ("/", "\\")


class AmbiguousValuesError(ValueError):
    """A multi-value option took the token the command needed as its positional argument."""


class MissingValuesError(ValueError):
    """A multi-value option followed by an option token or nothing (``--ood -h``)."""


@dataclass(frozen=True)
class CommandSyntax:
    """What :func:`expand` needs to know about one command's options and arguments.

    Attributes:
        multi: options that take several values (``--ood``, ``--methods``, ...).
        valued: other options that take exactly one value (``--device cpu``).
        positionals: names of the required positional arguments (``("CHECKPOINT",)``).
        keep_commas: multi-value options whose values are never split at commas.
        usage: how the command is typed, for messages (``"dismax score"``).
    """

    multi: frozenset[str] = frozenset()
    valued: frozenset[str] = frozenset()
    positionals: tuple[str, ...] = ()
    keep_commas: frozenset[str] = frozenset()
    usage: str = "dismax"


@dataclass
class _Scan:
    out: list[str] = field(default_factory=list)
    positionals: int = 0
    #: (option, its last value) of the latest multi-value run that took bare values; of the
    #: latest that took two or more, when there is one (its last value is likelier a stray).
    last_run: tuple[str, str] | None = None
    last_long_run: tuple[str, str] | None = None


def is_option_token(token: str) -> bool:
    """``-x``, ``--x`` or ``--`` (a lone ``-`` is a value: stdin by convention)."""
    return token.startswith("-") and token != "-"


def _before_separator(text: str) -> str:
    for sep in PATH_SEPARATORS:
        text = text.split(sep, 1)[0]
    return text


def looks_like_spec(token: str) -> bool:
    """A dataset spec by syntax: ``kind:`` before any separator, or a ``[...]`` subset or a
    ``LABEL=`` before any separator (``runs/lr=0.1`` and ``runs/exp[1]`` are paths). A token
    that starts as a path does (``./``, ``../``, ``/``, ``~``) is never a spec."""
    if token.startswith(("./", "../", "/", "~", ".\\", "..\\", "\\")):
        return False
    head = _before_separator(token)
    return ":" in head or "[" in head or "=" in head


def is_path_like(token: str) -> bool:
    """A run folder or checkpoint by syntax: ends in ``.pt`` or holds a separator; no spec."""
    if looks_like_spec(token):
        return False
    return token.endswith(".pt") or any(sep in token for sep in PATH_SEPARATORS)


def split_commas(value: str) -> list[str]:
    """``a,digits[0,2]`` -> ``["a", "digits[0,2]"]``: commas inside brackets stay.

    ``\\,`` is a comma that does not split (a file name with a comma: ``npz:a\\,b.npz`` is the
    file ``a,b.npz``); any other backslash is kept as typed. Empty parts are dropped; a value
    with no part left stays as it is (``""``), so that the command names it in its error.
    """
    parts, depth, current = [], 0, ""
    escaped = False
    for ch in value:
        if escaped:
            current += ch if ch == "," else "\\" + ch
            escaped = False
            continue
        if ch == "\\":
            escaped = True
            continue
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current + ("\\" if escaped else ""))
    return [p for p in parts if p] or [value]


def _ends_values(token: str, syntax: CommandSyntax, scan: _Scan) -> bool:
    if is_option_token(token):
        return True
    missing_positional = scan.positionals < len(syntax.positionals)
    return missing_positional and is_path_like(token)


def _take_values(args: Sequence[str], i: int, syntax: CommandSyntax, scan: _Scan) -> int:
    """Expand the multi-value option at ``args[i]``; return the index after its values."""
    name, eq, inline = args[i].partition("=")
    values = [inline] if eq else []
    i += 1
    while i < len(args) and not _ends_values(args[i], syntax, scan):
        values.append(args[i])
        i += 1
    if not values:
        # Click would take the next option token (``--ood -h``) as the value.
        raise MissingValuesError(f"{name} needs at least one value: e.g. {name} uniform")
    bare = len(values) - (1 if eq else 0)
    if bare:
        scan.last_run = (name, values[-1])
    if len(values) > 1:
        scan.last_long_run = (name, values[-1])
    for value in values:
        parts = [value] if name in syntax.keep_commas else split_commas(value)
        for part in parts:
            scan.out.extend([name, part])
    return i


def expand(args: Sequence[str], syntax: CommandSyntax) -> list[str]:
    """Rewrite one command's tokens so that each value of a multi-value option has its flag.

    ``["--ood", "a", "b", "runs/x"]`` -> ``["--ood", "a", "--ood", "b", "runs/x"]`` for a
    command with one positional argument. Everything from ``--`` on is kept as it is.

    Raises:
        AmbiguousValuesError: a positional argument is missing and a multi-value option took
            bare values (the last of them may be meant as the argument); the message says to
            put the argument first or after ``--``.
    """
    scan = _Scan()
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            scan.out.extend(args[i:])
            scan.positionals += len(args) - i - 1
            break
        name, eq, _ = token.partition("=")
        if name in syntax.multi:
            i = _take_values(args, i, syntax, scan)
            continue
        scan.out.append(token)
        i += 1
        if not is_option_token(token):
            scan.positionals += 1
        elif name in syntax.valued and not eq and i < len(args):
            scan.out.append(args[i])  # the option's own value, whatever it looks like
            i += 1
    _check_positionals(syntax, scan)
    return scan.out


def _check_positionals(syntax: CommandSyntax, scan: _Scan) -> None:
    run = scan.last_long_run or scan.last_run
    if run is None or scan.positionals >= len(syntax.positionals):
        return
    option, value = run
    what = syntax.positionals[scan.positionals]
    # Suggested command lines are quoted for a POSIX shell, so a pasted one works ('e f').
    path = value if value.startswith(("/", "./", "../")) else f"./{value}"
    word, path_word, shown = _shell_word(value), _shell_word(path), _escaped(value)
    raise AmbiguousValuesError(
        f"{what} is missing and {option} took '{shown}' as one of its values: if it "
        f"is the {what}, give it before the options ({syntax.usage} {word} {option} ...), "
        f"after -- ({syntax.usage} {option} ... -- {word}) or as a path ({path_word}); "
        f"otherwise add the {what}"
    )


#: Characters a POSIX shell reads literally (those of :func:`shlex.quote`).
_SHELL_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_")


def _shell_word(text: str) -> str:
    """``text`` quoted for a POSIX shell as :func:`shlex.quote` does (this module imports no
    more than it must), control characters then escaped so a message stays one line."""
    if text and all(ch in _SHELL_SAFE for ch in text):
        return text
    return _escaped("'" + text.replace("'", "'\"'\"'") + "'")


def _escaped(text: str) -> str:
    """Control characters as escapes (``\\n``, ``\\x1b``), as ``errors.quote_path`` shows them."""
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )
