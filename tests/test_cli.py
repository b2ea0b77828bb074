"""The CLI through CliRunner and as a real subprocess: train -> calibrate -> score, errors."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import typer.main
from support import run_dismax
from typer.testing import CliRunner

from dismax_cli.cli.app import app
from dismax_cli.cli.entry import expand_argv

runner = CliRunner()


def expand_multi_value_options(args: list[str]) -> list[str]:
    """The root group's expansion of ``dismax ARGS`` (cli/entry.py over cli/multivalue.py)."""
    return expand_argv(typer.main.get_command(app), args)


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DISMAX_DATA_DIR=str(tmp_path / "data"),
        DISMAX_RUNS_DIR=str(tmp_path / "runs"),
        DISMAX_OFFLINE="1",
        COLUMNS="160",
    )
    return env


def dismax(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the installed ``dismax`` console script (``python -m dismax_cli`` if not on PATH)."""
    return run_dismax(*args, env=env, timeout=600)


def test_multi_value_options_expand() -> None:
    assert expand_multi_value_options(
        ["score", "ck", "--ood", "digits[6-9]", "uniform", "--format", "json"]
    ) == ["score", "ck", "--ood", "digits[6-9]", "--ood", "uniform", "--format", "json"]
    assert expand_multi_value_options(["score", "--ood=a,digits[0,2]", "-q"]) == [
        "score",
        "--ood",
        "a",
        "--ood",
        "digits[0,2]",
        "-q",
    ]
    args = ["benchmark", "--require", "dismax:AUROC:a>=0.5", "x:ACC:id>0"]
    assert expand_multi_value_options(args) == [
        "benchmark",
        "--require",
        "dismax:AUROC:a>=0.5",
        "--require",
        "x:ACC:id>0",
    ]


def test_help_lists_only_existing_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "calibrate", "score", "benchmark", "datasets"):
        assert command in result.output
        sub = runner.invoke(app, [command, "--help"])
        assert sub.exit_code == 0, (command, sub.output)


def test_train_calibrate_score_as_a_subprocess(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    run = tmp_path / "run"
    trained = dismax(
        "train",
        "--dataset",
        "digits[0-5]",
        "--method",
        "dismax",
        "--epochs",
        "2",
        "--out",
        str(run),
        "--device",
        "cpu",
        "--format",
        "json",
        env=env,
    )
    assert trained.returncode == 0, trained.stderr
    summary = json.loads(trained.stdout)
    assert summary["epochs_run"] == 2 and Path(summary["checkpoint"]).is_file()
    calibrated = dismax("calibrate", str(run), "--format", "json", env=env)
    assert calibrated.returncode == 0, calibrated.stderr
    temperature = json.loads(calibrated.stdout)["temperature"]
    assert 1e-3 <= temperature <= 100
    dump, out = tmp_path / "scores.npz", tmp_path / "report.json"
    # One scoring: the table on stdout, the same report as JSON in --out, the scores in --dump.
    scored = dismax(
        "score", str(run), "--ood", "digits[6-9]", "uniform", "--out", str(out), "--dump",
        str(dump), env=env,
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    report = json.loads(out.read_text())
    method = report["methods"][0]
    assert method["method"] == "dismax" and method["default_score"] == "mmles"
    assert method["temperature"]["mean"] == pytest.approx(temperature)
    assert {r["ood"] for r in method["ood"]} == {"digits[6-9]", "uniform"}
    for r in method["ood"]:
        assert r["n_id"] == method["n_id"] > 0 and r["n_ood"] > 0
        for key in ("AUROC", "AUPR-IN", "AUPR-OUT", "FPR@95TPR", "DETACC"):
            assert 0.0 <= r["metrics"][key]["mean"] <= 1.0
    with np.load(dump) as arrays:
        assert arrays["id/mmles"].shape == (method["n_id"],)
        assert arrays["id_logits"].shape == (method["n_id"], 6)
        n_ood = next(r["n_ood"] for r in method["ood"] if r["ood"] == "uniform")
        assert arrays["ood/uniform/msp"].shape == (n_ood,)
    # The same report as a table on stdout.
    assert "AUROC" in scored.stdout and "DisMax" in scored.stdout
    assert f"OOD: uniform  (n_id {method['n_id']:,}" in scored.stdout


def test_existing_out_without_resume_is_refused(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    run = tmp_path / "run"
    args = [
        "train",
        "--dataset",
        "digits",
        "--method",
        "softmax",
        "--epochs",
        "1",
        "--out",
        str(run),
    ]
    assert runner.invoke(app, args, env=env).exit_code == 0
    before = (run / "checkpoint.pt").read_bytes()
    again = runner.invoke(app, args, env=env)
    assert again.exit_code == 2 and isinstance(again.exception, SystemExit)  # no crash
    assert "--resume" in again.stderr and "Traceback" not in again.output
    assert len(again.stderr.strip().splitlines()) == 1
    assert (run / "checkpoint.pt").read_bytes() == before
    resumed = runner.invoke(app, [*args, "--resume"], env=env)
    assert resumed.exit_code == 0 and "already finished" in resumed.stderr


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (
            ["train", "--dataset", "digits", "--method", "isomax", "--out", "X"],
            "'isomax' is not one of softmax, isomax_plus, dismax",
            2,
        ),
        (
            ["train", "--dataset", "nosuchset", "--out", "X"],
            "nosuchset",
            2,
        ),  # not a choice: a usage error
        (
            ["train", "--dataset", "digits", "--model", "vgg", "--out", "X"],
            "Invalid value for '--model'",
            2,
        ),
        (["calibrate", "missing.pt"], "does not exist", 1),
        (["score", "missing.pt", "--ood", "uniform"], "does not exist", 1),
    ],
)
def test_user_errors_are_one_line_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str, code: int
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISMAX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DISMAX_OFFLINE", "1")
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "X").exists()


def test_config_file_and_cli_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISMAX_OFFLINE", "1")
    config = tmp_path / "train.yaml"
    config.write_text("dataset: digits[0-2]\nmethod: isomax_plus\nepochs: 3\n")
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        ["train", "--config", str(config), "--epochs", "1", "--out", str(out), "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["method"] == "isomax_plus" and summary["epochs_run"] == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: digits\nepochz: 3\n")
    result = runner.invoke(app, ["train", "--config", str(bad), "--out", str(tmp_path / "r2")])
    assert result.exit_code == 2 and "epochz" in result.output


def test_debug_shows_the_traceback_of_a_user_error(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    # Without --debug: one handled line (in-process; a crash would show as another exception).
    plain = runner.invoke(app, ["calibrate", str(tmp_path / "missing.pt")], env=env)
    assert plain.exit_code == 1 and isinstance(plain.exception, SystemExit)
    assert "does not exist" in plain.stderr and "Traceback" not in plain.stderr
    # With it, a real process: the interpreter prints the propagated error's traceback.
    debug = dismax("--debug", "calibrate", str(tmp_path / "missing.pt"), env=env)
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr and "DismaxError" in debug.stderr


def test_checkpoint_after_the_ood_values_is_still_the_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"x")
    args = ["score", "--ood", "digits[6-9]", "uniform", str(run), "--format", "json"]
    assert expand_multi_value_options(args) == [
        "score",
        "--ood",
        "digits[6-9]",
        "--ood",
        "uniform",
        str(run),
        "--format",
        "json",
    ]


def test_the_calibration_caption_at_a_bound_names_the_temperature_kept() -> None:
    """At a search bound the caption states the T kept and points to the warning, which says
    why (engine.calibrate.fit_temperature_noted). It used to guess "upper bound" from T > 1,
    wrong for a training temperature above 1 (an entropic scale below 1) kept at the lower one."""
    from rich.console import Console

    from dismax_cli.cli.calibrate import calibration_table
    from dismax_cli.engine.calibrate import CalibrationResult

    result = CalibrationResult(
        temperature=2.0, objective="ece", n_val=87, ece_before=0.1, ece_after=0.1,
        nll_before=0.5, nll_after=0.5, accuracy=1.0, warning="at the lower bound",
    )  # fmt: skip
    console = Console(width=200, record=True, no_color=True)
    console.print(calibration_table(result))
    text = " ".join(console.export_text().split())
    assert "T = 2 kept" in text and "upper bound" not in text, text
