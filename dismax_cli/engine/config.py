"""What defines a training run and what it reports: ``TrainConfig``, milestones, logs, progress.

The paper's recipe (METHOD.md §6) is the default: SGD with Nesterov momentum 0.9, learning rate
0.1, weight decay 1e-4 on all parameters, batch 64, learning rate ×0.1 after 1/2, 2/3 and 5/6 of
the epochs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from dismax_cli.config import InvalidValueError, check_types
from dismax_cli.core.methods import get_method, list_methods
from dismax_cli.errors import quote_value as q
from dismax_cli.protocol import (
    DEFAULT_SELECTION,
    check_protocol,
    check_val_fraction,
    resolve_selection,
)

#: Learning-rate milestones as fractions of the epochs (150/200/250 of 300 in the paper), exact.
MILESTONE_FRACTIONS = (Fraction(1, 2), Fraction(2, 3), Fraction(5, 6))
#: The smallest training batch: BatchNorm cannot estimate batch statistics from one image.
MIN_BATCH = 2


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (the keys of ``dismax train`` and YAML configs).

    Attributes:
        dataset: ID dataset spec (``digits[0-5]``, ``cifar10``, ``npz:PATH`` ...).
        test_dataset: a separate test-set spec (for single-file sources), or None.
        method: a method of :func:`~dismax_cli.core.methods.list_methods` (``softmax``,
            ``isomax_plus``, ``dismax``, ``dismax_nofpr`` or a registered one).
        model: backbone name (``convnet``, ``resnet18`` ...), or ``torchvision:NAME`` /
            ``timm:NAME`` for a model of those libraries (random weights, the method's head).
        epochs: number of epochs (300 in the paper).
        batch_size: training batch size (64).
        lr: initial learning rate (0.1).
        momentum: SGD momentum (0.9, Nesterov).
        weight_decay: L2 weight decay on all parameters (1e-4).
        lr_decay: learning-rate factor at each milestone (0.1).
        entropic_scale: E for IsoMax+/DisMax (10).
        alpha: weight of the FPR term (1.0).
        fpr: fractional probability regularization on/off; None = the method's default.
        augment: random crop + flip on/off; None = the dataset's default.
        seed: seed of weights, batch order, augmentation and FPR.
        val_fraction: stratified share of the training split held out for calibration.
        split_seed: seed of that split.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        data_dir: dataset folder (None: ``DISMAX_DATA_DIR`` or the user cache).
        sync_bn: under torchrun, BatchNorm statistics over the global batch (SyncBatchNorm);
            no effect in one process (:mod:`~dismax_cli.engine.distributed`).
        protocol: ``honest`` (default) or ``paper``: train on every training image, no
            validation carve (:mod:`dismax_cli.protocol`, METHOD.md §4, §6).
        select: which epoch the finished run keeps: ``last``, ``best-val``, or None for the
            protocol's rule (honest: last; paper: best ID test accuracy, as the reference).
        image_size: model input side in pixels; None = the backbone's (224 for
            ``resnet18_224``/``resnet50_224``), else the training images' shorter side. From
            224 on, the 224-pixel recipe applies (README "224-pixel recipes").
        decay_epochs: epochs after which the learning rate is multiplied by ``lr_decay``
            (strictly increasing, each in [1, epochs − 1]); None = 1/2, 2/3, 5/6 of the
            epochs (:func:`lr_milestones`).
        stream: read image folders through DataLoader workers (True), in memory (False), or
            by size (None: above ``STREAM_ABOVE_BYTES``; README "Streaming").
    """

    dataset: str = "digits[0-5]"
    test_dataset: str | None = None
    method: str = "dismax"
    model: str = "convnet"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_decay: float = 0.1
    entropic_scale: float = 10.0
    alpha: float = 1.0
    fpr: bool | None = None
    augment: bool | None = None
    seed: int = 0
    val_fraction: float = 0.1
    split_seed: int = 0
    device: str = "auto"
    data_dir: str | None = None
    sync_bn: bool = False
    protocol: str = "honest"
    select: str | None = None
    image_size: int | None = None
    decay_epochs: tuple[int, ...] | None = None
    stream: bool | None = None

    def validate(self, *, machine: bool = True) -> TrainConfig:
        """Return self after checking every value.

        The checks that need no library come first and load no torch, so a bad value is a
        fast usage error; then (``machine=True``) the ones that need torch: a ``torchvision:``
        or ``timm:`` model that exists, a device this machine has.

        Raises:
            InvalidValueError: naming the first bad key (exit 2).
            DismaxError: for a valid value that cannot be used here (no CUDA, no timm).
        """
        if self.method not in list_methods():
            raise InvalidValueError(
                "method",
                f"unknown method {q(self.method)}: choose one of {', '.join(list_methods())}",
            )
        self._check_numbers()
        check_protocol(self.protocol)
        check_val_fraction(self.protocol, self.val_fraction)
        resolve_selection(self.protocol, self.select)
        check_image_size(self.image_size)
        check_decay_epochs(self.decay_epochs, self.epochs)
        self._check_fpr()
        if machine:
            check_model_and_device(self.model, self.device)
        return self

    def _check_numbers(self) -> None:
        for name, least in {"epochs": 1, "batch_size": MIN_BATCH}.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                why = " (BatchNorm cannot train on one image)" if name == "batch_size" else ""
                raise InvalidValueError(
                    name, f"{name}={q(value)} is invalid: use an integer of at least {least}{why}"
                )
        for names, positive, rule in (
            (("lr", "entropic_scale"), True, "a positive number"),
            (("momentum", "weight_decay", "alpha", "lr_decay"), False, "a number >= 0"),
        ):
            for name in names:
                value = getattr(self, name)
                finite = isinstance(value, int | float) and math.isfinite(value)
                if not (finite and (value > 0 if positive else value >= 0)):
                    raise InvalidValueError(name, f"{name}={q(value)} is invalid: use {rule}")
        for name in ("seed", "split_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**62:
                raise InvalidValueError(
                    name, f"{name}={q(value)} is invalid: use an integer in [0, 2^62)"
                )

    def _check_fpr(self) -> None:
        if self.fpr and not get_method(self.method).supports_fpr:
            allowed = [m for m in list_methods() if get_method(m).supports_fpr]
            raise InvalidValueError(
                "fpr",
                f"FPR (fractional probability regularization) applies to "
                f"{', '.join(allowed)} only, not {q(self.method)}: drop --fpr",
            )

    @property
    def selection(self) -> str:
        """The epoch rule: ``last``, ``best-val`` or ``best-test`` (:func:`resolve_selection`)."""
        return resolve_selection(self.protocol, self.select)

    @property
    def uses_fpr(self) -> bool:
        """Whether this run mixes FPR mosaics into its batches."""
        return get_method(self.method).uses_fpr if self.fpr is None else bool(self.fpr)

    def milestones(self) -> list[int]:
        """Epoch counts after which the learning rate is multiplied by ``lr_decay`` (METHOD.md §6).

        The ``decay_epochs`` field when set (the paper's ImageNet recipe: 30, 60 of 90), else
        :func:`lr_milestones`: ``[150, 200, 250]`` for 300 epochs, ``[30, 40, 50]`` for 60,
        ``[]`` for 1 (its only epoch runs at ``lr``).
        """
        if self.decay_epochs is not None:
            return list(self.decay_epochs)
        return lr_milestones(self.epochs)

    def lr_at(self, epoch: int) -> float:
        """Learning rate of (0-based) ``epoch``: ``lr × lr_decay^(milestones <= epoch)``.

        Epoch 0 always runs at ``lr``.
        """
        drops = sum(1 for m in self.milestones() if epoch >= m)
        return self.lr * self.lr_decay**drops

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping (YAML, CLI, checkpoint); unknown keys and wrong types are errors."""
        return cls(**check_types(cls, values, what="training"))

    def identity(self) -> dict[str, Any]:
        """The keys whose change makes an existing run a different run (the benchmark's run key).

        Everything but where it runs (``device``, ``data_dir``). A field added after the first
        release is listed in :data:`LATER_FIELDS` and left out while it has its default value, so
        the run folders trained before it existed keep their keys and are still reused. Under
        the paper protocol the validation carve's keys mean nothing and are left out; ``select``
        enters as the rule it resolves to, and not at all when that is the protocol's own.
        """
        values = self.to_dict()
        for key in ("device", "data_dir"):
            values.pop(key)
        values["select"] = None if self.selection == DEFAULT_SELECTION[self.protocol] else (
            self.selection
        )
        if self.protocol == "paper":
            values.pop("val_fraction")
            values.pop("split_seed")
        defaults = TrainConfig()
        for key in LATER_FIELDS:
            if key in values and values[key] == getattr(defaults, key):
                values.pop(key)
        return values


def check_model_and_device(model: str, device: str) -> None:
    """The checks of a run's settings that load torch: ``model`` is a backbone or an existing
    torchvision/timm model, ``device`` is one this machine has.

    Raises:
        InvalidValueError: for an unknown model or a malformed device name.
        DismaxError: for a device this machine lacks, or timm not installed.
    """
    from dismax_cli.engine.devices import resolve_device
    from dismax_cli.models import list_backbones
    from dismax_cli.models.external import check_model_name

    check_model_name(model, list_backbones())
    resolve_device(device)  # unknown or unavailable devices fail before any work


#: TrainConfig fields added after the run key was first defined: omitted from
#: :meth:`TrainConfig.identity` while at their default (see there). Append every new field here.
LATER_FIELDS: tuple[str, ...] = (
    "sync_bn",
    "protocol",
    "select",
    "image_size",
    "decay_epochs",
    "stream",
)

#: The largest ``image_size`` accepted (a 4096 × 4096 RGB float image is 200 MB).
MAX_IMAGE_SIZE = 4096


def check_image_size(value: object) -> None:
    """Refuse an ``image_size`` that is not None or an integer in [8, 4096].

    Raises:
        InvalidValueError: naming the value and the range.
    """
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 8 <= value <= MAX_IMAGE_SIZE:
        raise InvalidValueError(
            "image_size",
            f"image_size={q(value)} is invalid: use an integer from 8 to {MAX_IMAGE_SIZE}, e.g. "
            "224 (or leave it unset for the backbone's or the data's size)",
        )


def check_decay_epochs(value: object, epochs: int) -> None:
    """Refuse milestones that are not strictly increasing integers in [1, epochs − 1].

    Raises:
        InvalidValueError: naming the first bad milestone and the fix.
    """
    if value is None:
        return
    items = list(value) if isinstance(value, list | tuple) else [value]
    if not items:
        raise InvalidValueError(
            "decay_epochs", "decay_epochs is empty: give epochs such as 30,60 (or leave it unset)"
        )
    previous = 0
    for m in items:
        if isinstance(m, bool) or not isinstance(m, int) or not previous < m < epochs:
            if isinstance(m, bool) or not isinstance(m, int):
                why = "an integer"
            elif m <= previous:
                why = f"greater than {previous}" if previous else "at least 1"
            else:
                why = f"below epochs={epochs}"
            raise InvalidValueError(
                "decay_epochs",
                f"decay epoch {q(m)} in {q(list(items))} is invalid: it must be {why}; use "
                f"strictly increasing integers from 1 to epochs - 1 = {epochs - 1}, e.g. 30,60 "
                "for 90 epochs",
            )
        previous = m


@dataclass(frozen=True)
class EpochLog:
    """One line of ``train_log.jsonl``."""

    epoch: int
    loss: float
    accuracy: float
    lr: float
    seconds: float
    images_per_s: float


@dataclass(frozen=True)
class TrainProgress:
    """What the progress callback receives after every few batches and at the end of an epoch."""

    epoch: int
    epochs: int
    batch: int
    batches: int
    loss: float
    accuracy: float
    images_per_s: float
    epoch_done: bool = False


ProgressCallback = Callable[[TrainProgress], None]


@dataclass
class TrainResult:
    """What :func:`fit` returns."""

    run_dir: Path
    checkpoint: Path
    epochs_run: int
    train_seconds: float
    history: list[EpochLog] = field(default_factory=list)
    already_finished: bool = False


def lr_milestones(epochs: int) -> list[int]:
    """The learning-rate milestones of a run of ``epochs`` epochs (METHOD.md §6).

    The paper decays after 1/2, 2/3 and 5/6 of the epochs (150, 200, 250 of 300). Each milestone
    is that fraction of ``epochs``, rounded exactly (half to even), then kept inside
    [1, epochs − 1] and pushed apart by one epoch where rounding makes two coincide, so every
    milestone is a distinct epoch and epoch 0 runs at the initial learning rate. A run too short
    for three decays (epochs <= 3) decays after each epoch but the last: ``[]`` for 1 epoch,
    ``[1]`` for 2, ``[1, 2]`` for 3.

    Returns:
        ``min(3, epochs − 1)`` strictly increasing ints in [1, epochs − 1].
    """
    slots = epochs - 1
    if slots <= len(MILESTONE_FRACTIONS):
        return list(range(1, max(epochs, 1)))
    wanted = [min(max(round(f * epochs), 1), slots) for f in MILESTONE_FRACTIONS]
    for i in range(1, len(wanted)):
        wanted[i] = max(wanted[i], wanted[i - 1] + 1)
    wanted[-1] = min(wanted[-1], slots)
    for i in range(len(wanted) - 2, -1, -1):
        wanted[i] = min(wanted[i], wanted[i + 1] - 1)
    return wanted



__all__ = [
    "LATER_FIELDS",
    "MAX_IMAGE_SIZE",
    "MILESTONE_FRACTIONS",
    "MIN_BATCH",
    "EpochLog",
    "ProgressCallback",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "check_image_size",
    "check_decay_epochs",
    "check_model_and_device",
    "lr_milestones",
]
