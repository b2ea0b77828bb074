"""Progress on stderr: live rich bars on a terminal, one plain line per epoch or step otherwise.

Plain mode (stderr not a terminal, ``NO_COLOR`` set or ``TERM=dumb``; see
:func:`dismax_cli.cli.common.plain_output`) writes no escape codes at all: a CI log gets one line
per training epoch (epoch/total, loss, accuracy, images/s, elapsed, ETA) and one per benchmark,
score or calibration step. ``--quiet`` shows nothing. Every piece of text is shown verbatim, never
parsed as rich markup (paths and specs such as ``x[/b]`` are user text).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from dismax_cli.cli.common import plain_output, stderr_console
from dismax_cli.errors import shell_command

if TYPE_CHECKING:
    from dismax_cli.engine.config import ProgressCallback, TrainProgress


def clock(seconds: float) -> str:
    """``h:mm:ss`` for a duration in seconds (negative or non-finite values show ``-:--:--``)."""
    if not seconds >= 0 or seconds == float("inf"):
        return "-:--:--"
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def epoch_line(label: str, p: TrainProgress, *, elapsed_s: float, eta_s: float | None) -> str:
    """The plain line printed when an epoch ends (no markup, no escape codes)."""
    eta = "" if eta_s is None else f"  ETA {clock(eta_s)}"
    return (
        f"{label}: epoch {p.epoch}/{p.epochs}  loss {p.loss:.4f}  acc {p.accuracy * 100:.1f}%  "
        f"{p.images_per_s:,.0f} img/s  elapsed {clock(elapsed_s)}{eta}"
    )


class ProgressDisplay:
    """What a command shows while it works; use as a context manager around the work.

    Args:
        quiet: show nothing (``--quiet``).
        total_steps: the number of :meth:`step` calls expected; lines then count ``k/N``.
    """

    def __init__(self, *, quiet: bool = False, total_steps: int | None = None) -> None:
        self.console = stderr_console()
        self.quiet = quiet
        self.live = not quiet and not plain_output()
        self.total_steps = total_steps
        self.steps_done = 0
        self.started = time.monotonic()
        self.training: str | None = None  # label of the run being trained, for Ctrl-C messages
        self._status: TaskID | None = None
        self.progress = Progress(
            SpinnerColumn(finished_text=" "),
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            TextColumn("{task.fields[stats]}", markup=False),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.live,
            transient=False,
        )

    def __enter__(self) -> ProgressDisplay:
        self.started = time.monotonic()
        if self.live:
            self.progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._clear_status()
        if self.live:
            self.progress.stop()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _print(self, text: str) -> None:
        self.console.print(Text(text), soft_wrap=True)

    def _clear_status(self) -> None:
        if self._status is not None:
            self.progress.remove_task(self._status)
            self._status = None

    def status(self, text: str) -> None:
        """Show what is being done now (live display only; plain logs get :meth:`step` lines)."""
        if not self.live:
            return
        self._clear_status()
        self._status = self.progress.add_task(text, total=None, stats="")

    def log(self, text: str) -> None:
        """Print one step line, ``[k/N h:mm:ss] text`` (``[h:mm:ss] text`` without a total)."""
        if self.quiet:
            return
        self.steps_done += 1
        count = f"{self.steps_done}/{self.total_steps} " if self.total_steps else ""
        self._print(f"[{count}{clock(self.elapsed())}] {text}")

    def step(self, text: str) -> None:
        """Print a step line for work that starts now, and show it as the current status."""
        self.log(text)
        if not self.quiet:
            self.status(text)

    def train_callback(self, label: str, *, announce: str | None = None) -> ProgressCallback:
        """A :data:`~dismax_cli.engine.ProgressCallback` for one run (silent when quiet).

        ``announce`` is printed as a :meth:`step` line when training has really begun (the
        first progress report), so a run refused before it starts prints only its error.
        """
        self.training = label
        if announce is not None:
            self.status(announce)
        task: TaskID | None = None
        started = time.monotonic()
        first_epoch: int | None = None

        def update(p: TrainProgress) -> None:
            nonlocal task, first_epoch
            if first_epoch is None:
                first_epoch = p.epoch
                if announce is not None:
                    self.step(announce)
            elapsed = time.monotonic() - started
            if p.epoch_done and p.epoch == p.epochs:
                self.training = None
            if self.quiet:
                return
            if not self.live:
                if p.epoch_done:
                    done_here = p.epoch - first_epoch + 1
                    eta = elapsed / done_here * (p.epochs - p.epoch)
                    self._print(epoch_line(label, p, elapsed_s=elapsed, eta_s=eta))
                return
            self._clear_status()
            total = p.epochs * p.batches
            done = (p.epoch - 1) * p.batches + p.batch
            stats = (
                f"epoch {p.epoch}/{p.epochs}  loss {p.loss:.4f}  acc {p.accuracy * 100:5.1f}%  "
                f"{p.images_per_s:,.0f} img/s"
            )
            run_done = (p.epoch - first_epoch) * p.batches + p.batch
            if run_done > 0 and done < total:
                stats += f"  ETA {clock(elapsed / run_done * (total - done))}"
            if task is None:
                task = self.progress.add_task(label, total=total, stats=stats)
            self.progress.update(task, completed=done, total=total, stats=stats)

        return update


@contextmanager
def progress_display(
    *, quiet: bool = False, total_steps: int | None = None
) -> Iterator[ProgressDisplay]:
    """A :class:`ProgressDisplay` for the duration of a ``with`` block."""
    with ProgressDisplay(quiet=quiet, total_steps=total_steps) as display:
        yield display


def interrupted_train_message(out: Path, *, created: bool) -> str:
    """What ``dismax train`` says after Ctrl-C: the epoch saved in ``out`` and how to go on.

    When no epoch finished, nothing was saved; a run folder this command created is removed
    again (nothing half-written is left) and the message says to start again.
    """
    from dismax_cli.engine import CHECKPOINT_NAME, LOG_NAME, load_checkpoint
    from dismax_cli.errors import DismaxError, quote_path

    ckpt = out / CHECKPOINT_NAME
    if ckpt.is_file():
        try:
            state = load_checkpoint(ckpt)
        except DismaxError as exc:
            return f"{exc}"
        epoch, epochs = state.meta.epoch, state.meta.epochs
        if state.meta.finished:
            return f"all {epochs} epochs are saved in {quote_path(out)}: the run is finished"
        return (
            f"epoch {epoch} of {epochs} is saved in {quote_path(out)}; continue with: "
            f"{shell_command('train', '--out', out, '--resume')}"
        )
    if created and out.is_dir():
        (out / LOG_NAME).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            out.rmdir()
    return (
        f"no epoch finished, so nothing was saved in {quote_path(out)}: run the same command to "
        "start again"
    )


def interrupted_benchmark_message(runs_dir: Path, training: str | None) -> str:
    """What ``dismax benchmark`` says after Ctrl-C: where runs are kept and how to resume."""
    from dismax_cli.errors import quote_path

    during = f" (while training {training})" if training else ""
    return (
        f"stopped{during}; every finished epoch and run is saved in {quote_path(runs_dir)}: run "
        "the same command again to resume where it stopped (finished runs are reused)"
    )
