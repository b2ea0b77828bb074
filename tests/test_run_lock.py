"""One training process per run folder (a tester's fault: two `dismax train --out X` at once
both "succeeded" and mixed their epochs into one log)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from support import dismax_command

from dismax_cli.engine import TrainConfig, fit
from dismax_cli.engine.lock import lock_path, run_folder_lock
from dismax_cli.errors import DismaxError

DIGITS = TrainConfig(dataset="digits[0-5]", method="dismax", epochs=1, device="cpu")


def test_a_run_folder_held_by_another_process_is_refused_and_left_alone(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "x"
    with run_folder_lock(run):
        assert lock_path(run).exists()
        with pytest.raises(DismaxError, match=r"another dismax process is training into .*x'"):
            fit(DIGITS, run)
        assert not run.exists()  # the refused fit wrote nothing
    assert not lock_path(run).exists()  # released and removed
    fit(DIGITS, run)  # free again
    assert (run / "checkpoint.pt").is_file()


def test_a_failed_fit_leaves_no_lock_and_no_folders_it_created(tmp_path: Path) -> None:
    run = tmp_path / "a" / "b" / "run"
    bad = TrainConfig(dataset="npz:" + str(tmp_path / "absent.npz"), epochs=1, device="cpu")
    with pytest.raises(DismaxError, match="absent.npz"):
        fit(bad, run)
    assert not (tmp_path / "a").exists()


def test_two_concurrent_trainings_into_one_folder_give_one_clean_run(tmp_path: Path) -> None:
    out = tmp_path / "cc"
    env = dict(os.environ, DISMAX_OFFLINE="1", DISMAX_DATA_DIR=str(tmp_path / "data"))
    # Two real processes at once (the suite's launcher: the fork server's shim when it runs).
    base = [*dismax_command(), "train", "--dataset", "digits[0-5]"]
    args = ["--epochs", "3", "--device", "cpu", "--out", str(out), "--quiet"]
    procs = [
        subprocess.Popen(
            [*base, "--method", method, *args], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for method in ("dismax", "softmax")
    ]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    refused = next(err for code, err in results if code == 1)
    assert "another dismax process" in refused or "already holds a run" in refused, refused
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2, 3]  # one run's epochs, not two interleaved
    assert not lock_path(out).exists()
