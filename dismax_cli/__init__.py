"""dismax: the DisMax loss (Macêdo et al., 2022, arXiv:2205.05874) and its benchmark.

The public library API is re-exported here (``__all__`` is the list): the heads, losses and FPR
mixing (METHOD.md §1–§2), every OOD score (§3), every metric (§5), temperature fitting (§4),
``replace_head``, the engine that trains, predicts and calibrates any ``nn.Module``, and
``load_run`` (a CLI-trained run as a :class:`Run`: ``predict``, ``threshold``). Names are
resolved lazily (PEP 562), so ``import dismax_cli`` does not import torch until one is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from dismax_cli.errors import DismaxError  # noqa: E402

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("SoftMaxHead", "IsoMaxPlusHead", "DisMaxHead"), "dismax_cli.core.heads"),
    **dict.fromkeys(("SoftMaxLoss", "IsoMaxPlusLoss", "DisMaxLoss"), "dismax_cli.core.losses"),
    **dict.fromkeys(("FractionalMix", "fractional_probability_mix"), "dismax_cli.core.mixing"),
    **dict.fromkeys(
        ("msp", "max_logit", "mds", "neg_entropy", "energy", "mmles"), "dismax_cli.core.scores"
    ),
    **dict.fromkeys(
        (
            "accuracy",
            "nll",
            "ece",
            "auroc",
            "aupr_in",
            "aupr_out",
            "fpr_at_95_tpr",
            "detection_accuracy",
            "tpr_threshold",
        ),
        "dismax_cli.core.metrics",
    ),
    **dict.fromkeys(("fit_temperature", "calibrated_probs"), "dismax_cli.core.calibration"),
    **dict.fromkeys(
        ("MethodSpec", "register_method", "unregister_method", "get_method", "list_methods"),
        "dismax_cli.core.methods",
    ),
    "replace_head": "dismax_cli.adapters",
    **dict.fromkeys(
        ("train_one_epoch", "fpr_mix", "EpochStats", "InMemoryBatches", "epoch_generator"),
        "dismax_cli.engine.loop",
    ),
    **dict.fromkeys(
        ("predict_logits", "predict_features_logits", "predict_images"),
        "dismax_cli.engine.predict",
    ),
    **dict.fromkeys(
        ("calibrate_bundle", "calibrate_checkpoint", "CalibrationResult"),
        "dismax_cli.engine.calibrate",
    ),
    **dict.fromkeys(
        ("Checkpoint", "CheckpointMeta", "ModelBundle", "load_bundle", "load_checkpoint"),
        "dismax_cli.engine.checkpoint",
    ),
    "TrainConfig": "dismax_cli.engine.config",
    "build_model": "dismax_cli.engine.build",
    "resolve_device": "dismax_cli.engine.devices",
    "fit": "dismax_cli.engine.run",
    **dict.fromkeys(("Prediction", "Run", "load_run"), "dismax_cli.engine.deploy"),
}

__all__ = [
    "DismaxError",
    "__version__",
    "CalibrationResult",
    "Checkpoint",
    "CheckpointMeta",
    "DisMaxHead",
    "DisMaxLoss",
    "EpochStats",
    "FractionalMix",
    "InMemoryBatches",
    "IsoMaxPlusHead",
    "IsoMaxPlusLoss",
    "MethodSpec",
    "ModelBundle",
    "Prediction",
    "Run",
    "SoftMaxHead",
    "SoftMaxLoss",
    "TrainConfig",
    "accuracy",
    "aupr_in",
    "aupr_out",
    "auroc",
    "build_model",
    "calibrate_bundle",
    "calibrate_checkpoint",
    "calibrated_probs",
    "detection_accuracy",
    "ece",
    "energy",
    "epoch_generator",
    "fit",
    "fit_temperature",
    "fpr_at_95_tpr",
    "fpr_mix",
    "fractional_probability_mix",
    "get_method",
    "list_methods",
    "load_bundle",
    "load_checkpoint",
    "load_run",
    "max_logit",
    "mds",
    "mmles",
    "msp",
    "neg_entropy",
    "nll",
    "predict_features_logits",
    "predict_images",
    "predict_logits",
    "register_method",
    "replace_head",
    "resolve_device",
    "tpr_threshold",
    "train_one_epoch",
    "unregister_method",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (keeps ``import dismax_cli`` torch-free)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dismax_cli' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
