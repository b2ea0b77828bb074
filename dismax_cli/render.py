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
from dismax_cli.core.metric_table import group_keys, keys
from dismax_cli.errors import DismaxError
from dismax_cli.gates import measured_text
from dismax_cli.protocol import protocol_line
from dismax_cli.reports import METRICS, Interval, MethodResult, Report, Stat


def method_label(result: MethodResult) -> str:
    """A row's method label: the one the report stores (from the methods registry), else the
    registry's for that method, else the method's name."""
    if result.label:
        return result.label
    return registry_label(result.method, uses_fpr=result.uses_fpr, members=result.members)


def format_stat(
    stat: Stat | None,
    *,
    percent: bool,
    digits: int = 2,
    stacked: bool = False,
    interval: Interval | None = None,
) -> str:
    """``95.12`` or ``95.12 ± 0.30`` (percent) / ``0.1234`` (plain); ``–`` when missing.

    ``±`` is the sample std over seeds. ``interval`` adds ``(±x)``, half the width of the
    bootstrap interval over test samples (the exact bounds are in the JSON). ``stacked`` puts
    each on a line of its own (``95.12``, ``±0.30``, ``(±0.41)``), as tables do.
    """
    if stat is None or stat.mean is None:  # missing, or null with its reason in the JSON
        return "–"
    scale = 100.0 if percent else 1.0
    fmt = f"{{:.{digits}f}}" if percent else "{:.4f}"
    text = fmt.format(stat.mean * scale)
    if stat.std is not None:
        text += ("\n±" if stacked else " ± ") + fmt.format(stat.std * scale)
    if interval is not None:
        text += ("\n" if stacked else " ") + f"(±{fmt.format(interval.half_width * scale)})"
    return text


def format_difference(diff: Interval, *, percent: bool = True, stacked: bool = False) -> str:
    """A paired difference: ``+4.32`` and ``(±1.10)`` (half its interval's width), in points."""
    scale = 100.0 if percent else 1.0
    fmt = "{:+.2f}" if percent else "{:+.4f}"
    half = ("{:.2f}" if percent else "{:.4f}").format(diff.half_width * scale)
    return fmt.format(diff.value * scale) + ("\n" if stacked else " ") + f"(±{half})"


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


def format_mean(stat: Stat | None, form: str) -> str:
    """A statistic's mean in ``form``, or "–" when there is none (no stat, or a null mean)."""
    return "–" if stat is None or stat.mean is None else form.format(stat.mean)


def best_value(values: list[float | None], higher_is_better: bool) -> float | None:
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return None
    return max(present) if higher_is_better else min(present)


def _cell(
    stat: Stat | None, best: float | None, *, percent: bool, interval: Interval | None = None
) -> Text:
    text = format_stat(stat, percent=percent, stacked=True, interval=interval)
    bold = stat is not None and best is not None and stat.mean == best
    return Text(text, style="bold" if bold else "")


def _plain(stat: Stat | None, *, percent: bool) -> Text:
    return Text(format_stat(stat, percent=percent, stacked=True))


ID_TITLE = "In-distribution: classification and calibration"
UNCERTAINTY_TITLE = "In-distribution: uncertainty at the calibrated T"


def id_columns(group: str = "classification") -> list[tuple[str, str, str]]:
    """``(header, key, stage)`` of an ID table, from the metric table's ``group``.

    Each metric of the group at the calibrated T (``after``), followed by its T = 1 value
    (``before``) when the table marks it ``at_t1``: ``ACC %, ECE %, ECE T=1, NLL, NLL T=1``.
    """
    columns = []
    for key in group_keys(group):
        info = METRICS[key]
        columns.append((f"{key} %" if info.percent else key, key, "after"))
        if info.at_t1:
            columns.append((f"{key} T=1", key, "before"))
    return columns


def id_table(report: Report, group: str = "classification") -> Table:
    """ID metrics of one table group: ``classification`` (ACC, ECE and NLL at the fitted T and
    at T = 1, and T) or ``uncertainty`` (Brier, AURC, adaptive and classwise ECE).

    A metric an older report lacks is shown as ``–``.
    """
    columns = id_columns(group)
    extra = ("T",) if group == "classification" else ()
    table = _table("method", *(header for header, _, _ in columns), *extra)
    best = {
        key: best_value(
            [_mean(m.id_after.get(key)) for m in report.methods], METRICS[key].higher_is_better
        )
        for _, key, _ in columns
    }
    for m in report.methods:
        row: list[Text] = [Text(method_label(m))]
        for _, key, stage in columns:
            percent = METRICS[key].percent
            if stage == "after":
                row.append(_cell(m.id_after.get(key), best[key], percent=percent))
            else:
                row.append(_plain(m.id_before.get(key), percent=percent))
        if extra:
            row.append(_plain(m.temperature, percent=False))
        table.add_row(*row)
    return table


def has_group(report: Report, group: str) -> bool:
    """Whether any method of ``report`` holds a metric of ``group`` (older reports do not)."""
    keys = group_keys(group)
    return any(key in m.id_after for m in report.methods for key in keys)


def _mean(stat: Stat | None) -> float | None:
    return None if stat is None else stat.mean


def cost_table(report: Report) -> Table:
    """Inference efficiency (throughput relative to SoftMax, same run) and training time."""
    table = _table("method", "efficiency", "inference images/s", "training s")
    for m in report.methods:
        table.add_row(
            Text(method_label(m)),
            Text("–") if m.efficiency is None else _plain(m.efficiency, percent=False),
            Text(format_mean(m.throughput_per_s, "{:,.0f}")),
            Text(format_mean(m.train_s, "{:,.1f}")),
        )
    return table


def ood_title(report: Report, ood: str) -> str:
    """The line above an OOD set's table: its label, sizes and conventions."""
    first = report.methods[0].result(ood)
    return f"OOD: {ood}  (n_id {first.n_id:,}, n_ood {first.n_ood:,}; %, ID positive)"


def ood_table(report: Report, ood: str) -> Table:
    """OOD detection on one set with each method's default score (values in %, ID positive)."""
    rows = [(m, m.result(ood)) for m in report.methods]
    headers = [metric_header(key) for key in keys("ood")]
    table = _table("method", "score", *headers, right_from=2)
    best = {
        key: best_value([_mean(r.metrics.get(key)) for _, r in rows], METRICS[key].higher_is_better)
        for key in keys("ood")
    }
    for m, r in rows:
        cells: list[Text] = [Text(method_label(m)), Text(r.score)]
        cells += [
            _cell(r.metrics.get(key), best[key], percent=True, interval=r.intervals.get(key))
            for key in keys("ood")
        ]
        table.add_row(*cells)
    return table


def difference_rows(
    report: Report, ood: str
) -> list[tuple[MethodResult, str, dict[str, Interval]]]:
    """The methods with a paired difference on ``ood``: (method, baseline, key → difference)."""
    rows = []
    for m in report.methods:
        r = m.result(ood)
        if r.vs_baseline and r.baseline:
            rows.append((m, r.baseline, r.vs_baseline))
    return rows


def difference_table(report: Report, ood: str) -> Table:
    """Each method minus the baseline on ``ood`` (default scores; points, paired bootstrap)."""
    headers = [metric_header(key) for key in keys("ood")]
    table = _table("method", *headers)
    for m, _, diffs in difference_rows(report, ood):
        cells = [Text(method_label(m))]
        cells += [
            Text("–" if key not in diffs else format_difference(diffs[key], stacked=True))
            for key in keys("ood")
        ]
        table.add_row(*cells)
    return table


def _baseline_label(report: Report, name: str) -> str:
    try:
        return method_label(report.method(name))
    except DismaxError:
        return name


def legend_lines(report: Report) -> list[str]:
    """What ``±`` and ``(±x)`` mean in this report's tables, and what it lacks."""
    lines = []
    if any(m.seeds and len(m.seeds) > 1 for m in report.methods):
        lines.append("values: mean ± sample standard deviation over seeds")
    interval = next((i for m in report.methods for r in m.ood for i in r.intervals.values()), None)
    if interval is not None:
        lines.append(
            f"(±x): half-width of the {100 * interval.level:g}% bootstrap interval over test "
            f"samples ({interval.resamples:,} resamples; bounds in the JSON); differences: "
            "the same resamples for both methods"
        )
    elif report.kind == "benchmark":
        lines.append("no bootstrap intervals in this report (--bootstrap 0, or an older report)")
    if not has_group(report, "uncertainty"):
        lines.append("no uncertainty metrics (Brier, AURC, ...) in this report: an older report")
    return lines


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
    if has_group(report, "uncertainty"):
        table = id_table(report, "uncertainty")
        parts += [Text(""), _title(UNCERTAINTY_TITLE), _FullWidth(table)]
    if report.kind == "benchmark":
        parts += [Text(""), _title("Cost"), _FullWidth(cost_table(report))]
    from dismax_cli import render_scores as rs  # --scores and --ood-preset tables (issue 15)

    every_score = bool(rs.requested_scores(report))
    for ood in report.ood_sets:
        table = rs.scores_table(report, ood) if every_score else ood_table(report, ood)
        parts += [Text(""), _title(ood_title(report, ood)), _FullWidth(table)]
        rows = difference_rows(report, ood)
        if rows:
            title = f"{ood}: minus {_baseline_label(report, rows[0][1])} (points, paired)"
            parts += [Text(""), _title(title), _FullWidth(difference_table(report, ood))]
    if any(report.ood_groups.values()):
        parts += [Text(""), _title(rs.means_title(report)), _FullWidth(rs.means_table(report))]
    lines = _footer_lines(report, every_score)
    if lines:
        parts.append(Text("\n".join(lines), style="dim"))
    return Group(*parts)


def _footer_lines(report: Report, every_score: bool) -> list[str]:
    """The dim lines under the tables: ID set and seeds, legend, requirements, n/a, notes."""
    from dismax_cli import render_scores as rs

    test = next((d for d in report.datasets if d.role == "test"), None)
    lines = []
    if test is not None:
        seeds = report.methods[0].seeds if report.methods else ()
        seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"
        lines.append(
            f"ID: {test.name} ({test.n:,} test images, {test.num_classes} classes); "
            f"{seed_text}; device: {report.environment.get('device')}"
        )
    lines += legend_lines(report)
    for req in report.requirements:
        verdict = "pass" if req.passed else "FAIL"
        shown = measured_text(req.value, req.passed)
        lines.append(f"require {req.text}: {verdict} (measured {shown})")
    if every_score and any(m.score_efficiency for m in report.methods):
        lines.append(rs.SPEED_NOTE)
    lines.extend(f"n/a for {line}" for line in rs.na_lines(report))
    lines.extend(f"note: {n}" for n in report.notes)
    return lines


__all__ = [
    "UNCERTAINTY_TITLE",
    "best_value",
    "format_mean",
    "cost_table",
    "difference_rows",
    "difference_table",
    "format_difference",
    "has_group",
    "id_columns",
    "legend_lines",
    "format_stat",
    "id_table",
    "method_label",
    "ood_table",
    "ood_title",
    "report_renderable",
]
