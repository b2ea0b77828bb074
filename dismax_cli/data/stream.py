"""Streamed image sets: files decoded by DataLoader workers instead of one uint8 tensor.

A set too large for memory (README "Streaming") is a :class:`StreamSet`: the sorted relative
paths of its files (one numpy byte-string array), their byte sizes, labels and provenance, but no
pixels. Training and scoring read it through a ``torch.utils.data.DataLoader`` whose worker
processes decode, augment and normalise each image (torchvision transforms v2) and collate the
batches, so peak memory depends on the batch size and worker count, not on the number of images.

When it streams: ``--stream`` always, ``--no-stream`` never, and by default (``stream: null``)
when the uint8 array the in-memory path would hold, ``N × H × W × 3`` bytes with ``H × W`` read
from the first file's header, exceeds :data:`STREAM_ABOVE_BYTES` (2 GiB). Library calls of
:func:`~dismax_cli.data.load_dataset` never stream unless asked (:func:`streaming`).

Determinism: batch order and one base seed come from the epoch's generator; image ``i`` of the
epoch draws its crop and flip from a generator seeded by ``(base, position of i)``, so the
batches do not depend on the number of workers, and a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dismax_cli.data.imageset import ImageSetBase
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q

#: Above this many bytes of decoded uint8 pixels a set streams when ``stream`` is null (auto).
STREAM_ABOVE_BYTES = 2 * 1024**3
#: Images whose pixels estimate a streamed set's mean/std when it has no known constants.
STATS_SAMPLE = 1000

_MODE: ContextVar[bool | None] = ContextVar("dismax_stream_mode", default=False)
_OVERRIDE: ContextVar[tuple[bool | None] | None] = ContextVar(
    "dismax_stream_override", default=None
)


@contextlib.contextmanager
def streaming(mode: bool | None) -> Iterator[None]:
    """Load sets in the block with stream ``mode``: True, False or None (auto by size).

    A :func:`stream_override` around the block wins over ``mode``.
    """
    override = _OVERRIDE.get()
    token = _MODE.set(override[0] if override is not None else mode)
    try:
        yield
    finally:
        _MODE.reset(token)


@contextlib.contextmanager
def stream_override(mode: bool | None) -> Iterator[None]:
    """Force stream ``mode`` in the block, also over a run's own setting (score, calibrate)."""
    token = _OVERRIDE.set((mode,))
    mode_token = _MODE.set(mode)
    try:
        yield
    finally:
        _MODE.reset(mode_token)
        _OVERRIDE.reset(token)


def stream_mode() -> bool | None:
    """The stream mode of the current block (False outside any :func:`streaming`)."""
    return _MODE.get()


def wants_stream(n: int, first_file: Path) -> bool:
    """Whether a set of ``n`` files like ``first_file`` streams under the current mode.

    Raises:
        DismaxError: If auto mode cannot read the first file's header.
    """
    mode = stream_mode()
    if mode is not None:
        return bool(mode)
    return estimate_bytes(n, first_file) > STREAM_ABOVE_BYTES


def estimate_bytes(n: int, first_file: Path) -> int:
    """``n × H × W × 3``: the uint8 bytes of ``n`` RGB images the size of ``first_file``."""

    from dismax_cli.fileio import open_image

    try:
        with open_image(first_file) as im:
            width, height = im.size
    except Exception as exc:  # Pillow raises many types on bad data
        raise DismaxError(
            f"image {q(first_file)} cannot be read ({exc}); remove or replace it"
        ) from None
    return int(n) * int(width) * int(height) * 3


def default_workers() -> int:
    """DataLoader workers: ``$DISMAX_WORKERS``, else ``min(4, CPU count)``.

    Raises:
        InvalidValueError: (exit 2) If the variable is not an integer from 0 to 256
            (:data:`dismax_cli.env_settings.WORKERS`).
    """
    from dismax_cli.env_settings import WORKERS, env_number

    value = env_number(WORKERS)  # ASCII digits only (dismax_cli.numbers)
    return min(4, os.cpu_count() or 1) if value is None else int(value)


@dataclass(frozen=True, eq=False)
class ImageFiles:
    """The files of a streamed set: what :attr:`StreamSet.images` is instead of a tensor.

    Attributes:
        root: The folder the paths are relative to.
        paths: Relative paths as a numpy byte-string array ``(N,)`` (UTF-8).
        sizes: File sizes in bytes, int64 ``(N,)``.
        side: Nominal image side (the first file's shorter side, or the size asked for).

    Shape:
        ``shape`` is the nominal ``(N, side, side, 3)``; each file is decoded to RGB at its own
        size and brought to the model's size by the transform.
    """

    root: str
    paths: np.ndarray
    sizes: np.ndarray
    side: int

    def __len__(self) -> int:
        return int(len(self.paths))

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), self.side, self.side, 3)

    def __getitem__(self, key: slice | np.ndarray) -> ImageFiles:
        return replace(self, paths=self.paths[key], sizes=self.sizes[key])

    def path(self, i: int) -> Path:
        """The absolute path of file ``i``."""
        return Path(self.root) / self.paths[i].decode("utf-8")

    def decode(self, i: int) -> torch.Tensor:
        """File ``i`` as uint8 ``(H, W, 3)`` RGB.

        Raises:
            DismaxError: If the file cannot be decoded.
        """

        from dismax_cli.data.files import _convert, _decode_error
        from dismax_cli.fileio import open_image

        path = self.path(i)
        try:
            with open_image(path) as im:
                arr = np.asarray(_convert(im, "RGB"), dtype=np.uint8)
        except Exception as exc:  # truncated data surfaces only at decode time
            raise _decode_error(
                f"streamed set {q(self.root)}", f"image {q(path)}", exc
            ) from None
        return torch.from_numpy(arr.copy())

    def fingerprint(self) -> str:
        """sha256 of the nominal shape, the relative paths and the byte sizes (not the pixels)."""
        h = hashlib.sha256()
        h.update(repr(self.shape).encode())
        h.update(b"\0".join(self.paths.tolist()))
        h.update(np.ascontiguousarray(self.sizes, dtype="<i8").tobytes())
        return h.hexdigest()


@dataclass(frozen=True, eq=False, repr=False)
class StreamSet(ImageSetBase):
    """A split whose images stay on disk; the ``ImageSet`` interface without the pixels.

    Attributes:
        images: The :class:`ImageFiles` (also :attr:`files`).
        labels, classes, spec, split, source, synthetic, mean, std, augment, origin, indices:
            as :class:`~dismax_cli.data.imageset.ImageSetBase`.
    """

    images: ImageFiles

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return (
            f"StreamSet('{self.spec}', split='{self.split}', n={len(self)}, "
            f"root={self.files.root!r}, classes={self.num_classes})"
        )

    @property
    def files(self) -> ImageFiles:
        """The files (the ``images`` field; consumers that need pixels check for it)."""
        return self.images

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Nominal ``(side, side, 3)``."""
        return (self.files.side, self.files.side, 3)

    def pixels_sha256(self) -> str:
        """The file listing's fingerprint (:meth:`ImageFiles.fingerprint`), not the pixels'."""
        return self.files.fingerprint()

    def subset(self, idx: Any, *, split: str) -> StreamSet:
        """The files at positions ``idx`` (int array or bool mask) as a set named ``split``."""
        pos, origin_positions = self._positions(idx)
        labels = None if self.labels is None else self.labels.index_select(0, torch.from_numpy(pos))
        return replace(
            self, images=self.files[pos], labels=labels, split=split, indices=origin_positions
        )

    def sample_mean_std(
        self, *, size: int, channels: int
    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Mean/std of up to :data:`STATS_SAMPLE` evenly spaced images at ``size`` (fixed).

        Returns:
            ``(mean, std)`` of ``channels`` values each, on the 0..1 scale.
        """
        from dismax_cli.data.transforms import ImageTransform, _luma_mean_std, compute_mean_std

        n = len(self)
        picks = np.unique(np.linspace(0, n - 1, min(n, STATS_SAMPLE)).round().astype(np.int64))
        resize = ImageTransform(image_size=size, channels=3, mean=(0.0,), std=(1.0,))
        crops = []
        for i in picks:
            x = self.files.decode(int(i)).permute(2, 0, 1)[None].float().div(255.0)
            crops.append(resize.from_float(x).mul(255.0).round().clamp(0, 255).to(torch.uint8))
        pixels = torch.cat(crops).permute(0, 2, 3, 1).contiguous()
        if channels == 1:
            return _luma_mean_std(pixels)
        return compute_mean_std(pixels)


def scan_image_folder(
    folder: Path, *, where: str, example: str = "png"
) -> tuple[list[Path], np.ndarray | None, tuple[str, ...], Any]:
    """The image files of an existing ``folder`` in reading order, without decoding them.

    The layouts of :func:`~dismax_cli.data.files.read_image_folder` (``folder/<class>/<image>``
    or flat). Returns ``(files, labels or None, classes, skipped)``.

    Raises:
        DismaxError: If the folder holds no images (``where`` names it in the message).
    """
    from dismax_cli.data.files import IMAGE_EXTENSIONS, Skipped, _class_layout, scan_image_files

    entries = list(folder.iterdir())
    skipped = Skipped(hidden=sum(p.is_dir() and p.name.startswith(".") for p in entries))
    labelled = _class_layout(entries)
    labels: np.ndarray | None
    if labelled is not None:
        files, labels, classes, more = labelled
    else:
        files, more = scan_image_files(folder, recursive=False)
        labels, classes = None, ()
    skipped = skipped + more
    if not files:
        note = f"; {skipped.describe()}" if skipped.total else ""
        raise DismaxError(
            f"{where} holds no images ({', '.join(IMAGE_EXTENSIONS)}{note}); use "
            f"folder/<class>/*.{example} or a flat folder of images"
        )
    return files, labels, classes, skipped


def scan_folder(
    folder: Path,
) -> tuple[list[Path], np.ndarray | None, tuple[str, ...], str]:
    """The files of an image folder in :func:`~dismax_cli.data.read_image_folder`'s order.

    Returns:
        ``(files, labels or None, classes, skipped text)``; the same layouts, order and skip
        rules as the in-memory reader, without decoding anything.

    Raises:
        DismaxError: If the folder holds no images.
    """
    files, labels, classes, skipped = scan_image_folder(
        folder, where=f"image folder {q(folder)}", example="jpg"
    )
    return files, labels, classes, skipped.describe()


def folder_stream_set(
    folder: Path,
    *,
    spec: str,
    origin: str,
    size: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    always: bool = False,
) -> StreamSet | None:
    """The whole of ``folder`` as a :class:`StreamSet` when it streams, else None.

    Streams when ``always`` or :func:`wants_stream` says so under the current mode (never
    inside no :func:`streaming` block, the library default).

    Args:
        folder: ``folder/<class>/<image>`` (labelled) or a flat folder (unlabelled).
        spec: The spec text (the set's ``spec``).
        origin: The set's origin for the overlap checks (as the in-memory set's).
        size: Nominal side (e.g. the ID set's when this is an OOD set); default the first
            file's shorter side.
        mean: Known normalisation mean, if any.
        std: Known normalisation std, if any.
        always: Stream whatever the mode (sets that have no in-memory path).

    Raises:
        DismaxError: If the folder holds no images or its first image cannot be read.
    """
    if not always and stream_mode() is False:
        return None
    files, labels, classes, skipped = scan_folder(folder)
    if not always and not wants_stream(len(files), files[0]):
        return None
    listing = listing_of(files, folder, side=first_side(files[0], size))
    n = len(files)
    return StreamSet(
        images=listing,
        labels=None if labels is None else torch.from_numpy(np.asarray(labels, np.int64)),
        classes=classes if labels is not None else (),
        spec=spec,
        split="all",
        source=f"{folder} ({skipped}; streamed)" if skipped else f"{folder} (streamed)",
        mean=mean,
        std=std,
        augment=True,
        origin=origin,
        indices=np.arange(n, dtype=np.int64),
    )


def listing_of(files: list[Path], root: Path, *, side: int) -> ImageFiles:
    """Compact :class:`ImageFiles` of ``files`` under ``root`` (relative UTF-8 paths, sizes)."""
    rel = [p.relative_to(root).as_posix().encode("utf-8") for p in files]
    paths = np.array(rel, dtype=np.bytes_) if rel else np.zeros(0, dtype="S1")
    sizes = np.fromiter((p.stat().st_size for p in files), dtype=np.int64, count=len(files))
    return ImageFiles(root=str(root), paths=paths, sizes=sizes, side=int(side))


def first_side(path: Path, size: int | None) -> int:
    """The nominal side of a streamed set: ``size`` if given, else the first file's shorter side."""
    if size is not None:
        return int(size)

    from dismax_cli.fileio import open_image

    with open_image(path) as im:
        return int(min(im.size))


__all__ = [
    "STATS_SAMPLE",
    "STREAM_ABOVE_BYTES",
    "ImageFiles",
    "StreamSet",
    "default_workers",
    "estimate_bytes",
    "first_side",
    "folder_stream_set",
    "listing_of",
    "scan_folder",
    "stream_mode",
    "stream_override",
    "streaming",
    "wants_stream",
]
