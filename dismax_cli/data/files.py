"""Readers for image sets on disk: ``.npz`` files (array or encoded-bytes layout) and folders.

Both return a :class:`RawArrays`: uint8 ``(N, H, W, C)`` numpy images plus optional labels and
class names. Images are decoded once, at load time, with Pillow; nothing is written to disk.
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dismax_cli.data.download import one_line
from dismax_cli.errors import DismaxError, quote_path
from dismax_cli.fileio import NotAFileError, file_problem, folder_problem, open_image

#: File name endings read as images (lower case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff")
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
#: 16-bit grey modes: scaled to 8 bits (x * 255 / 65535, rounded); a plain convert("L") clips.
_GREY16_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}
#: Side of the square images that mixed-size folders are brought to when no target is given.
DEFAULT_FOLDER_SIZE = 32


@dataclass(frozen=True)
class RawArrays:
    """Images and labels as numpy arrays, before they become an ImageSet.

    Attributes:
        images: uint8 ``(N, H, W, C)``, C in {1, 3}.
        labels: int64 ``(N,)`` or ``None``.
        classes: Class names (``()`` when unlabelled).
        source: Provenance.
    """

    images: np.ndarray
    labels: np.ndarray | None
    classes: tuple[str, ...]
    source: str


def _as_images(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype != np.uint8:
        raise DismaxError(
            f"{where}: array 'x' has dtype {x.dtype}, expected uint8 0..255; convert it with "
            "x.clip(0, 255).astype(np.uint8) (scale floats in 0..1 by 255 first)"
        )
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DismaxError(
            f"{where}: array 'x' has shape {x.shape}, expected N x H x W x C with C = 1 or 3; "
            "transpose channels-first data with x.transpose(0, 2, 3, 1)"
        )
    if min(x.shape[1], x.shape[2]) < 1:
        h, w = x.shape[1:3]
        raise DismaxError(f"{where}: images of height {h} and width {w}; both must be >= 1")
    return np.ascontiguousarray(x)


def _labels_and_classes(
    arrays: dict[str, np.ndarray], n: int, where: str
) -> tuple[np.ndarray | None, tuple[str, ...]]:
    if "y" not in arrays:
        return None, ()
    y = np.asarray(arrays["y"])
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise DismaxError(
            f"{where}: array 'y' has {y.dtype} {y.shape}, expected int64 ({n},) (one label per "
            "image); fix the file or drop 'y' to load it unlabelled"
        )
    y = y.astype(np.int64)
    if n and y.min() < 0:
        raise DismaxError(f"{where}: array 'y' has negative labels; labels must be 0..C-1")
    if "classes" in arrays:
        classes = tuple(str(c) for c in np.asarray(arrays["classes"]).reshape(-1))
    else:
        classes = _classes_from_labels(y, where)
    if n and int(y.max()) >= len(classes):
        raise DismaxError(
            f"{where}: label {int(y.max())} has no entry in 'classes' ({len(classes)} names); "
            "add the missing class names"
        )
    return y, classes


def _classes_from_labels(y: np.ndarray, where: str) -> tuple[str, ...]:
    """Class names ``"0".."K-1"`` for labels without a ``classes`` array; refuse gaps.

    Without names, every value up to the largest label becomes a class, so labels such as
    {0, 1, 2, 1000000} would silently make a million-class problem.
    """
    if not len(y):
        return ()
    present = np.unique(y)
    top = int(present[-1])
    if len(present) != top + 1:
        missing = int(np.setdiff1d(np.arange(min(top + 1, len(present) + 1)), present)[0])
        raise DismaxError(
            f"{where}: array 'y' has {len(present)} distinct labels but the largest is {top} "
            f"(label {missing} is unused) and there is no 'classes' array; relabel to "
            f"0..{len(present) - 1} (y = np.unique(y, return_inverse=True)[1]) or add a "
            f"'classes' array of {top + 1} names"
        )
    return tuple(str(i) for i in range(top + 1))


def _convert(im: Image.Image, mode: str) -> Image.Image:
    """Return ``im`` in ``mode`` (``"L"`` or ``"RGB"``), scaling 16-bit grey to 8 bits.

    Pillow's ``convert`` clips 16-bit values at 255, which turns a 16-bit photo almost white.
    """
    if im.mode in _GREY16_MODES or (im.mode == "I" and im.format == "PNG"):
        wide = np.clip(np.asarray(im).astype(np.int64), 0, 65535)
        im = Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8))
    return im if im.mode == mode else im.convert(mode)


def _decode_error(where: str, what: str, exc: BaseException) -> DismaxError:
    """A one-line error for an image Pillow could not decode."""
    if isinstance(exc, NotAFileError):  # a FIFO, folder or device: not a broken image
        return DismaxError(f"{where}: {what} {exc}")
    if isinstance(exc, Image.DecompressionBombError):
        reason = f"is too large to decode ({one_line(exc, 120)})"
        fix = "shrink it or remove it"
    elif isinstance(exc, UnidentifiedImageError):
        reason, fix = "is not in a recognised image format", "remove or replace it"
    else:
        reason, fix = f"is truncated or corrupt ({one_line(exc, 120)})", "remove or replace it"
    return DismaxError(f"{where}: {what} {reason}; {fix}")


def _decode(blob: bytes, mode: str | None, where: str, what: str) -> np.ndarray:
    """Decode one encoded image; ``mode`` None keeps grey as ``"L"``, else ``"RGB"``."""
    try:
        with Image.open(io.BytesIO(blob)) as im:
            if mode is None:
                mode = "L" if im.mode in _GREY_MODES else "RGB"
            return np.asarray(_convert(im, mode), dtype=np.uint8)
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ...) on bad data
        raise _decode_error(where, what, exc) from None


def _decode_bytes_file(arrays: dict[str, np.ndarray], where: str) -> np.ndarray:
    data = np.asarray(arrays["data"])
    offsets = np.asarray(arrays["offsets"])
    if (
        data.dtype != np.uint8
        or data.ndim != 1
        or offsets.ndim != 1
        or len(offsets) < 1
        or not np.issubdtype(offsets.dtype, np.integer)
    ):
        raise DismaxError(
            f"{where}: encoded-bytes layout needs 'data' uint8 (bytes) and 'offsets' int64 N+1; "
            f"got 'data' {data.dtype} {data.shape} and 'offsets' {offsets.dtype} {offsets.shape}"
        )
    offsets = offsets.astype(np.int64)
    n = len(offsets) - 1
    if n == 0:
        raise DismaxError(f"{where} holds no images; give a file with at least one image")
    if offsets[0] < 0 or offsets[-1] > len(data):
        raise DismaxError(
            f"{where}: 'offsets' run from {int(offsets[0])} to {int(offsets[-1])} but 'data' "
            f"holds {len(data)} bytes; rebuild the file (offsets[i]..offsets[i+1] = image i)"
        )
    steps = np.diff(offsets)
    if (steps <= 0).any():
        i = int(np.flatnonzero(steps <= 0)[0])
        how = f"'offsets' go backwards at image {i}" if steps[i] < 0 else f"image {i} is empty"
        raise DismaxError(
            f"{where}: {how} (offsets[{i}] = {int(offsets[i])}, offsets[{i + 1}] = "
            f"{int(offsets[i + 1])}); rebuild the file with increasing offsets "
            "(offsets[i]..offsets[i+1] = the bytes of image i)"
        )
    names = np.asarray(arrays.get("filenames", np.zeros(0))).reshape(-1)

    def what(i: int) -> str:
        return f"image {i} ({names[i]})" if len(names) == n else f"image {i}"

    buf = data.tobytes()
    first_arr = _decode(buf[offsets[0] : offsets[1]], None, where, what(0))
    mode = "L" if first_arr.ndim == 2 else "RGB"
    out = np.empty((n, *first_arr.shape), dtype=np.uint8)
    out[0] = first_arr
    for i in range(1, n):
        arr = _decode(buf[offsets[i] : offsets[i + 1]], mode, where, what(i))
        if arr.shape != first_arr.shape:
            raise DismaxError(
                f"{where}: image {i} is {arr.shape[1]}x{arr.shape[0]}, image 0 is "
                f"{first_arr.shape[1]}x{first_arr.shape[0]}; store images of one size or unpack "
                "them into a folder and use imagefolder:PATH"
            )
        out[i] = arr
    return out if out.ndim == 4 else out[..., None]


def _load_arrays(path: Path, where: str) -> dict[str, np.ndarray]:
    """Every array of an npz archive; pickled (object) arrays are never loaded."""
    fix = "write it with np.savez(path, x=images, y=labels)"
    try:
        with path.open("rb") as f:
            head = f.read(6)
    except OSError as exc:
        raise DismaxError(f"{where} cannot be read ({one_line(exc, 120)}); check it") from None
    if not head:
        raise DismaxError(f"{where} is empty or not an npz file (0 bytes); {fix}")
    if not head.startswith(b"PK"):
        kind = " (it holds a single .npy array)" if head == b"\x93NUMPY" else ""
        raise DismaxError(
            f"{where} is not an npz archive of arrays{kind}; {fix} (pickles are never loaded)"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {}
            for key in npz.files:
                try:
                    value = npz[key]
                except ValueError as exc:
                    if "pickle" not in str(exc):
                        raise
                    raise DismaxError(
                        f"{where}: array '{key}' holds Python objects (a pickle), which are "
                        "never loaded; store plain numeric or string arrays"
                    ) from None
                if not isinstance(value, np.ndarray):
                    raise DismaxError(
                        f"{where}: member '{key}' is not a .npy array, so this is a zip file "
                        f"but not an npz archive of arrays; {fix}"
                    )
                arrays[key] = value
    except DismaxError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise DismaxError(
            f"{where} is not a readable npz archive of arrays ({one_line(exc, 120)}); {fix}"
        ) from None
    return arrays


def read_npz(path: Path) -> RawArrays:
    """Read an image ``.npz`` in either layout of ``../shared/data``.

    * Array layout: ``x`` uint8 ``N x H x W x C`` (or ``N x H x W``), optional ``y`` int64
      ``N`` and ``classes`` (names, ``classes[y[i]]``), optional ``source``.
    * Encoded-bytes layout (``*_jpeg.npz``): ``data`` uint8 (the image files concatenated),
      ``offsets`` int64 ``N+1``, ``filenames``, optional ``y``, ``classes``, ``source``;
      decoded with Pillow here (grey stays 1 channel, everything else becomes RGB).

    Args:
        path: The file.

    Returns:
        The arrays.

    Raises:
        DismaxError: If the file is missing, not an npz, or in neither layout.
    """
    where = f"npz file {quote_path(path)}"
    problem = file_problem(path)
    if problem is not None:
        raise DismaxError(
            f"{where} {problem}; check the path (relative paths start at the current folder)"
        )
    arrays = _load_arrays(path, where)
    if "x" in arrays:
        images = _as_images(arrays["x"], where)
    elif "data" in arrays and "offsets" in arrays:
        images = _decode_bytes_file(arrays, where)
    else:
        raise DismaxError(
            f"{where} has arrays {sorted(arrays)}; expected 'x' (uint8 N x H x W x C) or "
            "'data' + 'offsets' (encoded images)"
        )
    labels, classes = _labels_and_classes(arrays, images.shape[0], where)
    source = str(path)
    if "source" in arrays and np.asarray(arrays["source"]).size:
        source = f"{path} ({np.asarray(arrays['source']).reshape(-1)[0]})"
    return RawArrays(images=images, labels=labels, classes=classes, source=source)


@dataclass(frozen=True)
class Skipped:
    """Entries of an image folder that were not read, by reason.

    Attributes:
        hidden: Files and folders whose name starts with ``.`` (a folder counts once).
        not_images: Files whose name does not end in one of :data:`IMAGE_EXTENSIONS`.
        outside_classes: Files directly in the root of a ``folder/<class>/<image>`` layout
            (torchvision's ImageFolder ignores them too).
    """

    hidden: int = 0
    not_images: int = 0
    outside_classes: int = 0

    @property
    def total(self) -> int:
        return self.hidden + self.not_images + self.outside_classes

    def __add__(self, other: Skipped) -> Skipped:
        return Skipped(
            self.hidden + other.hidden,
            self.not_images + other.not_images,
            self.outside_classes + other.outside_classes,
        )

    def describe(self) -> str:
        """``"skipped 3 entries: 2 hidden, 1 not an image file"``, or ``""`` when none."""
        if not self.total:
            return ""
        reasons = [
            f"{n:,} {what}"
            for n, what in (
                (self.hidden, "hidden"),
                (
                    self.not_images,
                    "not an image file" if self.not_images == 1 else "not image files",
                ),
                (self.outside_classes, "outside the class folders"),
            )
            if n
        ]
        noun = "entry" if self.total == 1 else "entries"
        return f"skipped {self.total:,} {noun}: {', '.join(reasons)}"


def scan_image_files(folder: Path, *, recursive: bool) -> tuple[list[Path], Skipped]:
    """Return the image files under ``folder`` sorted by relative path, and what was skipped.

    Hidden names (``.``-prefixed files and folders; a hidden folder is not entered) and files
    without an image extension are skipped and counted.
    """
    found: list[Path] = []
    hidden = not_images = 0
    if recursive:
        for root, dirs, names in os.walk(folder):
            hidden += sum(d.startswith(".") for d in dirs)
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in names:
                if name.startswith("."):
                    hidden += 1
                elif not name.lower().endswith(IMAGE_EXTENSIONS):
                    not_images += 1
                else:
                    found.append(Path(root) / name)
    else:
        for p in folder.iterdir():
            if not p.is_file():
                continue
            if p.name.startswith("."):
                hidden += 1
            elif not p.name.lower().endswith(IMAGE_EXTENSIONS):
                not_images += 1
            else:
                found.append(p)
    found.sort(key=lambda p: p.relative_to(folder).as_posix())
    return found, Skipped(hidden=hidden, not_images=not_images)


def list_image_files(folder: Path, *, recursive: bool) -> list[Path]:
    """Return image files under ``folder`` sorted by relative path (hidden names skipped)."""
    return scan_image_files(folder, recursive=recursive)[0]


def resize_short_center_crop(im: Image.Image, size: int) -> Image.Image:
    """Resize a Pillow image so its shorter side is ``size`` (bilinear), centre-crop a square."""
    w, h = im.size
    if w <= h:
        nw, nh = size, max(size, int(h * size / w))
    else:
        nw, nh = max(size, int(w * size / h)), size
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), resample=Image.Resampling.BILINEAR)
    left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
    return im.crop((left, top, left + size, top + size))


def decode_files(
    files: list[Path], *, size: int | None, where: str, force_size: bool = False
) -> np.ndarray:
    """Decode image files into one uint8 ``(N, H, W, C)`` array.

    All grey files stay 1-channel; any colour file makes the whole set RGB. When the files do
    not all share one size (or ``force_size`` is set) they are resized (shorter side, Pillow
    bilinear, antialiased when shrinking) and centre-cropped to ``size`` (default
    ``DEFAULT_FOLDER_SIZE``).

    Raises:
        DismaxError: If a file cannot be decoded.
    """
    sizes, modes = [], []
    for path in files:
        try:
            with open_image(path) as im:
                sizes.append(im.size)
                modes.append(im.mode)
        except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ...)
            raise _decode_error(where, f"image {quote_path(path)}", exc) from None
    mode = "L" if all(m in _GREY_MODES for m in modes) else "RGB"
    same = len(set(sizes)) == 1 and not force_size
    side = size or DEFAULT_FOLDER_SIZE
    w0, h0 = sizes[0] if same else (side, side)
    out = (
        np.empty((len(files), h0, w0), dtype=np.uint8)
        if mode == "L"
        else np.empty((len(files), h0, w0, 3), dtype=np.uint8)
    )
    for i, path in enumerate(files):
        try:
            with open_image(path) as im:
                im = _convert(im, mode)
                if not same:
                    im = resize_short_center_crop(im, side)
                arr = np.asarray(im, dtype=np.uint8)
        except Exception as exc:  # truncated data surfaces only here, at decode time
            raise _decode_error(where, f"image {quote_path(path)}", exc) from None
        out[i] = arr
    return out[..., None] if mode == "L" else out


def _class_layout(
    entries: list[Path],
) -> tuple[list[Path], np.ndarray, tuple[str, ...], Skipped] | None:
    """The ``folder/<class>/<image>`` layout of a folder's ``entries``, or ``None``.

    Returns files (class by class, sorted), labels ``(N,)`` int64, class names and what was
    skipped (inside the class folders, and the files beside them); ``None`` when no visible
    sub-folder holds an image (then the folder is flat).
    """
    class_dirs = sorted(p for p in entries if p.is_dir() and not p.name.startswith("."))
    scanned = [(d.name, *scan_image_files(d, recursive=True)) for d in class_dirs]
    per_class = [(name, files) for name, files, _ in scanned if files]
    if not per_class:
        return None
    skipped = Skipped()
    for _, _, more in scanned:
        skipped = skipped + more
    top = [p for p in entries if p.is_file()]
    skipped = skipped + Skipped(
        hidden=sum(p.name.startswith(".") for p in top),
        outside_classes=sum(not p.name.startswith(".") for p in top),
    )
    files = [f for _, fs in per_class for f in fs]
    labels = np.concatenate(
        [np.full(len(fs), i, dtype=np.int64) for i, (_, fs) in enumerate(per_class)]
    )
    return files, labels, tuple(name for name, _ in per_class), skipped


def read_image_folder(folder: Path, *, size: int | None = None) -> RawArrays:
    """Read a folder of images.

    Two layouts:

    * torchvision ``ImageFolder``: ``folder/<class>/<image>``; classes are the sub-folder
      names in sorted order (files directly in ``folder`` are ignored, as ImageFolder does);
    * flat: image files directly in ``folder`` (no sub-folder holds images): one unlabelled set.

    Args:
        folder: The root folder.
        size: Target side for mixed-size folders (see :func:`decode_files`).

    Returns:
        The arrays (files in sorted order of their relative path); when hidden or non-image
        entries were skipped, ``source`` says how many, e.g. ``"DIR (skipped 2 entries: 1
        hidden, 1 not an image file)"``.

    Raises:
        DismaxError: If the folder is missing or holds no images.
    """
    where = f"image folder {quote_path(folder)}"
    problem = folder_problem(folder)
    if problem is not None:
        raise DismaxError(f"{where} {problem}; check the path given to imagefolder:")
    from dismax_cli.data.stream import scan_image_folder  # one scanner for both readers

    files, labels, classes, skipped = scan_image_folder(folder, where=where, example="png")
    images = decode_files(files, size=size, where=where)
    source = f"{folder} ({skipped.describe()})" if skipped.total else str(folder)
    return RawArrays(images=images, labels=labels, classes=classes, source=source)
