"""The metric table: every reported metric described once (METHOD.md §5).

Evaluation computes the metrics by iterating over :data:`METRICS`, the tables render their
columns from it, ``--require`` checks keys, sets and threshold ranges against it, and the JSON
conventions list it. Adding a metric means a function (``core/metrics.py`` or
``core/uncertainty.py``) and one :class:`MetricInfo` here.

This module imports neither torch nor numpy: the CLI checks ``--require`` with it before torch
loads. Functions are named as ``"module:attribute"`` and imported when first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Units: how a value is stored and shown. ``fraction`` values are in [0, 1] and shown in %.
UNITS: dict[str, tuple[tuple[float, float] | None, str]] = {
    "fraction": ((0.0, 1.0), "a fraction in [0, 1] (shown in %)"),
    "nats": (None, "nats (natural log), >= 0"),
    "brier": ((0.0, 2.0), "a sum of squares over classes in [0, 2]"),
}
#: Table groups: where a metric's column is shown.
GROUPS = ("classification", "uncertainty", "detection")


@dataclass(frozen=True)
class MetricInfo:
    """One metric: key, function, direction, unit, kind and where tables show it.

    Attributes:
        key: The name in tables, JSON and ``--require`` (``AUROC``).
        name: The Python name of its function (``auroc``).
        higher_is_better: The direction (tables bold the best value, arrows show it).
        kind: ``"id"`` (ID test split: ``f(probs (N, C), targets (N,))``) or ``"ood"`` (a pair:
            ``f(id_scores (N_id,), ood_scores (N_ood,))``, higher score = more ID).
        description: One line for the JSON conventions and the docs.
        function: ``"module:attribute"`` of the function computing it (a Python float).
        unit: A key of :data:`UNITS`.
        group: A key of :data:`GROUPS`: the table its column is in.
        at_t1: Also shown at T = 1 beside the calibrated value (ECE, NLL).
        objective: A temperature-calibration objective (``--objective ece|nll``, §4).
        log_function: For an ID metric, ``"module:attribute"`` of a function of
            log-probabilities ``(N, C)`` used when they are available (the NLL stays exact for
            probabilities that underflow).
    """

    key: str
    name: str
    higher_is_better: bool
    kind: str
    description: str
    function: str
    unit: str = "fraction"
    group: str = "classification"
    at_t1: bool = False
    objective: bool = False
    log_function: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("id", "ood") or self.unit not in UNITS or self.group not in GROUPS:
            raise ValueError(f"metric {self.key!r}: bad kind, unit or group")

    @property
    def percent(self) -> bool:
        """Shown in % (a fraction in [0, 1])."""
        return self.unit == "fraction"

    @property
    def bounds(self) -> tuple[float, float] | None:
        """The closed range of its values (None: unbounded above, like the NLL)."""
        return UNITS[self.unit][0]

    @property
    def fn(self) -> Callable[..., float]:
        """The function computing it (imported on first use)."""
        return _resolve(self.function)

    @property
    def log_fn(self) -> Callable[..., float] | None:
        """The log-probability variant of an ID metric, if any."""
        return None if self.log_function is None else _resolve(self.log_function)

    def convention(self) -> str:
        """One line for a report's conventions block."""
        direction = "higher is better" if self.higher_is_better else "lower is better"
        return f"{self.description}; {direction}; {UNITS[self.unit][1]}"


def _resolve(path: str) -> Callable[..., Any]:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


_M = "dismax_cli.core.metrics:"
_U = "dismax_cli.core.uncertainty:"

METRICS: dict[str, MetricInfo] = {
    m.key: m
    for m in (
        MetricInfo("ACC", "accuracy", True, "id", "top-1 accuracy on the ID test split",
                   _M + "accuracy"),
        MetricInfo("ECE", "ece", False, "id", "expected calibration error, 15 equal-width bins",
                   _M + "ece", at_t1=True, objective=True),
        MetricInfo("NLL", "nll", False, "id", "mean negative log-likelihood (nats)",
                   _M + "nll", unit="nats", at_t1=True, objective=True,
                   log_function="dismax_cli.core.calibration:nll_from_logits"),
        MetricInfo("BRIER", "brier_score", False, "id",
                   "multiclass Brier score, squared error summed over classes",
                   _U + "brier_score", unit="brier", group="uncertainty"),
        MetricInfo("AURC", "aurc", False, "id",
                   "area under the risk-coverage curve (selective classification)",
                   _U + "aurc", group="uncertainty"),
        MetricInfo("AECE", "adaptive_ece", False, "id",
                   "adaptive ECE, 15 equal-mass bins", _U + "adaptive_ece", group="uncertainty"),
        MetricInfo("CWECE", "classwise_ece", False, "id",
                   "classwise ECE, 15 equal-width bins, mean over classes",
                   _U + "classwise_ece", group="uncertainty"),
        MetricInfo("AUROC", "auroc", True, "ood", "area under ROC, ID positive, ties count 1/2",
                   _M + "auroc", group="detection"),
        MetricInfo("AUPR-IN", "aupr_in", True, "ood", "average precision, ID positive",
                   _M + "aupr_in", group="detection"),
        MetricInfo("AUPR-OUT", "aupr_out", True, "ood", "average precision, OOD positive",
                   _M + "aupr_out", group="detection"),
        MetricInfo("FPR@95TPR", "fpr_at_95_tpr", False, "ood",
                   "fraction of OOD scores >= the largest threshold keeping >= 95% of ID scores",
                   _M + "fpr_at_95_tpr", group="detection"),
        MetricInfo("DETACC", "detection_accuracy", True, "ood",
                   "max over thresholds of (TPR+TNR)/2", _M + "detection_accuracy",
                   group="detection"),
    )
}  # fmt: skip
ID_METRICS = [k for k, m in METRICS.items() if m.kind == "id"]
OOD_METRICS = [k for k, m in METRICS.items() if m.kind == "ood"]
#: Temperature-calibration objectives (``--objective``): the lower-case keys of the metrics
#: marked ``objective``, the paper's ECE first.
CALIBRATION_OBJECTIVES: tuple[str, ...] = tuple(
    m.key.lower() for m in METRICS.values() if m.objective
)


def keys(kind: str) -> list[str]:
    """The keys of one kind (``"id"`` or ``"ood"``), in table order, read at call time (so a
    metric added to :data:`METRICS` by a plug-in or a test counts)."""
    return [k for k, m in METRICS.items() if m.kind == kind]


def group_keys(group: str) -> list[str]:
    """The keys of one table group, in table order."""
    return [k for k, m in METRICS.items() if m.group == group]


def metric_conventions() -> dict[str, str]:
    """``{key: "description; direction; unit"}`` for a report's conventions block."""
    return {k: m.convention() for k, m in METRICS.items()}


__all__ = [
    "CALIBRATION_OBJECTIVES",
    "ID_METRICS",
    "METRICS",
    "OOD_METRICS",
    "MetricInfo",
    "group_keys",
    "keys",
    "metric_conventions",
]
