"""Do a report's fields agree with each other? The checks after :mod:`dismax_cli.report_values`.

:mod:`dismax_cli.report_values` checks that each value is one dismax can write; this module
checks that the values agree, so an edited or damaged report is refused in one line (the JSON
path of the bad value and what would be consistent) before a table is printed or a file is
written, instead of showing numbers that contradict each other (README "Design notes"):

* counts: one value per seed in every statistic of a method (METHOD.md §6: mean ± sample std
  over seeds), one run per seed and ensemble member, one reliability entry per seed (each seed
  once, a seed of the method), reliability bins counting the ID test set, every OOD row's
  ``n_id`` the method's and ``n_ood`` its set's size (a group's: the sum of its sets'), the
  method's ``n_id`` the ID test set's size, the ID sets' class counts equal;
* statistics: a std the sample std (ddof = 1) of the values (a single value: 0 or null), a
  ``vs_baseline`` value the method's mean minus the baseline's, an ``intervals`` value the
  metric's mean;
* references: ``kind`` matching the body (a ``score`` report names its checkpoint and lists
  no training set; a ``benchmark`` report the reverse), a default-score row for every OOD set
  of every method, OOD rows naming the report's OOD sets, ``ood_groups`` naming them and
  ``ood_means`` naming the groups, no row for a score marked not applicable, a per-sample seed
  that a method ran, ``efficiency`` the throughput over SoftMax's at the same seed.

Arithmetic on the parsed JSON only (no torch): ``dismax show`` stays fast. Input is report JSON
already checked by :mod:`dismax_cli.report_checks` (types) and :mod:`dismax_cli.report_values`
(ranges), ``*_null_reason`` keys stripped; a null is "no value" and is never compared.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from dismax_cli.errors import quote_value as q
from dismax_cli.report_values import Damaged

#: Relative tolerance of a recomputed sample std (``statistics.stdev`` is exact to the last bit
#: or so; a report written by another tool may sum differently).
STD_TOLERANCE = 1e-9
#: Absolute tolerance (fractions) of two values computed along different paths: an interval's
#: value and the metric's mean, a difference and the two means (far below a table's 0.01 %).
VALUE_TOLERANCE = 1e-6
#: The kinds of report dismax writes.
KINDS = ("benchmark", "score")
BASELINE = "softmax"


def check_report_consistency(data: dict[str, Any]) -> None:
    """Check that the fields of value-checked report JSON ``data`` agree (reasons stripped).

    Raises:
        Damaged: naming the first inconsistent value by its JSON path and what would agree.
    """
    _check_kind(data)
    sets: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, d in enumerate(data["datasets"]):
        if d["role"] == "ood" and d["name"] in sets:
            raise Damaged(f"datasets[{i}] is OOD set {q(d['name'])} again (datasets"
                          f"[{sets[d['name']][0]}]): each OOD set is listed once")  # fmt: skip
        if d["role"] == "ood":
            sets[d["name"]] = (i, d)
    groups = data.get("ood_groups") or {}
    for group, labels in groups.items():
        for k, label in enumerate(labels):
            if label not in sets:
                raise Damaged(f"ood_groups.{group}[{k}] is {q(label)}, which is not an OOD set "
                              f"of this report ({_names(sets)})")  # fmt: skip
    _check_id_sets(data)
    methods = {m["method"]: m for m in data["methods"]}
    for i, m in enumerate(data["methods"]):  # every method's own counts before comparing two
        _check_counts(m, f"methods[{i}]", data)
    # FPR@95TPR intervals of an openood report: builds before 2026-12-01 computed them by our
    # rule (evidence.seed_mean_distribution), so their value need not be the metric's mean.
    loose = {"FPR@95TPR"} if data["config"].get("fpr_convention") == "openood" else set()
    for i, m in enumerate(data["methods"]):
        at = f"methods[{i}]"
        _check_rows(m, at, sets, groups, bool(data["datasets"]), loose)
        _check_differences(m, at, methods)
        _check_efficiency(m, at, methods.get(BASELINE))
    if data.get("per_sample") and "seed" in data["per_sample"]:
        seed = data["per_sample"]["seed"]
        ran = sorted({s for m in data["methods"] for s in m["seeds"]})
        if seed not in ran:
            raise Damaged(f"per_sample.seed is {q(seed)}, a seed no method ran (they ran "
                          f"{', '.join(map(str, ran))})")  # fmt: skip


def _names(sets: dict[str, Any]) -> str:
    return ", ".join(sets) if sets else "it lists none"


def _check_kind(data: dict[str, Any]) -> None:
    """``kind`` against the body: a score report (``dismax score``) names its checkpoint in
    ``config`` and holds one method and no training set; a benchmark report the reverse."""
    kind = data["kind"]
    if kind not in KINDS:
        raise Damaged(f"kind is {q(kind)}, expected 'benchmark' or 'score'")
    trained = [f"datasets[{i}] has role {q(d['role'])}" for i, d in enumerate(data["datasets"])
               if d["role"] in ("train", "val")]  # fmt: skip
    benchmark = trained + (["config.methods is set"] if "methods" in data["config"] else [])
    if len(data["methods"]) > 1:
        benchmark.append(f"it holds {len(data['methods'])} methods")
    score = ["config.checkpoint is set"] if "checkpoint" in data["config"] else []
    if kind == "score" and (benchmark or not score):
        why = benchmark[0] if benchmark else "config.checkpoint is missing"
        raise Damaged(f"kind is 'score', but the body is a benchmark report's ({why}): kind "
                      "'benchmark' would match it")  # fmt: skip
    if kind == "benchmark" and score:
        raise Damaged(f"kind is 'benchmark', but the body is a score report's ({score[0]}): "
                      "kind 'score' would match it")  # fmt: skip


def _check_id_sets(data: dict[str, Any]) -> None:
    """The ID sets (train, val, test) have one class count; the methods' ``n_id`` the test's."""
    ids = [(i, d) for i, d in enumerate(data["datasets"]) if d["role"] in ("train", "val", "test")]
    for i, d in ids[1:]:
        first, ref = ids[0]
        if d["num_classes"] != ref["num_classes"]:
            raise Damaged(f"datasets[{i}].num_classes is {d['num_classes']}, but datasets"
                          f"[{first}].num_classes is {ref['num_classes']}: the ID sets share "
                          "their classes")  # fmt: skip
    tests = [(i, d) for i, d in ids if d["role"] == "test"]
    for j, m in enumerate(data["methods"]):
        for i, d in tests[:1]:
            if m["n_id"] != d["n"]:
                raise Damaged(f"methods[{j}].n_id is {m['n_id']}, but the ID test set has "
                              f"{d['n']} images (datasets[{i}].n)")  # fmt: skip


def _stats(m: dict[str, Any], at: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Every statistic over seeds of method ``m`` (``at`` is its path), with its path."""
    yield m["temperature"], f"{at}.temperature"
    for key in ("id_before", "id_after", "score_efficiency"):
        for name, stat in (m.get(key) or {}).items():
            if stat is not None:
                yield stat, f"{at}.{key}.{name}"
    for key in ("throughput_per_s", "efficiency", "train_s"):
        if m.get(key) is not None:
            yield m[key], f"{at}.{key}"
    for key in ("ood", "ood_means"):
        for j, r in enumerate(m.get(key) or []):
            for name, stat in r["metrics"].items():
                if stat is not None:
                    yield stat, f"{at}.{key}[{j}].metrics.{name}"


def _check_counts(m: dict[str, Any], at: str, data: dict[str, Any]) -> None:
    """One value per seed, one run per seed and member, one reliability entry per seed."""
    seeds = m["seeds"]
    n = len(seeds)
    for stat, where in _stats(m, at):
        if len(stat["values"]) != n:
            raise Damaged(f"{where}.values has {len(stat['values'])} value(s), but {at}.seeds "
                          f"lists {n} seed(s): one value per seed")  # fmt: skip
        _check_std(stat, where)
    members = m.get("members", 1)
    if len(m["runs"]) != n * members:
        raise Damaged(f"{at}.runs lists {len(m['runs'])} run(s), but {n} seed(s) x {members} "
                      f"member(s) make {n * members}: one run per seed and member")  # fmt: skip
    reliability = m.get("reliability") or []
    if reliability and len(reliability) != n:
        raise Damaged(f"{at}.reliability has {len(reliability)} entries, but {at}.seeds lists "
                      f"{n} seed(s): one entry per seed")  # fmt: skip
    seen: set[int] = set()
    for j, r in enumerate(reliability):
        where = f"{at}.reliability[{j}]"
        if r["seed"] in seen:
            raise Damaged(f"{where}.seed is {r['seed']} again: each seed once")
        if r["seed"] not in seeds:
            raise Damaged(f"{where}.seed is {r['seed']}, which {at}.seeds does not list "
                          f"({', '.join(map(str, seeds))})")  # fmt: skip
        seen.add(r["seed"])
        t = m["temperature"]["values"][seeds.index(r["seed"])]
        if t is not None and not _close(r["temperature"], t, STD_TOLERANCE * abs(t)):
            raise Damaged(f"{where}.temperature is {q(r['temperature'])}, but seed "
                          f"{r['seed']}'s temperature is {q(t)} ({at}.temperature.values)")
        for part in ("before", "after"):
            _check_bins(r[part], f"{where}.{part}", m["n_id"], f"{at}.n_id")


def _check_bins(bins: list[dict[str, Any]], at: str, n_id: int, n_at: str) -> None:
    """Reliability bins count the ID test set; an empty bin has no accuracy or confidence."""
    total = sum(b["count"] for b in bins)
    if bins and total != n_id:
        raise Damaged(f"{at} counts {total} images in its bins, but {n_at} is {n_id}: the bins "
                      "count every ID test image once")  # fmt: skip
    for k, b in enumerate(bins):
        for key in ("accuracy", "confidence"):
            if (b["count"] == 0) != (b[key] is None):
                want = "null (an empty bin)" if b["count"] == 0 else "a number"
                raise Damaged(f"{at}[{k}].{key} is {q(b[key])} with count {b['count']}: "
                              f"expected {want}")  # fmt: skip


def _check_std(stat: dict[str, Any], at: str) -> None:
    """``std`` is the sample std (ddof = 1) of ``values``; one value: 0 or null (METHOD.md §6)."""
    values, std = stat["values"], stat["std"]
    if std is None or any(v is None for v in values):
        if std is None and len(values) > 1 and all(v is not None for v in values):
            raise Damaged(f"{at}.std is null, but its {len(values)} values have a sample std "
                          f"({_stdev(values):.6g})")  # fmt: skip
        return
    if len(values) == 1:
        if std != 0:
            raise Damaged(f"{at}.std is {q(std)}, but one value has std 0 (or null)")
        return
    expected = _stdev(values)
    if not math.isfinite(expected):
        return  # values near 1e308: no float std to compare with
    scale = max(abs(v) for v in values)
    if not _close(std, expected, STD_TOLERANCE * expected + 1e-15 * scale):
        raise Damaged(f"{at}.std is {q(std)}, but the sample std (ddof = 1) of its values is "
                      f"{expected:.6g}")  # fmt: skip


def _stdev(values: list[float]) -> float:
    """The sample std (ddof = 1) of two or more values, in floats (``statistics.stdev`` is
    exact but ten times slower); ``inf`` where the squares overflow (values near 1e308)."""
    try:
        mean = math.fsum(v / len(values) for v in values)
        return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
    except (OverflowError, ValueError):
        return math.inf


def _close(a: float, b: float, tolerance: float) -> bool:
    return abs(a - b) <= tolerance


def _check_rows(
    m: dict[str, Any], at: str, sets: dict[str, tuple[int, dict[str, Any]]],
    groups: dict[str, list[str]], listed_sets: bool, loose: set[str],
) -> None:
    """OOD rows: their sets, sizes and intervals; a default-score row for every OOD set
    (``listed_sets``: the report lists datasets; handmade ones may list none)."""
    n_ood = {name: d["n"] for name, (_, d) in sets.items()}
    n_ood.update({g: sum(n_ood[s] for s in labels) for g, labels in groups.items()})
    excluded = set(m.get("not_applicable") or {})
    listed = {"ood": bool(listed_sets), "ood_means": True}
    for key, known in (("ood", sets), ("ood_means", groups)):
        for j, r in enumerate(m.get(key) or []):
            where = f"{at}.{key}[{j}]"
            if r["ood"] not in known and not listed[key]:
                continue  # a report listing no datasets: nothing to compare with
            if r["ood"] not in known:
                what = "OOD set" if key == "ood" else "OOD group (ood_groups)"
                raise Damaged(f"{where}.ood is {q(r['ood'])}, which is not an {what} of this "
                              f"report ({_names(known)})")  # fmt: skip
            if r["n_id"] != m["n_id"]:
                raise Damaged(f"{where}.n_id is {r['n_id']}, but {at}.n_id is {m['n_id']}")
            if r["ood"] in n_ood and r["n_ood"] != n_ood[r["ood"]]:
                raise Damaged(f"{where}.n_ood is {r['n_ood']}, but OOD {q(r['ood'])} has "
                              f"{n_ood[r['ood']]} images")  # fmt: skip
            if r["score"] in excluded:
                raise Damaged(f"{where}.score is {q(r['score'])}, which {at}.not_applicable "
                              "marks as not applicable to this method")  # fmt: skip
            _check_intervals(r, where, loose)
    held = {r["ood"] for r in m["ood"] if r["score"] == m["default_score"]}
    for name, (i, _) in sets.items():
        if name not in held:
            raise Damaged(f"{at}.ood has no row for OOD set {q(name)} (datasets[{i}]) with "
                          f"the default score {q(m['default_score'])}: every OOD set has one")


def _check_intervals(r: dict[str, Any], at: str, loose: set[str]) -> None:
    """An ``intervals`` value is the metric's mean (METHOD.md §6: bootstrap of the seed mean).

    A value outside ``[low, high]`` is not damage: a percentile interval may miss the
    full-sample value (``evidence._interval``); ``low > high`` is refused by report_checks.
    Metrics in ``loose`` are not compared (older openood reports, see the caller).
    """
    for name, v in (r.get("intervals") or {}).items():
        if name in loose:
            continue
        slack = VALUE_TOLERANCE * max(1.0, abs(v["value"]))
        mean = (r["metrics"].get(name) or {}).get("mean")  # older rows: a metric less
        if mean is not None and not _close(v["value"], mean, slack):
            raise Damaged(f"{at}.intervals.{name}.value is {q(v['value'])}, but the metric's "
                          f"mean is {mean:.6g} ({at}.metrics.{name}.mean)")  # fmt: skip


def _check_differences(m: dict[str, Any], at: str, methods: dict[str, dict[str, Any]]) -> None:
    """A row's ``vs_baseline`` names a method of the report; each difference is the row's
    mean minus the baseline's (its default score on the same OOD set)."""
    for j, r in enumerate(m["ood"]):
        where = f"{at}.ood[{j}]"
        diffs, baseline = r.get("vs_baseline") or {}, r.get("baseline")
        if not diffs:
            continue
        if baseline not in methods:
            raise Damaged(f"{where}.baseline is {q(baseline)}, which is not a method of this "
                          f"report ({', '.join(methods)}): vs_baseline needs one")  # fmt: skip
        b = methods[baseline]
        row = next((x for x in b["ood"] if x["ood"] == r["ood"]
                    and x["score"] == b["default_score"]), None)  # fmt: skip
        for name, v in diffs.items():
            mine = (r["metrics"].get(name) or {}).get("mean")
            theirs = ((row or {}).get("metrics", {}).get(name) or {}).get("mean")
            if mine is None or theirs is None:
                continue
            slack = VALUE_TOLERANCE * max(1.0, abs(mine), abs(theirs))
            if not _close(v["value"], mine - theirs, slack):
                raise Damaged(f"{where}.vs_baseline.{name}.value is {q(v['value'])}, but the "
                              f"means differ by {mine - theirs:.6g} (this row's minus the "
                              f"baseline {q(baseline)}'s row's)")  # fmt: skip


def _check_efficiency(m: dict[str, Any], at: str, base: dict[str, Any] | None) -> None:
    """``efficiency`` is the throughput over SoftMax's at the same seed (when both are there)."""
    mine, theirs = m.get("efficiency"), (base or {}).get("throughput_per_s")
    if mine is None or theirs is None or m.get("throughput_per_s") is None:
        return
    if base is None or base["seeds"] != m["seeds"]:
        return
    pairs = zip(mine["values"], m["throughput_per_s"]["values"], theirs["values"], strict=True)
    for k, (e, t, s) in enumerate(pairs):
        if None in (e, t, s) or s == 0:
            continue
        if not _close(e, t / s, STD_TOLERANCE * max(1.0, abs(t / s))):
            raise Damaged(f"{at}.efficiency.values[{k}] is {q(e)}, but the throughput over "
                          f"SoftMax's at that seed is {t / s:.6g}")  # fmt: skip


__all__ = ["KINDS", "STD_TOLERANCE", "VALUE_TOLERANCE", "check_report_consistency"]
