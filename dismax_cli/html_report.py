"""One self-contained HTML file from a report: tables, plots, provenance, conventions, notes.

The page makes no network request: the plots are inline ``data:image/png;base64`` URIs, the CSS
is one inline ``<style>`` block with system fonts only, there is no script, and a
``Content-Security-Policy`` meta tag forbids every other source. Web addresses found in the
report's text (dataset sources, notes) become ``<a href>`` links a person may click; nothing is
fetched. All text from the report is escaped with :func:`html.escape`.

Numbers are formatted exactly as the rich tables of :mod:`dismax_cli.render` format them
(percent metrics with 2 decimals, NLL and T with 4, ``mean ± std`` over seeds, best value of a
column in bold), so a value read in the terminal can be found in the page.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from dismax_cli.core.metric_table import keys
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q
from dismax_cli.gates import measured_text
from dismax_cli.protocol import protocol_line
from dismax_cli.render import (
    ID_TITLE,
    UNCERTAINTY_TITLE,
    best_value,
    difference_rows,
    format_difference,
    format_mean,
    format_stat,
    has_group,
    id_columns,
    legend_lines,
    method_label,
    metric_header,
)
from dismax_cli.reports import METRICS, Interval, Report, Stat

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_URL = re.compile(r"https?://[^\s<>\"'()]+")
PAPER_URL = "https://arxiv.org/abs/2205.05874"

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0 auto;
max-width:70rem;padding:0.75rem;line-height:1.4;color:#111;background:#fff}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:1.6rem;border-bottom:1px solid #ccc}
h3{font-size:1rem;margin:1rem 0 0.25rem}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;margin:0.5rem 0}
table{border-collapse:collapse;font-size:0.9rem}
th,td{border:1px solid #ccc;padding:0.25rem 0.5rem;white-space:nowrap}
th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.wrap{white-space:normal;min-width:12rem}
.best{font-weight:700}.pass{color:#060}.fail{color:#a00;font-weight:700}
figure{margin:0.75rem 0}img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:0.85rem;color:#444}
dl{margin:0}dt{font-weight:600;margin-top:0.4rem}dd{margin:0 0 0 1rem}
code{font-size:0.85rem;word-break:break-all}
"""


def _text(value: Any) -> str:
    """Escape ``value`` as HTML text; web addresses become links (the only http(s) in a page)."""
    raw = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    out = []
    last = 0
    for match in _URL.finditer(raw):
        out.append(html.escape(raw[last : match.start()]))
        url = html.escape(match.group(0))
        out.append(f'<a href="{url}" rel="noreferrer">{url}</a>')
        last = match.end()
    out.append(html.escape(raw[last:]))
    return "".join(out)


def _table(
    caption: str,
    header: Sequence[str],
    rows: Sequence[Sequence[tuple[str, str]]],
    *,
    table_id: str,
) -> str:
    """A table in a horizontal scroller; each cell is (already-escaped html, css class)."""
    head = "".join(f"<th scope=\"col\">{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="{cls}">{cell}</td>' for cell, cls in row) + "</tr>"
        for row in rows
    )
    return (
        f'<h3 id="{table_id}-title">{html.escape(caption)}</h3>'
        f'<div class="scroll"><table id="{table_id}" aria-labelledby="{table_id}-title">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def _num(
    stat: Stat | None,
    *,
    percent: bool,
    best: float | None = None,
    interval: Interval | None = None,
) -> tuple[str, str]:
    text = html.escape(format_stat(stat, percent=percent, interval=interval))
    if interval is not None:
        scale = 100.0 if percent else 1.0
        text += f" <small>[{interval.low * scale:.2f}, {interval.high * scale:.2f}]</small>"
    bold = stat is not None and best is not None and stat.mean == best
    return text, "num best" if bold else "num"


def _id_table(report: Report, group: str = "classification") -> str:
    columns = id_columns(group)
    best = {
        key: best_value(
            [None if key not in m.id_after else m.id_after[key].mean for m in report.methods],
            METRICS[key].higher_is_better,
        )
        for _, key, _ in columns
    }
    rows = []
    for m in report.methods:
        row = [(html.escape(method_label(m)), "")]
        for _, key, stage in columns:
            percent = METRICS[key].percent
            if stage == "after":
                row.append(_num(m.id_after.get(key), percent=percent, best=best[key]))
            else:
                row.append(_num(m.id_before.get(key), percent=percent))
        if group == "classification":
            row.append(_num(m.temperature, percent=False))
        rows.append(row)
    header = ["method"] + [h for h, _, _ in columns]
    if group == "classification":
        header.append("T")
        return _table(ID_TITLE, header, rows, table_id="id-table")
    return _table(UNCERTAINTY_TITLE, header, rows, table_id="uncertainty-table")


def _difference_table(report: Report, ood: str, number: int) -> str:
    rows = []
    entries = difference_rows(report, ood)
    baseline = entries[0][1] if entries else ""
    for m, _, diffs in entries:
        row = [(html.escape(method_label(m)), "")]
        for key in keys("ood"):
            if key not in diffs:
                row.append(("–", "num"))
                continue
            d = diffs[key]
            text = html.escape(format_difference(d))
            text += f" <small>[{100 * d.low:+.2f}, {100 * d.high:+.2f}]</small>"
            row.append((text, "num"))
        rows.append(row)
    caption = f"{ood}: minus {baseline} (points, paired bootstrap)"
    header = ["method"] + [metric_header(key) for key in keys("ood")]
    return _table(caption, header, rows, table_id=f"diff-table-{number}")


def _cost_table(report: Report) -> str:
    rows = []
    for m in report.methods:
        rows.append(
            [
                (html.escape(method_label(m)), ""),
                (
                    "–" if m.efficiency is None else html.escape(
                        format_stat(m.efficiency, percent=False)
                    ),
                    "num",
                ),
                (format_mean(m.throughput_per_s, "{:,.0f}"), "num"),
                (format_mean(m.train_s, "{:,.1f}"), "num"),
            ]
        )
    header = ["method", "efficiency", "inference images/s", "training s"]
    return _table("Cost", header, rows, table_id="cost-table")


def _ood_table(report: Report, ood: str, number: int) -> str:
    results = [(m, m.result(ood)) for m in report.methods]
    n_id, n_ood = results[0][1].n_id, results[0][1].n_ood
    best = {
        key: best_value(
            [None if key not in r.metrics else r.metrics[key].mean for _, r in results],
            METRICS[key].higher_is_better,
        )
        for key in keys("ood")
    }
    rows = []
    for m, r in results:
        row = [(html.escape(method_label(m)), ""), (html.escape(r.score), "")]
        row += [
            _num(r.metrics.get(key), percent=True, best=best[key], interval=r.intervals.get(key))
            for key in keys("ood")
        ]
        rows.append(row)
    header = ["method", "score"] + [
        metric_header(key) for key in keys("ood")
    ]
    caption = f"OOD: {ood}  (n_id {n_id:,}, n_ood {n_ood:,}; %, ID positive)"
    return _table(caption, header, rows, table_id=f"ood-table-{number}")


def _reliability_tables(report: Report) -> list[str]:
    """Per method, the reliability bins of its first seed (T = 1 and calibrated)."""
    parts = []
    for i, m in enumerate(report.methods):
        if not m.reliability:
            continue
        first = m.reliability[0]
        rows = []
        for before, after in zip(first["before"], first["after"], strict=True):
            row = [(f"({before['lower']:.3f}, {before['upper']:.3f}]", "num")]
            for b in (before, after):
                row.append((f"{b['count']:,}", "num"))
                for key in ("accuracy", "confidence"):
                    row.append(("–" if b[key] is None else f"{100 * b[key]:.2f}", "num"))
            rows.append(row)
        header = ["bin", "n T=1", "acc % T=1", "conf % T=1", "n", "acc %", "conf %"]
        caption = (
            f"Reliability bins: {method_label(m)} (seed {first['seed']}, "
            f"T = {first['temperature']:.4g})"
        )
        parts.append(_table(caption, header, rows, table_id=f"reliability-table-{i}"))
    return parts


def _results(report: Report) -> list[str]:
    """The result tables: ID (and uncertainty), cost, per OOD set (and differences), bins."""
    body = [_id_table(report)]
    if has_group(report, "uncertainty"):
        body.append(_id_table(report, "uncertainty"))
    if report.kind == "benchmark":
        body.append(_cost_table(report))
    for i, ood in enumerate(report.ood_sets):
        body.append(_ood_table(report, ood, i))
        if difference_rows(report, ood):
            body.append(_difference_table(report, ood, i))
    return body + _reliability_tables(report)


def _key_values(title: str, values: Mapping[str, Any], *, table_id: str) -> str:
    rows = [[(_text(str(k)), ""), (_text(v), "wrap")] for k, v in values.items()]
    return _table(title, ["key", "value"], rows, table_id=table_id)


def _datasets_table(report: Report) -> str:
    header = ["role", "name", "spec", "split", "n", "image shape", "classes", "synthetic",
              "pixels sha256", "source"]
    rows = []
    for d in report.datasets:
        rows.append(
            [
                (_text(d.role), ""),
                (_text(d.name), ""),
                (_text(d.spec), ""),
                (_text(d.split), ""),
                (f"{d.n:,}", "num"),
                (html.escape("×".join(str(s) for s in d.image_shape)), ""),
                (str(d.num_classes), "num"),
                ("yes" if d.synthetic else "no", ""),
                (f"<code>{html.escape(d.pixels_sha256)}</code>", ""),
                (_text(d.source), "wrap"),
            ]
        )
    return _table("Datasets", header, rows, table_id="datasets-table")


def _plots(plots: Mapping[str, bytes]) -> str:
    parts = []
    for name, data in plots.items():
        if not isinstance(data, bytes | bytearray) or bytes(data[:8]) != _PNG_MAGIC:
            raise DismaxError(
                f"plot {q(name)} is not PNG bytes: pass the bytes a dismax_cli.plots function "
                "returned"
            )
        uri = "data:image/png;base64," + base64.b64encode(bytes(data)).decode("ascii")
        label = html.escape(name)
        parts.append(
            f'<figure><img src="{uri}" alt="{label}" loading="eager">'
            f"<figcaption>{label}</figcaption></figure>"
        )
    return "".join(parts)


def _protocol_paragraph(report: Report) -> list[str]:
    """The report's protocol line (issue 14), marked ``fail`` when the test set was seen."""
    protocol = protocol_line(report.protocol)
    if not protocol:
        return []
    seen = bool(report.protocol and report.protocol.get("test_set_seen"))
    style = ' class="fail"' if seen else ""
    return [f'<p id="protocol"{style}>{_text(protocol)}</p>']


def render_html(report: Report, *, plots: Mapping[str, bytes] | None = None) -> str:
    """Render a report as one self-contained HTML page.

    The page holds every table of the rich output (ID metrics and uncertainty; cost for a
    benchmark; one table per OOD set with each method's default score, its bootstrap bounds and
    its paired difference from SoftMax), the reliability bins, the plots (inline PNG), the
    provenance (datasets, environment, config), the conventions block, the ``--require``
    outcomes and the notes. It loads nothing: no script, font, stylesheet or image from outside
    the file.

    Args:
        report: A ``score`` or ``benchmark`` report, e.g. from
            :func:`dismax_cli.reports.from_json`.
        plots: Caption (e.g. the file name) → PNG bytes from :mod:`dismax_cli.plots`, shown in
            this order; ``None`` or empty for no plot section.

    Returns:
        The HTML document as text (UTF-8 when written).

    Raises:
        DismaxError: If a plot is not PNG bytes, or a method lacks a result for an OOD set of
            the report.
    """
    title = f"dismax {report.kind} report"
    test = next((d for d in report.datasets if d.role == "test"), None)
    summary = []
    if test is not None:
        seeds = report.methods[0].seeds if report.methods else ()
        seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"
        summary.append(
            f"ID: {test.name} ({test.n:,} test images, {test.num_classes} classes); "
            f"{seed_text}; device: {report.environment.get('device')}"
        )
    summary.append(f"dismax {report.tool_version}, created {report.created}")
    summary += legend_lines(report)
    body = [f"<h1>{html.escape(title)}</h1>"]
    body += _protocol_paragraph(report)
    body += [f"<p>{_text(line)}</p>" for line in summary]
    body.append("<h2>Results</h2>")
    body += _results(report)
    if report.requirements:
        body.append("<h2>Requirements</h2><ul id=\"requirements\">")
        for req in report.requirements:
            verdict = '<span class="pass">pass</span>' if req.passed else (
                '<span class="fail">FAIL</span>'
            )
            shown = measured_text(req.value, req.passed)
            body.append(f"<li>require {_text(req.text)}: {verdict} (measured {shown})</li>")
        body.append("</ul>")
    if report.notes:
        body.append('<h2>Notes</h2><ul id="notes">')
        body += [f"<li>{_text(note)}</li>" for note in report.notes]
        body.append("</ul>")
    if plots:
        body.append(f'<h2>Plots</h2><div id="plots">{_plots(plots)}</div>')
    body.append("<h2>Provenance</h2>")
    body.append(_datasets_table(report))
    body.append(_key_values("Environment", report.environment, table_id="environment-table"))
    body.append(_key_values("Config", report.config, table_id="config-table"))
    body.append('<h2>Conventions</h2><dl id="conventions">')
    for key, value in report.conventions.items():
        body.append(f"<dt>{_text(str(key))}</dt><dd>{_text(value)}</dd>")
    body.append("</dl>")
    body.append(
        '<p>Method: Macêdo, Zanchettin and Ludermir, "Distinction Maximization Loss: '
        "Efficiently Improving Out-of-Distribution Detection and Uncertainty Estimation by "
        'Replacing the Loss and Calibrating", '
        f'<a href="{PAPER_URL}" rel="noreferrer">arXiv:2205.05874</a>.</p>'
    )
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


__all__ = ["PAPER_URL", "render_html"]
