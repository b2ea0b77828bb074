"""What a dismax report's values can be: the checks after the type checks of report JSON.

:mod:`dismax_cli.report_checks` checks every field for presence and JSON type; this module
checks that the values are ones dismax writes (README "Design notes"), so an edited or damaged
report is refused in one line instead of being shown (an AUROC of 500 %) or crashing a table:

* every metric within the metric table's range (METHOD.md §5: fractions in [0, 1], the NLL
  ``>= 0`` in nats, the Brier score in [0, 2]), its mean the mean of its values (METHOD.md §6:
  mean ± sample std over seeds), at least one value, a std ``>= 0``;
* bootstrap intervals with ``low <= high``, at least one resample and a level in (0, 1);
* positive temperatures and sample counts, non-negative times and throughputs, image sides of
  at least one pixel, reliability bins within [0, 1] with non-negative counts;
* each method once, each (OOD set, score) row of a method once, each seed of a method once, and
  a default score that the method's OOD rows hold.

Values are the report's JSON with the ``*_null_reason`` keys stripped; a null is "no value"
(its reason says why) and is never range-checked.
"""

from __future__ import annotations

import math
from typing import Any

from dismax_cli.core.metric_table import METRICS
from dismax_cli.errors import quote_value as q

#: Relative tolerance of "the mean of its values" (a JSON round trip is exact; sums are not).
MEAN_TOLERANCE = 1e-9
_INF = math.inf


class Damaged(Exception):
    """A field of a report with a missing key, a wrong type or an impossible value."""


def check_report_values(data: dict[str, Any]) -> None:
    """Check the values of type-checked report JSON ``data`` (reasons stripped).

    Raises:
        Damaged: naming the first impossible value by its path (``methods[0].n_id``).
    """
    _distinct([m["method"] for m in data["methods"]], "methods", "method")
    labels = [m.get("label") for m in data["methods"] if m.get("label") is not None]
    _distinct(labels, "methods", "label")
    for i, m in enumerate(data["methods"]):
        _check_method(m, f"methods[{i}]")
    for i, d in enumerate(data["datasets"]):
        at = f"datasets[{i}]"
        _at_least(d["n"], 1, f"{at}.n")
        _at_least(d["num_classes"], 0, f"{at}.num_classes")
        for k, side in enumerate(d["image_shape"]):
            _at_least(side, 1, f"{at}.image_shape[{k}]")


def _check_method(m: dict[str, Any], at: str) -> None:
    """One ``methods[i]`` entry's values (``at`` is its path)."""
    _at_least(m["n_id"], 1, f"{at}.n_id")
    _at_least(m.get("members", 1), 1, f"{at}.members")
    if not m["seeds"]:
        raise Damaged(f"{at}.seeds is empty: a method has at least one seed")
    _distinct(m["seeds"], f"{at}.seeds", "seed")
    _check_stat(m["temperature"], f"{at}.temperature", (0.0, _INF), open_low=True)
    for key in ("id_before", "id_after", "score_efficiency"):
        for name, stat in (m.get(key) or {}).items():
            bounds = _metric_bounds(name) if key != "score_efficiency" else (0.0, _INF)
            _check_stat(stat, f"{at}.{key}.{name}", bounds)
    for key in ("throughput_per_s", "efficiency", "train_s"):
        _check_stat(m.get(key), f"{at}.{key}", (0.0, _INF))
    scores = {r["score"] for r in m["ood"]}
    if scores and m["default_score"] not in scores:
        raise Damaged(
            f"{at}.default_score is {q(m['default_score'])}, which none of its OOD rows holds "
            f"(they hold {', '.join(sorted(scores))})"
        )
    for key in ("ood", "ood_means"):
        rows = m.get(key) or []
        _distinct([(r["ood"], r["score"]) for r in rows], f"{at}.{key}", "set")
        for j, r in enumerate(rows):
            _check_ood_row(r, f"{at}.{key}[{j}]")
    for j, r in enumerate(m.get("reliability") or []):
        where = f"{at}.reliability[{j}]"
        _within(r["temperature"], (0.0, _INF), f"{where}.temperature", open_low=True)
        for part in ("before", "after"):
            for k, b in enumerate(r[part]):
                _check_bin(b, f"{where}.{part}[{k}]")


def _check_ood_row(r: dict[str, Any], at: str) -> None:
    """One OOD row: sample counts, metrics and bootstrap intervals."""
    _at_least(r["n_id"], 1, f"{at}.n_id")
    _at_least(r["n_ood"], 1, f"{at}.n_ood")
    for name, stat in r["metrics"].items():
        _check_stat(stat, f"{at}.metrics.{name}", _metric_bounds(name))
    for key in ("intervals", "vs_baseline"):
        for name, v in (r.get(key) or {}).items():
            where = f"{at}.{key}.{name}"
            _at_least(v["resamples"], 1, f"{where}.resamples")
            _within(v["level"], (0.0, 1.0), f"{where}.level", open_low=True)
            if v["level"] >= 1:
                raise Damaged(f"{where}.level is {q(v['level'])}, expected a level in (0, 1)")
            if v["low"] > v["high"]:
                raise Damaged(f"{where} has low {q(v['low'])} above high {q(v['high'])}")
            low, high = _metric_bounds(name)
            bounds = (low - high, high - low) if key == "vs_baseline" else (low, high)
            for part in ("value", "low", "high"):
                _within(v[part], bounds, f"{where}.{part}")


def _check_bin(b: dict[str, Any], at: str) -> None:
    """One reliability bin: edges, accuracy and confidence in [0, 1], a count ``>= 0``."""
    for key in ("lower", "upper", "accuracy", "confidence"):
        _within(b[key], (0.0, 1.0), f"{at}.{key}")
    if b["lower"] > b["upper"]:
        raise Damaged(f"{at} has lower {q(b['lower'])} above upper {q(b['upper'])}")
    _at_least(b["count"], 0, f"{at}.count")


def _metric_bounds(name: str) -> tuple[float, float]:
    """The closed range of metric ``name`` (the metric table's unit); any number if unknown."""
    info = METRICS.get(name)
    if info is None:
        return (-_INF, _INF)
    return info.bounds or (0.0, _INF)


def _check_stat(
    stat: dict[str, Any] | None, at: str, bounds: tuple[float, float], *, open_low: bool = False
) -> None:
    """A statistic over seeds: values in range, at least one, the mean theirs, std >= 0."""
    if stat is None:
        return
    values = stat["values"]
    if not values:
        raise Damaged(f"{at}.values is empty: a statistic has one value per seed")
    for k, v in enumerate(values):
        _within(v, bounds, f"{at}.values[{k}]", open_low=open_low)
    _within(stat["mean"], bounds, f"{at}.mean", open_low=open_low)
    if stat["std"] is not None and stat["std"] < 0:
        raise Damaged(f"{at}.std is {q(stat['std'])}, expected a standard deviation >= 0")
    if stat["mean"] is not None and all(v is not None for v in values):
        expected = math.fsum(v / len(values) for v in values)  # no overflow near 1e308
        if abs(stat["mean"] - expected) > MEAN_TOLERANCE * max(1.0, abs(expected)):
            raise Damaged(
                f"{at}.mean is {q(stat['mean'])}, not the mean of its values ({expected:.6g})"
            )


def _within(
    value: float | None, bounds: tuple[float, float], at: str, *, open_low: bool = False
) -> None:
    """Refuse a number outside ``bounds`` (``open_low``: the lower bound excluded)."""
    if value is None:
        return
    low, high = bounds
    if value < low or value > high or (open_low and value == low):
        left = "(" if open_low else "["
        shown = f"{left}{low:g}, {high:g}]" if high < _INF else f"{left}{low:g}, inf)"
        raise Damaged(f"{at} is {q(value)}, outside {shown}")


def _at_least(value: int, least: int, at: str) -> None:
    if value < least:
        raise Damaged(f"{at} is {q(value)}, expected at least {least}")


def _distinct(items: list[Any], at: str, what: str) -> None:
    seen: set[Any] = set()
    for item in items:
        if item in seen:
            # an OOD row is (set, score)
            shown = f"{q(item[0])} with score {q(item[1])}" if isinstance(item, tuple) else q(item)
            raise Damaged(f"{at} holds {what} {shown} twice: a report lists each once")
        seen.add(item)


__all__ = ["MEAN_TOLERANCE", "Damaged", "check_report_values"]
