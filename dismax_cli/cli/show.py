"""``dismax show REPORT.json`` (also ``dismax benchmark show``): re-render a saved report.

Compare it with the paper's table (``--compare``), redraw its plots and HTML page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dismax_cli.cli import options as opt
from dismax_cli.cli.app import app
from dismax_cli.cli.common import OutputFormat, stdout_console, write_stdout
from dismax_cli.cli.figures import Html, Plots, report_samples, write_figures
from dismax_cli.config import InvalidValueError
from dismax_cli.errors import DismaxError, quote_path, read_failure
from dismax_cli.fileio import report_neighbours, samples_path

ReportPath = Annotated[
    Path, typer.Argument(metavar="REPORT.json", help="A JSON report written by --out.")
]
ShowFormat = Annotated[OutputFormat, opt.format_option("table or json.")]
Compare = Annotated[
    Path | None,
    typer.Option("--compare", metavar="TABLE.yaml", help=(
        "Print paper vs measured vs difference for the rows of the paper's table "
        "(benchmarks/paper/table2.yaml) with the report's ID set, backbone and method, and "
        "whether the run used the paper's protocol, budget and data.")),
]  # fmt: skip


@app.command()
def show(
    report_path: ReportPath,
    output_format: ShowFormat = OutputFormat.table,
    compare: Compare = None,
    plots: Plots = None,
    html: Html = None,
) -> None:
    """Re-render a saved benchmark or score report (compare it with the paper's table, redraw
    its plots / HTML page). Also spelled dismax benchmark show."""
    from dismax_cli.render import report_renderable
    from dismax_cli.reports import from_json, to_json

    if compare is not None and (plots is not None or html is not None):
        raise InvalidValueError(
            "compare", "--compare prints the comparison only: drop --plots/--html, or run "
            "dismax show again without --compare for the figures"
        )  # fmt: skip
    report = from_json(read_report(report_path), source=report_path)
    names = {samples_path(report_path).name}
    if report.per_sample:
        names.add(report.per_sample["file"])
    reads = [p for name in sorted(names) for p in report_neighbours(report_path, name)]
    from dismax_cli.output_check import Target, check_output_plan, terminate_cleanly
    from dismax_cli.output_set import OutputSet

    targets = [Target(plots, "--plots", folder=True)] if plots is not None else []
    targets += [Target(html, "--html")] if html is not None else []
    json_out = "the JSON report (--format json)" if output_format is OutputFormat.json else None
    reads = [report_path, *reads]
    check_output_plan(targets, reads, stdout_report=json_out)  # before anything is drawn
    if compare is not None:
        show_comparison(report, compare, output_format)
        return
    per_sample = None
    if plots is not None or html is not None:  # read (and check) before anything is written
        per_sample = report_samples(report, report_path, required=plots is not None)

    def print_report() -> None:
        if output_format is OutputFormat.json:
            write_stdout(to_json(report))
        else:
            stdout_console().print(report_renderable(report), crop=False)

    # The figures are written all or nothing, before the report prints (then nothing does).
    with terminate_cleanly():  # SIGTERM rolls the files back, exit 143
        write_figures(
            report, per_sample, plots=plots, html=html, outputs=OutputSet(reads=reads),
            then=print_report,
        )  # fmt: skip


def read_report(report_path: Path) -> str:
    """The report's text.

    Raises:
        DismaxError: (exit 1) it is missing, not a regular file, unreadable or not UTF-8.
    """
    from dismax_cli.fileio import file_problem

    problem = file_problem(report_path)
    if problem is not None:
        raise DismaxError(
            f"report {quote_path(report_path)} {problem}: pass a file written by --out"
        )
    try:
        return report_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DismaxError(
            f"report {quote_path(report_path)} {read_failure(exc)}: pass the JSON report "
            "written by --out"
        ) from None


def show_comparison(report: object, table: Path, output_format: OutputFormat) -> None:
    """Paper vs measured vs difference (``--compare TABLE.yaml``), as text or JSON."""
    from dismax_cli.paper import compare as compare_report
    from dismax_cli.paper import comparison_text, load_table

    comparison = compare_report(report, load_table(table), table_name=str(table))
    if output_format is OutputFormat.json:
        write_stdout(json.dumps(comparison.to_dict(), indent=2, allow_nan=False))
    else:
        write_stdout(comparison_text(comparison))
