"""ODIN's 32x32 out-of-distribution sets: pinned archives, verified download, one-time cache.

Liang, Li & Srikant, "Enhancing the Reliability of Out-of-distribution Image Detection in Neural
Networks" (ODIN), arXiv:1706.02690; archives released with github.com/facebookresearch/odin.

Layout inside the data directory (``DATA_DIR/odin/``):

* ``<Archive>.tar.gz`` - an archive fetched by hand (verified against the MD5 below, unpacked);
* ``<name>/`` - the unpacked archive (JPEG/PNG files, found recursively; their number must be
  the archive's pinned ``n_images``, 10,000 or 8,925 for iSUN, else loading is an error);
* ``<name>.npz`` - the uint8 cache built once from the unpacked images (``x``, ``filenames``,
  ``source``), written atomically.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dismax_cli.data.download import (
    atomic_save_npz,
    check_md5,
    downloads_enabled,
    offline,
    probe,
    safe_extract,
    scratch_dir,
    stream_download,
)
from dismax_cli.data.files import RawArrays, decode_files, scan_image_files
from dismax_cli.errors import DismaxError, quote_path


@dataclass(frozen=True)
class OdinArchive:
    """One pinned ODIN archive.

    Attributes:
        filename: Archive file name (also the name to save a hand-fetched copy under).
        url: Public download URL (Dropbox ``/s/raw/`` form serves the file itself).
        md5: Published MD5 of the archive.
        n_images: Number of images it holds.
        description: What the images are.
        licence: Licence note for listings.
    """

    filename: str
    url: str
    md5: str
    n_images: int
    description: str
    licence: str


_IMAGENET_TERMS = "ImageNet terms: non-commercial research and education only"
_LSUN_TERMS = "LSUN terms: research use only"

# URLs and MD5s as published in pytorch-ood, src/pytorch_ood/dataset/img/odin.py
# (github.com/kkirchheim/pytorch-ood; TinyImageNetCrop, TinyImageNetResize, LSUNCrop,
# LSUNResize) and, for iSUN, in the detectors library's iSUN dataset class
# (github.com/edadaltocg/detectors); the same table is in METHOD.md section 7.
# Tests replace entries of this dict to point at a local server.
ODIN_ARCHIVES: dict[str, OdinArchive] = {
    "tin_crop": OdinArchive(
        filename="Imagenet.tar.gz",
        url="https://www.dropbox.com/s/raw/avgm2u562itwpkl/Imagenet.tar.gz",
        md5="7c0827e4246c3718a5ee076e999e52e5",
        n_images=10_000,
        description="TinyImageNet test, random 32x32 crops (ODIN)",
        licence=_IMAGENET_TERMS,
    ),
    "tin_resize": OdinArchive(
        filename="Imagenet_resize.tar.gz",
        url="https://www.dropbox.com/s/raw/kp3my3412u5k9rl/Imagenet_resize.tar.gz",
        md5="0f9ff11d45babf2eff5fe12281d1ac31",
        n_images=10_000,
        description="TinyImageNet test, resized to 32x32 (ODIN)",
        licence=_IMAGENET_TERMS,
    ),
    "lsun_crop": OdinArchive(
        filename="LSUN.tar.gz",
        url="https://www.dropbox.com/s/raw/fhtsw1m3qxlwj6h/LSUN.tar.gz",
        md5="458a0a0ab8e5f1cb4516d7400568e460",
        n_images=10_000,
        description="LSUN test, random 32x32 crops (ODIN)",
        licence=_LSUN_TERMS,
    ),
    "lsun_resize": OdinArchive(
        filename="LSUN_resize.tar.gz",
        url="https://www.dropbox.com/s/raw/moqh2wh8696c3yl/LSUN_resize.tar.gz",
        md5="278b7b31c8cb7e804a1465a8ce03a2dc",
        n_images=10_000,
        description="LSUN test, resized to 32x32 (ODIN)",
        licence=_LSUN_TERMS,
    ),
    "isun": OdinArchive(
        filename="iSUN.tar.gz",
        url="https://www.dropbox.com/s/raw/ssz7qxfqae0cca5/iSUN.tar.gz",
        md5="be77b0f2c26fda898afac5f99645ee70",
        n_images=8_925,
        description="iSUN saliency patches, 32x32 (ODIN)",
        licence="iSUN (Xu et al. 2015): research use",
    ),
}


def odin_dir(data_dir: Path) -> Path:
    """Return the folder that holds ODIN archives, unpacked folders and caches."""
    return data_dir / "odin"


def odin_paths(name: str, data_dir: Path) -> tuple[Path, Path, Path]:
    """Return ``(cache_npz, unpacked_folder, archive)`` for an ODIN set."""
    root = odin_dir(data_dir)
    return root / f"{name}.npz", root / name, root / ODIN_ARCHIVES[name].filename


def odin_present(name: str, data_dir: Path) -> bool:
    """Return True if the cache, the unpacked folder or the archive is in the data dir."""
    cache, folder, archive = odin_paths(name, data_dir)
    return cache.is_file() or folder.is_dir() or archive.is_file()


def _not_available(name: str, data_dir: Path, reason: str) -> DismaxError:
    cache, folder, archive = odin_paths(name, data_dir)
    entry = ODIN_ARCHIVES[name]
    return DismaxError(
        f"dataset '{name}' is not in {quote_path(data_dir)} (looked for {quote_path(cache)}, "
        f"{quote_path(folder)} and {quote_path(archive)}) and cannot be downloaded ({reason}); "
        f"fetch {entry.url} by hand and save it as {quote_path(archive)}, "
        f"or pass npz:PATH / imagefolder:PATH instead"
    )


def missing_error(name: str, data_dir: Path) -> DismaxError:
    """The error of a set that is not on disk and may not be downloaded (how to fetch it)."""
    return _not_available(
        name, data_dir, "DISMAX_OFFLINE=1" if offline() else "downloads disabled"
    )


def _count_error(name: str, where: str, found: int, remove: Path, note: str = "") -> DismaxError:
    """The error for an ODIN set whose image count is not its pinned one (METHOD.md §7)."""
    entry = ODIN_ARCHIVES[name]
    return DismaxError(
        f"{where} of dataset '{name}' holds {found:,} images{note}, but the published "
        f"{entry.filename} holds {entry.n_images:,}: it is incomplete or another set; delete "
        f"{quote_path(remove)} and fetch {entry.filename} again (or load these images as "
        "imagefolder:PATH)"
    )


def _build_cache(name: str, folder: Path, cache: Path) -> RawArrays:
    files, skipped = scan_image_files(folder, recursive=True)
    if len(files) != ODIN_ARCHIVES[name].n_images:
        note = f" ({skipped.describe()})" if skipped.total else ""
        raise _count_error(name, f"unpacked folder {quote_path(folder)}", len(files), folder, note)
    images = decode_files(files, size=32, where=f"dataset '{name}' in {quote_path(folder)}")
    source = ODIN_ARCHIVES[name].url
    filenames = np.array([f.relative_to(folder).as_posix() for f in files])
    atomic_save_npz(cache, x=images, filenames=filenames, source=np.array([source]))
    return RawArrays(images=images, labels=None, classes=(), source=source)


def _unpack(name: str, archive: Path, folder: Path) -> None:
    """Verify ``archive`` and unpack it into ``folder`` (atomically moved into place)."""
    entry = ODIN_ARCHIVES[name]
    check_md5(archive, entry.md5, what=f"archive {quote_path(archive)} of dataset '{name}'")
    with scratch_dir(folder.parent) as tmp:
        staging = tmp / "unpacked"
        staging.mkdir()
        safe_extract(archive, staging)
        os.replace(staging, folder)


def load_odin(name: str, data_dir: Path, *, download: bool) -> RawArrays:
    """Return an ODIN set's images, fetching and caching them on first use.

    Order: the ``.npz`` cache; else the unpacked folder (cached now); else a hand-fetched
    archive in ``DATA_DIR/odin/`` (verified, unpacked, cached); else a download (unless
    ``download`` is False or ``DISMAX_OFFLINE=1``) streamed to a temporary file inside the data
    dir, verified against the pinned MD5, unpacked with path-traversal protection and moved
    into place. Any failure removes what it had written.

    Args:
        name: A key of :data:`ODIN_ARCHIVES`.
        data_dir: The data directory.
        download: Whether a download may be tried.

    Returns:
        Unlabelled uint8 images.

    Raises:
        DismaxError: If the set is absent and cannot be downloaded (one line naming the set,
            the folder searched, the URL to fetch by hand), if a checksum or archive member
            is wrong, or if the cache or unpacked folder does not hold the pinned number of
            images (both counts are named).
    """
    entry = ODIN_ARCHIVES[name]
    cache, folder, archive = odin_paths(name, data_dir)
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as npz:
                raw = RawArrays(
                    images=npz["x"], labels=None, classes=(), source=str(npz["source"][0])
                )
        except (OSError, ValueError, KeyError):
            cache.unlink(missing_ok=True)  # a broken cache is rebuilt below
        else:
            if len(raw.images) != entry.n_images:
                raise _count_error(name, f"cache {quote_path(cache)}", len(raw.images), cache)
            return raw
    if folder.is_dir():
        return _build_cache(name, folder, cache)
    if archive.is_file():
        _unpack(name, archive, folder)
        try:
            return _build_cache(name, folder, cache)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # unpacked here: leave nothing half-done
            raise
    if not downloads_enabled(download):
        reason = "DISMAX_OFFLINE=1" if offline() else "downloads disabled"
        raise _not_available(name, data_dir, reason)
    unreachable = probe(entry.url)
    if unreachable:
        raise _not_available(name, data_dir, unreachable)
    with scratch_dir(odin_dir(data_dir)) as tmp:
        partial = tmp / entry.filename
        try:
            md5 = stream_download(entry.url, partial)
        except DismaxError as exc:
            raise _not_available(name, data_dir, str(exc).split(";")[0]) from None
        if md5 != entry.md5.lower():
            raise DismaxError(
                f"download of dataset '{name}' from {entry.url} has MD5 {md5}, expected "
                f"{entry.md5}; nothing was kept, rerun later or fetch the archive by hand and "
                f"check its MD5"
            )
        staging = tmp / "unpacked"
        staging.mkdir()
        safe_extract(partial, staging)
        os.replace(staging, folder)
    try:
        return _build_cache(name, folder, cache)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
