"""Datasets with native train/test splits, through torchvision's dataset classes.

torchvision does the download and the integrity checks (its pinned MD5s); this module converts
its ``.data`` arrays to uint8 ``(N, H, W, C)`` once and caches them as
``DATA_DIR/cache/<name>_<part>.npz`` (written atomically), so later loads read one file.
The torchvision ``root`` is the data directory itself, so an existing torchvision data folder
can be used as ``--data-dir`` as it is.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from dismax_cli.data.download import (
    atomic_save_npz,
    check_md5,
    downloads_enabled,
    net_timeout,
    offline,
    one_line,
    probe,
    safe_extract,
    scratch_dir,
    socket_timeout,
)
from dismax_cli.data.files import RawArrays, resize_short_center_crop
from dismax_cli.errors import DismaxError, quote_path
from dismax_cli.fileio import atomic_write

#: Side of the square cache of Textures (DTD photos vary in size; resize shorter side + crop).
TEXTURES_SIZE = 32

_DIGIT_NAMES = tuple(str(i) for i in range(10))
_MNIST_RAW = ("{p}-images-idx3-ubyte", "{p}-labels-idx1-ubyte")


@dataclass(frozen=True)
class TorchvisionSource:
    """How one torchvision dataset is fetched, found on disk and described.

    Attributes:
        name: Registry name.
        description: Human description for listings.
        url: Main download URL (probed before a download; named in the offline error).
        manual: How to place the data by hand; ``{data_dir}`` is filled in.
        hand_files: ``(path relative to the data dir, MD5)`` of files fetched by hand that
            are verified and unpacked on first use (``.tar.gz`` next to itself, ``.gz``
            gunzipped in place); MD5s as pinned in torchvision's dataset classes.
        raw_paths: Per part (``"train"``/``"test"``), paths relative to the data dir whose
            presence means torchvision can load the part without a download.
        sizes: Number of images per part.
        shape: Image shape in words (``"32x32x3"``).
        licence: Licence note.
        mean: Known per-channel mean (0..1 scale) or ``None``.
        std: Known per-channel std or ``None``.
        augment: Whether random crop and flip suit the set.
        sizes_pinned: True where torchvision verifies the files' MD5s on every load (CIFAR,
            SVHN), so ``sizes`` is exact and data of any other count (a stale or edited cache)
            is refused; False where torchvision reads unverified raw files (MNIST,
            Fashion-MNIST, DTD), whose counts are not checked.
    """

    name: str
    description: str
    url: str
    manual: str
    hand_files: tuple[tuple[str, str], ...]
    raw_paths: dict[str, tuple[str, ...]]
    sizes: dict[str, int]
    shape: str
    licence: str
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    augment: bool
    sizes_pinned: bool = False


TORCHVISION_SOURCES: dict[str, TorchvisionSource] = {
    "cifar10": TorchvisionSource(
        name="cifar10",
        description="CIFAR-10 (Krizhevsky 2009), 32x32x3, 10 classes, via torchvision",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        manual="save it as {data_dir}/cifar-10-python.tar.gz (verified and unpacked on first use)",
        hand_files=(("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),),
        raw_paths={
            "train": tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
            "test": ("cifar-10-batches-py/test_batch",),
        },
        sizes={"train": 50_000, "test": 10_000},
        shape="32x32x3",
        licence="no formal licence; cite Krizhevsky, Learning Multiple Layers of Features "
        "from Tiny Images (2009)",
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        augment=True,
        sizes_pinned=True,
    ),
    "cifar100": TorchvisionSource(
        name="cifar100",
        description="CIFAR-100 (Krizhevsky 2009), 32x32x3, 100 fine classes, via torchvision",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        manual="save it as {data_dir}/cifar-100-python.tar.gz (verified and unpacked on first use)",
        hand_files=(("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),),
        raw_paths={"train": ("cifar-100-python/train",), "test": ("cifar-100-python/test",)},
        sizes={"train": 50_000, "test": 10_000},
        shape="32x32x3",
        licence="no formal licence; cite Krizhevsky, Learning Multiple Layers of Features "
        "from Tiny Images (2009)",
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        augment=True,
        sizes_pinned=True,
    ),
    "svhn": TorchvisionSource(
        name="svhn",
        description="SVHN cropped digits (Netzer et al. 2011), 32x32x3, via torchvision",
        url="http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
        manual="save it as {data_dir}/test_32x32.mat (and train_32x32.mat from the same "
        "folder as {data_dir}/train_32x32.mat for the train split)",
        hand_files=(),
        raw_paths={"train": ("train_32x32.mat",), "test": ("test_32x32.mat",)},
        sizes={"train": 73_257, "test": 26_032},
        shape="32x32x3",
        licence="non-commercial use only (Netzer et al. 2011)",
        mean=(0.4377, 0.4438, 0.4728),
        std=(0.1980, 0.2010, 0.1970),
        augment=False,
        sizes_pinned=True,
    ),
    "mnist": TorchvisionSource(
        name="mnist",
        description="MNIST (LeCun, Cortes & Burges), 28x28x1, via torchvision",
        url="https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
        manual="save it and the other three files of that folder (t10k-labels-idx1-ubyte.gz, "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz) in {data_dir}/MNIST/raw/",
        hand_files=(
            ("MNIST/raw/train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            ("MNIST/raw/train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            ("MNIST/raw/t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            ("MNIST/raw/t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        ),
        raw_paths={
            "train": tuple("MNIST/raw/" + f.format(p="train") for f in _MNIST_RAW),
            "test": tuple("MNIST/raw/" + f.format(p="t10k") for f in _MNIST_RAW),
        },
        sizes={"train": 60_000, "test": 10_000},
        shape="28x28x1",
        licence="CC BY-SA 3.0 (as commonly stated)",
        mean=(0.1307,),
        std=(0.3081,),
        augment=False,
    ),
    "fashion_mnist": TorchvisionSource(
        name="fashion_mnist",
        description="Fashion-MNIST (Xiao et al. 2017), 28x28x1, via torchvision",
        url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-images-idx3-ubyte.gz",
        manual="save it and the other three files of that folder (t10k-labels-idx1-ubyte.gz, "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz) in "
        "{data_dir}/FashionMNIST/raw/ (Debian: apt-get install dataset-fashion-mnist)",
        hand_files=(
            ("FashionMNIST/raw/train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            ("FashionMNIST/raw/train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
            ("FashionMNIST/raw/t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            ("FashionMNIST/raw/t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        ),
        raw_paths={
            "train": tuple("FashionMNIST/raw/" + f.format(p="train") for f in _MNIST_RAW),
            "test": tuple("FashionMNIST/raw/" + f.format(p="t10k") for f in _MNIST_RAW),
        },
        sizes={"train": 60_000, "test": 10_000},
        shape="28x28x1",
        licence="MIT (Zalando SE)",
        mean=(0.2860,),
        std=(0.3530,),
        augment=False,
    ),
    "textures": TorchvisionSource(
        name="textures",
        description=f"Describable Textures (DTD, Cimpoi et al. 2014), 47 classes, cached at "
        f"{TEXTURES_SIZE}x{TEXTURES_SIZE}x3 (shorter side resized, centre crop), via torchvision",
        url="https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
        manual="save it as {data_dir}/dtd/dtd-r1.0.1.tar.gz (verified and unpacked on first use)",
        hand_files=(("dtd/dtd-r1.0.1.tar.gz", "fff73e5086ae6bdbea199a49dfb8a4c1"),),
        raw_paths={
            "train": ("dtd/dtd/labels/train1.txt", "dtd/dtd/labels/val1.txt"),
            "test": ("dtd/dtd/labels/test1.txt",),
        },
        sizes={"train": 3_760, "test": 1_880},
        shape=f"{TEXTURES_SIZE}x{TEXTURES_SIZE}x3 (cached)",
        licence="research use only (Cimpoi et al. 2014)",
        mean=None,
        std=None,
        augment=True,
    ),
}


def cache_path(name: str, part: str, data_dir: Path) -> Path:
    """Return the uint8 cache file of one part of a torchvision dataset."""
    suffix = f"_{TEXTURES_SIZE}" if name == "textures" else ""
    return data_dir / "cache" / f"{name}_{part}{suffix}.npz"


def part_present(name: str, part: str, data_dir: Path) -> bool:
    """Return True if the part can be loaded without a download (cache, raw or hand files)."""
    if cache_path(name, part, data_dir).is_file():
        return True
    src = TORCHVISION_SOURCES[name]
    if all((data_dir / p).exists() for p in src.raw_paths[part]):
        return True
    prefix = "train" if part == "train" else "t10k"
    hand = [
        rel
        for rel in (r for r, _ in src.hand_files)
        if rel.endswith((".tar.gz", ".tgz")) or Path(rel).name.startswith(prefix)
    ]
    return bool(hand) and all((data_dir / rel).is_file() for rel in hand)


def _unpack_hand_files(name: str, part: str, data_dir: Path) -> None:
    """Verify and unpack files fetched by hand, unless the part's raw files already exist."""
    src = TORCHVISION_SOURCES[name]
    if all((data_dir / p).exists() for p in src.raw_paths[part]):
        return
    for rel, md5 in src.hand_files:
        path = data_dir / rel
        if not path.is_file():
            continue
        if path.name.endswith((".tar.gz", ".tgz")):
            check_md5(path, md5, what=f"{quote_path(path)} (dataset '{name}')")
            with scratch_dir(path.parent) as tmp:
                safe_extract(path, tmp)
                for child in sorted(tmp.iterdir()):
                    target = path.parent / child.name
                    if target.exists():
                        raise DismaxError(
                            f"{quote_path(target)} exists but does not hold a complete '{name}'; "
                            "delete it "
                            f"and rerun to unpack {path.name} again"
                        )
                    os.replace(child, target)
        elif path.suffix == ".gz" and not path.with_suffix("").exists():
            check_md5(path, md5, what=f"{quote_path(path)} (dataset '{name}')")
            with gzip.open(path, "rb") as f:
                atomic_write(path.with_suffix(""), lambda out: shutil.copyfileobj(f, out))


def _not_available(name: str, part: str, data_dir: Path, reason: str) -> DismaxError:
    src = TORCHVISION_SOURCES[name]
    looked = ", ".join(quote_path(data_dir / p) for p in src.raw_paths[part])
    return DismaxError(
        f"dataset '{name}' is not in {quote_path(data_dir)} (looked for {looked}) and cannot be "
        f"downloaded ({reason}); fetch {src.url} by hand and "
        f"{_manual_text(src.manual, data_dir)}, or pass npz:PATH / imagefolder:PATH instead (set "
        "the folder with --data-dir or DISMAX_DATA_DIR)"
    )


def missing_error(name: str, part: str, data_dir: Path) -> DismaxError:
    """The error of a part that is not on disk and may not be downloaded (how to fetch it)."""
    return _not_available(
        name, part, data_dir, "DISMAX_OFFLINE=1" if offline() else "downloads disabled"
    )


def _manual_text(template: str, data_dir: Path) -> str:
    """``template`` with each ``{data_dir}/PATH`` filled in as a quoted path (``'D/x.mat'``)."""
    return re.sub(
        r"\{data_dir\}(/[^\s,)]*)?",
        lambda m: quote_path(f"{data_dir}{m.group(1) or ''}"),
        template,
    )


def _instantiate(name: str, part: str, root: Path, download: bool) -> list[Any]:
    import torchvision.datasets as tvd

    train = part == "train"
    r = str(root)
    if name in ("mnist", "fashion_mnist") and not download:
        # torchvision's MNIST classes insist on all four files; read just this part's two
        # with torchvision's own idx readers when they are there.
        from torchvision.datasets.mnist import read_image_file, read_label_file

        cls = tvd.MNIST if name == "mnist" else tvd.FashionMNIST
        images_rel, labels_rel = TORCHVISION_SOURCES[name].raw_paths[part]
        if (root / images_rel).is_file() and (root / labels_rel).is_file():
            return [
                SimpleNamespace(
                    data=read_image_file(str(root / images_rel)),
                    targets=read_label_file(str(root / labels_rel)),
                    classes=list(cls.classes),
                )
            ]
    factories: dict[str, Callable[[], list[Any]]] = {
        "cifar10": lambda: [tvd.CIFAR10(r, train=train, download=download)],
        "cifar100": lambda: [tvd.CIFAR100(r, train=train, download=download)],
        "svhn": lambda: [tvd.SVHN(r, split=part, download=download)],
        "mnist": lambda: [tvd.MNIST(r, train=train, download=download)],
        "fashion_mnist": lambda: [tvd.FashionMNIST(r, train=train, download=download)],
        "textures": lambda: [
            tvd.DTD(r, split=s, partition=1, download=download)
            for s in (("train", "val") if train else ("test",))
        ],
    }
    # torchvision prints progress and notes to stdout; keep stdout for machine output.
    with contextlib.redirect_stdout(sys.stderr):
        return factories[name]()


def _to_arrays(name: str, datasets: list[Any]) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    if name in ("cifar10", "cifar100"):
        (ds,) = datasets
        return np.asarray(ds.data, np.uint8), np.asarray(ds.targets, np.int64), tuple(ds.classes)
    if name == "svhn":
        (ds,) = datasets
        images = np.ascontiguousarray(np.asarray(ds.data, np.uint8).transpose(0, 2, 3, 1))
        return images, np.asarray(ds.labels, np.int64) % 10, _DIGIT_NAMES
    if name in ("mnist", "fashion_mnist"):
        (ds,) = datasets
        images = ds.data.numpy().astype(np.uint8)[..., None]
        classes = _DIGIT_NAMES if name == "mnist" else tuple(ds.classes)
        return images, ds.targets.numpy().astype(np.int64), classes
    # textures: decode every photo once, shorter side to TEXTURES_SIZE, centre crop.
    # Class names index labels (each split file lists its own classes; DTD has all 47 in each).
    classes = tuple(sorted({c for ds in datasets for c in ds.classes}))
    index = {c: i for i, c in enumerate(classes)}
    images, labels = [], []
    for ds in datasets:
        for i in range(len(ds)):
            im, label = ds[i]
            im = resize_short_center_crop(im.convert("RGB"), TEXTURES_SIZE)
            images.append(np.asarray(im, dtype=np.uint8))
            labels.append(index[ds.classes[label]])
    return np.stack(images), np.asarray(labels, np.int64), classes


def _check_count(name: str, part: str, found: int, where: str, remove: Path) -> None:
    """Refuse a part of a set with pinned sizes whose image count is not the published one.

    Raises:
        DismaxError: naming both counts and what to delete.
    """
    src = TORCHVISION_SOURCES[name]
    expected = src.sizes[part]
    if src.sizes_pinned and found != expected:
        raise DismaxError(
            f"{where} holds {found:,} images for the {part} split of dataset '{name}', but that "
            f"split has {expected:,}: it is incomplete or another set; delete "
            f"{quote_path(remove)} and load it again (or pass the images as npz:PATH)"
        )


def load_torchvision(name: str, part: str, data_dir: Path, *, download: bool) -> RawArrays:
    """Return one part (``"train"`` or ``"test"``) of a torchvision dataset as uint8 arrays.

    Order: the ``.npz`` cache; else files fetched by hand into the data dir (see
    ``TorchvisionSource.hand_files``: MD5-checked, unpacked safely); else torchvision without
    download (files present, checked by torchvision); else, unless ``download`` is False or
    ``DISMAX_OFFLINE=1``, a quick reachability probe of the host and torchvision's download
    (socket timeout ``DISMAX_NET_TIMEOUT``). The arrays are then cached.

    Args:
        name: A key of :data:`TORCHVISION_SOURCES`.
        part: ``"train"`` or ``"test"`` (Textures: train = DTD partition 1 train + val).
        data_dir: The data directory (torchvision's root).
        download: Whether a download may be tried.

    Returns:
        uint8 ``(N, H, W, C)`` images, int64 labels and class names.

    Raises:
        DismaxError: One line naming the set, the folder searched and how to supply it; or,
            for a set with ``sizes_pinned``, naming the image count found and the pinned one.
    """
    src = TORCHVISION_SOURCES[name]
    cache = cache_path(name, part, data_dir)
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as npz:
                raw = RawArrays(
                    images=npz["x"],
                    labels=npz["y"],
                    classes=tuple(str(c) for c in npz["classes"]),
                    source=str(npz["source"][0]),
                )
        except (OSError, ValueError, KeyError):
            cache.unlink(missing_ok=True)  # a broken cache is rebuilt below
        else:
            _check_count(name, part, len(raw.images), f"cache {quote_path(cache)}", cache)
            return raw
    _unpack_hand_files(name, part, data_dir)
    try:
        datasets = _instantiate(name, part, data_dir, download=False)
    except Exception as first:  # torchvision raises RuntimeError/OSError for missing files
        raw_there = all((data_dir / p).exists() for p in src.raw_paths[part])
        if not downloads_enabled(download):
            reason = "DISMAX_OFFLINE=1" if offline() else "downloads disabled"
            if raw_there:
                reason = f"files present but torchvision refused them: {one_line(first, 100)}"
            raise _not_available(name, part, data_dir, reason) from None
        unreachable = probe(src.url)
        if unreachable:
            raise _not_available(name, part, data_dir, unreachable) from None
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            with socket_timeout(net_timeout()):
                datasets = _instantiate(name, part, data_dir, download=True)
        except Exception as exc:
            reason = f"download failed: {one_line(exc, 120)}"
            raise _not_available(name, part, data_dir, reason) from None
    images, labels, classes = _to_arrays(name, datasets)
    _check_count(name, part, len(images), f"the files in {quote_path(data_dir)}", data_dir)
    source = f"torchvision.datasets ({src.url})"
    atomic_save_npz(cache, x=images, y=labels, classes=np.array(classes), source=np.array([source]))
    return RawArrays(images=images, labels=labels, classes=classes, source=source)
