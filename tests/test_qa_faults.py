"""Faults a tester found with bad inputs (QA round): each test fails on the code before its fix."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from support import invoke_in, offline_env
from typer.testing import CliRunner

from dismax_cli.cli.app import app
from dismax_cli.config import InvalidValueError
from dismax_cli.core.heads import DisMaxHead, IsoMaxPlusHead

runner = CliRunner()
LONG = "a" * 300  # one path component over the usual 255-byte NAME_MAX


@pytest.fixture(scope="module")
def qa_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a 1-epoch digits[0-5] run ``r1`` (trained once for the module)."""
    home = tmp_path_factory.mktemp("qa")
    env = offline_env(home)
    result = runner.invoke(
        app,
        ["train", "--dataset", "digits[0-5]", "--epochs", "1", "--out", str(home / "r1"), "-q"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    return home


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    assert errors, result.output
    assert "internal error" not in result.output, result.output
    assert "Traceback" not in result.output
    return errors[-1]


# ----------------------------------------------------------------------------- item 8: heads


@pytest.mark.parametrize("head_cls", [DisMaxHead, IsoMaxPlusHead])
@pytest.mark.parametrize("magnitude", [1e19, 2e19, 1e30, 3e38])
def test_head_keeps_logits_and_gradient_of_huge_finite_features(head_cls, magnitude):
    """METHOD.md §1: the logits depend on f / ‖f‖ only, so a huge finite f keeps them."""
    torch.manual_seed(0)
    head = head_cls(4, 3)
    direction = torch.tensor([[0.5, -1.0, 0.25, 0.75], [-0.3, 0.2, 1.0, -0.1]])
    unit = direction.clone().requires_grad_(True)
    expected = head(unit)
    huge = (direction * magnitude).requires_grad_(True)
    assert torch.isfinite(huge).all()
    logits = head(huge)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    # not the degenerate [-2, -2, -2] pattern of an overflowing norm
    assert logits.std(dim=1).min() > 1e-3
    weights = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.7, -1.0]])
    (logits * weights).sum().backward()
    (expected * weights).sum().backward()
    assert torch.isfinite(huge.grad).all() and (huge.grad != 0).any()
    # d/df of a function of f/‖f‖ scales as 1/|f|: grad(huge) * magnitude == grad(unit)
    scaled = huge.grad.double() * magnitude
    torch.testing.assert_close(scaled, unit.grad.double(), rtol=2e-2, atol=1e-4)


# ----------------------------------------------------------------------------- item 3: OSError


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--dataset", "digits[0-5]", "--epochs", "1", "--out", LONG],
        ["train", "--dataset", "digits[0-5]", "--epochs", "1", "--out", f"{LONG}/x"],
        ["score", "r1", "--ood", "uniform", "--dump", f"{LONG}/x.npz"],
        ["score", "r1", "--ood", "uniform", "--dump", f"{LONG}.npz"],
        ["train", "--config", LONG, "--out", "x"],
        ["score", "r1", "--ood", f"npz:{LONG}"],
        ["score", "r1", "--ood", f"imagefolder:{LONG}"],
        ["score", "r1", "--ood", "uniform", "--data-dir", LONG],
        ["benchmark", "show", LONG],
        ["benchmark", "--config", LONG],
    ],
)
def test_a_path_the_system_refuses_is_a_user_error_naming_it(qa_home: Path, args) -> None:
    result = invoke_in(qa_home, *args)
    output = args[-2] in ("--out", "--dump") and LONG in args[-1]  # a refused output: exit 2
    assert result.exit_code == (2 if output else 1), result.output
    line = one_error_line(result)
    assert LONG in line
    assert "too long" in line.lower()
    assert not (qa_home / "x").exists()


# ----------------------------------------------------------------------------- item 2: 0-size


@pytest.mark.parametrize("shape", [(5, 0, 8, 1), (5, 8, 0, 3), (5, 0, 0), (0, 0, 4, 1)])
@pytest.mark.parametrize("role", ["--ood", "--dataset"])
def test_images_of_height_or_width_zero_are_refused_naming_the_file(
    qa_home: Path, shape, role
) -> None:
    path = qa_home / f"zero_{'_'.join(map(str, shape))}.npz"
    np.savez(path, x=np.zeros(shape, np.uint8), y=np.zeros(shape[0], np.int64))
    if role == "--ood":
        args = ["score", "r1", "--ood", f"npz:{path.name}", "-q"]
    else:
        args = ["train", "--dataset", f"npz:{path.name}", "--epochs", "1", "--out", "z", "-q"]
    result = invoke_in(qa_home, *args)
    assert result.exit_code == 1, result.output
    line = one_error_line(result)
    assert path.name in line
    assert "height" in line and "width" in line
    assert not (qa_home / "z").exists()


def test_every_source_is_checked_for_zero_size_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry checks what any source returns, not only the npz reader."""
    from dismax_cli.data import registry
    from dismax_cli.data.imageset import ImageSet
    from dismax_cli.errors import DismaxError

    source = registry.SOURCES[registry.parse_spec("uniform").kind]

    def flat(parsed, split, root, *, download=True, like=None):
        return ImageSet(
            torch.zeros((4, 3, 0, 1), dtype=torch.uint8), None, (), "uniform", "all", "test source"
        )

    monkeypatch.setattr(source, "load", flat)
    with pytest.raises(DismaxError, match="height 3 and width 0"):
        registry.load_dataset("uniform", split="all")


# ----------------------------------------------------------------------------- item 9: --require


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dismax:AUROC:uniform=>0.5", "=> is not an operator"),
        ("dismax:AUROC:uniform=<0.5", "=< is not an operator"),
        ("dismax:AUROC:uniform=0.5", "= is not an operator"),
        ("dismax:AUROC:id>=0.5", "AUROC is an OOD metric, not an 'id' metric"),
        ("dismax:fpr@95tpr:id<=0.5", "FPR@95TPR is an OOD metric, not an 'id' metric"),
        ("dismax:AUROC:uniform>=\u0660.5", "not a number"),
        ("dismax:AUROC:uniform>=0.\u0665", "not a number"),
        ("dismax:AUROC:uniform>=0_5", "not a number"),
    ],
)
def test_bad_requirements_say_what_is_wrong(text: str, message: str) -> None:
    from dismax_cli.benchmark import parse_requirements
    from dismax_cli.config import InvalidValueError

    with pytest.raises(InvalidValueError) as info:
        parse_requirements([text], methods=["softmax", "dismax"], ood=["uniform", "gaussian"])
    assert message in str(info.value)
    assert "names OOD set" not in str(info.value)


@pytest.mark.parametrize("spelling", ["DisMax", "DISMAX", "dismax"])
def test_requirement_method_names_are_case_insensitive(spelling: str) -> None:
    from dismax_cli.benchmark import parse_requirements

    (req,) = parse_requirements(
        [f"{spelling}:auroc:uniform>=0.5"], methods=["softmax", "dismax"], ood=["uniform"]
    )
    assert (req.method, req.metric, req.dataset, req.threshold) == (
        "dismax",
        "AUROC",
        "uniform",
        0.5,
    )


# ----------------------------------------------------------------------------- item 11: width


@pytest.fixture(scope="module")
def score_json(qa_home: Path) -> Path:
    out = qa_home / "score.json"
    args = ["score", "r1", "--ood", "uniform", "gaussian", "--out", str(out), "-q"]
    result = invoke_in(qa_home, *args)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("columns", ["20", "40", "59"])
def test_narrow_terminals_never_cut_numbers(qa_home: Path, score_json: Path, columns) -> None:
    import json

    data = json.loads(score_json.read_text())
    env = {**offline_env(qa_home), "COLUMNS": columns}
    result = runner.invoke(app, ["benchmark", "show", str(score_json)], env=env)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    (method,) = data["methods"]
    shown = [ood for ood in method["ood"] if ood["score"] == method["default_score"]]
    assert len(shown) == 2
    for ood in shown:
        for key in ("AUROC", "FPR@95TPR", "DETACC"):
            value = ood["metrics"][key]["mean"] * 100
            assert f"{value:.2f}" in result.output, (key, result.output)


# ----------------------------------------------------------------------------- item 4: reports


def _damage(path: list, value):
    def apply(data: dict) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return apply


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (["methods", 0, "ood", 0, "metrics", "AUROC", "mean"], "NaN", "metrics.AUROC.mean"),
        (["methods", 0, "ood", 0, "metrics", "AUROC", "mean"], float("nan"), "AUROC.mean"),
        (["methods", 0, "ood", 0, "metrics", "DETACC", "mean"], float("inf"), "DETACC.mean"),
        (["methods", 0, "ood", 0, "metrics", "AUROC", "values"], "0.5", "AUROC.values"),
        (["methods", 0, "ood", 0, "metrics", "AUROC", "values", 0], True, "AUROC.values[0]"),
        (["methods", 0, "id_after", "ACC"], [0.5], "id_after.ACC"),
        (["methods", 0, "temperature", "mean"], "1", "temperature.mean"),
        (["methods", 0, "ood", 0, "n_ood"], 2.5, "ood[0].n_ood"),
        (["methods", 0, "ood", 0, "ood"], 3, "ood[0].ood"),
        (["methods", 0, "uses_fpr"], "yes", "uses_fpr"),
        (["methods", 0, "seeds"], "0", "seeds"),
        (["datasets", 0, "image_shape"], [8, 8], "image_shape"),
        (["datasets", 0, "n"], "216", "datasets[0].n"),
        (["notes"], [1], "notes[0]"),
        (["kind"], None, "kind"),
    ],
)
def test_a_damaged_report_is_one_line_naming_the_field(
    qa_home: Path, score_json: Path, path, value, field
) -> None:
    import json

    data = json.loads(score_json.read_text())
    _damage(path, value)(data)
    bad = qa_home / "damaged.json"
    bad.write_text(json.dumps(data))  # json.dumps writes NaN/Infinity literals as given
    for args in (
        ["benchmark", "show", str(bad)],
        ["benchmark", "show", str(bad), "--format", "json"],
    ):
        result = invoke_in(qa_home, *args)
        assert result.exit_code == 1, result.output
        line = one_error_line(result)
        assert f"report '{bad}' is incomplete or damaged" in line, line  # names the file
        assert field in line, line


# ----------------------------------------------------------------------------- items 5-7: specs

MALFORMED_SPECS = [
    ("", "is empty"),
    ("   ", "is empty"),
    ("digits[9-0]", "reversed"),
    ("digits[5-3]", "reversed"),
    ("digits[]", "is empty"),
    ("npz:", "names no path"),
    ("imagefolder:", "names no path"),
    ("uniform:0", "positive integer"),
    ("uniform:-1", "positive integer"),
    ("gaussian:x", "positive integer"),
    ("uniform:\u0665", "positive integer"),
    ("nosuchset", "unknown dataset"),
]


@pytest.mark.parametrize(("spec", "message"), MALFORMED_SPECS)
def test_malformed_ood_specs_exit_2_naming_the_option(qa_home: Path, spec, message) -> None:
    result = invoke_in(qa_home, "score", "r1", "--ood", spec, "-q")
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "--ood" in line and message in line
    assert f"'{spec.strip()}'" in line or not spec.strip()


@pytest.mark.parametrize(("spec", "message"), MALFORMED_SPECS)
@pytest.mark.parametrize("option", ["--dataset", "--test-dataset"])
def test_malformed_training_specs_exit_2_naming_the_option(
    qa_home: Path, spec, message, option
) -> None:
    args = ["train", option, spec, "--epochs", "1", "--out", "bad_run", "-q"]
    result = invoke_in(qa_home, *args)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert option in line and message in line
    assert not (qa_home / "bad_run").exists()


@pytest.mark.parametrize(("spec", "message"), MALFORMED_SPECS[:8])
@pytest.mark.parametrize("key", ["dataset", "test_dataset"])
def test_malformed_specs_in_a_config_exit_2_naming_key_and_file(
    qa_home: Path, spec, message, key
) -> None:
    config = qa_home / f"bad_{key}.yaml"
    config.write_text(f'{key}: "{spec}"\nepochs: 1\n')
    # Also when the command line gives a valid value for the same key.
    for extra in ([], [f"--{key.replace('_', '-')}", "digits"]):
        result = invoke_in(qa_home, "train", "--config", str(config), *extra, "--out", "bad_run")
        assert result.exit_code == 2, result.output
        line = one_error_line(result)
        assert f"'{key}'" in line and config.name in line and message in line
        assert not (qa_home / "bad_run").exists()


@pytest.mark.parametrize(
    ("spec", "shown"),
    [("uniform:-1", "'-1'"), ("Uniform:-2", "'-2'"), ("gaussian:a-b", "'a-b'")],
)
def test_messages_show_the_count_as_typed(qa_home: Path, spec, shown) -> None:
    line = one_error_line(invoke_in(qa_home, "score", "r1", "--ood", spec, "-q"))
    assert shown in line and "_" not in line.split("positive")[0].split(":", 2)[-1]


@pytest.mark.parametrize(
    "spec", ["nosuch\\set", "npz:sub\\dir\\missing.npz", "imagefolder:c:\\x\\missing"]
)
def test_backslashes_in_messages_are_not_doubled(qa_home: Path, spec) -> None:
    result = invoke_in(qa_home, "score", "r1", "--ood", spec, "-q")
    assert result.exit_code in (1, 2), result.output
    line = one_error_line(result)
    assert spec in line, line
    assert "\\\\" not in line


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("a[b]=uniform", "label 'a[b]' in 'a[b]=uniform' is invalid"),
        ("lab\\el=npz:foo.npz", "label 'lab\\el' in 'lab\\el=npz:foo.npz' is invalid"),
        ("1st=uniform", "label '1st'"),
        ("my set=uniform", "label 'my set'"),
        ("=uniform", "empty label"),
        (" =gaussian", "empty label"),
    ],
)
def test_invalid_ood_labels_are_named(qa_home: Path, entry, message) -> None:
    for command in (["score", "r1"], ["benchmark"]):
        result = invoke_in(qa_home, *command, "--ood", entry, "-q")
        assert result.exit_code == 2, result.output
        line = one_error_line(result)
        assert message in line and "--ood" in line
        assert "unknown dataset" not in line


def test_valid_labels_and_paths_with_equals_still_work(qa_home: Path) -> None:
    from dismax_cli.data.registry import check_spec, split_entry

    assert split_entry("far.ood-1=uniform") == ("far.ood-1", "uniform")
    assert split_entry("npz:runs/a=b.npz") == (None, "npz:runs/a=b.npz")
    check_spec("far.ood-1=uniform:50", labelled=True)
    check_spec("_x=digits[6-9]", labelled=True)


# ----------------------------------------------------------------------------- item 10: files


def test_a_folder_or_fifo_where_a_file_is_expected_says_so(qa_home: Path) -> None:
    folder_run = qa_home / "folder_run"
    (folder_run / "checkpoint.pt").mkdir(parents=True, exist_ok=True)
    fifo = qa_home / "fifo.yaml"
    if not fifo.exists():
        os.mkfifo(fifo)
    cases = [
        (["score", str(folder_run), "--ood", "uniform"], "is a folder"),
        (["calibrate", str(folder_run)], "is a folder"),
        (["train", "--config", str(qa_home), "--out", "x"], "is a folder"),
        (["benchmark", "--config", str(qa_home)], "is a folder"),
        (["train", "--config", str(fifo), "--out", "x"], "is not a regular file"),
        (["benchmark", "show", str(qa_home)], "is a folder"),
        (["benchmark", "show", str(fifo)], "is not a regular file"),
        (["score", "r1", "--ood", f"npz:{qa_home}"], "is a folder"),
        (["score", "r1", "--ood", f"npz:{fifo}"], "is not a regular file"),
        (["score", "r1", "--ood", f"imagefolder:{qa_home / 'r1' / 'checkpoint.pt'}"], "not a fold"),
    ]
    for args, message in cases:
        result = invoke_in(qa_home, *args)
        assert result.exit_code == 1, (args, result.output)
        line = one_error_line(result)
        assert message in line and "does not exist" not in line, (args, line)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--config", "", "--out", "x"], "--config is empty"),
        (["benchmark", "--config", ""], "--config is empty"),
        (["score", "r1", "--ood", ""], "--ood"),
    ],
)
def test_empty_file_names_and_specs_are_named(qa_home: Path, args, message) -> None:
    result = invoke_in(qa_home, *args)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert message in line and "Missing option" not in result.output
    assert "'.'" not in line


# ----------------------------------------------------------------------------- item 12: config


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ("epochs: 2\nepochs: 1\n", "epochs", 2),
        ("dataset: digits\nseed: 1\nlr: 0.1\nseed: 3\n", "seed", 4),
        ("batch-size: 8\nbatch-size: 16\n", "batch-size", 2),
    ],
)
def test_a_key_given_twice_in_a_config_is_an_error(qa_home: Path, text, key, line) -> None:
    config = qa_home / "dup.yaml"
    config.write_text(text)
    result = invoke_in(qa_home, "train", "--config", str(config), "--out", "dup_run")
    assert result.exit_code == 2, result.output
    error = one_error_line(result)
    assert f"'{key}'" in error and f"line {line}" in error and "dup.yaml" in error
    assert not (qa_home / "dup_run").exists()


@pytest.mark.parametrize(
    ("text", "key", "override"),
    [
        ("epochs: 0\n", "epochs", ["--epochs", "1"]),
        ("lr: -1\n", "lr", ["--lr", "0.1"]),
        ("batch_size: 1\n", "batch_size", ["--batch-size", "8"]),
        ("method: nosuch\n", "method", ["--method", "dismax"]),
    ],
)
def test_a_bad_config_value_is_reported_even_when_overridden(
    qa_home: Path, text, key, override
) -> None:
    config = qa_home / "over.yaml"
    config.write_text(text)
    result = invoke_in(qa_home, "train", "--config", str(config), *override, "--out", "over_run")
    assert result.exit_code == 2, result.output
    error = one_error_line(result)
    assert f"'{key}'" in error and "over.yaml" in error
    assert not (qa_home / "over_run").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--epochs", "99999999999999999999999", "--out", "big_run"],
        ["train", "--epochs", "100001", "--out", "big_run"],
        ["train", "--batch-size", "1000001", "--out", "big_run"],
        ["benchmark", "--seeds", "1001"],
        ["benchmark", "--ensemble-size", "101"],
    ],
)
def test_counts_have_an_upper_bound_on_the_command_line(qa_home: Path, args) -> None:
    result = invoke_in(qa_home, *args)
    assert result.exit_code == 2, result.output
    assert "from 1 to" in result.output or "from 2 to" in result.output
    assert not (qa_home / "big_run").exists()


@pytest.mark.parametrize(
    ("key", "value"), [("epochs", 100_001), ("epochs", 10**30), ("batch_size", 10**7)]
)
def test_counts_have_an_upper_bound_in_a_config(qa_home: Path, key, value) -> None:
    config = qa_home / "big.yaml"
    config.write_text(f"{key}: {value}\n")
    result = invoke_in(qa_home, "train", "--config", str(config), "--out", "big_run")
    assert result.exit_code == 2, result.output
    error = one_error_line(result)
    assert f"'{key}'" in error and "too large" in error


def test_the_upper_bound_itself_is_accepted() -> None:
    from dismax_cli.config import UPPER_BOUNDS, check_upper_bound

    assert UPPER_BOUNDS["epochs"] == 100_000
    check_upper_bound("epochs", 100_000)
    with pytest.raises(Exception, match="too large"):
        check_upper_bound("epochs", 100_001)


@pytest.mark.parametrize("bad", [2.7, 3.0, "3", True, False, None.__class__])
def test_replace_head_takes_integer_class_counts_only(bad) -> None:
    from torch import nn

    from dismax_cli.adapters import replace_head
    from dismax_cli.errors import DismaxError

    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(DismaxError, match="num_classes=.* is not an integer"):
        replace_head(model, num_classes=bad)
    assert isinstance(model[0], nn.Linear)  # untouched
    replace_head(model, num_classes=np.int64(5))
    assert model[0].num_classes == 5


def test_replace_head_on_a_bare_linear_says_to_build_the_head() -> None:
    from torch import nn

    from dismax_cli.adapters import replace_head
    from dismax_cli.errors import DismaxError

    with pytest.raises(DismaxError) as info:
        replace_head(nn.Linear(4, 3))
    assert "bare nn.Linear" in str(info.value) and "DisMaxHead(4, 3)" in str(info.value)
    assert "has no nn.Linear" not in str(info.value)


# ------------------------------------------------ bad-input round of issue 12 (the merged CLI)


def test_an_output_that_is_a_fifo_is_written_through_not_replaced(tmp_path: Path) -> None:
    import threading

    from dismax_cli.fileio import atomic_write_bytes

    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    atomic_write_bytes(fifo, b"report\n")  # renaming over it would leave a regular file
    reader.join(timeout=30)
    assert got == [b"report\n"] and stat.S_ISFIFO(os.stat(fifo).st_mode)
    plain = tmp_path / "plain.json"
    plain.write_bytes(b"old")
    atomic_write_bytes(plain, b"new")
    assert plain.read_bytes() == b"new" and stat.S_ISREG(os.stat(plain).st_mode)


def test_outputs_never_overwrite_what_the_command_reads(qa_home: Path) -> None:
    data = qa_home / "mine.npz"
    np.savez(data, x=np.zeros((4, 8, 8, 1), np.uint8), y=np.zeros(4, np.int64))
    before = data.read_bytes()
    for option in ("--out", "--dump"):
        result = invoke_in(qa_home, "score", "r1", "--ood", f"npz:{data}", option, str(data), "-q")
        assert result.exit_code == 2, result.output
        assert "would overwrite" in one_error_line(result)
    config = qa_home / "bench.yaml"
    config.write_text("epochs: 1\nmethods: [softmax]\nood: [uniform]\n")
    for args in (["--out", str(config)], ["--html", str(config)], ["--out", "r.json", "--html",
                 "r.samples.npz"], ["--out", "r.json", "--plots", "r.json"]):  # fmt: skip
        result = invoke_in(qa_home, "benchmark", "--config", str(config), *args, "-q")
        assert result.exit_code in (1, 2), result.output
        assert "would overwrite" in one_error_line(result) or "--plots" in result.output
        assert not (qa_home / "r.json").exists()  # refused before anything trained
    assert data.read_bytes() == before and config.read_text().startswith("epochs: 1")


def test_show_refuses_compare_with_figures_and_its_own_samples_as_html(
    qa_home: Path, score_json: Path
) -> None:
    table = Path(__file__).resolve().parents[1] / "benchmarks" / "paper" / "table2.yaml"
    args = ["show", str(score_json), "--compare", str(table), "--html", "p.html"]
    result = invoke_in(qa_home, *args)
    assert result.exit_code == 2 and "--compare prints the comparison only" in result.output
    samples = score_json.with_name(score_json.stem + ".samples.npz")
    result = invoke_in(qa_home, "show", str(score_json), "--html", str(samples))
    assert result.exit_code == 2 and "would overwrite" in one_error_line(result)


@pytest.mark.parametrize(
    "text", ["ood: 5", "ood: [uniform, 5]", "ood: [null]", "require: [1]", "ood: [[uniform]]"]
)
def test_wrong_typed_list_items_in_a_config_exit_2(qa_home: Path, text: str) -> None:
    config = qa_home / "typed.yaml"
    config.write_text(text + "\n")
    result = invoke_in(qa_home, "benchmark", "--config", str(config))
    assert result.exit_code == 2, result.output
    assert "in config file" in one_error_line(result)


def test_one_key_spelled_two_ways_in_a_config_is_an_error(qa_home: Path) -> None:
    config = qa_home / "twice.yaml"
    config.write_text("batch-size: 8\nbatch_size: 16\n")
    result = invoke_in(qa_home, "train", "--config", str(config), "--out", str(qa_home / "tw"))
    assert result.exit_code == 2 and "gives key 'batch_size' twice" in one_error_line(result)
    assert not (qa_home / "tw").exists()


def test_a_fifo_among_the_images_is_named_not_waited_for(qa_home: Path) -> None:
    from PIL import Image

    folder = qa_home / "imgs"
    folder.mkdir()
    Image.new("L", (8, 8)).save(folder / "a.png")
    os.mkfifo(folder / "b.png")
    import shutil

    shutil.copytree(qa_home / "r1", qa_home / "r1cal")
    assert invoke_in(qa_home, "calibrate", "r1cal", "-q").exit_code == 0
    for args in (["detect", "r1cal", str(folder / "b.png")], ["detect", "r1cal", str(folder)]):
        result = invoke_in(qa_home, *args)
        assert result.exit_code == 1 and "b.png" in one_error_line(result), result.output
        assert "not a regular file" in result.output


def test_damaged_report_values_that_crashed_the_renderer(qa_home: Path, score_json: Path) -> None:
    import json

    for path, value, field in (
        (["methods", 0, "label"], 12, "label"),
        (["methods", 0, "id_after", "NLL", "mean"], 10**400, "NLL.mean"),
    ):
        data = json.loads(score_json.read_text())
        _damage(path, value)(data)
        bad = qa_home / "damaged2.json"
        bad.write_text(json.dumps(data))
        result = invoke_in(qa_home, "show", str(bad))
        assert result.exit_code == 1 and field in one_error_line(result), result.output
    data = json.loads(score_json.read_text())
    nll = data["methods"][0]["id_after"]["NLL"]
    nll["mean"], nll["mean_null_reason"] = None, "not computed"  # the documented null form
    (qa_home / "null.json").write_text(json.dumps(data))
    assert invoke_in(qa_home, "show", str(qa_home / "null.json")).exit_code == 0
    (qa_home / "deep.json").write_text("[" * 100_000)
    result = invoke_in(qa_home, "show", str(qa_home / "deep.json"))
    assert result.exit_code == 1 and "nests too deeply" in one_error_line(result)


def test_a_negative_nll_threshold_is_refused_before_training() -> None:
    from dismax_cli.gates import parse_requirements

    with pytest.raises(InvalidValueError, match="NLL is at least 0"):
        parse_requirements(["softmax:NLL:id<=-1"], methods=("softmax",), ood=["uniform"])


def test_a_config_value_valid_with_the_command_line_options_is_accepted(qa_home: Path) -> None:
    # The file was checked with defaults for every key it does not set: --epochs 20 given on the
    # command line, decay_epochs: [15] in the file was refused as "below epochs=10".
    config = qa_home / "decay.yaml"
    config.write_text("decay_epochs: [15]\n")
    out = qa_home / "decay-run"
    result = invoke_in(qa_home, "train", "--config", str(config), "--epochs", "20",
                    "--dataset", "digits[0-1]", "--out", str(out), "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    alone = invoke_in(qa_home, "train", "--config", str(config), "--out", str(qa_home / "d2"))
    assert alone.exit_code == 2 and "below epochs=10" in one_error_line(alone)
