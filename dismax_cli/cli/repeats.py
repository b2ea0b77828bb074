"""``--config`` given twice is refused; other single-value options keep their last value.

Click keeps the last value of an option given twice (``--epochs 5 --epochs 10`` trains 10
epochs), as argparse and the field's training scripts do, and scripts rely on it to override a
shared list of options (``dismax train $COMMON --epochs 10``); that stays. A second config file
is different: nothing merges two files, so ``--config a.yaml --config b.yaml`` would silently
drop ``a.yaml``. :func:`check_repeats` refuses it before Click parses the command line (exit 2,
naming both files). README "Design notes", *Options given twice*. Pure: no typer or click
import, like :mod:`dismax_cli.cli.multivalue`.
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
    """Refuse a :data:`NEVER_TWICE` option of ``spellings`` given twice in one command's ``args``.

    ``args`` are the command's tokens after its name, multi-value options already expanded to
    one ``--opt value`` pair each (:func:`~dismax_cli.cli.multivalue.expand`, so no value of
    theirs is an option token); tokens from ``--`` on are positional. ``spellings`` maps each
    single-value option's spelling (``--epochs``, ``--fpr``, ``--no-fpr``) to what it sets.

    Raises:
        InvalidValueError: (exit 2) for a :data:`NEVER_TWICE` option given twice, naming both
            values as typed and the fix.
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
        elif spelling.param in NEVER_TWICE:
            _refuse(first, (name, value))


def _refuse(first: tuple[str, str], second: tuple[str, str]) -> None:
    raise InvalidValueError(
        "config",
        f"--config is given twice ({quote_path(first[1])} and {quote_path(second[1])}): "
        "give one config file (options on the command line override its keys)",
    )


__all__ = ["NEVER_TWICE", "OptionSpelling", "check_repeats"]
