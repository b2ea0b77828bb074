"""Validation faults of the tester's bad-input round (report items 4, 5, 6, 7, 10).

* 4: a config file's values are judged in the merged settings (the command line wins).
* 5: a malformed, out-of-range or unlabelled class subset is exit 2 before torch, any option.
* 6: a huge synthetic count is exit 2 before torch, naming the value and the limit.
* 7: a damaged report (wrong types, non-finite or impossible values) is one line, exit 1.
* 10: a ``--require`` gate that no value can pass is exit 2 before torch.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from support import ImportProbe, invoke_in, refused_before_torch


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    return lines[0]


# ----------------------------------------------------------------------------- item 4


def _merged(tmp_path: Path, text: str, cli: dict[str, Any]) -> Any:
    """``build_config`` of a benchmark with config file ``text`` and command line ``cli``."""
    from dismax_cli.benchmark_config import BenchmarkConfig
    from dismax_cli.config import build_config, read_yaml_config

    path = tmp_path / "c.yaml"
    path.write_text(text)
    return build_config(BenchmarkConfig, cli, read_yaml_config(path), config=path)


@pytest.mark.parametrize(
    ("text", "cli", "methods"),
    [
        # The file's require names dismax; the command line's --methods has it.
        ('methods: [softmax]\nrequire: ["dismax:AUROC:uniform>=0.5"]\nood: [uniform]\n',
         {"methods": ["dismax", "softmax"]}, ("dismax", "softmax")),
        # --no-fpr would make the file's two methods one row, but --methods replaces them.
        ("methods: [dismax, dismax_nofpr]\n", {"methods": ["dismax"], "fpr": False},
         ("dismax",)),
        # The same with fpr: false in the file itself.
        ("methods: [dismax, dismax_nofpr]\nfpr: false\n", {"methods": ["dismax"]}, ("dismax",)),
        # The file's require names set svhn; the command line's --ood has it.
        ('ood: [uniform]\nrequire: ["dismax:AUROC:svhn>=0.5"]\nmethods: [dismax]\n',
         {"ood": ["svhn"]}, ("dismax",)),
        # An ensemble's size matters only while the ensemble is a method.
        ("methods: [ensemble]\nensemble_size: 1\n", {"methods": ["dismax"]}, ("dismax",)),
        # decay_epochs of the file fit its epochs; the command line replaces decay_epochs.
        ("epochs: 90\ndecay_epochs: [30, 60]\nmethods: [dismax]\n", {"decay_epochs": [10, 20]},
         ("dismax",)),
    ],
)  # fmt: skip
def test_config_values_are_judged_in_the_merged_settings(
    tmp_path: Path, text: str, cli: dict[str, Any], methods: tuple[str, ...]
) -> None:
    config = _merged(tmp_path, text, cli)
    assert config.methods == methods


@pytest.mark.parametrize(
    ("text", "cli", "key"),
    [
        ("epochs: 0\n", {"epochs": 3}, "epochs"),
        ("methods: [nosuch]\n", {"methods": ["dismax"]}, "methods"),
        ("methods: [dismax, dismax]\n", {"methods": ["dismax"]}, "methods"),
        ("seeds: 0\n", {"seeds": 2}, "seeds"),
        # Used as given, a relation the merged settings break is still named in the file.
        ('methods: [softmax]\nrequire: ["dismax:AUROC:uniform>=0.5"]\n', {"epochs": 1},
         "require"),
        ("methods: [dismax, dismax_nofpr]\n", {"fpr": False}, "methods"),
    ],
)  # fmt: skip
def test_a_bad_config_value_is_still_named_in_its_file(
    tmp_path: Path, text: str, cli: dict[str, Any], key: str
) -> None:
    from dismax_cli.config import InvalidValueError

    with pytest.raises(InvalidValueError) as info:
        _merged(tmp_path, text, cli)
    assert info.value.key == key
    assert f"key '{key}' in config file" in str(info.value) and "c.yaml" in str(info.value)


def test_the_command_line_wins_over_a_config_in_a_real_benchmark(tmp_path: Path) -> None:
    (tmp_path / "q5.yaml").write_text(
        'methods: [softmax]\nrequire: ["dismax:AUROC:uniform>=0.0"]\n'
    )
    args = ["benchmark", "--config", "q5.yaml", "--methods", "dismax", "softmax", "--epochs",
            "1", "--ood", "uniform", "--bootstrap", "0", "--out", "r.json", "-q"]  # fmt: skip
    result = invoke_in(tmp_path, *args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert [m["method"] for m in report["methods"]] == ["dismax", "softmax"]
    assert report["requirements"][0]["passed"] is True


# ----------------------------------------------------------------------------- items 5, 6, 10


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["benchmark", "--methods", "dismax", "--epochs", "1", "--ood", "digits[a]", "-q"],
         "'a' in 'digits[a]' is neither a class index"),
        (["score", "r2", "--ood", "digits[0--5]"], "'0--5' in 'digits[0--5]' is neither"),
        (["benchmark", "--ood", "digits[10-12]", "-q"], "is outside 0-9"),
        (["benchmark", "--ood", "far=digits[3,12]", "-q"], "'12' in 'digits[3,12]' is outside"),
        (["train", "--dataset", "digits[a]", "--out", "zz"], "--dataset"),
        (["train", "--test-dataset", "digits[0-10]", "--out", "zz"], "--test-dataset"),
        (["train", "--dataset", "uniform[0-1]", "--out", "zz"], "unlabelled set"),
        (["score", "r2", "--ood", "tin_resize[0]"], "unlabelled set"),
        (["score", "r2", "--ood", "gaussian:50[1]"], "unlabelled set"),
        (["score", "r2", "--ood", "npz:x.npz[ , ]"], "names no class"),
        (["benchmark", "--ood", "uniform:99999999999999999999", "-q"],
         "99999999999999999999 synthetic images is too many: ask for at most 1,000,000"),
        (["score", "r2", "--ood", "gaussian:1000001"], "at most 1,000,000"),
        (["benchmark", "--require", "dismax:AUROC:uniform>1", "-q"], "can never pass"),
        (["benchmark", "--require", "dismax:ECE:id<0", "-q"], "ECE is at least 0"),
        (["benchmark", "--require", "dismax:NLL:id<0", "-q"], "NLL is at least 0"),
        (["benchmark", "--require", "dismax:BRIER:id>2", "-q"], "BRIER is at most 2"),
        (["benchmark", "--require", "softmax/odin:FPR@95TPR:uniform<0", "-q"], "can never"),
        (["benchmark", "--config", "bad.yaml", "-q"], "key 'ood' in config file"),
    ],
)  # fmt: skip
def test_bad_subsets_counts_and_gates_answer_before_torch(
    import_probe: ImportProbe, tmp_path: Path, args: list[str], says: str
) -> None:
    (tmp_path / "bad.yaml").write_text('ood: ["digits[x]"]\n')
    assert says in refused_before_torch(import_probe, tmp_path, args)
    assert not (tmp_path / "zz").exists()


@pytest.mark.parametrize(
    "spec", ["digits[0-5]", "digits[9]", "digits[0,3-4]", "uniform:1000000", "npz:x.npz[cat]"]
)
def test_good_subsets_and_counts_still_parse(spec: str) -> None:
    from dismax_cli.data.registry import check_spec

    check_spec(spec, key="ood", labelled=True)


@pytest.mark.parametrize(
    "gate",
    ["dismax:AUROC:uniform>=1", "dismax:AUROC:uniform<1", "dismax:ECE:id<=0", "dismax:ECE:id>0",
     "dismax:NLL:id>100", "dismax:BRIER:id<=2", "dismax:AUROC:uniform==1"],
)  # fmt: skip
def test_gates_that_can_pass_are_accepted(gate: str) -> None:
    from dismax_cli.gates import parse_requirements

    (req,) = parse_requirements([gate], methods=["dismax"], ood=["uniform"])
    assert req.text == gate


def test_a_synthetic_set_too_large_for_memory_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from dismax_cli.data import load_dataset
    from dismax_cli.data.sources import synthetic
    from dismax_cli.errors import DismaxError

    def out_of_memory(*args: Any) -> Any:
        raise MemoryError("Unable to allocate 5.82 TiB")

    monkeypatch.setattr(synthetic, "make_noise", out_of_memory)
    with pytest.raises(DismaxError, match=r"'uniform:900000'.*do not fit in memory.*uniform:1000"):
        load_dataset("uniform:900000", split="all")


def test_a_subset_of_an_unlabelled_set_is_a_bad_value_when_loaded_too() -> None:
    from dismax_cli.config import InvalidValueError
    from dismax_cli.data import load_dataset

    with pytest.raises(InvalidValueError, match="unlabelled set"):
        load_dataset("gaussian:20[0-3]", split="all")


def test_a_bad_class_name_of_a_file_set_is_exit_2_in_a_benchmark(tmp_path: Path) -> None:
    """A file names its own classes, so its subset is checked on loading: still exit 2."""
    import numpy as np

    x = np.zeros((10, 8, 8, 1), np.uint8)
    np.savez(tmp_path / "f.npz", x=x, y=np.arange(10) % 2, classes=np.array(["a", "b"]))
    args = ["benchmark", "--methods", "softmax", "--epochs", "1", "--ood", "npz:f.npz[zebra]",
            "--bootstrap", "0", "-q"]  # fmt: skip
    result = invoke_in(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert "'zebra' in 'npz:f.npz[zebra]'" in result.output
    assert "internal error" not in result.output


# ----------------------------------------------------------------------------- item 7


@pytest.fixture(scope="module")
def report_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-method benchmark report ``rep/r.json`` (+ samples) of a 1-epoch digits run."""
    home = tmp_path_factory.mktemp("checks")
    (home / "rep").mkdir()
    args = ["benchmark", "--methods", "softmax", "dismax", "--epochs", "1", "--ood", "uniform",
            "--bootstrap", "10", "--out", "rep/r.json", "-q"]  # fmt: skip
    result = invoke_in(home, *args)
    assert result.exit_code == 0, result.output
    return home


def _set(path: list[Any], value: Any) -> Any:
    def apply(data: dict[str, Any]) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return apply


def _append_copy(key: str) -> Any:
    def apply(data: dict[str, Any]) -> None:
        data["methods"][0][key].append(copy.deepcopy(data["methods"][0][key][0]))

    return apply


def _duplicate_method(data: dict[str, Any]) -> None:
    data["methods"].append(copy.deepcopy(data["methods"][0]))


BIN = ["methods", 0, "reliability", 0, "before", 1]
AUROC = ["methods", 0, "ood", 0, "metrics", "AUROC"]
DAMAGE = [
    (_set([*BIN, "count"], "many"), "before[1].count is text"),
    (_set([*BIN, "lower"], "x"), "before[1].lower is text"),
    (_set([*BIN, "count"], None), "before[1].count is null"),
    (_set([*BIN, "accuracy"], 1.5), "before[1].accuracy is 1.5, outside [0, 1]"),
    (_set([*BIN, "count"], -1), "before[1].count is -1"),
    (_set(["methods", 0, "reliability", 0, "after"], []), "bins before and 0 after"),
    (_set(["methods", 0, "reliability", 0, "seed"], "0"), "reliability[0].seed is text"),
    (_set(["methods", 0, "reliability", 0, "temperature"], 0.0), "temperature is 0.0, outside"),
    (_set(["config", "epochs"], float("nan")), "config.epochs is .nan"),
    (_set(["config", "lr"], float("inf")), "config.lr is .inf"),
    (_set(["environment", "cpu_threads"], float("nan")), "environment.cpu_threads is .nan"),
    (_set([*BIN, "upper"], float("nan")), "before[1].upper is .nan"),
    (_set(["per_sample", "seed"], float("nan")), "per_sample.seed"),
    (_set(["per_sample", "seed"], "0"), "per_sample.seed is text"),
    (_set([*AUROC, "mean"], 5.0), "AUROC.mean is 5.0, outside [0, 1]"),
    (_set([*AUROC, "values"], [-0.5]), "AUROC.values[0] is -0.5, outside [0, 1]"),
    (_set([*AUROC, "values"], []), "AUROC.values is empty"),
    (_set([*AUROC, "values"], [0.2]), "AUROC.mean is"),  # not the mean of its values
    (_set([*AUROC, "std"], -0.1), "AUROC.std is -0.1"),
    (_set(["methods", 0, "id_after", "NLL", "values"], [-1.0]), "NLL.values[0] is -1.0"),
    (_set(["methods", 0, "temperature", "mean"], -1.0), "temperature.mean is -1.0"),
    (_set(["methods", 0, "n_id"], -5), "methods[0].n_id is -5, expected at least 1"),
    (_set(["methods", 0, "ood", 0, "n_ood"], 0), "ood[0].n_ood is 0"),
    (_set(["datasets", 0, "n"], 0), "datasets[0].n is 0"),
    (_set(["datasets", 0, "image_shape"], [8, 0, 1]), "image_shape[1] is 0"),
    (_set(["methods", 0, "seeds"], []), "seeds is empty"),
    (_set(["methods", 0, "seeds"], [0, 0]), "holds seed 0 twice"),
    (_set(["methods", 0, "ood", 0, "intervals", "AUROC", "low"], 0.99), "low 0.99 above high"),
    (_set(["methods", 0, "ood", 0, "intervals", "AUROC", "resamples"], 0), "resamples is 0"),
    (_set(["methods", 0, "ood", 0, "intervals", "AUROC", "level"], 95), "level"),
    (_set(["methods", 0, "throughput_per_s", "values"], [-3.0]), "throughput_per_s.values[0]"),
    (_set(["methods", 0, "default_score"], "nosuch"), "default_score is 'nosuch', which none"),
    (_duplicate_method, "method 'softmax' twice"),
    (_append_copy("ood"), "set 'uniform' with score 'msp' twice"),
    (_set(["methods", 0, "ood", 0, "ood"], "a\x1b[31mred\nb"),
     "methods[0].ood[0].ood holds a control character ('a\\x1b[31mred\\nb')"),  # fmt: skip
    (_set(["notes"], ["fine\nline", "bell\x07"]), "notes[1] holds a control character"),
]


@pytest.mark.parametrize(("damage", "says"), DAMAGE)
def test_a_damaged_report_is_refused_in_one_line(
    report_home: Path, damage: Any, says: str
) -> None:
    data = json.loads((report_home / "rep" / "r.json").read_text())
    damage(data)
    bad = report_home / "rep" / "c1.json"
    bad.write_text(json.dumps(data))  # json.dumps writes NaN / Infinity literals as given
    for args in (["show", "rep/c1.json", "--format", "json"],
                 ["show", "rep/c1.json", "--html", "rep/c1.html"]):  # fmt: skip
        result = invoke_in(report_home, *args)
        assert result.exit_code == 1, (args, result.output)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and "internal error" not in lines[0], result.output
        assert "report 'rep/c1.json' is incomplete or damaged" in lines[0], lines[0]
        assert says in lines[0], lines[0]
    assert not (report_home / "rep" / "c1.html").exists()


@pytest.mark.parametrize("metric", ["AUROC", "AUPR-IN", "FPR@95TPR"])
def test_a_row_without_a_shown_metric_shows_n_a(tmp_path: Path, metric: str) -> None:
    """A metric a row does not hold is shown as "–" in its cell (a KeyError, "internal error",
    before: reports older or smaller than today's need not hold every metric)."""
    committed = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "cifar10-cpu.json"
    data = json.loads(committed.read_text())
    for row in data["methods"][0]["ood"]:
        del row["metrics"][metric]
    (tmp_path / "r.json").write_text(json.dumps(data))
    result = invoke_in(tmp_path, "show", "r.json")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("OOD: tin_resize"))
    columns = lines[header + 1].split()
    first = lines[header + 3].split()  # the SoftMax msp row
    assert first[:2] == ["SoftMax", "msp"]
    shown = next(c for c in columns if c.startswith(metric))
    assert first[columns.index(shown)] == "–", lines[header : header + 4]


def test_a_folder_name_with_a_newline_in_the_config_still_shows(report_home: Path) -> None:
    """The settings record keeps a runs folder's name as given: dismax wrote it, so it reads it."""
    data = json.loads((report_home / "rep" / "r.json").read_text())
    data["config"]["runs_dir"] = "/tmp/a\nb"
    (report_home / "rep" / "nl.json").write_text(json.dumps(data))
    result = invoke_in(report_home, "show", "rep/nl.json")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "path", [["throughput_per_s"], ["train_s"], ["score_efficiency", "msp"]], ids=str
)
def test_a_null_mean_with_its_reason_shows_a_dash(tmp_path: Path, path: list[str]) -> None:
    """The documented null form (``"mean": null`` with ``mean_null_reason``) is shown as "–" in
    the Cost and speed columns and on the page ("internal error: TypeError" before).

    The page is the tables-only one (``per_sample`` dropped): the plots are drawn from the
    samples file, not from these means, and drawing them is most of a page's time."""
    committed = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "cifar10-cpu.json"
    data = json.loads(committed.read_text())
    del data["per_sample"]
    node = data["methods"][0]
    for key in path:
        node = node[key]
    node["mean"], node["mean_null_reason"] = None, "not measured"
    (tmp_path / "r.json").write_text(json.dumps(data))
    result = invoke_in(tmp_path, "show", "r.json", "--html", "p.html")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    table = "Cost" if path[0] != "score_efficiency" else "OOD: tin_resize"
    header = next(i for i, line in enumerate(lines) if line.startswith(table))
    column = {"throughput_per_s": -2, "train_s": -1, "score_efficiency": -1}[path[0]]
    row = lines[header + 3].split()
    assert row[0] == "SoftMax" and row[column] == "–", lines[header : header + 4]
    if path[0] != "score_efficiency":  # the page has no speed column
        page = (tmp_path / "p.html").read_text()
        cost = page[page.index('id="cost-table"') :]
        cells = re.findall(r"<td[^>]*>([^<]*)</td>", cost[: cost.index("</tr></tbody>")])
        first_row = cells[: cells.index("IsoMax+")]
        assert first_row[0] == "SoftMax" and first_row[column] == "–", first_row


def test_huge_but_possible_values_still_show(tmp_path: Path) -> None:
    """NLL has no upper bound: three seeds' values of 1e308 are a (bad) result, not damage, and
    their mean is checked without overflowing (it was "internal error: OverflowError")."""
    committed = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "cifar10-cpu.json"
    data = json.loads(committed.read_text())
    nll = data["methods"][0]["id_after"]["NLL"]
    assert len(nll["values"]) == 3
    nll["values"], nll["mean"] = [1e308] * 3, 1e308
    (tmp_path / "huge.json").write_text(json.dumps(data))
    result = invoke_in(tmp_path, "show", "huge.json")
    assert result.exit_code == 0, result.output


def test_the_intact_report_still_shows(report_home: Path) -> None:
    for args in (["show", "rep/r.json", "--format", "json"],
                 ["show", "rep/r.json", "--html", "rep/ok.html"]):  # fmt: skip
        result = invoke_in(report_home, *args)
        assert result.exit_code == 0, result.output
    assert "Reliability bins" in (report_home / "rep" / "ok.html").read_text()
