"""Source family: the torchvision sets (cifar10, cifar100, svhn, mnist, fashion_mnist, textures).

They have native train/test splits; the pinned counts, downloads and uint8 caches are in
:mod:`dismax_cli.data.torchvision_sets`. Textures (DTD) is scored whole as an OOD set, the
field's convention (METHOD.md §7).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dismax_cli.data.imageset import ImageSet
from dismax_cli.data.sources.base import (
    DatasetInfo,
    DatasetSpec,
    SourceBase,
    SpecText,
    cached,
    to_image_set,
)
from dismax_cli.data.torchvision_sets import (
    TORCHVISION_SOURCES,
    cache_path,
    load_torchvision,
    part_present,
)

#: Other names of the torchvision sets (lower-case, ``_`` for ``-``).
TORCHVISION_ALIASES = {
    "dtd": "textures",
    "fashionmnist": "fashion_mnist",
    "cifar_10": "cifar10",
    "cifar_100": "cifar100",
}

#: The number of classes of each set (its names come with the data): a ``[SEL]`` is checked
#: against it before anything loads (``cifar10[10-12]`` fails at once, not after a download).
CLASS_COUNTS = {
    "cifar10": 10,
    "cifar100": 100,
    "svhn": 10,
    "mnist": 10,
    "fashion_mnist": 10,
    "textures": 47,
}


class TorchvisionFamily(SourceBase):
    """The sets of :data:`~dismax_cli.data.torchvision_sets.TORCHVISION_SOURCES`, by name."""

    key = "torchvision"
    aliases = TORCHVISION_ALIASES

    def names(self) -> tuple[str, ...]:
        """The torchvision set names."""
        return tuple(TORCHVISION_SOURCES)

    def parse(self, spec: SpecText) -> DatasetSpec | None:
        """A bare torchvision name (no ``:ARG``)."""
        if spec.arg or spec.name not in TORCHVISION_SOURCES:
            return None
        return DatasetSpec(spec.text, self.key, spec.name, native=True, selection=spec.selection)

    def load(
        self,
        spec: DatasetSpec,
        part: str,
        data_dir: Path,
        *,
        download: bool,
        like: ImageSet | None,
    ) -> ImageSet:
        """Load the native ``"train"`` or ``"test"`` split (indices: train first, then test)."""
        raw = cached(
            ("torchvision", spec.name, part, str(data_dir)),
            lambda: load_torchvision(spec.name, part, data_dir, download=download),
        )
        src = TORCHVISION_SOURCES[spec.name]
        offset = 0 if part == "train" else src.sizes["train"]
        return to_image_set(
            raw,
            spec,
            split=part,
            origin=f"torchvision:{spec.name}",
            indices=offset + np.arange(raw.images.shape[0], dtype=np.int64),
            mean=src.mean,
            std=src.std,
            augment=src.augment,
        )

    def known_classes(self, spec: DatasetSpec) -> int:
        """The set's number of classes (:data:`CLASS_COUNTS`; names are known once loaded)."""
        return CLASS_COUNTS[spec.name]

    def missing(self, spec: DatasetSpec, parts: tuple[str, ...], data_dir: Path) -> str | None:
        """The first of ``parts`` whose files are not in ``data_dir`` (its download message)."""
        from dismax_cli.data import torchvision_sets

        for part in parts:
            if not torchvision_sets.part_present(spec.name, part, data_dir):
                return str(torchvision_sets.missing_error(spec.name, part, data_dir))
        return None

    def ood_split(self, spec: DatasetSpec) -> str:
        """The test split; all of ``textures``."""
        return "all" if spec.name == "textures" else "test"

    def describe(self, data_dir: Path) -> list[DatasetInfo]:
        """One row per set, present when both splits are."""
        rows = []
        for name, src in TORCHVISION_SOURCES.items():
            sizes = src.sizes
            present = part_present(name, "train", data_dir) and part_present(name, "test", data_dir)
            where = cache_path(name, "test", data_dir).parent if present else data_dir
            rows.append(
                DatasetInfo(
                    name=name,
                    aliases=self.aliases_of(name),
                    kind="torchvision",
                    source=f"{src.description}; {src.url}",
                    size=f"{sizes['train']:,} train / {sizes['test']:,} test, {src.shape}",
                    licence=src.licence,
                    present=present,
                    location=str(where),
                )
            )
        return rows
