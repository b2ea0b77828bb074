"""Rich tables from reports (the only module besides ``cli/`` that imports rich).

Metric directions and units come from :data:`dismax_cli.reports.METRICS`; the best value of each
column is shown in bold.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from dismax_cli.reports import ID_METRICS, METRICS, OOD_METRICS, MethodResult, Report, Stat

METHOD_LABELS = {
    "softmax": "SoftMax",
    "isomax_plus": "IsoMax+",
    "dismax": "DisMax",
    "ensemble": "Ensemble",
}


def method_label(result: MethodResult) -> str:
    label = METHOD_LABELS.get(result.method, result.method)
    if result.method == "dismax":
        label += " (FPR)" if result.uses_fpr else " (no FPR)"
    if result.method == "ensemble":
        label += f" x{result.members}"
    return label


def format_stat(stat: Stat | None, *, percent: bool, digits: int = 2) -> str:
    """``95.12`` or ``95.12 ± 0.30`` (percent) / ``0.1234`` (plain); ``–`` when missing."""
    if stat is None:
        return "–"
    scale = 100.0 if percent else 1.0
    fmt = f"{{:.{digits}f}}" if percent else "{:.4f}"
    text = fmt.format(stat.mean * scale)
    if stat.std is not None:
        text += " ± " + fmt.format(stat.std * scale)
    return text


def _best(values: list[float | None], higher_is_better: bool) -> float | None:
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return None
    return max(present) if higher_is_better else min(present)


def _cell(stat: Stat | None, best: float | None, *, percent: bool) -> Text:
    text = format_stat(stat, percent=percent)
    bold = stat is not None and best is not None and stat.mean == best
    return Text(text, style="bold" if bold else "")


def id_table(report: Report) -> Table:
    """Classification and calibration: ACC, ECE and NLL at the fitted T and at T = 1, and T."""
    table = Table(title="In-distribution: classification and calibration", title_justify="left")
    table.add_column("method")
    columns = [
        ("ACC %", "ACC", "after"),
        ("ECE %", "ECE", "after"),
        ("ECE T=1", "ECE", "before"),
        ("NLL", "NLL", "after"),
        ("NLL T=1", "NLL", "before"),
    ]
    for header, _, _ in columns:
        table.add_column(header, justify="right")
    table.add_column("T", justify="right")
    best = {
        key: _best([m.id_after[key].mean for m in report.methods], METRICS[key].higher_is_better)
        for key in ID_METRICS
    }
    for m in report.methods:
        row: list[Text | str] = [method_label(m)]
        for _, key, stage in columns:
            stat = m.id_after[key] if stage == "after" else m.id_before[key]
            if stage == "after":
                row.append(_cell(stat, best[key], percent=METRICS[key].percent))
            else:
                row.append(format_stat(stat, percent=METRICS[key].percent))
        row.append(format_stat(m.temperature, percent=False))
        table.add_row(*row)
    return table


def cost_table(report: Report) -> Table:
    """Inference efficiency (throughput relative to SoftMax, same run) and training time."""
    table = Table(title="Cost", title_justify="left")
    table.add_column("method")
    table.add_column("efficiency", justify="right")
    table.add_column("inference images/s", justify="right")
    table.add_column("training s", justify="right")
    for m in report.methods:
        table.add_row(
            method_label(m),
            "–" if m.efficiency is None else format_stat(m.efficiency, percent=False),
            "–" if m.throughput_per_s is None else f"{m.throughput_per_s.mean:,.0f}",
            "–" if m.train_s is None else f"{m.train_s.mean:,.1f}",
        )
    return table


def ood_table(report: Report, ood: str) -> Table:
    """OOD detection on one set with each method's default score (values in %, ID positive)."""
    rows = [(m, m.result(ood)) for m in report.methods]
    n_id, n_ood = rows[0][1].n_id, rows[0][1].n_ood
    table = Table(
        title=f"OOD: {ood}  (n_id {n_id:,}, n_ood {n_ood:,}; %, ID positive)",
        title_justify="left",
    )
    table.add_column("method")
    table.add_column("score")
    for key in OOD_METRICS:
        arrow = "↑" if METRICS[key].higher_is_better else "↓"
        table.add_column(f"{key} {arrow}", justify="right")
    best = {
        key: _best([r.metrics[key].mean for _, r in rows], METRICS[key].higher_is_better)
        for key in OOD_METRICS
    }
    for m, r in rows:
        cells: list[Text | str] = [method_label(m), r.score]
        cells += [_cell(r.metrics[key], best[key], percent=True) for key in OOD_METRICS]
        table.add_row(*cells)
    return table


def report_renderable(report: Report) -> Group:
    """All tables (ID, cost, one per OOD set) plus the dataset line, requirements and notes."""
    parts: list[Table | Text] = [id_table(report)]
    if report.kind == "benchmark":
        parts.append(cost_table(report))
    parts.extend(ood_table(report, ood) for ood in report.ood_sets)
    test = next((d for d in report.datasets if d.role == "test"), None)
    lines = []
    if test is not None:
        seeds = report.methods[0].seeds if report.methods else ()
        seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"
        lines.append(
            f"ID: {test.name} ({test.n:,} test images, {test.num_classes} classes); "
            f"{seed_text}; device: {report.environment.get('device')}"
        )
    if any(m.seeds and len(m.seeds) > 1 for m in report.methods):
        lines.append("values: mean ± sample standard deviation over seeds")
    for req in report.requirements:
        verdict = "pass" if req.passed else "FAIL"
        lines.append(f"require {req.text}: {verdict} (measured {req.value:.4f})")
    lines.extend(f"note: {n}" for n in report.notes)
    if lines:
        parts.append(Text("\n".join(lines), style="dim"))
    return Group(*parts)


__all__ = [
    "cost_table",
    "format_stat",
    "id_table",
    "method_label",
    "ood_table",
    "report_renderable",
]
