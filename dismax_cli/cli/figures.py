"""``--plots DIR`` and ``--html FILE`` of ``dismax benchmark`` and ``dismax show``.

Paths are checked before any work (a bad one: one line, nothing written); the plots are drawn
from per-sample data (:mod:`dismax_cli.plots`), the page by :mod:`dismax_cli.html_report`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dismax_cli.cli.common import say
from dismax_cli.output_check import parse_output_path

if TYPE_CHECKING:
    from dismax_cli.output_set import OutputSet
    from dismax_cli.plots import PerSample
    from dismax_cli.reports import Report

#: ``--plots DIR`` of benchmark and show (``= None``).
Plots = Annotated[
    Path | None,
    typer.Option(
        "--plots", parser=parse_output_path,
        metavar="DIR",
        help=(
            "Write PNG plots into DIR (created): reliability diagrams, ID-vs-OOD score "
            "histograms, ROC and PR curves, risk-coverage."
        ),
    ),
]
#: ``--html FILE`` of benchmark and show (``= None``).
Html = Annotated[
    Path | None,
    typer.Option(
        "--html", parser=parse_output_path,
        metavar="FILE",
        help="Write one self-contained HTML page (tables, plots, provenance) to FILE.",
    ),
]


def write_figures(
    report: Report,
    per_sample: PerSample | None,
    *,
    plots: Path | None,
    html: Path | None,
    outputs: OutputSet | None = None,
    then: Callable[[], None] | None = None,
) -> None:
    """Draw every plot once; write them into ``plots`` and/or inline into the ``html`` page,
    all or nothing (:class:`~dismax_cli.output_set.OutputSet`).

    Without per-sample data (an older report) the page has tables only, and a line says so.
    ``outputs`` holds other files to write with them (the report and its per-sample file):
    they are written together, or none is. ``then`` runs once they are written, before the
    lines that name them (the benchmark prints its tables there).

    Raises:
        DismaxError: when a file cannot be written (then none of them is).
    """
    from dismax_cli.output_set import OutputSet

    outputs = outputs if outputs is not None else OutputSet()
    files: dict[str, bytes] = {}
    if per_sample is not None and (plots is not None or html is not None):
        from dismax_cli.plots import plot_files

        files = plot_files(per_sample)
    if plots is not None:
        for name, data in files.items():
            outputs.add(plots / name, data, "--plots", special=False)  # a FIFO would block
    if html is not None:
        from dismax_cli.html_report import render_html

        # A path that is not UTF-8 (held as a surrogate escape) shows as \\udcff: no crash.
        page = render_html(report, plots=files).encode("utf-8", "backslashreplace")
        outputs.add(html, page, "--html")
    outputs.commit()
    if then is not None:
        then()
    if plots is not None:
        say(f"wrote {len(files)} plot(s) to {plots}")
    if html is not None:
        say(f"wrote {html}" + ("" if files else " (no plots: the report has no per-sample data)"))


def report_samples(report: Report, report_path: Path, *, required: bool) -> PerSample | None:
    """The per-sample data a saved report names, or None when it names none and
    ``required`` is false (``--html`` only).

    Raises:
        DismaxError: when ``required`` (``--plots``) and the report names none, or the file is
            missing or changed.
    """
    from dismax_cli.evidence import load_report_samples

    if not report.per_sample and not required:
        return None
    return load_report_samples(report, report_path)


__all__ = ["Html", "Plots", "report_samples", "write_figures"]
