"""YAML configs (issue 10 items 14 and 15): numbers as people write them, paths relative to
the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dismax_cli.cli.app import app
from dismax_cli.config import read_yaml_config
from dismax_cli.engine import TrainConfig

runner = CliRunner()


@pytest.mark.parametrize(
    ("text", "value"),
    [("5e-4", 5e-4), ("1E-3", 1e-3), ("0.1", 0.1), ("10", 10.0), (".5", 0.5), ("2e+1", 20.0)],
)
def test_numeric_fields_accept_every_written_number(
    tmp_path: Path, text: str, value: float
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"weight_decay: {text}\nlr: {text}\n")
    cfg = TrainConfig.from_dict(read_yaml_config(path))
    assert cfg.weight_decay == pytest.approx(value) and isinstance(cfg.weight_decay, float)
    assert cfg.lr == pytest.approx(value)


def test_a_value_that_is_not_a_number_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("weight_decay: 5e-4x\n")
    with pytest.raises(Exception, match="weight_decay") as info:
        TrainConfig.from_dict(read_yaml_config(path))
    assert type(info.value).__name__ == "InvalidValueError"


@pytest.mark.parametrize("word", ["on", "off", "no", "yes", "y", "n", "On", "NO"])
def test_yaml_11_booleans_stay_strings(tmp_path: Path, word: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"dataset: {word}\nmodel: {word}\n")
    values = read_yaml_config(path)
    assert values == {"dataset": word, "model": word}
    path.write_text("augment: true\nfpr: False\n")
    assert read_yaml_config(path) == {"augment": True, "fpr": False}


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "configs" / "sub"
    folder.mkdir(parents=True)
    (tmp_path / "data").mkdir()
    path = folder / "c.yaml"
    path.write_text(
        "dataset: npz:../../data/id.npz[0-4]\n"
        "test_dataset: 'NPZ:/abs/test.npz'\n"
        "ood: ['far=npz:../../data/ood.npz', 'imagefolder:imgs', uniform, 'digits[6-9]']\n"
        "data_dir: ../../data\n"
        "runs_dir: runs\n"
    )
    monkeypatch.chdir(tmp_path / "data")
    values = read_yaml_config(Path("../configs/sub/c.yaml"))
    data = tmp_path / "data"
    assert values["dataset"] == f"npz:{data / 'id.npz'}[0-4]"
    assert values["test_dataset"] == "NPZ:/abs/test.npz"
    assert values["ood"] == [
        f"far=npz:{data / 'ood.npz'}",
        f"imagefolder:{folder / 'imgs'}",
        "uniform",
        "digits[6-9]",
    ]
    assert values["data_dir"] == str(data) and values["runs_dir"] == str(folder / "runs")


def test_a_config_works_from_another_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "project" / "configs"
    folder.mkdir(parents=True)
    images = rng.integers(0, 256, size=(60, 8, 8, 1), dtype=np.uint8)
    np.savez(tmp_path / "project" / "small.npz", x=images, y=np.arange(60) % 3)
    (folder / "train.yaml").write_text(
        "dataset: npz:../small.npz\nmethod: softmax\nepochs: 1\nweight_decay: 5e-4\ndevice: cpu\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("DISMAX_OFFLINE", "1")
    result = runner.invoke(
        app,
        ["train", "--config", str(folder / "train.yaml"), "--out", "run", "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["dataset"] == f"npz:{tmp_path / 'project' / 'small.npz'}"


def test_the_shipped_cifar10_config_finds_its_files_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = Path(__file__).resolve().parents[1]
    if not (repo.parent / "shared" / "data" / "cifar10_test.npz").is_file():
        pytest.skip("../shared/data beside the repository is absent")
    monkeypatch.chdir(tmp_path)
    values = read_yaml_config(repo / "benchmarks" / "configs" / "cifar10-cpu.yaml")
    specs = [values["dataset"], values["test_dataset"], *values["ood"]]
    for spec in specs:
        path = Path(spec.split("npz:", 1)[1])
        assert path.is_absolute() and path.is_file(), spec
