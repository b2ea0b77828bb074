"""The YAML 1.2 core schema reader of config files (:func:`load_yaml`).

:mod:`dismax_cli.config` imports this module only when it reads a file, so the training engine,
which checks option values with :func:`dismax_cli.config.check_types`, never loads ``yaml``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

from dismax_cli.errors import quote_path


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with the YAML 1.2 core schema's implicit types (no timestamps, no yes/no/on)."""


_Yaml12Loader.yaml_implicit_resolvers = {}
_RESOLVERS: tuple[tuple[str, str, str], ...] = (
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", "~nN"),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
)
for _tag, _pattern, _first in _RESOLVERS:
    _Yaml12Loader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))
_Yaml12Loader.add_implicit_resolver(  # the empty scalar is null
    "tag:yaml.org,2002:null", re.compile(r"^$"), [""]
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _construct_float(loader: yaml.SafeLoader, node: yaml.Node) -> float:
    text = str(loader.construct_scalar(node)).lower()  # type: ignore[arg-type]
    if text.endswith(".inf"):
        return -math.inf if text.startswith("-") else math.inf
    if text == ".nan":
        return math.nan
    return float(text)


class DuplicateKeyError(yaml.YAMLError):
    """A mapping of a YAML document that holds one key twice (``key``, 1-based ``line``)."""

    def __init__(self, key: object, line: int) -> None:
        super().__init__(f"duplicate key {key!r} at line {line}")
        self.key, self.line = key, line


class UnsupportedYamlError(yaml.YAMLError):
    """Valid YAML that a config file cannot hold: a list or mapping as a key, a second
    document, a Python or other unknown tag. ``reason`` says what (in plain words), ``line`` is
    1-based (None when unknown) and ``fix`` what to write instead."""

    def __init__(self, reason: str, line: int | None, fix: str) -> None:
        super().__init__(f"{reason} at line {line}: {fix}")
        self.reason, self.line, self.fix = reason, line, fix


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.Node) -> dict[Any, Any]:
    """A mapping that refuses a key given twice (YAML 1.2 requires unique keys)."""
    assert isinstance(node, yaml.MappingNode)
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # a list or mapping as a key: valid YAML, but no option name
            raise UnsupportedYamlError(
                f"has a {'mapping' if isinstance(key, dict) else 'list'} as a key",
                key_node.start_mark.line + 1,
                "keys are option names (epochs: 10)",
            ) from None
        if duplicate:
            raise DuplicateKeyError(key, key_node.start_mark.line + 1)
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_Yaml12Loader.add_constructor("tag:yaml.org,2002:map", _construct_unique_mapping)
_Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Yaml12Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def load_yaml(text: str) -> Any:
    """Parse YAML text with the YAML 1.2 core schema.

    ``5e-4``, ``1E-3``, ``.5``, ``10`` are numbers; only ``true``/``false`` (any of three
    capitalisations) are booleans, so ``on``, ``no``, ``y`` stay strings; dates stay strings.
    A key given twice in one mapping is an error (:class:`DuplicateKeyError`), not last-wins.

    Raises:
        UnsupportedYamlError: (a ``yaml.YAMLError``) for valid YAML a config cannot hold: a
            list or mapping as a key, more than one document (``---``), a tag such as
            ``!!python/object`` (never constructed).
        yaml.YAMLError: for invalid syntax.
    """
    try:
        return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.composer.ComposerError as exc:
        if "single document" not in f"{exc.context} {exc.problem}":
            raise
        raise UnsupportedYamlError(
            "holds more than one YAML document",
            _line(exc),
            "keep one (remove the '---' line there and what follows it)",
        ) from None
    except yaml.constructor.ConstructorError as exc:
        tag = _tag_of(str(exc.problem))
        if tag is None:
            raise
        raise UnsupportedYamlError(
            f"uses the tag {quote_path(tag)}, which config files do not allow",
            _line(exc),
            "write a plain value (text, a number, true/false, a list or a mapping)",
        ) from None


def _line(exc: yaml.MarkedYAMLError) -> int | None:
    mark = exc.problem_mark
    return mark.line + 1 if mark is not None else None


def _tag_of(problem: str) -> str | None:
    """The tag named by SafeLoader's "could not determine a constructor for the tag 'X'"."""
    match = re.search(r"constructor for the tag '([^']*)'", problem)
    if match is None:
        return None
    tag = match.group(1)
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org") else tag


__all__ = ["DuplicateKeyError", "UnsupportedYamlError", "load_yaml"]
