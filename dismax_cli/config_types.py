"""Option values checked against a config dataclass's type hints (``check_types``).

A YAML file or the merged command-line options give plain values (numbers, strings, lists);
:func:`check_types` checks each one against the hint of the field it sets, read with
:func:`typing.get_type_hints`, and normalises it (an int for a float field becomes a float, a
list for a tuple field a tuple). Supported hints: ``int``, ``float``, ``bool``, ``str``,
``X | None`` (``Optional[X]``), ``tuple[X, ...]``, ``Literal[...]`` and a nested config
dataclass; a field of any other type is a programming error (:class:`UnsupportedFieldType`),
raised for the whole class, not only when its key is given. This module imports neither torch
nor yaml (the training engine uses it). :mod:`dismax_cli.config` re-exports both names.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q

_SCALARS: dict[type, tuple[str, str]] = {  # type -> (one value, several values)
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    bool: ("true or false", "true/false values"),
    str: ("text", "text values"),
}
SUPPORTED = "int, float, bool, str, X | None, tuple[X, ...], Literal[...] or a config dataclass"


class InvalidValueError(DismaxError):
    """A value that is wrong whatever the machine holds (not a choice, out of range, a bad type).

    The CLI exits with status 2 for it (a usage error), like Click's own errors, and names the
    option (``--epochs``) or the config key (``epochs`` in FILE) the value came from.

    Attributes:
        key: the config key / option name with underscores (``batch_size``).
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class UnsupportedFieldType(TypeError):
    """A config dataclass declares a field whose type hint :func:`check_types` cannot check."""

    def __init__(self, cls: type, name: str, hint: object) -> None:
        super().__init__(
            f"config field {cls.__name__}.{name} has type {_spell(hint)}, which check_types does "
            f"not support: declare it as {SUPPORTED}"
        )
        self.field, self.hint = name, hint


def _spell(hint: object) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _optional_inner(hint: object) -> object | None:
    """``X`` for ``X | None`` / ``Optional[X]``; None for any other hint."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = typing.get_args(hint)
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return rest[0]
    return None


def _supported(hint: object) -> bool:
    """Whether :func:`_convert` can check values of ``hint`` (nested dataclasses recursively)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in _SCALARS:
        return True
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        field_hints(hint)  # raises for one of its fields
        return True
    if origin is Literal:
        return all(type(a) in _SCALARS for a in args)
    if origin is tuple:
        return len(args) == 2 and args[1] is Ellipsis and _supported(args[0])
    inner = _optional_inner(hint)
    return inner is not None and _supported(inner)


def field_hints(cls: type) -> dict[str, Any]:
    """The resolved type hint of every field of the dataclass ``cls``, in field order.

    Raises:
        UnsupportedFieldType: for the first field whose hint :func:`check_types` cannot check.
    """
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not _supported(hints[f.name]):
            raise UnsupportedFieldType(cls, f.name, hints[f.name])
        out[f.name] = hints[f.name]
    return out


def describe(hint: object) -> str:
    """What a value of ``hint`` is, for messages: ``an integer``, ``text``, ``a list``."""
    if hint in _SCALARS:
        return _SCALARS[hint][0]  # type: ignore[index]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin is tuple:
        item = args[0]
        return f"a list of {_SCALARS[item][1]}" if item in _SCALARS else "a list"
    inner = _optional_inner(hint)
    if inner is not None:
        return describe(inner)
    return f"a mapping of {_spell(hint)} keys"


def _convert(value: Any, hint: Any, key: str, what: str) -> tuple[bool, Any]:
    """``(ok, normalised value)`` of ``value`` for a field of ``hint`` (see module docstring)."""
    if hint in _SCALARS:
        return _convert_scalar(value, hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args), value
    if origin is tuple:
        items = value if isinstance(value, list | tuple) else [value]  # one item: a 1-tuple
        converted = [_convert(v, args[0], key, what) for v in items]
        ok = all(c[0] for c in converted)
        return ok, tuple(c[1] for c in converted) if ok else value
    inner = _optional_inner(hint)
    if inner is not None:
        return (True, None) if value is None else _convert(value, inner, key, what)
    return _convert_nested(value, hint, key, what)


def _convert_scalar(value: Any, hint: type) -> tuple[bool, Any]:
    if isinstance(value, bool) and hint is not bool:
        return False, value  # true is not 1
    if hint is float and isinstance(value, int):
        return True, float(value)
    return isinstance(value, hint), value


def _convert_nested(value: Any, hint: type, key: str, what: str) -> tuple[bool, Any]:
    """A nested config dataclass: an instance, or a mapping of its keys (checked in turn)."""
    if isinstance(value, hint):
        return True, value
    if not isinstance(value, Mapping):
        return False, value
    nested = {str(k): v for k, v in value.items()}
    try:
        return True, hint(**check_types(hint, nested, what=what))
    except InvalidValueError as exc:
        raise InvalidValueError(f"{key}.{exc.key}", str(exc)) from None


def check_value(key: str, value: Any, hint: Any, *, what: str) -> Any:
    """Return ``value`` normalised for a field of ``hint``.

    Raises:
        InvalidValueError: ``{what} option {key}={value} is invalid: use {kind}``.
    """
    ok, out = _convert(value, hint, key, what)
    if not ok:
        shown = q(value)
        kind = describe(hint)
        raise InvalidValueError(key, f"{what} option {key}={shown} is invalid: use {kind}")
    return out


def check_hinted(hints: Mapping[str, Any], values: Mapping[str, Any], *, what: str) -> dict:
    """:func:`check_types` against a ``key -> hint`` mapping (a flat view of composed configs).

    Raises:
        InvalidValueError: for an unknown key (listing the valid ones) or a value of a wrong type.
    """
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in hints:
            raise InvalidValueError(
                key, f"unknown {what} option {q(key)}: valid keys are {', '.join(sorted(hints))}"
            )
        out[key] = check_value(key, value, hints[key], what=what)
    return out


def check_types(cls: type, values: Mapping[str, Any], *, what: str) -> dict[str, Any]:
    """Check (and normalise) option values against the type hints of the dataclass ``cls``.

    Accepts ints for float fields; rejects bools where numbers are expected, strings where bools
    are expected ("no" is not False), and non-strings where strings are expected. A tuple field
    accepts one item or a list of items; a nested dataclass field a mapping of its keys.
    ``what`` names the config in messages (``training``, ``benchmark``).

    Raises:
        InvalidValueError: naming the key, the value and the expected type.
        UnsupportedFieldType: when a field of ``cls`` has a hint this module cannot check.
    """
    return check_hinted(field_hints(cls), values, what=what)


__all__ = [
    "InvalidValueError",
    "UnsupportedFieldType",
    "check_hinted",
    "check_types",
    "check_value",
    "describe",
    "field_hints",
]
