"""Atomic file writes: a temporary file in the target's folder, fsync, then ``os.replace``.

Every file dismax writes (checkpoints, reports, score dumps, dataset caches) goes through here, so
an interrupted write never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from dismax_cli.errors import quote_value as q

#: Bytes of a target's name that its temporary files keep (the rest is cut), so that the
#: temporary name of a target whose name has the file system's maximum length still fits.
TEMP_NAME_BYTES = 200


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Create ``path`` by calling ``write(handle)`` on a temporary file, then renaming it.

    The file gets the permissions a plain ``open()`` would give (:func:`default_file_mode`),
    not ``mkstemp``'s 0600. On any error the temporary file is removed and the error re-raised.

    A ``path`` that already exists as something other than a regular file or a folder (a FIFO,
    ``/dev/null``, ``/dev/stdout``, a shell's ``>(...)``) is written to directly, as any Unix
    tool does: renaming over it would replace the device or pipe with a plain file.
    """
    path = Path(path)
    if is_special_file(path):
        with open(path, "wb") as handle:
            write(handle)
        return
    tmp = write_temp(path, write, mode=default_file_mode())
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_temp(target: Path, write: Callable[[BinaryIO], None], *, mode: int) -> str:
    """Write a temporary file beside ``target`` (``write(handle)``, fsync, permission bits
    ``mode``) and return its path; on any error it is removed and the error re-raised.

    Its name is ``.NAME.XXXXXXXX.tmp`` with NAME cut to :data:`TEMP_NAME_BYTES` bytes.
    """
    short = os.fsencode(target.name)[:TEMP_NAME_BYTES].decode("utf-8", "ignore")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{short}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def default_file_mode() -> int:
    """The permission bits ``open()`` gives a new file: 0666 minus the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def is_special_file(path: str | os.PathLike[str]) -> bool:
    """An existing FIFO, character/block device or socket (links followed): written directly."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda handle: handle.write(data))


__all__ = [
    "TEMP_NAME_BYTES",
    "atomic_write",
    "atomic_write_bytes",
    "default_file_mode",
    "is_special_file",
    "write_temp",
]


#: The file a run folder keeps its model in (``dismax train --out DIR`` writes DIR/checkpoint.pt).
CHECKPOINT_NAME = "checkpoint.pt"
#: The per-epoch training log beside it.
LOG_NAME = "train_log.jsonl"


def checkpoint_path(run_dir_or_file: str | os.PathLike[str]) -> Path:
    """``run_dir/checkpoint.pt`` for a folder, the path itself for a file (stdlib only, so the
    CLI checks a CHECKPOINT argument before torch loads)."""
    path = Path(run_dir_or_file)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def run_there_message(run_dir: str | os.PathLike[str]) -> str:
    """What ``train --out RUN`` without ``--resume`` says when ``RUN`` already holds a run: the
    CLI (before torch loads) and the engine (``fit``) say it in the same words."""
    return (
        f"run folder {q(Path(run_dir))} already holds a run: pass --resume to continue it or "
        "choose another --out"
    )


#: The suffix of the per-sample file beside a report: ``R.json`` -> ``R.samples.npz``.
SAMPLES_SUFFIX = ".samples.npz"


def samples_path(report_path: str | os.PathLike[str]) -> Path:
    """The per-sample file beside a report: ``R.json`` -> ``R.samples.npz`` (stdlib only, so
    the CLI can protect it before anything heavy loads)."""
    path = Path(report_path)
    return path.with_name(path.stem + SAMPLES_SUFFIX)


def report_neighbours(report_path: str | os.PathLike[str], name: str) -> tuple[Path, ...]:
    """Where a file ``name`` that a report names (its per-sample file) is looked for: beside
    the report the path resolves to (a symbolic link followed to its target), then beside the
    path as given, when that is another folder. Stdlib only.

    ``links/r.json -> ../runs/r.json`` gives ``(runs/NAME, links/NAME)``.
    """
    given = Path(report_path)
    try:
        resolved = given.resolve()
    except (OSError, RuntimeError):  # a symlink loop: only the path as given is left
        return (given.parent / name,)
    first, second = resolved.parent / name, given.parent / name
    same = os.path.normpath(first) == os.path.normpath(second.absolute())
    return (first,) if same else (first, second)


def check_regular_file(path: str | os.PathLike[str], what: str, fix: str) -> None:
    """Refuse at once a ``path`` that is missing or no regular file (a folder, a FIFO that would
    block the read, a device): ``cannot read WHAT 'PATH': it PROBLEM; FIX``.

    Raises:
        DismaxError: naming the path, the problem and the fix.
    """
    from dismax_cli.errors import DismaxError

    problem = file_problem(path)
    if problem is not None:
        raise DismaxError(f"cannot read {what} {q(os.fspath(path))}: it {problem}; {fix}")


def _stat(path: str | os.PathLike[str]) -> tuple[os.stat_result | None, str | None]:
    """``os.stat(path)``, or None and why it failed (``does not exist``, the system's reason)."""
    try:
        return os.stat(path), None
    except FileNotFoundError:
        return None, "does not exist"
    except OSError as exc:
        return None, f"cannot be used: {exc.strerror or exc}"


def file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be read as a regular file, or None when it can be.

    ``"does not exist"``, ``"is a folder: name a file"``, ``"is not a regular file (a FIFO,
    device or socket): name a file"``, or the system's reason (``File name too long``).
    """
    info, problem = _stat(path)
    if info is None:
        return problem
    if stat.S_ISDIR(info.st_mode):
        return "is a folder: name a file"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a FIFO, device or socket): name a file"
    return None


class NotAFileError(OSError):
    """:func:`open_image` on a path that is no regular file; its text is :func:`file_problem`'s."""


def open_image(path: str | os.PathLike[str]) -> Any:
    """``PIL.Image.open(path)`` after checking that ``path`` is a regular file.

    Opening a FIFO would block until something writes to it; a device would be read forever.

    Raises:
        NotAFileError: (an OSError) for a path that is not a regular file, worded as
            :func:`file_problem` words it (callers name the path in one line).
    """
    from PIL import Image

    problem = file_problem(path)
    if problem is not None:
        raise NotAFileError(problem)
    return Image.open(path)


def folder_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be used as a folder (``does not exist``, ``is a file``), or None."""
    info, problem = _stat(path)
    if info is None:
        return problem
    if not stat.S_ISDIR(info.st_mode):
        return "is not a folder: name a folder"
    return None
