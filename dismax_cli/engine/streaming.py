"""DataLoader batches of streamed sets (README "Streaming"): training epochs and prediction.

Worker processes decode each file (Pillow), augment it (the run's recipe: pad-4 crop + flip, or
the 224-pixel RandomResizedCrop + flip with torchvision transforms v2) and normalise it with the
run's :class:`~dismax_cli.data.ImageTransform`; the DataLoader collates float ``(B, C, S, S)``
batches. Memory: ``workers × prefetch × batch`` images in flight, whatever the set's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dismax_cli.data import ImageSet, ImageTransform, augment_batch
from dismax_cli.data.stream import ImageFiles, StreamSet, default_workers
from dismax_cli.data.transforms import random_resized_crop_flip
from dismax_cli.engine import distributed
from dismax_cli.engine.loop import InMemoryBatches, epoch_batches_plan

_MASK63 = (1 << 63) - 1


def sample_seed(base: int, position: int) -> int:
    """The seed of one image's augmentation in an epoch: a fixed mix of ``(base, position)``."""
    x = (base ^ (position * 0x9E3779B97F4A7C15)) & _MASK63
    x = ((x ^ (x >> 31)) * 0xBF58476D1CE4E5B9) & _MASK63
    return (x ^ (x >> 29)) & _MASK63


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)


class _TrainFiles(Dataset):
    """``dataset[(i, seed)]`` -> (normalised float ``(C, S, S)``, label) of file ``i``."""

    def __init__(
        self,
        files: ImageFiles,
        labels: np.ndarray,
        transform: ImageTransform,
        *,
        augment: bool,
        recipe: str,
    ) -> None:
        self.files, self.labels, self.transform = files, labels, transform
        self.augment, self.recipe = augment, recipe

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        i, seed = key
        image = self.files.decode(i)  # uint8 (H, W, 3)
        generator = torch.Generator().manual_seed(seed)
        if self.augment and self.recipe == "imagenet":
            crop = random_resized_crop_flip(
                image.permute(2, 0, 1), size=self.transform.image_size, generator=generator
            )
            x = self.transform.from_float(crop[None].float().div_(255.0), geometry=False)
        else:
            batch = image[None]
            if self.augment:  # the in-memory path's pad-4 crop + flip, at the decoded size
                batch = augment_batch(batch, generator=generator)
            x = self.transform(batch)
        return x[0], int(self.labels[i])


class _EvalFiles(Dataset):
    """``dataset[i]`` -> the evaluation transform of file ``i``, float ``(C, S, S)``."""

    def __init__(self, files: ImageFiles, transform: ImageTransform) -> None:
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.files.decode(i)[None])[0]


class _EpochSampler:
    """Batches of ``(position, seed)`` keys in the epoch's order (built lazily, batch by batch)."""

    def __init__(self, chunks: list[torch.Tensor], base: int) -> None:
        self.chunks, self.base = chunks, base

    def __len__(self) -> int:
        return len(self.chunks)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for chunk in self.chunks:
            yield [(i, sample_seed(self.base, i)) for i in chunk.tolist()]


def _loader(dataset: Dataset, *, workers: int | None, pin: bool, **kwargs: Any) -> DataLoader:
    workers = default_workers() if workers is None else workers
    return DataLoader(
        dataset,
        num_workers=workers,
        pin_memory=pin,
        worker_init_fn=_one_thread if workers else None,
        prefetch_factor=2 if workers else None,
        **kwargs,
    )


class StreamBatches:
    """One epoch of training batches of a :class:`StreamSet` through DataLoader workers.

    The epoch's ``generator`` draws the order (``randperm``, sized by
    :func:`~dismax_cli.engine.loop.batch_sizes`) and one base seed; image ``i``'s augmentation
    uses ``sample_seed(base, i)``. Pass the same generator to ``fpr_mix`` (drawn after these).

    Args:
        train: the streamed training split (labelled).
        batch_size: images per batch (a one-image remainder joins the previous batch).
        transform: the run's ID transform.
        generator: the epoch's generator.
        augment: the recipe's augmentation on/off.
        recipe: ``"cifar"`` or ``"imagenet"``.
        workers: DataLoader workers (default :func:`~dismax_cli.data.stream.default_workers`).
        pin_memory: pin host batches (for CUDA).
        rank, world_size: under torchrun, this rank's contiguous part of every global batch
            (the same rule as :class:`~dismax_cli.engine.loop.InMemoryBatches`; image ``i``'s
            augmentation seed does not depend on the rank).

    Attributes:
        loss_weights: per batch, the factor on this rank's mean loss that makes DDP's averaged
            gradient that of the global batch (all 1 in one process).

    Yields:
        float ``(B, C, S, S)`` inputs and int64 ``(B,)`` targets on the CPU.

    Raises:
        DismaxError: when ``N`` or ``batch_size`` is below 2, or a file cannot be decoded.
    """

    def __init__(
        self,
        train: StreamSet,
        *,
        batch_size: int,
        transform: ImageTransform,
        generator: torch.Generator,
        augment: bool,
        recipe: str,
        workers: int | None = None,
        pin_memory: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        assert train.labels is not None  # load_run_data refuses unlabelled ID sets
        self.dataset = _TrainFiles(
            train.files, train.labels.numpy(), transform, augment=augment, recipe=recipe
        )
        self.sizes, self.loss_weights = epoch_batches_plan(
            len(train), batch_size, rank=rank, world_size=world_size
        )
        self.rank, self.world_size = rank, world_size
        self.generator, self.workers, self.pin = generator, workers, pin_memory

    def __len__(self) -> int:
        return len(self.sizes)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.dataset), generator=self.generator)
        base = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        if self.world_size > 1:
            chunks = distributed.rank_batches(order, self.sizes, self.rank, self.world_size)
        else:
            chunks = list(torch.split(order, self.sizes))
        sampler = _EpochSampler(chunks, base)
        yield from _loader(
            self.dataset, workers=self.workers, pin=self.pin, batch_sampler=sampler
        )


def stream_eval_batches(
    files: ImageFiles,
    transform: ImageTransform,
    *,
    batch_size: int = 256,
    workers: int | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """Evaluation batches of ``files`` in order: float ``(B, C, S, S)`` through ``transform``."""
    return _loader(
        _EvalFiles(files, transform),
        workers=workers,
        pin=pin_memory,
        batch_size=batch_size,
        shuffle=False,
    )


def pixels_of(images: torch.Tensor | ImageFiles, *, side: int | None = None) -> torch.Tensor:
    """uint8 ``(N, S, S, 3)`` pixels of ``images`` (a tensor comes back as it is).

    Files are decoded and brought to ``side`` (default their nominal side) by a shorter-side
    resize and centre crop; used for the few images the benchmark times inference on.
    """
    if isinstance(images, torch.Tensor):
        return images
    size = images.side if side is None else side
    geometry = ImageTransform(image_size=size, channels=3, mean=(0.0,), std=(1.0,))
    out = torch.empty((len(images), size, size, 3), dtype=torch.uint8)
    for i in range(len(images)):
        x = images.decode(i).permute(2, 0, 1)[None].float().div_(255.0)
        y = geometry.from_float(x).mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
        out[i] = y[0].permute(1, 2, 0)
    return out


__all__ = ["StreamBatches", "pixels_of", "sample_seed", "stream_eval_batches"]


def epoch_batches(
    train: StreamSet | ImageSet,
    images: torch.Tensor | None,
    labels: torch.Tensor | None,
    *,
    batch_size: int,
    transform: ImageTransform,
    generator: torch.Generator,
    augment: bool,
    recipe: str,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
) -> InMemoryBatches | StreamBatches:
    """One epoch of training batches: streamed from disk through workers when ``images`` is
    None (``train`` is a :class:`StreamSet`), else from the uint8 ``images`` (N, H, W, C) and
    ``labels`` (N,) already on the training device. Under torchrun both give this rank's part
    of every global batch (``rank``, ``world_size``)."""
    if images is None:
        return StreamBatches(
            train,  # type: ignore[arg-type]
            batch_size=batch_size, transform=transform, generator=generator, augment=augment,
            recipe=recipe, pin_memory=device.type == "cuda", rank=rank, world_size=world_size,
        )  # fmt: skip
    assert labels is not None
    return InMemoryBatches(
        images, labels, batch_size=batch_size, transform=transform, generator=generator,
        augment=augment, recipe=recipe, rank=rank, world_size=world_size,
    )  # fmt: skip
