"""Reports as data: frozen dataclasses, metric metadata, and JSON round-trips with a schema version.

``dismax score`` and ``dismax benchmark`` both produce a :class:`Report`; ``render`` draws it,
``to_json``/``from_json`` store it. Values are fractions in [0, 1] (NLL in nats), times in
seconds (``*_s``), throughput in images per second (``*_per_s``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dismax_cli.core import metric_table as _table
from dismax_cli.errors import DismaxError

SCHEMA_VERSION = 1


#: The metric table (key, function, direction, unit, kind), defined once in
#: :mod:`dismax_cli.core.metric_table`; re-exported here for the report's readers.
METRICS = _table.METRICS
MetricInfo = _table.MetricInfo
ID_METRICS = _table.ID_METRICS
OOD_METRICS = _table.OOD_METRICS

CONVENTIONS: dict[str, Any] = {
    "score_direction": "higher score = more in-distribution",
    "positive_class": "in-distribution for AUROC, AUPR-IN, FPR@95TPR and DETACC; OOD for AUPR-OUT",
    "fpr_at_95_tpr_convention": "ours",
    "fpr_at_95_tpr_rule": (
        "t* = the largest ID score such that at least 95% of ID scores are >= t*; "
        "FPR@95TPR = fraction of OOD scores >= t* (exact, every threshold, no interpolation)"
    ),
    "ece_bins": "15 equal-width bins on [0, 1]; confidence 0 in the first bin, 1 in the last",
    "ood_score_temperature": (
        "OOD scores use T = 1 (paper parity); ACC/NLL/ECE are reported at T = 1 and at the "
        "calibrated T"
    ),
    "calibration": (
        "temperature fitted on a held-out validation split carved from train, never on a "
        "scored split"
    ),
    "units": "fractions in [0, 1]; NLL in nats; times in seconds; throughput in images/s",
    "std": (
        "sample standard deviation over seeds (ddof = 1: the sum of squared deviations divided "
        "by n - 1); null for a single seed, with std_null_reason beside it"
    ),
    "nulls": (
        "a null is never a value: every key whose value is null (or a list holding null) has a "
        "sibling '<key>_null_reason' string saying why; test the type, not only the number "
        "(in jq 1.6, null <= 0.05 is true)"
    ),
    "metrics": _table.metric_conventions(),
    "intervals": (
        "intervals: 95% percentile-bootstrap intervals over the test samples (ID and OOD "
        "scores resampled with replacement separately, --bootstrap resamples, seed 0; with "
        "several seeds the same resamples for every seed, interval of the seed mean), for the "
        "default score of each method; vs_baseline: the paired difference method - SoftMax on "
        "the same resamples. They measure test-sample noise only; std measures the spread over "
        "training seeds. Tables show (±x) = half the interval's width"
    ),
}
#: ``fpr_at_95_tpr_rule`` of each ``--fpr-convention`` (``core.metrics.FPR_CONVENTIONS``).
FPR_RULES = {
    "ours": CONVENTIONS["fpr_at_95_tpr_rule"],
    "openood": (
        "OpenOOD v1.5: OOD is the positive class; t* = the k-th smallest OOD score, k = "
        "ceil(0.95 n_ood) (95% of OOD scores are <= t*); FPR@95TPR = fraction of ID scores "
        "<= t* (ID called OOD while 95% of OOD is caught; ties count as called OOD)"
    ),
}


def conventions_for(fpr_convention: str = "ours") -> dict[str, Any]:
    """The ``conventions`` block of a report whose FPR@95TPR follows ``fpr_convention``."""
    return {
        **CONVENTIONS,
        "fpr_at_95_tpr_convention": fpr_convention,
        "fpr_at_95_tpr_rule": FPR_RULES[fpr_convention],
    }


#: The suffix of the key that explains a null: ``"std": null`` comes with ``"std_null_reason"``.
NULL_REASON_SUFFIX = "_null_reason"


@dataclass(frozen=True)
class Stat:
    """A metric over seeds: mean, sample standard deviation (ddof = 1), the per-seed values.

    ``std`` is None for a single seed (a sample standard deviation needs two values); in JSON it
    is then ``null`` with ``std_null_reason`` beside it. Reported runs are mean ± sample std
    (METHOD.md §6).
    """

    mean: float
    std: float | None
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        vals = tuple(float(v) for v in values)
        if not vals:
            raise DismaxError("a statistic needs at least one value")
        std = statistics.stdev(vals) if len(vals) > 1 else None
        return cls(mean=float(statistics.fmean(vals)), std=std, values=vals)


@dataclass(frozen=True)
class DatasetRecord:
    """Provenance of one dataset used in a report."""

    role: str  # "train", "val", "test" or "ood"
    name: str  # the label used in tables and --require (the spec unless labelled NAME=SPEC)
    spec: str
    split: str
    n: int
    image_shape: tuple[int, int, int]
    pixels_sha256: str
    source: str
    synthetic: bool
    num_classes: int


@dataclass(frozen=True)
class Interval:
    """A percentile-bootstrap interval over test samples (``dismax_cli.core.bootstrap``).

    ``value`` is the reported value (the mean over seeds of the full-sample metric, or of a
    paired difference); ``low``/``high`` the ``(1 ∓ level) / 2`` quantiles of the same mean over
    ``resamples`` stratified resamples of the test samples (drawn from ``seed``, the same
    indices for every seed and method). Fractions like the metric (not percent).
    """

    value: float
    low: float
    high: float
    resamples: int
    level: float
    seed: int

    @property
    def half_width(self) -> float:
        """Half the interval's width (tables show it as ``(±x)``)."""
        return (self.high - self.low) / 2.0


@dataclass(frozen=True)
class OODResult:
    """Detection metrics of one score on one OOD set (ID test split positive).

    ``intervals`` (metric key → :class:`Interval`) and ``vs_baseline`` (metric key → the paired
    difference from ``baseline``'s default score, this method minus the baseline) are filled
    for each method's default score when the benchmark ran with ``--bootstrap N`` (N > 0);
    empty in older reports and for other scores.
    """

    ood: str
    score: str
    n_id: int
    n_ood: int
    metrics: dict[str, Stat]
    intervals: dict[str, Interval] = field(default_factory=dict)
    vs_baseline: dict[str, Interval] = field(default_factory=dict)
    baseline: str | None = None


@dataclass(frozen=True)
class MethodResult:
    """Everything measured for one method (over all seeds)."""

    method: str
    default_score: str
    seeds: tuple[int, ...]
    runs: tuple[str, ...]
    uses_fpr: bool
    temperature: Stat
    id_before: dict[str, Stat]  # ACC, NLL, ECE at T = 1
    id_after: dict[str, Stat]  # at the calibrated temperature
    n_id: int
    ood: tuple[OODResult, ...]
    throughput_per_s: Stat | None = None
    efficiency: Stat | None = None  # throughput relative to SoftMax's, measured in the same run
    train_s: Stat | None = None
    reused_runs: bool = False
    members: int = 1
    #: Display name from the methods registry (``DisMax (FPR)``, ``Ensemble x3``); None in
    #: reports written before labels were stored (tables then ask the registry).
    label: str | None = None
    #: Requested scores that do not apply to this method -> why (``--scores``; issue 15).
    not_applicable: dict[str, str] = field(default_factory=dict)
    #: Score -> images/s of the method with that score relative to SoftMax with MSP, same run.
    score_efficiency: dict[str, Stat] = field(default_factory=dict)
    #: Unweighted means over each group of OOD sets (``ood`` = ``near`` / ``far``; a preset).
    ood_means: tuple[OODResult, ...] = ()
    #: Per seed: ``{"seed", "temperature", "before": [bins], "after": [bins]}``, each bin
    #: ``{"lower", "upper", "count", "accuracy", "confidence"}`` (15 equal-width bins of the
    #: top-label confidence at T = 1 and at the calibrated T; METHOD.md §5). Empty in older
    #: reports.
    reliability: tuple[dict[str, Any], ...] = ()

    def result(self, ood: str, score: str | None = None) -> OODResult:
        """The result for ``ood`` with ``score`` (default: the method's default score)."""
        wanted = score or self.default_score
        for r in self.ood:
            if r.ood == ood and r.score == wanted:
                return r
        raise DismaxError(
            f"no result for OOD set {ood!r} and score {wanted!r} in method {self.method!r}"
        )


@dataclass(frozen=True)
class RequirementResult:
    """The outcome of one ``--require`` check, kept in the report for CI."""

    text: str
    passed: bool
    value: float


@dataclass(frozen=True)
class Report:
    """A ``score`` or ``benchmark`` report."""

    kind: str
    tool_version: str
    created: str
    config: dict[str, Any]
    environment: dict[str, Any]
    datasets: tuple[DatasetRecord, ...]
    methods: tuple[MethodResult, ...]
    conventions: dict[str, Any] = field(default_factory=lambda: dict(CONVENTIONS))
    notes: tuple[str, ...] = ()
    requirements: tuple[RequirementResult, ...] = ()
    schema_version: int = SCHEMA_VERSION
    #: Group -> OOD labels averaged in ``MethodResult.ood_means`` (``--ood-preset``).
    ood_groups: dict[str, list[str]] = field(default_factory=dict)
    #: What saw the test split (dismax_cli.protocol.protocol_record); None in older reports.
    protocol: dict[str, Any] | None = None
    #: The per-sample npz beside the report: ``{"file": name relative to the report's folder,
    #: "sha256", "seed"}``; None when none was written (or in older reports).
    per_sample: dict[str, Any] | None = None

    @property
    def ood_sets(self) -> list[str]:
        return [d.name for d in self.datasets if d.role == "ood"]

    def method(self, name: str) -> MethodResult:
        for m in self.methods:
            if m.method == name:
                return m
        raise DismaxError(
            f"method {name!r} is not in this report: it has "
            f"{', '.join(m.method for m in self.methods)}"
        )


# --------------------------------------------------------------------------- JSON

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


_INTERVAL_FIELDS = {
    "value": "number", "low": "number", "high": "number", "resamples": "int",
    "level": "number", "seed": "int",
}  # fmt: skip


def _check_extras(data: dict[str, Any]) -> None:
    """Check the optional fields newer reports hold (absent in older ones: nothing to check)."""
    if data.get("per_sample") is not None:
        _check_fields(data["per_sample"], "per_sample", {"file": "str", "sha256": "str"})
    for i, m in enumerate(data["methods"]):
        if "reliability" in m:
            _check_list(m, "reliability", f"methods[{i}]", "dict")
        for j, r in enumerate(m["ood"]):
            at = f"methods[{i}].ood[{j}]"
            for key in ("intervals", "vs_baseline"):
                if key in r:
                    _expect(r[key], "dict", f"{at}.{key}")
                    for k, v in r[key].items():
                        _expect(v, "dict", f"{at}.{key}.{k}")
                        _check_fields(v, f"{at}.{key}.{k}", _INTERVAL_FIELDS)
                        if set(v) - set(_INTERVAL_FIELDS):
                            raise _Damaged(f"{at}.{key}.{k} has unknown keys")


class _Damaged(Exception):
    """A field of a report with a missing key or a value of the wrong type (its path, why)."""


def _field(parent: Any, key: str | int, where: str) -> tuple[Any, str]:
    path = f"{where}[{key}]" if isinstance(key, int) else (f"{where}.{key}" if where else key)
    if isinstance(key, int):
        return parent[key], path
    if not isinstance(parent, dict):
        raise _Damaged(f"{where or 'the document'} is not an object")
    if key not in parent:
        raise _Damaged(f"missing {path}")
    return parent[key], path


def _expect(value: Any, kind: str, path: str) -> None:
    """Raise :class:`_Damaged` unless ``value`` is of ``kind`` (JSON types; numbers finite)."""
    nullable = kind.endswith("?")
    kind = kind.rstrip("?")
    if value is None and nullable:
        return
    if kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            raise _Damaged(f"{path} is {value!r}, not a finite number (write null with a reason)")
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, {"str": str, "bool": bool, "list": list, "dict": dict}[kind])
    if not ok:
        shown = "null" if value is None else f"{type(value).__name__} {json.dumps(value)[:40]}"
        raise _Damaged(f"{path} is {shown}, expected {'a ' if kind != 'int' else 'an '}{kind}")


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
    """Check every field :func:`from_dict` reads for presence and JSON type (numbers finite).

    Raises:
        _Damaged: naming the first bad field by its path (``methods[0].ood[1].metrics.AUROC``).
    """
    _check_fields(data, "", {"kind": "str", "tool_version": "str", "created": "str"})
    _check_fields(data, "", {"config": "dict", "environment": "dict", "conventions": "dict"})
    _check_list(data, "methods", "", "dict")
    for i, m in enumerate(data["methods"]):
        where = f"methods[{i}]"
        _check_fields(
            m,
            where,
            {"method": "str", "default_score": "str", "uses_fpr": "bool", "n_id": "int"},
        )
        _check_fields(m, where, {"reused_runs": "bool", "members": "int"}, optional=True)
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
                _check_fields(
                    r, at, {"ood": "str", "score": "str", "n_id": "int", "n_ood": "int"}
                )
                _check_stats(_field(r, "metrics", at)[0], f"{at}.metrics")
        _check_fields(m, where, {"not_applicable": "dict"}, optional=True)
        if "score_efficiency" in m:
            _check_stats(m["score_efficiency"], f"{where}.score_efficiency")
    for i, d in enumerate(_check_list(data, "datasets", "", "dict")):
        at = f"datasets[{i}]"
        texts = ("role", "name", "spec", "split", "pixels_sha256", "source")
        _check_fields(d, at, {**dict.fromkeys(texts, "str"), "synthetic": "bool"})
        _check_fields(d, at, {"n": "int", "num_classes": "int"})
        shape = _check_list(d, "image_shape", at, "int")
        if len(shape) != 3:
            raise _Damaged(f"{at}.image_shape has {len(shape)} entries, expected 3 (H, W, C)")
    _check_fields(data, "", {"ood_groups": "dict"}, optional=True)
    for group in data.get("ood_groups", {}):
        _check_list(data["ood_groups"], group, "ood_groups", "str")
    if "notes" in data:
        _check_list(data, "notes", "", "str")
    if "requirements" in data:
        for i, r in enumerate(_check_list(data, "requirements", "", "dict")):
            at = f"requirements[{i}]"
            _check_fields(r, at, {"text": "str", "passed": "bool", "value": "number?"})


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
    if data["schema_version"] != SCHEMA_VERSION:
        raise DismaxError(
            f"report schema version {data['schema_version']!r} is not supported: this dismax "
            f"reads version {SCHEMA_VERSION}"
        )
    try:
        _check_report_types(data)
        _check_extras(data)
    except _Damaged as exc:
        raise DismaxError(f"this dismax report is incomplete or damaged ({exc})") from None
    try:
        methods = tuple(
            MethodResult(
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
            for m in data["methods"]
        )
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
    except (KeyError, TypeError) as exc:
        raise DismaxError(f"this dismax report is incomplete or damaged (missing {exc})") from None


def from_json(text: str) -> Report:
    """Parse report JSON text.

    Raises:
        DismaxError: for invalid JSON or a document that is not a dismax report.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DismaxError(
            f"the report is not valid JSON ({exc.msg} at line {exc.lineno})"
        ) from None
    return from_dict(data)


__all__ = [
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
