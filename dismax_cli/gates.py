"""``--require`` gates and ``--ood`` labels: parsed and checked without torch.

The CLI checks them while it starts (a malformed gate or label is a usage error that answers in
well under a second: ``benchmarks/speed/cli_startup.py``); the benchmark checks them again
against the run's final method and set names and evaluates them on the report.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from dismax_cli.config import InvalidValueError
from dismax_cli.core.metric_table import keys
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q
from dismax_cli.numbers import parse_decimal
from dismax_cli.reports import METRICS, Report, RequirementResult
from dismax_cli.score_names import ALL_SCORES

_LABEL = re.compile(r"^([A-Za-z_][\w.\-]*)=(.+)$")


def split_label(entry: str) -> tuple[str, str]:
    """Split ``"tin_resize=npz:tin.npz"`` into ``("tin_resize", "npz:tin.npz")``.

    Entries without a label give ``(entry, entry)``.

    A label names an OOD set in tables, JSON and ``--require``.
    """
    match = _LABEL.match(entry)
    return (match.group(1), match.group(2)) if match else (entry, entry)


def check_ood_labels(entries: Sequence[str]) -> list[str]:
    """The labels of OOD entries; refuses duplicates and the reserved label ``id``.

    Raises:
        DismaxError: naming the offending entry.
    """
    if not entries:
        raise InvalidValueError("ood", "no OOD sets given: name at least one with --ood")
    labels = [split_label(entry)[0] for entry in entries]
    for entry, label in zip(entries, labels, strict=True):
        if label == "id":
            raise InvalidValueError(
                "ood",
                f"OOD set {q(entry)} is named 'id', which --require reserves for the "
                "in-distribution test split: label it otherwise, e.g. ood1=SPEC",
            )
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise InvalidValueError(
            "ood",
            f"OOD sets {q(list(entries))} use the name {q(duplicates[0])} twice: list each set "
            "once or label them apart with NAME=SPEC",
        )
    return labels


# --------------------------------------------------------------------------- requirements

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}


@dataclass(frozen=True)
class Requirement:
    """``METHOD[/SCORE]:METRIC:SET OP VALUE``, e.g. ``dismax:AUROC:tin_resize>=0.90``.

    SET is an OOD set of the run, ``near`` / ``far`` (the means of an ``--ood-preset``), or
    ``id`` for the ID metrics of the metric table (ACC, ECE, NLL, BRIER, AURC, ...) on the ID
    test split after calibration. SCORE (``softmax/odin``) names the score judged; without it
    the method's default score is. A metric missing from an older report fails the check with
    a clear message.

    ``exact`` is VALUE as written (a :class:`~decimal.Decimal`): the check compares it with the
    metric's shortest decimal spelling, so ``AUROC>0.99999999999999999999`` (a float threshold
    of 1.0) still passes for an AUROC of 1 (README "Design notes").
    """

    text: str
    method: str
    metric: str
    dataset: str
    op: str
    threshold: float
    score: str | None = None
    exact: Decimal | None = None

    def check(self, report: Report) -> tuple[bool, float]:
        result = report.method(self.method)
        if self.dataset == "id":
            stat = result.id_after.get(self.metric)
        elif self.dataset in report.ood_groups:
            wanted = self.score or result.default_score
            rows = [r for r in result.ood_means if r.ood == self.dataset and r.score == wanted]
            if not rows:
                return False, float("nan")
            stat = rows[0].metrics.get(self.metric)
        else:
            stat = result.result(self.dataset, self.score).metrics.get(self.metric)
        if stat is None:
            raise DismaxError(
                f"requirement {q(self.text)}: this report holds no {self.metric} (it was written "
                "before dismax reported it): rerun the benchmark"
            )
        return _passes(stat.mean, self.op, self.threshold, self.exact), stat.mean


def _passes(value: float, op: str, threshold: float, exact: Decimal | None) -> bool:
    """``value OP threshold``, with the threshold as written when known (``exact``)."""
    if exact is None or not math.isfinite(value):  # NaN fails every comparison
        return _OPS[op](value, threshold)
    return _OPS[op](Decimal(repr(float(value))), exact)


# SET holds no operator character, so ``uniform=>0.5`` is not read as SET 'uniform='.
_REQUIREMENT_TEXT = re.compile(
    r"^\s*([^:\s]+)\s*:\s*([^:\s]+)\s*:\s*([^<>=!\s][^<>=!]*?)\s*"
    r"(>=|<=|==|>|<)\s*([^<>=!\s]\S*)\s*$"
)


def parse_requirements(
    texts: Sequence[str],
    *,
    methods: Sequence[str] | None,
    ood: Sequence[str] | None,
    scores: Mapping[str, Sequence[str]] | None = None,
    groups: Sequence[str] = (),
    rows: Mapping[str, str] | None = None,
) -> list[Requirement]:
    """Parse and check ``--require`` strings against the run's methods, metrics and sets.

    ``methods=None`` / ``ood=None`` / ``scores=None`` skip the check of that part (the CLI's
    torch-free early check, before the run's names are final); the benchmark checks again with
    all. ``scores`` maps each method to the scores its rows hold (``METHOD/SCORE``);
    ``groups`` are the mean groups a SET may name (``near``, ``far`` with a preset).
    ``rows`` maps each method to its row label in this run (``DisMax (no FPR)``): a METHOD
    that is not in the run but names the same row by its own label is read as that method,
    so under ``--no-fpr`` both ``dismax`` and ``dismax_nofpr`` name the DisMax row.

    Raises:
        InvalidValueError: for malformed text or an unknown method, metric or set.
    """
    # Method names, like metrics, match case-insensitively (``DisMax`` is ``dismax``).
    method_keys = {m.lower(): m for m in methods} if methods is not None else None
    out = []
    for text in texts:
        method, metric, dataset, op, value = _split_requirement(text)
        method, _, score = method.partition("/")
        if _ and not score:
            raise InvalidValueError(
                "require",
                f"requirement {q(text)} names no score after '/': write METHOD/SCORE, e.g. "
                "softmax/odin:AUROC:uniform>=0.9",
            )
        method = _resolve_method(text, method, method_keys, rows)
        _check_score(text, method, score, (metric, dataset), scores)
        key = _metric_key(text, metric)
        _check_set(text, key, method, dataset, ood, groups)
        threshold = _threshold(text, value)
        exact = Decimal(value.strip())  # the decimal as written (DECIMAL grammar)
        _check_threshold(text, key, exact)
        _check_possible(text, key, op, exact)
        out.append(
            Requirement(text, method, key, dataset, op, threshold, score or None, exact)
        )
    return out


def _split_requirement(text: str) -> tuple[str, str, str, str, str]:
    """``(METHOD[/SCORE], METRIC, SET, OP, VALUE)`` of ``text``; refuses malformed text."""
    match = _REQUIREMENT_TEXT.match(text)
    if match:
        return match.groups()  # type: ignore[return-value]
    missing = _missing_part(text)
    if missing:
        raise InvalidValueError(
            "require",
            f"requirement {q(text)} has no {missing}: write METHOD:METRIC:SET>=VALUE, e.g. "
            "dismax:AUROC:uniform>=0.9",
        )
    bad_op = re.search(r"=>|=<|=!|!=|<>|=(?![=<>])|>>|<<", text.split(":", 2)[-1])
    if bad_op and re.search(r"[<>=!]", text):
        raise InvalidValueError(
            "require",
            f"requirement {q(text)}: {bad_op.group(0)!s} is not an operator: use one of "
            ">=, <=, >, < or == (e.g. dismax:AUROC:uniform>=0.9)",
        )
    raise InvalidValueError(
        "require",
        f"requirement {q(text)} is malformed: write METHOD:METRIC:SET>=VALUE, e.g. "
        "dismax:AUROC:uniform>=0.9",
    )


def _missing_part(text: str) -> str | None:
    """Which part of a ``METHOD:METRIC:SET OP VALUE`` requirement is empty, or None."""
    parts = text.split(":", 2)
    if len(parts) < 3:
        return None
    names = ("method", "metric")
    for name, part in zip(names, parts[:2], strict=True):
        if not part.strip():
            return f"{name} before its ':'"
    rest = parts[2].strip()
    if not rest or rest[0] in "<>=!":
        return "set before the comparison (SET is the OOD set or 'id')"
    if not re.search(r"[<>=!]", rest):
        return "comparison (>=, <=, >, < or == and a number) after the set"
    if rest[-1] in "<>=!":
        return "number after the comparison"
    return None


def _resolve_method(
    text: str, method: str, method_keys: dict[str, str] | None, rows: Mapping[str, str] | None
) -> str:
    """The run's spelling of ``method`` (case-insensitive), or the run's method whose row
    ``method`` names by its own label (``rows``); unchecked without ``method_keys``."""
    if method_keys is None:
        return method
    same_row = _same_row(method, rows or {})
    if method.lower() not in method_keys and same_row is not None:
        return same_row
    if method.lower() not in method_keys:
        raise InvalidValueError(
            "require",
            f"requirement {q(text)} names method {q(method)}, which this run does not "
            f"have: use one of {', '.join(method_keys.values())}",
        )
    return method_keys[method.lower()]


def _same_row(method: str, rows: Mapping[str, str]) -> str | None:
    """The method of ``rows`` whose row label is ``method``'s own (a single-model method at
    its default FPR setting: ``dismax_nofpr`` -> ``DisMax (no FPR)``), else None."""
    from dismax_cli.core.methods import get_method, list_methods

    if method.lower() not in list_methods():
        return None
    spec = get_method(method.lower())
    if not spec.trains_one_model:
        return None
    label = spec.row_label(uses_fpr=spec.uses_fpr)
    return next((m for m, row in rows.items() if row == label), None)


def _check_score(
    text: str,
    method: str,
    score: str,
    metric_set: tuple[str, str],
    scores: Mapping[str, Sequence[str]] | None,
) -> None:
    """Refuse a SCORE the method's rows do not hold, and any SCORE on the 'id' metrics."""
    metric, dataset = metric_set
    if score and score.lower() not in ALL_SCORES and score not in _plugin_scores(scores):
        raise InvalidValueError(
            "require",
            f"requirement {q(text)} names {q(score)}, which is no OOD score: write METHOD/SCORE "
            f"with SCORE one of {', '.join(ALL_SCORES)}",
        )
    if score and scores is not None and score not in scores.get(method, ()):
        raise InvalidValueError(
            "require",
            f"requirement {q(text)} names score {q(score)}, which method {q(method)} does not "
            f"have in this run: add it with --scores {score}, or use one of "
            f"{', '.join(scores.get(method, ()))}",
        )
    if score and dataset == "id":
        raise InvalidValueError(
            "require",
            f"requirement {q(text)}: the 'id' metrics do not depend on a score; write "
            f"{method}:{metric}:id...",
        )


def _plugin_scores(scores: Mapping[str, Sequence[str]] | None) -> set[str]:
    """Every score some method of the run holds (a plug-in method may bring its own)."""
    return {name for names in (scores or {}).values() for name in names}


def _metric_key(text: str, metric: str) -> str:
    """The metric table's key of ``metric`` (case-insensitive)."""
    key = {k.upper(): k for k in METRICS}.get(metric.upper())
    if key is None:
        raise InvalidValueError(
            "require",
            f"requirement {q(text)} names unknown metric {q(metric)}: use one of "
            f"{', '.join(METRICS)}",
        )
    return key


def _check_set(
    text: str,
    key: str,
    method: str,
    dataset: str,
    ood: Sequence[str] | None,
    groups: Sequence[str],
) -> None:
    """An ID metric takes SET 'id'; an OOD metric an OOD set (or mean group) of the run."""
    if METRICS[key].kind == "id":
        if dataset != "id":
            raise InvalidValueError(
                "require",
                f"requirement {q(text)}: {key} is an in-distribution metric, write its set as "
                f"'id' (e.g. {method}:{key}:id>=0.9)",
            )
    elif dataset == "id":
        sets = f" ({', '.join(ood)})" if ood is not None else ""
        raise InvalidValueError(
            "require",
            f"requirement {q(text)}: {key} is an OOD metric, not an 'id' metric: name an "
            f"OOD set of the run{sets}; 'id' takes {', '.join(keys('id'))}",
        )
    elif ood is not None and dataset not in ood and dataset not in groups:
        raise InvalidValueError(
            "require",
            f"requirement {q(text)} names OOD set {q(dataset)}, which this run does not have: "
            f"use one of {', '.join(ood)}",
        )


def _threshold(text: str, value: str) -> float:
    """The finite float of VALUE, written in ASCII (``float`` takes '٠.5' and '1_0' too)."""
    threshold = parse_decimal(value)  # one grammar with the environment's numbers
    if threshold is None:
        raise InvalidValueError(
            "require",
            f"requirement {q(text)} has threshold {q(value)}, which is not a number: write it "
            "in plain decimals, e.g. 0.9",
        )
    if not math.isfinite(threshold):
        raise InvalidValueError(
            "require",
            f"requirement {q(text)} has threshold {q(value)}, which is too large to compare "
            "(beyond 1.8e308): write a threshold in the metric's range",
        )
    return threshold


def _check_threshold(text: str, key: str, threshold: Decimal) -> None:
    """Refuse a threshold outside the metric's range (from the metric table's unit), the
    decimal as written compared, not its float (``1.00000000000000000001`` is above 1)."""
    bounds = METRICS[key].bounds
    if bounds is None:  # unbounded above (the NLL, in nats), never below 0
        if threshold < 0:
            raise InvalidValueError(
                "require",
                f"requirement {q(text)}: {key} is at least 0 ({METRICS[key].description}), so "
                "write a threshold of 0 or more",
            )
        return
    low, high = bounds
    if not Decimal(low) <= threshold <= Decimal(high):
        if METRICS[key].percent:
            raise InvalidValueError(
                "require",
                f"requirement {q(text)}: {key} is a fraction in [0, 1], so write the threshold "
                f"as one (e.g. 0.9 for 90 %)",
            )
        raise InvalidValueError(
            "require",
            f"requirement {q(text)}: {key} lies in [{low:g}, {high:g}], so write a threshold "
            "in that range",
        )


def _check_possible(text: str, key: str, op: str, threshold: Decimal) -> None:
    """Refuse a gate no value of the metric can pass: ``> high`` or ``< low`` of its range
    (the metric table's unit; ``AUROC>1``, ``ECE<0``, ``NLL<0``), so it answers before any
    training instead of failing after it (exit 2). The threshold is the decimal as written:
    ``AUROC>0.99999999999999999999`` is below 1, so it is kept (its float would be 1.0).

    Raises:
        InvalidValueError: naming the gate, the metric's range and a gate that can pass.
    """
    low, high = METRICS[key].bounds or (0.0, math.inf)
    if op == ">" and math.isfinite(high) and threshold >= Decimal(high):
        edge, fix = f"at most {high:g}", f">={high:g} or a threshold below {high:g}"
    elif op == "<" and threshold <= Decimal(low):
        edge, fix = f"at least {low:g}", f"<={low:g} or a threshold above {low:g}"
    else:
        return
    raise InvalidValueError(
        "require",
        f"requirement {q(text)} can never pass: {key} is {edge}; write {fix}",
    )


def check_requirements(report: Report, texts: Sequence[str]) -> Report:
    """Evaluate ``--require`` texts against ``report``; return it with the results attached."""
    methods = [m.method for m in report.methods]
    scores = {m.method: list(dict.fromkeys(r.score for r in m.ood)) for m in report.methods}
    results = []
    rows = {m.method: m.label for m in report.methods if m.label}
    for req in parse_requirements(
        texts, methods=methods, ood=report.ood_sets, scores=scores, groups=report.ood_groups,
        rows=rows,
    ):  # fmt: skip
        ok, value = req.check(report)
        results.append(RequirementResult(text=req.text, passed=bool(ok), value=float(value)))
    return dataclasses.replace(report, requirements=tuple(results))



def measured_text(value: float | None, passed: bool) -> str:
    """A gate's measured value as messages show it: four decimals when it passed; when it
    failed, every digit (``repr``), so that a failed ``==0.7051`` never reads "measured 0.7051"."""
    if value is None:
        return "none"
    return f"{value:.4f}" if passed else repr(float(value))


__all__ = [
    "Requirement",
    "measured_text",
    "check_ood_labels",
    "check_requirements",
    "parse_requirements",
    "split_label",
]
