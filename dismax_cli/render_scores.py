"""Tables of every score side by side (``--scores``) and of near/far means (``--ood-preset``).

Drawn with :mod:`dismax_cli.render`'s conventions (80 columns, borderless, arrows joined to the
metric key, the best value of a column in bold, text from a report as ``rich.text.Text``): one
table per OOD set with a row per method × score, each row's ``speed`` (inference images/s with
that score relative to SoftMax with MSP, measured in the same run; "–" where not timed, e.g.
``dismax score``), and one table of near-OOD and far-OOD means (unweighted over sets).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from dismax_cli.reports import METRICS, MethodResult, OODResult, Report, Stat
from dismax_cli.score_names import shown_scores

#: Metrics of the per-score tables (80 columns; every metric is in the JSON).
TABLE_METRICS = ("AUROC", "AUPR-IN", "FPR@95TPR")
SPEED_NOTE = "speed: inference images/s with the score relative to SoftMax with MSP, same run"


def requested_scores(report: Report) -> list[str]:
    """The report's ``--scores`` (``[]``: tables show each method's default score only)."""
    scores = report.config.get("scores")
    return [s for s in scores if isinstance(s, str)] if isinstance(scores, list) else []


def _rows(report: Report, results: Sequence[OODResult], m: MethodResult) -> list[OODResult]:
    requested = requested_scores(report) or [m.default_score]
    by_score = {r.score: r for r in results}
    return [by_score[s] for s in shown_scores(requested, list(by_score))]


def _speed(m: MethodResult, score: str) -> Text:
    stat: Stat | None = m.score_efficiency.get(score)
    return Text("–" if stat is None or stat.mean is None else f"{stat.mean:.2f}")


def scores_table(report: Report, ood: str) -> Table:
    """OOD detection on one set: a row per method × requested score, with its speed.

    Shows :data:`TABLE_METRICS` (AUPR-OUT and DETACC are in the JSON and ``--require``).
    """
    from dismax_cli.render import _cell, _table, best_value, method_label, metric_header

    rows = [
        (m, r)
        for m in report.methods
        for r in _rows(report, [x for x in m.ood if x.ood == ood], m)
    ]
    headers = [metric_header(k) for k in TABLE_METRICS]
    table = _table("method", "score", *headers, "speed", right_from=2)
    best = {
        k: best_value([_mean(r.metrics.get(k)) for _, r in rows], METRICS[k].higher_is_better)
        for k in TABLE_METRICS
    }
    previous = None
    for m, r in rows:
        label = method_label(m) if m is not previous else ""
        previous = m
        cells = [Text(label), Text(r.score)]
        cells += [_cell(r.metrics.get(k), best[k], percent=True) for k in TABLE_METRICS]
        table.add_row(*cells, _speed(m, r.score))
    return table


def _mean(stat: Stat | None) -> float | None:
    """A statistic's mean, or None for a metric the row does not hold (shown as n/a)."""
    return None if stat is None else stat.mean


def means_table(report: Report) -> Table:
    """Near-OOD and far-OOD means (AUROC, FPR@95TPR), a row per method × score."""
    from dismax_cli.render import _cell, _table, best_value, method_label, metric_header

    groups = [g for g, labels in report.ood_groups.items() if labels]
    keys = ("AUROC", "FPR@95TPR")
    headers = [f"{g} {metric_header(k)}" for g in groups for k in keys]
    table = _table("method", "score", *headers, right_from=2)
    rows = _means_rows(report, groups)
    columns = [(i, k) for i in range(len(groups)) for k in keys]
    best = {
        (i, k): best_value(
            [_mean(rs[i].metrics.get(k)) for _, _, rs in rows if rs[i] is not None],
            METRICS[k].higher_is_better,
        )
        for i, k in columns
    }
    previous = None
    for m, score, results in rows:
        label = method_label(m) if m is not previous else ""
        previous = m
        cells = [Text(label), Text(score)]
        for i, k in columns:
            stat = None if results[i] is None else results[i].metrics.get(k)
            cells.append(_cell(stat, best[(i, k)], percent=True))
        table.add_row(*cells)
    return table


def _means_rows(
    report: Report, groups: list[str]
) -> list[tuple[MethodResult, str, list[OODResult | None]]]:
    """``(method, score, [its mean row of each group, or None])`` in the scores table's order."""
    rows = []
    for m in report.methods:
        by = {(r.ood, r.score): r for r in m.ood_means}
        scores = [r.score for r in _rows(report, [x for x in m.ood_means if x.ood == groups[0]], m)]
        rows += [(m, s, [by.get((g, s)) for g in groups]) for s in scores]
    return rows


def means_title(report: Report) -> str:
    """The line above the means table: which sets each mean averages."""
    parts = [f"{g}: {', '.join(labels)}" for g, labels in report.ood_groups.items() if labels]
    return f"OOD means, unweighted over sets (%; {'; '.join(parts)})"


def na_lines(report: Report) -> list[str]:
    """One line per method with requested scores that do not apply, and the reason."""
    from dismax_cli.render import method_label

    lines = []
    for m in report.methods:
        by_reason: dict[str, list[str]] = {}
        for score, reason in m.not_applicable.items():
            by_reason.setdefault(reason, []).append(score)
        for reason, scores in by_reason.items():
            verb = "does" if len(scores) == 1 else "do"
            lines.append(f"{method_label(m)}: {', '.join(scores)} {verb} not apply: {reason}")
    return lines


__all__ = ["means_table", "means_title", "na_lines", "requested_scores", "scores_table"]
