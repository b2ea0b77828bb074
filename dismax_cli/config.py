"""YAML config files for ``dismax train`` and ``dismax benchmark`` (keys mirror the CLI options).

Unknown keys are errors; options given on the command line override the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dismax_cli.errors import DismaxError


def read_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of option names (dashes or underscores) to values.

    Raises:
        DismaxError: for a missing file, invalid YAML, or a document that is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise DismaxError(f"config file {str(path)!r} does not exist: check the --config path")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise DismaxError(
            f"config file {str(path)!r} is not valid YAML{where}: fix its syntax"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DismaxError(f"cannot read config file {str(path)!r}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DismaxError(
            f"config file {str(path)!r} must hold a mapping of option: value, not a "
            f"{type(data).__name__}"
        )
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def merge_options(file_values: dict[str, Any], cli_values: dict[str, Any]) -> dict[str, Any]:
    """File values overridden by every CLI option that was given (not None)."""
    merged = dict(file_values)
    merged.update({k: v for k, v in cli_values.items() if v is not None})
    return merged


__all__ = ["merge_options", "read_yaml_config"]


def check_types(cls: type, values: dict[str, Any], *, what: str) -> dict[str, Any]:
    """Check (and normalise) option values against a config dataclass's annotations.

    Accepts ints for float fields; rejects bools where numbers are expected, strings where bools
    are expected ("no" is not False), and non-strings where strings are expected. A tuple field
    accepts one string or a list of strings.

    Raises:
        DismaxError: naming the key, the value and the expected type.
    """
    import dataclasses

    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        expected = types.get(key)
        if expected is None:
            raise DismaxError(
                f"unknown {what} option {key!r}: valid keys are {', '.join(sorted(types))}"
            )
        optional = expected.endswith("| None")
        base = expected.replace("| None", "").strip()
        if value is None and optional:
            out[key] = None
            continue
        ok = False
        if base == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif base == "float":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif base == "bool":
            ok = isinstance(value, bool)
        elif base == "str":
            ok = isinstance(value, str)
        elif base.startswith("tuple[str"):
            if isinstance(value, str):
                value = (value,)
            ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
            value = tuple(value) if ok else value
        else:  # pragma: no cover - a new field type must be added above
            ok = True
        if not ok:
            shown = "null" if value is None else repr(value)
            kind = {
                "tuple[str, ...]": "a list of strings",
                "bool": "true or false",
                "float": "a number",
                "int": "an integer",
                "str": "a string",
            }.get(base, base)
            raise DismaxError(f"{what} option {key}={shown} is invalid: use {kind}")
        out[key] = value
    return out
