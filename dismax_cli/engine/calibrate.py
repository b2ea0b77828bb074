"""Calibration: fit the temperature on a run's validation split and store it with the run.

The temperature lives in the run's metadata (:attr:`CheckpointMeta.temperature`), never in the
model: heads return raw logits, scores use them at T = 1 and probabilities are
``softmax(logits / T)`` (METHOD.md §3, §4).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dismax_cli.config import InvalidValueError
from dismax_cli.core.calibration import (
    TemperatureAtBoundWarning,
    calibrated_probs,
    fit_temperature,
    nll_from_logits,
)
from dismax_cli.core.methods import get_method
from dismax_cli.core.metric_table import CALIBRATION_OBJECTIVES
from dismax_cli.core.metrics import accuracy, ece
from dismax_cli.core.scores import SCORES
from dismax_cli.data import ImageSet, check_disjoint
from dismax_cli.engine import distributed
from dismax_cli.engine.checkpoint import (
    CheckpointMeta,
    ModelBundle,
    bundle_from_checkpoint,
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
)
from dismax_cli.engine.data import rebuild_run_data
from dismax_cli.engine.predict import predict_images
from dismax_cli.errors import DismaxError, quote_path, shell_command
from dismax_cli.errors import quote_value as q
from dismax_cli.protocol import DEFAULT_OPTIMIZER, check_optimizer, check_protocol


@dataclass(frozen=True)
class CalibrationResult:
    """Temperature and validation metrics before/after (METHOD.md §4)."""

    temperature: float
    objective: str
    n_val: int
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    accuracy: float
    warning: str | None = None  # set when the optimum sits at a bound (METHOD.md §4)
    optimizer: str = "grid"  # grid (default) or lbfgsb (the reference's), METHOD.md §4
    split: str = "val"  # what T was fitted on: the validation split, or "test" (paper protocol)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def training_temperature(method: str, entropic_scale: float) -> float:
    """The temperature a model was trained at: 1 for SoftMax, 1/E for IsoMax+ and DisMax.

    The methods registry says which (:attr:`MethodSpec.training_temperature`). IsoMax+ and
    DisMax are trained on softmax(E · z) (METHOD.md §2), so T = 1/E reproduces the
    training-time probabilities; METHOD.md §4 expects fitted temperatures of that order.

    Raises:
        DismaxError: for an unknown method.
    """
    return float(get_method(method).training_temperature(entropic_scale))


def calibrate_bundle(
    bundle: ModelBundle,
    val: ImageSet,
    *,
    objective: str = "ece",
    optimizer: str = "grid",
    split: str = "val",
) -> CalibrationResult:
    """Fit the temperature on ``val`` and record it in ``bundle.meta`` (the model is untouched).

    ``optimizer`` is ``grid`` or ``lbfgsb`` (METHOD.md §4); ``split`` names what ``val`` is:
    ``"val"``, or ``"test"`` under the paper protocol (then ``val`` is the ID test split).

    Also records every OOD score of ``val`` at T = 1 (:func:`validation_thresholds`), from which
    ``Run.threshold(score, tpr=...)`` reads the score threshold at a validation TPR.

    When the objective has no finite optimum on ``val`` (every prediction correct, or every one
    wrong), the fitted value would be a bound of the search (T = 0.001 makes every later error
    cost ~1,000 nats); the run then keeps its training temperature
    (:func:`training_temperature`) and ``warning`` says so.

    Raises:
        DismaxError: for an unlabelled validation set or an unknown objective.
    """
    if val.labels is None or len(val) == 0:
        raise DismaxError("calibration needs a labelled, non-empty validation split")
    logits = predict_images(bundle, val.images)
    config = bundle.meta.config
    temperature, warning = fit_temperature_noted(
        logits,
        val.labels,
        objective=objective,
        fallback=training_temperature(config.method, config.entropic_scale),
        optimizer=optimizer,
        split=split,
    )
    result = dataclasses.replace(
        _result(logits, val.labels, temperature, objective, warning),
        optimizer=optimizer,
        split=split,
    )
    bundle.meta = dataclasses.replace(
        bundle.meta,
        temperature=result.temperature,
        calibration=result.to_dict(),
        thresholds=validation_thresholds(logits),
    )
    return result


def validation_thresholds(logits: torch.Tensor) -> dict[str, list[float]]:
    """Every OOD score of the validation logits at T = 1, each sorted from the highest.

    Entry ``k - 1`` of a score's list is its k-th largest validation score: the threshold at
    validation TPR ``k / n`` under FPR@95TPR's rule (METHOD.md §3, §5;
    :func:`~dismax_cli.core.metrics.tpr_threshold`).

    Shape:
        logits: ``(N, C)`` raw logits; each list has N floats.
    """
    return {
        name: sorted(score(logits).tolist(), reverse=True)
        for name, score in SCORES.items()
    }


def _result(
    logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    objective: str,
    warning: str | None,
) -> CalibrationResult:
    before = calibrated_probs(logits, 1.0)
    after = calibrated_probs(logits, temperature)
    return CalibrationResult(
        temperature=float(temperature),
        objective=objective,
        n_val=len(targets),
        ece_before=ece(before, targets),
        ece_after=ece(after, targets),
        # From logits (log domain): probabilities clamp an underflowed target at ~708 nats.
        nll_before=nll_from_logits(logits, targets),
        nll_after=nll_from_logits(logits, targets, temperature=temperature),
        accuracy=accuracy(after, targets),
        warning=warning,
    )


def fit_temperature_noted(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    objective: str = "ece",
    fallback: float,
    optimizer: str = "grid",
    split: str = "val",
) -> tuple[float, str | None]:
    """:func:`fit_temperature`, with a note when the optimum is a search bound.

    At the lower bound (the objective keeps improving as T -> 0, as when every prediction is
    correct) ``fallback`` (the training temperature) is kept instead: T = 0.001 would make every
    later mistake cost about a thousand nats. At the upper bound (it keeps improving as T
    grows: a model no better than its probabilities spread evenly) the bound is kept, as
    METHOD.md §4 specifies; the training temperature would make those probabilities sharper.
    ``optimizer`` is :func:`fit_temperature`'s; ``split`` (``val`` or ``test``) names the split
    in the note.

    Returns:
        ``(temperature, note)``; ``note`` is None when the fit found a finite optimum.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TemperatureAtBoundWarning)
        temperature = fit_temperature(logits, targets, objective=objective, optimizer=optimizer)
    if not any(issubclass(w.category, TemperatureAtBoundWarning) for w in caught):
        return float(temperature), None
    predictions_right = int((logits.argmax(1) == targets).sum())
    what = "test" if split == "test" else "validation"
    reason = (
        f"every {what} prediction is correct"
        if predictions_right == len(targets)
        else f"every {what} prediction is wrong"
        if predictions_right == 0
        else "the objective keeps improving towards the search bound"
    )
    found = (
        f"the {objective.upper()} fit has no finite optimum on the {len(targets):,}-image "
        f"{what} split ({reason}; it ran to T = {temperature:g})"
    )
    if temperature > 1.0:  # the upper bound: near-uniform probabilities
        return float(temperature), f"{found}, so that bound is kept (probabilities near uniform)"
    return float(fallback), f"{found}, so the training temperature T = {fallback:g} is kept"



def _check_calibratable(file: Path, meta: CheckpointMeta, protocol: str) -> None:
    """Refuse an unfinished run, and ``honest`` on a run trained under the paper protocol."""
    if not meta.finished:
        raise DismaxError(
            f"{quote_path(file)} is an unfinished run (epoch {meta.epoch} of {meta.epochs}): "
            f"finish it with `{shell_command('train', '--out', file.parent, '--resume')}` before "
            "calibrating"
        )
    if protocol == "honest" and meta.config.protocol == "paper":
        raise InvalidValueError(
            "protocol",
            f"{quote_path(file)} was trained under --protocol paper on every training image, so "
            "it has no validation split to calibrate on: drop --protocol honest (it then "
            "calibrates on the test split, as trained) or train an honest run",
        )


def calibrate_checkpoint(
    path: str | Path,
    *,
    objective: str = "ece",
    data_dir: str | None = None,
    protocol: str | None = None,
    optimizer: str | None = None,
) -> CalibrationResult:
    """Fit the temperature on the run's validation split and store it in the checkpoint atomically.

    Only the metadata changes (``temperature`` and ``calibration``); the weights stay as trained.
    ``protocol`` None follows the run's own; ``paper`` fits T on the ID test split (METHOD.md §4
    [parity]; the reports then say the test set was seen). ``optimizer`` None is the protocol's
    (grid for honest, lbfgsb for paper).

    Raises:
        DismaxError: for unreadable checkpoints, changed data or a bad objective;
            InvalidValueError for a bad protocol or optimizer, or ``honest`` on a run trained
            under the paper protocol (it has no validation split).
    """
    if objective not in CALIBRATION_OBJECTIVES:
        raise DismaxError(
            f"objective {q(objective)} is invalid: choose {' or '.join(CALIBRATION_OBJECTIVES)}"
        )
    check_optimizer(optimizer)
    if protocol is not None:
        check_protocol(protocol)
    file = checkpoint_path(path)
    checkpoint = load_checkpoint(file)
    meta = checkpoint.meta
    protocol = protocol or meta.config.protocol
    _check_calibratable(file, meta, protocol)
    bundle = bundle_from_checkpoint(checkpoint, path=file)
    data = rebuild_run_data(meta, data_dir=data_dir)
    if protocol == "paper":
        calibration_set, split = data.test, "test"
    else:
        check_disjoint(data.val, data.test)
        calibration_set, split = data.val, "val"
    result = calibrate_bundle(
        bundle,
        calibration_set,
        objective=objective,
        optimizer=optimizer or DEFAULT_OPTIMIZER[protocol],
        split=split,
    )
    if distributed.is_main():  # under torchrun rank 0 writes; the others wait for the file
        save_checkpoint(file, dataclasses.replace(checkpoint, meta=bundle.meta))
    distributed.barrier()
    return result


__all__ = [
    "CalibrationResult",
    "calibrate_bundle",
    "calibrate_checkpoint",
    "fit_temperature_noted",
    "training_temperature",
    "validation_thresholds",
]
