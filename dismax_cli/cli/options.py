"""Every CLI option that two commands share, defined once (name, type, parser, help text).

Each is a ``typing.Annotated`` alias, so that a command's signature is one line per option
(``epochs: opt.Epochs = None``). The training knobs (:class:`~dismax_cli.engine.TrainConfig`'s
fields, the keys a YAML config accepts) are options of both ``dismax train`` and ``dismax
benchmark`` with the same name and help text. Values are checked while the command line is
parsed (:mod:`dismax_cli.cli.parsers`: choices, ranges, device names), so a bad value exits 2
(a usage error) in well under a second: this module imports neither torch nor the library.
``tests/test_cli_options.py`` checks that the choices match the registries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dismax_cli import score_names as _score_names  # torch-free
from dismax_cli.cli.common import OutputFormat
from dismax_cli.cli.parsers import (  # noqa: F401  re-exported: the names tests and commands use
    BACKBONE_NAMES,
    BATCH_INT,
    BENCHMARK_METHOD,
    BENCHMARK_METHOD_NAMES,
    BOOTSTRAP_INT,
    CALIBRATION_OPTIMIZER_CHOICE,
    DATA_DIR_FOLDER,
    DEFAULT_BENCHMARK_METHOD_NAMES,
    ENSEMBLE_INT,
    EPOCHS_INT,
    FPR_CONVENTION,
    IMAGE_SIZE_INT,
    METHOD,
    METHOD_NAMES,
    MODEL_NAME,
    NONNEGATIVE_FLOAT,
    OBJECTIVE,
    OOD_PRESET,
    POSITIVE_FLOAT,
    PROTOCOL_CHOICE,
    RUNS_DIR_FOLDER,
    SCORE,
    SCORE_NAMES,
    SCORES_CHOICE,
    SEED_INT,
    SEEDS_INT,
    SELECT_CHOICE,
    SHARD,
    VAL_FRACTION_FLOAT,
    ChoiceParser,
    EnumChoice,
    NumberParser,
    parse_config_path,
    parse_decay_epochs,
    parse_device,
)

#: The environment variable of the data folder (``dismax_cli.data.DATA_DIR_ENV``).
DATA_DIR_ENV = "DISMAX_DATA_DIR"
DATA_DIR_HELP = "Dataset folder (default: $DISMAX_DATA_DIR or the per-user cache)."
FORMAT_HELP = "table or json on stdout (messages go to stderr)."
OBJECTIVE_HELP = "Calibration objective: ece (the paper's) or nll (Guo et al.)."
OOD_HELP = "OOD sets: --ood SET [SET ...] (NAME=SPEC labels a set)."
CHECKPOINT_HELP = "A run folder or its checkpoint.pt."


def _opt(name: str, parser: Any = None, metavar: str | None = None, **kwargs: Any) -> Any:
    """A typer option for ``Annotated`` (no default: the signature's ``= None`` is it)."""
    if parser is not None:
        kwargs["parser"] = parser
    return typer.Option(name, metavar=metavar, **kwargs)


# ----------------------------------------------------------------------------- training knobs
# One option per TrainConfig field; train and benchmark both use each of them.

Dataset = Annotated[
    str | None,
    _opt("--dataset", None, "SPEC", help="ID dataset spec, e.g. digits[0-5], cifar10, npz:PATH "
         "(default digits[0-5])."),
]  # fmt: skip
TestDataset = Annotated[
    str | None,
    _opt("--test-dataset", None, "SPEC", help="Separate ID test set (for npz:/imagefolder: "
         "sources)."),
]  # fmt: skip
Model = Annotated[
    str | None,
    _opt("--model", MODEL_NAME, "NAME", help=(
        f"Backbone: {', '.join(BACKBONE_NAMES)} (default convnet), or any torchvision:NAME / "
        "timm:NAME classification model (random weights, the method's head).")),
]  # fmt: skip
Epochs = Annotated[
    int | None,
    _opt("--epochs", EPOCHS_INT, "N", help="Epochs per run (default: train 10, benchmark 20; "
         "the paper 300)."),
]  # fmt: skip
BatchSize = Annotated[
    int | None, _opt("--batch-size", BATCH_INT, "N", help="Training batch size (default 64).")
]
Lr = Annotated[
    float | None, _opt("--lr", POSITIVE_FLOAT, "X", help="Initial learning rate (default 0.1).")
]
Momentum = Annotated[
    float | None,
    _opt("--momentum", NONNEGATIVE_FLOAT, "X", help="SGD Nesterov momentum (default 0.9)."),
]
WeightDecay = Annotated[
    float | None,
    _opt("--weight-decay", NONNEGATIVE_FLOAT, "X", help="L2 weight decay on all parameters "
         "(default 1e-4)."),
]  # fmt: skip
LrDecay = Annotated[
    float | None,
    _opt("--lr-decay", NONNEGATIVE_FLOAT, "X", help="Learning-rate factor after 1/2, 2/3 and "
         "5/6 of the epochs (default 0.1)."),
]  # fmt: skip
EntropicScale = Annotated[
    float | None,
    _opt("--entropic-scale", POSITIVE_FLOAT, "X", help="Entropic scale E of IsoMax+ and DisMax "
         "(default 10)."),
]  # fmt: skip
Alpha = Annotated[
    float | None,
    _opt("--alpha", NONNEGATIVE_FLOAT, "X", help="Weight of the FPR term (default 1)."),
]
Fpr = Annotated[
    bool | None,
    typer.Option("--fpr/--no-fpr", help="Fractional probability regularization, DisMax only "
                 "(default on for DisMax)."),
]  # fmt: skip
Augment = Annotated[
    bool | None,
    typer.Option("--augment/--no-augment", help="Random crop and flip while training "
                 "(default: the dataset's)."),
]  # fmt: skip
Seed = Annotated[
    int | None,
    _opt("--seed", SEED_INT, "N", help=(
        "Seed of weights, batches, augmentation and FPR (default 0); the benchmark's first "
        "seed: --seeds K runs SEED, SEED+1, ..., SEED+K-1.")),
]  # fmt: skip
ValFraction = Annotated[
    float | None,
    _opt("--val-fraction", VAL_FRACTION_FLOAT, "X", help=(
        "Share of the training split held out for calibration (default 0.1; ignored by "
        "--protocol paper).")),
]  # fmt: skip
Protocol = Annotated[
    str | None,
    _opt("--protocol", PROTOCOL_CHOICE, "honest|paper", help=(
        "honest (default): hold out a validation split, fit T on it, never touch the test split. "
        "paper: the reference's: train on every training image, fit T on the ID test split "
        "(L-BFGS-B), keep the best test-accuracy epoch; reports say the test set was seen.")),
]  # fmt: skip
Select = Annotated[
    str | None,
    _opt("--select", SELECT_CHOICE, "last|best-val", help=(
        "Epoch the run keeps: last (default) or best-val (best validation accuracy); "
        "--protocol paper keeps the best test-accuracy epoch unless --select last.")),
]  # fmt: skip
SplitSeed = Annotated[
    int | None,
    _opt("--split-seed", SEED_INT, "N", help="Seed of the validation split (default 0)."),
]
Device = Annotated[
    str | None,
    _opt("--device", parse_device, "DEVICE", help="auto, cpu, cuda, cuda:N or mps (default "
         "auto: CUDA, then MPS, then CPU)."),
]  # fmt: skip
DataDir = Annotated[str | None, _opt("--data-dir", DATA_DIR_FOLDER, "DIR", help=DATA_DIR_HELP)]
SyncBn = Annotated[
    bool | None,
    typer.Option("--sync-bn/--no-sync-bn", help="Under torchrun: BatchNorm statistics over the "
                 "global batch (default off)."),
]  # fmt: skip
ImageSize = Annotated[
    int | None,
    _opt("--image-size", IMAGE_SIZE_INT, "PX", help=(
        "Model input side (default: the backbone's, 224 for resnet18_224/resnet50_224, else "
        "the data's); from 224 the ImageNet recipe (RandomResizedCrop, resize 256, crop 224).")),
]  # fmt: skip
DecayEpochs = Annotated[
    str | None,
    _opt("--decay-epochs", parse_decay_epochs, "E1,E2", help="Epochs after which the learning "
         "rate drops (default 1/2, 2/3, 5/6 of --epochs)."),
]  # fmt: skip
Stream = Annotated[
    bool | None,
    typer.Option("--stream/--no-stream", help=(
        "Read image folders through DataLoader workers instead of memory (default: when the "
        "decoded images would exceed 2 GiB).")),
]  # fmt: skip

#: The parser of each TrainConfig field that has one (``method`` is ``--method`` in train and
#: ``--methods`` in benchmark): a config file's values are checked with them.
TRAINING_KNOBS: dict[str, Any] = {
    "model": MODEL_NAME,
    "epochs": EPOCHS_INT,
    "batch_size": BATCH_INT,
    "lr": POSITIVE_FLOAT,
    "momentum": NONNEGATIVE_FLOAT,
    "weight_decay": NONNEGATIVE_FLOAT,
    "lr_decay": NONNEGATIVE_FLOAT,
    "entropic_scale": POSITIVE_FLOAT,
    "alpha": NONNEGATIVE_FLOAT,
    "seed": SEED_INT,
    "val_fraction": VAL_FRACTION_FLOAT,
    "split_seed": SEED_INT,
    "device": parse_device,
    "protocol": PROTOCOL_CHOICE,
    "select": SELECT_CHOICE,
    "image_size": IMAGE_SIZE_INT,
    "decay_epochs": parse_decay_epochs,
    # Folders: an empty name in a config file is refused as on the command line.
    "data_dir": DATA_DIR_FOLDER,
    "runs_dir": RUNS_DIR_FOLDER,
}

# ----------------------------------------------------------------------------- other shared

Config = Annotated[
    Path | None,
    _opt("--config", parse_config_path, "FILE.yaml", help=(
        "YAML file of options (keys as the option names; relative paths are relative to the "
        "file; the command line wins).")),
]  # fmt: skip
#: ``--format``'s parser: "'x' is not one of table, json", as every other choice words it.
FORMAT_CHOICE = EnumChoice(OutputFormat)


def format_option(help: str = FORMAT_HELP) -> Any:
    """The ``--format table|json`` option (an :class:`OutputFormat`) with this help text."""
    return _opt("--format", FORMAT_CHOICE, FORMAT_CHOICE.metavar, help=help)


#: ``--format`` of the commands that write a result (``= OutputFormat.table``).
Format = Annotated[OutputFormat, format_option()]
#: ``--quiet`` of every command that shows progress (train, calibrate, score, benchmark).
Quiet = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="Show no progress (results, warnings and errors still "
                 "print)."),
]  # fmt: skip
#: ``--stream/--no-stream`` of the commands that read a trained run's data.
StreamOverride = Annotated[
    bool | None,
    typer.Option("--stream/--no-stream", help="Stream image folders through DataLoader "
                 "workers, or not (default: as trained)."),
]  # fmt: skip
Scores = Annotated[
    list[str] | None,
    _opt("--scores", SCORES_CHOICE, "SCORE", help=(
        "Show every score side by side: all, or any of "
        f"{' '.join(_score_names.ALL_SCORES)} (detectors fit on the training split).")),
]  # fmt: skip
FprConvention = Annotated[
    str | None,
    _opt("--fpr-convention", FPR_CONVENTION, "ours|openood", help="FPR@95TPR: ours (ID "
         "positive, default) or openood (OpenOOD v1.5, OOD positive)."),
]  # fmt: skip
CalibrationOptimizer = Annotated[
    str | None,
    _opt("--calibration-optimizer", CALIBRATION_OPTIMIZER_CHOICE, "grid|lbfgsb", help=(
        "Temperature fit: grid (log-grid + bounded Brent; default for --protocol honest) or "
        "lbfgsb (the reference's bounded L-BFGS-B from T = 1; default for --protocol paper).")),
]  # fmt: skip
#: The CHECKPOINT argument of calibrate, score and detect.
Checkpoint = Annotated[
    Path,
    typer.Argument(metavar="CHECKPOINT", help=CHECKPOINT_HELP, show_default=False),
]


def score_option(what: str) -> Any:
    """``--score NAME`` of score and detect; ``what`` starts its help (``Score shown in the
    table``)."""
    return _opt("--score", SCORE, "SCORE", help=f"{what}: {', '.join(SCORE_NAMES)} (default: "
                "the method's).")  # fmt: skip


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
