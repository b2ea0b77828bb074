"""The report's data: frozen dataclasses, the JSON conventions block, the schema version.

``dismax score`` and ``dismax benchmark`` both produce a :class:`Report`;
:mod:`dismax_cli.reports` stores it as JSON (and re-exports every name here). Values are
fractions in [0, 1] (NLL in nats), times in seconds (``*_s``), throughput in images per second
(``*_per_s``); reported runs are mean ± sample std over seeds (METHOD.md §6).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dismax_cli.core import metric_table as _table
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q

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
            f"no result for OOD set {q(ood)} and score {q(wanted)} in method {q(self.method)}"
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
            f"method {q(name)} is not in this report: it has "
            f"{', '.join(m.method for m in self.methods)}"
        )


__all__ = [
    "CONVENTIONS",
    "FPR_RULES",
    "ID_METRICS",
    "METRICS",
    "NULL_REASON_SUFFIX",
    "OOD_METRICS",
    "SCHEMA_VERSION",
    "DatasetRecord",
    "Interval",
    "MetricInfo",
    "MethodResult",
    "OODResult",
    "Report",
    "RequirementResult",
    "Stat",
    "conventions_for",
]
