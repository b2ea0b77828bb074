"""Message and small API faults of the tester's session-5 report (items 8, 9, 11, 12, 13, 16, 17).

The project's rule (README "Design notes"): bad input gets one line naming the value and the
fix, in plain words (never Python's or torch's type names, never a library's own wording),
every path quoted as typed (``'PATH'``), every suggested command quoted for the shell; a bad
option value or environment number exits 2 before torch loads.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from support import ImportProbe, invoke_in
from torch import nn

from dismax_cli.errors import DismaxError

SPEC = "digits[0-5]"


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text, text
    return lines[0]


def _suggested(message: str) -> list[str]:
    """The command a message suggests between backticks, split as a POSIX shell splits it."""
    match = re.search(r"`(dismax [^`]*)`", message)
    assert match, message
    return shlex.split(match.group(1))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A one-epoch digits run, uncalibrated, and a calibrated copy of it."""
    from dismax_cli.engine import TrainConfig, fit

    root = tmp_path_factory.mktemp("msg5")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISMAX_DATA_DIR", str(root / "data"))
        mp.setenv("DISMAX_OFFLINE", "1")
        fit(TrainConfig(dataset=SPEC, epochs=1, device="cpu"), root / "plain")
    shutil.copytree(root / "plain", root / "calibrated")
    result = invoke_in(root, "calibrate", "calibrated", "-q")
    assert result.exit_code == 0, result.output
    return {"root": root, "plain": root / "plain", "calibrated": root / "calibrated"}


# ----------------------------------------------------------------------------- item 8


def test_replace_head_refuses_a_method_without_a_head() -> None:
    from dismax_cli import replace_head

    model = nn.Sequential(nn.ReLU(), nn.Linear(4, 3))
    with pytest.raises(DismaxError, match="'ensemble' has no head to put in a model"):
        replace_head(model, "ensemble")
    assert isinstance(model[1], nn.Linear)  # nothing was replaced


# ----------------------------------------------------------------------------- item 9


@pytest.mark.parametrize(
    ("tpr", "n", "expected"),
    [
        # k = ceil(tpr * n); the threshold is the k-th largest of 0..n-1, i.e. n - k.
        (np.float32(0.95), 20, 1.0),  # float32 0.95 is 0.949999988: still k = 19, not 18
        (np.float16(0.95), 20, 1.0),
        (Fraction(19, 20), 20, 1.0),
        (Decimal("0.95"), 20, 1.0),
        (torch.tensor(0.95), 20, 1.0),
        (torch.tensor([0.95]), 20, 1.0),
        (np.array(0.95), 20, 1.0),
        (Fraction(1, 3), 6, 4.0),  # k = 2
        (np.int64(1), 5, 0.0),  # k = n: the smallest
        (0.1 + 0.2, 10, 7.0),  # 0.30000000000000004 is 3/10: k = 3
    ],
)
def test_tpr_threshold_takes_any_real_number(tpr: object, n: int, expected: float) -> None:
    from dismax_cli.core.metrics import tpr_threshold

    scores = np.arange(n, dtype=np.float64)[::-1].copy()
    assert tpr_threshold(scores, tpr=tpr) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tpr", "says"),
    [
        (np.float32(1.5), "tpr 1.5 is not in (0, 1]"),
        (Decimal("0"), "tpr 0 is not in (0, 1]"),
        (float("nan"), "tpr .nan is not in (0, 1]"),
        (torch.tensor(2.0), "tpr 2.0 is not in (0, 1]"),
        (True, "tpr true is not a number"),
        (np.bool_(True), "tpr true is not a number"),
        ("0.95", "tpr '0.95' is not a number"),
        (None, "tpr null is not a number"),
        ([0.95], "tpr [0.95] is not a number"),
        (torch.tensor([0.5, 0.6]), "tpr holds 2 values, not one number"),
    ],
)
def test_a_bad_tpr_names_the_value_and_the_fault(tpr: object, says: str) -> None:
    from dismax_cli.core.metrics import tpr_threshold

    with pytest.raises(DismaxError) as info:
        tpr_threshold(np.arange(4.0), tpr=tpr)  # type: ignore[arg-type]
    assert says in str(info.value)
    assert "Error" not in str(info.value) and "tensor(" not in str(info.value)


def test_run_threshold_takes_numpy_tpr_and_refuses_a_list_score(runs: dict[str, Path]) -> None:
    from dismax_cli import load_run

    run = load_run(runs["calibrated"])
    val = np.sort(np.asarray(run.meta.thresholds["mmles"], dtype=np.float64))[::-1]
    k = -(-19 * len(val) // 20)  # ceil(0.95 n) in integers
    assert run.threshold("mmles", tpr=np.float32(0.95)) == val[k - 1]
    with pytest.raises(DismaxError, match=r"unknown score \[msp\]: choose one of"):
        run.threshold(["msp"])  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- item 11


def _truncated_png(path: Path) -> None:
    from PIL import Image

    whole = path.with_name("whole.png")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(whole)
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_detect_and_dataset_messages_quote_paths(runs: dict[str, Path], tmp_path: Path) -> None:
    shutil.copytree(runs["calibrated"], tmp_path / "r2")
    _truncated_png(tmp_path / "it's bad.png")
    (tmp_path / "img dir").mkdir()
    _truncated_png(tmp_path / "img dir" / "a b.png")
    np.savez(tmp_path / "f loat.npz", x=np.zeros((2, 8, 8, 3), np.float64))
    cases = [
        (["detect", "r2", "it's bad.png"], "image 'it's bad.png' is truncated or corrupt"),
        (["detect", "r2", "f loat.npz"], "npz file 'f loat.npz': array 'x' has dtype float64"),
        (["detect", "r2", "img dir"], "image 'img dir/a b.png' is truncated"),
        (["score", "r2", "--ood", "npz:no such.npz"],
         f"npz file '{tmp_path / 'no such.npz'}' (from 'npz:no such.npz') does not exist"),
        (["score", "r2", "--ood", "imagefolder:no dir"],
         f"image folder '{tmp_path / 'no dir'}' (from 'imagefolder:no dir') does not exist"),
        (["score", "r2", "--ood", "imagefolder:img dir"],
         f"image folder '{tmp_path / 'img dir'}': image '{tmp_path / 'img dir' / 'a b.png'}'"),
    ]  # fmt: skip
    for args, says in cases:
        result = (
            invoke_in(tmp_path, *args, "-q") if args[0] == "score" else invoke_in(tmp_path, *args)
        )
        assert result.exit_code == 1, (args, result.output)
        assert says in _one_line(result.stderr), (args, result.stderr)


@pytest.mark.parametrize(
    ("ood", "looked"),
    [
        ("svhn", "(looked for '{d}/test_32x32.mat')"),
        ("mnist", "in '{d}/MNIST/raw/'"),
        ("lsun", "save it as '{d}/odin/LSUN_resize.tar.gz'"),
    ],
)
def test_a_missing_named_set_quotes_its_folders(
    runs: dict[str, Path], tmp_path: Path, ood: str, looked: str
) -> None:
    shutil.copytree(runs["calibrated"], tmp_path / "r2")
    data = tmp_path / "my data"
    result = invoke_in(tmp_path, "score", "r2", "--ood", ood, "--data-dir", str(data), "-q")
    line = _one_line(result.stderr)
    assert result.exit_code == 1 and f"is not in '{data}'" in line, line
    assert looked.format(d=data) in line, line


def test_a_fifo_given_as_an_image_is_not_called_corrupt(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    shutil.copytree(runs["calibrated"], tmp_path / "r2")
    os.mkfifo(tmp_path / "fifo.png")
    result = invoke_in(tmp_path, "detect", "r2", "fifo.png")
    line = _one_line(result.stderr)
    assert result.exit_code == 1 and "image 'fifo.png' is not a regular file" in line, line
    assert "truncated" not in line and "corrupt" not in line


# ----------------------------------------------------------------------------- item 12


@pytest.mark.parametrize(
    "words",
    [
        ["calibrate", "my run"],
        ["train", "--out", "it's unfin", "--resume"],
        ["calibrate", 'a$b`c\\d"e'],
        ["calibrate", ""],
        ["calibrate", "runs/plain-name_1.0"],
    ],
)
def test_a_suggested_command_splits_back_into_its_words(words: list[str]) -> None:
    from dismax_cli.errors import shell_command

    assert shlex.split(shell_command(*words)) == ["dismax", *words]


def test_detect_on_an_uncalibrated_run_suggests_a_quoted_command(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    shutil.copytree(runs["plain"], tmp_path / "my run")
    Path(tmp_path / "x.png").write_bytes(b"")
    result = invoke_in(tmp_path, "detect", "my run", "x.png")
    assert result.exit_code == 1
    assert _suggested(_one_line(result.stderr)) == ["dismax", "calibrate", "my run"]


def test_unfinished_run_messages_suggest_the_full_quoted_resume_command() -> None:
    from dismax_cli.benchmark_scoring import _checkpoint_notes
    from dismax_cli.engine.calibrate import _check_calibratable

    meta = SimpleNamespace(finished=False, epoch=1, epochs=3, calibration=None, method="dismax")
    run = Path("it's unfin")
    resume = ["dismax", "train", "--out", "it's unfin", "--resume"]
    with pytest.raises(DismaxError) as info:
        _check_calibratable(run / "checkpoint.pt", meta, "honest")  # type: ignore[arg-type]
    assert _suggested(str(info.value)) == resume
    (note,) = _checkpoint_notes(run / "checkpoint.pt", meta, 1.0)
    assert _suggested(note) == resume
    (note,) = _checkpoint_notes(run, meta, 1.0)  # the run folder given instead of its file
    assert _suggested(note) == resume


# ----------------------------------------------------------------------------- item 13


@pytest.mark.parametrize(
    ("args", "option", "choices"),
    [
        (["train", "--out", "x", "--format", "nope"], "--format", "table, json"),
        (["datasets", "--format", "nope"], "--format", "table, json"),
        (["show", "r.json", "--format", "nope"], "--format", "table, json"),
        (["score", "r", "--format", "nope"], "--format", "table, json"),
        (["detect", "r", "x.png", "--format", "nope"], "--format", "table, json"),
        (["calibrate", "r", "--objective", "nope"], "--objective", "ece, nll"),
    ],
)
def test_every_choice_is_refused_in_one_wording(
    tmp_path: Path, args: list[str], option: str, choices: str
) -> None:
    result = invoke_in(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}': 'nope' is not one of {choices}" in result.stderr
    assert "Value error" not in result.stderr and "'table'" not in result.stderr


def test_help_shows_no_python_annotation() -> None:
    commands = [[], ["train"], ["score"], ["calibrate"], ["benchmark"], ["show"], ["datasets"],
                ["detect"]]  # fmt: skip
    for command in commands:
        result = invoke_in(Path.cwd(), *command, "--help")
        assert result.exit_code == 0, command
        shown = re.findall(r"<[^>\s]*>", result.stdout)
        python = [s for s in shown if re.search(r"[A-Z\[]", s)]  # <Path>, <list[Path]>
        assert python == [], (command, python)


def test_report_messages_read_plainly(runs: dict[str, Path]) -> None:
    from dismax_cli.benchmark import score_checkpoint
    from dismax_cli.reports import from_dict, to_dict

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISMAX_DATA_DIR", str(runs["root"] / "data"))
        mp.setenv("DISMAX_OFFLINE", "1")
        data = to_dict(score_checkpoint(runs["calibrated"], ["uniform"], device="cpu"))
    cases = [
        ({"n_id": True}, "methods[0].n_id is true, expected an integer"),
        ({"n_id": None}, "methods[0].n_id is null, expected an integer"),
    ]
    for change, says in cases:
        bad = json.loads(json.dumps(data))
        bad["methods"][0].update(change)
        with pytest.raises(DismaxError) as info:
            from_dict(bad)
        assert says in str(info.value) and "true or false true" not in str(info.value)
    bad = {**data, "schema_version": "1"}
    with pytest.raises(DismaxError, match=r"schema_version is text '1', expected the number 1"):
        from_dict(bad)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"\xff\xfe{}", "is not UTF-8 text (byte 0xff at offset 0)"),
        (b"PK\x03\x04\x00\x00\xff\x00", "(byte 0xff at offset 6; it looks binary)"),
    ],
)
def test_binary_inputs_say_so_with_the_fix(tmp_path: Path, content: bytes, says: str) -> None:
    (tmp_path / "r.json").write_bytes(content)
    (tmp_path / "c.yaml").write_bytes(content)
    for args, fix in (
        (["show", "r.json"], "pass the JSON report written by --out"),
        (["train", "--config", "c.yaml", "--out", "x"], "pass a YAML file of 'option: value'"),
    ):
        result = invoke_in(tmp_path, *args)
        line = _one_line(result.stderr)
        assert says in line and fix in line, line
        assert "codec" not in line and "decode" not in line, line


def test_predict_names_inputs_in_plain_words(runs: dict[str, Path]) -> None:
    from dismax_cli import load_run

    run = load_run(runs["plain"])
    for images, says in (
        (None, "images given as null cannot be predicted"),
        ("x.png", "images given as text cannot be predicted"),
        (torch.zeros(2, 8, 8, 1, dtype=torch.int64), "images of dtype int64 cannot be predicted"),
    ):
        with pytest.raises(DismaxError) as info:
            run.predict(images)  # type: ignore[arg-type]
        assert says in str(info.value)
        assert "NoneType" not in str(info.value) and "torch." not in str(info.value)


@pytest.mark.parametrize(
    ("requirement", "says"),
    [
        ("dismax:AUROC:>=0.5", "has no set before the comparison"),
        ("dismax:AUROC:<0.5", "has no set before the comparison"),
        ("dismax::uniform>=0.5", "has no metric before its ':'"),
        (":AUROC:uniform>=0.5", "has no method before its ':'"),
        ("dismax:AUROC:uniform", "has no comparison"),
        ("dismax:AUROC:uniform>=", "has no number after the comparison"),
    ],
)
def test_a_requirement_says_which_part_is_missing(requirement: str, says: str) -> None:
    from dismax_cli.config import InvalidValueError
    from dismax_cli.gates import parse_requirements

    with pytest.raises(InvalidValueError) as info:
        parse_requirements([requirement], methods=None, ood=None)
    assert says in str(info.value) and "is not an operator" not in str(info.value)


@pytest.mark.parametrize("model", ["torchvision:resnet18 ", " torchvision:resnet18", "convnet "])
def test_a_model_name_with_a_space_says_so(tmp_path: Path, model: str) -> None:
    result = invoke_in(tmp_path, "train", "--out", "x", "--model", model)
    assert result.exit_code == 2
    assert "has a space around" in result.stderr and model.strip() in result.stderr
    assert "has no model name" not in result.stderr


def test_a_missing_samples_file_is_named_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dismax_cli.evidence import load_report_samples

    report = SimpleNamespace(per_sample={"file": "r.samples.npz", "sha256": "0"}, kind="benchmark")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ns").mkdir()
    with pytest.raises(DismaxError) as info:
        load_report_samples(report, "ns/r.json")  # type: ignore[arg-type]
    message = str(info.value)
    assert message.count("r.samples.npz") == 3, message  # the name, where it looked, the fix
    assert "'r.samples.npz' or 'r.samples.npz'" not in message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[a]: 1\n", "has a list as a key (line 1)"),
        ("{a: 1}: 2\n", "has a mapping as a key (line 1)"),
        ("epochs: 1\n---\nepochs: 2\n", "holds more than one YAML document (line 2)"),
        ("a: !!python/object:os.system x\n", "uses the tag '!!python/object:os.system'"),
        ("a: !foo x\n", "uses the tag '!foo'"),
    ],
)
def test_valid_yaml_a_config_cannot_hold_is_named(tmp_path: Path, text: str, says: str) -> None:
    (tmp_path / "c.yaml").write_text(text)
    result = invoke_in(tmp_path, "train", "--config", "c.yaml", "--out", "x")
    line = _one_line(result.stderr)
    assert result.exit_code == 2 and says in line, line
    assert "not valid YAML" not in line


def test_invalid_yaml_is_still_called_invalid(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("a: [1\n")
    result = invoke_in(tmp_path, "train", "--config", "c.yaml", "--out", "x")
    assert result.exit_code == 1 and "is not valid YAML at line 2" in result.stderr


# ----------------------------------------------------------------------------- item 16


@pytest.mark.parametrize(
    ("args", "config", "says"),
    [
        (["benchmark", "--runs-dir", ""], None, "--runs-dir '' is empty"),
        (["benchmark", "--data-dir", "  "], None, "--data-dir '  ' is empty"),
        (["train", "--out", "x", "--data-dir", ""], None, "--data-dir '' is empty"),
        (["score", "r", "--data-dir", ""], None, "--data-dir '' is empty"),
        (["datasets", "--data-dir", ""], None, "--data-dir '' is empty"),
        (["benchmark", "--config", "c.yaml"], 'runs_dir: ""\n', "key 'runs_dir'"),
        (["train", "--out", "x", "--config", "c.yaml"], 'data_dir: "  "\n', "key 'data_dir'"),
    ],
)
def test_an_empty_folder_option_is_refused(
    tmp_path: Path, args: list[str], config: str | None, says: str
) -> None:
    if config is not None:
        (tmp_path / "c.yaml").write_text(config)
    result = invoke_in(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert says in result.stderr and "is empty: name a folder" in result.stderr


# ----------------------------------------------------------------------------- item 17


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DISMAX_NET_TIMEOUT", "abc"),
        ("DISMAX_NET_TIMEOUT", "0"),
        ("DISMAX_WORKERS", "abc"),
        ("DISMAX_WORKERS", "-1"),
        ("DISMAX_WORKERS", "1.5"),
        ("DISMAX_TIMING_SECONDS", "-1"),
        ("DISMAX_NET_TIMEOUT", "99999999999"),  # overflowed time_t in the socket: internal error
        ("DISMAX_TIMING_SECONDS", "1e12"),
        ("DISMAX_WORKERS", "100000"),
    ],
)
def test_a_bad_environment_number_exits_2_before_torch(
    import_probe: ImportProbe, tmp_path: Path, variable: str, value: str
) -> None:
    env = {
        **os.environ,
        "DISMAX_OFFLINE": "1",
        "DISMAX_DATA_DIR": str(tmp_path / "d"),
        "DISMAX_RUNS_DIR": str(tmp_path / "r"),
        "DISMAX_TIMING_SECONDS": "0",
        variable: value,
    }
    # train on an in-memory set: it streams nothing and downloads nothing.
    args = ["train", "--epochs", "1", "--out", "x", "-q"]
    code = f"import sys\nfrom dismax_cli.cli.app import main\nsys.exit(main({args!r}))\n"
    result = import_probe.run(code, cwd=tmp_path, env=env)
    line = _one_line(result.stderr)
    assert result.code == 2, result.stderr
    assert line.startswith(f"error: {variable}='{value}' is invalid: use "), line
    assert line.endswith(", or unset it for the default"), line
    assert result.heavy() == [] and not (tmp_path / "x").exists()


def test_help_answers_whatever_the_environment() -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISMAX_WORKERS", "abc")
        result = invoke_in(Path.cwd(), "train", "--help")
    assert result.exit_code == 0 and "Usage: dismax train" in result.stdout
