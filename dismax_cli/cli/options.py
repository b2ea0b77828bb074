"""Every CLI option that two commands share, defined once (name, type, help text).

The training knobs (:class:`~dismax_cli.engine.TrainConfig`'s fields, the keys a YAML config
accepts) are options of both ``dismax train`` and ``dismax benchmark`` with the same name and
help text. Values are checked while the command line is parsed (choices, ranges, device names),
so a bad value exits 2 (a usage error) in well under a second: this module imports neither
torch nor the library. ``tests/test_cli_options.py`` checks that the choices below match the
registries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import typer

from dismax_cli import presets as _presets  # torch-free
from dismax_cli import score_names as _score_names  # torch-free
from dismax_cli.config import UPPER_BOUNDS, InvalidValueError, check_device_name
from dismax_cli.core import methods as _methods  # torch-free: the registry's names only
from dismax_cli.core.metric_table import CALIBRATION_OBJECTIVES

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
#: The environment variable of the data folder (``dismax_cli.data.DATA_DIR_ENV``).
DATA_DIR_ENV = "DISMAX_DATA_DIR"


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
        else:
            try:
                number = self.kind(str(value).strip())
            except ValueError:
                raise typer.BadParameter(f"{value!r} is not {self.what}") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise typer.BadParameter(f"{value!r} is not {self.what}")
        too_low = self.low is not None and (
            number <= self.low if self.low_open else number < self.low
        )
        too_high = self.high is not None and (
            number >= self.high if self.high_open else number > self.high
        )
        if too_low:
            bound = f"above {self.low:g}" if self.low_open else f"at least {self.low:,}"
            raise typer.BadParameter(f"{value!r} is not {self.what} (it must be {bound})")
        if too_high:
            raise typer.BadParameter(f"{value!r} is not {self.what} (too large)")
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
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")


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
    raise typer.BadParameter(
        f"{value!r} is not one of {', '.join(BACKBONE_NAMES)}, torchvision:NAME or timm:NAME"
    )


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


def check_shard_alone(
    shard: Any, *, out: Any, require: Any, plots: Any = None, html: Any = None
) -> None:
    """Refuse ``--out``, ``--require``, ``--plots``, ``--html`` beside ``--shard`` (no report).

    Raises:
        typer.BadParameter: (exit 2) naming the option and the fix.
    """
    given = (("--out", out), ("--require", require), ("--plots", plots), ("--html", html))
    for flag, value in given:
        if shard is not None and value:
            raise typer.BadParameter(
                f"a --shard job writes no report, so {flag} has nothing to act on: give "
                f"{flag} to the final dismax benchmark run without --shard",
                param_hint=f"'{flag}'",
            )


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
SCORES = typer.Option(
    None,
    "--scores",
    parser=SCORES_CHOICE,
    metavar="SCORE",
    help=(
        "Show every score side by side: all, or any of "
        f"{' '.join(_score_names.ALL_SCORES)} (detectors fit on the training split)."
    ),
)
FPR_CONVENTION_OPTION = typer.Option(
    None,
    "--fpr-convention",
    parser=FPR_CONVENTION,
    metavar="ours|openood",
    help="FPR@95TPR: ours (ID positive, default) or openood (OpenOOD v1.5, OOD positive).",
)

DATA_DIR_HELP = "Dataset folder (default: $DISMAX_DATA_DIR or the per-user cache)."

# ----------------------------------------------------------------------------- training knobs
# One typer.Option per TrainConfig field; train and benchmark both use each of them.

DATASET = typer.Option(
    None,
    "--dataset",
    metavar="SPEC",
    help="ID dataset spec, e.g. digits[0-5], cifar10, npz:PATH (default digits[0-5]).",
)
TEST_DATASET = typer.Option(
    None,
    "--test-dataset",
    metavar="SPEC",
    help="Separate ID test set (for npz:/imagefolder: sources).",
)
MODEL = typer.Option(
    None,
    "--model",
    parser=MODEL_NAME,
    metavar="NAME",
    help=(
        f"Backbone: {', '.join(BACKBONE_NAMES)} (default convnet), or any torchvision:NAME / "
        "timm:NAME classification model (random weights, the method's head)."
    ),
)
EPOCHS = typer.Option(
    None,
    "--epochs",
    parser=EPOCHS_INT,
    metavar="N",
    help="Epochs per run (default: train 10, benchmark 20; the paper 300).",
)
BATCH_SIZE = typer.Option(
    None, "--batch-size", parser=BATCH_INT, metavar="N", help="Training batch size (default 64)."
)
LR = typer.Option(
    None, "--lr", parser=POSITIVE_FLOAT, metavar="X", help="Initial learning rate (default 0.1)."
)
MOMENTUM = typer.Option(
    None,
    "--momentum",
    parser=NONNEGATIVE_FLOAT,
    metavar="X",
    help="SGD Nesterov momentum (default 0.9).",
)
WEIGHT_DECAY = typer.Option(
    None,
    "--weight-decay",
    parser=NONNEGATIVE_FLOAT,
    metavar="X",
    help="L2 weight decay on all parameters (default 1e-4).",
)
LR_DECAY = typer.Option(
    None,
    "--lr-decay",
    parser=NONNEGATIVE_FLOAT,
    metavar="X",
    help="Learning-rate factor after 1/2, 2/3 and 5/6 of the epochs (default 0.1).",
)
ENTROPIC_SCALE = typer.Option(
    None,
    "--entropic-scale",
    parser=POSITIVE_FLOAT,
    metavar="X",
    help="Entropic scale E of IsoMax+ and DisMax (default 10).",
)
ALPHA = typer.Option(
    None,
    "--alpha",
    parser=NONNEGATIVE_FLOAT,
    metavar="X",
    help="Weight of the FPR term (default 1).",
)
FPR = typer.Option(
    None,
    "--fpr/--no-fpr",
    help="Fractional probability regularization, DisMax only (default on for DisMax).",
)
AUGMENT = typer.Option(
    None,
    "--augment/--no-augment",
    help="Random crop and flip while training (default: the dataset's).",
)
SEED = typer.Option(
    None,
    "--seed",
    parser=SEED_INT,
    metavar="N",
    help=(
        "Seed of weights, batches, augmentation and FPR (default 0); the benchmark's first "
        "seed: --seeds K runs SEED, SEED+1, ..., SEED+K-1."
    ),
)
VAL_FRACTION = typer.Option(
    None,
    "--val-fraction",
    parser=VAL_FRACTION_FLOAT,
    metavar="X",
    help=(
        "Share of the training split held out for calibration (default 0.1; ignored by "
        "--protocol paper)."
    ),
)
PROTOCOL = typer.Option(
    None,
    "--protocol",
    parser=PROTOCOL_CHOICE,
    metavar="honest|paper",
    help=(
        "honest (default): hold out a validation split, fit T on it, never touch the test split. "
        "paper: the reference's: train on every training image, fit T on the ID test split "
        "(L-BFGS-B), keep the best test-accuracy epoch; reports say the test set was seen."
    ),
)
SELECT = typer.Option(
    None,
    "--select",
    parser=SELECT_CHOICE,
    metavar="last|best-val",
    help=(
        "Epoch the run keeps: last (default) or best-val (best validation accuracy); "
        "--protocol paper keeps the best test-accuracy epoch unless --select last."
    ),
)
CALIBRATION_OPTIMIZER = typer.Option(
    None,
    "--calibration-optimizer",
    parser=CALIBRATION_OPTIMIZER_CHOICE,
    metavar="grid|lbfgsb",
    help=(
        "Temperature fit: grid (log-grid + bounded Brent; default for --protocol honest) or "
        "lbfgsb (the reference's bounded L-BFGS-B from T = 1; default for --protocol paper)."
    ),
)
SPLIT_SEED = typer.Option(
    None,
    "--split-seed",
    parser=SEED_INT,
    metavar="N",
    help="Seed of the validation split (default 0).",
)
DEVICE = typer.Option(
    None,
    "--device",
    parser=parse_device,
    metavar="DEVICE",
    help="auto, cpu, cuda, cuda:N or mps (default auto: CUDA, then MPS, then CPU).",
)
DATA_DIR = typer.Option(None, "--data-dir", metavar="DIR", help=DATA_DIR_HELP)
SYNC_BN = typer.Option(
    None,
    "--sync-bn/--no-sync-bn",
    help="Under torchrun: BatchNorm statistics over the global batch (default off).",
)
IMAGE_SIZE_INT = NumberParser(int, low=8, high=4096, what="an integer from 8 to 4,096")
IMAGE_SIZE = typer.Option(
    None,
    "--image-size",
    parser=IMAGE_SIZE_INT,
    metavar="PX",
    help=(
        "Model input side (default: the backbone's, 224 for resnet18_224/resnet50_224, else "
        "the data's); from 224 the ImageNet recipe (RandomResizedCrop, resize 256, crop 224)."
    ),
)


def parse_decay_epochs(value: Any) -> tuple[int, ...]:
    """``30,60`` (or one integer) -> ``(30, 60)``: strictly increasing integers >= 1.

    Whether they stay below ``--epochs`` is checked with the merged settings (exit 2 too).
    """
    if isinstance(value, list | tuple):
        items = list(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    else:
        items = [t for t in str(value).replace(" ", ",").split(",") if t]
    numbers: list[int] = []
    for item in items:
        try:
            number = item if isinstance(item, int) and not isinstance(item, bool) else int(item)
        except (TypeError, ValueError):
            number = None
        if number is None or number < 1 or (numbers and number <= numbers[-1]):
            raise typer.BadParameter(
                f"{value!r} is not a list of strictly increasing epochs >= 1, e.g. 30,60"
            )
        numbers.append(number)
    if not numbers:
        raise typer.BadParameter(f"{value!r} names no epoch: give e.g. 30,60")
    return tuple(numbers)


DECAY_EPOCHS = typer.Option(
    None,
    "--decay-epochs",
    parser=parse_decay_epochs,
    metavar="E1,E2",
    help="Epochs after which the learning rate drops (default 1/2, 2/3, 5/6 of --epochs).",
)
STREAM_OVERRIDE = typer.Option(
    None,
    "--stream/--no-stream",
    help="Stream image folders through DataLoader workers, or not (default: as trained).",
)
STREAM = typer.Option(
    None,
    "--stream/--no-stream",
    help=(
        "Read image folders through DataLoader workers instead of memory (default: when the "
        "decoded images would exceed 2 GiB)."
    ),
)

#: Training-knob option of each TrainConfig field (``method`` is ``--method`` in train and
#: ``--methods`` in benchmark).
TRAINING_KNOBS: dict[str, Any] = {
    "dataset": DATASET,
    "test_dataset": TEST_DATASET,
    "model": MODEL,
    "epochs": EPOCHS,
    "batch_size": BATCH_SIZE,
    "lr": LR,
    "momentum": MOMENTUM,
    "weight_decay": WEIGHT_DECAY,
    "lr_decay": LR_DECAY,
    "entropic_scale": ENTROPIC_SCALE,
    "alpha": ALPHA,
    "fpr": FPR,
    "augment": AUGMENT,
    "seed": SEED,
    "val_fraction": VAL_FRACTION,
    "split_seed": SPLIT_SEED,
    "device": DEVICE,
    "data_dir": DATA_DIR,
    "sync_bn": SYNC_BN,
    "protocol": PROTOCOL,
    "select": SELECT,
    "image_size": IMAGE_SIZE,
    "decay_epochs": DECAY_EPOCHS,
    "stream": STREAM,
}

# ----------------------------------------------------------------------------- other shared


def parse_config_path(value: Any) -> Path:
    """``--config FILE``: refuses an empty name (``Path("")`` would read the current folder)."""
    if isinstance(value, Path):
        return value
    if not str(value).strip():
        raise InvalidValueError("config", "--config is empty: name a YAML file, e.g. train.yaml")
    return Path(value)


CONFIG = typer.Option(
    None,
    "--config",
    parser=parse_config_path,
    metavar="FILE.yaml",
    help=(
        "YAML file of options (keys as the option names; relative paths are relative to the "
        "file; the command line wins)."
    ),
)
FORMAT_HELP = "table or json on stdout (messages go to stderr)."
OBJECTIVE_HELP = "Calibration objective: ece (the paper's) or nll (Guo et al.)."
OOD_HELP = "OOD sets: --ood SET [SET ...] (NAME=SPEC labels a set)."
CHECKPOINT_HELP = "A run folder or its checkpoint.pt."


def checkpoint_argument() -> Any:
    """The CHECKPOINT argument of calibrate and score."""
    return typer.Argument(..., metavar="CHECKPOINT", help=CHECKPOINT_HELP, show_default=False)


__all__ = [
    "BACKBONE_NAMES",
    "BENCHMARK_METHOD_NAMES",
    "DEFAULT_BENCHMARK_METHOD_NAMES",
    "DATA_DIR_ENV",
    "METHOD_NAMES",
    "SCORE_NAMES",
    "TRAINING_KNOBS",
    "ChoiceParser",
    "NumberParser",
    "parse_device",
]


def precheck_file_values(
    file_values: dict[str, Any], config: Any, parsers: dict[str, Any]
) -> None:
    """Check a config file's values with the options' own parsers, before torch loads.

    A value that the option would refuse on the command line is refused from the file too, at
    once (exit 2, naming the key and the file); the full check by type hints follows later.
    ``parsers`` maps keys to parsers or to typer options that carry one (``parser=...``).

    Raises:
        InvalidValueError: naming the key and the file.
    """
    for key, value in file_values.items():
        parser = parsers.get(key)
        parser = getattr(parser, "parser", parser)
        if parser is None or value is None:
            continue
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            try:
                parser(item)
            except typer.BadParameter as exc:
                raise InvalidValueError(
                    key,
                    f"invalid value for key {key!r} in config file '{config}': "
                    f"{exc.message}",
                ) from None


def precheck_gates(
    require: list[str] | None, ood: list[str] | None, *, source: str = "the command line"
) -> None:
    """Check ``--require`` syntax and ``--ood`` labels without torch (exit 2 at once).

    Method and set names are checked later against the run's final names (aliases resolved).

    Raises:
        InvalidValueError: naming the option.
    """
    from dismax_cli.gates import check_ood_labels, parse_requirements

    for key, check in (
        ("require", lambda: parse_requirements(require, methods=None, ood=None)),
        ("ood", lambda: check_ood_labels(ood)),
    ):
        if (require if key == "require" else ood) is None:
            continue
        try:
            check()
        except InvalidValueError as exc:
            where = f"--{key}" if source == "the command line" else f"key {key!r} in {source}"
            raise InvalidValueError(key, f"invalid value for {where}: {exc}") from None
