"""The README's examples run as written, and its sample output is what a fresh run prints.

A fenced ``bash`` block right after ``<!-- readme-test: NAME -->`` is run line by line (with
``\\`` continuations) in a fresh folder laid out like a checkout (``benchmarks/`` beside it,
``../shared`` above it), offline, and must exit 0. A plain block after
``<!-- readme-output: NAME -->`` must equal the stdout of block NAME at 80 columns, except the
numbers of the ``Cost`` table (timings differ from run to run and machine to machine). A
``python`` block after ``<!-- readme-python: NAME -->`` is executed in that folder by the test
that names it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHARED = ROOT.parent / "shared"
MARKER = re.compile(r"^<!-- readme-(test|output|python): ([\w-]+) -->$")


def readme_blocks() -> dict[tuple[str, str], str]:
    """``{(kind, name): block text}`` for every marked fenced block of the README."""
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks: dict[tuple[str, str], str] = {}
    for i, line in enumerate(lines):
        match = MARKER.match(line.strip())
        if not match:
            continue
        assert lines[i + 1].startswith("```"), f"README line {i + 2}: a fence must follow {line}"
        end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
        key = (match.group(1), match.group(2))
        assert key not in blocks, f"README marks {key} twice"
        blocks[key] = "\n".join(lines[i + 2 : end]) + "\n"
    return blocks


BLOCKS = readme_blocks()


def commands(block: str) -> list[str]:
    """The block's shell commands: ``\\`` continuations joined, comments and blanks dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [c for c in (line.strip() for line in joined.splitlines()) if c and c[0] != "#"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, default_benchmark_env: dict) -> dict:
    """A folder laid out like a checkout; the session's runs folder of the default benchmark."""
    top = tmp_path_factory.mktemp("readme")
    work = top / "work"
    work.mkdir()
    (work / "benchmarks").symlink_to(ROOT / "benchmarks")
    if SHARED.is_dir():
        (top / "shared").symlink_to(SHARED)
    return {"cwd": work, "env": dict(default_benchmark_env), "stdout": {}}


def run_block(name: str, workdir: dict) -> str:
    """Run README block ``name``; return the stdout of its commands (they must all exit 0)."""
    out = []
    for command in commands(BLOCKS[("test", name)]):
        if command.split()[0] == "jq" and shutil.which("jq") is None:
            pytest.skip("jq is not installed (.ci/run installs it)")
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=workdir["cwd"],
            env=workdir["env"],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, f"README command failed: {command}\n{proc.stderr[-2000:]}"
        assert "Traceback" not in proc.stderr
        out.append(proc.stdout)
    text = "".join(out)
    workdir["stdout"][name] = text
    return text


def test_every_marked_output_has_its_command_block() -> None:
    assert {name for kind, name in BLOCKS if kind == "output"} <= {
        name for kind, name in BLOCKS if kind == "test"
    }
    assert ("test", "quickstart") in BLOCKS and ("test", "ci-gate") in BLOCKS


def _masked(text: str) -> list[str]:
    """Lines without trailing blanks; numbers of the Cost table replaced by ``#``."""
    lines, in_cost = [], False
    for line in text.splitlines():
        line = line.rstrip()
        if line == "Cost":
            in_cost = True
        elif not line:
            in_cost = False
        if in_cost:
            line = " ".join(re.sub(r"\d[\d,.]*", "#", line).split())
        lines.append(line)
    return lines


def test_quickstart_runs_and_prints_the_readme_sample(workdir: dict) -> None:
    printed = run_block("quickstart", workdir)
    assert _masked(printed) == _masked(BLOCKS[("output", "quickstart")])


@pytest.fixture(scope="module")
def walkthrough(workdir: dict) -> str:
    """The walkthrough block, run once: its trained and calibrated ``runs/digits-dismax`` is
    also the run of ``## Deploy a trained run``. Returns what the block printed."""
    return run_block("walkthrough", workdir)


def test_walkthrough_trains_calibrates_and_scores(workdir: dict, walkthrough: str) -> None:
    printed = walkthrough
    assert (workdir["cwd"] / "runs" / "digits-dismax" / "checkpoint.pt").is_file()
    assert (workdir["cwd"] / "scores.npz").is_file()
    assert '"kind": "score"' in printed


def test_protocol_example_trains_on_every_image_and_warns(workdir: dict) -> None:
    printed = run_block("protocol", workdir)
    assert "fitted on 216 ID test images" in printed  # digits[0-5]'s test split (see Splits)
    assert "CALIBRATION AND MODEL SELECTION SAW THE TEST SET" in " ".join(printed.split())


def test_ci_gate_example_passes_and_its_jq_query_reads_the_report(workdir: dict) -> None:
    printed = run_block("ci-gate", workdir)
    report = workdir["cwd"] / "report.json"
    assert report.is_file() and report.stat().st_size > 0
    # The jq line prints {ood, auroc} for each OOD set of the default benchmark, as shown.
    assert _masked(printed) == _masked(BLOCKS[("output", "ci-gate")])


def test_deploy_section_loads_the_run_predicts_thresholds_and_detects(
    workdir: dict, walkthrough: str
) -> None:
    """``## Deploy a trained run``: the walkthrough's run, the Python block, ``dismax detect``."""
    pytest.importorskip("sklearn", reason="the README block uses scikit-learn's digits")
    assert 'load_run("runs/digits-dismax"' in BLOCKS[("python", "deploy")]
    assert "--out runs/digits-dismax" in BLOCKS[("test", "walkthrough")]
    namespace: dict[str, object] = {"__name__": "readme_deploy"}
    here = os.getcwd()
    os.chdir(workdir["cwd"])
    try:
        code = compile(BLOCKS[("python", "deploy")], str(README), "exec")
        exec(code, namespace)  # noqa: S102 - our own README
    finally:
        os.chdir(here)
    # The threshold keeps 95 % of the validation split; the known digits are mostly kept (part
    # of them are the run's own training images), and the unknown ones are detected well
    # above the 5 % a blind threshold would flag.
    assert namespace["kept"] >= 0.9 and namespace["accuracy"] >= 0.9, namespace
    assert namespace["flagged"] >= 0.3, namespace["flagged"]
    assert sorted(p.name for p in (workdir["cwd"] / "unknown").iterdir()) == [
        f"{i}.png" for i in range(5)
    ]
    printed = run_block("deploy-detect", workdir)
    table, document = printed.split("\n{", 1)
    rows = json.loads("{" + document)["images"]
    assert [row["image"] for row in rows] == ["unknown/0.png", "unknown/1.png"]
    threshold = namespace["run"].threshold("msp")  # type: ignore[attr-defined]
    assert all(row["in_distribution"] is (row["score"] >= threshold) for row in rows)
    assert [line.split()[0] for line in table.splitlines()[2:7]] == [
        f"unknown/{i}.png" for i in range(5)
    ]


def test_benchmark_show_prints_the_committed_report_as_the_readme_shows(workdir: dict) -> None:
    printed = run_block("show", workdir)
    assert _masked(printed) == _masked(BLOCKS[("output", "show")])


def test_the_committed_tables_are_what_show_prints_for_the_committed_report() -> None:
    """``benchmarks/results/cifar10-cpu.txt`` is the committed report's tables at 80 columns, as
    ``dismax show`` prints them today (a wording change in the tables must update the file)."""
    from typer.testing import CliRunner

    from dismax_cli.cli.app import app

    results = ROOT / "benchmarks" / "results"
    shown = CliRunner().invoke(
        app, ["show", str(results / "cifar10-cpu.json")], env={"COLUMNS": "80", "NO_COLOR": "1"}
    )
    assert shown.exit_code == 0, shown.output
    committed = (results / "cifar10-cpu.txt").read_text()
    assert [line.rstrip() for line in shown.stdout.splitlines()] == [
        line.rstrip() for line in committed.splitlines()
    ]
