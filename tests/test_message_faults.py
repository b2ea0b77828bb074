"""Message and parsing faults of the tester's session-4 report (items 3, 8, 9, 10, 11, 14, 15).

The project's rule (README "Design notes", "Exit codes and option values"): bad input gets one
line naming the value and the fix, in the spelling a config file uses (never Python's repr),
control characters escaped; a bad value exits 2 with or without ``--debug`` (which only adds
the traceback); a malformed dataset spec is a usage error; numbers typed as text follow one
grammar (:mod:`dismax_cli.numbers`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from support import ImportProbe
from typer.testing import CliRunner

from dismax_cli.cli.app import app

runner = CliRunner()


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "DISMAX_OFFLINE": "1",
        "DISMAX_DATA_DIR": str(tmp_path / "data"),
        "DISMAX_RUNS_DIR": str(tmp_path / "runs"),
        "DISMAX_TIMING_SECONDS": "0",
    }


def _invoke(tmp_path: Path, args: list[str]):  # noqa: ANN202 - click's Result
    return runner.invoke(app, args, env=_env(tmp_path))


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "\x1b" not in lines[0] and "Traceback" not in stderr, stderr
    return lines[0]


# ----------------------------------------------------------------------------- item 3


def _debug_cases(tmp_path: Path) -> list[tuple[list[str], int]]:
    (tmp_path / "c1.yaml").write_text("epochs: 1\n")
    (tmp_path / "c2.yaml").write_text("epochs: 2\n")
    (tmp_path / "unk.yaml").write_text("foo: 1\n")
    (tmp_path / "five.yaml").write_text("5\n")
    return [
        (["benchmark", "--ood"], 2),  # a multi-value option without values
        (["benchmark", "--require", "x"], 2),  # a malformed requirement
        (["benchmark", "--config", "c1.yaml", "--config", "c2.yaml"], 2),  # a repeated option
        (["benchmark", "--config", "unk.yaml"], 2),  # an unknown config key
        (["benchmark", "--config", "five.yaml"], 2),  # a config holding no mapping
        (["score", "--ood", "uniform"], 2),  # a value that could be the positional
        (["calibrate", str(tmp_path / "missing.pt")], 1),  # a DismaxError (not a usage error)
    ]


def test_debug_adds_a_traceback_and_keeps_every_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for args, code in _debug_cases(tmp_path):
        plain = _invoke(tmp_path, args)
        debug = _invoke(tmp_path, ["--debug", *args])
        assert plain.exit_code == code, (args, plain.output)
        assert "Traceback" not in plain.stderr
        # Only the traceback is added: same exit code, and the same error line at the end.
        assert debug.exit_code == code, (args, debug.output)
        assert "Traceback" in debug.stderr, args
        assert debug.stderr.strip().splitlines()[-1] == plain.stderr.strip().splitlines()[-1]


def test_debug_keeps_the_exit_code_of_an_internal_error_and_of_ctrl_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dismax_cli.engine as training

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    (tmp_path / "checkpoint.pt").write_bytes(b"x")  # past the early checkpoint check
    for fake, code in ((interrupted, 130), (boom, 1)):
        monkeypatch.setattr(training, "calibrate_checkpoint", fake)
        result = runner.invoke(app, ["--debug", "calibrate", str(tmp_path)])
        assert result.exit_code == code and "Traceback" in result.stderr, result.output


# ----------------------------------------------------------------------------- item 9


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ({"a": 1}, "{a: 1}"),
        ([{"a": "b"}], "[{a: b}]"),
        ({"name": "convnet"}, "{name: convnet}"),
        ({"x y": None}, "{'x y': null}"),
        (math.inf, ".inf"),
        (-math.inf, "-.inf"),
        (math.nan, ".nan"),
        ([math.inf, 1], "[.inf, 1]"),
        (b"hi", "!!binary aGk="),
        ("a\x1b[2Jb", "'a\\x1b[2Jb'"),
        (["new\nline"], "['new\\nline']"),
    ],
)
def test_quote_value_writes_yaml_not_python_repr(value: object, shown: str) -> None:
    from dismax_cli.errors import quote_value

    assert quote_value(value) == shown


def test_kind_of_names_types_in_plain_words() -> None:
    from dismax_cli.errors import kind_of

    assert [kind_of(v) for v in (5, 3.5, "x", True, [1], {"a": 1}, None, b"x")] == [
        "a number",
        "a number",
        "text",
        "true or false",
        "a list",
        "a mapping",
        "null",
        "binary data",
    ]


@pytest.mark.parametrize(
    ("text", "wanted", "unwanted"),
    [
        ("epochs: {a: 1}\n", "{a: 1} is not an integer", "{'a'"),
        ("ood: [{a: b}]\n", "[{a: b}]", "{'a'"),
        ("data_dir: {a: b}\n", "data_dir={a: b} is invalid: use text", "'b'}"),
        ("model: {name: convnet}\n", "{name: convnet} is not one of", "{'name'"),
        ("null: 2\n", "unknown benchmark option 'null'", "None"),
        ("true: 2\n", "unknown benchmark option 'true'", "True"),
        ("epochs: .inf\n", "': .inf is not an integer", ": inf is"),
        ("epochs: .nan\n", "': .nan is not an integer", ": nan is"),
        ("epochs: 1e999\n", "': .inf is not an integer", ": inf is"),
        ("epochs: !!binary aGk=\n", "!!binary aGk= is not an integer", "b'hi'"),
        ("seeds: 1e3\n", "write 1000, without a decimal point or exponent", "\n"),
        ("5\n", "(one 'key: value' per line), not a number (5)", " int"),
        ('"x"\n', "not text ('x')", " str"),
        ("3.5\n", "not a number (3.5)", " float"),
        ("true\n", "not true or false (true)", " bool"),
        ("[a, b]\n", "not a list ([a, b])", "['a'"),
    ],
)
def test_config_values_are_shown_as_a_config_file_writes_them(
    tmp_path: Path, text: str, wanted: str, unwanted: str
) -> None:
    (tmp_path / "cfg.yaml").write_text(text)
    result = _invoke(tmp_path, ["benchmark", "--config", str(tmp_path / "cfg.yaml")])
    assert result.exit_code == 2, result.output
    line = _one_error_line(result.stderr)
    assert wanted in line and unwanted not in line.removeprefix("error: "), line


# ----------------------------------------------------------------------------- items 8, 10


@pytest.mark.parametrize(
    ("spec", "wanted"),
    [
        ("uniform:", "dataset spec 'uniform:' has an empty parameter after ':': write 'uniform'"),
        ("uniform: ", "dataset spec 'uniform: ' has a space at its start or end"),
        ("digits[0-2]:", "write 'digits[0-2]'"),
        ("npz:", "'npz:'"),
        (" uniform", "dataset spec ' uniform' has a space at its start or end: write 'uniform'"),
        ("uniform ", "write 'uniform'"),
        ("far= uniform", "' uniform'"),
        ("x\x1b[31mred", "dataset spec 'x\\x1b[31mred' holds a control character"),
        ("x\nnew", "'x\\nnew' holds a control character"),
        ("uni\tform", "'uni\\tform'"),
        ("digits [0-2]", "has a space around ':' or before '[': write 'digits[0-2]'"),
        ("uniform : 5", "write 'uniform:5'"),
        ("uniform: 5", "write 'uniform:5'"),
    ],
)
@pytest.mark.parametrize("command", ["benchmark", "score"])
def test_a_malformed_ood_spec_is_a_usage_error_on_one_line(
    tmp_path: Path, spec: str, wanted: str, command: str
) -> None:
    args = ["benchmark", "--ood", spec] if command == "benchmark" else ["score", "r", "--ood", spec]
    result = _invoke(tmp_path, args)
    assert result.exit_code == 2, result.output
    assert wanted in _one_error_line(result.stderr)


def test_a_trailing_colon_does_not_name_a_second_set(tmp_path: Path) -> None:
    result = _invoke(tmp_path, ["benchmark", "--ood", "uniform", "uniform:"])
    assert result.exit_code == 2 and "'uniform:'" in _one_error_line(result.stderr)


def test_a_spec_from_a_config_file_is_escaped_too(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text('ood: ["new\\nline"]\n')
    result = _invoke(tmp_path, ["benchmark", "--config", str(tmp_path / "cfg.yaml")])
    assert result.exit_code == 2
    assert "'new\\nline' holds a control character" in _one_error_line(result.stderr)


def test_a_train_dataset_with_a_stray_space_is_a_usage_error(tmp_path: Path) -> None:
    result = _invoke(tmp_path, ["train", "--dataset", "digits ", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "write 'digits'" in _one_error_line(result.stderr)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "requirement",
    [
        "x\x1b[2J",
        "dis\x1bmax:AUROC:uniform>=0.5",
        "dismax:AUROC:uni\x1bform>=0.5",
        "dismax/sc\x1bore:AUROC:uniform>=0.5",
        "dismax:AU\x1bROC:uniform>=0.5",
        "dismax:AUROC:uniform>=0.\x1b5",
        "dismax:AUROC:id>=0.5\n",
    ],
)
def test_a_requirement_is_echoed_with_control_characters_escaped(
    tmp_path: Path, requirement: str
) -> None:
    result = _invoke(tmp_path, ["benchmark", "--require", requirement])
    assert result.exit_code == 2, result.output
    line = _one_error_line(result.stderr)
    assert "\\x1b" in line or "\\n" in line, line


# ----------------------------------------------------------------------------- item 15


@pytest.mark.parametrize("text", ["1_0", "\u0663", "\uff11", "1e", "0x10", "inf", "1,5"])
def test_one_number_grammar_for_environment_values_and_requirements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    from dismax_cli.config import InvalidValueError
    from dismax_cli.timing import timing_seconds

    monkeypatch.setenv("DISMAX_TIMING_SECONDS", text)
    with pytest.raises(InvalidValueError, match="DISMAX_TIMING_SECONDS"):
        timing_seconds(1.0)
    req = _invoke(tmp_path, ["benchmark", "--require", f"dismax:AUROC:uniform>={text}"])
    assert req.exit_code == 2 and "which is not a number" in req.stderr, req.output


@pytest.mark.parametrize("text", ["1_0", "\u0663", "\uff11"])
def test_numeric_options_and_other_variables_follow_the_same_grammar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    from dismax_cli.data.download import net_timeout
    from dismax_cli.errors import DismaxError

    result = _invoke(tmp_path, ["benchmark", "--epochs", text])
    assert result.exit_code == 2 and "is not an integer" in result.output, result.output
    result = _invoke(tmp_path, ["benchmark", "--lr", text])
    assert result.exit_code == 2 and "is not a positive number" in result.output
    monkeypatch.setenv("DISMAX_NET_TIMEOUT", text)
    with pytest.raises(DismaxError, match="DISMAX_NET_TIMEOUT"):
        net_timeout()


@pytest.mark.parametrize(("text", "value"), [("10", 10.0), (" 0.5 ", 0.5), (".5", 0.5),
                                             ("1e-3", 0.001), ("+2", 2.0)])  # fmt: skip
def test_plain_ascii_decimals_are_still_read(
    monkeypatch: pytest.MonkeyPatch, text: str, value: float
) -> None:
    from dismax_cli.timing import timing_seconds

    monkeypatch.setenv("DISMAX_TIMING_SECONDS", text)
    assert timing_seconds(7.0) == value


# ----------------------------------------------------------------------------- item 11


@pytest.mark.parametrize("score", ["foo", "AUROC", "uniform"])
def test_a_requirement_naming_no_score_does_not_suggest_adding_it(
    tmp_path: Path, score: str
) -> None:
    result = _invoke(tmp_path, ["benchmark", "--require", f"dismax/{score}:AUROC:uniform>=0.5"])
    assert result.exit_code == 2
    line = _one_error_line(result.stderr)
    assert f"names '{score}', which is no OOD score" in line and "--scores" not in line, line


def test_a_known_score_the_run_lacks_still_suggests_adding_it(tmp_path: Path) -> None:
    result = _invoke(tmp_path, ["benchmark", "--require", "dismax/knn:AUROC:uniform>=0.5"])
    assert result.exit_code == 2 and "add it with --scores knn" in result.stderr


def test_a_suggested_command_line_is_quoted_for_the_shell(tmp_path: Path) -> None:
    import shlex

    for value in ("e f", "run[1]", "it's"):
        result = _invoke(tmp_path, ["score", "--ood", "uniform", value])
        assert result.exit_code == 2
        line = _one_error_line(result.stderr)
        suggested = line.split("give it before the options (", 1)[1].split(" --ood", 1)[0]
        # Pasted into a shell, the suggestion gives the value back as one word.
        assert shlex.split(suggested) == ["dismax", "score", value], line
        assert f"as a path ({shlex.quote('./' + value)})" in line


def test_torch_advice_is_not_quoted_as_the_reason(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text('{"a": 1}\n')
    result = _invoke(tmp_path, ["score", str(tmp_path / "r.json"), "--ood", "uniform"])
    assert result.exit_code == 1
    line = _one_error_line(result.stderr)
    assert "Unsupported operand" in line and "https://" not in line, line
    assert "documentation" not in line


def test_a_report_that_is_not_one_is_named(tmp_path: Path) -> None:
    from dismax_cli.errors import DismaxError
    from dismax_cli.reports import from_json

    for text, says in (('{"a": ', "is not valid JSON"), ("[1]", "is not a dismax report")):
        with pytest.raises(DismaxError) as info:
            from_json(text, source=tmp_path / "t.json")
        assert str(info.value).startswith(f"report '{tmp_path / 't.json'}' {says}"), info.value


def test_report_damage_names_kinds_in_plain_words() -> None:
    from dismax_cli.report_checks import Damaged, _expect

    with pytest.raises(Damaged) as info:
        _expect({"a": 1}, "str", "created")
    assert str(info.value) == 'created is a mapping {"a": 1}, expected text'


def test_train_out_empty_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    for value in ("", " "):
        result = _invoke(tmp_path, ["train", "--out", value])
        assert result.exit_code == 2 and "is empty: name the run folder" in result.output


# ----------------------------------------------------------------------------- item 14


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["score", "nothere.pt", "--ood", "uniform"], "checkpoint 'nothere.pt' does not exist"),
        (["score", "emptyrun", "--ood", "uniform"], "run folder 'emptyrun' holds no checkpoint"),
        (["calibrate", "nothere"], "checkpoint 'nothere' does not exist"),
        (["detect", "nothere.pt", "x.png"], "checkpoint 'nothere.pt' does not exist"),
        (["score", "fr/checkpoint.pt", "--ood", "uniform"],
         "checkpoint 'fr/checkpoint.pt' is a folder, not a checkpoint file"),
        (["calibrate", "fr/checkpoint.pt"], "'fr/checkpoint.pt' is a folder"),
        (["train", "--out", "fr", "--resume"], "checkpoint 'fr/checkpoint.pt' is a folder"),
    ],
)  # fmt: skip
def test_a_missing_checkpoint_answers_before_torch_loads(
    import_probe: ImportProbe, tmp_path: Path, args: list[str], says: str
) -> None:
    (tmp_path / "emptyrun").mkdir()
    (tmp_path / "fr" / "checkpoint.pt").mkdir(parents=True)
    code = f"import sys\nfrom dismax_cli.cli.app import main\nsys.exit(main({args!r}))\n"
    env = {**os.environ, **_env(tmp_path)}
    result = import_probe.run(code, cwd=tmp_path, env=env)
    assert result.code == 1, result.stderr
    assert says in _one_error_line(result.stderr), result.stderr
    assert "checkpoint.pt/checkpoint.pt" not in result.stderr
    assert result.heavy(("torch", "torchvision", "sklearn", "scipy")) == [], args


@pytest.mark.parametrize("text", ["1_0", "\u0663"])
def test_torchrun_variables_follow_the_same_grammar(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    from dismax_cli.engine.devices import torchrun_env_int
    from dismax_cli.errors import DismaxError

    monkeypatch.setenv("LOCAL_RANK", text)
    with pytest.raises(DismaxError, match="LOCAL_RANK"):
        torchrun_env_int("LOCAL_RANK", 0)
    monkeypatch.setenv("LOCAL_RANK", " 3 ")
    assert torchrun_env_int("LOCAL_RANK", 0) == 3
    monkeypatch.delenv("LOCAL_RANK")
    assert torchrun_env_int("LOCAL_RANK", 5) == 5


# ----------------------------------------------------------------------------- item 11: show


def test_a_renamed_report_pair_is_found_by_its_new_stem(tmp_path: Path) -> None:
    import shutil

    from test_evidence import _collected

    from dismax_cli.evidence import load_report_samples, write_per_sample

    ev, report = _collected()
    named = write_per_sample(report, ev, tmp_path / "base.json")
    (tmp_path / "real").mkdir()
    shutil.move(tmp_path / "base.samples.npz", tmp_path / "real" / "r.samples.npz")
    loaded = load_report_samples(named, tmp_path / "real" / "r.json")
    assert list(loaded.methods) == list(ev.records)
    # Another file under the named name does not hide the renamed one: the sha256 decides.
    (tmp_path / "real" / "base.samples.npz").write_bytes(b"another report's samples")
    assert list(load_report_samples(named, tmp_path / "real" / "r.json").methods)


def test_a_missing_per_sample_file_names_where_it_looked_and_a_fix_that_works(
    tmp_path: Path,
) -> None:
    from test_evidence import _collected

    from dismax_cli.errors import DismaxError
    from dismax_cli.evidence import load_report_samples, write_per_sample

    ev, report = _collected()
    named = write_per_sample(report, ev, tmp_path / "base.json")
    (tmp_path / "base.samples.npz").unlink()
    with pytest.raises(DismaxError) as info:
        load_report_samples(named, tmp_path / "r.json")
    message = str(info.value)
    assert "'base.samples.npz'" in message and f"'{tmp_path / 'r.samples.npz'}'" in message
    assert "pass the .npz" not in message  # no option passes one


def test_a_score_report_is_said_to_hold_no_per_sample_data(tmp_path: Path) -> None:
    import dataclasses

    from test_evidence import _collected

    from dismax_cli.errors import DismaxError
    from dismax_cli.evidence import load_report_samples

    _, report = _collected()
    scored = dataclasses.replace(report, kind="score", per_sample=None)
    with pytest.raises(DismaxError, match="written by dismax score, whose reports hold no "):
        load_report_samples(scored, tmp_path / "s.json")
    with pytest.raises(DismaxError, match="without --out"):  # a benchmark report keeps its line
        load_report_samples(dataclasses.replace(scored, kind="benchmark"), tmp_path / "s.json")


def test_the_help_lists_every_exit_code_the_readme_documents() -> None:
    """``dismax --help`` names the codes a script can see (README "Exit codes"): 0-3, 130, 141,
    143 (newcomer's report: the help stopped at 3)."""
    from typer.testing import CliRunner

    from dismax_cli.cli.app import app

    text = " ".join(CliRunner().invoke(app, ["--help"]).output.split())
    for code in ("0 success", "1 an error", "2 a usage error", "3 a failed --require",
                 "130 Ctrl-C", "141 the output's reader went away", "143 SIGTERM"):  # fmt: skip
        assert code in text, code
