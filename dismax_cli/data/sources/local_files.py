"""Source family: local files, ``npz:PATH`` and ``imagefolder:PATH``.

Readers and their layouts are in :mod:`dismax_cli.data.files` (README "The ``npz:`` format"
and "``imagefolder:`` layouts"). Both are one array: the registry carves train/test 80/20,
and an OOD use scores the whole file.
"""

from __future__ import annotations

from pathlib import Path

from dismax_cli.config import InvalidValueError
from dismax_cli.data.files import read_image_folder, read_npz
from dismax_cli.data.imageset import ImageSet
from dismax_cli.data.sources.base import (
    DatasetInfo,
    DatasetSpec,
    SourceBase,
    SpecText,
    cached,
    file_key,
    to_image_set,
)
from dismax_cli.errors import DismaxError, quote_path
from dismax_cli.fileio import file_problem, folder_problem


class _PathSource(SourceBase):
    """A source spelled ``PREFIX:PATH`` (prefix matched case-insensitively, path kept)."""

    prefix = ""
    local = True
    #: What is wrong with the path, if anything, without reading it (``fileio``'s check).
    path_problem = staticmethod(file_problem)

    def missing(self, spec: DatasetSpec, parts: tuple[str, ...], data_dir: Path) -> str | None:
        """The loader's message for a path that is missing or unusable, found before reading
        anything (the file or folder check); None when the path looks usable."""
        if spec.path is None or type(self).path_problem(spec.path) is None:
            return None
        try:
            self.load(spec, "all", data_dir, download=False, like=None)
        except DismaxError as exc:
            return str(exc)
        return None

    def parse(self, spec: SpecText) -> DatasetSpec | None:
        """``PREFIX:PATH``; the path is made absolute (``~`` expanded).

        Raises:
            DismaxError: If no path follows the prefix.
        """
        if not spec.body.lower().startswith(self.prefix):
            return None
        raw = spec.body[len(self.prefix) :].strip()
        if not raw:
            raise InvalidValueError(
                "dataset", f"'{spec.text}' names no path; write {self.prefix}PATH"
            )
        path = Path(raw).expanduser().absolute()
        return DatasetSpec(spec.text, self.key, raw, path=path, selection=spec.selection)


class NpzSource(_PathSource):
    """``npz:PATH``: arrays ``x`` (+ ``y``, ``classes``) or encoded image bytes."""

    key = "npz"
    prefix = "npz:"
    forms = ("npz:PATH",)

    def hint(self, body: str) -> str:
        """Suggest ``npz:`` for a name ending in ``.npz`` (and the CLI's escape for a comma)."""
        if not body.lower().endswith(".npz"):
            return ""
        return (
            f" (for a file write npz:{body}; on the command line a comma inside a file name is "
            "written \\,)"
        )

    def load(
        self,
        spec: DatasetSpec,
        part: str,
        data_dir: Path,
        *,
        download: bool,
        like: ImageSet | None,
    ) -> ImageSet:
        """Read the whole file (cached while it is unchanged).

        Raises:
            DismaxError: If the file does not exist or cannot be read.
        """
        assert spec.path is not None  # set by parse
        path = spec.path
        problem = file_problem(path)
        if problem is not None:
            raise DismaxError(
                f"npz file {quote_path(path)} (from {quote_path(spec.text)}) {problem}; check the "
                "path, e.g. "
                "npz:../shared/data/cifar10_test.npz"
            )
        raw = cached(("npz", *file_key(path)), lambda: read_npz(path))
        return to_image_set(raw, spec, split="all", origin=f"npz:{path.resolve()}")

    def describe(self, data_dir: Path) -> list[DatasetInfo]:
        """The ``npz:PATH`` form."""
        return [
            DatasetInfo(
                name="npz:PATH",
                aliases=(),
                kind="file",
                source="an .npz file: x uint8 NxHxWxC (+ y int64, classes) or encoded bytes "
                "(data, offsets); e.g. npz:../shared/data/cifar10_test.npz",
                size="as stored; train/test = 80/20 carve",
                licence="that of the data",
                present=None,
                location="PATH",
            )
        ]


class ImageFolderSource(_PathSource):
    """``imagefolder:PATH``: ``PATH/<class>/<image>`` (labelled) or ``PATH/<image>``."""

    key = "imagefolder"
    prefix = "imagefolder:"
    forms = ("imagefolder:PATH",)
    path_problem = staticmethod(folder_problem)

    def hint(self, body: str) -> str:
        """Suggest ``imagefolder:`` for an existing folder."""
        if Path(body).expanduser().is_dir():
            return f" (for a folder write imagefolder:{body})"
        return ""

    def load(
        self,
        spec: DatasetSpec,
        part: str,
        data_dir: Path,
        *,
        download: bool,
        like: ImageSet | None,
    ) -> ImageSet:
        """Read the whole folder; mixed sizes go to ``like``'s size when it is square.

        Raises:
            DismaxError: If the folder does not exist or holds unreadable images.
        """
        assert spec.path is not None  # set by parse
        folder = spec.path
        size = None
        if like is not None and like.image_shape[0] == like.image_shape[1]:
            size = like.image_shape[0]
        problem = folder_problem(folder)
        if problem is not None:
            raise DismaxError(
                f"image folder {quote_path(folder)} (from {quote_path(spec.text)}) {problem}; "
                "check the path"
            )
        origin = f"imagefolder:{folder.resolve()}"
        from dismax_cli.data.stream import folder_stream_set  # torch: only when a set is built

        streamed = folder_stream_set(folder, spec=spec.text, origin=origin, size=size)
        if streamed is not None:  # too large for memory, or --stream (README "Streaming")
            return streamed  # type: ignore[return-value]
        raw = cached(
            ("imagefolder", *file_key(folder), size),
            lambda: read_image_folder(folder, size=size),
        )
        return to_image_set(raw, spec, split="all", origin=f"imagefolder:{folder.resolve()}")

    def describe(self, data_dir: Path) -> list[DatasetInfo]:
        """The ``imagefolder:PATH`` form."""
        return [
            DatasetInfo(
                name="imagefolder:PATH",
                aliases=(),
                kind="file",
                source="a folder: PATH/<class>/<image> (labelled) or PATH/<image> (unlabelled)",
                size="as stored; train/test = 80/20 carve",
                licence="that of the data",
                present=None,
                location="PATH",
            )
        ]
