"""Rich tables from reports (with ``render_scores``, the only modules besides ``cli/`` that import
rich).

Metric directions and units come from :data:`dismax_cli.reports.METRICS`; the best value of each
column is shown in bold.

Every table fits 80 columns: borderless columns two spaces apart, arrows joined to the metric
key (``AUROC↑``), and with several seeds each cell on two lines (mean, then ``±std``). Titles
are lines of their own above the tables, so they wrap only at the console's width. Every piece
of text from a report (set labels, specs, scores, notes) is a ``rich.text.Text``, never markup.
On a console narrower than a table needs, the table is rendered at the width it needs (the
terminal wraps its lines): numbers are never cut.
"""

from __future__ import annotations

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from dismax_cli.core.methods import method_label as registry_label
from dismax_cli.protocol import protocol_line
from dismax_cli.reports import ID_METRICS, METRICS, OOD_METRICS, MethodResult, Report, Stat


def method_label(result: MethodResult) -> str:
    """A row's method label: the one the report stores (from the methods registry), else the
    registry's for that method, else the method's name."""
    if result.label:
        return result.label
    return registry_label(result.method, uses_fpr=result.uses_fpr, members=result.members)


def format_stat(stat: Stat | None, *, percent: bool, digits: int = 2, stacked: bool = False) -> str:
    """``95.12`` or ``95.12 ± 0.30`` (percent) / ``0.1234`` (plain); ``–`` when missing.

    ``stacked`` puts the deviation on a second line (``95.12`` then ``±0.30``), as tables do.
    """
    if stat is None:
        return "–"
    scale = 100.0 if percent else 1.0
    fmt = f"{{:.{digits}f}}" if percent else "{:.4f}"
    text = fmt.format(stat.mean * scale)
    if stat.std is not None:
        text += ("\n±" if stacked else " ± ") + fmt.format(stat.std * scale)
    return text


def metric_header(key: str) -> str:
    """A metric's column header with its direction joined to it: ``AUROC↑``, ``FPR@95TPR↓``."""
    return f"{key}{'↑' if METRICS[key].higher_is_better else '↓'}"


def _table(*headers: str, right_from: int = 1) -> Table:
    """A borderless table whose columns from ``right_from`` on are right-aligned numbers."""
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        padding=(0, 1),
    )
    for i, header in enumerate(headers):
        table.add_column(Text(header), justify="right" if i >= right_from else "left", no_wrap=True)
    return table


class _FullWidth:
    """A table rendered at least as wide as it needs, so no cell is ever cut (``5…``).

    Below that width (a narrow terminal, ``COLUMNS=40``) its lines are longer than the console
    and the terminal wraps them: numbers stay whole. At or above it: the table as usual.
    """

    def __init__(self, table: Table) -> None:
        self.table = table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        needed = Measurement.get(console, options.update_width(_UNBOUNDED), self.table).maximum
        yield from console.render(self.table, options.update_width(max(options.max_width, needed)))

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.table)


#: A width no table reaches (for measuring a table's natural width).
_UNBOUNDED = 10_000


def _title(text: str) -> Text:
    return Text(text, style="bold")


def _best(values: list[float | None], higher_is_better: bool) -> float | None:
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return None
    return max(present) if higher_is_better else min(present)


def _cell(stat: Stat | None, best: float | None, *, percent: bool) -> Text:
    text = format_stat(stat, percent=percent, stacked=True)
    bold = stat is not None and best is not None and stat.mean == best
    return Text(text, style="bold" if bold else "")


def _plain(stat: Stat | None, *, percent: bool) -> Text:
    return Text(format_stat(stat, percent=percent, stacked=True))


ID_TITLE = "In-distribution: classification and calibration"


def id_table(report: Report) -> Table:
    """Classification and calibration: ACC, ECE and NLL at the fitted T and at T = 1, and T."""
    columns = [
        ("ACC %", "ACC", "after"),
        ("ECE %", "ECE", "after"),
        ("ECE T=1", "ECE", "before"),
        ("NLL", "NLL", "after"),
        ("NLL T=1", "NLL", "before"),
    ]
    table = _table("method", *(header for header, _, _ in columns), "T")
    best = {
        key: _best([m.id_after[key].mean for m in report.methods], METRICS[key].higher_is_better)
        for key in ID_METRICS
    }
    for m in report.methods:
        row: list[Text] = [Text(method_label(m))]
        for _, key, stage in columns:
            stat = m.id_after[key] if stage == "after" else m.id_before[key]
            if stage == "after":
                row.append(_cell(stat, best[key], percent=METRICS[key].percent))
            else:
                row.append(_plain(stat, percent=METRICS[key].percent))
        row.append(_plain(m.temperature, percent=False))
        table.add_row(*row)
    return table


def cost_table(report: Report) -> Table:
    """Inference efficiency (throughput relative to SoftMax, same run) and training time."""
    table = _table("method", "efficiency", "inference images/s", "training s")
    for m in report.methods:
        table.add_row(
            Text(method_label(m)),
            Text("–") if m.efficiency is None else _plain(m.efficiency, percent=False),
            Text("–" if m.throughput_per_s is None else f"{m.throughput_per_s.mean:,.0f}"),
            Text("–" if m.train_s is None else f"{m.train_s.mean:,.1f}"),
        )
    return table


def ood_title(report: Report, ood: str) -> str:
    """The line above an OOD set's table: its label, sizes and conventions."""
    first = report.methods[0].result(ood)
    return f"OOD: {ood}  (n_id {first.n_id:,}, n_ood {first.n_ood:,}; %, ID positive)"


def ood_table(report: Report, ood: str) -> Table:
    """OOD detection on one set with each method's default score (values in %, ID positive)."""
    rows = [(m, m.result(ood)) for m in report.methods]
    headers = [metric_header(key) for key in OOD_METRICS]
    table = _table("method", "score", *headers, right_from=2)
    best = {
        key: _best([r.metrics[key].mean for _, r in rows], METRICS[key].higher_is_better)
        for key in OOD_METRICS
    }
    for m, r in rows:
        cells: list[Text] = [Text(method_label(m)), Text(r.score)]
        cells += [_cell(r.metrics[key], best[key], percent=True) for key in OOD_METRICS]
        table.add_row(*cells)
    return table


def report_renderable(report: Report) -> Group:
    """All tables (ID, cost, one per OOD set) plus the dataset line, requirements and notes.

    Print it with ``crop=False``: a table wider than the console keeps its whole lines.
    """
    parts: list[_FullWidth | Text] = []
    protocol = protocol_line(report.protocol)
    loud = bool(report.protocol and report.protocol.get("test_set_seen"))
    if protocol and loud:  # issue 14: a run that saw the test set says so before any number
        parts += [Text(f"WARNING {protocol}", style="bold red"), Text("")]
    # (An honest report's tables stay as they were; its JSON has the ``protocol`` field.)
    parts += [_title(ID_TITLE), _FullWidth(id_table(report))]
    if report.kind == "benchmark":
        parts += [Text(""), _title("Cost"), _FullWidth(cost_table(report))]
    from dismax_cli import render_scores as rs  # --scores and --ood-preset tables (issue 15)

    every_score = bool(rs.requested_scores(report))
    for ood in report.ood_sets:
        table = rs.scores_table(report, ood) if every_score else ood_table(report, ood)
        parts += [Text(""), _title(ood_title(report, ood)), _FullWidth(table)]
    if any(report.ood_groups.values()):
        parts += [Text(""), _title(rs.means_title(report)), _FullWidth(rs.means_table(report))]
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
    if every_score and any(m.score_efficiency for m in report.methods):
        lines.append(rs.SPEED_NOTE)
    lines.extend(f"n/a for {line}" for line in rs.na_lines(report))
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
    "ood_title",
    "report_renderable",
]
