"""Checks of a report's JSON before :func:`dismax_cli.reports.from_dict` reads it.

Every field ``from_dict`` reads is checked for presence and JSON type (numbers finite: a
non-finite value is written as null with a reason, so a literal ``NaN`` is damage). A failure
raises :class:`Damaged` naming the first bad field by its path
(``methods[0].ood[1].metrics.AUROC``); ``from_dict`` turns it into one ``DismaxError`` line.
Then the values are checked for what a report can hold (:mod:`dismax_cli.report_values`)
and for agreeing with each other (:mod:`dismax_cli.report_consistency`).
"""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any

from dismax_cli.errors import kind_of
from dismax_cli.errors import quote_value as q
from dismax_cli.report_consistency import check_report_consistency
from dismax_cli.report_values import Damaged, check_report_values


def check_report(data: dict[str, Any]) -> None:
    """Check the fields of report JSON ``data`` (reasons already stripped).

    Raises:
        Damaged: naming the first missing, mistyped, impossible or inconsistent field by its
            path.
    """
    _check_report_types(data)
    _check_extras(data)
    _check_leaves(data, "")
    check_report_values(data)
    check_report_consistency(data)


_INTERVAL_FIELDS = {
    "value": "number", "low": "number", "high": "number", "resamples": "int",
    "level": "number", "seed": "int",
}  # fmt: skip


def _check_extras(data: dict[str, Any]) -> None:
    """Check the optional fields newer reports hold (absent in older ones: nothing to check)."""
    if data.get("per_sample") is not None:
        _check_fields(data["per_sample"], "per_sample", {"file": "str", "sha256": "str"})
        _check_fields(data["per_sample"], "per_sample", {"seed": "int"}, optional=True)
    for i, m in enumerate(data["methods"]):
        if "reliability" in m:
            for j, r in enumerate(_check_list(m, "reliability", f"methods[{i}]", "dict")):
                _check_reliability(r, f"methods[{i}].reliability[{j}]")
        for j, r in enumerate(m["ood"]):
            at = f"methods[{i}].ood[{j}]"
            for key in ("intervals", "vs_baseline"):
                if key in r:
                    _expect(r[key], "dict", f"{at}.{key}")
                    for k, v in r[key].items():
                        _expect(v, "dict", f"{at}.{key}.{k}")
                        _check_fields(v, f"{at}.{key}.{k}", _INTERVAL_FIELDS)
                        if set(v) - set(_INTERVAL_FIELDS):
                            raise Damaged(f"{at}.{key}.{k} has unknown keys")


_BIN_FIELDS = {
    "lower": "number", "upper": "number", "count": "int", "accuracy": "number?",
    "confidence": "number?",
}  # fmt: skip


def _check_reliability(r: Any, at: str) -> None:
    """One seed's reliability bins (``evidence._reliability``): seed, T, two equal bin lists."""
    _check_fields(r, at, {"seed": "int", "temperature": "number"})
    lists = [_check_list(r, key, at, "dict") for key in ("before", "after")]
    if len(lists[0]) != len(lists[1]):
        raise Damaged(f"{at} has {len(lists[0])} bins before and {len(lists[1])} after")
    for key, bins in zip(("before", "after"), lists, strict=True):
        for k, b in enumerate(bins):
            _check_fields(b, f"{at}.{key}[{k}]", _BIN_FIELDS)


def _check_leaves(value: Any, path: str) -> None:
    """Refuse a non-finite number anywhere (config, environment, ...): JSON writes none; and a
    control character in any text, a key or a value: an escape sequence would reach the
    terminal, a newline would break a table row. Only a note may hold a newline or a tab, and
    ``config`` (the settings as given, e.g. a folder's name, which no table shows) any text."""
    if isinstance(value, float) and not math.isfinite(value):
        raise Damaged(f"{path} is {q(value)}, not a finite number (write null with a reason)")
    if isinstance(value, str) and not (path == "config" or path.startswith("config.")):
        allowed = "\n\t" if path.startswith("notes[") else ""
        if any(unicodedata.category(ch) == "Cc" and ch not in allowed for ch in value):
            raise Damaged(f"{path} holds a control character ({q(value)})")
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(
        value, list) else ()  # fmt: skip
    for key, item in items:
        where = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)
        if isinstance(key, str):
            _check_leaves(key, where)
        _check_leaves(item, where)


def _field(parent: Any, key: str | int, where: str) -> tuple[Any, str]:
    path = f"{where}[{key}]" if isinstance(key, int) else (f"{where}.{key}" if where else key)
    if isinstance(key, int):
        return parent[key], path
    if not isinstance(parent, dict):
        raise Damaged(f"{where or 'the document'} is not an object")
    if key not in parent:
        raise Damaged(f"missing {path}")
    return parent[key], path


def _expect(value: Any, kind: str, path: str) -> None:
    """Raise :class:`Damaged` unless ``value`` is of ``kind`` (JSON types; numbers finite)."""
    nullable = kind.endswith("?")
    kind = kind.rstrip("?")
    if value is None and nullable:
        return
    if kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and isinstance(value, int) and abs(value) > 2**1023:
            raise Damaged(f"{path} is an integer too large for a number (over 2^1023)")
        if ok and not math.isfinite(value):
            raise Damaged(f"{path} is {q(value)}, not a finite number (write null with a reason)")
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, {"str": str, "bool": bool, "list": list, "dict": dict}[kind])
    if not ok:
        plain = value is None or isinstance(value, bool)  # "true", not "true or false true"
        shown = q(value) if plain else f"{kind_of(value)} {json.dumps(value)[:40]}"
        raise Damaged(f"{path} is {shown}, expected {_KIND_WORDS[kind]}")


#: The JSON kinds of :func:`_expect` in plain words (messages name no Python type).
_KIND_WORDS = {
    "number": "a number",
    "int": "an integer",
    "str": "text",
    "bool": "true or false",
    "list": "a list",
    "dict": "a mapping",
}


def _check_fields(parent: Any, where: str, spec: dict[str, str], optional: bool = False) -> None:
    for key, kind in spec.items():
        if optional and (not isinstance(parent, dict) or key not in parent):
            continue
        value, path = _field(parent, key, where)
        _expect(value, kind, path)


def _check_stat(value: Any, path: str, *, nullable: bool) -> None:
    _expect(value, "dict?" if nullable else "dict", path)
    if value is None:
        return
    _check_fields(value, path, {"mean": "number?", "std": "number?", "values": "list"})
    for i, v in enumerate(value["values"]):
        _expect(v, "number?", f"{path}.values[{i}]")


def _check_stats(value: Any, path: str) -> None:
    _expect(value, "dict", path)
    for key, stat in value.items():
        _check_stat(stat, f"{path}.{key}", nullable=True)


def _check_list(parent: Any, key: str, where: str, item: str) -> list[Any]:
    value, path = _field(parent, key, where)
    _expect(value, "list", path)
    for i, v in enumerate(value):
        _expect(v, item, f"{path}[{i}]")
    return value


def _check_report_types(data: dict[str, Any]) -> None:
    """Check every field ``from_dict`` reads for presence and JSON type (numbers finite).

    Raises:
        Damaged: naming the first bad field by its path (``methods[0].ood[1].metrics.AUROC``).
    """
    _check_fields(data, "", {"kind": "str", "tool_version": "str", "created": "str"})
    _check_fields(data, "", {"config": "dict", "environment": "dict", "conventions": "dict"})
    _check_list(data, "methods", "", "dict")
    for i, m in enumerate(data["methods"]):
        _check_method(m, f"methods[{i}]")
    for i, d in enumerate(_check_list(data, "datasets", "", "dict")):
        _check_dataset(d, f"datasets[{i}]")
    _check_fields(data, "", {"ood_groups": "dict"}, optional=True)
    for group in data.get("ood_groups", {}):
        _check_list(data["ood_groups"], group, "ood_groups", "str")
    if "notes" in data:
        _check_list(data, "notes", "", "str")
    if "requirements" in data:
        for i, r in enumerate(_check_list(data, "requirements", "", "dict")):
            at = f"requirements[{i}]"
            _check_fields(r, at, {"text": "str", "passed": "bool", "value": "number?"})


def _check_method(m: Any, where: str) -> None:
    """Check one ``methods[i]`` entry (``where`` is its path)."""
    _check_fields(
        m,
        where,
        {"method": "str", "default_score": "str", "uses_fpr": "bool", "n_id": "int"},
    )
    _check_fields(
        m, where, {"reused_runs": "bool", "members": "int", "label": "str?"}, optional=True
    )
    _check_list(m, "seeds", where, "int")
    _check_list(m, "runs", where, "str")
    _check_stat(_field(m, "temperature", where)[0], f"{where}.temperature", nullable=False)
    for key in ("id_before", "id_after"):
        _check_stats(_field(m, key, where)[0], f"{where}.{key}")
    for key in ("throughput_per_s", "efficiency", "train_s"):
        if key in m:
            _check_stat(m[key], f"{where}.{key}", nullable=True)
    means = _check_list(m, "ood_means", where, "dict") if "ood_means" in m else []
    for key, rows in (("ood", _check_list(m, "ood", where, "dict")), ("ood_means", means)):
        for j, r in enumerate(rows):
            at = f"{where}.{key}[{j}]"
            _check_fields(r, at, {"ood": "str", "score": "str", "n_id": "int", "n_ood": "int"})
            _check_stats(_field(r, "metrics", at)[0], f"{at}.metrics")
    _check_fields(m, where, {"not_applicable": "dict"}, optional=True)
    if "score_efficiency" in m:
        _check_stats(m["score_efficiency"], f"{where}.score_efficiency")


def _check_dataset(d: Any, at: str) -> None:
    """Check one ``datasets[i]`` record (``at`` is its path)."""
    texts = ("role", "name", "spec", "split", "pixels_sha256", "source")
    _check_fields(d, at, {**dict.fromkeys(texts, "str"), "synthetic": "bool"})
    _check_fields(d, at, {"n": "int", "num_classes": "int"})
    shape = _check_list(d, "image_shape", at, "int")
    if len(shape) != 3:
        raise Damaged(f"{at}.image_shape has {len(shape)} entries, expected 3 (H, W, C)")


__all__ = ["Damaged", "check_report"]
