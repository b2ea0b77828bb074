"""One early check of every path a command will write, against what it reads and each other.

``dismax benchmark``, ``dismax show`` and ``dismax score`` call :func:`check_output_plan` before
any training, scoring or torch import, with the COMPLETE set of their outputs (the report, its
per-sample file, the plots folder and the plot names it reserves, the HTML page, a score dump)
and of their inputs (config file, dataset files and folders, the data dir's files, the run
folders' files, the input report and its per-sample file). A bad target answers at once with
one line naming the value as typed and the fix, exit 2 (:class:`OutputPathError`: a path
refused before any work is a bad option value, like every other; a failure while writing stays
exit 1); nothing is written (README "Design notes", *Output paths*). The writes then go through
:class:`~dismax_cli.output_set.OutputSet`.

Rule for symbolic links: an output path that is a link is written THROUGH the link, to its
target (as ``cp`` and shell redirection do); a dangling link creates its target. Stdlib only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import stat
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from dismax_cli.config_types import InvalidValueError
from dismax_cli.errors import quote_path
from dismax_cli.fileio import CHECKPOINT_NAME, is_special_file, run_there_message

#: Plot file names a ``--plots`` folder reserves (:func:`dismax_cli.plots.plot_files`: method
#: and OOD-set parts are only known after the run, so the whole pattern is reserved).
PLOT_NAME = re.compile(r"^(reliability-.+|hist-.+|roc-.+|pr-.+|risk-coverage)(~\d+)?\.png$", re.I)
#: ``os.stat`` errors of a path that is not there yet (a file in the way, a long name).
_ABSENT = (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG)


class OutputPathError(InvalidValueError):
    """An output path refused before any work (:func:`check_output_plan`): a bad option value,
    exit 2 like every other (README "Design notes"). ``what`` is the option (``--out``)."""

    def __init__(self, what: str, message: str) -> None:
        super().__init__(what.lstrip("-").replace("-", "_") or "out", message)


@dataclass(frozen=True)
class Target:
    """One output: ``path`` as typed, ``what`` names it in errors (``--out``, ``--plots``);
    ``folder`` for ``--plots`` (created with its parents); ``parents`` when missing parent
    folders may be created; ``fix`` ends a collision message (what the user should do);
    ``special=False`` refuses a FIFO or device there (a name the command derives, such as the
    per-sample file: written directly, a FIFO would block)."""

    path: Path
    what: str
    folder: bool = False
    parents: bool = False
    fix: str = "choose another file name"
    special: bool = True


def parse_output_path(value: str | os.PathLike[str]) -> Path:
    """Typer ``parser=`` of an output option: refuse an empty or blank value (exit 2).

    ``Path("")`` is ``.``: without this ``--plots ""`` writes into the current folder.

    Raises:
        typer.BadParameter: for an empty or blank value.
    """
    import typer

    if isinstance(value, str) and value.strip() == "":
        raise typer.BadParameter(f"{value!r} is empty: pass a path (or leave the option out)")
    return Path(value)


def samples_target(out: Path) -> Path:
    """Where the per-sample file of report ``out`` goes: beside it, or beside the link's target
    (named after the target) when ``out`` is a symbolic link (see the module docstring)."""
    from dismax_cli.fileio import samples_path

    if _is_link(out):
        with contextlib.suppress(OSError):
            return samples_path(real_path(out))
    return samples_path(out)


def real_path(path: Path) -> Path:
    """Where writing ``path`` lands: links followed (a dangling one: its target), absolute;
    a FIFO or device (``/dev/stdout``, whose link names a pipe) is itself.

    Raises:
        OSError: (ELOOP) for a symbolic link loop.
    """
    if is_special_file(path):
        return path
    try:
        return path.resolve()
    except RuntimeError as exc:  # Python 3.11's Path.resolve on a loop
        raise OSError(errno.ELOOP, "it is a symbolic link loop", str(path)) from exc


def _real_or_none(path: Path) -> Path | None:
    try:
        return real_path(path)
    except OSError:
        return None


def _cannot(target: Target, reason: str) -> OutputPathError:
    where = f"{target.what} {quote_path(target.path)}"
    return OutputPathError(target.what, f"cannot write {where}: {reason}")


def folder_files(folders: Iterable[Path]) -> list[Path]:
    """The files directly in each existing folder (a run folder's checkpoint and log, the data
    dir's dataset files): what an output must not replace."""
    found: list[Path] = []
    for folder in folders:
        with contextlib.suppress(OSError):
            found.extend(Path(e.path) for e in os.scandir(folder) if not e.is_dir())
    return found


def data_files(data_dir: Path) -> list[Path]:
    """The dataset files in the data dir (``*.npz``, not a report's ``*.samples.npz``)."""
    return [
        p for p in folder_files([data_dir])
        if p.name.endswith(".npz") and not p.name.endswith(".samples.npz")
    ]  # fmt: skip


def run_folders(runs_dir: str | os.PathLike[str] | None) -> list[Path]:
    """The run folders in ``runs_dir`` (else ``DISMAX_RUNS_DIR`` or the user cache's)."""
    if runs_dir is None or str(runs_dir) == "":
        env = os.environ.get("DISMAX_RUNS_DIR")
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        runs_dir = Path(env).expanduser() if env else Path(cache) / "dismax" / "runs"
    try:
        return [Path(e.path) for e in os.scandir(Path(runs_dir).expanduser()) if e.is_dir()]
    except OSError:
        return []


def check_output_plan(
    targets: Sequence[Target], reads: Sequence[Path], *, stdout_report: str | None = None
) -> None:
    """Refuse, before any work, a set of outputs that cannot or must not be written.

    Each target must be usable (no link loop, no folder where a file goes, no file where a
    folder goes, an existing writable folder or one a ``folder`` target creates, a name the
    file system takes, temp names included); no two targets may land on one file; no target
    may replace a file in ``reads`` or lie inside a folder in ``reads``; a ``folder`` target
    (``--plots``) may not hold a read or another target under a plot name (:data:`PLOT_NAME`),
    nor a folder, FIFO, device or link loop there, and a link there is checked where it
    points (:func:`plot_entries`). With ``stdout_report`` (what the command prints on stdout,
    e.g. ``"the JSON report (--format json)"``) no target may be the standard output; no
    target may be the standard error (it carries the progress and message lines) unless that
    is the standard output too (``2>&1``, a terminal: then the stdout rule applies).

    Raises:
        OutputPathError: (exit 2) naming the value as typed, what is wrong and the fix.
    """
    created = _planned_folders(targets)
    real: list[tuple[Target, Path]] = []
    for target in targets:
        own = f"write {target.what} to a {'folder' if target.folder else 'file'} of its own"
        if stdout_report is not None and is_stdout(target.path):
            raise _cannot(target, f"it is this command's standard output, which carries "
                          f"{stdout_report}: {own}")  # fmt: skip
        if is_stream(target.path, 2) and not is_stream(target.path, 1):
            raise _cannot(target, "it is this command's standard error, which carries its "
                          f"progress and messages: {own}")  # fmt: skip
        if not target.folder and is_special_file(target.path):
            if not target.special:
                raise _cannot(target, "it is a FIFO, device or socket, where this file goes: "
                              "remove it or choose another name")  # fmt: skip
            continue  # /dev/stdout, a FIFO: written directly (a pipe resolves to no real name)
        try:
            where = real_path(target.path)
        except OSError:
            raise _cannot(target, "it is a symbolic link loop: remove the loop or choose "
                          "another name") from None  # fmt: skip
        _check_target(target, where, created)
        real.append((target, where))
        for entry in plot_entries(target, where) if target.folder else []:
            entry_where = real_path(entry.path)
            _check_target(entry, entry_where, created)
            real.append((entry, entry_where))
    read_real = [(p, r) for p in reads if (r := _real_or_none(p)) is not None]
    _check_collisions(real, read_real)


def check_run_folder(out: Path, *, resume: bool = True) -> None:
    """Refuse, before torch loads, a ``train --out`` that cannot become a run folder: a link
    loop, a file, FIFO or device there (``/dev/stdout``), a file among its parents, a missing
    folder under a read-only one, a name too long (what ``mkdir`` would fail on later), and
    (``resume`` false) a folder that already holds a run.

    Raises:
        OutputPathError: (exit 2) naming the value as typed and the fix.
    """
    target = Target(out, "--out", folder=True)
    try:
        where = real_path(out) if not is_special_file(out) else out
    except OSError:
        raise _cannot(target, "it is a symbolic link loop: remove the loop or choose another "
                      "name") from None  # fmt: skip
    info = _stat_or_none(target, where)
    if info is not None and not stat.S_ISDIR(info.st_mode):
        kind = "a file" if stat.S_ISREG(info.st_mode) else "a FIFO, device or socket"
        raise _cannot(target, f"it is {kind}, not a folder: name a new or empty folder for the "
                      "run (it is created if missing)")  # fmt: skip
    _check_target(target, where, set())
    if not resume and (out / CHECKPOINT_NAME).is_file():
        raise OutputPathError("out", run_there_message(out))


def check_rewritable(checkpoint: Path, what: str) -> None:
    """Refuse, before torch loads, a checkpoint whose folder cannot take its new version (it is
    replaced through a temporary file beside it): ``dismax calibrate``'s output.

    Raises:
        OutputPathError: (exit 2) naming the folder and the fix.
    """
    folder = checkpoint.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(what, f"cannot write the calibrated checkpoint "
                              f"{quote_path(checkpoint)}: folder {quote_path(folder)} is not "
                              "writable (read-only or no permission): copy the run folder to a "
                              "writable place and calibrate the copy")  # fmt: skip


def is_stdout(path: Path) -> bool:
    """``path`` (links followed) is the file, pipe or terminal of this process's stdout, and
    not ``/dev/null``: writing it would mix into what the command prints there."""
    return is_stream(path, 1)


def is_stream(path: Path, fd: int) -> bool:
    """``path`` (links followed) is the file, pipe or terminal open as descriptor ``fd`` (1:
    stdout, 2: stderr) of this process, and not ``/dev/null``."""
    try:
        out, info = os.fstat(fd), os.stat(path)
    except (OSError, ValueError):
        return False
    if (out.st_dev, out.st_ino) != (info.st_dev, info.st_ino):
        return False
    with contextlib.suppress(OSError):
        null = os.stat(os.devnull)
        return (info.st_dev, info.st_ino) != (null.st_dev, null.st_ino)
    return True


def plot_entries(plots: Target, folder: Path) -> list[Target]:
    """The symbolic links at plot names (:data:`PLOT_NAME`) in the existing plots ``folder``,
    as file targets to check where they point (a plot is written through a link).

    Raises:
        OutputPathError: (exit 2) for a folder, FIFO, device, socket or link loop at a plot name:
            a plot cannot go there (a FIFO would block the command).
    """
    try:
        names = sorted(e.name for e in os.scandir(folder) if PLOT_NAME.match(e.name))
    except OSError:
        return []
    entries: list[Target] = []
    for name in names:
        path = plots.path / name
        fix = f"remove {quote_path(path)} or choose another --plots folder"
        try:
            info = os.stat(real_path(path))
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _cannot(plots, f"{quote_path(path)} is a symbolic link loop where a "
                              f"plot goes: {fix}") from None  # fmt: skip
            info = None  # a dangling link: writing creates its target
        if info is not None and not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO, device or socket"
            raise _cannot(plots, f"{quote_path(path)} is {kind} where a plot goes: {fix}")
        if path.is_symlink():
            entries.append(Target(path, f"{plots.what} link", fix=fix))
    return entries


def _planned_folders(targets: Sequence[Target]) -> set[Path]:
    """The folders writing the ``folder`` targets creates (each with its missing parents):
    other outputs may go there (``--html DIR/page.html`` with ``--plots DIR``)."""
    created: set[Path] = set()
    for target in targets:
        folder = _real_or_none(target.path) if target.folder else None
        while folder is not None and folder != folder.parent:
            try:
                os.stat(folder)
                break
            except OSError as exc:
                if exc.errno not in _ABSENT:
                    break
                created.add(folder)
                folder = folder.parent
    return created


def _check_target(target: Target, where: Path, created: set[Path]) -> None:
    """Refuse a target that cannot be written: its kind, its folders (``created``: those a
    ``folder`` target makes), its names."""
    info = _stat_or_none(target, where)
    if info is not None:
        _check_kind(target, info)
        if not target.folder and not stat.S_ISREG(info.st_mode):
            return  # a FIFO or device: written directly, nothing created beside it
    folder = where if target.folder else where.parent
    missing, existing = _missing_folders(target, folder)
    _check_name_lengths(target, where, missing, _name_max(existing))  # the clearest reason
    if missing and not (target.parents or target.folder or created.issuperset(missing)):
        link = " (where the link points)" if _is_link(target.path) else ""
        raise _cannot(target, f"folder {quote_path(folder)}{link} does not exist")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _cannot(target, f"folder {quote_path(existing)} is not writable (read-only or no "
                      "permission): choose a writable folder")  # fmt: skip


def _is_link(path: Path) -> bool:
    """``path.is_symlink()``, False where the name cannot be looked up (too long)."""
    try:
        return path.is_symlink()
    except OSError:
        return False


def _stat_or_none(target: Target, where: Path) -> os.stat_result | None:
    """``os.stat(where)``, None when nothing is there yet (a file in the way, a long name)."""
    try:
        return os.stat(where)
    except OSError as exc:
        if exc.errno not in _ABSENT:
            raise _cannot(target, str(exc.strerror or exc)) from None
        return None


def _check_kind(target: Target, info: os.stat_result) -> None:
    """A folder where a file goes, a file where the plots folder goes (both exit 2)."""
    if stat.S_ISDIR(info.st_mode) and not target.folder:
        where = f"{target.what} {quote_path(target.path)}"
        raise OutputPathError(target.what, f"{where} is a folder: name a file inside it")
    if target.folder and not stat.S_ISDIR(info.st_mode):
        raise OutputPathError(target.what, f"{target.what} "
                                f"{quote_path(target.path)} is a file: pass a folder for the "
                                "plots (it is created if missing)")  # fmt: skip


def _check_name_lengths(target: Target, where: Path, missing: list[Path], limit: int) -> None:
    """Every name writing would create fits the file system's ``limit`` (bytes)."""
    names = [m.name for m in missing] + ([] if target.folder else [where.name])
    for name in names:
        size = len(os.fsencode(name))
        if size > limit:
            which = "its name" if name == where.name else f"the name {quote_path(name)}"
            raise _cannot(target, f"{which} is too long for the file system ({size} bytes, at "
                          f"most {limit}): choose a shorter name")  # fmt: skip


def _missing_folders(target: Target, folder: Path) -> tuple[list[Path], Path]:
    """The folders that writing would create (outermost last) and the nearest existing one."""
    missing: list[Path] = []
    while True:
        try:
            info = os.stat(folder)
            break
        except OSError as exc:
            if exc.errno in _ABSENT:
                missing.append(folder)
                folder = folder.parent
                continue
            raise _cannot(target, f"{quote_path(folder)}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise _cannot(target, f"{quote_path(folder)} is a file, not a folder: choose a path "
                      "inside a folder")  # fmt: skip
    return missing, folder


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _check_collisions(
    targets: list[tuple[Target, Path]], reads: list[tuple[Path, Path]]
) -> None:
    """No two outputs name one file; no output lands on or in an input; no plot over either."""
    files = [(t, r) for t, r in targets if not t.folder]
    for i, (target, where) in enumerate(files):
        for other, other_where in files[:i]:
            if where == other_where:
                fix = other.fix if target.fix == Target.fix else target.fix
                raise OutputPathError(
                    target.what,
                    f"{target.what} {quote_path(target.path)} would overwrite {other.what} "
                    f"{quote_path(other.path)} (both name one file): {fix}"
                )
    for target, where in targets:
        _check_against_reads(target, where, reads)
    named = [(f"{t.what} {quote_path(t.path)}", r) for t, r in files]
    named += [(quote_path(p), r) for p, r in reads]
    for plots, folder in ((t, r) for t, r in targets if t.folder):
        _check_plot_names(plots, folder, named)


def _check_against_reads(target: Target, where: Path, reads: list[tuple[Path, Path]]) -> None:
    for read, read_where in reads:
        if where == read_where or (read_where.is_dir() and where.is_relative_to(read_where)):
            raise OutputPathError(
                target.what,
                f"{target.what} {quote_path(target.path)} would overwrite "
                f"{quote_path(read)}, which this command reads or writes: {target.fix}"
                + (" (or folder)" if target.folder else "")
            )


def _check_plot_names(plots: Target, folder: Path, named: list[tuple[str, Path]]) -> None:
    """No file of ``named`` is the plots folder or sits in it under a reserved plot name."""
    for name, where in named:
        if where == folder:
            raise OutputPathError(plots.what, f"{plots.what} {quote_path(plots.path)} is the "
                                  f"file {name}: pass a folder for the plots")  # fmt: skip
        if where.parent == folder and PLOT_NAME.match(where.name):
            raise OutputPathError(
                plots.what,
                f"{plots.what} {quote_path(plots.path)} would overwrite {name} with a plot "
                "(plot names reliability-*, hist-*, roc-*, pr-*, risk-coverage .png are "
                "reserved there): choose another folder or file name"
            )


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, a CI cancel) in a command: unwinds as Ctrl-C does (the
    :class:`~dismax_cli.output_set.OutputSet` roll-back, atomic writes' temp files), exit 143."""


@contextlib.contextmanager
def terminate_cleanly() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` for the block; one escaping it exits 143.

    A second SIGTERM while unwinding is ignored (SIGKILL still stops the process). Outside the
    main thread it does nothing (signal handlers can only be set there).

    Raises:
        typer.Exit: 143 after a SIGTERM, once everything is cleaned up.
    """
    import typer

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except Terminated:
        raise typer.Exit(143) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = [
    "PLOT_NAME",
    "OutputPathError",
    "Target",
    "Terminated",
    "check_output_plan",
    "check_rewritable",
    "check_run_folder",
    "data_files",
    "folder_files",
    "is_stdout",
    "is_stream",
    "parse_output_path",
    "plot_entries",
    "real_path",
    "run_folders",
    "samples_target",
    "terminate_cleanly",
]
