"""The engine: train, predict and calibrate any ``nn.Module``; the CLI's run folders on top.

Modules, one concern each: :mod:`.config` (``TrainConfig``), :mod:`.devices`, :mod:`.distributed`
(torchrun: process group, shards, gathers), :mod:`.data`
(``RunData``), :mod:`.build` (model, optimiser, loss), :mod:`.checkpoint` (typed, versioned
metadata), :mod:`.loop` (``train_one_epoch``), :mod:`.predict` (``predict_logits``),
:mod:`.calibrate`, :mod:`.run` (``fit``), :mod:`.deploy` (``load_run``). Imports point down
that list; none points up.

The names below load on first use (PEP 562 ``__getattr__``): ``from dismax_cli.engine import
TrainConfig`` imports :mod:`.config` alone, which loads no torch, so the CLI builds and checks
a configuration (a usage error answers at once) before the library loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dismax_cli.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from dismax_cli.engine.build import build_model, build_training, make_optimizer, make_transform
    from dismax_cli.engine.calibrate import (
        CalibrationResult,
        calibrate_bundle,
        calibrate_checkpoint,
        fit_temperature_noted,
        training_temperature,
        validation_thresholds,
    )
    from dismax_cli.engine.checkpoint import (
        CHECKPOINT_NAME,
        LOG_NAME,
        Checkpoint,
        CheckpointMeta,
        ModelBundle,
        bundle_from_checkpoint,
        checkpoint_path,
        load_bundle,
        load_checkpoint,
        load_payload,
        read_train_log,
        save_checkpoint,
    )
    from dismax_cli.engine.config import (
        EpochLog,
        ProgressCallback,
        TrainConfig,
        TrainProgress,
        TrainResult,
        lr_milestones,
    )
    from dismax_cli.engine.data import RunData, load_run_data, rebuild_run_data
    from dismax_cli.engine.deploy import Prediction, Run, load_run
    from dismax_cli.engine.devices import DEVICES, resolve_device
    from dismax_cli.engine.loop import (
        EpochStats,
        InMemoryBatches,
        batch_sizes,
        epoch_generator,
        fpr_mix,
        train_one_epoch,
    )
    from dismax_cli.engine.predict import predict_features_logits, predict_images, predict_logits
    from dismax_cli.engine.run import fit

#: Public name -> the submodule that defines it (imported when the name is first read).
_SOURCES: dict[str, str] = {
    **dict.fromkeys(("build_model", "build_training", "make_optimizer", "make_transform"), "build"),
    **dict.fromkeys(
        (
            "CalibrationResult",
            "calibrate_bundle",
            "calibrate_checkpoint",
            "fit_temperature_noted",
            "training_temperature",
            "validation_thresholds",
        ),
        "calibrate",
    ),
    **dict.fromkeys(
        (
            "CHECKPOINT_NAME",
            "LOG_NAME",
            "Checkpoint",
            "CheckpointMeta",
            "ModelBundle",
            "bundle_from_checkpoint",
            "checkpoint_path",
            "load_bundle",
            "load_checkpoint",
            "load_payload",
            "read_train_log",
            "save_checkpoint",
        ),
        "checkpoint",
    ),
    **dict.fromkeys(
        (
            "EpochLog",
            "ProgressCallback",
            "TrainConfig",
            "TrainProgress",
            "TrainResult",
            "lr_milestones",
        ),
        "config",
    ),
    **dict.fromkeys(("RunData", "load_run_data", "rebuild_run_data"), "data"),
    **dict.fromkeys(("Prediction", "Run", "load_run"), "deploy"),
    **dict.fromkeys(("DEVICES", "resolve_device"), "devices"),
    **dict.fromkeys(
        (
            "EpochStats",
            "InMemoryBatches",
            "batch_sizes",
            "epoch_generator",
            "fpr_mix",
            "train_one_epoch",
        ),
        "loop",
    ),
    **dict.fromkeys(("predict_features_logits", "predict_images", "predict_logits"), "predict"),
    **dict.fromkeys(("fit",), "run"),
}


__getattr__, __dir__ = lazy_exports(__name__, globals(), _SOURCES)


__all__ = [
    "CHECKPOINT_NAME",
    "DEVICES",
    "LOG_NAME",
    "CalibrationResult",
    "Checkpoint",
    "CheckpointMeta",
    "EpochLog",
    "EpochStats",
    "InMemoryBatches",
    "ModelBundle",
    "Prediction",
    "ProgressCallback",
    "Run",
    "RunData",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "batch_sizes",
    "build_model",
    "build_training",
    "bundle_from_checkpoint",
    "calibrate_bundle",
    "calibrate_checkpoint",
    "checkpoint_path",
    "epoch_generator",
    "fit",
    "fit_temperature_noted",
    "fpr_mix",
    "load_bundle",
    "load_checkpoint",
    "load_payload",
    "load_run",
    "load_run_data",
    "lr_milestones",
    "make_optimizer",
    "make_transform",
    "predict_features_logits",
    "predict_images",
    "predict_logits",
    "read_train_log",
    "rebuild_run_data",
    "resolve_device",
    "save_checkpoint",
    "train_one_epoch",
    "training_temperature",
    "validation_thresholds",
]
