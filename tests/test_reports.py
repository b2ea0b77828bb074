"""Report JSON: every null carries a reason, the std estimator is named, round trips hold."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dismax_cli.benchmark import score_checkpoint
from dismax_cli.engine import TrainConfig, fit
from dismax_cli.reports import (
    MethodResult,
    OODResult,
    Report,
    RequirementResult,
    Stat,
    from_json,
    to_dict,
    to_json,
)

SUFFIX = "_null_reason"


def _holds_null(value: Any) -> bool:
    return value is None or (isinstance(value, list) and any(_holds_null(v) for v in value))


def nulls_without_reason(node: Any, path: str = "$") -> list[str]:
    """JSON paths of keys that are null (or lists holding null) without a non-empty reason."""
    bad: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            reason = node.get(key + SUFFIX)
            if _holds_null(value) and not (isinstance(reason, str) and reason.strip()):
                bad.append(f"{path}.{key}")
            bad += nulls_without_reason(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            bad += nulls_without_reason(value, f"{path}[{i}]")
    return bad


def count_nulls(node: Any) -> int:
    if node is None:
        return 1
    if isinstance(node, dict):
        return sum(count_nulls(v) for v in node.values())
    if isinstance(node, list):
        return sum(count_nulls(v) for v in node)
    return 0


@pytest.fixture(scope="module")
def score_report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """A real ``dismax score`` report of a one-epoch digits run (one seed, nothing timed)."""
    home = tmp_path_factory.mktemp("score")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISMAX_DATA_DIR", str(home / "data"))
        mp.setenv("DISMAX_OFFLINE", "1")
        config = TrainConfig(dataset="digits[0-5]", epochs=1, device="cpu")
        fit(config, home / "run")
        return score_checkpoint(home / "run", ["digits[6-9]", "uniform"], device="cpu")


def test_every_null_of_a_real_score_report_has_a_reason(score_report: Report) -> None:
    data = json.loads(to_json(score_report))
    assert count_nulls(data) >= 5  # one-seed stds, throughput, efficiency, calibration, config
    assert nulls_without_reason(data) == []
    method = data["methods"][0]
    assert method["throughput_per_s"] is None and method["efficiency"] is None
    assert "dismax score" in method["efficiency_null_reason"]
    acc = method["id_after"]["ACC"]
    assert acc["std"] is None and "one seed" in acc["std_null_reason"]
    assert "ddof = 1" in acc["std_null_reason"]
    # A reason is never put next to a value.
    assert "mean_null_reason" not in acc and "values_null_reason" not in acc


def test_a_null_reason_sits_beside_its_key_and_is_dropped_on_reading(score_report: Report) -> None:
    text = to_json(score_report)
    assert from_json(text) == score_report
    assert json.loads(to_json(from_json(text))) == json.loads(text)
    keys = list(json.loads(text)["methods"][0]["id_after"]["ACC"])
    assert keys.index("std_null_reason") == keys.index("std") + 1


def _report(methods: tuple[MethodResult, ...], **changes: Any) -> Report:
    return Report(
        kind="benchmark",
        tool_version="test",
        created="2026-01-01T00:00:00+00:00",
        config={"dataset": "digits[0-5]", "data_dir": None, "fpr": None},
        environment={"device": "cpu"},
        datasets=(),
        methods=methods,
        **changes,
    )


def _method(name: str, stat: Stat, **changes: Any) -> MethodResult:
    return MethodResult(
        method=name,
        default_score="msp",
        seeds=(0, 1, 2, 3),
        runs=(),
        uses_fpr=False,
        temperature=stat,
        id_before={"ACC": stat},
        id_after={"ACC": stat},
        n_id=10,
        ood=(OODResult("uniform", "msp", 10, 10, {"AUROC": stat}),),
        **changes,
    )


def test_non_finite_values_and_missing_references_are_explained() -> None:
    nan = float("nan")
    stat = Stat(mean=nan, std=nan, values=(0.5, nan))
    report = _report(
        (dataclasses.replace(  # two seeds, two runs: as many as the stat's values
            _method("isomax_plus", stat, throughput_per_s=Stat.of([100.0, 100.0]),
                    efficiency=None), seeds=(0, 1), runs=("a", "b")),),
        requirements=(RequirementResult("isomax_plus:ACC:id>=0.9", False, nan),),
    )
    data = to_dict(report)
    json.dumps(data, allow_nan=False)
    assert nulls_without_reason(data) == []
    acc = data["methods"][0]["id_after"]["ACC"]
    assert acc["mean"] is None and "finite" in acc["mean_null_reason"]
    assert acc["values"] == [0.5, None] and "finite" in acc["values_null_reason"]
    assert "finite" in acc["std_null_reason"]  # two values: not the one-seed reason
    assert "softmax" in data["methods"][0]["efficiency_null_reason"].lower()
    assert data["requirements"][0]["value"] is None
    assert "finite" in data["requirements"][0]["value_null_reason"]
    assert data["config"]["data_dir"] is None and data["config"]["data_dir_null_reason"]
    # Reading it back keeps the config as it was (no reason keys in it).
    back = from_json(json.dumps(data))
    assert back.config == report.config
    assert (
        back.requirements[0].value is None
        and back.requirements[0].text == "isomax_plus:ACC:id>=0.9"
    )


def test_the_std_is_the_sample_std_and_the_conventions_say_so() -> None:
    values = [0.70, 0.74, 0.71, 0.79]
    stat = Stat.of(values)
    assert stat.std == pytest.approx(float(np.std(values, ddof=1)), rel=1e-12)
    assert stat.std != pytest.approx(float(np.std(values, ddof=0)), rel=1e-6)
    assert stat.mean == pytest.approx(statistics.fmean(values))
    data = to_dict(_report((_method("softmax", stat),)))
    conventions = data["conventions"]
    assert "sample standard deviation" in conventions["std"] and "ddof = 1" in conventions["std"]
    assert SUFFIX in conventions["nulls"]
    acc = data["methods"][0]["id_after"]["ACC"]
    assert math.isclose(acc["std"], stat.std) and "std" + SUFFIX not in acc
    one = to_dict(_report((_method("softmax", Stat.of([0.7])),)))["methods"][0]["id_after"]["ACC"]
    assert one["std"] is None and "one seed" in one["std" + SUFFIX]


def test_old_reports_without_reasons_still_load(score_report: Report) -> None:
    """A report written before null reasons existed reads back to the same dataclasses."""
    data = json.loads(to_json(score_report))

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if not k.endswith(SUFFIX)}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    old = strip(data)
    assert from_json(json.dumps(old)) == score_report


def test_report_files_on_disk_round_trip(tmp_path: Path, score_report: Report) -> None:
    path = tmp_path / "r.json"
    path.write_text(to_json(score_report))
    assert nulls_without_reason(json.loads(path.read_text())) == []
    assert from_json(path.read_text()) == score_report
