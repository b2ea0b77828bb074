"""Write several output files all or nothing: a report, its per-sample file, plots, a page.

``dismax benchmark --out R.json --plots DIR --html P.html`` and ``dismax show R.json --plots DIR
--html P.html`` write many files. One failed write (a folder in the way of one PNG, a
read-only folder, a full disk) must not leave the others behind, nor touch what was there
before (README "Design notes", *All or nothing*). :meth:`OutputSet.commit` does it in three
phases: every file is written to a temporary file beside its target (folders created as
needed); only when all are written are they renamed into place, each existing target first
kept under a hard link; a failure in any phase removes the temporary files, the folders it
created and the files it placed, and puts the old files back. A path that is a symbolic link
is written through it, to its target (:mod:`dismax_cli.output_check`); a replaced file keeps
its permission bits. Stdlib only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dismax_cli.errors import DismaxError, quote_path
from dismax_cli.fileio import default_file_mode, is_special_file, write_temp
from dismax_cli.output_check import real_path


@dataclass
class _Item:
    path: Path
    data: bytes
    what: str
    special: bool = True
    real: Path | None = None
    tmp: str | None = None
    backup: str | None = None
    placed: bool = False


@dataclass
class OutputSet:
    """Files to write together; nothing is written before :meth:`commit`.

    ``reads``: the files and folders the command reads (its input report, run folders'
    files): :meth:`commit` refuses to land a file on or in one, as the early check
    (:func:`~dismax_cli.output_check.check_output_plan`) did, in case a link changed since.
    """

    items: list[_Item] = field(default_factory=list)
    reads: Sequence[Path] = ()
    _created: list[Path] = field(default_factory=list)

    def add(
        self, path: str | os.PathLike[str], data: bytes, what: str, *, special: bool = True
    ) -> None:
        """Queue ``data`` (bytes) for ``path``; ``what`` names it in errors (``--html``);
        ``special=False`` refuses a FIFO or device there (a plot: a FIFO would block)."""
        self.items.append(_Item(Path(path), data, what, special))

    def commit(self) -> None:
        """Write every queued file, or none (see the module docstring).

        A target that exists as a FIFO or device (``--out /dev/stdout``) is written to directly,
        after every other file is staged and before any is renamed into place.

        Raises:
            DismaxError: (exit 1) naming the file that failed and the reason; nothing new is
                left and the files that were there before are unchanged.
        """
        current: _Item | None = None
        try:
            for current in self.items:
                current.real = real_path(current.path)
            _refuse_duplicates(self.items)
            _refuse_reads(self.items, self.reads)
            for current in self.items:
                if not current.special or not is_special_file(current.real):
                    self._stage(current)
            for current in self.items:
                if current.tmp is None:
                    current.real.write_bytes(current.data)
            for current in self.items:
                if current.tmp is not None:
                    _place(current)
        except BrokenPipeError:  # a pipe's reader left (``--html /dev/stdout | head``): 141
            self._roll_back()
            raise
        except OSError as exc:
            self._roll_back()
            what = current.what if current is not None else "a file"
            path = quote_path(exc.filename or (current.path if current else ""))
            raise DismaxError(
                f"cannot write {what} {path}: {exc.strerror or exc}; nothing was written (the "
                "files there before are unchanged)"
            ) from None
        except BaseException:
            self._roll_back()
            raise
        for item in self.items:
            if item.backup is not None:
                with contextlib.suppress(OSError):
                    os.unlink(item.backup)

    def _stage(self, item: _Item) -> None:
        assert item.real is not None
        self._make_folder(item.real.parent)
        if item.real.is_dir():
            raise IsADirectoryError(21, "it is a folder", str(item.path))
        if not item.special and os.path.lexists(item.real) and not item.real.is_file():
            raise OSError(errno.EINVAL, "it is a FIFO, device or socket", str(item.path))
        item.tmp = write_temp(item.real, lambda handle: handle.write(item.data),
                              mode=_new_mode(item.real))  # fmt: skip

    def _make_folder(self, folder: Path) -> None:
        missing: list[Path] = []
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        for path in reversed(missing):
            path.mkdir()
            self._created.append(path)

    def _roll_back(self) -> None:
        for item in reversed(self.items):
            with contextlib.suppress(OSError):
                if item.placed and item.backup is not None:
                    os.replace(item.backup, item.real or item.path)
                elif item.placed:
                    os.unlink(item.real or item.path)
                elif item.backup is not None:
                    os.unlink(item.backup)
            if item.tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(item.tmp)
        for folder in reversed(self._created):
            with contextlib.suppress(OSError):
                folder.rmdir()


def _place(item: _Item) -> None:
    """Rename the staged file over its target, first keeping an existing target (hard link,
    else a copy) so that a roll-back can put it back."""
    assert item.tmp is not None and item.real is not None
    if item.real.exists():
        backup = f"{item.tmp}.old"
        try:
            os.link(item.real, backup, follow_symlinks=False)
        except OSError:
            shutil.copy2(item.real, backup, follow_symlinks=False)
        item.backup = backup
    os.replace(item.tmp, item.real)
    item.tmp, item.placed = None, True


def _new_mode(real: Path) -> int:
    """The permission bits of the file being replaced, else what ``open()`` gives (0666 minus
    the umask; ``mkstemp``'s 0600 would hide a new report from the group)."""
    try:
        return stat.S_IMODE(os.stat(real).st_mode)
    except OSError:
        return default_file_mode()


def _refuse_reads(items: list[_Item], reads: Sequence[Path]) -> None:
    """A queued file landing on or in a file or folder the command reads: refuse."""
    for read in reads:
        try:
            where = real_path(read)
        except OSError:
            continue
        for item in items:
            assert item.real is not None
            if item.real == where or (where.is_dir() and item.real.is_relative_to(where)):
                raise DismaxError(
                    f"{item.what} {quote_path(item.path)} would overwrite {quote_path(read)}, "
                    "which this command reads: remove the link or choose another name; "
                    "nothing was written"
                )


def _refuse_duplicates(items: list[_Item]) -> None:
    """Two queued files landing on one path (a link and its target): refuse before writing."""
    seen: dict[Path, _Item] = {}
    for item in items:
        assert item.real is not None
        if item.real in seen:
            first = seen[item.real]
            raise DismaxError(
                f"{item.what} {quote_path(item.path)} would overwrite {first.what} "
                f"{quote_path(first.path)} (both name one file): choose another file name; "
                "nothing was written"
            )
        seen[item.real] = item


__all__ = ["OutputSet"]
