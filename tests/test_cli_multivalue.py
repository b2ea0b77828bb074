"""Multi-value options decided by syntax (``dismax_cli/cli/multivalue.py``), the one error
handler of the root group (``cli/entry.py``) and ``show`` beside ``benchmark`` (issue 12 item 4).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from dismax_cli.cli import multivalue as mv
from dismax_cli.cli.app import app, main
from dismax_cli.cli.entry import command_syntax, expand_argv

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "benchmarks" / "results" / "cifar10-cpu.json"

#: A command shaped like ``score``: one positional, two multi-value options, valued options.
SCORE = mv.CommandSyntax(
    multi=frozenset({"--ood", "--scores"}),
    valued=frozenset({"--device", "--format", "--dump"}),
    positionals=("CHECKPOINT",),
    keep_commas=frozenset({"--require"}),
    usage="dismax score",
)
#: A command shaped like ``benchmark``: no positional.
BENCH = mv.CommandSyntax(
    multi=frozenset({"--ood", "--methods", "--require", "--scores"}),
    valued=frozenset({"--epochs", "--seed"}),
    keep_commas=frozenset({"--require"}),
    usage="dismax benchmark",
)


def ood(*values: str) -> list[str]:
    return [t for v in values for t in ("--ood", v)]


# ----------------------------------------------------------------------------- pure: token lists


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (["--ood", "a", "b", "c"], ood("a", "b", "c")),
        (["--ood", "a", "--ood", "b"], ood("a", "b")),  # the flag repeated
        (["--ood", "a,b"], ood("a", "b")),  # a comma list
        (["--ood=a,b", "c"], ood("a", "b", "c")),  # inline, then more values
        (["--ood", "digits[0,2],uniform"], ood("digits[0,2]", "uniform")),  # brackets keep ','
        (["--ood", "a,,b,"], ood("a", "b")),  # empty parts dropped
        (["--ood", r"npz:a\,b.npz,svhn"], ood("npz:a,b.npz", "svhn")),  # an escaped comma stays
        (["--ood", r"npz:x\y.npz", "z\\"], ood(r"npz:x\y.npz", "z\\")),  # other '\' kept
        (["--ood", ""], ood("")),  # an empty value stays for the command to name it
        (["--ood", "-", "a"], ood("-", "a")),  # a lone '-' is a value
        (["--ood", "a", "-q", "b"], [*ood("a"), "-q", "b"]),  # a short option ends the values
        (["--ood", "a", "--", "b"], [*ood("a"), "--", "b"]),  # '--' ends them, rest verbatim
    ],
)
def test_values_run_until_an_option_token(tokens: list[str], expected: list[str]) -> None:
    assert mv.expand(tokens, BENCH) == expected


def test_requirements_keep_their_commas_and_each_gets_its_flag() -> None:
    tokens = ["--require", "dismax:AUROC:a,b>=0.5", "x:ACC:id>0", "--epochs", "1"]
    assert mv.expand(tokens, BENCH) == [
        "--require", "dismax:AUROC:a,b>=0.5", "--require", "x:ACC:id>0", "--epochs", "1",
    ]  # fmt: skip


def test_a_valued_option_keeps_its_value_whatever_it_looks_like() -> None:
    # '-3' is --seed's value (its parser names it), not an option ending anything.
    assert mv.expand(["--seed", "-3", "--ood", "a", "b"], BENCH) == ["--seed", "-3", *ood("a", "b")]


@pytest.mark.parametrize(
    "checkpoint",
    ["runs/x", "/abs/run", "run.pt", "runs/x/checkpoint.pt", "./myrun", "..\\win\\run"],
)
def test_a_path_like_token_after_the_values_is_the_checkpoint(checkpoint: str) -> None:
    tokens = ["--ood", "digits[6-9]", "uniform", checkpoint, "--format", "json"]
    assert mv.expand(tokens, SCORE) == [
        *ood("digits[6-9]", "uniform"), checkpoint, "--format", "json",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "spec",
    [
        "npz:../shared/data/mnist_test.npz",  # kind: prefix before the separator
        "imagefolder:/data/r1/checkpoint.pt",  # a spec even though it ends in .pt
        "tin=npz:data/tin.npz",  # a label
        "far=runs/x",  # '=' makes it a labelled spec
        "digits[0/2]",  # a bracket
    ],
)
def test_a_spec_with_a_path_inside_stays_a_value(spec: str) -> None:
    tokens = ["runs/x", "--ood", "uniform", spec]
    assert mv.expand(tokens, SCORE) == ["runs/x", *ood("uniform", spec)]
    # Also before the checkpoint: the spec is a value, the path after it the checkpoint.
    assert mv.expand(["--ood", spec, "runs/x"], SCORE) == [*ood(spec), "runs/x"]


def test_once_the_checkpoint_is_given_a_path_like_token_is_a_value() -> None:
    # The command has its CHECKPOINT: 'data/x.npz' can only be a (wrong) set, which the spec
    # check then names, instead of an "unexpected extra argument".
    tokens = ["runs/x", "--ood", "uniform", "data/x.npz"]
    assert mv.expand(tokens, SCORE) == ["runs/x", *ood("uniform", "data/x.npz")]


def test_without_a_positional_a_path_like_token_is_a_value() -> None:
    assert mv.expand(["--ood", "a", "runs/x"], BENCH) == ood("a", "runs/x")


@pytest.mark.parametrize(
    "tokens",
    [
        ["--ood", "uniform", "myrun"],
        ["--ood", "uniform", "myrun", "--format", "json"],
        ["--ood=uniform", "myrun"],
        ["--scores", "msp", "myrun", "--ood", "uniform"],
    ],
)
def test_a_bare_name_that_could_be_the_checkpoint_says_how_to_write_it(tokens: list[str]) -> None:
    with pytest.raises(mv.AmbiguousValuesError) as info:
        mv.expand(tokens, SCORE)
    message = str(info.value)
    assert "CHECKPOINT is missing" in message and "'myrun'" in message
    assert "dismax score myrun --" in message  # CHECKPOINT first
    assert "-- myrun" in message  # or after --
    assert "\n" not in message


@pytest.mark.parametrize(
    "tokens",
    [
        ["myrun", "--ood", "uniform", "digits[6-9]"],  # CHECKPOINT first
        ["--ood", "uniform", "--", "myrun"],  # after --
        ["--ood", "uniform", "./myrun"],  # path-like
        ["--format", "json", "myrun"],  # no multi-value option took it
    ],
)
def test_the_written_forms_are_not_ambiguous(tokens: list[str]) -> None:
    out = mv.expand(tokens, SCORE)
    assert "myrun" in out or "./myrun" in out


def test_the_module_is_pure() -> None:
    """No typer/click import and no file-system access: only stdlib pieces that touch nothing."""
    tree = ast.parse((ROOT / "dismax_cli" / "cli" / "multivalue.py").read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__", "collections", "dataclasses"}, imported
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert not names & {"open", "Path", "os"}


# ----------------------------------------------------------------------------- the real commands


def _syntax(*path: str) -> mv.CommandSyntax:
    group = typer.main.get_command(app)
    return command_syntax(group.commands[path[-1]], "dismax " + " ".join(path))


def test_the_syntax_comes_from_the_command_objects() -> None:
    score, bench, calibrate = _syntax("score"), _syntax("benchmark"), _syntax("calibrate")
    assert score.multi == {"--ood", "--scores"} and score.positionals == ("CHECKPOINT",)
    assert bench.multi == {"--ood", "--methods", "--require", "--scores"}
    assert bench.positionals == () and "--require" in bench.keep_commas
    assert calibrate.multi == frozenset() and calibrate.positionals == ("CHECKPOINT",)
    assert "--device" in score.valued and "--quiet" not in score.valued  # a flag takes no value


def test_expansion_finds_the_command_after_root_options_and_benchmark_show() -> None:
    group = typer.main.get_command(app)
    assert expand_argv(group, ["--version"]) == ["--version"]
    assert expand_argv(group, ["nosuch", "--ood", "a", "b"]) == ["nosuch", "--ood", "a", "b"]
    args = ["benchmark", "--ood", "a", "b", "--methods", "softmax,dismax"]
    assert expand_argv(group, args) == [
        "benchmark", *ood("a", "b"), "--methods", "softmax", "--methods", "dismax",
    ]  # fmt: skip
    # 'benchmark show' is the show command: its argument is not a benchmark value.
    assert expand_argv(group, ["benchmark", "show", "r.json"]) == ["benchmark", "show", "r.json"]


def test_an_ambiguous_checkpoint_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run folder of that name exists: the decision is still by syntax (no file-system look-up).
    (tmp_path / "myrun").mkdir()
    (tmp_path / "myrun" / "checkpoint.pt").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["score", "--ood", "uniform", "myrun"])
    after_dashes = runner.invoke(app, ["score", "--ood", "uniform", "--", "nosuchrun"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: CHECKPOINT is missing"), lines
    assert "Traceback" not in result.output
    # After '--' the name is the CHECKPOINT: the loader names it (exit 1).
    assert after_dashes.exit_code == 1 and "'nosuchrun' does not exist" in after_dashes.stderr


# ----------------------------------------------------------------------------- one error handler


def test_ctrl_c_in_any_command_says_interrupted_and_exits_130(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import dismax_cli.engine as engine

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "calibrate_checkpoint", interrupted)
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    result = runner.invoke(app, ["calibrate", str(tmp_path), "-q"])
    assert result.exit_code == 130, result.output
    assert result.stderr.strip().splitlines() == ["interrupted"]


def test_main_returns_every_code_through_one_handler(tmp_path: Path) -> None:
    def code(*args: str) -> int:
        with pytest.raises(SystemExit) as info:
            main(list(args))
        return info.value.code

    assert code("--version") == 0
    assert code("score", "--help") == 0
    assert code("nosuch") == 2  # Click's usage error
    assert code("train", "--epochs", "ten", "--out", "x") == 2  # a bad option value
    assert code("benchmark", "--require", "foo") == 2  # InvalidValueError
    assert code("calibrate", str(tmp_path / "missing.pt")) == 1  # DismaxError


def test_show_beside_benchmark_and_under_it_print_the_same() -> None:
    plain = runner.invoke(app, ["show", str(REPORT), "--format", "json"])
    under = runner.invoke(app, ["benchmark", "show", str(REPORT), "--format", "json"])
    assert plain.exit_code == under.exit_code == 0, (plain.output, under.output)
    assert plain.stdout == under.stdout and plain.stdout.lstrip().startswith("{")
    usage = runner.invoke(app, ["benchmark", "show", "-h"]).output
    assert usage.startswith("Usage: dismax benchmark show [OPTIONS] {REPORT.json}")
    for path in (["show"], ["benchmark", "show"], ["benchmark"]):
        text = runner.invoke(app, [*path, "--help"]).output
        assert "--format" in text, path
    assert "--plots" in runner.invoke(app, ["show", "-h"]).output


@pytest.mark.parametrize("tokens", [["--ood"], ["--ood", "-x"], ["--ood", "--format", "json"]])
def test_a_multi_value_option_without_a_value_is_an_error(tokens: list[str]) -> None:
    # Left to Click, the next option token became the value (``--ood -h``: dataset '-h').
    with pytest.raises(mv.MissingValuesError, match="--ood needs at least one value"):
        mv.expand(tokens, SCORE)


@pytest.mark.parametrize("path", ["runs/lr=0.1", "runs/exp[1]", "./runs/lr=0.1", "./a[b]"])
def test_paths_with_equals_or_brackets_after_a_separator_are_paths(path: str) -> None:
    assert mv.is_path_like(path) and not mv.looks_like_spec(path)
    assert mv.expand(["--ood", "uniform", path], SCORE) == ["--ood", "uniform", path]


def test_help_wins_even_as_a_would_be_value() -> None:
    for argv in (["score", "--ood", "uniform", "-h"], ["score", "r1", "--ood", "-h"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 0 and "Usage: dismax score" in result.output, result.output


def test_a_comma_inside_a_file_name_is_named_with_its_escape(tmp_path: Path) -> None:
    """``npz:a,b.npz`` splits into ``npz:a`` and ``b.npz``: the error on the second part says
    how to keep the comma (``\\,``), and the escaped form names the file ``a,b.npz``."""
    from support import invoke_in

    result = invoke_in(tmp_path, "benchmark", "--ood", "npz:a,b.npz", "--epochs", "1")
    assert result.exit_code == 2, result.output
    assert "unknown dataset 'b.npz'" in result.output
    assert "a comma inside a file name is written \\," in result.output
    escaped = invoke_in(tmp_path, "benchmark", "--ood", r"npz:a\,b.npz", "--epochs", "1")
    assert escaped.exit_code != 0
    assert str(tmp_path / "a,b.npz") in escaped.output, escaped.output
    assert not (tmp_path / "runs").exists()
