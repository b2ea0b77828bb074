"""``dismax benchmark show REPORT.json --compare benchmarks/paper/table2.yaml`` (issue 14 item 6).

A hand-made report with known values is compared with the paper's table (METHOD.md §8): the
differences printed are measured - paper by hand, AUPR is AUPR-OUT, ECE after calibration; the
flags say whether protocol, budget and data are the paper's; a digits run is refused.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from typer.testing import CliRunner

from dismax_cli.cli.app import app
from dismax_cli.protocol import protocol_record
from dismax_cli.reports import DatasetRecord, MethodResult, OODResult, Report, Stat, to_json

runner = CliRunner()
TABLE = Path(__file__).resolve().parents[1] / "benchmarks" / "paper" / "table2.yaml"
PAPER_CONFIG = {
    "dataset": "cifar10", "model": "resnet34", "epochs": 300, "seeds": 5, "batch_size": 64,
    "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
}  # fmt: skip


def _stats(**values: float) -> dict[str, Stat]:
    return {key.replace("_", "-"): Stat.of([v]) for key, v in values.items()}


def _ood(name: str, score: str, **metrics: float) -> OODResult:
    return OODResult(name, score, 10_000, 10_000, _stats(**metrics))


def _method(method: str, score: str, fpr: bool, acc: float, ece: float, near: float,
            tin: float) -> MethodResult:  # fmt: skip
    decoy = _ood("cifar100", "msp" if score != "msp" else "energy", AUROC=0.1, AUPR_OUT=0.1)
    return MethodResult(
        method=method, default_score=score, seeds=(0,), runs=("r",), uses_fpr=fpr,
        temperature=Stat.of([1.0]), id_before=_stats(ACC=acc, ECE=0.5, NLL=1.0),
        id_after=_stats(ACC=acc, ECE=ece, NLL=0.2), n_id=10_000,
        ood=(
            _ood("cifar100", score, AUROC=0.5, AUPR_IN=0.2, AUPR_OUT=near), decoy,
            _ood("tin_resize", score, AUROC=tin, AUPR_IN=0.2, AUPR_OUT=0.3),
        ),
    )  # fmt: skip


def _dataset(role: str, name: str, n: int) -> DatasetRecord:
    return DatasetRecord(role, name, name, role, n, (32, 32, 3), "0" * 64, "x", False, 10)


def _report(config: dict, *, protocol: str = "paper", train_n: int = 50_000) -> Report:
    return Report(
        kind="benchmark", tool_version="0", created="2026-01-01", config=config,
        environment={"device": "cuda"},
        datasets=(_dataset("train", config["dataset"], train_n),
                  _dataset("test", config["dataset"], 10_000),
                  _dataset("ood", "cifar100", 10_000), _dataset("ood", "tin_resize", 10_000)),
        methods=(
            _method("softmax", "msp", False, 0.950, 0.0100, 0.800, 0.900),
            _method("dismax", "mmles", True, 0.970, 0.0050, 0.910, 0.980),
        ),
        protocol=protocol_record(
            training=protocol, selection="best-test" if protocol == "paper" else "last",
            calibration_split="test" if protocol == "paper" else "val",
            optimizer="lbfgsb" if protocol == "paper" else "grid",
        ),
    )  # fmt: skip


def _compare(tmp_path: Path, report: Report, *extra: str):
    path = tmp_path / "report.json"
    path.write_text(to_json(report))
    return runner.invoke(
        app, ["benchmark", "show", str(path), "--compare", str(TABLE), *extra]
    )


def test_compare_prints_paper_measured_and_difference(tmp_path: Path) -> None:
    result = _compare(tmp_path, _report(PAPER_CONFIG))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # SoftMax ResNet-34 CIFAR-10 row (METHOD.md §8): ACC 95.6, ECE 0.0060, near AUPR 85.3.
    rows = {tuple(line.split()[:2]): line.split() for line in lines if line.startswith("SoftMax")}
    assert rows[("SoftMax", "ACC")][2:] == ["95.60", "95.00", "-0.60"]
    assert rows[("SoftMax", "ECE")][2:] == ["0.0060", "0.0100", "+0.0040"]
    # near AUPR is AUPR-OUT of the msp score (not the decoy energy row, not AUPR-IN).
    assert rows[("SoftMax", "near")][3:] == ["85.30", "80.00", "-5.30"]
    dismax = [line.split() for line in lines if line.startswith("DisMax")]
    tin = next(r for r in dismax if r[2] == "TIN")
    assert tin[4:] == ["98.30", "98.00", "-0.30"]
    # Not measured: LSUN and SVHN are in the row but not in the report.
    svhn = next(r for r in dismax if r[2] == "SVHN")
    assert svhn[4:] == ["99.10", "–", "–"]
    assert "NOT a reproduction" in result.stdout and "svhn" in result.stdout


def test_compare_json_and_flags(tmp_path: Path) -> None:
    ok = json.loads(_compare(tmp_path, _report(PAPER_CONFIG), "--format", "json").stdout)
    assert ok["flags"]["protocol"]["matches"] and ok["flags"]["budget"]["matches"]
    assert not ok["flags"]["data"]["matches"]  # lsun_resize and svhn are missing
    softmax = ok["rows"][0]
    acc = next(v for v in softmax["values"] if v["column"] == "ACC")
    assert abs(acc["difference"] - (0.950 - 0.956)) < 1e-12 and acc["paper"] == 0.956
    short = {**PAPER_CONFIG, "epochs": 30, "seeds": 3}
    honest = _report(short, protocol="honest", train_n=45_000)
    data = json.loads(_compare(tmp_path, honest, "--format", "json").stdout)
    assert not data["flags"]["protocol"]["matches"] and not data["reproduction"]
    assert "epochs 30 (paper 300)" in data["flags"]["budget"]["why"]
    assert "seeds 3 (paper 5)" in data["flags"]["budget"]["why"]
    assert "45,000 training" in data["flags"]["data"]["why"]


def test_compare_refuses_a_digits_run(tmp_path: Path) -> None:
    digits = _report({**PAPER_CONFIG, "dataset": "digits[0-5]"})
    for extra in ((), ("--format", "json")):
        result = _compare(tmp_path, digits, *extra)
        assert result.exit_code == 1
        text = " ".join(result.output.split())
        assert "is not a reproduction of any row of the paper's table" in text
        assert "Traceback" not in result.output and not result.stdout.strip().startswith("{")


def test_compare_matches_dismax_without_fpr_to_the_no_fpr_row(tmp_path: Path) -> None:
    report = _report({**PAPER_CONFIG, "model": "densenet_bc_100"})
    nofpr = dataclasses.replace(report.methods[1], method="dismax_nofpr", uses_fpr=False)
    report = dataclasses.replace(report, methods=(report.methods[0], nofpr))
    data = json.loads(_compare(tmp_path, report, "--format", "json").stdout)
    dismax = next(r for r in data["rows"] if r["method"] == "dismax_nofpr")
    acc = next(v for v in dismax["values"] if v["column"] == "ACC")
    assert acc["paper"] == 0.951  # DenseNet-BC-100 CIFAR-10 DisMax (no FPR), METHOD.md §8
    # With FPR there is no DenseNet row: the method is listed as unmatched.
    fpr = dataclasses.replace(report, methods=(report.methods[0], nofpr.__class__(
        **{**dataclasses.asdict(nofpr), "method": "dismax", "uses_fpr": True}
    )))  # fmt: skip
    data = json.loads(_compare(tmp_path, fpr, "--format", "json").stdout)
    assert data["unmatched"] == ["dismax"]


def test_compare_with_a_missing_table_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(to_json(_report(PAPER_CONFIG)))
    result = runner.invoke(
        app, ["benchmark", "show", str(path), "--compare", str(tmp_path / "none.yaml")]
    )
    assert result.exit_code == 1 and "cannot read the paper's table" in result.output


def test_the_readme_compare_of_the_cpu_report_is_refused_for_its_backbone() -> None:
    report = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "cifar10-cpu.json"
    result = runner.invoke(app, ["benchmark", "show", str(report), "--compare", str(TABLE)])
    assert result.exit_code == 1
    assert "backbone 'convnet'" in result.output and "densenet_bc_100, resnet34, wrn_28_10" in (
        result.output
    )
