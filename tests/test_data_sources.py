"""Dataset sources as a registry (issue 12 item 2): one table, one protocol, a toy source.

A source registered from inside a test must work everywhere a built-in one does: spec
parsing, the 80/20 carve, class subsets, ``load_ood``, ``dismax datasets``, ``dismax train``
and ``dismax benchmark`` — without editing any module.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dismax_cli.cli.app import app
from dismax_cli.data import (
    SOURCES,
    DatasetInfo,
    DatasetSpec,
    ImageSet,
    RawArrays,
    SourceBase,
    SpecText,
    canonical_spec,
    list_datasets,
    load_dataset,
    load_id_splits,
    load_ood,
    register_source,
    registered_source,
    unregister_source,
)
from dismax_cli.data.sources import to_image_set
from dismax_cli.errors import DismaxError

runner = CliRunner()
TOY_CLASSES = ("dot", "bar", "ring")
TOY_SHAPE = (8, 8, 3)
DATA_PACKAGE = Path(__file__).resolve().parents[1] / "dismax_cli" / "data"


def toy_arrays(n: int) -> RawArrays:
    """``n`` images 8x8x3, label ``i % 3``, each class a different brightness (learnable)."""
    rng = np.random.default_rng(123)
    labels = np.arange(n, dtype=np.int64) % len(TOY_CLASSES)
    base = (40 + 80 * labels)[:, None, None, None]
    noise = rng.integers(0, 30, size=(n, *TOY_SHAPE))
    images = np.clip(base + noise, 0, 255).astype(np.uint8)
    return RawArrays(images, labels, TOY_CLASSES, f"toy source: {n} generated 8x8x3 images")


class ToySource(SourceBase):
    """``toy`` or ``toy:N`` (default 50): one array, carved by the registry."""

    key = "toy"
    forms = ("toy:N",)
    aliases = {"toy_set": "toy"}

    def __init__(self) -> None:
        self.loads: list[tuple[str, str]] = []

    def names(self) -> tuple[str, ...]:
        return ("toy",)

    def parse(self, spec: SpecText) -> DatasetSpec | None:
        if spec.name != "toy":
            return None
        if spec.arg and not spec.arg.isdigit():
            raise DismaxError(f"{spec.text!r}: N must be a number, e.g. toy:50")
        count = int(spec.arg) if spec.arg else 50
        return DatasetSpec(spec.text, self.key, "toy", count=count, selection=spec.selection)

    def load(
        self,
        spec: DatasetSpec,
        part: str,
        data_dir: Path,
        *,
        download: bool,
        like: ImageSet | None,
    ) -> ImageSet:
        self.loads.append((spec.text, part))
        assert spec.count is not None
        raw = toy_arrays(spec.count)
        return to_image_set(raw, spec, split=part, origin=f"toy:{spec.count}", augment=False)

    def describe(self, data_dir: Path) -> list[DatasetInfo]:
        return [
            DatasetInfo(
                name="toy:N",
                aliases=(),
                kind="toy",
                source="generated in the test",
                size="N images 8x8x3, 3 classes",
                licence="none",
                present=True,
                location="memory",
            )
        ]


class NativeToy(ToySource):
    """A toy with native splits: train = the first 30 images, test = the next 10."""

    key = "native_toy"
    forms = ()
    aliases: dict[str, str] = {}

    def names(self) -> tuple[str, ...]:
        return ("native_toy",)

    def parse(self, spec: SpecText) -> DatasetSpec | None:
        if spec.name != "native_toy" or spec.arg:
            return None
        return DatasetSpec(spec.text, self.key, spec.name, native=True, selection=spec.selection)

    def load(
        self,
        spec: DatasetSpec,
        part: str,
        data_dir: Path,
        *,
        download: bool,
        like: ImageSet | None,
    ) -> ImageSet:
        self.loads.append((spec.text, part))
        raw = toy_arrays(40)
        lo, hi = (0, 30) if part == "train" else (30, 40)
        assert raw.labels is not None
        raw = RawArrays(raw.images[lo:hi], raw.labels[lo:hi], raw.classes, raw.source)
        indices = np.arange(lo, hi, dtype=np.int64)
        return to_image_set(raw, spec, split=part, origin="native_toy", indices=indices)

    def ood_split(self, spec: DatasetSpec) -> str:
        return "test"

    def describe(self, data_dir: Path) -> list[DatasetInfo]:
        return []


@pytest.fixture
def toy() -> Iterator[ToySource]:
    """The toy source, registered for one test and removed afterwards."""
    source = ToySource()
    with registered_source(source):
        yield source
    assert "toy" not in SOURCES


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "DISMAX_OFFLINE": "1",
        "DISMAX_DATA_DIR": str(tmp_path / "data"),
        "DISMAX_RUNS_DIR": str(tmp_path / "runs"),
    }


# ----------------------------------------------------------------------------- the registry


def test_the_table_holds_one_source_per_family_in_listing_order() -> None:
    assert list(SOURCES) == [
        "torchvision", "odin", "digits", "synthetic", "npz", "imagefolder", "imagenet"
    ]
    kinds = [row.kind for row in list_datasets()]
    # Rows come source by source, so the kinds form contiguous runs in table order.
    runs = [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]
    assert runs == ["torchvision", "odin", "bundled", "synthetic", "file", "folder"]


def test_a_registered_source_is_carved_subset_and_listed(toy: ToySource) -> None:
    whole = load_dataset("toy:40", split="all")
    train = load_dataset("toy:40", split="train")
    test = load_dataset("Toy:40", split="test")  # names are case-insensitive for every source
    assert (len(whole), len(train), len(test)) == (40, 32, 8)  # the registry's 80/20 carve
    assert whole.classes == TOY_CLASSES and whole.image_shape == TOY_SHAPE
    # The source loads the whole array once per call; train and test never overlap.
    assert toy.loads[:3] == [("toy:40", "all"), ("toy:40", "all"), ("Toy:40", "all")]
    assert train.indices is not None and test.indices is not None
    assert not set(train.indices.tolist()) & set(test.indices.tolist())
    sub = load_dataset("toy:40[bar,ring]", split="all")
    assert sub.classes == ("bar", "ring") and len(sub) == 26  # 13 bars + 13 rings of 40
    assert sorted(torch.unique(sub.labels).tolist()) == [0, 1]  # type: ignore[arg-type]
    assert list_datasets()[-1].name == "toy:N"
    # The source's own aliases work like the built-in ones, in loads and in canonical names.
    assert len(load_dataset("Toy-Set:40", split="test")) == 8
    assert canonical_spec("clean=Toy-Set:40[0-1]") == "clean=toy:40[0-1]"
    with pytest.raises(DismaxError, match="toy:N"):
        load_dataset("nosuchset")  # the unknown-name message lists the new form


def test_a_source_chooses_its_ood_split_and_native_splits(tmp_path: Path) -> None:
    with registered_source(NativeToy()) as native:
        train, test = load_id_splits("native_toy")
        assert (len(train), len(test)) == (30, 10)
        both = load_dataset("native_toy", split="all")
        assert len(both) == 40 and both.split == "all"
        assert native.loads == [
            ("native_toy", "train"), ("native_toy", "test"),
            ("native_toy", "train"), ("native_toy", "test"),
        ]  # fmt: skip
        like = load_dataset("digits", split="test")
        ood = load_ood("native_toy", like=like)
        assert ood.split == "test" and len(ood) == 10 and native.loads[-1][1] == "test"
    assert "native_toy" not in SOURCES


def test_register_source_refuses_clashes_and_unregister_undoes(toy: ToySource) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_source(ToySource())

    class Clash(ToySource):
        key = "clash"

        def names(self) -> tuple[str, ...]:
            return ("cifar10",)

    with pytest.raises(ValueError, match="cifar10"):
        register_source(Clash())
    with pytest.raises(ValueError, match="not a dataset source: it lacks key, forms"):
        register_source(object())  # type: ignore[arg-type]

    class Aliased(ToySource):
        key = "aliased"
        aliases = {"tin": "aliased"}  # "tin" already means tin_resize

        def names(self) -> tuple[str, ...]:
            return ("aliased",)

    with pytest.raises(ValueError, match="reuses names tin"):
        register_source(Aliased())
    assert list(SOURCES)[-1] == "toy"  # nothing refused was added
    assert unregister_source("toy") is toy
    with pytest.raises(DismaxError, match="unknown dataset 'toy:5'"):
        load_dataset("toy:5")
    register_source(toy)  # the fixture's exit removes it again


# ----------------------------------------------------------------------------- through the CLI


def test_toy_source_is_listed_by_dismax_datasets(toy: ToySource, tmp_path: Path) -> None:
    result = runner.invoke(app, ["datasets", "--format", "json"], env=_env(tmp_path))
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)["datasets"]}
    assert rows["toy:N"]["kind"] == "toy" and rows["toy:N"]["present"] is True


def test_toy_source_trains_through_dismax_train(toy: ToySource, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--dataset", "toy:60", "--epochs", "1", "--device", "cpu", "--out", str(out)]
    result = runner.invoke(app, [*args, "--format", "json"], env=_env(tmp_path))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dataset"] == "toy:60"
    assert toy.loads == [("toy:60", "all"), ("toy:60", "all")]  # train carve, test carve
    meta = torch.load(out / "checkpoint.pt", weights_only=True)
    assert meta["classes"] == list(TOY_CLASSES) and meta["channels"] == 3
    assert meta["split"]["n_train"] + meta["split"]["n_val"] == 48  # 80 % of 60


def test_toy_source_runs_through_dismax_benchmark(toy: ToySource, tmp_path: Path) -> None:
    args = [
        "benchmark", "--dataset", "toy:60", "--ood", "uniform", "--epochs", "1",
        "--methods", "softmax", "dismax", "--seeds", "1", "--device", "cpu",
        "--runs-dir", str(tmp_path / "runs"), "--format", "json",
    ]  # fmt: skip
    result = runner.invoke(app, args, env=_env(tmp_path))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    records = {d["role"]: d for d in report["datasets"]}
    assert records["train"]["spec"] == "toy:60"
    assert records["train"]["source"] == "toy source: 60 generated 8x8x3 images"
    assert records["train"]["num_classes"] == 3
    assert records["train"]["n"] + records["val"]["n"] == 48
    assert records["test"]["n"] == 12 and records["test"]["image_shape"] == list(TOY_SHAPE)
    # uniform copies the toy test set: as many images, the same shape.
    assert records["ood"]["n"] == 12 and records["ood"]["image_shape"] == list(TOY_SHAPE)
    assert {m["method"] for m in report["methods"]} == {"softmax", "dismax"}
    assert toy.loads and all(load == ("toy:60", "all") for load in toy.loads)


# ----------------------------------------------------------------------------- item 8 sizes


def _function_sizes() -> list[tuple[int, str]]:
    sizes = []
    for path in sorted(DATA_PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                assert node.end_lineno is not None
                sizes.append((node.end_lineno - first + 1, f"{path.name}:{node.name}"))
    return sizes


def test_data_package_has_no_function_over_80_and_no_module_over_500_lines() -> None:
    long_functions = [(n, name) for n, name in _function_sizes() if n > 80]
    assert not long_functions, long_functions
    modules = {p.relative_to(DATA_PACKAGE).as_posix(): len(p.read_text().splitlines())
               for p in DATA_PACKAGE.rglob("*.py")}  # fmt: skip
    assert "sources/__init__.py" in modules  # the rule is checked on the new layout too
    assert not {m: n for m, n in modules.items() if n > 500}
