"""ODIN archive downloads against a local HTTP server: verify, extract safely, leave no debris."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dismax_cli.data import ODIN_ARCHIVES, OdinArchive, clear_cache, list_datasets, load_dataset
from dismax_cli.data.download import safe_extract
from dismax_cli.errors import DismaxError


class _Server:
    """Serves ``files`` (path -> bytes); ``/truncated/...`` sends half and hangs up."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                server.requests.append(self.path)
                body = server.files.get(self.path.removeprefix("/truncated"))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path.startswith("/truncated"):
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def data_server() -> Iterator[_Server]:
    with _Server() as server:
        yield server


@pytest.fixture(autouse=True)
def data_online(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("DISMAX_OFFLINE", raising=False)
    monkeypatch.setenv("DISMAX_NET_TIMEOUT", "3")
    clear_cache()
    yield
    clear_cache()


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _targz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def _odin_archive(images: np.ndarray) -> bytes:
    # ODIN's layout: Imagenet_resize/Imagenet_resize/<file>
    return _targz(
        {f"Imagenet_resize/Imagenet_resize/{i:05d}.png": _png(im) for i, im in enumerate(images)}
    )


def _point_at(
    monkeypatch: pytest.MonkeyPatch, name: str, url: str, md5: str, n: int
) -> OdinArchive:
    entry = OdinArchive(
        filename=ODIN_ARCHIVES[name].filename, url=url, md5=md5, n_images=n,
        description="test archive", licence="test",
    )  # fmt: skip
    monkeypatch.setitem(ODIN_ARCHIVES, name, entry)
    return entry


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_download_verifies_extracts_and_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_server: _Server
) -> None:
    images = _images(12)
    archive = _odin_archive(images)
    data_server.files["/Imagenet_resize.tar.gz"] = archive
    md5 = hashlib.md5(archive).hexdigest()
    _point_at(monkeypatch, "tin_resize", data_server.url + "/Imagenet_resize.tar.gz", md5, 12)
    data_dir = tmp_path / "data"
    s = load_dataset("imagenet_resize", split="all", data_dir=data_dir)
    assert len(s) == 12 and s.image_shape == (32, 32, 3) and s.labels is None
    np.testing.assert_array_equal(s.images.numpy(), images)
    assert s.origin == "odin:tin_resize" and not s.synthetic
    odin = data_dir / "odin"
    assert (odin / "tin_resize.npz").is_file()
    assert len(list((odin / "tin_resize").rglob("*.png"))) == 12
    assert not [p for p in odin.iterdir() if p.name.startswith(".tmp")]
    with np.load(odin / "tin_resize.npz") as cache:
        np.testing.assert_array_equal(cache["x"], images)
    # the cache serves later loads without the network
    clear_cache()
    monkeypatch.setenv("DISMAX_OFFLINE", "1")
    n_requests = len(data_server.requests)
    again = load_dataset("tin_resize", split="test", data_dir=data_dir)
    assert len(again) == round(12 * 0.2) and len(data_server.requests) == n_requests
    assert {d.name: d.present for d in list_datasets(data_dir)}["tin_resize"] is True


def test_wrong_checksum_names_expected_hash_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_server: _Server
) -> None:
    data_server.files["/Imagenet_resize.tar.gz"] = _odin_archive(_images(3))
    wrong = "0" * 32
    _point_at(monkeypatch, "tin_resize", data_server.url + "/Imagenet_resize.tar.gz", wrong, 3)
    data_dir = tmp_path / "data"
    with pytest.raises(DismaxError) as info:
        load_dataset("tin_resize", split="all", data_dir=data_dir)
    assert wrong in str(info.value) and "\n" not in str(info.value)
    assert _files_under(data_dir) == []
    assert not (data_dir / "odin").exists()


def test_archive_with_parent_member_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_server: _Server
) -> None:
    evil = _targz({"Imagenet_resize/a.png": _png(_images(1)[0]), "../escaped.txt": b"gotcha"})
    data_server.files["/Imagenet_resize.tar.gz"] = evil
    md5 = hashlib.md5(evil).hexdigest()
    _point_at(monkeypatch, "tin_resize", data_server.url + "/Imagenet_resize.tar.gz", md5, 1)
    data_dir = tmp_path / "data"
    with pytest.raises(DismaxError, match="refused") as info:
        load_dataset("tin_resize", split="all", data_dir=data_dir)
    assert "../escaped.txt" in str(info.value)
    assert _files_under(data_dir) == []
    assert not list(tmp_path.rglob("escaped.txt"))


def test_safe_extract_refuses_absolute_link_out(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        link = tarfile.TarInfo("x/link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(buf.getvalue())
    (tmp_path / "out").mkdir()
    with pytest.raises(DismaxError, match="refused"):
        safe_extract(archive, tmp_path / "out")
    assert _files_under(tmp_path / "out") == []


def test_interrupted_download_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_server: _Server
) -> None:
    archive = _odin_archive(_images(40))
    data_server.files["/LSUN_resize.tar.gz"] = archive
    md5 = hashlib.md5(archive).hexdigest()
    url = data_server.url + "/truncated/LSUN_resize.tar.gz"
    _point_at(monkeypatch, "lsun_resize", url, md5, 40)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    start = time.monotonic()
    with pytest.raises(DismaxError) as info:
        load_dataset("lsun_resize", split="all", data_dir=data_dir)
    assert time.monotonic() - start < 10
    msg = str(info.value)
    assert "interrupted" in msg and "lsun_resize" in msg and "\n" not in msg
    assert _files_under(data_dir) == [] and list(data_dir.iterdir()) == []


def test_hand_fetched_archive_is_verified_and_used_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = _images(5, seed=2)
    archive = _targz({f"iSUN/iSUN_patches/{i}.png": _png(im) for i, im in enumerate(images)})
    md5 = hashlib.md5(archive).hexdigest()
    _point_at(monkeypatch, "isun", "http://127.0.0.1:9/iSUN.tar.gz", md5, 5)
    monkeypatch.setenv("DISMAX_OFFLINE", "1")
    data_dir = tmp_path / "data"
    with pytest.raises(DismaxError) as info:
        load_dataset("isun", split="all", data_dir=data_dir)
    msg = str(info.value)
    assert "\n" not in msg and "'isun'" in msg and str(data_dir / "odin" / "iSUN.tar.gz") in msg
    assert "http://127.0.0.1:9/iSUN.tar.gz" in msg
    (data_dir / "odin").mkdir(parents=True)
    (data_dir / "odin" / "iSUN.tar.gz").write_bytes(archive)
    s = load_dataset("isun", split="all", data_dir=data_dir)
    np.testing.assert_array_equal(s.images.numpy(), images)
    (data_dir / "odin" / "iSUN.tar.gz").write_bytes(archive[:-10] + b"0" * 10)
    (data_dir / "odin" / "isun.npz").unlink()
    shutil.rmtree(data_dir / "odin" / "isun")
    clear_cache()
    with pytest.raises(DismaxError, match=md5):
        load_dataset("isun", split="all", data_dir=data_dir)


# ------------------------------------------------------- safe_extract: every member checked first


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = ""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def _tar(tmp_path: Path, members: list) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    archive = tmp_path / "a.tar"
    archive.write_bytes(buf.getvalue())
    return archive


GOOD = _member("data/ok.png", data=b"fine")  # written first: refusals must not keep it

REFUSED = {
    "absolute": ([_member("/tmp/abs.txt", data=b"x")], "absolute"),
    "parent": ([_member("data/../../up.txt", data=b"x")], "'..'"),
    "drive-letter": ([_member("C:/evil.txt", data=b"x")], "drive letter"),
    "drive-relative": ([_member("C:evil.txt", data=b"x")], "drive letter"),
    "backslash": ([_member("data\\..\\..\\evil.txt", data=b"x")], "backslash"),
    "char-device": ([_member("data/null", tarfile.CHRTYPE)], "device file"),
    "block-device": ([_member("data/sda", tarfile.BLKTYPE)], "device file"),
    "fifo": ([_member("data/pipe", tarfile.FIFOTYPE)], "FIFO"),
    "symlink-absolute": ([_member("data/l", tarfile.SYMTYPE, link="/etc/passwd")], "absolute"),
    "symlink-windows": ([_member("data/l", tarfile.SYMTYPE, link="C:\\Windows")], "Windows"),
    "symlink-up": ([_member("data/l", tarfile.SYMTYPE, link="../../outside")], "outside"),
    "symlink-chain": (
        [  # each link stays inside read as text; followed, a leads out: data/p/.. /.. = ../
            _member("data/p", tarfile.SYMTYPE, link="."),
            _member("data/a", tarfile.SYMTYPE, link="p/../.."),
        ],
        "outside",
    ),
    "symlink-chain-forward": (
        [  # the first link only escapes through a link defined after it
            _member("data/first", tarfile.SYMTYPE, link="later/../x"),
            _member("data/later", tarfile.SYMTYPE, link="../.."),
        ],
        "outside",
    ),
    "symlink-loop": (
        [
            _member("data/a", tarfile.SYMTYPE, link="b"),
            _member("data/b", tarfile.SYMTYPE, link="a"),
        ],
        "loop",
    ),
    "written-through-symlink": (
        [
            _member("data/dir", tarfile.SYMTYPE, link="."),  # points inside: fine by itself
            _member("data/dir/evil.txt", data=b"x"),
        ],
        "through the symbolic link",
    ),
    "written-through-symlink-out": (
        [
            _member("data/escape", tarfile.SYMTYPE, link="/tmp"),
            _member("data/escape/evil.txt", data=b"x"),
        ],
        "symbolic link",
    ),
    "hardlink-out": ([_member("data/h", tarfile.LNKTYPE, link="/etc/passwd")], "absolute"),
    "hardlink-up": ([_member("data/h", tarfile.LNKTYPE, link="../../etc/passwd")], "'..'"),
    "hardlink-to-missing": ([_member("data/h", tarfile.LNKTYPE, link="nowhere")], "hard link"),
    "hardlink-through-symlink": (
        [
            _member("data/up", tarfile.SYMTYPE, link=".."),
            _member("data/h", tarfile.LNKTYPE, link="data/up/data/ok.png"),
        ],
        "hard link",
    ),
    "duplicate-file-then-link": (
        [_member("data/ok.png", tarfile.SYMTYPE, link="/etc/passwd")],
        "twice",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_safe_extract_refuses_unsafe_members_and_writes_nothing(tmp_path: Path, case: str) -> None:
    members, reason = REFUSED[case]
    archive = _tar(tmp_path, [GOOD, *members])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DismaxError, match="refused") as info:
        safe_extract(archive, out)
    message = str(info.value)
    assert reason in message and "\n" not in message
    assert list(out.iterdir()) == []  # not even the good member written before the bad one
    assert not list(tmp_path.rglob("evil.txt")) and not list(tmp_path.rglob("up.txt"))


def test_safe_extract_keeps_safe_links_and_files(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path,
        [
            _member("data/", tarfile.DIRTYPE),
            GOOD,
            _member("data/sub/b.png", data=b"second"),
            _member("data/alias.png", tarfile.SYMTYPE, link="sub/../ok.png"),
            _member("data/copy.png", tarfile.LNKTYPE, link="data/sub/b.png"),
            _member("./", tarfile.DIRTYPE),
        ],
    )
    out = tmp_path / "out"
    out.mkdir()
    safe_extract(archive, out)
    assert (out / "data" / "ok.png").read_bytes() == b"fine"
    assert (out / "data" / "alias.png").is_symlink()
    assert (out / "data" / "alias.png").read_bytes() == b"fine"
    assert (out / "data" / "copy.png").read_bytes() == b"second"
    assert not (out / "data" / "copy.png").is_symlink()
