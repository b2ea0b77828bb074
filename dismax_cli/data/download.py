"""Network and file plumbing: offline switch, fast failure, verified downloads, safe extraction.

Everything here either finishes completely or leaves nothing behind: downloads stream into a
temporary folder inside the data directory, are checked against a pinned MD5, are unpacked
with tarfile's ``"data"`` filter (no path traversal, no links out, no device files) and are
only then moved into place with :func:`os.replace`; caches are written through a temporary
file and :func:`os.replace` as well.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import tarfile
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dismax_cli.errors import DismaxError
from dismax_cli.fileio import atomic_write

#: Environment variable that disables every download when set to 1/true/yes/on.
OFFLINE_ENV = "DISMAX_OFFLINE"
#: Environment variable with the network timeout in seconds (connect and each read).
TIMEOUT_ENV = "DISMAX_NET_TIMEOUT"
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
    """Return the network timeout in seconds (``DISMAX_NET_TIMEOUT``, default 10)."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise DismaxError(
            f"{TIMEOUT_ENV}={raw!r} is not a number of seconds; set it to e.g. 10"
        ) from None
    if value <= 0:
        raise DismaxError(f"{TIMEOUT_ENV}={raw!r} must be positive; set it to e.g. 10")
    return value


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
        return f"bad URL {url!r}"
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


def safe_extract(archive: Path, dest: Path) -> None:
    """Unpack a tar archive into ``dest`` with path-traversal protection.

    Every member is checked with tarfile's ``"data"`` filter before anything is written
    (absolute paths are made relative; ``..`` escapes, links leading outside, device files and
    special bits are refused), then the archive is extracted with the same filter.

    Args:
        archive: A ``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2`` or ``.tar.xz`` file.
        dest: An existing, empty folder.

    Raises:
        DismaxError: If the archive is unreadable or a member would escape ``dest``.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                try:
                    tarfile.data_filter(member, str(dest))
                except tarfile.FilterError as exc:
                    raise DismaxError(
                        f"archive {archive.name} refused: member {member.name!r} is unsafe "
                        f"({one_line(exc, 120)}); fetch the published archive instead"
                    ) from None
            tar.extractall(dest, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise DismaxError(
            f"archive {archive.name} refused: {one_line(exc, 150)}; fetch the published "
            "archive instead"
        ) from None
    except (tarfile.TarError, EOFError, OSError) as exc:
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
