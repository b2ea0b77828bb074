"""Source family: ImageNet-1k and ImageNet-O from a folder the user provides (always streamed).

Neither can be downloaded (ImageNet's terms require registration at image-net.org; ImageNet-O
is distributed as a tarball from its authors' GitHub page), so both are read from the data
folder (``--data-dir`` / ``DISMAX_DATA_DIR``) in torchvision's ``ImageFolder`` layout::

    DATA_DIR/imagenet1k/train/<wnid>/*.JPEG     1,281,167 images, 1,000 classes
    DATA_DIR/imagenet1k/val/<wnid>/*.JPEG       50,000 images (val sorted into class folders)
    DATA_DIR/imagenet_o/<wnid>/*.jpg            2,000 images, 200 classes (the tarball's
                                                imagenet-o/ folder, renamed or not)

Both are streamed (:mod:`dismax_cli.data.stream`): 1.28 M mixed-size JPEGs have no in-memory
path. ``imagenet1k`` has native splits (train, and val as ``test``); ``imagenet_o`` is an OOD
set scored whole. Normalisation: the ImageNet mean/std.

References:
    Russakovsky et al., "ImageNet Large Scale Visual Recognition Challenge", arXiv:1409.0575.
    Hendrycks et al., "Natural Adversarial Examples" (ImageNet-O), arXiv:1907.07174.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from dismax_cli.data.imageset import ImageSet
from dismax_cli.data.sources.base import DatasetInfo, DatasetSpec, SourceBase, SpecText
from dismax_cli.errors import DismaxError, quote_path

#: Registry name -> (folder names looked for in the data folder, splits and their sub-folders).
IMAGENET_SETS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "imagenet1k": (("imagenet1k", "imagenet", "ILSVRC2012"), {"train": "train", "test": "val"}),
    "imagenet_o": (("imagenet_o", "imagenet-o"), {"all": ""}),
}
_SIZES = {
    "imagenet1k": "1,281,167 train + 50,000 val (as test), mixed sizes, streamed",
    "imagenet_o": "2,000 (no split), mixed sizes, streamed",
}
_LAYOUT = {
    "imagenet1k": "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (val sorted into class folders)",
    "imagenet_o": "<wnid>/*.jpg (the imagenet-o/ folder of the ImageNet-O tarball)",
}
_WHERE_FROM = {
    "imagenet1k": "ILSVRC2012 train and val from https://image-net.org (registration needed)",
    "imagenet_o": "imagenet-o.tar from https://github.com/hendrycks/natural-adv-examples",
}


def imagenet_root(name: str, data_dir: Path) -> Path | None:
    """The existing folder of set ``name`` in ``data_dir`` (first of its folder names), or None."""
    for folder in IMAGENET_SETS[name][0]:
        if (data_dir / folder).is_dir():
            return data_dir / folder
    return None


def missing_message(name: str, data_dir: Path, looked: Path) -> str:
    """The one-line error for a set that is not in ``data_dir``: where to put it, which layout."""
    return (
        f"dataset '{name}' is not in {quote_path(data_dir)} (looked for {quote_path(looked)}) and "
        f"cannot be downloaded (get {_WHERE_FROM[name]}); put it at "
        f"{quote_path(data_dir / IMAGENET_SETS[name][0][0])} as "
        f"{_LAYOUT[name]}, or point --data-dir / DISMAX_DATA_DIR at the folder that holds it"
    )


class ImageNetFamily(SourceBase):
    """``imagenet1k`` (train/val) and ``imagenet_o`` read as streamed image folders."""

    key = "imagenet"
    aliases = {"imagenet_1k": "imagenet1k", "ilsvrc2012": "imagenet1k", "imageneto": "imagenet_o"}

    def names(self) -> tuple[str, ...]:
        """``imagenet1k``, ``imagenet_o``."""
        return tuple(IMAGENET_SETS)

    def parse(self, spec: SpecText) -> DatasetSpec | None:
        """A bare name (no ``:ARG``); ``imagenet1k`` has native splits."""
        if spec.arg or spec.name not in IMAGENET_SETS:
            return None
        native = spec.name == "imagenet1k"
        return DatasetSpec(spec.text, self.key, spec.name, native=native, selection=spec.selection)

    def load(
        self,
        spec: DatasetSpec,
        part: str,
        data_dir: Path,
        *,
        download: bool,
        like: ImageSet | None,
    ) -> ImageSet:
        """Stream ``part`` (``train``/``test`` of imagenet1k, ``all`` of imagenet_o).

        Raises:
            DismaxError: If the folder is missing (naming where it goes and its layout) or
                holds no images.
        """
        root = imagenet_root(spec.name, data_dir)
        sub = IMAGENET_SETS[spec.name][1][part]
        looked = (data_dir / IMAGENET_SETS[spec.name][0][0] / sub) if sub else None
        folder = None if root is None else (root / sub if sub else root)
        if folder is None or not folder.is_dir():
            shown = looked if looked is not None else data_dir / IMAGENET_SETS[spec.name][0][0]
            raise DismaxError(missing_message(spec.name, data_dir, shown))
        side = like.image_shape[0] if like is not None else None
        # torch loads only when a set is built (spec errors answer before it: README)
        from dismax_cli.data.stream import folder_stream_set
        from dismax_cli.data.transforms import IMAGENET_MEAN, IMAGENET_STD

        streamed = folder_stream_set(
            folder,
            spec=spec.text,
            origin=f"imagenet:{spec.name}:{part}",
            size=side,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            always=True,
        )
        assert streamed is not None  # always=True
        return replace(streamed, split=part)  # type: ignore[return-value]

    def ood_split(self, spec: DatasetSpec) -> str:
        """imagenet1k's val (``test``); imagenet_o whole."""
        return "test" if spec.name == "imagenet1k" else "all"

    def describe(self, data_dir: Path) -> list[DatasetInfo]:
        """One row per set."""
        rows = []
        for name, (folders, _) in IMAGENET_SETS.items():
            root = imagenet_root(name, data_dir)
            rows.append(
                DatasetInfo(
                    name=name,
                    aliases=self.aliases_of(name),
                    kind="folder",
                    source=f"{_WHERE_FROM[name]}; not downloadable, layout {_LAYOUT[name]}",
                    size=_SIZES[name],
                    licence="ImageNet terms of access (non-commercial research)",
                    present=root is not None,
                    location=str(root if root is not None else data_dir / folders[0]),
                )
            )
        return rows


__all__ = ["IMAGENET_SETS", "ImageNetFamily", "imagenet_root", "missing_message"]
