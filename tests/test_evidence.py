"""Issue 16 wiring: bootstrap intervals, paired differences and reliability bins in a report,
the per-sample npz beside it, and how tables show them (METHOD.md §5; bootstrap: Efron and
Tibshirani 1993)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dismax_cli.config import InvalidValueError
from dismax_cli.core import metrics
from dismax_cli.core.bootstrap import paired_bootstrap_difference, resample_indices
from dismax_cli.errors import DismaxError
from dismax_cli.evaluation import Outputs
from dismax_cli.evidence import (
    Evidence,
    check_bootstrap,
    load_report_samples,
    samples_path,
    write_per_sample,
)
from dismax_cli.reports import (
    DatasetRecord,
    MethodResult,
    OODResult,
    Report,
    Stat,
    from_dict,
    from_json,
    to_dict,
    to_json,
)

N_ID, N_OOD, C = 60, 40, 3


def _outputs(rng: np.random.Generator, shift: float) -> tuple[Outputs, torch.Tensor]:
    targets = torch.as_tensor(rng.integers(0, C, N_ID))
    logits = torch.as_tensor(rng.normal(size=(N_ID, C)))
    logits[torch.arange(N_ID), targets] += 2.0
    id_scores = torch.as_tensor(rng.normal(shift, 1.0, N_ID))
    ood_scores = torch.as_tensor(rng.normal(0.0, 1.0, N_OOD))
    out = Outputs(logits, {"msp": id_scores}, {"far": {"msp": ood_scores}})
    return out, targets


def _result(method: str, ev: Evidence) -> MethodResult:
    """A MethodResult whose metrics are the seed means of the collected scores."""
    seeds = ev.records[method]
    values = {
        key: Stat.of([fn(s.id_scores, s.ood_scores["far"]) for s in seeds.values()])
        for key, fn in (
            ("AUROC", metrics.auroc), ("AUPR-IN", metrics.aupr_in),
            ("AUPR-OUT", metrics.aupr_out), ("FPR@95TPR", metrics.fpr_at_95_tpr),
            ("DETACC", metrics.detection_accuracy),
        )
    }  # fmt: skip
    stat = Stat.of([0.5] * len(seeds))
    return MethodResult(
        method=method, default_score="msp", seeds=tuple(seeds), runs=("r",), uses_fpr=False,
        temperature=Stat.of([s.temperature for s in seeds.values()]),
        id_before={"ACC": stat}, id_after={"ACC": stat}, n_id=N_ID,
        ood=(OODResult("far", "msp", N_ID, N_OOD, values),),
    )  # fmt: skip


def _collected(seeds: tuple[int, ...] = (0,)) -> tuple[Evidence, Report]:
    ev = Evidence()
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for method, shift in (("softmax", 1.0), ("dismax", 1.5)):
            out, targets = _outputs(rng, shift)
            ev.add(method, seed, out, 1.5 + seed, targets, "msp")
    # "copy" scores exactly what softmax scores.
    ev.records["copy"] = dict(ev.records["softmax"])
    methods = tuple(_result(m, ev) for m in ("softmax", "dismax", "copy"))
    far = DatasetRecord("ood", "far", "far", "test", N_OOD, (8, 8, 1), "0" * 64, "rng", True, 0)
    return ev, Report("benchmark", "0", "now", {}, {"device": "cpu"}, (far,), methods)


def test_intervals_contain_the_value_and_a_method_against_itself_is_zero() -> None:
    ev, report = _collected()
    done = ev.finish(report, bootstrap=400)
    soft, dis, copy = (m.result("far") for m in done.methods)
    for r, m in zip((soft, dis, copy), done.methods, strict=True):
        assert set(r.intervals) == {"AUROC", "AUPR-IN", "AUPR-OUT", "FPR@95TPR", "DETACC"}
        for key, interval in r.intervals.items():
            assert interval.value == pytest.approx(m.result("far").metrics[key].mean)
            assert interval.low <= interval.value <= interval.high
            assert interval.resamples == 400 and interval.level == 0.95
    assert soft.vs_baseline == {} and soft.baseline is None  # the baseline itself
    assert copy.baseline == "softmax"
    assert all(d.value == 0 and d.low == 0 and d.high == 0 for d in copy.vs_baseline.values())
    # The paired difference is the core's paired bootstrap on the same samples (one seed).
    a, b = ev.records["dismax"][0], ev.records["softmax"][0]
    core = paired_bootstrap_difference(
        "AUROC", a.id_scores, a.ood_scores["far"], b.id_scores, b.ood_scores["far"],
        resamples=400, seed=0,
    )  # fmt: skip
    got = dis.vs_baseline["AUROC"]
    assert (got.value, got.low, got.high) == pytest.approx((core.value, core.low, core.high))


def _auroc_loop(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    wins = sum((i > o) + 0.5 * (i == o) for i in id_scores for o in ood_scores)
    return wins / (len(id_scores) * len(ood_scores))


def test_with_several_seeds_the_interval_is_that_of_the_seed_mean() -> None:
    ev, report = _collected(seeds=(0, 1))
    r = ev.finish(report, bootstrap=50).methods[1].result("far")
    # Independent reference: the same resample indices for both seeds, AUROC by a double loop,
    # averaged over seeds per resample, then the 2.5 % and 97.5 % quantiles.
    id_idx, ood_idx = resample_indices(N_ID, N_OOD, resamples=50, seed=0)
    seeds = ev.records["dismax"]
    per_resample = [
        np.mean([_auroc_loop(s.id_scores[i], s.ood_scores["far"][o]) for s in seeds.values()])
        for i, o in zip(id_idx, ood_idx, strict=True)
    ]
    low, high = np.quantile(per_resample, [0.025, 0.975])
    assert (r.intervals["AUROC"].low, r.intervals["AUROC"].high) == pytest.approx((low, high))
    assert r.intervals["AUROC"].value == pytest.approx(
        np.mean([_auroc_loop(s.id_scores, s.ood_scores["far"]) for s in seeds.values()])
    )


def test_bootstrap_zero_skips_intervals_but_keeps_reliability_bins() -> None:
    ev, report = _collected()
    m = ev.finish(report, bootstrap=0).methods[1]
    assert m.result("far").intervals == {} and m.result("far").vs_baseline == {}
    (rel,) = m.reliability
    s = ev.records["dismax"][0]
    for stage, temperature in (("before", 1.0), ("after", s.temperature)):
        bins = rel[stage]
        assert len(bins) == 15 and sum(b["count"] for b in bins) == N_ID
        # Independent ECE: loops over samples with the equal-width rule of METHOD.md §5.
        z = s.logits / temperature
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        conf, pred = p.max(1), p.argmax(1)
        total = 0.0
        for b in range(15):
            lo, hi = b / 15, (b + 1) / 15
            inside = [k for k in range(N_ID) if (lo < conf[k] <= hi) or (b == 0 and conf[k] == 0)]
            assert bins[b]["count"] == len(inside)
            if inside:
                acc = np.mean([pred[k] == ev.targets[k] for k in inside])
                total += len(inside) / N_ID * abs(acc - np.mean(conf[inside]))
        got = sum(b["count"] / N_ID * abs(b["accuracy"] - b["confidence"]) for b in bins
                  if b["count"])  # fmt: skip
        assert got == pytest.approx(total)


def test_the_report_round_trips_through_json_and_damage_is_named() -> None:
    ev, report = _collected()
    done = dataclasses.replace(
        ev.finish(report, bootstrap=100), per_sample={"file": "r.samples.npz", "sha256": "ab"}
    )
    assert from_json(to_json(done)) == done
    data = to_dict(done)
    empty = [b for b in data["methods"][0]["reliability"][0]["after"] if b["count"] == 0]
    assert all("empty bin" in b["accuracy_null_reason"] for b in empty)
    data["methods"][1]["ood"][0]["intervals"]["AUROC"]["low"] = "x"
    with pytest.raises(DismaxError, match=r"methods\[1\]\.ood\[0\]\.intervals\.AUROC\.low"):
        from_dict(json.loads(json.dumps(data)))


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10", 100_001, None])
def test_a_bad_number_of_resamples_is_named(bad: object) -> None:
    with pytest.raises(InvalidValueError, match=r"bootstrap=.* is invalid: use an integer from 0"):
        check_bootstrap(bad)
    assert check_bootstrap(0) == 0


def test_per_sample_file_is_written_beside_the_report_and_checked(tmp_path: Path) -> None:
    ev, report = _collected()
    out = tmp_path / "run.json"
    named = write_per_sample(report, ev, out)
    assert named.per_sample["file"] == "run.samples.npz" == samples_path(out).name
    data = samples_path(out).read_bytes()
    import hashlib

    assert named.per_sample["sha256"] == hashlib.sha256(data).hexdigest()
    loaded = load_report_samples(named, out)
    np.testing.assert_array_equal(loaded.targets, ev.targets)
    np.testing.assert_array_equal(loaded.methods["dismax"].logits, ev.records["dismax"][0].logits)
    assert loaded.methods["dismax"].temperature == 1.5
    samples_path(out).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(DismaxError, match="changed since the report was written"):
        load_report_samples(named, out)
    with pytest.raises(DismaxError, match="names no per-sample file"):
        load_report_samples(report, out)


def _text(report: Report) -> str:
    from rich.console import Console

    from dismax_cli.render import report_renderable

    console = Console(width=80, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(report_renderable(report), crop=False)
    return console.export_text()


def test_tables_show_intervals_and_differences_within_80_columns() -> None:
    ev, report = _collected(seeds=(0, 1))
    done = ev.finish(report, bootstrap=100)
    text = _text(done)
    assert max(len(line) for line in text.splitlines()) <= 80
    r = done.methods[1].result("far")
    half = 100 * (r.intervals["AUROC"].high - r.intervals["AUROC"].low) / 2
    assert f"(±{half:.2f})" in text
    d = r.vs_baseline["AUROC"]
    assert f"{100 * d.value:+.2f}" in text and "far: minus SoftMax (points, paired)" in text
    assert "±" + f"{100 * r.metrics['AUROC'].std:.2f}" in text  # the seed spread, apart
    assert "half-width of the 95% bootstrap interval over test samples" in text
    assert "(±" not in _text(report)  # no intervals without --bootstrap


def test_the_html_page_shows_interval_bounds_and_differences() -> None:
    from dismax_cli.html_report import render_html

    ev, report = _collected()
    done = ev.finish(report, bootstrap=100)
    page = render_html(done)
    r = done.methods[1].result("far")
    i = r.intervals["FPR@95TPR"]
    assert f"[{100 * i.low:.2f}, {100 * i.high:.2f}]" in page
    d = r.vs_baseline["AUROC"]
    assert f"[{100 * d.low:+.2f}, {100 * d.high:+.2f}]" in page
    assert 'id="diff-table-0"' in page and 'id="reliability-table-1"' in page
