"""Configs composed and validated by type (issue 12 item 3): ``config.check_types`` reads the
dataclasses' type hints, ``BenchmarkConfig`` holds a ``TrainConfig``, the engine loads no YAML."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Literal, Optional

import pytest

from dismax_cli.config import InvalidValueError, check_types
from dismax_cli.config_types import UnsupportedFieldType


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


@pytest.mark.parametrize("key, value, kind", [
    ("mode", "medium", "one of fast, slow"),
    ("mode", True, "one of fast, slow"),
    ("weights", ["a"], "a list of numbers"),
    ("weights", [True], "a list of numbers"),
    ("limit", "3", "an integer"),
    ("limit", 2.5, "an integer"),
    ("rate", "fast", "a number"),
    ("inner", 3, "a mapping of _Inner keys"),
])  # fmt: skip
def test_a_value_of_the_wrong_type_names_key_value_and_type(key, value, kind) -> None:
    with pytest.raises(InvalidValueError) as info:
        check_types(_Typed, {key: value}, what="test")
    assert str(info.value) == f"test option {key}={value!r} is invalid: use {kind}"
    assert info.value.key == key


def test_a_bad_value_inside_a_nested_config_names_its_path() -> None:
    with pytest.raises(InvalidValueError) as info:
        check_types(_Typed, {"inner": {"size": "big"}}, what="test")
    assert info.value.key == "inner.size" and "size='big' is invalid: use an integer" in str(
        info.value
    )
    with pytest.raises(InvalidValueError, match="unknown test option 'colour'"):
        check_types(_Typed, {"inner": {"colour": 1}}, what="test")
