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
    """Classification and calibration: ACC, NLL, ECE before → after, T, efficiency, train time."""
    table = Table(title="In-distribution: classification and calibration", title_justify="left")
    table.add_column("method")
    for key in ID_METRICS:
        info = METRICS[key]
        unit = " %" if info.percent else ""
        table.add_column(f"{key}{unit}", justify="right")
    table.add_column("ECE @T=1 %", justify="right")
    table.add_column("T", justify="right")
    if report.kind == "benchmark":
        table.add_column("efficiency", justify="right")
        table.add_column("images/s", justify="right")
        table.add_column("train s", justify="right")
    best = {
        key: _best([m.id_after[key].mean for m in report.methods], METRICS[key].higher_is_better)
        for key in ID_METRICS
    }
    for m in report.methods:
        row: list[Text | str] = [method_label(m)]
        for key in ID_METRICS:
            row.append(_cell(m.id_after[key], best[key], percent=METRICS[key].percent))
        row.append(format_stat(m.id_before["ECE"], percent=True))
        row.append(format_stat(m.temperature, percent=False))
        if report.kind == "benchmark":
            row.append(format_stat(m.efficiency, percent=False) if m.efficiency else "–")
            row.append("–" if m.throughput_per_s is None else f"{m.throughput_per_s.mean:,.0f}")
            row.append("–" if m.train_s is None else f"{m.train_s.mean:,.1f}")
        table.add_row(*row)
    return table


def ood_table(report: Report) -> Table:
    """OOD detection with each method's default score, one block of rows per OOD set."""
    table = Table(
        title="Out-of-distribution detection (each method's default score, ID positive)",
        title_justify="left",
    )
    table.add_column("OOD set")
    table.add_column("method")
    table.add_column("score")
    for key in OOD_METRICS:
        arrow = "↑" if METRICS[key].higher_is_better else "↓"
        table.add_column(f"{key} % {arrow}", justify="right")
    table.add_column("n_id / n_ood", justify="right")
    for i, ood in enumerate(report.ood_sets):
        rows = [(m, m.result(ood)) for m in report.methods]
        best = {
            key: _best([r.metrics[key].mean for _, r in rows], METRICS[key].higher_is_better)
            for key in OOD_METRICS
        }
        for j, (m, r) in enumerate(rows):
            cells: list[Text | str] = [ood if j == 0 else "", method_label(m), r.score]
            cells += [_cell(r.metrics[key], best[key], percent=True) for key in OOD_METRICS]
            cells.append(f"{r.n_id} / {r.n_ood}")
            table.add_row(*cells, end_section=j == len(rows) - 1 and i < len(report.ood_sets) - 1)
    return table


def report_renderable(report: Report) -> Group:
    """Both tables plus the dataset line and notes."""
    parts: list[Table | Text] = [id_table(report), ood_table(report)]
    test = next((d for d in report.datasets if d.role == "test"), None)
    lines = []
    if test is not None:
        seeds = report.methods[0].seeds if report.methods else ()
        lines.append(
            f"ID: {test.spec} ({test.n} test images, {test.num_classes} classes); "
            f"seeds: {', '.join(map(str, seeds))}; device: {report.environment.get('device')}"
        )
    lines.extend(f"note: {n}" for n in report.notes)
    if any(m.seeds and len(m.seeds) > 1 for m in report.methods):
        lines.append("values: mean ± sample standard deviation over seeds")
    if lines:
        parts.append(Text("\n".join(lines), style="dim"))
    return Group(*parts)


__all__ = ["format_stat", "id_table", "method_label", "ood_table", "report_renderable"]
