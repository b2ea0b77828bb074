"""Rich progress bars on stderr for training (loss, accuracy, images/s)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from dismax_cli.cli.common import err_console
from dismax_cli.training import ProgressCallback, TrainProgress


class TrainingBars:
    """One bar per training run, advanced batch by batch."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def callback(self, label: str) -> ProgressCallback:
        task: TaskID | None = None

        def update(p: TrainProgress) -> None:
            nonlocal task
            total = p.epochs * p.batches
            done = (p.epoch - 1) * p.batches + p.batch
            stats = (
                f"epoch {p.epoch}/{p.epochs}  loss {p.loss:.4f}  acc {p.accuracy * 100:5.1f}%  "
                f"{p.images_per_s:,.0f} img/s"
            )
            if task is None:
                task = self.progress.add_task(label, total=total, stats=stats)
            self.progress.update(task, completed=done, total=total, stats=stats)

        return update


@contextmanager
def training_bars(enabled: bool = True) -> Iterator[TrainingBars]:
    """A live progress display on stderr (disabled: a no-op display)."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        console=err_console,
        disable=not enabled,
        transient=False,
    )
    with progress:
        yield TrainingBars(progress)
