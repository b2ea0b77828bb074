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
from dismax_cli.engine.config import ProgressCallback, TrainProgress


class TrainingBars:
    """One bar per training run, advanced batch by batch.

    When stderr is not a terminal (CI logs, pipes) there are no bars; each run prints one line
    when it finishes instead.
    """

    def __init__(self, progress: Progress, *, live: bool) -> None:
        self.progress = progress
        self.live = live

    def callback(self, label: str) -> ProgressCallback:
        task: TaskID | None = None

        def update(p: TrainProgress) -> None:
            nonlocal task
            if not self.live:
                if p.epoch_done and p.epoch == p.epochs:
                    err_console.print(
                        f"trained {label}: {p.epochs} epochs, loss {p.loss:.4f}, train accuracy "
                        f"{p.accuracy * 100:.1f}%, {p.images_per_s:,.0f} img/s in the last epoch",
                        highlight=False,
                        soft_wrap=True,
                    )
                return
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
def training_bars() -> Iterator[TrainingBars]:
    """A live progress display on stderr when it is a terminal, one line per run otherwise."""
    live = err_console.is_terminal
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        console=err_console,
        disable=not live,
        transient=False,
    )
    with progress:
        yield TrainingBars(progress, live=live)
