"""Output-path faults of the session-4 tester's report (items 1, 2, 4, 5, 6, 7, 12, 13).

Every path a command writes is checked once, before any work, against what it reads and each
other (:func:`dismax_cli.output_check.check_output_plan`); the writes are all or nothing
(:class:`dismax_cli.output_set.OutputSet`), through symbolic links, keeping a replaced file's
mode; SIGTERM rolls back as Ctrl-C does (README "Design notes", *Output paths*).
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from support import dismax_command, invoke_in, offline_env
from typer.testing import CliRunner

from dismax_cli.cli.app import app
from dismax_cli.output_set import OutputSet

runner = CliRunner()
BENCH = ["benchmark", "--epochs", "1", "--methods", "softmax", "--bootstrap", "0", "-q"]


def error_line(result) -> str:
    """The one error line; never a traceback or an internal error."""
    assert "Traceback" not in result.output and "internal error" not in result.output, (
        result.output
    )
    lines = [line for line in result.output.splitlines() if "error" in line.lower()]
    assert lines, result.output
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a trained run ``r1``, one benchmark run in ``runs/`` and its report
    ``base.json`` + ``base.samples.npz``."""
    home = tmp_path_factory.mktemp("outs")
    train = ["train", "--dataset", "digits[0-5]", "--epochs", "1", "--out", "r1", "-q"]
    result = invoke_in(home, *train)
    assert result.exit_code == 0, result.output
    result = invoke_in(home, *BENCH, "--out", "base.json")
    assert result.exit_code == 0, result.output
    return home


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>")
        for p in sorted(folder.rglob("*"))
        if not p.is_symlink()
    }


# ----------------------------------------------------------------------------- item 1


def test_the_per_sample_file_never_overwrites_an_input(home: Path, no_work: None) -> None:
    data = home / "d.samples.npz"
    np.savez(data, x=np.zeros((4, 8, 8, 1), np.uint8), y=np.zeros(4, np.int64))
    before = data.read_bytes()
    result = invoke_in(home, *BENCH, "--ood", "npz:d.samples.npz", "--out", "d.json")
    assert result.exit_code == 2 and "would overwrite" in error_line(result)
    assert data.read_bytes() == before and not (home / "d.json").exists()
    config = home / "cfg2.samples.npz"
    config.write_text("epochs: 1\nmethods: [softmax]\nbootstrap: 0\n")
    result = invoke_in(home, "benchmark", "--config", str(config), "--out", "cfg2.json", "-q")
    assert result.exit_code == 2 and "would overwrite" in error_line(result)
    assert config.read_text().startswith("epochs: 1")


def test_benchmark_out_never_overwrites_a_run_folder_file(home: Path, no_work: None) -> None:
    (run,) = [p for p in (home / "runs").iterdir() if p.is_dir()]
    for name in ("checkpoint.pt", "train_log.jsonl"):
        before = (run / name).read_bytes()
        result = invoke_in(home, *BENCH, "--out", str(run / name))
        assert result.exit_code == 2 and "would overwrite" in error_line(result), name
        assert (run / name).read_bytes() == before


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("benchmark", ["--out", "Q/pr-uniform.png", "--plots", "Q"]),
        ("benchmark", ["--out", "c.json", "--plots", "Q", "--html", "Q/roc-uniform.png"]),
        ("benchmark", ["--out", "Q/risk-coverage.png", "--plots", "Q"]),
        ("show", ["--plots", "Q", "--html", "Q/hist-softmax-uniform.png"]),
    ],
)
def test_no_output_lands_on_a_plot_name(home: Path, no_work: None, command, args) -> None:
    (home / "Q").mkdir(exist_ok=True)
    before = _snapshot(home)
    prefix = BENCH if command == "benchmark" else ["show", "base.json"]
    result = invoke_in(home, *prefix, *args)
    assert result.exit_code == 2 and "with a plot" in error_line(result)
    assert _snapshot(home) == before


def test_show_never_draws_a_plot_over_its_input_report(home: Path) -> None:
    folder = home / "P8"
    folder.mkdir()
    (folder / "risk-coverage.png").write_bytes((home / "base.json").read_bytes())
    (folder / "base.samples.npz").write_bytes((home / "base.samples.npz").read_bytes())
    before = _snapshot(folder)
    result = invoke_in(home, "show", "P8/risk-coverage.png", "--plots", "P8")
    assert result.exit_code == 2 and "with a plot" in error_line(result)
    assert _snapshot(folder) == before


# ----------------------------------------------------------------------------- item 2


@pytest.mark.parametrize("value", ["", " "])
@pytest.mark.parametrize(
    ("command", "option"),
    [("benchmark", "--plots"), ("benchmark", "--out"), ("benchmark", "--html"),
     ("show", "--plots"), ("show", "--html"), ("score", "--out"), ("score", "--dump")],
)  # fmt: skip
def test_an_empty_output_value_is_a_usage_error(
    tmp_path: Path, home: Path, command: str, option: str, value: str
) -> None:
    work = tmp_path / "w"
    work.mkdir()
    prefix = {
        "benchmark": BENCH,
        "show": ["show", str(home / "base.json")],
        "score": ["score", str(home / "r1"), "--ood", "uniform"],
    }[command]
    cwd = os.getcwd()
    os.chdir(work)
    try:
        result = runner.invoke(app, [*prefix, option, value], env=offline_env(home))
    finally:
        os.chdir(cwd)
    assert result.exit_code == 2, result.output
    assert option in result.output and "empty" in result.output
    assert list(work.iterdir()) == []


# ----------------------------------------------------------------------------- item 4


@pytest.mark.parametrize(
    "args",
    [
        [*BENCH, "--out", "l1.json"],
        [*BENCH, "--html", "l1.json"],
        [*BENCH, "--plots", "l1.json"],
        ["show", "base.json", "--html", "l1.json"],
        ["show", "base.json", "--plots", "l1.json"],
        ["score", "r1", "--ood", "uniform", "--out", "l1.json"],
        ["score", "r1", "--ood", "uniform", "--dump", "l1.json"],
    ],
)
def test_a_symlink_loop_as_output_is_one_line(home: Path, no_work: None, args) -> None:
    for a, b in (("l1.json", "l2.json"), ("l2.json", "l1.json")):
        if not (home / a).is_symlink():
            (home / a).symlink_to(b)
    result = invoke_in(home, *args)
    assert result.exit_code == 2
    assert "cannot write" in error_line(result) and "symbolic link loop" in result.output


# ----------------------------------------------------------------------------- item 5


def test_unusable_outputs_are_refused_before_any_work(home: Path, no_work: None) -> None:
    (home / "c.samples.npz").mkdir(exist_ok=True)
    cases = {
        ("--plots", "base.json/sub"): "is a file, not a folder",
        ("--out", "base.json/r.json"): "is a file, not a folder",
        ("--out", "c.json"): "'c.samples.npz' is a folder",
        ("--out", "a" * 250 + ".json"): "too long for the file system",
        ("--html", "b" * 256 + ".html"): "too long for the file system",
        ("--plots", "nope/" + "p" * 256): "too long for the file system",
        ("--out", "dangling.json"): "where the link points",
    }
    (home / "dangling.json").unlink(missing_ok=True)
    (home / "dangling.json").symlink_to("nowhere/x.json")
    for (option, value), needle in cases.items():
        result = invoke_in(home, *BENCH, option, value)
        assert result.exit_code == 2 and needle in error_line(result), (option, value)
    assert not (home / "nope").exists()


def test_a_read_only_folder_is_refused_before_any_work(
    home: Path, no_work: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    (home / "ro").mkdir(exist_ok=True)
    real_access = os.access
    read_only = str(home / "ro")

    def access(path: object, mode: int, **kwargs: object) -> bool:  # a read-only mount
        if str(path) == read_only and mode & os.W_OK:
            return False
        return real_access(path, mode, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)
    for option, value in (("--plots", "ro/plots"), ("--out", "ro/r.json"), ("--html", "ro/p")):
        result = invoke_in(home, *BENCH, option, value)
        assert result.exit_code == 2 and "is not writable" in error_line(result), option
    result = invoke_in(home, "score", "r1", "--ood", "uniform", "--dump", "ro/d.npz")
    assert result.exit_code == 2 and "is not writable" in error_line(result)


def test_output_set_writes_through_a_link_and_keeps_the_mode(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "r.json").write_text("old")
    os.chmod(real / "r.json", 0o600)
    link = tmp_path / "out.json"
    link.symlink_to("real/r.json")
    dangling = tmp_path / "new.json"
    dangling.symlink_to("real/fresh.json")
    outputs = OutputSet()
    outputs.add(link, b"new", "--out")
    outputs.add(dangling, b"fresh", "--html")
    outputs.commit()
    assert link.is_symlink() and (real / "r.json").read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(real / "r.json").st_mode) == 0o600  # item 13
    assert dangling.is_symlink() and (real / "fresh.json").read_bytes() == b"fresh"


def test_output_set_temp_names_fit_the_file_system(tmp_path: Path) -> None:
    name = "a" * 250 + ".json"  # 255 bytes: fits; ".NAME.XXXXXXXX.tmp" would not
    outputs = OutputSet()
    outputs.add(tmp_path / name, b"{}", "--out")
    outputs.commit()
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_output_set_refuses_two_names_for_one_file(tmp_path: Path) -> None:
    from dismax_cli.errors import DismaxError

    (tmp_path / "link.json").symlink_to("r.json")
    outputs = OutputSet()
    outputs.add(tmp_path / "r.json", b"one", "--out")
    outputs.add(tmp_path / "link.json", b"two", "--html")
    with pytest.raises(DismaxError, match="both name one file"):
        outputs.commit()
    assert not (tmp_path / "r.json").exists()


def test_benchmark_through_a_link_puts_the_per_sample_file_beside_the_target(
    home: Path,
) -> None:
    (home / "real").mkdir()
    (home / "links").mkdir()
    (home / "real" / "r.json").write_text("old")
    os.chmod(home / "real" / "r.json", 0o600)
    (home / "links" / "out.json").symlink_to("../real/r.json")
    result = invoke_in(home, *BENCH, "--out", "links/out.json")
    assert result.exit_code == 0, result.output
    assert (home / "links" / "out.json").is_symlink()
    assert (home / "real" / "r.json").read_text().startswith("{")
    assert stat.S_IMODE(os.stat(home / "real" / "r.json").st_mode) == 0o600  # item 13
    assert (home / "real" / "r.samples.npz").is_file()
    assert not (home / "links" / "out.samples.npz").exists()
    result = invoke_in(home, "show", "links/out.json", "--plots", "PL")  # finds its samples
    assert result.exit_code == 0, result.output


# ----------------------------------------------------------------------------- item 6


def test_score_out_and_dump_are_all_or_nothing(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (home / "d.npz").write_bytes(b"OLD")
    real_replace = os.replace
    full = str(home / "s.json")

    def replace(src: object, dst: object, **kwargs: object) -> None:  # a full disk at --out
        if os.fspath(dst) in (full, "s.json"):  # type: ignore[arg-type]
            raise OSError(errno.ENOSPC, "No space left on device", os.fspath(dst))  # type: ignore[arg-type]
        real_replace(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", replace)
    args = ["score", "r1", "--ood", "uniform", "--out", "s.json", "--dump", "d.npz", "-q"]
    result = invoke_in(home, *args)
    assert result.exit_code == 1 and "No space left" in error_line(result)
    assert (home / "d.npz").read_bytes() == b"OLD" and not (home / "s.json").exists()
    assert not [p for p in home.iterdir() if p.name.endswith((".tmp", ".old"))]


# ----------------------------------------------------------------------------- item 12


def test_a_fifo_as_out_gets_no_per_sample_file_beside_it(home: Path) -> None:
    fifo = home / "pipe.json"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = invoke_in(home, *BENCH, "--out", "pipe.json")
    reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert got and got[0].startswith(b"{") and b'"per_sample": null' in got[0]
    assert not (home / "pipe.samples.npz").exists()
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


# ----------------------------------------------------------------------------- item 7


def test_sigterm_while_writing_leaves_nothing_and_exits_143(home: Path) -> None:
    work = home / "term"
    work.mkdir()
    os.mkfifo(work / "ff.html")  # the page blocks until read: SIGTERM arrives mid-commit
    args = [*BENCH, "--out", "c.json", "--plots", "pl", "--html", "ff.html"]
    proc = subprocess.Popen(
        [*dismax_command(), *args], cwd=work, env={**os.environ, **offline_env(home)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not list(work.glob(".c.json.*.tmp")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    assert list(work.glob(".c.json.*.tmp")), "the report was never staged"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert b"Traceback" not in stderr
    assert sorted(p.name for p in work.iterdir()) == ["ff.html"]


def test_sigterm_in_a_command_unwinds_like_ctrl_c_and_exits_143() -> None:
    import typer

    from dismax_cli.output_check import Terminated, terminate_cleanly

    before = signal.getsignal(signal.SIGTERM)
    unwound: list[bool] = []
    with pytest.raises(typer.Exit) as info, terminate_cleanly():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this
        except KeyboardInterrupt as exc:  # what Ctrl-C handlers (training's) catch
            unwound.append(isinstance(exc, Terminated))
            raise
    assert info.value.exit_code == 143 and unwound == [True]
    assert signal.getsignal(signal.SIGTERM) is before


def test_out_dev_stdout_on_a_pipe_is_written_directly(home: Path) -> None:
    """``/dev/stdout`` links to ``pipe:[N]``, no real name: it is written, not resolved.

    With the table format (under ``--format json`` stdout carries the report alone and an
    output there is refused: tests/test_plot_output_faults.py, session 5 item 19)."""
    proc = subprocess.run(
        [*dismax_command(), *BENCH, "--out", "/dev/stdout"],
        cwd=home, env={**os.environ, **offline_env(home)}, capture_output=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"{") and proc.stdout.count(b'"kind": "benchmark"') == 1
    assert b"In-distribution" in proc.stdout.split(b"\n}\n", 1)[1]  # then the table
    assert not Path("/dev/stdout.samples.npz").exists()  # item 12: none beside a device


@pytest.mark.parametrize("option", ["--out", "--html", "--plots"])
def test_no_output_goes_into_a_dataset_folder_it_reads(
    home: Path, no_work: None, option: str
) -> None:
    images = home / "imgs" / "a"
    images.mkdir(parents=True, exist_ok=True)
    before = _snapshot(home / "imgs")
    result = invoke_in(home, *BENCH, "--ood", "imagefolder:imgs", option, "imgs/a/new")
    assert result.exit_code == 2 and "which this command reads" in error_line(result)
    assert _snapshot(home / "imgs") == before
