"""Checkpoint loading faults: refused pickles and state dicts that do not fit the model.

Every command that reads a checkpoint (score, calibrate, train --resume, benchmark reuse) must
answer a damaged one with one line that names what is wrong, never a traceback.
"""

from __future__ import annotations

import collections
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dismax_cli.cli.app import app
from dismax_cli.engine import CHECKPOINT_NAME, TrainConfig, fit, load_payload
from dismax_cli.errors import DismaxError

runner = CliRunner()
SPEC = "digits[0-5]"


class _Custom:
    """A class of this test module: weights-only loading must refuse it."""


class _OrderedSub(collections.OrderedDict):
    """An OrderedDict subclass: weights-only loading allows OrderedDict, not its subclasses."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A finished and an unfinished tiny real DisMax run on the digits."""
    root = tmp_path_factory.mktemp("ckpt")
    cfg = TrainConfig(dataset=SPEC, method="dismax", model="convnet", epochs=2, device="cpu")
    fit(cfg, root / "finished")
    fit(cfg, root / "unfinished", stop_after_epoch=1)
    return {"finished": root / "finished", "unfinished": root / "unfinished"}


def _one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text and "\x1b" not in text
    return lines[0]


# --------------------------------------------------------------------- item 8: refused pickles


@pytest.mark.parametrize(
    ("value", "global_name"),
    [
        (np.float64(0.5), "numpy._core.multiarray.scalar"),
        (np.zeros(3), "numpy._core.multiarray._reconstruct"),
        (_Custom(), f"{__name__}._Custom"),
        (_OrderedSub(a=1), f"{__name__}._OrderedSub"),
        (print, "print"),
    ],
    ids=["numpy-scalar", "numpy-array", "custom-class", "ordereddict-subclass", "builtin"],
)
def test_a_refused_global_is_named_on_one_line(
    tmp_path: Path, runs: dict[str, Path], value: object, global_name: str
) -> None:
    payload = load_payload(runs["finished"])
    payload["extra"] = value
    path = tmp_path / "refused.pt"
    torch.save(payload, path)
    with pytest.raises(DismaxError) as info:
        load_payload(path)
    message = str(info.value)
    if global_name.startswith("numpy._core") and np.__version__.startswith("1."):
        global_name = global_name.replace("numpy._core", "numpy.core")
    assert f"'{global_name}'" in message
    assert "is not a dismax checkpoint" in message
    assert "truncated or corrupted" not in message  # the file is intact: no wrong diagnosis
    assert "\n" not in message and "\x1b" not in message and "[1m" not in message
    assert message.endswith("writes")  # the sentence is whole, not cut at a character count


def test_a_refused_global_with_escape_codes_in_its_name_prints_none(tmp_path: Path) -> None:
    base = tmp_path / "base.pt"
    torch.save({"format": "dismax-checkpoint"}, base)
    crafted = tmp_path / "crafted.pt"
    with zipfile.ZipFile(base) as src, zipfile.ZipFile(crafted, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("/data.pkl"):  # GLOBAL "ev<ESC>[31mil<BEL>" "fn"
                data = b"\x80\x02cev\x1b[31mil\x07\nfn\n."
            dst.writestr(info, data)
    with pytest.raises(DismaxError, match="is not a dismax checkpoint") as info:
        load_payload(crafted)
    message = str(info.value)
    assert "\x1b" not in message and "\x07" not in message and "\n" not in message
    assert "'evil\\x07.fn'" in message  # the control character shown escaped, once


def test_a_refused_global_through_score_is_one_line(tmp_path: Path, runs: dict[str, Path]) -> None:
    payload = load_payload(runs["finished"])
    payload["calibration"] = {"temperature": np.float32(0.1)}
    path = tmp_path / "refused.pt"
    torch.save(payload, path)
    result = runner.invoke(app, ["score", str(path), "--ood", "uniform"])
    assert result.exit_code == 1
    line = _one_line(result.stderr)
    assert "numpy" in line and "scalar" in line and "not a dismax checkpoint" in line


def test_an_unreadable_file_keeps_a_whole_sentence_without_escape_codes(tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(b"PK\x03\x04" + bytes(64))
    with pytest.raises(DismaxError, match="not a readable dismax checkpoint") as info:
        load_payload(path)
    message = str(info.value)
    assert "\n" not in message and "\x1b" not in message
    reason = re.search(r"corrupted: (.*)\); retrain", message)
    assert reason is not None and reason.group(1).strip()


def test_the_torch_floor_has_a_safe_weights_only_loader() -> None:
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    floor = re.search(r'"torch>=(\d+)\.(\d+)', text)
    vision = re.search(r'"torchvision>=0\.(\d+)', text)
    assert floor is not None and vision is not None
    # CVE-2025-32434: torch.load(weights_only=True) could run code up to torch 2.5.1.
    assert (int(floor.group(1)), int(floor.group(2))) >= (2, 6)
    assert int(vision.group(1)) >= 21  # the torchvision release built for torch 2.6


# --------------------------------------------------------------- item 9: state-dict mismatches


def _drop_prototypes(state: dict[str, torch.Tensor]) -> None:
    del state["head.prototypes"]


def _add_key(state: dict[str, torch.Tensor]) -> None:
    state["head.extra_bias"] = torch.zeros(6)


def _reshape(state: dict[str, torch.Tensor]) -> None:
    state["head.prototypes"] = state["head.prototypes"][:, :-1].clone()


EDITS: list[tuple[str, Callable[[dict[str, torch.Tensor]], None], tuple[str, ...]]] = [
    ("missing", _drop_prototypes, ("missing", "head.prototypes")),
    ("unexpected", _add_key, ("unexpected", "head.extra_bias")),
    ("misshaped", _reshape, ("wrong shape", "head.prototypes")),
]


def _edited_copy(run: Path, dest: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> Path:
    shutil.copytree(run, dest)
    payload = load_payload(dest)
    edit(payload["state_dict"])
    torch.save(payload, dest / CHECKPOINT_NAME)
    return dest


def _check_message(line: str, fragments: tuple[str, ...], payload_shape: tuple[int, ...]) -> None:
    for fragment in fragments:
        assert fragment in line, line
    if fragments[0] == "wrong shape":
        wanted = (payload_shape[0], payload_shape[1] - 1)
        assert f"{wanted}" in line and f"{payload_shape}" in line, line


@pytest.mark.parametrize(("kind", "edit", "fragments"), EDITS, ids=[e[0] for e in EDITS])
def test_score_names_the_bad_keys(
    tmp_path: Path, runs: dict[str, Path], kind: str, edit, fragments: tuple[str, ...]
) -> None:
    shape = tuple(load_payload(runs["finished"])["state_dict"]["head.prototypes"].shape)
    run = _edited_copy(runs["finished"], tmp_path / kind, edit)
    result = runner.invoke(app, ["score", str(run), "--ood", "uniform"])
    assert result.exit_code == 1, result.output
    _check_message(_one_line(result.stderr), fragments, shape)


@pytest.mark.parametrize(("kind", "edit", "fragments"), EDITS, ids=[e[0] for e in EDITS])
def test_calibrate_names_the_bad_keys_and_leaves_the_file(
    tmp_path: Path, runs: dict[str, Path], kind: str, edit, fragments: tuple[str, ...]
) -> None:
    shape = tuple(load_payload(runs["finished"])["state_dict"]["head.prototypes"].shape)
    run = _edited_copy(runs["finished"], tmp_path / kind, edit)
    before = (run / CHECKPOINT_NAME).read_bytes()
    result = runner.invoke(app, ["calibrate", str(run)])
    assert result.exit_code == 1, result.output
    _check_message(_one_line(result.stderr), fragments, shape)
    assert (run / CHECKPOINT_NAME).read_bytes() == before


@pytest.mark.parametrize(("kind", "edit", "fragments"), EDITS, ids=[e[0] for e in EDITS])
def test_train_resume_names_the_bad_keys(
    tmp_path: Path, runs: dict[str, Path], kind: str, edit, fragments: tuple[str, ...]
) -> None:
    shape = tuple(load_payload(runs["unfinished"])["state_dict"]["head.prototypes"].shape)
    run = _edited_copy(runs["unfinished"], tmp_path / kind, edit)
    before = (run / CHECKPOINT_NAME).read_bytes()
    result = runner.invoke(app, ["train", "--out", str(run), "--resume"])
    assert result.exit_code == 1, result.output
    line = _one_line(result.stderr)
    _check_message(line, fragments, shape)
    assert str(run / CHECKPOINT_NAME) in line
    assert (run / CHECKPOINT_NAME).read_bytes() == before


def _drop_optimizer(payload: dict) -> None:
    del payload["optimizer"]


def _shrink_momentum(payload: dict) -> None:
    buffers = [v for v in payload["optimizer"]["state"].values() if "momentum_buffer" in v]
    buffers[0]["momentum_buffer"] = buffers[0]["momentum_buffer"].flatten()[:3].clone()


def _drop_param_group(payload: dict) -> None:
    payload["optimizer"]["param_groups"] = []


OPTIMIZER_EDITS = [
    ("no-optimizer", _drop_optimizer, "holds no optimizer state"),
    ("momentum-shape", _shrink_momentum, "momentum_buffer of parameter"),
    ("no-param-groups", _drop_param_group, "optimizer state does not fit"),
]


@pytest.mark.parametrize(
    ("kind", "edit", "fragment"), OPTIMIZER_EDITS, ids=[e[0] for e in OPTIMIZER_EDITS]
)
def test_train_resume_names_a_damaged_optimizer_state(
    tmp_path: Path, runs: dict[str, Path], kind: str, edit, fragment: str
) -> None:
    run = tmp_path / kind
    shutil.copytree(runs["unfinished"], run)
    payload = load_payload(run)
    edit(payload)
    torch.save(payload, run / CHECKPOINT_NAME)
    before = (run / CHECKPOINT_NAME).read_bytes()
    result = runner.invoke(app, ["train", "--out", str(run), "--resume"])
    assert result.exit_code == 1, result.output
    line = _one_line(result.stderr)
    assert fragment in line and "cannot be resumed" in line, line
    assert (run / CHECKPOINT_NAME).read_bytes() == before


def test_benchmark_reuse_names_the_bad_keys(tmp_path: Path) -> None:
    args = [
        "benchmark", "--dataset", SPEC, "--ood", "uniform", "--methods", "dismax",
        "--epochs", "1", "--seeds", "1", "--device", "cpu", "--runs-dir", str(tmp_path / "runs"),
        "--format", "json",
    ]  # fmt: skip
    env = {"DISMAX_OFFLINE": "1", "DISMAX_DATA_DIR": str(tmp_path / "data")}
    first = runner.invoke(app, args, env=env)
    assert first.exit_code == 0, first.output
    (run,) = (tmp_path / "runs").iterdir()
    shape = tuple(load_payload(run)["state_dict"]["head.prototypes"].shape)
    pristine = (run / CHECKPOINT_NAME).read_bytes()
    for kind, edit, fragments in EDITS:
        (run / CHECKPOINT_NAME).write_bytes(pristine)
        payload = load_payload(run)
        edit(payload["state_dict"])
        torch.save(payload, run / CHECKPOINT_NAME)
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 1, (kind, result.output)
        assert "Traceback" not in result.output
        line = result.stderr.strip().splitlines()[-1]  # after the benchmark's progress lines
        assert line.startswith("error"), line
        _check_message(line, fragments, shape)
        assert str(run) in line, line


# ------------------------------------------------------------------ a full disk while saving


def _disk_full_on_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fsync of a file being written fails as on a full disk (the data never lands)."""
    import errno
    import os

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)


def test_train_on_a_full_disk_is_one_line_and_leaves_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first checkpoint cannot be written: one line with the system's reason, and the run
    folder this command made (its log already said epoch 1) goes again, so the same command
    works once there is space (not "not empty and holds no run")."""
    from support import invoke_in

    _disk_full_on_fsync(monkeypatch)
    result = invoke_in(tmp_path, "train", "--epochs", "1", "--out", "run", "-q")
    monkeypatch.undo()
    assert result.exit_code == 1
    line = _one_line(result.output)
    assert line == (
        "error: cannot write 'run/checkpoint.pt': No space left on device; free space there "
        "(or choose another folder) and run the command again"
    )
    assert not (tmp_path / "run").exists()
    again = invoke_in(tmp_path, "train", "--epochs", "1", "--out", "run", "-q")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "run" / CHECKPOINT_NAME).is_file()


def test_train_on_a_full_disk_into_an_empty_folder_leaves_it_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An --out folder the user made empty stays, and empty: the log of the epoch that was
    never saved goes, so "run the command again" works (it was refused as "not empty")."""
    from support import invoke_in

    (tmp_path / "run").mkdir()
    _disk_full_on_fsync(monkeypatch)
    result = invoke_in(tmp_path, "train", "--epochs", "1", "--out", "run", "-q")
    monkeypatch.undo()
    assert result.exit_code == 1 and "No space left on device" in result.output
    assert list((tmp_path / "run").iterdir()) == []
    again = invoke_in(tmp_path, "train", "--epochs", "1", "--out", "run", "-q")
    assert again.exit_code == 0, again.output


def test_calibrate_on_a_full_disk_keeps_the_checkpoint(
    tmp_path: Path, runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from support import invoke_in

    run = tmp_path / "run"
    shutil.copytree(runs["finished"], run)
    before = (run / CHECKPOINT_NAME).read_bytes()
    _disk_full_on_fsync(monkeypatch)
    result = invoke_in(tmp_path, "calibrate", "run", "-q")
    monkeypatch.undo()
    assert result.exit_code == 1
    assert _one_line(result.output).startswith(
        "error: cannot write 'run/checkpoint.pt': No space left on device"
    )
    assert (run / CHECKPOINT_NAME).read_bytes() == before
    names = sorted(p.name for p in runs["finished"].iterdir())
    assert sorted(p.name for p in run.iterdir()) == names  # no temporary file left


def test_a_folder_left_before_the_first_checkpoint_says_resume_trains_it(tmp_path: Path) -> None:
    """A run killed between its first log line and its first checkpoint leaves only the log:
    without --resume that is refused, naming --resume, which then trains it from the start."""
    from support import invoke_in

    run = tmp_path / "run"
    run.mkdir()
    (run / "train_log.jsonl").write_text('{"epoch": 1, "loss": 1.0}\n')
    refused = invoke_in(tmp_path, "train", "--epochs", "1", "--out", "run", "-q")
    assert refused.exit_code == 2
    line = _one_line(refused.output)
    assert line.startswith("error: folder 'run' is not empty and holds no run (checkpoint.pt)")
    assert "holding only train_log.jsonl, trains from the start with --resume" in line
    resumed = invoke_in(tmp_path, "train", "--epochs", "1", "--out", "run", "--resume", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert (run / CHECKPOINT_NAME).is_file()


def test_a_train_log_with_bytes_that_are_not_utf8_keeps_its_readable_lines(tmp_path: Path) -> None:
    from dismax_cli.engine import read_train_log

    good = (
        '{"epoch": 1, "loss": 0.5, "accuracy": 0.9, "lr": 0.1, "seconds": 1.0, '
        '"images_per_s": 9.0}'
    )
    log = tmp_path / "train_log.jsonl"
    log.write_bytes(good.encode() + b"\n\xff\xfe garbage\n")
    (entry,) = read_train_log(log)
    assert (entry.epoch, entry.loss, entry.accuracy) == (1, 0.5, 0.9)
