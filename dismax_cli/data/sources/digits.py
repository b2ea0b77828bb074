"""Source family: ``digits``, the scikit-learn bundled 8x8 digits (offline, the default).

One array of 1,797 images; train/test are the registry's fixed 80/20 carve, and an OOD use
scores the test carve so ``digits[6-9]`` never shares images with a ``digits[0-5]`` training
part.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dismax_cli.data.files import RawArrays
from dismax_cli.data.imageset import ImageSet
from dismax_cli.data.sources.base import (
    DatasetInfo,
    DatasetSpec,
    SourceBase,
    SpecText,
    cached,
    to_image_set,
)

#: Provenance of the digits set (sklearn's 0..16 values scaled by 255/16, rounded; 8x8x1).
DIGITS_SOURCE = "scikit-learn bundled digits (UCI Optical Recognition of Handwritten Digits)"


#: The class names of ``digits`` (scikit-learn's target names as text).
DIGIT_CLASSES = tuple(str(i) for i in range(10))


def read_digits() -> RawArrays:
    """Return the 1,797 digits as uint8 ``(1797, 8, 8, 1)`` (0..16 scaled by 255/16, rounded)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(np.asarray(d.images, np.float64) * 255.0 / 16.0).astype(np.uint8)[..., None]
    classes = tuple(str(int(c)) for c in d.target_names)
    return RawArrays(images, np.asarray(d.target, np.int64), classes, DIGITS_SOURCE)


class DigitsSource(SourceBase):
    """The name ``digits``."""

    key = "digits"

    def names(self) -> tuple[str, ...]:
        """``("digits",)``."""
        return ("digits",)

    def parse(self, spec: SpecText) -> DatasetSpec | None:
        """The bare name ``digits``."""
        if spec.arg or spec.name != "digits":
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
        """Load all 1,797 images (never augmented)."""
        raw = cached(("digits",), read_digits)
        return to_image_set(raw, spec, split="all", origin="sklearn:digits", augment=False)

    def ood_split(self, spec: DatasetSpec) -> str:
        """The fixed test carve."""
        return "test"

    def known_classes(self, spec: DatasetSpec) -> tuple[str, ...]:
        """``0`` .. ``9`` (as :func:`read_digits` names them), known without loading."""
        return DIGIT_CLASSES

    def describe(self, data_dir: Path) -> list[DatasetInfo]:
        """One row."""
        return [
            DatasetInfo(
                name="digits",
                aliases=(),
                kind="bundled",
                source=DIGITS_SOURCE + ", ships with scikit-learn (works offline); the default",
                size="1,797 = 1,438 train / 359 test (80/20 carve), 8x8x1, 10 classes",
                licence="CC BY 4.0 (UCI Machine Learning Repository)",
                present=True,
                location="scikit-learn package",
            )
        ]
