"""Source family: the ODIN OOD archives (tin_resize, tin_crop, lsun_resize, lsun_crop, isun).

One array each, scored whole (METHOD.md §7); downloads, md5 checks and caches are in
:mod:`dismax_cli.data.odin`.
"""

from __future__ import annotations

from pathlib import Path

from dismax_cli.data.imageset import ImageSet
from dismax_cli.data.odin import ODIN_ARCHIVES, load_odin, odin_dir, odin_paths, odin_present
from dismax_cli.data.sources.base import (
    DatasetInfo,
    DatasetSpec,
    SourceBase,
    SpecText,
    cached,
    to_image_set,
)

#: Other names of the ODIN sets. The paper (METHOD.md §7) and the ODIN release call the
#: resized sets "LSUN" and "TinyImageNet".
ODIN_ALIASES = {
    "imagenet_resize": "tin_resize",
    "imagenet_crop": "tin_crop",
    "tinyimagenet": "tin_resize",
    "tiny_imagenet": "tin_resize",
    "tinyimagenet_resize": "tin_resize",
    "tin": "tin_resize",
    "imagenet": "tin_resize",
    "tinyimagenet_crop": "tin_crop",
    "lsun": "lsun_resize",
    "lsun_r": "lsun_resize",
    "lsun_c": "lsun_crop",
}


class OdinFamily(SourceBase):
    """The archives of :data:`~dismax_cli.data.odin.ODIN_ARCHIVES`, by name."""

    key = "odin"
    aliases = ODIN_ALIASES

    def names(self) -> tuple[str, ...]:
        """The ODIN set names."""
        return tuple(ODIN_ARCHIVES)

    def parse(self, spec: SpecText) -> DatasetSpec | None:
        """A bare ODIN name (no ``:ARG``)."""
        if spec.arg or spec.name not in ODIN_ARCHIVES:
            return None
        return DatasetSpec(spec.text, self.key, spec.name, selection=spec.selection)

    def load(
        self,
        spec: DatasetSpec,
        part: str,
        data_dir: Path,
        *,
        download: bool,
        like: ImageSet | None,
    ) -> ImageSet:
        """Load the whole archive (``part`` is ``"all"``)."""
        raw = cached(
            ("odin", spec.name, str(data_dir)),
            lambda: load_odin(spec.name, data_dir, download=download),
        )
        return to_image_set(raw, spec, split="all", origin=f"odin:{spec.name}")

    def missing(self, spec: DatasetSpec, parts: tuple[str, ...], data_dir: Path) -> str | None:
        """The archive's message when neither its cache, folder nor archive is in ``data_dir``."""
        from dismax_cli.data import odin

        if odin_present(spec.name, data_dir):
            return None
        return str(odin.missing_error(spec.name, data_dir))

    def known_classes(self, spec: DatasetSpec) -> tuple[str, ...]:
        """``()``: the archives are unlabelled; a ``[SEL]`` is refused before anything loads."""
        return ()

    def describe(self, data_dir: Path) -> list[DatasetInfo]:
        """One row per archive."""
        rows = []
        for name, entry in ODIN_ARCHIVES.items():
            cache, _, _ = odin_paths(name, data_dir)
            rows.append(
                DatasetInfo(
                    name=name,
                    aliases=self.aliases_of(name),
                    kind="odin",
                    source=f"{entry.description}; {entry.url} (md5 {entry.md5})",
                    size=f"{entry.n_images:,} (no split), 32x32x3",
                    licence=entry.licence,
                    present=odin_present(name, data_dir),
                    location=str(cache if cache.is_file() else odin_dir(data_dir)),
                )
            )
        return rows
