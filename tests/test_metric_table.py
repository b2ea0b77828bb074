"""The metric table (issue 12 item 1): one description per metric that evaluation, the tables,
``--require`` and the JSON conventions all read (METHOD.md §5)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from dismax_cli.config import InvalidValueError
from dismax_cli.core import metric_table
from dismax_cli.core.metric_table import CALIBRATION_OBJECTIVES, METRICS, MetricInfo, keys
from dismax_cli.reports import MethodResult, Report, Stat


def _toy_metric(probs, targets) -> float:  # noqa: ANN001 - any array-like
    """The mean probability of class 0: a metric no module defines."""
    return float(np.mean(np.asarray(probs, dtype=np.float64)[:, 0]))


@pytest.fixture
def toy_metric(monkeypatch: pytest.MonkeyPatch):
    """A metric added to the table only: every consumer must pick it up."""
    info = MetricInfo(
        "TOYP0", "toy_p0", True, "id", "mean probability of class 0",
        f"{__name__}:_toy_metric", group="uncertainty",
    )  # fmt: skip
    monkeypatch.setitem(METRICS, "TOYP0", info)
    return info


def test_every_entry_names_its_function_and_a_valid_unit() -> None:
    for key, info in METRICS.items():
        assert info.key == key
        assert info.fn.__name__ == info.name, key
        assert info.kind in ("id", "ood")
    assert keys("id") == ["ACC", "ECE", "NLL", "BRIER", "AURC", "AECE", "CWECE"]
    assert keys("ood") == ["AUROC", "AUPR-IN", "AUPR-OUT", "FPR@95TPR", "DETACC"]
    assert METRICS["NLL"].bounds is None and METRICS["BRIER"].bounds == (0.0, 2.0)
    assert CALIBRATION_OBJECTIVES == ("ece", "nll")


def test_evaluation_computes_every_id_metric_of_the_table(toy_metric: MetricInfo) -> None:
    from dismax_cli.evaluation import id_metrics, ood_metrics, probs_at

    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 0.5]])
    targets = torch.tensor([0, 1, 0, 2])
    values = id_metrics(probs_at(logits, 1.0), targets)
    assert list(values) == keys("id")
    p = torch.softmax(logits.double(), dim=1).numpy()
    # Independent float64 values written here: the toy metric, the accuracy and the Brier score.
    assert values["TOYP0"] == pytest.approx(p[:, 0].mean(), abs=1e-12)
    assert values["ACC"] == pytest.approx(2 / 4)
    onehot = np.eye(3)[targets.numpy()]
    assert values["BRIER"] == pytest.approx(((p - onehot) ** 2).sum(axis=1).mean(), abs=1e-12)
    ood = ood_metrics(torch.tensor([3.0, 2.0]), torch.tensor([1.0, 2.0]))
    assert list(ood) == keys("ood")
    assert ood["AUROC"] == pytest.approx((1 + 1 + 1 + 0.5) / 4)


def _report(id_after: dict[str, Stat]) -> Report:
    method = MethodResult(
        method="softmax", default_score="msp", seeds=(0,), runs=("r",), uses_fpr=False,
        temperature=Stat.of([1.0]), id_before=dict(id_after), id_after=dict(id_after), n_id=4,
        ood=(),
    )  # fmt: skip
    return Report("score", "0", "now", {}, {}, (), (method,))


def test_tables_draw_their_columns_from_the_table(toy_metric: MetricInfo) -> None:
    from rich.console import Console

    from dismax_cli.render import id_columns, report_renderable

    assert [h for h, _, _ in id_columns()] == ["ACC %", "ECE %", "ECE T=1", "NLL", "NLL T=1"]
    assert [h for h, _, _ in id_columns("uncertainty")][-1] == "TOYP0 %"
    values = {k: Stat.of([0.25]) for k in keys("id")}
    values["TOYP0"] = Stat.of([0.4321])
    console = Console(width=80, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(report_renderable(_report(values)), crop=False)
    text = console.export_text()
    assert "TOYP0 %" in text and "43.21" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_an_older_report_without_uncertainty_metrics_shows_them_as_absent() -> None:
    from rich.console import Console

    from dismax_cli.render import report_renderable

    old = {k: Stat.of([0.25]) for k in ("ACC", "NLL", "ECE")}
    console = Console(width=80, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(report_renderable(_report(old)), crop=False)
    text = console.export_text()
    assert "BRIER" not in text.split("no uncertainty metrics")[0]
    assert "no uncertainty metrics (Brier, AURC, ...) in this report" in text


def test_require_accepts_every_metric_of_the_table_with_its_range(toy_metric: MetricInfo) -> None:
    from dismax_cli.gates import parse_requirements

    for key in keys("id"):
        (req,) = parse_requirements([f"softmax:{key}:id>=0.5"], methods=["softmax"], ood=["u"])
        assert req.metric == key
    parse_requirements(["softmax:brier:id<=1.5"], methods=None, ood=None)  # Brier is in [0, 2]
    parse_requirements(["softmax:NLL:id<=7"], methods=None, ood=None)  # NLL has no upper bound
    with pytest.raises(InvalidValueError, match=r"BRIER lies in \[0, 2\]"):
        parse_requirements(["softmax:BRIER:id<=2.5"], methods=None, ood=None)
    with pytest.raises(InvalidValueError, match="AURC is a fraction in"):
        parse_requirements(["softmax:AURC:id<=1.5"], methods=None, ood=None)
    with pytest.raises(InvalidValueError, match="TOYP0 is an in-distribution metric"):
        parse_requirements(["softmax:TOYP0:u>=0.5"], methods=None, ood=None)


def test_a_requirement_on_a_metric_an_older_report_lacks_says_so() -> None:
    from dismax_cli.errors import DismaxError
    from dismax_cli.gates import check_requirements

    old = _report({k: Stat.of([0.25]) for k in ("ACC", "NLL", "ECE")})
    with pytest.raises(DismaxError, match="holds no AURC"):
        check_requirements(old, ["softmax:AURC:id<=0.5"])


def test_the_json_conventions_list_every_metric(toy_metric: MetricInfo) -> None:
    conventions = metric_table.metric_conventions()
    assert list(conventions) == list(METRICS)
    assert conventions["FPR@95TPR"].endswith("lower is better; a fraction in [0, 1] (shown in %)")
    assert "nats" in conventions["NLL"] and "higher is better" in conventions["TOYP0"]
    from dismax_cli.reports import CONVENTIONS

    assert set(CONVENTIONS["metrics"]) >= {"AURC", "BRIER", "AECE", "CWECE"}


def test_the_calibration_objectives_come_from_the_table() -> None:
    from dismax_cli.cli.common import Objective
    from dismax_cli.cli.options import OBJECTIVE
    from dismax_cli.core.calibration import OBJECTIVES

    assert OBJECTIVES == CALIBRATION_OBJECTIVES
    assert OBJECTIVE.choices == CALIBRATION_OBJECTIVES
    assert tuple(o.value for o in Objective) == CALIBRATION_OBJECTIVES


def test_shared_helpers_are_public() -> None:
    from dismax_cli.core import metrics, uncertainty

    confidences = np.array([0.0, 0.2, 0.9, 1.0])
    correct = np.array([0.0, 1.0, 1.0, 0.0])
    # 3 bins: [0, 1/3] holds 0.0 and 0.2 (acc 1/2, conf 0.1); (2/3, 1] holds 0.9 and 1.0
    # (acc 1/2, conf 0.95): ECE = 2/4 · 0.4 + 2/4 · 0.45 = 0.425.
    assert metrics.binned_ece(confidences, correct, 3) == pytest.approx(0.425)
    with pytest.raises(Exception, match="num_bins must be an integer >= 1"):
        metrics.check_num_bins(0)
    assert metrics.score_pair([1, 2], [3])[1].dtype == np.float64
    conf, ok = uncertainty.top_label(np.array([[0.7, 0.3], [0.4, 0.6]]), np.array([1, 1]))
    assert conf.tolist() == [0.7, 0.6] and ok.tolist() == [0.0, 1.0]
    assert "binned_ece" not in metrics.__all__  # helpers, not metrics (the API lists metrics)


def test_the_table_imports_neither_torch_nor_numpy() -> None:
    code = (
        "import sys, json; import dismax_cli.core.metric_table, dismax_cli.gates; "
        "print(json.dumps(sorted(m for m in ('torch', 'numpy') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_a_bad_table_entry_is_refused() -> None:
    with pytest.raises(ValueError, match="bad kind, unit or group"):
        MetricInfo("X", "x", True, "id", "x", "m:x", unit="percent")
    info = METRICS["ACC"]
    assert dataclasses.replace(info, unit="nats").percent is False
