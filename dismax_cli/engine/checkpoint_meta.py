"""A checkpoint's typed metadata (:class:`CheckpointMeta`, format 2) and its checks.

:mod:`dismax_cli.engine.checkpoint` saves and loads checkpoints and re-exports these names.
Format 2 keeps the fitted temperature in the metadata (``temperature``); heads hold no
temperature (they return raw logits, METHOD.md §3–§4). New keys are optional, so checkpoints
written before them load as they are.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from dismax_cli import __version__
from dismax_cli.core.methods import list_methods
from dismax_cli.data import ImageTransform
from dismax_cli.engine._messages import printable
from dismax_cli.engine.config import TrainConfig
from dismax_cli.engine.data import RunData, data_hashes
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q
from dismax_cli.models import list_backbones
from dismax_cli.models.external import model_name_problem

CHECKPOINT_FORMAT = "dismax-checkpoint"
CHECKPOINT_FORMAT_VERSION = 2


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint says about its run, besides the weights (format 2).

    Attributes:
        method, model: the method and backbone names.
        num_classes, classes: C and the class names (C of them).
        image_size, channels: the model's input (pixels, 1 or 3).
        transform: :meth:`ImageTransform.to_dict` of the ID transform (mean/std included).
        dataset, test_dataset: the ID dataset specs.
        split: the validation carve (:class:`SplitRecord` dict, ``val_indices_sha256`` in it).
        data_sha256: sha256 of each split's pixels, or None (not recorded).
        config: the run's :class:`TrainConfig`.
        epoch, epochs, finished: epochs done, epochs asked, whether they are all done.
        temperature: the temperature probabilities are computed at (1 until calibrated, §4).
        calibration: :meth:`CalibrationResult.to_dict` once calibrated, else None.
        thresholds: per score name, the validation split's ID scores at T = 1 sorted from the
            highest (entry k-1 is the score threshold at TPR k/n, METHOD.md §5), stored at
            calibration; None before (and in files calibrated by dismax before it kept them).
        tool_version: the dismax version that wrote it.
        selection: the epoch rule's record when the run keeps a best epoch (``--select
            best-val`` or ``--protocol paper``): ``rule``, ``split``, ``epoch`` (the kept one),
            ``accuracy`` and ``accuracies`` (per epoch); None for the last-epoch rule (and in
            files written before it existed). Optional key: older checkpoints load as they are.
    """

    method: str
    model: str
    num_classes: int
    classes: tuple[str, ...]
    image_size: int
    channels: int
    transform: dict[str, Any]
    dataset: str
    test_dataset: str | None
    split: dict[str, Any]
    data_sha256: dict[str, str] | None
    config: TrainConfig
    epoch: int
    epochs: int
    finished: bool
    temperature: float = 1.0
    calibration: dict[str, Any] | None = None
    thresholds: dict[str, list[float]] | None = None
    tool_version: str = __version__
    selection: dict[str, Any] | None = None

    @classmethod
    def for_run(
        cls, config: TrainConfig, data: RunData, transform: ImageTransform, epoch: int
    ) -> CheckpointMeta:
        """The metadata of ``config``'s run on ``data`` after ``epoch`` epochs (uncalibrated)."""
        return cls(
            method=config.method,
            model=config.model,
            num_classes=data.train.num_classes,
            classes=tuple(data.train.classes),
            image_size=transform.image_size,
            channels=transform.channels,
            transform=transform.to_dict(),
            dataset=config.dataset,
            test_dataset=config.test_dataset,
            split=data.split.to_dict(),
            data_sha256=data_hashes(data),
            config=config,
            epoch=epoch,
            epochs=config.epochs,
            finished=epoch >= config.epochs,
        )

    @property
    def uses_fpr(self) -> bool:
        """Whether the run mixed FPR mosaics into its batches (METHOD.md §2)."""
        return self.config.uses_fpr

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's metadata keys (plain Python values, in a fixed order)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "tool_version": self.tool_version,
            "method": self.method,
            "model": self.model,
            "num_classes": self.num_classes,
            "classes": list(self.classes),
            "image_size": self.image_size,
            "channels": self.channels,
            "mean": list(self.transform.get("mean", ())),
            "std": list(self.transform.get("std", ())),
            "transform": dict(self.transform),
            "dataset": self.dataset,
            "test_dataset": self.test_dataset,
            "split": dict(self.split),
            "data_sha256": None if self.data_sha256 is None else dict(self.data_sha256),
            "split_seed": self.config.split_seed,
            "uses_fpr": self.uses_fpr,
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "epochs": self.epochs,
            "finished": self.finished,
            "temperature": float(self.temperature),
            "calibration": self.calibration,
            "thresholds": (
                None
                if self.thresholds is None
                else {name: list(values) for name, values in self.thresholds.items()}
            ),
            # Only when set, so that last-epoch runs write the same keys as before.
            **({} if self.selection is None else {"selection": dict(self.selection)}),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CheckpointMeta:
        """Read (and check) the metadata of a format-2 payload; other keys are ignored.

        Raises:
            DismaxError: naming the first missing or invalid key.
        """
        problem = metadata_problem(values)
        if problem:
            raise DismaxError(f"the checkpoint metadata is damaged ({problem})")
        names = {f.name for f in dataclasses.fields(cls)} - {"config", "classes"}
        return cls(
            **{k: values[k] for k in names if k in values},
            classes=tuple(values["classes"]),
            config=TrainConfig.from_dict(values["config"]),
        )


_EXPECTED: dict[str, type | tuple[type, ...]] = {
    "method": str,
    "model": str,
    "num_classes": int,
    "classes": list,
    "image_size": int,
    "channels": int,
    "transform": dict,
    "config": dict,
    "split": dict,
    "epoch": int,
    "epochs": int,
    "finished": bool,
    "dataset": str,
    "temperature": (int, float),
}


def metadata_problem(payload: dict[str, Any]) -> str | None:
    """What is wrong with a (format-2) checkpoint's metadata, or None.

    Returns the first problem as ``key=value`` (or a short phrase), checked in this order: the
    keys' types, the names and sizes (method, model, classes, channels, transform, split), the
    temperature, the stored thresholds, the selection record, the training config.
    """
    for check in (_types_problem, _shape_problem, _stored_values_problem):
        problem = check(payload)
        if problem:
            return problem
    try:
        TrainConfig.from_dict(payload["config"])
    except DismaxError as exc:
        return f"config: {exc}"
    return None


def _types_problem(payload: dict[str, Any]) -> str | None:
    """The first key of ``_EXPECTED`` that is missing or of another type (a bool is no int)."""
    for key, kind in _EXPECTED.items():
        if key not in payload:
            return f"no {q(key)}"
        value = payload[key]
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            return f"{key}={q(value)}"
    return None


def _shape_problem(payload: dict[str, Any]) -> str | None:
    """An unknown method or model, or classes, channels, transform or split that disagree."""
    if payload["method"] not in list_methods():
        return f"method={q(payload['method'])}"
    if model_name_problem(payload["model"], list_backbones()) is not None:
        return f"model={q(payload['model'])}"
    if payload["num_classes"] < 2 or len(payload["classes"]) != payload["num_classes"]:
        return f"num_classes={q(payload['num_classes'])} with {len(payload['classes'])} class names"
    if payload["channels"] not in (1, 3):
        return f"channels={q(payload['channels'])}"
    transform = payload["transform"]
    if (
        transform.get("image_size") != payload["image_size"]
        or transform.get("channels") != payload["channels"]
    ):
        return "transform does not match image_size/channels"
    if "val_indices_sha256" not in payload["split"]:
        return "split has no val_indices_sha256"
    return None


def _stored_values_problem(payload: dict[str, Any]) -> str | None:
    """A temperature that is not a positive number, bad thresholds or a bad selection record."""
    temperature = float(payload["temperature"])
    if not (math.isfinite(temperature) and temperature > 0):
        return f"temperature={q(temperature)}, it must be a positive number"
    problem = _thresholds_problem(payload.get("thresholds"))
    if problem:
        return problem
    selection = payload.get("selection")
    if selection is not None and not (
        isinstance(selection, dict) and isinstance(selection.get("epoch"), int)
    ):
        return f"selection={printable(repr(selection), 60)}"
    return None


def _thresholds_problem(thresholds: Any) -> str | None:
    """What is wrong with the stored per-score thresholds (None is fine: not calibrated)."""
    if thresholds is None:
        return None
    if not isinstance(thresholds, dict) or not thresholds:
        return f"thresholds={printable(repr(thresholds), 60)}"
    for name, values in thresholds.items():
        ok = (
            isinstance(name, str)
            and isinstance(values, list)
            and values
            and all(isinstance(v, float) and math.isfinite(v) for v in values)
            and all(a >= b for a, b in zip(values, values[1:], strict=False))
        )
        if not ok:
            return f"thresholds of score {printable(repr(name), 40)} are not sorted finite scores"
    return None


__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_VERSION",
    "CheckpointMeta",
    "metadata_problem",
]
