"""Model selection while training: keep the epoch with the best validation (or test) accuracy.

METHOD.md §6: the reference keeps the epoch with the best *test* accuracy (``--protocol paper``);
``--select best-val`` is its honest counterpart on the validation split. After every epoch the
model's top-1 accuracy on the selection split is measured (eval mode, T = 1: a temperature does
not change predictions); an epoch strictly better than every earlier one writes its weights to
``best.pt`` in the run folder, and the finished run's ``checkpoint.pt`` holds the kept epoch's
weights. Ties keep the earlier epoch. The record of what was kept is
:attr:`CheckpointMeta.selection`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from dismax_cli.data import ImageSet
from dismax_cli.data.transforms import ImageTransform
from dismax_cli.engine.checkpoint import save_torch_file
from dismax_cli.engine.predict import image_batches, predict_logits
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q

if TYPE_CHECKING:
    from dismax_cli.engine.build import TrainingSetup
    from dismax_cli.engine.config import EpochLog, TrainConfig
    from dismax_cli.engine.data import RunData

BEST_NAME = "best.pt"


def selection_set(rule: str, *, val: ImageSet, test: ImageSet) -> ImageSet | None:
    """The split ``rule`` measures accuracy on: val (``best-val``), test (``best-test``), None.

    Under the paper protocol ``val`` is the test split already (:class:`RunData`).
    """
    if rule == "best-val":
        return val
    if rule == "best-test":
        return test
    return None


def split_accuracy(
    model: nn.Module, transform: ImageTransform, images: ImageSet, *, device: torch.device
) -> float:
    """Top-1 accuracy of ``model`` on a labelled image set, in eval mode (mode restored).

    Shape:
        ``images.images``: uint8 (N, H, W, C); ``images.labels``: int64 (N,).

    Raises:
        DismaxError: for an unlabelled or empty set.
    """
    if images.labels is None or len(images) == 0:
        raise DismaxError(
            f"model selection needs a labelled, non-empty split; {q(images.spec)} is not"
        )
    batches = image_batches(images.images, transform, batch_size=256, device=device)
    logits = predict_logits(model, batches, device=device)
    return float((logits.argmax(1) == images.labels).double().mean())


def update_selection(
    record: dict[str, Any] | None,
    *,
    rule: str,
    epoch: int,
    accuracy: float,
    state: dict[str, torch.Tensor],
    run_dir: Path,
) -> dict[str, Any]:
    """Add ``epoch``'s accuracy to the record; write ``best.pt`` when it beats every earlier one.

    Args:
        record: the record so far (None before the first epoch).
        rule: ``best-val`` or ``best-test``.
        epoch: the 1-based epoch just trained.
        accuracy: its accuracy on the selection split, in [0, 1].
        state: its CPU weights.
        run_dir: the run folder.

    Returns:
        The new record: ``rule``, ``split``, ``epoch`` (kept), ``accuracy`` (kept) and
        ``accuracies`` (every epoch's, in order).
    """
    accuracies = [*([] if record is None else record["accuracies"][: epoch - 1]), accuracy]
    best_so_far = None if record is None or record["epoch"] >= epoch else record
    if best_so_far is not None and accuracy <= best_so_far["accuracy"]:
        return {**best_so_far, "accuracies": accuracies}
    payload = {"epoch": epoch, "state_dict": state}
    save_torch_file(run_dir / BEST_NAME, payload)
    return {
        "rule": rule,
        "split": "val" if rule == "best-val" else "test",
        "epoch": epoch,
        "accuracy": accuracy,
        "accuracies": accuracies,
    }


def kept_state(record: dict[str, Any], run_dir: Path) -> dict[str, torch.Tensor]:
    """The weights of the kept epoch, read from ``best.pt``.

    Raises:
        DismaxError: when ``best.pt`` is missing or holds another epoch.
    """
    path = run_dir / BEST_NAME
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise DismaxError(
            f"cannot read {q(path)} ({exc}): the best epoch's weights are lost; train the "
            "run again into a new --out"
        ) from None
    if not isinstance(payload, dict) or payload.get("epoch") != record["epoch"]:
        raise DismaxError(
            f"{q(path)} does not hold epoch {record['epoch']}, the epoch the run keeps: "
            "train the run again into a new --out"
        )
    return dict(payload["state_dict"])


__all__ = ["BEST_NAME", "kept_state", "selection_set", "split_accuracy", "update_selection"]


def save_epoch(
    config: TrainConfig,
    data: RunData,
    setup: TrainingSetup,
    *,
    epoch: int,
    entry: EpochLog,
    selection: dict[str, Any] | None,
    run_dir: Path,
    log: Path,
    checkpoint: Path,
) -> dict[str, Any] | None:
    """After (0-based) ``epoch``: log it, update the kept-epoch record, write the checkpoint.

    Log first, checkpoint second: a resume drops log lines past the checkpoint's epoch; the
    checkpoint holds no timings, so identical training gives identical files. Under torchrun
    every rank measures the selection split (its prediction is sharded) and rank 0 writes.
    Returns the (updated) selection record (METHOD.md §6); the finished checkpoint holds the
    kept epoch's weights.
    """
    from dismax_cli.engine import distributed
    from dismax_cli.engine.checkpoint import (
        Checkpoint,
        CheckpointMeta,
        append_train_log,
        save_checkpoint,
    )
    from dismax_cli.engine.loop import cpu_state

    weights = cpu_state(setup.model)
    selected = selection_set(config.selection, val=data.val, test=data.test)
    accuracy = None
    if selected is not None:
        accuracy = split_accuracy(setup.model, setup.transform, selected, device=setup.device)
    if not distributed.is_main():
        return selection
    append_train_log(log, entry)
    meta = CheckpointMeta.for_run(config, data, setup.transform, epoch + 1)
    if selected is not None:  # keep the best epoch on the selection split
        selection = update_selection(
            selection, rule=config.selection, epoch=epoch + 1, accuracy=accuracy,
            state=weights, run_dir=run_dir,
        )  # fmt: skip
        meta = dataclasses.replace(meta, selection=selection)
        if meta.finished:
            weights = kept_state(selection, run_dir)
    save_checkpoint(checkpoint, Checkpoint(meta, weights, setup.optimizer.state_dict()))
    return selection
