"""Tests for the paper's table as data and the paper-recipe benchmark configs (issue 14, item 6).

``benchmarks/paper/table2.yaml`` must hold METHOD.md §8 (paper Table 2 and the ImageNet-1k
result) exactly, in dismax's names and as fractions; the table is parsed here from
``../shared/METHOD.md`` itself so the two cannot drift. ``benchmarks/configs/paper-*.yaml`` must
load through the config reader the CLI uses and carry the paper's recipe (METHOD.md §6).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dismax_cli.benchmark import BENCHMARK_METHODS, BenchmarkConfig
from dismax_cli.config import read_yaml_config
from dismax_cli.core.methods import get_method
from dismax_cli.data.odin import ODIN_ARCHIVES
from dismax_cli.data.torchvision_sets import TORCHVISION_SOURCES
from dismax_cli.models import list_backbones
from dismax_cli.reports import ID_METRICS, OOD_METRICS

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "benchmarks" / "paper" / "table2.yaml"
CONFIGS = ROOT / "benchmarks" / "configs"
METHOD_MD = ROOT.parent / "shared" / "METHOD.md"

# The paper's spellings (METHOD.md §8) -> dismax's registry names, written out independently of
# the YAML file under test.
ID_NAMES = {"CIFAR-10": "cifar10", "CIFAR-100": "cifar100"}
OTHER_CIFAR = {"cifar10": "cifar100", "cifar100": "cifar10"}
MODEL_NAMES = {
    "ResNet-34": "resnet34",
    "DenseNet-BC-100": "densenet_bc_100",
    "WRN-28-10": "wrn_28_10",
}
# METHOD.md §8 column -> (set, report metric key, divisor turning the printed value into a
# fraction): the paper prints percentages except ECE, which it prints as a fraction.
COLUMNS: dict[str, tuple[str, str, float]] = {
    "ACC": ("id", "ACC", 100.0),
    "ECE": ("id", "ECE", 1.0),
    "near AUPR": ("near", "AUPR-OUT", 100.0),
    "TIN AUROC": ("tin_resize", "AUROC", 100.0),
    "LSUN AUROC": ("lsun_resize", "AUROC", 100.0),
    "SVHN AUPR": ("svhn", "AUPR-OUT", 100.0),
}
PAPER_OOD = ("tin_resize", "lsun_resize", "svhn")
CONFIG_NAMES = [
    f"paper-{dataset}-{model}.yaml"
    for dataset in ("cifar10", "cifar100")
    for model in ("resnet34", "densenet_bc_100", "wrn_28_10")
]

RowKey = tuple[str, str, str, bool, int]


def _method_key(label: str) -> tuple[str, bool, int]:
    """METHOD.md §8's method label -> (method, fpr, members)."""
    ensemble = re.fullmatch(r"Deep ensemble \((\d+)\)", label)
    if ensemble:
        return "ensemble", False, int(ensemble.group(1))
    return {
        "SoftMax": ("softmax", False, 1),
        "IsoMax+": ("isomax_plus", False, 1),
        "DisMax (FPR)": ("dismax", True, 1),
        "DisMax (no FPR)": ("dismax", False, 1),
    }[label]


def _section_8() -> str:
    if not METHOD_MD.is_file():
        pytest.skip(f"{METHOD_MD} is absent: nothing to check benchmarks/paper/table2.yaml against")
    text = METHOD_MD.read_text(encoding="utf-8")
    match = re.search(r"^## 8\..*?(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, "METHOD.md has no section 8"
    return match.group(0)


def _paper_rows() -> dict[RowKey, dict[str, dict[str, float | None]]]:
    """METHOD.md §8's markdown table: row key -> set -> metric -> fraction (None for "–")."""
    lines = [line.strip() for line in _section_8().splitlines() if line.strip().startswith("|")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    header, body = cells[0], cells[2:]
    assert header[:3] == ["ID", "model", "method"]
    assert header[3:] == list(COLUMNS), header
    rows: dict[RowKey, dict[str, dict[str, float | None]]] = {}
    for row in body:
        dataset, backbone = ID_NAMES[row[0]], MODEL_NAMES[row[1]]
        key: RowKey = (dataset, backbone, *_method_key(row[2]))
        assert key not in rows, key
        results: dict[str, dict[str, float | None]] = {}
        for column, cell in zip(header[3:], row[3:], strict=True):
            target, metric, divisor = COLUMNS[column]
            target = OTHER_CIFAR[dataset] if target == "near" else target
            value = None if cell in ("–", "-", "—") else float(cell) / divisor
            results.setdefault(target, {})[metric] = value
        rows[key] = results
    return rows


def _table() -> dict[str, Any]:
    return yaml.safe_load(TABLE.read_text(encoding="utf-8"))


def _row_key(row: dict[str, Any]) -> RowKey:
    return (row["id"], row["backbone"], row["method"], row["fpr"], row["members"])


def test_table_holds_every_row_of_method_md_section_8_as_fractions() -> None:
    paper = _paper_rows()
    assert len(paper) == 11  # METHOD.md §8 today; a new row there must reach the YAML too
    rows = {_row_key(r): r for r in _table()["rows"] if r["id"] in OTHER_CIFAR}
    assert len(rows) == len([r for r in _table()["rows"] if r["id"] in OTHER_CIFAR])
    assert set(rows) == set(paper)
    for key, expected in paper.items():
        row = rows[key]
        reported = {
            target: {m: v for m, v in metrics.items() if v is not None}
            for target, metrics in expected.items()
        }
        reported = {target: metrics for target, metrics in reported.items() if metrics}
        assert set(row["results"]) == set(reported), key
        for target, metrics in reported.items():
            assert set(row["results"][target]) == set(metrics), (key, target)
            for metric, value in metrics.items():
                assert math.isclose(row["results"][target][metric], value, abs_tol=1e-12), (
                    key,
                    target,
                    metric,
                )
        missing = sorted(
            f"{t}/{m}" for t, ms in expected.items() for m, v in ms.items() if v is None
        )
        assert sorted(row.get("not_reported", [])) == missing, key


def test_table_holds_the_imagenet_result_of_method_md_section_8() -> None:
    match = re.search(
        r"ImageNet-1k with ResNet-18 against ImageNet-O: SoftMax/MSP AUROC ([\d.]+), "
        r"DisMax/MMLES ([\d.]+), at about the same accuracy \(([\d.]+) vs ([\d.]+)\)",
        " ".join(_section_8().split()),
    )
    assert match, "METHOD.md §8 no longer states the ImageNet-1k result in the expected words"
    softmax_auroc, dismax_auroc, softmax_acc, dismax_acc = (float(g) / 100 for g in match.groups())
    rows = [r for r in _table()["rows"] if r["id"] == "imagenet1k"]
    assert [(r["backbone"], r["method"], r["score"]) for r in rows] == [
        ("resnet18", "softmax", "msp"),
        ("resnet18", "dismax", "mmles"),
    ]
    for row, acc, auroc in zip(
        rows, (softmax_acc, dismax_acc), (softmax_auroc, dismax_auroc), strict=True
    ):
        assert row["results"] == {
            "id": {"ACC": pytest.approx(acc, abs=1e-12)},
            "imagenet_o": {"AUROC": pytest.approx(auroc, abs=1e-12)},
        }


def test_table_states_the_paper_metric_definitions() -> None:
    table = _table()
    assert table["units"] == "fraction"
    columns = table["columns"]
    assert list(columns) == list(COLUMNS)
    for name, (target, metric, _) in COLUMNS.items():
        assert columns[name]["set"] == target
        assert columns[name]["metric"] == metric
        assert columns[name]["definition"].strip()
    assert "AUPR-OUT" in columns["near AUPR"]["definition"]
    assert "AUPR-OUT" in columns["SVHN AUPR"]["definition"]
    assert "15" in columns["ECE"]["definition"]
    notes = " ".join(table["notes"])
    assert "TNR@95TPR" in notes and "FPR@95TPR" in notes and "AUPR-OUT" in notes


def test_table_rows_use_dismax_names_and_valid_values() -> None:
    known_sets = {*TORCHVISION_SOURCES, *ODIN_ARCHIVES}
    for row in _table()["rows"]:
        method, fpr, members = row["method"], row["fpr"], row["members"]
        assert method in BENCHMARK_METHODS, row
        assert row["backbone"] in list_backbones(), row
        assert isinstance(fpr, bool) and (method == "dismax" or not fpr), row
        assert isinstance(members, int) and (members > 1) == (method == "ensemble"), row
        default = "msp" if method == "ensemble" else get_method(method).default_score
        assert row["score"] == default, row
        for target, metrics in row["results"].items():
            allowed = ID_METRICS if target == "id" else OOD_METRICS
            for metric, value in metrics.items():
                assert metric in allowed, (row, target, metric)
                assert isinstance(value, float) and 0 <= value <= 1, (row, target, metric)
            if row["id"] in OTHER_CIFAR and target != "id":
                assert target in known_sets, (row, target)
        if row["id"] in OTHER_CIFAR:
            assert row["id"] in TORCHVISION_SOURCES


def test_the_paper_configs_are_exactly_the_six_rows_of_the_issue() -> None:
    assert sorted(p.name for p in CONFIGS.glob("paper-*.yaml")) == sorted(CONFIG_NAMES)


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_paper_config_loads_through_the_cli_reader_with_the_paper_recipe(name: str) -> None:
    dataset, model = re.fullmatch(r"paper-(cifar10|cifar100)-(\w+)\.yaml", name).groups()  # type: ignore[union-attr]
    config = BenchmarkConfig.from_dict(read_yaml_config(CONFIGS / name)).validate()
    assert (config.dataset, config.model) == (dataset, model)
    assert config.test_dataset is None  # the native CIFAR test split
    assert config.ood_labels() == [OTHER_CIFAR[dataset], *PAPER_OOD]
    recipe = _table()["recipe"]
    assert (config.epochs, config.seeds, config.batch_size) == (300, 5, 64)
    assert (recipe["epochs"], recipe["seeds"], recipe["batch_size"]) == (300, 5, 64)
    assert config.lr == recipe["lr"] == 0.1
    assert config.momentum == recipe["momentum"] == 0.9
    assert config.weight_decay == recipe["weight_decay"] == 1e-4
    assert config.train_config("softmax", 0).milestones() == [150, 200, 250]
    assert config.device == "auto"  # a GPU where there is one; the file stays valid without
    # Every Table 2 row of this ID set and backbone is a method of the config, trained as the
    # paper trained it.
    rows = [r for r in _table()["rows"] if (r["id"], r["backbone"]) == (dataset, model)]
    for row in rows:
        assert row["method"] in config.methods, (name, row)
        if row["method"] == "dismax":
            assert config.train_config("dismax", 0).uses_fpr == row["fpr"], name
        if row["method"] == "ensemble":
            assert config.ensemble_size == row["members"], name
        assert set(row["results"]) - {"id"} <= set(config.ood_labels()), name
    assert "softmax" in config.methods  # the efficiency reference
