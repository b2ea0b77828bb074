"""Configs composed and validated by type (issue 12 item 3): ``config.check_types`` reads the
dataclasses' type hints, ``BenchmarkConfig`` holds a ``TrainConfig``, the engine loads no YAML."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Literal, Optional

import pytest

from dismax_cli.benchmark import BenchmarkConfig
from dismax_cli.config import InvalidValueError, build_config, check_types, read_yaml_config
from dismax_cli.config_types import UnsupportedFieldType
from dismax_cli.engine import TrainConfig


def test_the_training_engine_does_not_import_yaml() -> None:
    code = (
        "import sys\n"
        "import dismax_cli.engine\n"
        "from dismax_cli.engine import TrainConfig, fit, load_run, load_bundle, calibrate_bundle\n"
        "import dismax_cli.engine.run, dismax_cli.engine.deploy\n"
        "TrainConfig.from_dict({'epochs': 2, 'lr': 1}).validate()\n"
        "print('yaml' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False", out.stderr


def test_config_files_still_read_yaml_1_2() -> None:
    from dismax_cli.config import load_yaml

    assert load_yaml("lr: 5e-4\nfpr: on\nseeds: 0x10") == {"lr": 5e-4, "fpr": "on", "seeds": 16}


# ----------------------------------------------------------------------------- check_types


@dataclasses.dataclass(frozen=True)
class _Inner:
    size: int = 1
    name: str = "a"


@dataclasses.dataclass(frozen=True)
class _Typed:
    rate: float = 0.5
    mode: Literal["fast", "slow"] = "fast"
    weights: tuple[float, ...] = ()
    limit: Optional[int] = None  # noqa: UP045 - the typing spelling must work too
    inner: _Inner = dataclasses.field(default_factory=_Inner)


@dataclasses.dataclass(frozen=True)
class _Untyped:
    ok: int = 0
    table: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class _AnyUnion:
    value: int | str = 0


@pytest.mark.parametrize("cls, field, spelled", [
    (_Untyped, "table", "dict[str, int]"), (_AnyUnion, "value", "int | str"),
])  # fmt: skip
def test_a_field_type_check_types_cannot_check_is_an_error(cls, field, spelled) -> None:
    # Refused for the class, even when only a supported key is given.
    with pytest.raises(UnsupportedFieldType) as info:
        check_types(cls, {}, what="test")
    assert f"{cls.__name__}.{field} has type {spelled}" in str(info.value)
    assert info.value.field == field


def test_values_are_checked_and_normalised_by_their_type_hints() -> None:
    out = check_types(
        _Typed, {"rate": 2, "mode": "slow", "weights": [1, 0.5], "limit": 3,
                 "inner": {"size": 4}}, what="test",
    )  # fmt: skip
    assert out["rate"] == 2.0 and isinstance(out["rate"], float)
    assert out["weights"] == (1.0, 0.5) and all(isinstance(w, float) for w in out["weights"])
    assert out["inner"] == _Inner(size=4, name="a")
    assert (out["mode"], out["limit"]) == ("slow", 3)
    assert check_types(_Typed, {"weights": 2, "limit": None}, what="test") == {
        "weights": (2.0,), "limit": None,
    }  # fmt: skip


@pytest.mark.parametrize("key, value, shown, kind", [
    ("mode", "medium", "'medium'", "one of fast, slow"),
    ("mode", True, "true", "one of fast, slow"),  # as a config file writes it, not True
    ("weights", ["a"], "[a]", "a list of numbers"),
    ("weights", [True], "[true]", "a list of numbers"),
    ("limit", "3", "'3'", "an integer"),
    ("limit", 2.5, "2.5", "an integer"),
    ("rate", "fast", "'fast'", "a number"),
    ("inner", 3, "3", "a mapping of _Inner keys"),
])  # fmt: skip
def test_a_value_of_the_wrong_type_names_key_value_and_type(key, value, shown, kind) -> None:
    with pytest.raises(InvalidValueError) as info:
        check_types(_Typed, {key: value}, what="test")
    assert str(info.value) == f"test option {key}={shown} is invalid: use {kind}"
    assert info.value.key == key


def test_a_bad_value_inside_a_nested_config_names_its_path() -> None:
    with pytest.raises(InvalidValueError) as info:
        check_types(_Typed, {"inner": {"size": "big"}}, what="test")
    assert info.value.key == "inner.size" and "size='big' is invalid: use an integer" in str(
        info.value
    )
    with pytest.raises(InvalidValueError, match="unknown test option 'colour'"):
        check_types(_Typed, {"inner": {"colour": 1}}, what="test")


# ----------------------------------------------------------------------------- BenchmarkConfig

@dataclasses.dataclass(frozen=True)
class _TrainWithWarmup(TrainConfig):
    """A training config with a field added after BenchmarkConfig was written."""

    warmup: int = 0


class _BenchWithWarmup(BenchmarkConfig):
    train_class = _TrainWithWarmup


def test_a_new_training_field_flows_from_yaml_to_each_run(tmp_path: Path) -> None:
    path = tmp_path / "bench.yaml"
    path.write_text("warmup: 3\nepochs: 2\nseeds: 2\nseed: 4\nmethods: [softmax, dismax]\n")
    config = build_config(_BenchWithWarmup, {}, read_yaml_config(path), config=path)
    run = config.train_config("dismax", 5)
    assert isinstance(run, _TrainWithWarmup)
    assert (run.warmup, run.epochs, run.seed, run.method) == (3, 2, 5, "dismax")
    assert config.warmup == 3 and config.to_dict()["warmup"] == 3
    assert (config.seeds, config.methods) == (2, ("softmax", "dismax"))
    # The command line overrides the file for the new key as for any other.
    config = build_config(_BenchWithWarmup, {"warmup": 7}, read_yaml_config(path), config=path)
    assert config.train_config("softmax", 4).warmup == 7
    path.write_text("warmup: soon\n")
    with pytest.raises(InvalidValueError) as info:
        build_config(_BenchWithWarmup, {}, read_yaml_config(path), config=path)
    assert str(info.value) == (
        f"invalid value for key 'warmup' in config file '{path}': benchmark option "
        "warmup='soon' is invalid: use an integer"
    )


def test_flat_keys_are_routed_to_the_training_or_the_benchmark_part() -> None:
    config = BenchmarkConfig(epochs=1, lr=0.05, seeds=2, seed=3, ood=("uniform",))
    assert (config.train.epochs, config.train.lr, config.train.seed) == (1, 0.05, 3)
    assert (config.seeds, config.ood) == (2, ("uniform",))
    assert dataclasses.replace(config, seed=9).train == dataclasses.replace(config.train, seed=9)
    assert dataclasses.replace(config, seed=9).seeds == 2
    for wrong in ("method", "train_epochs"):  # method is set per run, not by the benchmark
        with pytest.raises(TypeError, match=wrong):
            BenchmarkConfig(**{wrong: "dismax"})
    with pytest.raises(AttributeError):
        _ = config.method


def test_to_dict_is_flat_and_from_dict_reads_it_back() -> None:
    config = BenchmarkConfig.from_dict(
        {"epochs": 2, "decay_epochs": [1], "ood": "uniform", "methods": ["softmax", "ensemble"],
         "ensemble_size": 2, "fpr": False, "require": "ensemble:AUROC:uniform>=0.5"}
    )  # fmt: skip
    flat = config.to_dict()
    assert "train" not in flat and "method" not in flat
    assert set(flat) == set(BenchmarkConfig.keys())
    assert set(flat) == {f.name for f in dataclasses.fields(TrainConfig)} - {"method"} | {
        f.name for f in dataclasses.fields(BenchmarkConfig)
    } - {"train"}
    assert flat["decay_epochs"] == [1] and flat["ood"] == ["uniform"] and flat["fpr"] is False
    assert BenchmarkConfig.from_dict(flat) == config


def test_benchmark_training_defaults_stay_as_they_were() -> None:
    # The benchmark trains 20 epochs by default (TrainConfig: 10); every other training default
    # is TrainConfig's own.
    assert BenchmarkConfig().train_config("dismax", 0) == TrainConfig(epochs=20)
    defaults = BenchmarkConfig()
    assert (defaults.seeds, defaults.ensemble_size, defaults.objective) == (1, 3, "ece")
    assert defaults.ood == ("digits[6-9]", "uniform") and defaults.runs_dir is None


@dataclasses.dataclass(frozen=True)
class _TrainWithSeeds(TrainConfig):
    seeds: int = 1


class _BenchClash(BenchmarkConfig):
    train_class = _TrainWithSeeds


def test_a_training_field_named_like_a_benchmark_field_is_refused() -> None:
    with pytest.raises(TypeError, match="'seeds' is both a training and a benchmark field"):
        _BenchClash.from_dict({})
