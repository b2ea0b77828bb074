"""Parsers of option values (typer ``parser=``): numbers in bounds, registry choices, models,
devices, shards, epoch lists, config paths.

Each raises ``typer.BadParameter`` (Click's usage error: exit 2, naming the option) or
:class:`~dismax_cli.config.InvalidValueError` (exit 2) for a bad value, and imports neither torch
nor the library, so a bad value answers in well under a second. The same parsers check a YAML
config's values (:func:`dismax_cli.cli.checks.precheck_file_values`).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from dismax_cli import presets as _presets  # torch-free
from dismax_cli import score_names as _score_names  # torch-free
from dismax_cli.config import UPPER_BOUNDS, InvalidValueError, check_device_name
from dismax_cli.core import methods as _methods  # torch-free: the registry's names only
from dismax_cli.core.metric_table import CALIBRATION_OBJECTIVES
from dismax_cli.errors import quote_value as q
from dismax_cli.numbers import parse_decimal, parse_integer

#: Training methods registered at import (``list_methods()``; the parsers ask the registry
#: itself, so a method registered later with ``register_method`` is accepted too).
METHOD_NAMES = tuple(_methods.list_methods())
#: Methods a benchmark compares (``dismax_cli.core.methods.benchmark_methods()``).
BENCHMARK_METHOD_NAMES = tuple(_methods.benchmark_methods())
#: What ``dismax benchmark`` compares without ``--methods``.
DEFAULT_BENCHMARK_METHOD_NAMES = tuple(_methods.default_benchmark_methods())
#: Backbones (``dismax_cli.models.list_backbones()``).
BACKBONE_NAMES = (
    "convnet",
    "resnet18",
    "resnet34",
    "densenet_bc_100",
    "wrn_28_10",
    "resnet18_224",
    "resnet50_224",
)
#: OOD scores (``dismax_cli.core.scores.SCORES``).
SCORE_NAMES = ("msp", "max_logit", "mds", "neg_entropy", "energy", "mmles")


class NumberParser:
    """Parse an int or a finite float within bounds; a bad value's error names the rule.

    Used as a typer ``parser``: its ``BadParameter`` is Click's usage error (exit 2), which names
    the option.
    """

    def __init__(
        self,
        kind: type,
        *,
        low: float | None = None,
        low_open: bool = False,
        high: float | None = None,
        high_open: bool = False,
        what: str,
    ) -> None:
        self.kind = kind
        self.low, self.low_open, self.high, self.high_open = low, low_open, high, high_open
        self.what = what

    def __call__(self, value: Any) -> Any:
        if isinstance(value, self.kind) and not isinstance(value, bool):
            number = value
        elif self.kind is int and isinstance(value, float) and value.is_integer():
            # YAML reads 1e3 and 1000.0 as floats: say so, and how to write the integer.
            raise typer.BadParameter(
                f"{q(value)} is not {self.what}: it is read as a decimal number; write "
                f"{int(value)}, without a decimal point or exponent"
            )
        else:
            # ASCII decimals only, as environment values and --require (dismax_cli.numbers).
            text = "" if isinstance(value, bool) else str(value)
            parsed = parse_integer(text) if self.kind is int else parse_decimal(text)
            if parsed is None:
                raise typer.BadParameter(f"{q(value)} is not {self.what}")
            number = self.kind(parsed)
        if isinstance(number, float) and not math.isfinite(number):
            raise typer.BadParameter(f"{q(value)} is not {self.what}")
        too_low = self.low is not None and (
            number <= self.low if self.low_open else number < self.low
        )
        too_high = self.high is not None and (
            number >= self.high if self.high_open else number > self.high
        )
        if too_low:
            bound = f"above {self.low:g}" if self.low_open else f"at least {self.low:,}"
            raise typer.BadParameter(f"{q(value)} is not {self.what} (it must be {bound})")
        if too_high:
            raise typer.BadParameter(f"{q(value)} is not {self.what} (too large)")
        return number


class ChoiceParser:
    """Accept one of ``choices`` exactly (they are the registry names).

    ``choices`` is a tuple, or a function returning the names, called when a value is checked
    (so the methods registry's current names count, plug-ins included).
    """

    def __init__(self, choices: tuple[str, ...] | Callable[[], Sequence[str]]) -> None:
        self._choices = choices

    @property
    def choices(self) -> tuple[str, ...]:
        choices = self._choices
        return tuple(choices() if callable(choices) else choices)

    def __call__(self, value: Any) -> str:
        choices = self.choices
        if value in choices:
            return str(value)
        raise typer.BadParameter(f"{q(value)} is not one of {', '.join(choices)}")


class EnumChoice(ChoiceParser):
    """Accept one of an Enum's values and return the member (``--format table`` ->
    ``OutputFormat.table``), worded as :class:`ChoiceParser` words a refusal ("'x' is not one
    of table, json"), never typer's own ("Value error, 'x' is not one of 'table', 'json'.")."""

    def __init__(self, enum: type[Enum]) -> None:
        super().__init__(tuple(str(member.value) for member in enum))
        self._enum = enum

    @property
    def metavar(self) -> str:
        """The choices as help shows them: ``table|json``."""
        return "|".join(self.choices)

    def __call__(self, value: Any) -> Any:
        if isinstance(value, self._enum):
            return value
        return self._enum(super().__call__(value))


#: Prefixes of ``--model`` values built by other libraries (``dismax_cli.models.external``).
EXTERNAL_MODEL_SOURCES = ("torchvision", "timm")


def parse_model(value: Any) -> str:
    """A built-in backbone, ``torchvision:NAME`` or ``timm:NAME`` (spelling only; no torch).

    Whether NAME exists in torchvision or timm is checked when the run is configured (exit 2
    there too, saying how to list the names).
    """
    text = str(value)
    source, sep, name = text.partition(":")
    if text in BACKBONE_NAMES or (sep and source in EXTERNAL_MODEL_SOURCES and name.strip()):
        return text
    if text.strip() != text and parse_model_or_none(text.strip()) is not None:
        raise typer.BadParameter(f"{q(value)} has a space around it: write {text.strip()}")
    raise typer.BadParameter(
        f"{q(value)} is not one of {', '.join(BACKBONE_NAMES)}, torchvision:NAME or timm:NAME"
    )


def parse_model_or_none(text: str) -> str | None:
    """``text`` when :func:`parse_model` accepts it, else None."""
    try:
        return parse_model(text)
    except typer.BadParameter:
        return None


def parse_device(value: Any) -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (spelling only; no torch import)."""
    try:
        return check_device_name(value)
    except InvalidValueError as exc:
        raise typer.BadParameter(str(exc)) from None


POSITIVE_INT = NumberParser(int, low=1, what="an integer of at least 1")


def bounded_int(key: str) -> NumberParser:
    """An integer in [1, UPPER_BOUNDS[key]] (``--epochs``, ``--seeds``, ...)."""
    high = UPPER_BOUNDS[key]
    return NumberParser(int, low=1, high=high, what=f"an integer from 1 to {high:,}")


def parse_shard_option(value: Any) -> Any:
    """``--shard I/N`` → :class:`dismax_cli.sharding.Shard` (a bad value is a usage error)."""
    from dismax_cli.sharding import Shard, parse_shard

    if isinstance(value, Shard):
        return value
    try:
        return parse_shard(value)
    except InvalidValueError as exc:
        raise typer.BadParameter(str(exc)) from None


SHARD = parse_shard_option

EPOCHS_INT = bounded_int("epochs")
SEEDS_INT = bounded_int("seeds")
ENSEMBLE_INT = bounded_int("ensemble_size")
#: Training batches: BatchNorm cannot train on one image (README design notes).
BATCH_INT = NumberParser(
    int,
    low=2,
    high=UPPER_BOUNDS["batch_size"],
    what=f"an integer from 2 to {UPPER_BOUNDS['batch_size']:,} (BatchNorm cannot train on one "
    "image)",
)
SEED_INT = NumberParser(int, low=0, high=2**62, high_open=True, what="an integer in [0, 2^62)")
POSITIVE_FLOAT = NumberParser(float, low=0, low_open=True, what="a positive number")
NONNEGATIVE_FLOAT = NumberParser(float, low=0, what="a number >= 0")
FRACTION = NumberParser(
    float, low=0, low_open=True, high=1, high_open=True, what="a fraction in (0, 1), e.g. 0.1"
)
#: ``--val-fraction``: 0 parses, so that the honest protocol can refuse it with its reason
#: (dismax_cli.protocol.check_val_fraction) and the paper protocol can take it.
VAL_FRACTION_FLOAT = NumberParser(
    float, low=0, high=1, high_open=True, what="a fraction in [0, 1), e.g. 0.1"
)
PROTOCOL_CHOICE = ChoiceParser(("honest", "paper"))
SELECT_CHOICE = ChoiceParser(("last", "best-val"))
CALIBRATION_OPTIMIZER_CHOICE = ChoiceParser(("grid", "lbfgsb"))
#: ``--bootstrap N``: resamples per interval, 0 skips (the bound is evidence.MAX_BOOTSTRAP's).
BOOTSTRAP_INT = NumberParser(
    int, low=0, high=100_000, what="an integer from 0 to 100,000 (0 skips the intervals)"
)
METHOD = ChoiceParser(_methods.list_methods)
BENCHMARK_METHOD = ChoiceParser(_methods.benchmark_methods)
BACKBONE = ChoiceParser(BACKBONE_NAMES)
MODEL_NAME = parse_model
OBJECTIVE = ChoiceParser(CALIBRATION_OBJECTIVES)
SCORE = ChoiceParser(SCORE_NAMES)

#: ``--scores``: every score name (``dismax_cli.score_names.ALL_SCORES``) or ``all``.
SCORES_CHOICE = ChoiceParser(("all", *_score_names.ALL_SCORES))
OOD_PRESET = ChoiceParser(tuple(_presets.PRESETS))
FPR_CONVENTION = ChoiceParser(_score_names.FPR_CONVENTIONS)
IMAGE_SIZE_INT = NumberParser(int, low=8, high=4096, what="an integer from 8 to 4,096")


def parse_decay_epochs(value: Any) -> tuple[int, ...]:
    """``30,60`` (or one integer) -> ``(30, 60)``: strictly increasing integers >= 1.

    Whether they stay below ``--epochs`` is checked with the merged settings (exit 2 too).
    """
    if isinstance(value, list | tuple):
        items = list(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    else:  # ``30,60``, ``30 60`` or ``30, 60``; an empty item (``30,,60``) is a typo
        items = re.split(r"\s*,\s*|\s+", str(value).strip()) if str(value).strip() else []
    if any(isinstance(item, str) and not item for item in items):
        kept = ",".join(str(item) for item in items if item != "")
        raise typer.BadParameter(
            f"{q(value)} has an empty item (a comma with nothing on one side): write {kept}"
        )
    numbers: list[int] = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            number: int | None = item
        else:  # ASCII digits only (dismax_cli.numbers): int() also takes '٣' and '1_0'
            number = parse_integer(item) if isinstance(item, str) and item.strip() else None
        if number is None or number < 1 or (numbers and number <= numbers[-1]):
            raise typer.BadParameter(
                f"{q(value)} is not a list of strictly increasing epochs >= 1, e.g. 30,60"
            )
        numbers.append(number)
    if not numbers:
        raise typer.BadParameter(f"{q(value)} names no epoch: give e.g. 30,60")
    return tuple(numbers)


class FolderParser:
    """A folder option (``--data-dir``, ``--runs-dir``): refuses an empty or blank name, which
    would otherwise fall back to the default folder in silence (README "Design notes")."""

    def __init__(self, option: str, example: str) -> None:
        self.option, self.example = option, example

    def __call__(self, value: Any) -> Any:
        text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
        if not text.strip():
            raise typer.BadParameter(
                f"{self.option} {q(text)} is empty: name a folder, e.g. {self.example}, or leave "
                f"{self.option} out for the default"
            )
        return value


DATA_DIR_FOLDER = FolderParser("--data-dir", "data")
RUNS_DIR_FOLDER = FolderParser("--runs-dir", "runs")


def parse_config_path(value: Any) -> Path:
    """``--config FILE``: refuses an empty name (``Path("")`` would read the current folder)."""
    if isinstance(value, Path):
        return value
    if not str(value).strip():
        raise InvalidValueError("config", "--config is empty: name a YAML file, e.g. train.yaml")
    return Path(value)
