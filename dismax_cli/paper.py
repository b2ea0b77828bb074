"""Compare a dismax report with the paper's table (issue 14 item 6; METHOD.md §8).

``dismax benchmark show REPORT.json --compare benchmarks/paper/table2.yaml`` matches the
report's rows with the table's by ID set, backbone and method (DisMax with or without FPR counts
as a different row), and prints paper vs measured vs difference for every value the paper
reports, with the same metric definitions (the paper's AUPR is AUPR-OUT; ECE after temperature
calibration; the table's ``columns`` say where each sits in a report). Three flags say whether
the run could be a reproduction at all: the paper's protocol (METHOD.md §4, §6: full training
split, T fitted and the epoch selected on the ID test set), its budget (epochs, seeds, batch,
learning rate) and its data (the full CIFAR splits, the paper's OOD sets). A report whose ID set
is none of the table's (digits, a toy set) is refused: it reproduces no row.

Torch-free: reads the report's JSON model (:mod:`dismax_cli.reports`) and the YAML table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dismax_cli.config import load_yaml
from dismax_cli.core.methods import method_label
from dismax_cli.errors import DismaxError, read_failure
from dismax_cli.errors import quote_value as q
from dismax_cli.fileio import check_regular_file
from dismax_cli.reports import METRICS, MethodResult, Report

#: The paper's full training/test split sizes for the CIFAR sets (METHOD.md §7).
FULL_SPLITS = {"cifar10": (50_000, 10_000), "cifar100": (50_000, 10_000)}
#: The budget keys a run must share with the paper's recipe to count as its budget.
BUDGET_KEYS = ("epochs", "seeds", "batch_size", "lr", "momentum", "weight_decay")


@dataclass(frozen=True)
class Value:
    """One cell: the paper's value, the measured mean (and std) and their difference."""

    column: str
    set: str
    metric: str
    paper: float
    measured: float | None
    measured_std: float | None
    difference: float | None  # measured - paper, in the metric's unit (fractions)


@dataclass(frozen=True)
class RowComparison:
    """A report method matched with one row of the paper's table."""

    method: str
    label: str
    fpr: bool
    members: int
    paper_members: int
    score: str
    paper_score: str
    values: tuple[Value, ...]


@dataclass(frozen=True)
class Comparison:
    """What ``--compare`` prints: the matched rows and whether the run is a reproduction."""

    table: str
    id_set: str
    backbone: str
    flags: dict[str, dict[str, Any]]
    rows: tuple[RowComparison, ...]
    unmatched: tuple[str, ...] = field(default=())

    @property
    def reproduction(self) -> bool:
        """True only when protocol, budget and data are all the paper's."""
        return all(flag["matches"] for flag in self.flags.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (``--format json``)."""
        import dataclasses

        return {**dataclasses.asdict(self), "reproduction": self.reproduction}


def load_table(path: str | Path) -> dict[str, Any]:
    """Read the paper's table (``benchmarks/paper/table2.yaml``) and check its shape.

    Raises:
        DismaxError: for a missing or unreadable file, invalid YAML, or a document without
            ``rows``/``columns``.
    """
    path = Path(path)
    check_regular_file(path, "the paper's table", "pass benchmarks/paper/table2.yaml")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DismaxError(
            f"the paper's table {q(path)} {read_failure(exc)}: pass "
            "benchmarks/paper/table2.yaml"
        ) from None
    except yaml.YAMLError as exc:
        raise DismaxError(f"the paper's table {q(path)} is not valid YAML ({exc})") from None
    ok = isinstance(data, dict) and isinstance(data.get("rows"), list)
    if not ok or not isinstance(data.get("columns"), dict):
        raise DismaxError(
            f"{q(path)} is not a paper table (no 'rows' and 'columns'): pass "
            "benchmarks/paper/table2.yaml"
        )
    return data


def id_set_of(spec: str, known: list[str]) -> str | None:
    """The table ID set a dataset spec is a copy or subset of (``cifar10`` ...), or None.

    ``cifar10``, ``cifar10[0-4]`` and ``npz:.../cifar10_train_10k.npz`` are all ``cifar10``
    (whether they are the paper's data is the data flag's business); longer names are tried
    first, so ``cifar100`` is never read as ``cifar10``.
    """
    text = spec.lower().replace("-", "").replace("_", "")
    for name in sorted(known, key=len, reverse=True):
        if name.replace("-", "").replace("_", "") in text:
            return name
    return None


def _report_config(report: Report) -> tuple[dict[str, Any], int]:
    """The training settings of a report and its number of seeds (score reports: 1)."""
    if report.kind == "score":
        return dict(report.config.get("train_config") or {}), 1
    return dict(report.config), int(report.config.get("seeds", 1))


def _flags(
    report: Report, table: dict[str, Any], row: dict[str, Any] | None, id_set: str
) -> dict[str, dict[str, Any]]:
    config, seeds = _report_config(report)
    recipe = {**table.get("recipe", {}), **((row or {}).get("recipe") or {})}
    protocol = report.protocol or {}
    if protocol.get("name") == "paper" and protocol.get("model_selection") == "best-test":
        proto = {"matches": True, "why": "the paper's: full training split, T and epoch on test"}
    else:
        shown = protocol.get("name", "honest (the report predates the protocol field)")
        proto = {
            "matches": False,
            "why": f"{shown}, not the paper's (--protocol paper: T fitted and the epoch "
            "selected on the ID test set)",
        }
    values = {**config, "seeds": seeds}
    differ = [
        f"{key} {q(values.get(key))} (paper {q(recipe[key])})"
        for key in BUDGET_KEYS
        if key in recipe and values.get(key) != recipe[key]
    ]
    budget = {"matches": not differ, "why": "; ".join(differ) or "the paper's epochs and seeds"}
    return {"protocol": proto, "budget": budget, "data": _data_flag(report, row, id_set)}


def _data_flag(report: Report, row: dict[str, Any] | None, id_set: str) -> dict[str, Any]:
    problems = []
    spec = str(_report_config(report)[0].get("dataset", ""))
    if spec.lower() != id_set:
        problems.append(f"ID set {q(spec)} is not the full {id_set} (--dataset {id_set})")
    sizes = {d.role: d.n for d in report.datasets if d.role in ("train", "val", "test")}
    full = FULL_SPLITS.get(id_set)
    if full is not None:
        n_train = sizes.get("train", 0) + sizes.get("val", 0)
        if (n_train, sizes.get("test")) != full and "train" in sizes:
            problems.append(f"{n_train:,} training + {sizes.get('test', 0):,} test images "
                            f"(paper {full[0]:,} + {full[1]:,})")  # fmt: skip
    wanted = [s for s in (row or {}).get("results", {}) if s != "id"]
    missing = [s for s in wanted if s not in report.ood_sets]
    if missing:
        problems.append(f"OOD sets {', '.join(missing)} not measured")
    return {"matches": not problems, "why": "; ".join(problems) or "the paper's data"}


def _measured(
    m: MethodResult, set_name: str, metric: str, score: str
) -> tuple[float | None, float | None]:
    if set_name == "id":
        stat = m.id_after.get(metric)
    else:
        found = [r for r in m.ood if r.ood == set_name and r.score == score]
        stat = found[0].metrics.get(metric) if found else None
    if stat is None or not math.isfinite(stat.mean):
        return None, None
    return stat.mean, stat.std


def _row_for(rows: list[dict[str, Any]], m: MethodResult) -> dict[str, Any] | None:
    base = "dismax" if m.method == "dismax_nofpr" else m.method
    for row in rows:
        if row.get("method") == base and bool(row.get("fpr")) == bool(m.uses_fpr):
            return row
    return None


def compare(report: Report, table: dict[str, Any], *, table_name: str = "") -> Comparison:
    """Match ``report`` with the paper's ``table`` (:func:`load_table`) row by row.

    Differences are measured − paper, in the report's units (fractions; tables print
    percentage points for percent metrics, METHOD.md §5). The OOD score of each row is the
    paper's (``score`` in the table), read from the report's per-score results.

    Raises:
        DismaxError: when the report's ID set is none of the table's (e.g. a digits run: it
            reproduces no CIFAR row), or no row shares its ID set, backbone and method.
    """
    rows = [r for r in table["rows"] if isinstance(r, dict)]
    known = sorted({str(r.get("id")) for r in rows})
    config, _ = _report_config(report)
    spec, backbone = str(config.get("dataset", "?")), str(config.get("model", "?"))
    id_set = id_set_of(spec, known)
    if id_set is None:
        raise DismaxError(
            f"the report's ID set {q(spec)} is none of the paper's ({', '.join(known)}): a "
            f"{spec} run is not a reproduction of any row of the paper's table (its rows are "
            "CIFAR-10/100 and ImageNet-1k); compare a report of `dismax benchmark --dataset "
            "cifar10` or `cifar100`"
        )
    candidates = [r for r in rows if r.get("id") == id_set and r.get("backbone") == backbone]
    matched, unmatched = [], []
    for m in report.methods:
        row = _row_for(candidates, m)
        if row is None:
            unmatched.append(m.method)
            continue
        values = []
        for set_name, metrics in row["results"].items():
            for metric, paper in metrics.items():
                mean, std = _measured(m, set_name, metric, str(row["score"]))
                column = _column_name(table, set_name, metric, id_set)
                diff = None if mean is None else mean - float(paper)
                values.append(Value(column, set_name, metric, float(paper), mean, std, diff))
        matched.append(RowComparison(
            m.method,
            m.label or method_label(m.method, uses_fpr=m.uses_fpr, members=m.members),
            bool(m.uses_fpr), m.members, int(row["members"]),
            m.default_score, str(row["score"]), tuple(values),
        ))  # fmt: skip
    if not matched:
        backbones = sorted({str(r.get("backbone")) for r in rows if r.get("id") == id_set})
        raise DismaxError(
            f"no row of the paper's table has ID set {id_set}, backbone {q(backbone)} and one of "
            f"the methods {', '.join(m.method for m in report.methods)}: its {id_set} rows use "
            f"{', '.join(backbones)} (--model)"
        )
    first = _row_for(candidates, next(m for m in report.methods if m.method == matched[0].method))
    return Comparison(
        table_name, id_set, backbone, _flags(report, table, first, id_set), tuple(matched),
        tuple(unmatched),
    )  # fmt: skip


def _column_name(table: dict[str, Any], set_name: str, metric: str, id_set: str) -> str:
    near = {"cifar10": "cifar100", "cifar100": "cifar10"}.get(id_set)
    for name, column in table["columns"].items():
        wanted = near if column.get("set") == "near" else column.get("set")
        if wanted == set_name and column.get("metric") == metric:
            return str(name)
    return f"{set_name} {metric}"


def _fmt(value: float | None, metric: str, *, signed: bool = False) -> str:
    if value is None:
        return "–"
    # As the paper prints them: percentages, except ECE, which it prints as a fraction.
    percent = metric != "ECE" and (METRICS[metric].percent if metric in METRICS else True)
    text = f"{value * 100:+.2f}" if percent and signed else f"{value * 100:.2f}"
    if not percent:
        text = f"{value:+.4f}" if signed else f"{value:.4f}"
    return text


def comparison_text(comparison: Comparison) -> str:
    """The plain-text comparison ``--compare`` prints (80 columns; % except ECE)."""
    lines = [
        f"Paper comparison: {comparison.id_set} x {comparison.backbone}"
        f"{f'  ({comparison.table})' if comparison.table else ''}",
        "values in % (ECE as a fraction); difference = measured - paper (percentage points)",
    ]
    verdict = "a reproduction" if comparison.reproduction else "NOT a reproduction"
    for name, flag in comparison.flags.items():
        lines.append(f"  {name:<9}{'yes' if flag['matches'] else 'NO ':<4} {flag['why']}")
    lines.append(f"this run is {verdict} of the paper's rows below")
    header = f"{'method':<14}{'column':<13}{'paper':>9}{'measured':>11}{'±std':>8}{'diff':>9}"
    for row in comparison.rows:
        lines += ["", header, "-" * len(header)]
        if row.members != row.paper_members:
            lines.append(f"  ({row.label}: {row.members} members, paper {row.paper_members})")
        for v in row.values:
            std = "" if v.measured_std is None else _fmt(v.measured_std, v.metric)
            lines.append(
                f"{row.label[:13]:<14}{v.column[:12]:<13}{_fmt(v.paper, v.metric):>9}"
                f"{_fmt(v.measured, v.metric):>11}{std:>8}"
                f"{_fmt(v.difference, v.metric, signed=True):>9}"
            )
    if comparison.unmatched:
        lines.append(f"\nno paper row for: {', '.join(comparison.unmatched)}")
    return "\n".join(lines)


__all__ = ["Comparison", "RowComparison", "Value", "compare", "comparison_text", "load_table"]
