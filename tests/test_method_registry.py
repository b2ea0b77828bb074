"""The methods registry is the one place that knows a method (issue 11 item 5, issue 14 item 5).

A method registered inside a test, through the public ``register_method`` only, is trained,
calibrated, scored and shown by ``dismax benchmark`` with its own head, loss, default score and
label; ``dismax_nofpr`` is DisMax with FPR off as a row of its own.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from dismax_cli.cli.app import app
from dismax_cli.core.methods import (
    MethodSpec,
    benchmark_methods,
    default_benchmark_methods,
    get_method,
    list_methods,
    method_label,
    register_method,
    unregister_method,
)
from dismax_cli.errors import DismaxError

runner = CliRunner()


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "DISMAX_RUNS_DIR": str(tmp_path / "runs"),
        "DISMAX_DATA_DIR": str(tmp_path / "data"),
        "DISMAX_OFFLINE": "1",
        "COLUMNS": "80",
        "NO_COLOR": "1",
    }


class ToyHead(nn.Linear):
    """A linear head of its own class, so the test can tell it was built."""


class ToyLoss(nn.Module):
    """Cross-entropy at a scale taken from the training config; counts its calls."""

    def __init__(self, scale: float, calls: dict[str, Any]) -> None:
        super().__init__()
        self.scale, self.calls = scale, calls

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.calls["loss"] += 1
        self.calls["images"] += len(targets)
        return F.cross_entropy(logits * self.scale, targets)


@pytest.fixture
def toy() -> Iterator[dict[str, Any]]:
    calls: dict[str, Any] = {"heads": [], "loss": 0, "images": 0, "loss_args": []}

    def make_head(num_features: int, num_classes: int) -> nn.Module:
        calls["heads"].append((num_features, num_classes))
        return ToyHead(num_features, num_classes)

    def make_loss(entropic_scale: float, alpha: float) -> nn.Module:
        calls["loss_args"].append((entropic_scale, alpha))
        return ToyLoss(entropic_scale / 7.0, calls)

    register_method(
        MethodSpec(
            name="toy",
            label="Toy head",
            description="a linear head of its own, for the registry test",
            make_head=make_head,
            make_loss=make_loss,
            default_score="energy",
        )
    )
    try:
        yield calls
    finally:
        unregister_method("toy")
    assert "toy" not in benchmark_methods()


def test_a_method_registered_in_a_test_runs_through_the_benchmark_cli(
    toy: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    args = ["benchmark", "--dataset", "digits[0-5]", "--ood", "uniform", "--epochs", "1"]
    args += ["--methods", "softmax", "toy", "--entropic-scale", "7", "--alpha", "0.5"]
    result = runner.invoke(app, [*args, "--out", str(out), "--quiet"], env=_env(tmp_path))
    assert result.exit_code == 0, result.output

    # Its loss was built from the training config and trained every training image once.
    assert toy["loss_args"] == [(7.0, 0.5)]
    report = json.loads(out.read_text())
    n_train = next(d["n"] for d in report["datasets"] if d["role"] == "train")
    assert toy["images"] == n_train and toy["loss"] == -(-n_train // 64)
    # Its head was built for training and again when the run was loaded to be scored.
    assert len(toy["heads"]) >= 2 and set(toy["heads"]) == {(128, 6)}
    from dismax_cli.engine import load_bundle

    row = next(m for m in report["methods"] if m["method"] == "toy")
    assert isinstance(load_bundle(row["runs"][0]).model.head, ToyHead)

    # Its label and default score are in the JSON and in the tables.
    assert row["label"] == "Toy head" and row["default_score"] == "energy"
    assert [m["label"] for m in report["methods"]] == ["SoftMax", "Toy head"]
    table = result.stdout
    lines = [line for line in table.splitlines() if line.startswith("Toy head ")]
    # ID, uncertainty and cost tables, the OOD set, its paired difference from SoftMax.
    assert len(lines) == 5, table
    assert lines[3].split()[2] == "energy", lines[3]
    assert max(len(line) for line in table.splitlines()) <= 80


def test_a_registered_method_trains_with_dismax_train(toy: dict[str, Any], tmp_path: Path) -> None:
    args = ["train", "--method", "toy", "--dataset", "digits[0-5]", "--epochs", "1"]
    out = ["--out", str(tmp_path / "r"), "--quiet"]
    result = runner.invoke(app, [*args, *out], env=_env(tmp_path))
    assert result.exit_code == 0, result.output
    assert toy["loss"] > 0 and toy["heads"] == [(128, 6)]
    from dismax_cli.engine import load_checkpoint

    assert load_checkpoint(tmp_path / "r").meta.method == "toy"


def test_the_cli_refuses_an_unregistered_method_listing_the_registry() -> None:
    result = runner.invoke(app, ["benchmark", "--methods", "softmax", "toy"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "'toy' is not one of" in text
    for name in benchmark_methods():
        assert name in text


def test_register_method_checks_the_spec() -> None:
    base = get_method("softmax")
    with pytest.raises(DismaxError, match="already registered"):
        register_method(base)
    with pytest.raises(DismaxError, match="name 'Bad-Name' is invalid"):
        register_method(MethodSpec("Bad-Name", "B", "", base.make_head, base.make_loss, "msp"))
    with pytest.raises(DismaxError, match="'nope' of method 'toy2' is not a score"):
        register_method(MethodSpec("toy2", "T", "", base.make_head, base.make_loss, "nope"))
    with pytest.raises(DismaxError, match="needs make_head and make_loss"):
        register_method(MethodSpec("toy2", "T", "", None, None, "msp"))
    with pytest.raises(DismaxError, match="members_of='ensemble'"):
        register_method(MethodSpec("toy2", "T", "", None, None, "msp", members_of="ensemble"))
    with pytest.raises(DismaxError, match="built in"):
        unregister_method("dismax")
    assert "toy2" not in benchmark_methods()


def test_an_ensemble_of_another_method_comes_from_the_registry() -> None:
    """A second ensemble (of IsoMax+ runs): the benchmark plans its runs from ``members_of``."""
    from dismax_cli.benchmark import BenchmarkConfig, benchmark_steps

    register_method(
        MethodSpec("iso_ensemble", "IsoMax+ ens.", "", None, None, "msp", members_of="isomax_plus")
    )
    try:
        cfg = BenchmarkConfig(methods=("dismax", "iso_ensemble"), ensemble_size=4).validate()
        assert cfg.trained_methods() == ["isomax_plus", "dismax"]
        # load + 2 runs + 3 extra members + 3 calibrations + timing + 2 scorings
        assert benchmark_steps(cfg) == 1 + 2 + 3 + 3 + 1 + 2
        assert cfg.row_label("iso_ensemble") == "IsoMax+ ens. x4"
    finally:
        unregister_method("iso_ensemble")


def test_labels_come_from_the_registry() -> None:
    assert method_label("softmax") == "SoftMax"
    assert method_label("dismax", uses_fpr=True) == "DisMax (FPR)"
    assert method_label("dismax", uses_fpr=False) == "DisMax (no FPR)"
    assert method_label("dismax_nofpr") == "DisMax (no FPR)"
    assert method_label("ensemble", members=5) == "Ensemble x5"
    assert method_label("not_registered") == "not_registered"


def test_training_temperature_comes_from_the_registry() -> None:
    from dismax_cli.engine.calibrate import training_temperature

    assert training_temperature("softmax", 10.0) == 1.0
    for name in ("isomax_plus", "dismax", "dismax_nofpr"):
        assert training_temperature(name, 8.0) == pytest.approx(1 / 8)


# ----------------------------------------------------------------------------- dismax_nofpr


def test_dismax_nofpr_is_dismax_with_fpr_off() -> None:
    from dismax_cli.benchmark import BenchmarkConfig
    from dismax_cli.core.heads import DisMaxHead
    from dismax_cli.core.losses import DisMaxLoss

    spec = get_method("dismax_nofpr")
    assert spec.label == "DisMax (no FPR)" and spec.default_score == "mmles"
    assert isinstance(spec.make_head(4, 3), DisMaxHead)
    assert isinstance(spec.make_loss(10.0, 1.0), DisMaxLoss)
    assert not spec.uses_fpr and not spec.supports_fpr
    assert "dismax_nofpr" in list_methods() and "dismax_nofpr" not in default_benchmark_methods()
    cfg = BenchmarkConfig(methods=("dismax", "dismax_nofpr")).validate()
    assert cfg.train_config("dismax", 0).uses_fpr
    assert not cfg.train_config("dismax_nofpr", 0).uses_fpr
    # --fpr applies to dismax only; with --no-fpr both rows would be the same run.
    assert not BenchmarkConfig(fpr=True).train_config("dismax_nofpr", 0).uses_fpr
    with pytest.raises(DismaxError, match="same row"):
        BenchmarkConfig(methods=("dismax", "dismax_nofpr"), fpr=False).validate()


def test_dismax_nofpr_trains_without_mosaics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The training loop gets no FPR mix for dismax_nofpr (and one for dismax)."""
    import dismax_cli.engine.run as run_module
    from dismax_cli.engine import TrainConfig, fit

    for key, value in _env(tmp_path).items():
        monkeypatch.setenv(key, value)
    seen: list[bool] = []
    original = run_module.train_one_epoch

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("mix") is not None)
        return original(*args, **kwargs)

    monkeypatch.setattr(run_module, "train_one_epoch", spy)
    for method in ("dismax_nofpr", "dismax"):
        fit(TrainConfig(method=method, epochs=1, device="cpu"), tmp_path / method)
    assert seen == [False, True]


def test_dismax_nofpr_row_in_the_benchmark_tables_fits_80_columns(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    args = ["benchmark", "--dataset", "digits[0-5]", "--ood", "uniform", "--epochs", "1"]
    args += ["--methods", "softmax", "dismax", "dismax_nofpr", "--out", str(out), "--quiet"]
    result = runner.invoke(app, args, env=_env(tmp_path))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    rows = {m["method"]: m for m in report["methods"]}
    assert rows["dismax"]["uses_fpr"] and not rows["dismax_nofpr"]["uses_fpr"]
    assert rows["dismax_nofpr"]["label"] == "DisMax (no FPR)"
    assert rows["dismax"]["label"] == "DisMax (FPR)"
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    # One row in each table: ID, uncertainty, cost, the OOD set, its paired difference.
    assert sum(1 for line in lines if re.match(r"DisMax \(no FPR\) ", line)) == 5


def test_method_names_are_readable_without_torch() -> None:
    code = (
        "import sys\n"
        "from dismax_cli.core.methods import benchmark_methods, list_methods\n"
        "assert 'dismax_nofpr' in list_methods() and 'ensemble' in benchmark_methods()\n"
        "print([m for m in ('torch', 'torchvision', 'sklearn') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
