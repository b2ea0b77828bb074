"""Network and file plumbing: offline switch, fast failure, verified downloads, safe extraction.

Everything here either finishes completely or leaves nothing behind: downloads stream into a
temporary folder inside the data directory, are checked against a pinned MD5, are unpacked
by :func:`safe_extract` (every member checked by this module before anything is written: no
path traversal, no links out, no device files) and are only then moved into place with
:func:`os.replace`; caches are written through a temporary
file and :func:`os.replace` as well.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import tarfile
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dismax_cli.errors import DismaxError
from dismax_cli.fileio import atomic_write

#: Environment variable that disables every download when set to 1/true/yes/on.
OFFLINE_ENV = "DISMAX_OFFLINE"
#: Default network timeout in seconds.
DEFAULT_TIMEOUT_S = 10.0
_CHUNK = 1 << 20
_USER_AGENT = "dismax (+https://github.com/dlmacedo/distinction-maximization-loss)"


def offline() -> bool:
    """Return True when ``DISMAX_OFFLINE`` asks for no network access."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def downloads_enabled(download: bool) -> bool:
    """Return True when ``download`` is requested and ``DISMAX_OFFLINE`` does not forbid it."""
    return bool(download) and not offline()


def net_timeout() -> float:
    """Return the network timeout in seconds (``DISMAX_NET_TIMEOUT``, default 10).

    Raises:
        InvalidValueError: (exit 2) for a value that is not a number in (0, 86,400]
            (:data:`dismax_cli.env_settings.NET_TIMEOUT`).
    """
    from dismax_cli.env_settings import NET_TIMEOUT, env_number

    value = env_number(NET_TIMEOUT)
    return DEFAULT_TIMEOUT_S if value is None else float(value)


def one_line(exc: BaseException | str, limit: int = 200) -> str:
    """Return an exception's message squeezed onto one short line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def probe(url: str, timeout: float | None = None) -> str | None:
    """Check quickly whether ``url``'s host accepts TCP connections.

    Name resolution can hang far longer than a socket timeout, so the attempt runs in a
    daemon thread that is abandoned after ``timeout`` seconds.

    Args:
        url: Any http(s) URL.
        timeout: Seconds to wait; default :func:`net_timeout`.

    Returns:
        ``None`` when reachable, else a one-line reason.
    """
    timeout = net_timeout() if timeout is None else timeout
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    if not host:
        return f"bad URL '{url}'"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    result: list[str | None] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(None)
        except OSError as exc:
            result.append(f"{host}:{port} unreachable: {one_line(exc, 120)}")

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    if not result:
        return f"{host}:{port} did not answer within {timeout:g} s"
    return result[0]


@contextlib.contextmanager
def socket_timeout(seconds: float) -> Iterator[None]:
    """Set the process-wide default socket timeout for libraries that take none (torchvision)."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def md5_file(path: Path) -> str:
    """Return the hex MD5 of a file, read in chunks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def stream_download(url: str, dest: Path, *, timeout: float | None = None) -> str:
    """Stream ``url`` into ``dest`` and return the MD5 of the bytes received.

    Args:
        url: http(s) URL.
        dest: File to create (the caller deletes it on failure).
        timeout: Socket timeout for the connection and every read; default
            :func:`net_timeout`.

    Returns:
        Hex MD5 of the file.

    Raises:
        DismaxError: If the request fails, times out, or ends before the announced length.
    """
    timeout = net_timeout() if timeout is None else timeout
    h = hashlib.md5(usedforsecurity=False)
    received = 0
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(dest, "wb") as f:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                h.update(chunk)
                received += len(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DismaxError(
            f"download of {url} failed after {received} bytes: {one_line(exc, 150)}; "
            "check the connection and rerun, or fetch the file by hand"
        ) from None
    if expected is not None and received != expected:
        raise DismaxError(
            f"download of {url} was interrupted after {received} of {expected} bytes; "
            "rerun to start again, or fetch the file by hand"
        )
    return h.hexdigest()


def check_md5(path: Path, expected: str, *, what: str) -> None:
    """Raise unless ``path`` has MD5 ``expected``.

    Raises:
        DismaxError: Naming the expected and the actual hash.
    """
    actual = md5_file(path)
    if actual != expected.lower():
        raise DismaxError(
            f"{what} has MD5 {actual}, expected {expected}: the file is corrupt or not the "
            "published archive; delete it and fetch it again"
        )


#: Links followed at most while resolving one path inside an archive (as the kernel's 40).
_MAX_LINK_HOPS = 40
_DRIVE = re.compile(r"^[A-Za-z]:")


class _Refused(Exception):
    """A member that must not be extracted; the message says why."""


def _parts(name: str, what: str) -> tuple[str, ...]:
    """Split an archive path into components, refusing anything that is not plainly relative."""
    if not name:
        raise _Refused(f"{what} is empty")
    if "\x00" in name:
        raise _Refused(f"{what} holds a NUL character")
    if "\\" in name:
        raise _Refused(f"{what} holds a backslash (a Windows-style path)")
    if _DRIVE.match(name):
        raise _Refused(f"{what} starts with a drive letter (a Windows-style absolute path)")
    if name.startswith("/"):
        raise _Refused(f"{what} is absolute")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _Refused(f"{what} contains '..'")
    return parts


class _Tree:
    """The folder tree the archive would create, to resolve links before anything is written."""

    def __init__(self) -> None:
        self.kinds: dict[tuple[str, ...], str] = {(): "dir"}
        self.links: dict[tuple[str, ...], str] = {}

    def resolve(self, parts: tuple[str, ...], hops: int = 0) -> tuple[str, ...]:
        """Where ``parts`` leads inside the destination, following the archive's symlinks.

        Raises:
            _Refused: if the path leaves the destination, or the links loop.
        """
        here: tuple[str, ...] = ()
        for i, part in enumerate(parts):
            if part == "..":
                if not here:
                    raise _Refused("resolves outside the destination")
                here = here[:-1]
                continue
            here = (*here, part)
            if here in self.links:
                hops += 1
                if hops > _MAX_LINK_HOPS:
                    raise _Refused("is a loop of symbolic links")
                target = self.links[here]
                if target.startswith("/") or _DRIVE.match(target) or "\\" in target:
                    raise _Refused(
                        f"leads through a link to the absolute or Windows path '{target}'"
                    )
                steps = tuple(p for p in target.split("/") if p not in ("", "."))
                here = self.resolve((*here[:-1], *steps), hops)
            elif self.kinds.get(here) == "file" and i < len(parts) - 1:
                raise _Refused("goes through a regular file")
        return here


def _member_kind(member: tarfile.TarInfo, what: str) -> str:
    """``"dir"``, ``"file"``, ``"symlink"`` or ``"hardlink"``; other member types are refused."""
    if member.isdir():
        return "dir"
    if member.isreg():
        return "file"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    if member.ischr() or member.isblk():
        raise _Refused(f"{what} is a device file")
    if member.isfifo():
        raise _Refused(f"{what} is a FIFO (named pipe)")
    raise _Refused(f"{what} is a special file (tar type '{member.type}')")


def _check_parents(tree: _Tree, parts: tuple[str, ...], what: str) -> None:
    """Refuse a member written through a link or inside a file; record its parent folders."""
    for depth in range(1, len(parts)):
        parent = parts[:depth]
        if parent in tree.links:
            raise _Refused(f"{what} is written through the symbolic link '{'/'.join(parent)}'")
        if tree.kinds.get(parent) == "file":
            raise _Refused(f"{what} is written inside the file '{'/'.join(parent)}'")
        tree.kinds.setdefault(parent, "dir")


def _record_member(
    tree: _Tree,
    files: dict[str, tarfile.TarInfo],
    member: tarfile.TarInfo,
    parts: tuple[str, ...],
    what: str,
) -> None:
    """Check one member against the members before it and add it to ``tree`` and ``files``."""
    kind = _member_kind(member, what)
    previous = tree.kinds.get(parts)
    if previous is not None and not (previous == kind == "dir"):
        raise _Refused(f"{what} appears twice in the archive")
    _check_parents(tree, parts, what)
    if kind == "hardlink":
        target = "/".join(_parts(member.linkname, f"the target of {what}"))
        if files.get(target) is None:
            raise _Refused(
                f"{what} is a hard link to '{member.linkname}', which is not an earlier "
                "regular file of the archive"
            )
        files["/".join(parts)] = files[target]
        kind = "file"
    elif kind == "file":
        files["/".join(parts)] = member
    elif kind == "symlink":
        if not member.linkname:
            raise _Refused(f"{what} is a symbolic link with an empty target")
        tree.links[parts] = member.linkname
    tree.kinds[parts] = kind


def _check_members(members: list[tarfile.TarInfo]) -> dict[str, tarfile.TarInfo]:
    """Check every member before anything is written; return the regular files by name.

    Refused: absolute, drive-letter, backslash or ``..`` names; device files, FIFOs and other
    special members; a name used twice (except folders); a member written through a symbolic
    link; symbolic links whose target (after following the archive's other links) is absolute or
    outside the destination, or that loop; hard links to anything but an earlier regular file.

    Raises:
        _Refused: naming the member and the reason.
    """
    tree = _Tree()
    files: dict[str, tarfile.TarInfo] = {}
    for member in members:
        what = f"member '{member.name}'"
        parts = _parts(member.name, what)
        if not parts:
            if member.isdir():
                continue  # "." or "./": the destination itself
            raise _Refused(f"{what} names the destination folder itself")
        _record_member(tree, files, member, parts, what)
    # Links are judged on the finished tree: a link may point through links defined later.
    for parts in list(tree.links):
        try:
            tree.resolve(parts)
        except _Refused as exc:
            target = tree.links[parts]
            raise _Refused(
                f"member '{'/'.join(parts)}' is a link to '{target}', which {exc}"
            ) from None
    return files


def _write_members(
    tar: tarfile.TarFile,
    members: list[tarfile.TarInfo],
    dest: Path,
    files: dict[str, tarfile.TarInfo],
) -> None:
    """Write checked members under ``dest``: folders, regular files, then symbolic links."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    links: list[tuple[Path, str]] = []
    for member in members:
        parts = tuple(p for p in member.name.split("/") if p not in ("", "."))
        if not parts:
            continue
        path = dest.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        if member.isdir():
            path.mkdir(exist_ok=True)
        elif member.issym():
            links.append((path, member.linkname))
        else:
            source = files["/".join(parts)]
            handle = tar.extractfile(source)
            if handle is None:
                raise _Refused(f"member '{member.name}' has no data")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | nofollow, 0o644)
            with handle, os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(handle, out, _CHUNK)
    for path, target in links:  # last, so no file is ever written through one
        os.symlink(target, path)


def safe_extract(archive: Path, dest: Path) -> None:
    """Unpack a tar archive into ``dest``, checking every member before writing anything.

    The checks are this module's own (tarfile's ``"data"`` filter has published bypasses on
    the Python versions the project allows, e.g. CVE-2025-4517): absolute, drive-letter,
    backslash and ``..`` names, device files, FIFOs and other special members, names used twice,
    members written through a symbolic link, symbolic links (also chains of them) whose target
    is absolute or resolves outside ``dest``, and hard links to anything but an earlier regular
    file of the archive are all refused. Members are then written by this function (regular
    files with ``O_EXCL | O_NOFOLLOW``, mode 0644; symbolic links last); ownership, modes and
    times from the archive are not applied.

    Args:
        archive: A ``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2`` or ``.tar.xz`` file.
        dest: An existing, empty folder.

    Raises:
        DismaxError: If the archive is unreadable or a member is refused; nothing is written
            in either case (a failure while writing removes what was written).
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            try:
                files = _check_members(members)
            except _Refused as exc:
                raise DismaxError(
                    f"archive {archive.name} refused: {' '.join(str(exc).split())}; nothing was "
                    "extracted, fetch the published archive instead"
                ) from None
            try:
                _write_members(tar, members, dest, files)
            except BaseException:
                for child in list(dest.iterdir()):
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
                raise
    except (tarfile.TarError, EOFError, OSError, zlib.error, _Refused) as exc:
        raise DismaxError(
            f"archive {archive.name} cannot be unpacked ({one_line(exc, 120)}); delete it and "
            "fetch it again"
        ) from None


@contextlib.contextmanager
def scratch_dir(parent: Path) -> Iterator[Path]:
    """Create a hidden temporary folder inside ``parent`` and always remove it afterwards.

    ``parent`` and any folders created for it are removed again if they end up empty, so a
    failed attempt leaves nothing behind.
    """
    created: list[Path] = []
    p = parent
    while not p.exists():
        created.append(p)
        p = p.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-dismax-", dir=parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when empty


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write an uncompressed ``.npz`` atomically (temporary file + :func:`os.replace`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: np.savez(handle, **arrays))
