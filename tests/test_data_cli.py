"""``dismax datasets``: the registry listing as a table and as JSON, in-process and as a process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from support import run_dismax
from typer.testing import CliRunner

from dismax_cli.cli.app import app

NAMES = {
    "cifar10", "cifar100", "svhn", "mnist", "fashion_mnist", "textures", "tin_crop",
    "tin_resize", "lsun_crop", "lsun_resize", "isun", "digits", "gaussian", "uniform",
    "npz:PATH", "imagefolder:PATH", "imagenet1k", "imagenet_o",
}  # fmt: skip


def test_datasets_json_lists_registry_and_presence(tmp_path: Path) -> None:
    (tmp_path / "odin").mkdir()
    (tmp_path / "odin" / "lsun_resize.npz").write_bytes(b"")
    result = CliRunner().invoke(
        app, ["datasets", "--format", "json", "--data-dir", str(tmp_path)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["data_dir"] == str(tmp_path)
    rows = {r["name"]: r for r in payload["datasets"]}
    assert set(rows) == NAMES
    assert rows["digits"]["present"] is True and rows["cifar10"]["present"] is False
    assert rows["lsun_resize"]["present"] is True and rows["isun"]["present"] is False
    assert rows["gaussian"]["synthetic"] and "SYNTHETIC" in rows["uniform"]["source"]
    assert "imagenet_resize" in rows["tin_resize"]["aliases"]
    assert "0f9ff11d45babf2eff5fe12281d1ac31" in rows["tin_resize"]["source"]
    assert rows["npz:PATH"]["present"] is None
    assert rows["imagenet1k"]["present"] is False  # read from a user folder, never downloaded
    assert rows["imagenet1k"]["location"] == str(tmp_path / "imagenet1k")
    for row in rows.values():
        assert row["licence"] and row["size"] and row["source"]


def test_datasets_table_and_env_data_dir(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["datasets"], env={"DISMAX_DATA_DIR": str(tmp_path), "COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    assert str(tmp_path) in result.stdout
    for fragment in ("digits", "tin_resize", "SYNTHETIC", "present", "licence"):
        assert fragment in result.stdout


def test_datasets_bad_data_dir_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    result = CliRunner().invoke(app, ["datasets", "--data-dir", str(tmp_path / "f")])
    assert result.exit_code == 1
    assert "is a file" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_datasets_runs_as_a_real_process(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    np.savez(tmp_path / "cache" / "mnist_test.npz", x=np.zeros((1, 1, 1, 1), np.uint8))
    env = {**os.environ, "DISMAX_DATA_DIR": str(tmp_path), "DISMAX_OFFLINE": "1"}
    out = run_dismax("datasets", "--format", "json", env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)["datasets"]}
    assert rows["mnist"]["present"] is False  # the train part is still missing
    assert rows["digits"]["present"] is True
