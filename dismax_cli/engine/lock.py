"""One training process per run folder: an exclusive lock held while ``fit`` works on it.

The lock is ``.<name>.lock`` beside the run folder (``runs/.x.lock`` for ``runs/x``), taken with
``fcntl.flock`` without waiting, so a second ``dismax train --out runs/x`` (or a second benchmark
training the same run) fails at once with one line instead of mixing its epochs into the first
one's files. ``flock`` is released by the kernel when a process dies, so a crashed run never
leaves a stale lock. Platforms without ``fcntl`` (Windows) train without the lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class RunFolderBusy(DismaxError):
    """Another process holds the training lock of a run folder (``run_dir``: that folder)."""

    def __init__(self, message: str, run_dir: Path) -> None:
        super().__init__(message)
        self.run_dir = run_dir


def lock_path(run_dir: Path) -> Path:
    """The lock file of ``run_dir``: a hidden file beside it."""
    return run_dir.parent / f".{run_dir.name}.lock"


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created, outermost first."""
    missing = []
    for path in [folder, *folder.parents]:
        if path.exists():
            break
        missing.append(path)
    missing.reverse()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DismaxError(f"cannot create folder {q(folder)}: {exc.strerror}") from None
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _acquire(path: Path, run_dir: Path) -> int:
    """Open and lock ``path``; retry when another process unlinked it meanwhile."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise RunFolderBusy(
                f"another dismax process is training into {q(run_dir)} (it holds "
                f"{q(path)}): wait for it to finish, or choose another --out",
                run_dir,
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder finished and removed the file between our open and lock


@contextlib.contextmanager
def run_folder_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold the exclusive training lock of ``run_dir`` for the ``with`` block.

    Creates the run folder's parent if needed (and removes what it created when the block
    fails before the run folder itself appears), never the run folder itself.

    Raises:
        RunFolderBusy: when another process holds the lock (a :class:`DismaxError`).
        DismaxError: when the parent cannot be created.
    """
    run_dir = Path(run_dir)
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    created = _make_parents(run_dir.parent)
    path = lock_path(run_dir)
    try:
        fd = _acquire(path, run_dir)
    except BaseException:
        _remove_empty(created)
        raise
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
        if not run_dir.exists():
            _remove_empty(created)


__all__ = ["RunFolderBusy", "lock_path", "run_folder_lock"]
