"""Source family: synthetic noise, ``gaussian[:N]`` and ``uniform[:N]`` (METHOD.md §7).

Generated in memory with a fixed seed; without ``:N`` the count and the image shape copy the
reference (``like``) set, else 1,000 images of 32x32x3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dismax_cli.config import InvalidValueError
from dismax_cli.data.files import RawArrays
from dismax_cli.data.imageset import ImageSet
from dismax_cli.data.sources.base import (
    DatasetInfo,
    DatasetSpec,
    SourceBase,
    SpecText,
    to_image_set,
)
from dismax_cli.errors import DismaxError

#: Seed of the synthetic noise sets.
SYNTHETIC_SEED = 0
#: Number of synthetic images when neither ``:N`` nor ``like`` gives one.
SYNTHETIC_DEFAULT_N = 1000
#: Image shape of synthetic sets when no ``like`` set is given.
SYNTHETIC_DEFAULT_SHAPE = (32, 32, 3)
#: The most synthetic images one spec may ask for (``uniform:N``): about 3 GB at 32x32x3, far
#: above any real OOD test set; beyond it a count is a typo (README "Design notes").
MAX_SYNTHETIC = 1_000_000
#: The synthetic set names, in listing order.
SYNTHETIC_NAMES = ("gaussian", "uniform")


def make_noise(name: str, n: int, shape: tuple[int, int, int]) -> RawArrays:
    """Return ``n`` noise images of ``shape`` (H, W, C), uint8, unlabelled, seeded.

    ``gaussian``: N(127.5, 64^2) rounded and clipped to 0..255; ``uniform``: integers 0..255.
    """
    rng = np.random.default_rng([SYNTHETIC_SEED, SYNTHETIC_NAMES.index(name)])
    size = (n, *shape)
    if name == "gaussian":
        values = rng.normal(127.5, 64.0, size=size)
        images = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        what = "Gaussian noise N(127.5, 64^2) clipped to 0..255"
    else:
        images = rng.integers(0, 256, size=size, dtype=np.uint8)
        what = "uniform noise on 0..255"
    source = f"SYNTHETIC {what}, {n} images {shape[0]}x{shape[1]}x{shape[2]}, seed {SYNTHETIC_SEED}"
    return RawArrays(images, None, (), source)


class SyntheticSource(SourceBase):
    """The names ``gaussian`` and ``uniform``, with an optional ``:N``."""

    key = "synthetic"

    def names(self) -> tuple[str, ...]:
        """The synthetic set names."""
        return SYNTHETIC_NAMES

    def parse(self, spec: SpecText) -> DatasetSpec | None:
        """``NAME`` or ``NAME:N`` with N a positive integer of at most :data:`MAX_SYNTHETIC`.

        Raises:
            InvalidValueError: If N is not a positive integer, or is above the limit.
        """
        if spec.name not in SYNTHETIC_NAMES:
            return None
        count = None
        if spec.arg:
            if not (spec.arg.isascii() and spec.arg.isdigit()) or int(spec.arg) < 1:
                raise InvalidValueError(
                    "dataset",
                    f"'{spec.text}': the number of synthetic images '{spec.arg}' must be a "
                    f"positive integer, e.g. {spec.name}:1000"
                )
            count = int(spec.arg)
            if count > MAX_SYNTHETIC:
                raise InvalidValueError(
                    "dataset",
                    f"'{spec.text}': {spec.arg} synthetic images is too many: ask for at most "
                    f"{MAX_SYNTHETIC:,}, e.g. {spec.name}:1000 (or {spec.name} for the ID test "
                    "set's size)",
                )
        return DatasetSpec(spec.text, self.key, spec.name, count=count, selection=spec.selection)

    def load(
        self,
        spec: DatasetSpec,
        part: str,
        data_dir: Path,
        *,
        download: bool,
        like: ImageSet | None,
    ) -> ImageSet:
        """Generate the set: ``like``'s shape and size unless ``:N`` gives the size."""
        shape = like.image_shape if like is not None else SYNTHETIC_DEFAULT_SHAPE
        n = spec.count or (len(like) if like is not None else SYNTHETIC_DEFAULT_N)
        try:
            raw = make_noise(spec.name, n, shape)
        except MemoryError:
            side = f"{shape[0]}x{shape[1]}x{shape[2]}"
            raise DismaxError(
                f"'{spec.text}': {n:,} synthetic images of {side} do not fit in memory "
                f"({n * shape[0] * shape[1] * shape[2] / 2**30:,.1f} GiB as uint8): ask for "
                f"fewer, e.g. {spec.name}:1000"
            ) from None
        origin = f"synthetic:{spec.name}:{n}:{shape[0]}x{shape[1]}x{shape[2]}:{SYNTHETIC_SEED}"
        return to_image_set(raw, spec, split="all", origin=origin, augment=False, synthetic=True)

    def known_classes(self, spec: DatasetSpec) -> tuple[str, ...]:
        """``()``: noise is unlabelled, so a ``[SEL]`` is refused before anything loads."""
        return ()

    def describe(self, data_dir: Path) -> list[DatasetInfo]:
        """One row per noise kind."""
        rows = []
        for name in SYNTHETIC_NAMES:
            kind = "Gaussian N(127.5, 64^2) clipped" if name == "gaussian" else "uniform 0..255"
            rows.append(
                DatasetInfo(
                    name=name,
                    aliases=(f"{name}:N",),
                    kind="synthetic",
                    source=f"SYNTHETIC {kind} noise, seed {SYNTHETIC_SEED}",
                    size=f"N = len(reference set) or {SYNTHETIC_DEFAULT_N:,}; reference shape "
                    "or 32x32x3",
                    licence="generated (no licence needed)",
                    present=True,
                    location="generated in memory",
                    synthetic=True,
                )
            )
        return rows
