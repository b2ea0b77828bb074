"""Plot and page output faults of the session-5 tester's report (items 1, 14, 15, 18, 19).

A ``--plots`` folder's plot names are checked before any work for what they already hold: a
symbolic link there is checked where it points (an input, another output), a folder, FIFO or
device there is refused; other outputs may go into the folder ``--plots`` creates; under
``--format json`` no output may be the standard output (README "Design notes", *Output
paths*; :func:`dismax_cli.output_check.check_output_plan`, :class:`dismax_cli.output_set.
OutputSet`).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from support import dismax_command, invoke_in, offline_env

from dismax_cli.errors import DismaxError
from dismax_cli.output_set import OutputSet

BENCH = ["benchmark", "--epochs", "1", "--methods", "softmax", "--bootstrap", "0", "-q"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one benchmark run in ``runs/``, its report ``r.json`` + ``r.samples.npz``
    and a config file ``c.yaml``."""
    home = tmp_path_factory.mktemp("plots")
    result = invoke_in(home, *BENCH, "--ood", "uniform", "--out", "r.json")
    assert result.exit_code == 0, result.output
    (home / "c.yaml").write_text("epochs: 1\nmethods: [softmax]\nbootstrap: 0\n")
    return home


def one_line(result) -> str:
    """The error, one line; never a traceback or an internal error."""
    out = result.output
    assert "Traceback" not in out and "internal error" not in out, out
    assert "error" in out, out
    return " ".join(out.split())


def files_of(folder: Path) -> dict[str, bytes]:
    """Every regular file under ``folder`` (links not followed) and its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def run_cli(home: Path, *args: str, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    """``dismax ARGS`` in a real process (its own stdout), killed after 120 s."""
    return subprocess.run(
        [*dismax_command(), *args], cwd=home, env={**os.environ, **offline_env(home)},
        stdout=stdout, stderr=subprocess.PIPE, timeout=120,
    )  # fmt: skip


# ----------------------------------------------------------------------------- item 1


def test_show_never_draws_through_a_plot_name_link_onto_its_inputs(home: Path) -> None:
    work = home / "t1"
    work.mkdir()
    for name in ("r.json", "r.samples.npz"):
        (work / name).write_bytes((home / name).read_bytes())
    (work / "figs").mkdir()
    (work / "figs" / "roc-uniform.png").symlink_to("../r.json")
    (work / "figs" / "pr-uniform.png").symlink_to("../r.samples.npz")
    before = files_of(work)
    result = invoke_in(work, "show", "r.json", "--plots", "figs")
    line = one_line(result)
    assert result.exit_code == 2 and "would overwrite" in line and "figs/pr-uniform.png" in line
    assert files_of(work) == before  # the report and its samples are not PNGs now


@pytest.mark.parametrize(
    ("link_to", "args"),
    [
        ("RUN/checkpoint.pt", []),
        ("RUN/train_log.jsonl", []),
        ("../c.yaml", ["--config", "c.yaml"]),
        ("../new.json", ["--out", "new.json"]),
        ("../new.samples.npz", ["--out", "new.json"]),
        ("../page.html", ["--html", "page.html"]),
        ("../imgs/a/x.png", ["--ood", "imagefolder:imgs"]),
    ],
)
def test_benchmark_checks_plot_name_links_where_they_point(
    home: Path, no_work: None, link_to: str, args: list[str]
) -> None:
    (run,) = [p for p in (home / "runs").iterdir() if p.is_dir()]
    (home / "imgs" / "a").mkdir(parents=True, exist_ok=True)
    figs = home / "figs1"
    figs.mkdir(exist_ok=True)
    link = figs / "hist-softmax-uniform.png"
    link.unlink(missing_ok=True)
    link.symlink_to(link_to.replace("RUN", str(run)))
    before = files_of(home)
    result = invoke_in(home, *BENCH, "--plots", "figs1", *args)
    line = one_line(result)
    assert result.exit_code == 2 and "would overwrite" in line, line
    assert "figs1/hist-softmax-uniform.png" in line and "choose another --plots folder" in line
    assert files_of(home) == before and not (home / "new.json").exists()


def test_a_plot_name_link_into_a_missing_folder_is_refused_early(home: Path, no_work) -> None:
    figs = home / "figs2"
    figs.mkdir()
    (figs / "risk-coverage.png").symlink_to("../no-such-folder/x.png")
    result = invoke_in(home, *BENCH, "--plots", "figs2")
    assert result.exit_code == 2 and "does not exist" in one_line(result)
    assert not (home / "no-such-folder").exists()


def test_a_plot_name_link_to_a_plain_file_is_written_through(home: Path) -> None:
    """The documented rule for links (written through, as ``cp`` does) still holds."""
    figs = home / "figs3"
    figs.mkdir()
    (figs / "risk-coverage.png").symlink_to("../elsewhere.png")
    result = invoke_in(home, "show", "r.json", "--plots", "figs3")
    assert result.exit_code == 0, result.output
    assert (home / "elsewhere.png").read_bytes().startswith(b"\x89PNG")


def test_output_set_refuses_a_file_landing_on_a_read_at_commit(tmp_path: Path) -> None:
    """A link made during the run (after the early check) cannot turn a plot into an input."""
    report = tmp_path / "r.json"
    report.write_text("{}")
    (tmp_path / "figs").mkdir()
    (tmp_path / "figs" / "roc-x.png").symlink_to(report)
    outputs = OutputSet(reads=[report])
    outputs.add(tmp_path / "page.html", b"<html>", "--html")
    outputs.add(tmp_path / "figs" / "roc-x.png", b"PNG", "--plots", special=False)
    with pytest.raises(DismaxError, match="would overwrite .*nothing was written"):
        outputs.commit()
    assert report.read_text() == "{}" and not (tmp_path / "page.html").exists()


# ---------------------------------------------------------------------------- item 14


@pytest.mark.parametrize("kind", ["folder", "link to a folder"])
def test_a_folder_at_a_plot_name_is_refused_before_training(
    home: Path, no_work: None, kind: str
) -> None:
    figs = home / f"hd-{kind.replace(' ', '-')}"
    figs.mkdir()
    if kind == "folder":
        (figs / "roc-uniform.png").mkdir()
    else:
        (home / "somewhere").mkdir(exist_ok=True)
        (figs / "roc-uniform.png").symlink_to(home / "somewhere")
    result = invoke_in(home, *BENCH, "--ood", "uniform", "--out", "hd.json", "--plots", figs.name)
    line = one_line(result)
    assert result.exit_code == 2 and "roc-uniform.png' is a folder where a plot goes" in line
    assert not (home / "hd.json").exists()


# ---------------------------------------------------------------------------- item 15


def test_a_fifo_at_a_plot_name_is_refused_not_waited_on(home: Path) -> None:
    figs = home / "ff"
    figs.mkdir()
    os.mkfifo(figs / "roc-uniform.png")
    proc = run_cli(home, "show", "r.json", "--plots", "ff")  # hung forever before the fix
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "is a FIFO, device or socket where a plot goes" in err, err
    assert sorted(p.name for p in figs.iterdir()) == ["roc-uniform.png"]


def test_a_fifo_where_the_per_sample_file_goes_is_refused_before_training(
    home: Path, no_work: None
) -> None:
    """The per-sample file's name is derived from --out: a FIFO there would block."""
    os.mkfifo(home / "f15.samples.npz")
    result = invoke_in(home, *BENCH, "--out", "f15.json")
    line = one_line(result)
    assert result.exit_code == 2 and "f15.samples.npz': it is a FIFO, device or socket" in line
    assert not (home / "f15.json").exists()


def test_output_set_never_writes_a_plot_into_a_fifo(tmp_path: Path) -> None:
    """Made after the early check, a FIFO at a plot name is refused, not opened (which
    blocks until a reader comes)."""
    os.mkfifo(tmp_path / "pr-x.png")
    outputs = OutputSet()
    outputs.add(tmp_path / "risk-coverage.png", b"PNG", "--plots", special=False)
    outputs.add(tmp_path / "pr-x.png", b"PNG", "--plots", special=False)
    with pytest.raises(DismaxError, match="FIFO, device or socket; nothing was written"):
        outputs.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pr-x.png"]


# ---------------------------------------------------------------------------- item 18


def test_outputs_may_go_into_the_plots_folder_it_creates(home: Path) -> None:
    result = invoke_in(
        home, *BENCH, "--ood", "uniform", "--plots", "new/figs", "--html", "new/figs/page.html",
        "--out", "new/r.json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    made = sorted(p.name for p in (home / "new" / "figs").iterdir())
    assert "page.html" in made and "roc-uniform.png" in made
    assert json.loads((home / "new" / "r.json").read_text())["kind"] == "benchmark"
    assert (home / "new" / "r.samples.npz").is_file()


def test_show_page_in_a_parent_the_plots_folder_creates(home: Path) -> None:
    result = invoke_in(home, "show", "r.json", "--plots", "a/b/figs", "--html", "a/page.html")
    assert result.exit_code == 0, result.output
    assert (home / "a" / "page.html").read_text().lstrip().lower().startswith("<!doctype html")


def test_a_page_in_a_folder_nothing_creates_is_still_refused(home: Path, no_work) -> None:
    result = invoke_in(home, *BENCH, "--plots", "p18", "--html", "other18/page.html")
    assert result.exit_code == 2 and "does not exist" in one_line(result)
    assert not (home / "p18").exists() and not (home / "other18").exists()


# ---------------------------------------------------------------------------- item 19


@pytest.mark.parametrize(
    "args",
    [
        ["show", "r.json", "--format", "json", "--html", "/dev/stdout"],
        ["show", "r.json", "--format", "json", "--html", "/proc/self/fd/1"],
        [*BENCH, "--ood", "uniform", "--format", "json", "--out", "/dev/stdout"],
        [*BENCH, "--ood", "uniform", "--format", "json", "--html", "/dev/stdout"],
    ],
)
def test_nothing_mixes_into_json_on_stdout(home: Path, args: list[str]) -> None:
    proc = run_cli(home, *args)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "standard output, which carries the JSON report" in err, err
    assert proc.stdout == b""


def test_an_output_that_is_the_file_stdout_goes_to_is_refused(home: Path) -> None:
    """``dismax show r.json --format json --html p.html > p.html``: one file, two writers."""
    page = home / "p19.html"
    page.write_text("old")
    with page.open("a") as handle:
        proc = run_cli(home, "show", "r.json", "--format", "json", "--html", "p19.html",
                       stdout=handle)  # fmt: skip
    assert proc.returncode == 2 and "standard output" in proc.stderr.decode()
    assert page.read_text() == "old"


def test_the_page_may_go_to_stdout_with_the_table_format(home: Path) -> None:
    proc = run_cli(home, "show", "r.json", "--html", "/dev/stdout")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.lstrip().lower().startswith(b"<!doctype html")


def test_dev_null_is_not_taken_for_stdout(home: Path) -> None:
    """``--html /dev/null`` with stdout on /dev/null too: nothing mixes, nothing is refused."""
    proc = run_cli(home, "show", "r.json", "--format", "json", "--html", "/dev/null",
                   stdout=subprocess.DEVNULL)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
