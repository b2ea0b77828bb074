"""The splits of a run (train after the validation carve, validation, test) and their hashes.

METHOD.md §4 (the validation split used for calibration) and §6 (the training split).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dismax_cli.data import ImageSet, SplitRecord, check_disjoint, load_id_splits, train_val_split
from dismax_cli.data.imageset import indices_sha256
from dismax_cli.data.stream import StreamSet, streaming
from dismax_cli.engine.config import TrainConfig
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q

if TYPE_CHECKING:
    from dismax_cli.engine.checkpoint import CheckpointMeta


@dataclass
class RunData:
    """The splits of a run: train (after the validation carve), validation and test.

    Under the paper protocol (``TrainConfig.protocol == "paper"``) ``train`` is the whole training
    split and ``val`` *is* the test split (the reference calibrates and selects on it);
    ``calibration_split`` says which one ``val`` is: ``"val"`` or ``"test"``.
    """

    train: ImageSet | StreamSet
    val: ImageSet | StreamSet
    test: ImageSet | StreamSet
    split: SplitRecord
    calibration_split: str = "val"


def load_run_data(config: TrainConfig) -> RunData:
    """Load the ID splits of a run and carve the validation split (METHOD.md §4, §6).

    Raises:
        DismaxError: for datasets that cannot be loaded, unlabelled ID sets, or overlapping splits.
    """
    with streaming(config.stream):  # a --stream of score/calibrate overrides (stream_override)
        train_full, test = load_id_splits(
            config.dataset, test_spec=config.test_dataset, data_dir=config.data_dir
        )
    if train_full.labels is None or train_full.num_classes < 2:
        raise DismaxError(
            f"dataset {q(config.dataset)} has no labels or fewer than 2 classes: the "
            "in-distribution set must be labelled"
        )
    if config.protocol == "paper":
        # METHOD.md §4, §6 [parity]: every training image trains; the test split calibrates.
        check_disjoint(train_full, test)
        empty = indices_sha256(np.zeros(0, dtype=np.int64))
        record = SplitRecord(config.split_seed, 0.0, len(train_full), 0, empty)
        return RunData(train_full, test, test, record, calibration_split="test")
    train, val, split = train_val_split(
        train_full, val_fraction=config.val_fraction, seed=config.split_seed
    )
    check_disjoint(train, test)
    check_disjoint(val, test)
    return RunData(train=train, val=val, test=test, split=split)


def data_hashes(data: RunData) -> dict[str, str]:
    """sha256 of the pixels of each split (stored in checkpoints to detect changed data)."""
    return {
        "train": data.train.pixels_sha256(),
        "val": data.val.pixels_sha256(),
        "test": data.test.pixels_sha256(),
    }


def check_same_data(saved: dict[str, str] | None, data: RunData, what: str) -> None:
    """Raise when ``data``'s pixels differ from the hashes ``saved`` for ``what`` (no-op if None).

    Raises:
        DismaxError: naming the splits whose images changed.
    """
    if not saved:
        return
    changed = [k for k, v in data_hashes(data).items() if saved.get(k) != v]
    if changed:
        raise DismaxError(
            f"the {', '.join(changed)} images differ from those {what} was trained on "
            "(the dataset files changed): point --data-dir or the dataset spec at the original "
            "data, or start a new run with another --out"
        )


def rebuild_run_data(meta: CheckpointMeta, *, data_dir: str | None = None) -> RunData:
    """Reload a checkpoint's splits and check they are the ones it was trained on.

    Raises:
        DismaxError: when the dataset changed (the validation indices' hash differs) or the
            classes differ from the checkpoint's.
    """
    saved = meta.config.to_dict()
    if data_dir is not None:
        saved["data_dir"] = data_dir
    config = TrainConfig.from_dict(saved)
    data = load_run_data(config)
    if list(data.train.classes) != list(meta.classes):
        raise DismaxError(
            f"dataset {q(config.dataset)} now has classes {q(list(data.train.classes)[:5])}..., "
            f"but the checkpoint was trained on {q(list(meta.classes)[:5])}...: point --data-dir "
            "at the data it was trained on"
        )
    check_same_data(meta.data_sha256, data, "the checkpoint")
    if data.split.val_indices_sha256 != meta.split["val_indices_sha256"]:
        raise DismaxError(
            f"the validation split of {q(config.dataset)} differs from the one the checkpoint "
            "recorded (the dataset changed): calibrate with the data it was trained on"
        )
    return data


__all__ = ["RunData", "check_same_data", "data_hashes", "load_run_data", "rebuild_run_data"]
