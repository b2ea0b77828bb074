"""What the CLI shows people and CI logs: progress, Ctrl-C, table widths, escape codes, markup.

Issue 10 (items 1-6) and issue 9 (items 11, 14). Progress on a stderr that is not a terminal is
one plain line per epoch or step without escape codes; on a terminal rich draws live bars.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from support import dismax_command as command
from support import run_dismax
from typer.testing import CliRunner

from dismax_cli.benchmark import BenchmarkConfig
from dismax_cli.cli.app import app
from dismax_cli.engine import load_checkpoint, read_train_log
from dismax_cli.render import report_renderable
from dismax_cli.reports import METRICS, OOD_METRICS, Report, Stat, from_json

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
#: The CIFAR-10 report committed before intervals and --scores all (one seed, four methods).
CIFAR_REPORT = REPO / "tests" / "data" / "cifar10-cpu-v1.json"
#: User text that rich would read as markup or eat: closing tags, tag-like words, backslashes.
NASTY = ["x[/b]y", "a[in]b", "c\\[bold]d", "e\\\\f\\", "[red]g[/red]"]
EPOCH_LINE = re.compile(
    r"^(?P<label>.+): epoch (?P<epoch>\d+)/(?P<epochs>\d+)  loss (?P<loss>\d+\.\d{4})  "
    r"acc (?P<acc>\d+\.\d)%  [\d,]+ img/s  elapsed \d+:\d\d:\d\d  ETA \d+:\d\d:\d\d$"
)
STEP_LINE = re.compile(r"^\[(?P<k>\d+)/(?P<n>\d+) \d+:\d\d:\d\d\] (?P<text>.+)$")


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    env.pop("FORCE_COLOR", None)
    env.update(
        DISMAX_DATA_DIR=str(tmp_path / "data"),
        DISMAX_RUNS_DIR=str(tmp_path / "runs"),
        DISMAX_OFFLINE="1",
        OMP_NUM_THREADS="1",
        **extra,
    )
    return env


def dismax(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_dismax(*args, env=env, timeout=600)


def char_width(line: str) -> int:
    return len(line.rstrip("\n"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch DisMax run on the digits in a folder whose name rich would read as markup."""
    root = tmp_path_factory.mktemp("runs")
    run = root / "r[/b]un\\x"
    result = runner.invoke(
        app,
        ["train", "--dataset", "digits[0-5]", "--epochs", "2", "--out", str(run)],
        env={"DISMAX_OFFLINE": "1", "DISMAX_DATA_DIR": str(root / "data")},
    )
    assert result.exit_code == 0, result.output
    return run


# --------------------------------------------------------------------------- item 1, 11


def test_train_prints_one_plain_line_per_epoch_off_terminal(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = dismax(
        "train", "--dataset", "digits[0-5]", "--epochs", "3", "--out", str(run),
        env=cli_env(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr
    matches = [EPOCH_LINE.match(line) for line in proc.stderr.splitlines()]
    epochs = [m for m in matches if m]
    assert [int(m["epoch"]) for m in epochs] == [1, 2, 3]
    assert {m["epochs"] for m in epochs} == {"3"}
    # The line shows the epoch's real loss and accuracy (those of the run's log).
    log = read_train_log(run / "train_log.jsonl")
    assert [m["loss"] for m in epochs] == [f"{e.loss:.4f}" for e in log]
    assert [m["acc"] for m in epochs] == [f"{e.accuracy * 100:.1f}" for e in log]


def _read_pty(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal (stdout a pipe); return the exit code and stderr."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=600)
    os.close(master)
    assert proc.stdout is not None
    proc.stdout.close()
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")


def test_terminal_gets_live_bars_and_no_color_gets_none(tmp_path: Path) -> None:
    args = [*command(), "train", "--dataset", "digits[0-5]", "--epochs", "2", "--out"]
    code, live = _read_pty([*args, str(tmp_path / "a")], cli_env(tmp_path, TERM="xterm"))
    assert code == 0, live
    assert "\x1b[" in live and "━" in live  # a rich bar, drawn with cursor control
    code, plain = _read_pty(
        [*args, str(tmp_path / "b")], cli_env(tmp_path, TERM="xterm", NO_COLOR="1")
    )
    assert code == 0, plain
    assert "\x1b" not in plain
    assert [m["epoch"] for m in map(EPOCH_LINE.match, plain.splitlines()) if m] == ["1", "2"]


def test_quiet_silences_progress_of_every_command(trained: Path, tmp_path: Path) -> None:
    env = {"DISMAX_OFFLINE": "1", "DISMAX_DATA_DIR": str(tmp_path / "data")}
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    out = runner.invoke(
        app, ["train", "--dataset", "digits[0-5]", "--epochs", "1", "--out",
              str(tmp_path / "t"), "--quiet"], env=env,
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert not any(EPOCH_LINE.match(line) for line in out.stderr.splitlines())
    assert "trained dismax on digits[0-5]" in out.stderr  # the result still prints
    for args in (
        ["calibrate", str(run), "--quiet"],
        ["score", str(run), "--ood", "uniform", "--quiet", "--format", "json"],
        ["benchmark", "--methods", "softmax", "--epochs", "1", "--ood", "uniform",
         "--runs-dir", str(tmp_path / "runs"), "--quiet", "--format", "json"],
    ):  # fmt: skip
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 0, (args, result.output)
        lines = result.stderr.splitlines()
        assert not any(STEP_LINE.match(x) or EPOCH_LINE.match(x) for x in lines), (args, lines)
    # Without --quiet the same commands do show progress.
    loud = runner.invoke(app, ["score", str(run), "--ood", "uniform", "--format", "json"], env=env)
    assert any(STEP_LINE.match(x) for x in loud.stderr.splitlines())


def test_benchmark_prints_one_line_per_step_and_per_epoch(
    tmp_path: Path, one_timing_round: None
) -> None:
    # One timing round (conftest): the lines are read, not the speeds.
    runs = tmp_path / "r[/b]uns"
    args = ["benchmark", "--dataset", "digits[0-2]", "--methods", "softmax", "dismax", "ensemble",
            "--ensemble-size", "2", "--epochs", "2", "--seeds", "2", "--ood", "uniform",
            "--runs-dir", str(runs),
            "--format", "json"]  # fmt: skip
    env = {"DISMAX_OFFLINE": "1", "DISMAX_DATA_DIR": str(tmp_path / "data")}
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stderr
    lines = result.stderr.splitlines()
    steps = [m for m in map(STEP_LINE.match, lines) if m]
    # 1 loading + per seed (3 runs + 3 calibrations + 1 timing + 3 scorings) = 21
    assert len(steps) == 21
    assert [int(m["k"]) for m in steps] == list(range(1, 22))
    assert {m["n"] for m in steps} == {"21"}
    epochs = [m for m in map(EPOCH_LINE.match, lines) if m]
    # 3 runs per seed (softmax, dismax, ensemble member 1), 2 seeds, 2 epochs each
    assert len(epochs) == 12
    assert {m["label"] for m in epochs} == {
        "softmax s0", "dismax s0", "softmax s1000", "softmax s1", "dismax s1", "softmax s1001",
    }  # fmt: skip
    # Run again: every run is reused, and the path is printed verbatim (item 14).
    again = runner.invoke(app, args, env=env)
    assert again.exit_code == 0, again.output
    reused = [m["text"] for m in map(STEP_LINE.match, again.stderr.splitlines()) if m]
    assert sum(t.startswith("reusing ") for t in reused) == 6
    assert all(str(runs) in t for t in reused if t.startswith("reusing "))
    from dismax_cli.benchmark import benchmark_steps, score_steps

    config = BenchmarkConfig(methods=("softmax", "dismax", "ensemble"), ensemble_size=2, seeds=2)
    assert benchmark_steps(config) == 21 and score_steps(2) == 6


# --------------------------------------------------------------------------- item 2


def test_score_reports_each_set_loaded_and_scored(trained: Path, tmp_path: Path) -> None:
    env = {"DISMAX_OFFLINE": "1", "DISMAX_DATA_DIR": str(tmp_path / "data")}
    result = runner.invoke(
        app, ["score", str(trained), "--ood", "digits[6-9]", "uniform", "--format", "json"],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    n = {d["name"]: d["n"] for d in report["datasets"]}
    steps = [m for m in map(STEP_LINE.match, result.stderr.splitlines()) if m]
    assert len(steps) == 6  # the ID test split and 2 OOD sets, each loaded and scored
    assert {m["n"] for m in steps} == {"6"}
    texts = [m["text"] for m in steps]
    test_n = next(d["n"] for d in report["datasets"] if d["role"] == "test")
    assert re.fullmatch(rf"loaded ID test split digits\[0-5\]: {test_n:,} images in \d+\.\d s",
                        texts[0])  # fmt: skip
    for label in ("digits[6-9]", "uniform"):
        for verb in ("loaded", "scored"):
            pattern = rf"{verb} OOD set {re.escape(label)}: {n[label]:,} images in \d+\.\d s"
            assert any(re.fullmatch(pattern, t) for t in texts), (pattern, texts)


# --------------------------------------------------------------------------- item 3


def test_ctrl_c_during_training_names_the_saved_epoch(tmp_path: Path) -> None:
    run = tmp_path / "my run"
    proc = subprocess.Popen(
        [*command(), "train", "--dataset", "digits[0-5]", "--epochs", "400", "--out", str(run)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(tmp_path),
    )  # fmt: skip
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if EPOCH_LINE.match(line.rstrip("\n")) or not line:
            break
    assert EPOCH_LINE.match(seen[-1].rstrip("\n")), seen
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130
    epoch = load_checkpoint(run).meta.epoch
    assert 1 <= epoch < 400
    message = [x for x in rest.splitlines() if x.startswith("interrupted:")]
    assert message == [
        f"interrupted: epoch {epoch} of 400 is saved in '{run}'; continue with: "
        f"dismax train --out '{run}' --resume"
    ], rest
    assert "Traceback" not in rest


def test_ctrl_c_before_any_epoch_says_nothing_was_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dismax_cli.cli.train as train_cli
    import dismax_cli.engine as training

    def interrupted(*args: object, **kwargs: object) -> None:
        Path(str(args[1])).mkdir(parents=True)  # fit creates the folder, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "fit", interrupted)
    monkeypatch.setattr(train_cli, "fit", interrupted, raising=False)
    for name in NASTY:
        run = tmp_path / name
        result = runner.invoke(
            app, ["train", "--dataset", "digits[0-5]", "--out", str(run)],
            env={"DISMAX_OFFLINE": "1"},
        )  # fmt: skip
        assert result.exit_code == 130, result.output
        assert result.stderr.splitlines()[-1] == (
            f"interrupted: no epoch finished, so nothing was saved in '{run}': run the same "
            "command to start again"
        )
        assert not run.exists()  # the empty folder this command made is gone


def test_ctrl_c_during_benchmark_says_rerunning_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dismax_cli.benchmark as bench
    import dismax_cli.cli.benchmark as bench_cli

    def interrupted(config: object, progress: bench.BenchmarkProgress, **_: object) -> None:
        assert progress.train is not None
        progress.train("dismax s0")
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "run_benchmark", interrupted)
    monkeypatch.setattr(bench_cli, "run_benchmark", interrupted, raising=False)
    runs = tmp_path / "a[in]b"
    result = runner.invoke(app, ["benchmark", "--runs-dir", str(runs)])
    assert result.exit_code == 130, result.output
    last = result.stderr.splitlines()[-1]
    assert last.startswith("interrupted: stopped (while training dismax s0);")
    assert f"saved in '{runs}': run the same command again to resume" in last


# --------------------------------------------------------------------------- item 4


def test_scoring_an_uncalibrated_run_says_how_to_calibrate(trained: Path, tmp_path: Path) -> None:
    env = {"DISMAX_OFFLINE": "1", "DISMAX_DATA_DIR": str(tmp_path / "data")}
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    args = ["score", str(run), "--ood", "uniform", "--format", "json"]
    before = json.loads(runner.invoke(app, args, env=env).stdout)
    assert before["config"]["calibration"] is None
    hint = [n for n in before["notes"] if "never calibrated" in n]
    assert len(hint) == 1 and f"dismax calibrate {run}" in hint[0], before["notes"]
    table = runner.invoke(app, args[:-2], env={**env, "COLUMNS": "400"})
    assert "never calibrated" in table.stdout and f"dismax calibrate {run}" in table.stdout
    assert runner.invoke(app, ["calibrate", str(run)], env=env).exit_code == 0
    after = json.loads(runner.invoke(app, args, env=env).stdout)
    assert after["config"]["calibration"] is not None
    assert not any("calibrat" in n for n in after["notes"])


# --------------------------------------------------------------------------- item 5


def _multi_seed(report: Report) -> Report:
    """The CIFAR-10 report as if it had 3 seeds: every value spread around its mean."""

    def spread(stat: Stat | None) -> Stat | None:
        if stat is None:
            return None
        return Stat.of([stat.mean * 0.9, stat.mean, min(stat.mean * 1.1, 1.0)])

    methods = []
    for m in report.methods:
        methods.append(
            dataclasses.replace(
                m,
                seeds=(0, 1, 2),
                temperature=spread(m.temperature),
                id_before={k: spread(v) for k, v in m.id_before.items()},
                id_after={k: spread(v) for k, v in m.id_after.items()},
                ood=tuple(
                    dataclasses.replace(r, metrics={k: spread(v) for k, v in r.metrics.items()})
                    for r in m.ood
                ),
                efficiency=spread(m.efficiency),
                throughput_per_s=spread(m.throughput_per_s),
                train_s=spread(m.train_s),
            )
        )
    return dataclasses.replace(report, methods=tuple(methods))


def _widest_labels(report: Report) -> Report:
    """The longest method label (DisMax without FPR) and score name (neg_entropy)."""
    methods = tuple(
        dataclasses.replace(m, uses_fpr=False, default_score="neg_entropy")
        if m.method == "dismax"
        else m
        for m in report.methods
    )
    return dataclasses.replace(report, methods=methods)


@pytest.mark.parametrize("variant", ["one seed", "three seeds", "widest labels, three seeds"])
def test_every_table_fits_80_columns(variant: str) -> None:
    report = from_json(CIFAR_REPORT.read_text(encoding="utf-8"))
    if "three" in variant:
        report = _multi_seed(report)
    if "widest" in variant:
        report = _widest_labels(report)
    console = Console(width=80, color_system=None, record=True)
    with console.capture() as capture:
        console.print(report_renderable(report))
    lines = capture.get().splitlines()
    assert max(char_width(x) for x in lines) <= 80, max(lines, key=len)
    headers = ["method", "ACC %", "ECE %", "ECE T=1", "NLL T=1", "efficiency",
               "inference images/s", "training s", "score"]  # fmt: skip
    headers += [f"{k}{'↑' if METRICS[k].higher_is_better else '↓'}" for k in OOD_METRICS]
    for header in headers:  # no header is split over lines
        assert any(header in x for x in lines), header
    from dismax_cli.render import method_label

    for m in report.methods:  # no method label or score wraps
        rows = [x for x in lines if x.startswith(method_label(m) + " ")]
        assert len(rows) == 2 + len(report.ood_sets), (method_label(m), lines)
        for row in rows[2:]:
            assert row.split()[len(method_label(m).split())] == m.default_score
    for ood in report.ood_sets:  # titles are whole lines
        assert any(x.startswith(f"OOD: {ood}  (n_id 10,000") for x in lines)
    if "three" in variant:  # the deviation is shown, on its own line under the mean
        assert sum(x.strip().startswith("±") for x in lines) == 2 * len(report.methods) + sum(
            1 for _ in report.ood_sets for _ in report.methods
        )


def test_piped_tables_honour_columns(tmp_path: Path) -> None:
    for columns in (80, 100):
        proc = dismax(
            "benchmark", "show", str(CIFAR_REPORT), env=cli_env(tmp_path, COLUMNS=str(columns))
        )
        assert proc.returncode == 0, proc.stderr
        widths = [char_width(x) for x in proc.stdout.splitlines()]
        assert max(widths) <= columns
        # The 84-character "ID: npz:..." line wraps at 80 and not at 100.
        assert (max(widths) > 80) is (columns == 100)


# --------------------------------------------------------------------------- item 6


def test_datasets_default_fits_80_columns_and_long_keeps_details(tmp_path: Path) -> None:
    data_dir = tmp_path / "d[/b]at\\a"
    data_dir.mkdir(parents=True)
    env = {"COLUMNS": "80"}
    compact = runner.invoke(app, ["datasets", "--data-dir", str(data_dir)], env=env)
    assert compact.exit_code == 0, compact.output
    lines = compact.stdout.splitlines()
    # The title holds the path verbatim (it may wrap at its space, and a path longer than the
    # line is folded: pytest's temp folders are long, longer still in an xdist worker).
    assert "".join(lines[:4]).startswith(f"Datasets (data dir: {data_dir})")
    assert max(char_width(x) for x in lines) <= 80
    payload = json.loads(
        runner.invoke(app, ["datasets", "--data-dir", str(data_dir), "--format", "json"]).stdout
    )
    names = [d["name"] for d in payload["datasets"]]
    title = next(i for i, x in enumerate(lines) if x.rstrip().endswith(")")) + 1
    assert len(lines) - title <= len(names) + 4  # one line per dataset
    for d in payload["datasets"]:
        row = next(x for x in lines if x.split() and x.split()[0] == d["name"])
        kind = "SYNTHETIC" if d["synthetic"] else d["kind"]
        present = {True: "yes", False: "no", None: "-"}[d["present"]]
        assert row.split()[1:3] == [kind, present], row
    wide = runner.invoke(app, ["datasets", "--data-dir", str(data_dir), "--long"],
                         env={"COLUMNS": "400"})  # fmt: skip
    for d in payload["datasets"]:
        assert d["licence"] in wide.stdout and d["source"] in wide.stdout


# --------------------------------------------------------------------------- item 14


@pytest.mark.parametrize("text", NASTY)
def test_messages_show_user_text_verbatim(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    from dismax_cli.cli.common import say

    say(f"reusing softmax seed 0 from /tmp/{text}")
    assert capsys.readouterr().err == f"reusing softmax seed 0 from /tmp/{text}\n"


def test_bracketed_paths_are_printed_verbatim_everywhere(trained: Path, tmp_path: Path) -> None:
    env = {"DISMAX_OFFLINE": "1", "DISMAX_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "300"}
    rng = np.random.default_rng(0)
    specs = []
    for i, name in enumerate(NASTY):
        folder = tmp_path / name
        folder.mkdir(parents=True)
        np.savez(folder / "o.npz", x=rng.integers(0, 256, (20 + i, 8, 8, 1), dtype=np.uint8))
        specs.append(f"npz:{folder / 'o.npz'}")
    result = runner.invoke(app, ["score", str(trained), "--ood", *specs], env=env)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "MarkupError" not in result.output
    for i, spec in enumerate(specs):
        assert f"OOD: {spec}  (n_id " in result.stdout
        assert f"loaded OOD set {spec}: {20 + i:,} images" in result.stderr
    out = tmp_path / "t[/b]\\"
    trained_out = runner.invoke(
        app, ["train", "--dataset", "digits[0-5]", "--epochs", "1", "--out", str(out)], env=env
    )
    assert trained_out.exit_code == 0, trained_out.output
    assert f"into {out}" in trained_out.stderr
    again = runner.invoke(app, ["train", "--out", str(out), "--resume"], env=env)
    assert f"{out} is already finished: nothing to do" in again.stderr
