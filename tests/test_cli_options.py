"""CLI options (issue 10 items 8-13, issue 9 items 11 and 13): one set of options, exit codes,
devices, dataset names, start-up imports, no tracebacks, checkpoint paths."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from support import ImportProbe
from typer.main import get_command
from typer.testing import CliRunner

from dismax_cli.cli.app import app

runner = CliRunner()
HEAVY = ("torch", "torchvision", "sklearn", "scipy")


def _params(*path: str) -> dict[str, Any]:
    command: Any = get_command(app)
    for name in path:
        command = command.commands[name]
    return {p.name: p for p in command.params}


def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISMAX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DISMAX_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("DISMAX_OFFLINE", "1")


# ----------------------------------------------------------------------------- item 8


def test_every_training_knob_is_an_option_of_both_commands_with_one_help_text() -> None:
    from dismax_cli.benchmark import BenchmarkConfig
    from dismax_cli.engine import TrainConfig

    train = _params("train")
    bench = _params("benchmark")
    knobs = {f.name for f in dataclasses.fields(TrainConfig)} - {"method"}
    assert knobs <= set(train) and knobs <= set(bench), (knobs - set(train), knobs - set(bench))
    for key in knobs:
        flag = "--" + key.replace("_", "-")
        assert flag in train[key].opts and flag in bench[key].opts, key
        assert train[key].help and train[key].help == bench[key].help, key
    # Every key a benchmark YAML accepts (but the command-line-only ones) is an option too.
    yaml_keys = set(BenchmarkConfig.keys())
    assert yaml_keys <= set(bench), yaml_keys - set(bench)
    assert "--method" in train["method"].opts and "--methods" in bench["methods"].opts


def test_option_choices_match_the_registries() -> None:
    from dismax_cli.benchmark import BENCHMARK_METHODS
    from dismax_cli.cli import options
    from dismax_cli.core.methods import list_methods
    from dismax_cli.core.scores import SCORES
    from dismax_cli.data import DATA_DIR_ENV
    from dismax_cli.models import list_backbones

    assert list(options.METHOD_NAMES) == list_methods()
    assert list(options.BENCHMARK_METHOD_NAMES) == list(BENCHMARK_METHODS)
    assert list(options.BACKBONE_NAMES) == list_backbones()
    assert options.DATA_DIR_ENV == DATA_DIR_ENV
    assert list(options.SCORE_NAMES) == list(SCORES)


def test_benchmark_seed_is_the_first_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    import dismax_cli.benchmark as bench

    seen: dict[str, Any] = {}

    def fake_run(config: Any, progress: Any = None, **_: Any) -> Any:  # run_benchmark's keywords
        seen["config"] = config
        raise bench.DismaxError("stop here")

    monkeypatch.setattr(bench, "run_benchmark", fake_run)
    args = ["benchmark", "--seed", "7", "--seeds", "2", "--weight-decay", "5e-4"]
    result = runner.invoke(app, [*args, "--momentum", "0.5", "--lr", "0.05", "--no-fpr"])
    assert result.exit_code == 1 and "stop here" in result.output, result.output
    cfg = seen["config"]
    assert (cfg.seed, cfg.seeds, cfg.weight_decay, cfg.momentum, cfg.lr) == (7, 2, 5e-4, 0.5, 0.05)
    assert cfg.fpr is False
    assert cfg.train_config("dismax", 8).seed == 8 and cfg.train_config("dismax", 8).fpr is False


# ----------------------------------------------------------------------------- item 9


def test_dash_h_is_help_and_flags_show_as_flags() -> None:
    for path in ([], ["train"], ["score"], ["benchmark"], ["benchmark", "show"]):
        long = runner.invoke(app, [*path, "--help"])
        short = runner.invoke(app, [*path, "-h"])
        assert long.exit_code == short.exit_code == 0, short.output
        assert short.output == long.output
    text = runner.invoke(app, ["train", "-h"]).output
    assert "<bool>" not in text
    assert "--fpr / --no-fpr" in text
    assert "--resume " in text
    assert "CHECKPOINT" in runner.invoke(app, ["score", "-h"]).output
    assert "--debug" in runner.invoke(app, ["-h"]).output


def test_debug_is_accepted_after_the_subcommand(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pt")
    result = runner.invoke(app, ["calibrate", missing, "--debug"])
    # With --debug the DismaxError's traceback is printed, then the same line and exit code.
    assert result.exit_code == 1 and "Traceback" in result.stderr, result.output
    assert "DismaxError" in result.stderr and "does not exist" in result.stderr
    plain = runner.invoke(app, ["calibrate", missing])
    assert plain.exit_code == 1 and "does not exist" in plain.output


# ----------------------------------------------------------------------------- item 10


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["train", "--method", "foo", "--out", "X"], "--method"),
        (["train", "--model", "resnet50", "--out", "X"], "--model"),
        (["train", "--device", "gpu", "--out", "X"], "--device"),
        (["train", "--epochs", "0", "--out", "X"], "--epochs"),
        (["train", "--epochs", "ten", "--out", "X"], "--epochs"),
        (["train", "--batch-size", "-3", "--out", "X"], "--batch-size"),
        (["train", "--batch-size", "1", "--out", "X"], "--batch-size"),
        (["benchmark", "--batch-size", "1"], "--batch-size"),
        (["train", "--lr", "0", "--out", "X"], "--lr"),
        (["train", "--lr", "nan", "--out", "X"], "--lr"),
        (["train", "--weight-decay", "-1e-4", "--out", "X"], "--weight-decay"),
        (["train", "--val-fraction", "1", "--out", "X"], "--val-fraction"),
        (["train", "--seed", "-1", "--out", "X"], "--seed"),
        (["train", "--method", "softmax", "--fpr", "--out", "X"], "--fpr"),
        (["benchmark", "--seeds", "0"], "--seeds"),
        (["benchmark", "--methods", "softmax", "foo"], "--methods"),
        (["benchmark", "--device", "cuda:x"], "--device"),
        (["benchmark", "--objective", "brier"], "--objective"),
        (["benchmark", "--ensemble-size", "1"], "--ensemble-size"),
        (["benchmark", "--require", "dismax:AUROC:nosuchset>=0.5"], "--require"),
        (["benchmark", "--ood", "a=uniform", "a=gaussian"], "--ood"),
        (["score", "X", "--ood", "uniform", "--device", "cuda:-1"], "--device"),
        (["score", "X", "--ood", "uniform", "--score", "softmax"], "--score"),
        (["calibrate", "X", "--objective", "brier"], "--objective"),
    ],
)
def test_invalid_option_values_exit_2_naming_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], option: str
) -> None:
    _offline(monkeypatch, tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert option in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "X").exists()


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("epochs: 0", "epochs"),
        ("method: foo", "method"),
        ("device: gpu", "device"),
        ("lr: ten", "lr"),
        ("augment: no", "augment"),
    ],
)
def test_invalid_config_values_exit_2_naming_key_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, key: str
) -> None:
    _offline(monkeypatch, tmp_path)
    config = tmp_path / "bad.yaml"
    config.write_text(f"dataset: digits\n{line}\n")
    result = runner.invoke(app, ["train", "--config", str(config), "--out", "X"])
    assert result.exit_code == 2, result.output
    assert repr(key) in result.output and "bad.yaml" in result.output
    assert not (tmp_path / "X").exists()


# ----------------------------------------------------------------------------- item 11


def test_score_defaults_to_device_auto(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import dismax_cli.benchmark as bench

    seen: dict[str, Any] = {}

    def fake_score(checkpoint: Any, ood: Any, **kwargs: Any) -> Any:
        seen.update(kwargs, ood=list(ood))
        raise bench.DismaxError("stop here")

    monkeypatch.setattr(bench, "score_checkpoint", fake_score)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"x")  # past the early checkpoint check
    result = runner.invoke(app, ["score", str(tmp_path / "run"), "--ood", "uniform"])
    assert result.exit_code == 1 and "stop here" in result.output, result.output
    assert seen["device"] == "auto"


def test_cuda_index_is_accepted_and_needs_a_gpu(tmp_path: Path) -> None:
    import torch

    from dismax_cli.config import check_device_name
    from dismax_cli.engine import resolve_device

    assert check_device_name("cuda:1") == "cuda:1" and check_device_name("cuda:01") == "cuda:1"
    if torch.cuda.is_available():
        pytest.skip("this check is for machines without CUDA")
    result = runner.invoke(app, ["train", "--device", "cuda:0", "--out", str(tmp_path / "X")])
    assert result.exit_code == 1, result.output
    assert "--device cuda:0" in result.output and "no CUDA GPU" in result.output
    assert not (tmp_path / "X").exists()
    assert resolve_device("cpu").type == "cpu"


# ----------------------------------------------------------------------------- item 12


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("LSUN", "lsun_resize"),
        ("lsun", "lsun_resize"),
        ("TinyImageNet", "tin_resize"),
        ("tin", "tin_resize"),
        ("imagenet", "tin_resize"),
        ("LSUN_crop", "lsun_crop"),
        ("CIFAR-10[0-4]", "cifar10[0-4]"),
        ("far=LSUN", "far=lsun_resize"),
        ("Uniform:50", "uniform:50"),
        ("npz:LSUN.npz", "npz:LSUN.npz"),
        ("nosuchset", "nosuchset"),
    ],
)
def test_paper_names_resolve(typed: str, canonical: str) -> None:
    from dismax_cli.data.registry import canonical_spec

    assert canonical_spec(typed) == canonical


def test_requirement_sets_follow_aliases_but_not_labels() -> None:
    from dismax_cli.data.registry import canonical_requirement

    assert canonical_requirement("dismax:AUROC:LSUN>=0.9") == "dismax:AUROC:lsun_resize>=0.9"
    assert canonical_requirement("dismax:AUROC:lsun>=0.9", ["lsun"]) == "dismax:AUROC:lsun>=0.9"
    assert canonical_requirement("dismax:ECE:id<=0.05") == "dismax:ECE:id<=0.05"


def test_all_unavailable_ood_sets_are_named_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _offline(monkeypatch, tmp_path)
    result = runner.invoke(
        app, ["benchmark", "--ood", "svhn", "lsun", "TinyImageNet", "--epochs", "1"]
    )
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "3 OOD sets cannot be used" in text
    for name in ("svhn", "lsun_resize", "tin_resize"):
        assert name in text
    assert "unknown" not in text.lower()
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_datasets_json_lists_the_paper_aliases(tmp_path: Path) -> None:
    result = runner.invoke(app, ["datasets", "--data-dir", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)["datasets"]}
    assert "lsun" in rows["lsun_resize"]["aliases"]
    assert "tinyimagenet" in rows["tin_resize"]["aliases"]


# ----------------------------------------------------------------------------- item 13

_MAIN = "from dismax_cli.cli.app import main; main({args})"
#: A bad value in a config file is a usage error too: it must answer before torch loads.
_CONFIG = (
    "import pathlib, tempfile; p = pathlib.Path(tempfile.mkdtemp()) / 'c.yaml'; "
    "p.write_text('{text}\\n'); from dismax_cli.cli.app import main; "
    "main([*{args}[:1], '--config', str(p), *{args}[1:]])"
)


@pytest.mark.parametrize(
    "code",
    [
        "import dismax_cli.cli.app",
        "from dismax_cli.cli.app import main; main(['--help'])",
        "from dismax_cli.cli.app import main; main(['train', '--help'])",
        "from dismax_cli.cli.app import main; main(['benchmark', '-h'])",
        "from dismax_cli.cli.app import main; main(['train', '--epochs', 'ten', '--out', 'x'])",
        "from dismax_cli.cli.app import main; main(['train', '--method', 'foo', '--out', 'x'])",
        "from dismax_cli.cli.app import main; main(['benchmark', '--require', 'foo'])",
        _MAIN.format(args="['benchmark', '--require', 'dismax:AUROC:id>=1']"),
        _MAIN.format(args="['benchmark', '--ood', 'a=uniform', 'a=gaussian']"),
        "from dismax_cli.cli.app import main; main(['benchmark', '--ood', 'id=uniform'])",
        _CONFIG.format(text="epochs: ten", args="['train', '--out', 'x']"),
        _CONFIG.format(text="seeds: 0", args="['benchmark']"),
        _CONFIG.format(text="require: [foo]", args="['benchmark']"),
        # Malformed or unknown dataset specs: checked by the registry, which loads no torch.
        _MAIN.format(args="['train', '--dataset', 'digits[9-0]', '--out', 'x']"),
        _MAIN.format(args="['train', '--dataset', 'foo', '--out', 'x']"),
        _MAIN.format(args="['train', '--test-dataset', 'npz:', '--out', 'x']"),
        _MAIN.format(args="['score', 'x', '--ood', 'foo']"),
        _MAIN.format(args="['score', 'x', '--ood', 'gaussian:-3']"),
        _MAIN.format(args="['benchmark', '--dataset', 'foo']"),
        _MAIN.format(args="['benchmark', '--ood', 'uniform:0']"),
        _MAIN.format(args="['benchmark', '--ood', 'a[b]=uniform']"),
        _MAIN.format(args="['benchmark', '--ood', 'digits[]']"),
        _CONFIG.format(text="dataset: digits[9-0]", args="['train', '--out', 'x']"),
        _CONFIG.format(text="test_dataset: foo", args="['train', '--out', 'x']"),
        _CONFIG.format(text="dataset: foo", args="['benchmark']"),
        _CONFIG.format(text="ood: [uniform:0]", args="['benchmark']"),
        _CONFIG.format(text='ood: [\\"a[b]=uniform\\"]', args="['benchmark']"),
    ],
)
def test_help_and_usage_errors_do_not_import_heavy_modules(
    import_probe: ImportProbe, code: str
) -> None:
    proc = import_probe.run(code)
    assert proc.code in (0, 2), proc.stderr
    if "help" not in code and "-h'" not in code and code != "import dismax_cli.cli.app":
        assert proc.code == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.heavy(HEAVY) == [], code


# ----------------------------------------------------------------------------- issue 9 item 11


def test_an_internal_error_is_one_line_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dismax_cli.engine as training

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(training, "calibrate_checkpoint", boom)
    (tmp_path / "checkpoint.pt").write_bytes(b"x")  # past the early checkpoint check
    result = runner.invoke(app, ["calibrate", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == [
        "internal error: RuntimeError: boom second line; rerun with --debug for the traceback"
    ]
    debug = runner.invoke(app, ["calibrate", str(tmp_path), "--debug"])
    assert debug.exit_code == 1 and "RuntimeError: boom" in debug.stderr
    assert "Traceback" in debug.stderr


def test_an_error_while_parsing_is_one_line_too(monkeypatch: pytest.MonkeyPatch) -> None:
    import dismax_cli.cli.parsers as parsers

    def boom(value: Any, **kwargs: Any) -> str:
        raise KeyError("parse")

    monkeypatch.setattr(parsers, "check_device_name", boom)
    result = runner.invoke(app, ["train", "--device", "cpu", "--out", "X"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "internal error: KeyError: 'parse'; rerun with --debug for the traceback"
    ]


# ----------------------------------------------------------------------------- issue 9 item 13


def test_every_command_takes_the_run_folder_or_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _offline(monkeypatch, tmp_path)
    run = tmp_path / "run"
    trained = runner.invoke(
        app,
        ["train", "--dataset", "digits[0-2]", "--method", "softmax", "--epochs", "1"]
        + ["--out", str(run), "--device", "cpu"],
    )
    assert trained.exit_code == 0, trained.output
    ckpt = str(run / "checkpoint.pt")
    for target in (str(run), ckpt):
        calibrated = runner.invoke(app, ["calibrate", target, "--format", "json"])
        assert calibrated.exit_code == 0, calibrated.output
        for args in (
            ["score", target, "--ood", "digits[3-5]", "uniform", "--format", "json"],
            ["score", "--ood", "digits[3-5]", "uniform", target, "--format", "json"],
        ):
            scored = runner.invoke(app, args)
            assert scored.exit_code == 0, (args, scored.output)
            report = json.loads(scored.stdout)
            assert {r["ood"] for r in report["methods"][0]["ood"]} == {"digits[3-5]", "uniform"}
    missing = runner.invoke(app, ["score", "--ood", "uniform", str(tmp_path / "nope.pt")])
    assert missing.exit_code == 1 and "nope.pt" in missing.output
    assert "nope.pt/checkpoint.pt" not in missing.output
