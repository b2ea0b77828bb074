"""Single-value options given twice: ``--config`` always refused, others when they disagree.

Click keeps the last value of an option given twice (``--epochs 5 --epochs 10`` trains 10
epochs, ``--config a.yaml --config b.yaml`` silently drops ``a.yaml``). A second config file is
never an override of the first (nothing merges them), and two different values of one option
are a typing mistake more often than an intent, so :func:`check_repeats` refuses both before
Click parses the command line (exit 2, naming both values); the same value twice, and a
multi-value option repeated (``--ood a --ood b``), are fine. README "Design notes", *Options
given twice*. Pure: no typer or click import, like :mod:`dismax_cli.cli.multivalue`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dismax_cli.config_types import InvalidValueError
from dismax_cli.errors import quote_path

#: Options that may not be given twice at all, even with one value (their values never merge).
NEVER_TWICE = frozenset({"config"})


@dataclass(frozen=True)
class OptionSpelling:
    """One spelling of an option: the parameter it sets and, for a flag, the value it gives
    (``--fpr`` -> True, ``--no-fpr`` -> False); ``flag_value`` None means it takes a value."""

    param: str
    flag_value: bool | None = None


def check_repeats(args: Sequence[str], spellings: Mapping[str, OptionSpelling]) -> None:
    """Refuse a single-value option of ``spellings`` given twice in one command's ``args``.

    ``args`` are the command's tokens after its name, multi-value options already expanded to
    one ``--opt value`` pair each (:func:`~dismax_cli.cli.multivalue.expand`, so no value of
    theirs is an option token); tokens from ``--`` on are positional. ``spellings`` maps each
    single-value option's spelling (``--epochs``, ``--fpr``, ``--no-fpr``) to what it sets.

    Raises:
        InvalidValueError: (exit 2) for a :data:`NEVER_TWICE` option given twice, or another
            given twice with different values, naming both as typed and the fix.
    """
    seen: dict[str, tuple[str, str]] = {}  # param -> (spelling, value as typed)
    i = 0
    while i < len(args) and args[i] != "--":
        name, eq, inline = args[i].partition("=")
        spelling = spellings.get(name)
        i += 1
        if spelling is None:
            continue
        if spelling.flag_value is not None:
            value = name
        elif eq:
            value = inline
        elif i < len(args):
            value, i = args[i], i + 1
        else:
            return  # Click says the value is missing
        first = seen.get(spelling.param)
        if first is None:
            seen[spelling.param] = (name, value)
        elif spelling.param in NEVER_TWICE or first[1] != value:
            _refuse(spelling, first, (name, value))


def _refuse(spelling: OptionSpelling, first: tuple[str, str], second: tuple[str, str]) -> None:
    if spelling.param in NEVER_TWICE:
        raise InvalidValueError(
            spelling.param,
            f"--config is given twice ({quote_path(first[1])} and {quote_path(second[1])}): "
            "give one config file (options on the command line override its keys)",
        )
    if spelling.flag_value is not None:
        raise InvalidValueError(
            spelling.param,
            f"{first[0]} and {second[0]} are both given: keep the one you mean",
        )
    raise InvalidValueError(
        spelling.param,
        f"{first[0]} is given twice with different values ({quote_path(first[1])} and "
        f"{quote_path(second[1])}): keep the one you mean",
    )


__all__ = ["NEVER_TWICE", "OptionSpelling", "check_repeats"]
