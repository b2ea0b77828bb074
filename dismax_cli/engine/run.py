"""``fit``: the CLI's run-folder training with resume, composed of the engine's pieces.

A run folder holds ``checkpoint.pt`` (written atomically after every epoch) and
``train_log.jsonl``. Every random draw of epoch ``e`` comes from a generator seeded by
``(seed, e)``, so a run interrupted anywhere and resumed ends with bit-identical weights and
checkpoint bytes on CPU. The recipe is METHOD.md §6.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

import torch

from dismax_cli.config_types import InvalidValueError
from dismax_cli.data.stream import StreamSet, default_workers
from dismax_cli.engine import distributed
from dismax_cli.engine.build import TrainingSetup, build_training
from dismax_cli.engine.checkpoint import (
    CHECKPOINT_NAME,
    LOG_NAME,
    Checkpoint,
    load_checkpoint,
    load_model_state,
    load_optimizer_state,
    read_train_log,
    write_train_log,
)
from dismax_cli.engine.config import (
    MIN_BATCH,
    EpochLog,
    ProgressCallback,
    TrainConfig,
    TrainProgress,
    TrainResult,
)
from dismax_cli.engine.data import RunData, check_same_data, load_run_data
from dismax_cli.engine.devices import resolve_device
from dismax_cli.engine.lock import run_folder_lock
from dismax_cli.engine.loop import (
    EpochStats,
    NonFiniteLossError,
    epoch_generator,
    fpr_mix,
    seeded_global_rng,
    train_one_epoch,
)
from dismax_cli.engine.selection import BEST_NAME, save_epoch
from dismax_cli.engine.streaming import epoch_batches
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q
from dismax_cli.fileio import run_there_message


@dataclasses.dataclass
class _Run:
    """A run being trained: its folder, data, setup and what is already done."""

    config: TrainConfig
    run_dir: Path
    data: RunData
    setup: TrainingSetup
    created_dir: bool
    images: torch.Tensor | None  # uint8 (N, H, W, C) on the training device; None if streamed
    labels: torch.Tensor | None  # int64 (N,) on the training device
    train_model: torch.nn.Module  # setup.model, or DistributedDataParallel around it
    start_epoch: int = 0
    history: list[EpochLog] = dataclasses.field(default_factory=list)
    selection: dict[str, Any] | None = None  # CheckpointMeta.selection (best-epoch rules)

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / CHECKPOINT_NAME

    @property
    def log(self) -> Path:
        return self.run_dir / LOG_NAME


def fit(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: ProgressCallback | None = None,
    data: RunData | None = None,
    stop_after_epoch: int | None = None,
) -> TrainResult:
    """Train one model and write its checkpoint and log into ``run_dir``.

    Args:
        config: the run's settings (validated here).
        run_dir: folder for ``checkpoint.pt`` and ``train_log.jsonl``.
        resume: continue the run in ``run_dir`` (a finished run returns at once).
        progress: called with a :class:`TrainProgress` every few batches.
        data: pre-loaded splits (the benchmark shares them between methods).
        stop_after_epoch: stop (as if interrupted) once this many epochs are done.

    Raises:
        DismaxError: for invalid settings (``batch_size`` < 2 included), a training split of
            fewer than 2 images, an existing run without ``resume``, a run folder another process
            is training into (``engine.lock``), a run folder whose checkpoint belongs to other
            settings, or a non-finite loss (the last good checkpoint is kept).

    Batches follow :func:`~dismax_cli.engine.loop.batch_sizes` (a one-image remainder joins the
    previous batch) and the learning rate :meth:`TrainConfig.lr_at` (METHOD.md §6).

    Under torchrun (:mod:`~dismax_cli.engine.distributed`) every rank calls this: the model
    trains as DistributedDataParallel on disjoint shards of each global batch of
    ``batch_size`` (it must split evenly over the ranks: ``InvalidValueError`` otherwise), only
    rank 0 takes the lock and writes the folder, and the others report no progress.
    """
    config = config.validate()
    run_dir = Path(run_dir)
    device = distributed.init_process_group(resolve_device(config.device))
    distributed.check_batch_size(config.batch_size, distributed.world_size())
    progress = progress if distributed.is_main() else None
    lock = run_folder_lock(run_dir) if distributed.is_main() else contextlib.nullcontext()
    # One process per run folder: a second one fails here instead of mixing its epochs in.
    with lock:
        saved = _existing_run(config, run_dir, resume)
        distributed.barrier()  # every rank has looked before rank 0 creates the folder
        if saved is not None and saved.meta.finished:
            log = read_train_log(run_dir / LOG_NAME)
            return TrainResult(run_dir, run_dir / CHECKPOINT_NAME, 0, 0.0, log, True)
        data = data if data is not None else load_run_data(config)
        run = _prepare(config, run_dir, data, saved, device)
        last = config.epochs if stop_after_epoch is None else min(config.epochs, stop_after_epoch)
        epochs_run = 0
        for epoch in range(run.start_epoch, last):
            run.history.append(_train_epoch(run, epoch, progress))
            epochs_run += 1
    total_seconds = sum(h.seconds for h in run.history)
    return TrainResult(run_dir, run.checkpoint, epochs_run, total_seconds, run.history)


def _existing_run(config: TrainConfig, run_dir: Path, resume: bool) -> Checkpoint | None:
    """The run folder's checkpoint when resuming it (checked to be this run's), else None."""
    ckpt_file = run_dir / CHECKPOINT_NAME
    if not (ckpt_file.exists() or (run_dir.is_dir() and any(run_dir.iterdir()))):
        return None
    if not resume and not ckpt_file.exists():  # say what is there: files, but no run
        raise InvalidValueError(  # a refused --out, before any work: exit 2
            "out",
            f"folder {q(run_dir)} is not empty and holds no run ({CHECKPOINT_NAME}): choose "
            "another --out, a new or empty folder (a folder that a run stopped in before its "
            f"first checkpoint, holding only {LOG_NAME}, trains from the start with --resume)"
        )
    if not resume:
        raise InvalidValueError("out", run_there_message(run_dir))
    if not ckpt_file.exists():
        return None
    saved = load_checkpoint(ckpt_file)
    _check_same_run(saved.meta.config, config, ckpt_file)
    return saved


def _prepare(
    config: TrainConfig, run_dir: Path, data: RunData, saved: Checkpoint | None,
    device: torch.device,
) -> _Run:  # fmt: skip
    """Build the model, create the folder and load the saved state (if resuming)."""
    if len(data.train) < MIN_BATCH:
        raise DismaxError(
            f"the training split of {q(config.dataset)} holds {len(data.train)} image(s) after "
            f"the validation carve: training needs at least {MIN_BATCH} (BatchNorm cannot train "
            "on one image); use a larger dataset"
        )
    if isinstance(data.train, StreamSet):
        default_workers()  # a bad $DISMAX_WORKERS fails before the run folder appears
    setup = build_training(config, data.train, device)
    main = distributed.is_main()
    # Only now, with data and model ready, does the run folder appear (rank 0 writes it).
    created_dir = not run_dir.exists()
    try:
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DismaxError(f"cannot create run folder {q(run_dir)}: {exc.strerror}") from None
    images = labels = None
    if not isinstance(data.train, StreamSet):  # a streamed set stays on disk (README)
        images, labels = data.train.images.to(setup.device), data.train.labels.to(setup.device)  # type: ignore[union-attr]
    run = _Run(config, run_dir, data, setup, created_dir, images, labels, setup.model)
    if saved is not None:
        check_same_data(saved.meta.data_sha256, data, q(run.checkpoint))
        load_model_state(setup.model, saved, path=run.checkpoint)
        load_optimizer_state(setup.optimizer, saved, path=run.checkpoint)
        run.start_epoch = saved.meta.epoch
        run.selection = saved.meta.selection
        run.history = [h for h in read_train_log(run.log) if h.epoch <= run.start_epoch]
        if main:
            write_train_log(run.log, run.history)
    elif run.log.exists() and main:
        run.log.unlink()
    run.train_model = distributed.wrap_model(setup.model, setup.device, sync_bn=config.sync_bn)
    return run


def _train_epoch(run: _Run, epoch: int, progress: ProgressCallback | None) -> EpochLog:
    """Train (0-based) ``epoch``, then log it and write the checkpoint."""
    config, setup, train = run.config, run.setup, run.data.train
    lr = config.lr_at(epoch)
    for group in setup.optimizer.param_groups:
        group["lr"] = lr
    generator = epoch_generator(config.seed, epoch)
    rank, world = distributed.rank(), distributed.world_size()
    batches = epoch_batches(
        train, run.images, run.labels, batch_size=config.batch_size, transform=setup.transform,
        generator=generator, augment=train.augment if config.augment is None else config.augment,
        recipe=setup.recipe, device=setup.device, rank=rank, world_size=world,
    )  # fmt: skip
    # FPR mosaics of this rank's shard, from this rank's stream (METHOD.md §2).
    draws = distributed.rank_generator(generator, rank)
    mix = fpr_mix(train.num_classes, generator=draws) if config.uses_fpr else None

    def report(stats: EpochStats, done: bool = False) -> None:
        if progress is not None:
            progress(_progress(config, epoch, len(batches), stats, done))

    try:
        with seeded_global_rng(config.seed, epoch, rank, setup.device):  # dropout's draws
            stats = train_one_epoch(
                run.train_model, setup.loss_fn, batches, setup.optimizer, mix=mix,
                device=setup.device, on_batch=report if progress is not None else None,
                loss_weights=batches.loss_weights if world > 1 else None,
                all_finite=distributed.all_finite if world > 1 else None,
            )  # fmt: skip
    except NonFiniteLossError:
        raise _non_finite_error(run, epoch) from None
    stats = distributed.global_epoch_stats(stats)
    entry = EpochLog(
        epoch=epoch + 1, loss=stats.loss, accuracy=stats.accuracy, lr=lr, seconds=stats.seconds,
        images_per_s=stats.images_per_s,
    )  # fmt: skip
    try:
        run.selection = save_epoch(
            config, run.data, setup, epoch=epoch, entry=entry, selection=run.selection,
            run_dir=run.run_dir, log=run.log, checkpoint=run.checkpoint,
        )  # fmt: skip
    except DismaxError:  # e.g. a full disk: what a run that never saved wrote goes again
        if not run.checkpoint.exists():
            _remove_unsaved_run(run)
        raise
    distributed.barrier()  # no rank reads the checkpoint before rank 0 has written it
    report(stats, done=True)
    return entry


def _progress(
    config: TrainConfig, epoch: int, batches: int, stats: EpochStats, done: bool
) -> TrainProgress:
    return TrainProgress(
        epoch=epoch + 1, epochs=config.epochs, batch=batches if done else stats.batches,
        batches=batches, loss=stats.loss, accuracy=stats.accuracy,
        images_per_s=stats.images_per_s, epoch_done=done,
    )  # fmt: skip


def _non_finite_error(run: _Run, epoch: int) -> DismaxError:
    if run.checkpoint.exists():
        kept = f"{q(run.checkpoint)} keeps the last good epoch ({epoch})"
    else:
        kept = "no epoch finished, so no checkpoint was written"
        _remove_unsaved_run(run)
    return DismaxError(
        f"the training loss became non-finite in epoch {epoch + 1}: the run stopped and "
        f"{kept}; lower --lr and train again"
    )


def _remove_unsaved_run(run: _Run) -> None:
    """No checkpoint saved: drop its log and kept epoch, and the folder if this run made it."""
    if distributed.is_main():
        for name in (run.log, run.run_dir / BEST_NAME):
            name.unlink(missing_ok=True)
        if run.created_dir:
            with contextlib.suppress(OSError):
                run.run_dir.rmdir()


def _check_same_run(saved_config: TrainConfig, config: TrainConfig, path: Path) -> None:
    saved = saved_config.identity()
    wanted = config.identity()
    diff = [k for k in wanted if saved.get(k) != wanted[k]]
    if diff:
        shown = ", ".join(f"{k}={q(saved.get(k))} (asked {q(wanted[k])})" for k in diff)
        raise DismaxError(
            f"{q(path)} belongs to another run: {shown}; resume with the same settings or "
            "choose another --out"
        )


__all__ = ["fit"]
