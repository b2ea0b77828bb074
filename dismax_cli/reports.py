"""Reports as JSON: round-trips of :class:`Report` with a schema version and explained nulls.

The report's dataclasses live in :mod:`dismax_cli.report_types` and the JSON checks in
:mod:`dismax_cli.report_checks`; this module re-exports the dataclasses, so
``from dismax_cli.reports import Report, Stat, to_json`` keeps working. ``dismax score`` and
``dismax benchmark`` both produce a :class:`Report`; ``render`` draws it, ``to_json`` /
``from_json`` store it. Values are fractions in [0, 1] (NLL in nats), times in seconds
(``*_s``), throughput in images per second (``*_per_s``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

from dismax_cli.errors import DismaxError, kind_of, quote_path
from dismax_cli.errors import quote_value as q
from dismax_cli.report_checks import Damaged, check_report
from dismax_cli.report_types import (
    CONVENTIONS,
    FPR_RULES,
    ID_METRICS,
    METRICS,
    NULL_REASON_SUFFIX,
    OOD_METRICS,
    SCHEMA_VERSION,
    DatasetRecord,
    Interval,
    MethodResult,
    MetricInfo,
    OODResult,
    Report,
    RequirementResult,
    Stat,
    conventions_for,
)

_NOT_FINITE = "not a finite number (NaN or infinity), which JSON cannot hold"
_NOT_TIMED_BY_SCORE = (
    "not measured: `dismax score` does not time inference (`dismax benchmark` does)"
)
#: Why a key is None, for keys whose None has one meaning (config keys: "not set, default").
_NONE_REASONS = {
    "train_s": "not recorded: no train_log.jsonl was found beside the checkpoint",
    "test_dataset": "not set: the dataset's own test split is used",
    "data_dir": "not set: $DISMAX_DATA_DIR or the per-user cache is used",
    "runs_dir": "not set: $DISMAX_RUNS_DIR or the per-user cache is used",
    "fpr": "not set: the method's default applies (FPR on for dismax only)",
    "augment": "not set: the dataset's default applies (crop + flip; off for digit sets)",
    "calibration": (
        "the checkpoint was never calibrated (run `dismax calibrate` on it): it keeps the "
        "temperature T = 1 it was trained at"
    ),
    "warning": "no warning: the temperature fit found a finite optimum",
    "label": "not stored: the report was written before method labels were",
    "protocol": "not stored: the report was written before reports stated their protocol",
    "select": "not set: the protocol's rule applies (honest: last epoch; paper: best test ACC)",
    "calibration_split": "the run was never calibrated (run `dismax calibrate` on it)",
    "calibration_optimizer": (
        "not set: the protocol's optimizer applies (honest: grid, paper: lbfgsb), or the run "
        "was never calibrated"
    ),
    "accuracy": "empty bin: no test sample has its top-label confidence in this bin",
    "confidence": "empty bin: no test sample has its top-label confidence in this bin",
    "per_sample": (
        "not written: the per-sample npz is written beside --out (or in --plots / beside "
        "--html) when one of them is given"
    ),
    "baseline": "no paired difference: this row is the baseline, or the baseline was not run",
}


def _none_reason(key: str, parent: dict[Any, Any], kind: str) -> str:
    """Why ``parent[key]`` is None in a report of ``kind`` (``score`` or ``benchmark``)."""
    if key == "std":
        values = parent.get("values")
        if isinstance(values, list | tuple) and len(values) == 1:
            return (
                "one seed: a sample standard deviation (ddof = 1) needs at least 2 seeds "
                "(dismax benchmark --seeds 2 or more)"
            )
        return _NOT_FINITE
    if key in ("throughput_per_s", "efficiency") and kind == "score":
        return _NOT_TIMED_BY_SCORE
    if key == "efficiency":
        return (
            "not measured: efficiency is throughput relative to SoftMax's in the same run, and "
            "SoftMax was not timed (add softmax or ensemble to --methods)"
        )
    return _NONE_REASONS.get(key, "not set")


def _holds_null(value: Any) -> bool:
    """A null directly in ``value`` or in lists inside it (a dict explains its own nulls)."""
    return value is None or (isinstance(value, list) and any(_holds_null(v) for v in value))


def _clean(value: Any, kind: str) -> Any:
    """JSON-ready data: tuples become lists, NaN/inf null, and every null gets its reason."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = str(k)
            out[key] = cleaned = _clean(v, kind)
            if not _holds_null(cleaned) or key + NULL_REASON_SUFFIX in value:
                continue
            if v is None:
                reason = _none_reason(key, value, kind)
            elif cleaned is None:
                reason = _NOT_FINITE
            else:
                reason = f"an entry is {_NOT_FINITE}"
            out[key + NULL_REASON_SUFFIX] = reason
        return out
    if isinstance(value, list | tuple):
        return [_clean(v, kind) for v in value]
    return value


def _strip_reasons(value: Any) -> Any:
    """Undo the reasons :func:`to_dict` adds (``<key>_null_reason`` beside a null ``key``)."""
    if isinstance(value, dict):
        return {
            k: _strip_reasons(v)
            for k, v in value.items()
            if not (
                isinstance(k, str)
                and k.endswith(NULL_REASON_SUFFIX)
                and k[: -len(NULL_REASON_SUFFIX)] in value
                and _holds_null(value[k[: -len(NULL_REASON_SUFFIX)]])
            )
        }
    if isinstance(value, list):
        return [_strip_reasons(v) for v in value]
    return value


def to_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON-ready data.

    Tuples become lists and NaN/inf become null. No null stands alone: every key whose value is
    null, or a list holding null, gets a sibling ``"<key>_null_reason"`` string right after it
    (e.g. ``"std": null, "std_null_reason": "one seed: ..."``), so a CI gate cannot read a
    missing number as a value. :func:`from_dict` drops those keys again.
    """
    data = dataclasses.asdict(report)
    # Keys of issue 15 stay out of reports that do not use them (same JSON as before).
    if not data["ood_groups"]:
        del data["ood_groups"]
    for m in data["methods"]:
        for key in _OPTIONAL_METHOD_KEYS:
            if not m[key]:
                del m[key]
    return _clean(data, report.kind)


_OPTIONAL_METHOD_KEYS = ("not_applicable", "score_efficiency", "ood_means")


def to_json(report: Report, *, indent: int | None = 2) -> str:
    """Serialise a report to JSON text."""
    return json.dumps(to_dict(report), indent=indent, sort_keys=False, allow_nan=False)


def _stat(d: Any) -> Stat | None:
    if d is None:
        return None
    return Stat(mean=d["mean"], std=d["std"], values=tuple(d["values"]))


def _stats(d: dict[str, Any]) -> dict[str, Stat]:
    return {k: _stat(v) for k, v in d.items()}  # type: ignore[misc]


def _intervals(d: Any) -> dict[str, Interval]:
    return {k: Interval(**v) for k, v in (d or {}).items()}


def _ood_result(r: dict[str, Any]) -> OODResult:
    return OODResult(
        ood=r["ood"],
        score=r["score"],
        n_id=r["n_id"],
        n_ood=r["n_ood"],
        metrics=_stats(r["metrics"]),
        intervals=_intervals(r.get("intervals")),
        vs_baseline=_intervals(r.get("vs_baseline")),
        baseline=r.get("baseline"),
    )


def from_dict(data: dict[str, Any]) -> Report:
    """Rebuild a :class:`Report` from :func:`to_dict` output.

    Every field is checked for presence and JSON type before use; numbers must be finite (a
    non-finite value is stored as null with a reason, so a literal ``NaN`` is damage).

    Raises:
        DismaxError: for another schema version, a document that is not a dismax report, or
            ``this dismax report is incomplete or damaged (FIELD ...)`` naming the bad field.
    """
    if not isinstance(data, dict) or "schema_version" not in data or "methods" not in data:
        raise DismaxError("this JSON is not a dismax report: pass a file written by --out")
    data = _strip_reasons(data)
    if not data["methods"]:
        raise DismaxError("this dismax report holds no methods: pass a report written by --out")
    version = data["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int | float):
        raise DismaxError(
            f"this dismax report is incomplete or damaged (schema_version is {kind_of(version)} "
            f"{q(version)}, expected the number {SCHEMA_VERSION})"
        )
    if version != SCHEMA_VERSION:
        raise DismaxError(
            f"report schema version {q(data['schema_version'])} is not supported: this dismax "
            f"reads version {SCHEMA_VERSION}"
        )
    try:
        check_report(data)
    except Damaged as exc:
        raise DismaxError(f"this dismax report is incomplete or damaged ({exc})") from None
    try:
        return _report(data)
    except (KeyError, TypeError) as exc:
        raise DismaxError(f"this dismax report is incomplete or damaged (missing {exc})") from None


def _method_result(m: dict[str, Any]) -> MethodResult:
    """One checked ``methods[i]`` entry as a :class:`MethodResult` (optional keys defaulted)."""
    return MethodResult(
        method=m["method"],
        default_score=m["default_score"],
        seeds=tuple(m["seeds"]),
        runs=tuple(m["runs"]),
        uses_fpr=m["uses_fpr"],
        temperature=_stat(m["temperature"]),  # type: ignore[arg-type]
        id_before=_stats(m["id_before"]),
        id_after=_stats(m["id_after"]),
        n_id=m["n_id"],
        ood=tuple(_ood_result(r) for r in m["ood"]),
        not_applicable=dict(m.get("not_applicable", {})),
        score_efficiency=_stats(m.get("score_efficiency", {})),
        ood_means=tuple(_ood_result(r) for r in m.get("ood_means", ())),
        throughput_per_s=_stat(m.get("throughput_per_s")),
        efficiency=_stat(m.get("efficiency")),
        train_s=_stat(m.get("train_s")),
        reused_runs=m.get("reused_runs", False),
        members=m.get("members", 1),
        label=m.get("label"),
        reliability=tuple(m.get("reliability") or ()),
    )


def _report(data: dict[str, Any]) -> Report:
    """Checked report JSON as a :class:`Report` (optional keys defaulted)."""
    methods = tuple(_method_result(m) for m in data["methods"])
    datasets = tuple(
        DatasetRecord(**{**d, "image_shape": tuple(d["image_shape"])}) for d in data["datasets"]
    )
    return Report(
        kind=data["kind"],
        tool_version=data["tool_version"],
        created=data["created"],
        config=data["config"],
        environment=data["environment"],
        datasets=datasets,
        methods=methods,
        conventions=data["conventions"],
        notes=tuple(data.get("notes", ())),
        requirements=tuple(RequirementResult(**r) for r in data.get("requirements", ())),
        schema_version=data["schema_version"],
        ood_groups={k: list(v) for k, v in data.get("ood_groups", {}).items()},
        protocol=data.get("protocol") if isinstance(data.get("protocol"), dict) else None,
        per_sample=data.get("per_sample"),
    )


def from_json(text: str, *, source: str | os.PathLike[str] | None = None) -> Report:
    """Parse report JSON text; ``source``, the file it came from, is named in every error.

    Raises:
        DismaxError: for invalid JSON or a document that is not a dismax report
            (``report 'FILE' is not valid JSON (...)``, ``report 'FILE' is not a dismax
            report: ...``; ``the report``/``this JSON`` without ``source``).
    """
    where = "the report" if source is None else f"report {quote_path(source)}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DismaxError(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise DismaxError(f"{where} nests too deeply to be a dismax report") from None
    try:
        return from_dict(data)
    except DismaxError as exc:
        message = str(exc)
        lead = next((w for w in ("this JSON", "this dismax report") if message.startswith(w)), "")
        if source is None or not lead:
            raise
        raise DismaxError(where + message[len(lead) :]) from None


__all__ = [
    "MetricInfo",
    "CONVENTIONS",
    "FPR_RULES",
    "conventions_for",
    "ID_METRICS",
    "METRICS",
    "NULL_REASON_SUFFIX",
    "OOD_METRICS",
    "SCHEMA_VERSION",
    "DatasetRecord",
    "Interval",
    "MethodResult",
    "OODResult",
    "Report",
    "RequirementResult",
    "Stat",
    "from_dict",
    "from_json",
    "to_dict",
    "to_json",
]
