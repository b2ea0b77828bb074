"""The training epoch: ``train_one_epoch`` over any iterable of batches, and the in-memory batches.

:func:`train_one_epoch` trains any ``nn.Module`` that maps images to logits on a torch
``DataLoader`` or any iterable of ``(images, targets)`` float batches, optionally mixing FPR
mosaics (METHOD.md §2). :class:`InMemoryBatches` is the CLI's fast path as one such iterable:
seeded batch order over a uint8 tensor on the device, device-side augmentation (random crop with
4-pixel padding and horizontal flip), normalisation. Every random draw of an epoch comes from one
generator, seeded by ``(seed, epoch)`` (:func:`epoch_generator`), and the model's own draws
(dropout) from torch's global generators seeded per epoch (:func:`seeded_global_rng`), so a
resumed run repeats an uninterrupted one bit for bit on CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dismax_cli.core.mixing import FractionalMix, fractional_probability_mix
from dismax_cli.data import ImageTransform, augment_batch
from dismax_cli.data.transforms import random_resized_crop_batch
from dismax_cli.engine import distributed
from dismax_cli.engine.config import MIN_BATCH
from dismax_cli.engine.devices import autocast, to_device_layout
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q

#: ``mix(images, targets) -> FractionalMix``: how a batch becomes an FPR batch (METHOD.md §2).
MixFn = Callable[[torch.Tensor, torch.Tensor], FractionalMix]


def fpr_mix(num_classes: int, *, generator: torch.Generator | None = None) -> MixFn:
    """The FPR mixer of ``num_classes`` classes for :func:`train_one_epoch` (METHOD.md §2).

    Args:
        num_classes: C.
        generator: source of the mosaics' random draws (None: torch's global generator).

    Returns:
        ``mix(images (B, C, H, W), targets (B,)) -> FractionalMix``.
    """

    def mix(images: torch.Tensor, targets: torch.Tensor) -> FractionalMix:
        return fractional_probability_mix(images, targets, num_classes, generator=generator)

    return mix


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator of every random draw in (0-based) ``epoch`` of a run seeded ``seed``."""
    digest = hashlib.sha256(f"dismax-epoch:{seed}:{epoch}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


@contextlib.contextmanager
def seeded_global_rng(seed: int, epoch: int, rank: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global generators for (0-based) ``epoch`` of rank ``rank``; restore them after.

    Layers of the model draw from the global generators (dropout, stochastic depth), which the
    epoch's own generator (:func:`epoch_generator`) does not reach: without a seed per epoch two
    runs with one seed differ and a resumed run leaves its uninterrupted twin (README, resume).
    The seed is a hash of ``(seed, epoch, rank)`` (each rank draws its own masks, as its own
    shard of each batch); the caller's generator states (CPU, and ``device``'s on CUDA) are
    restored on exit, so :func:`~dismax_cli.engine.run.fit` leaves a library user's RNG as found.
    """
    digest = hashlib.sha256(f"dismax-model-rng:{seed}:{epoch}:{rank}".encode()).digest()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
        yield


def epoch_batches_plan(
    n: int, batch_size: int, *, rank: int, world_size: int
) -> tuple[list[int], list[float]]:
    """One epoch's global batch sizes over ``n`` images and this rank's loss weight for each.

    One process: :func:`batch_sizes` and weights 1. Under torchrun:
    :func:`~dismax_cli.engine.distributed.global_batch_sizes`, each rank holding its contiguous
    piece of every batch, weighted by :func:`~dismax_cli.engine.distributed.loss_weight` so the
    averaged gradient is the global batch's. Shared by the in-memory and streamed batches.

    Raises:
        DismaxError: for a ``batch_size`` or ``n`` below 2, or too few images for the ranks.
    """
    sizes = batch_sizes(n, batch_size)  # checks batch_size and n even under torchrun
    if world_size <= 1:
        return sizes, [1.0] * len(sizes)
    sizes = distributed.global_batch_sizes(n, batch_size, world_size)
    local = [distributed.split_sizes(s, world_size)[rank] for s in sizes]
    weights = [distributed.loss_weight(k, s, world_size) for k, s in zip(local, sizes, strict=True)]
    return sizes, weights


def batch_sizes(n: int, batch_size: int) -> list[int]:
    """The sizes of one epoch's training batches over ``n`` images; none is below 2.

    Batches hold ``batch_size`` images and the last one the remainder, except that a remainder
    of one image joins the batch before it (``batch_size + 1`` images): BatchNorm cannot train on
    one image, and every image is still seen once per epoch. No random draw is involved, so the
    batches of a resumed run are those of an uninterrupted one.

    Raises:
        DismaxError: when ``n`` or ``batch_size`` is below 2.
    """
    if batch_size < MIN_BATCH:
        raise DismaxError(
            f"batch_size={q(batch_size)} is invalid: use an integer of at least {MIN_BATCH} "
            "(BatchNorm cannot train on one image)"
        )
    if n < MIN_BATCH:
        raise DismaxError(
            f"the training split holds {n} image(s): training needs at least {MIN_BATCH} "
            "(BatchNorm cannot train on one image); use a larger dataset"
        )
    sizes = [batch_size] * (n // batch_size)
    rest = n % batch_size
    if rest == 1 and sizes:
        sizes[-1] += 1
    elif rest:
        sizes.append(rest)
    return sizes


def iterate_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index batches covering ``range(n)`` once, sized by :func:`batch_sizes`.

    Yields:
        int64 index tensors (b,) on the CPU, 2 <= b <= batch_size + 1.

    Raises:
        DismaxError: when ``n`` or ``batch_size`` is below 2.
    """
    sizes = batch_sizes(n, batch_size)
    order = torch.randperm(n, generator=generator)
    start = 0
    for size in sizes:
        yield order[start : start + size]
        start += size


class LossMeter:
    """Sums an epoch's per-batch losses without a float64 tensor on the training device.

    MPS has no float64, so the device holds only a float32 buffer of the batch losses (B,),
    written without a host synchronisation; :meth:`total` copies the new entries to the host and
    adds ``loss × images`` in Python floats (float64), so the sum is as exact as before.

    Args:
        batches: the expected number of batches of the epoch (the buffer grows past it).
        device: the training device.
    """

    def __init__(self, batches: int, device: torch.device) -> None:
        self.losses = torch.zeros(max(batches, 1), dtype=torch.float32, device=device)
        self._sizes: list[int] = []
        self._summed = 0
        self._total = 0.0

    def add(self, loss: torch.Tensor, images: int) -> None:
        """Record the mean loss (a 0-dim tensor on the device) of a batch of ``images``."""
        if len(self._sizes) == len(self.losses):  # an iterable longer than announced: grow
            self.losses = torch.cat([self.losses, torch.zeros_like(self.losses)])
        self.losses[len(self._sizes)] = loss.detach().to(torch.float32)
        self._sizes.append(int(images))

    def total(self) -> float:
        """Sum of ``loss × images`` over the batches added so far (NaN or inf if one was)."""
        new = self._sizes[self._summed :]
        if new:
            values = self.losses[self._summed : len(self._sizes)].tolist()
            self._total += sum(v * n for v, n in zip(values, new, strict=True))
            self._summed = len(self._sizes)
        return self._total



class InMemoryBatches:
    """One epoch of training batches drawn from a uint8 image tensor (the CLI's fast path).

    Iterating draws a seeded order (:func:`iterate_batches`), then per batch: gathers the images
    on their device, augments them there (when ``augment``), normalises them with ``transform``
    and yields ``(inputs, targets)``. All draws use ``generator``; pass the same generator to
    :func:`fpr_mix` to keep an epoch's draws in one stream.

    Args:
        images: uint8 (N, H, W, C), on the training device.
        labels: int64 (N,), on the same device.
        batch_size: images per batch (a one-image remainder joins the previous batch).
        transform: the ID transform (uint8 NHWC -> float NCHW, normalised).
        generator: the epoch's generator (:func:`epoch_generator`).
        augment: random crop with 4-pixel padding and horizontal flip (``recipe="cifar"``), or
            RandomResizedCrop to the transform's side + flip (``"imagenet"``, image by image).
        recipe: ``"cifar"`` or ``"imagenet"`` (README "224-pixel recipes").
        rank, world_size: under torchrun, this rank's contiguous part of every global batch
            (:mod:`~dismax_cli.engine.distributed`: same order on every rank, augmentation
            from :func:`~dismax_cli.engine.distributed.rank_generator`).

    Attributes:
        loss_weights: per batch, the factor on this rank's mean loss that makes DDP's averaged
            gradient that of the global batch (all 1 in one process).

    Yields:
        float (B, C, H, W) inputs and int64 (B,) targets on ``images``' device.

    Raises:
        DismaxError: when ``N`` or ``batch_size`` is below 2 (``2 * world_size`` for ``N``).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        transform: ImageTransform,
        generator: torch.Generator,
        augment: bool,
        recipe: str = "cifar",
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.transform = batch_size, transform
        self.generator, self.augment, self.recipe = generator, augment, recipe
        self.rank, self.world_size = rank, world_size
        self.sizes, self.loss_weights = epoch_batches_plan(
            len(images), batch_size, rank=rank, world_size=world_size
        )

    def __len__(self) -> int:
        return len(self.sizes)

    def _indices(self) -> Iterable[torch.Tensor]:
        if self.world_size == 1:
            return iterate_batches(len(self.images), self.batch_size, self.generator)
        order = torch.randperm(len(self.images), generator=self.generator)
        return distributed.rank_batches(order, self.sizes, self.rank, self.world_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device = self.images.device
        draws = distributed.rank_generator(self.generator, self.rank)
        for index in self._indices():
            index = index.to(device)
            batch = self.images[index]
            if self.augment and self.recipe == "imagenet":
                size = self.transform.image_size
                crops = random_resized_crop_batch(batch, size=size, generator=self.generator)
                inputs = crops.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
                yield self.transform.from_float(inputs, geometry=False), self.labels[index]
                continue
            if self.augment:
                batch = augment_batch(batch, generator=draws)
            yield self.transform(batch), self.labels[index]


@dataclass(frozen=True)
class EpochStats:
    """What :func:`train_one_epoch` did (so far, when given to ``on_batch``).

    Attributes:
        batches: batches trained on.
        images: input images seen (before FPR mixing).
        loss: mean training loss per image.
        accuracy: the fraction of clean images (all of them without FPR) predicted right.
        seconds: wall-clock time since the epoch started.
        clean: clean images the accuracy is over (0: not counted).
    """

    batches: int
    images: int
    loss: float
    accuracy: float
    seconds: float
    clean: int = 0

    @property
    def images_per_s(self) -> float:
        return self.images / max(self.seconds, 1e-9)


class NonFiniteLossError(DismaxError):
    """The training loss became NaN or infinite (the weights are no longer usable)."""


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _step(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    mix: MixFn | None,
    weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One optimiser step on ``weight ×`` the loss; returns (loss, correct clean predictions,
    clean images), on device."""
    with autocast(inputs.device):
        if mix is not None:
            batch = mix(inputs, targets)
            logits = model(batch.images).float()
            loss = loss_fn(logits, batch)
            clean = slice(0, batch.num_clean)
            correct = (logits[clean].argmax(1) == batch.targets[clean]).sum()
            clean_seen = batch.num_clean
        else:
            logits = model(inputs).float()
            loss = loss_fn(logits, targets)
            correct = (logits.argmax(1) == targets).sum()
            clean_seen = len(targets)
    optimizer.zero_grad(set_to_none=True)
    (loss if weight == 1.0 else loss * weight).backward()
    optimizer.step()
    return loss, correct, clean_seen


def train_one_epoch(
    model: nn.Module,
    loss_fn: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    *,
    mix: MixFn | None = None,
    device: torch.device | str | None = None,
    on_batch: Callable[[EpochStats], None] | None = None,
    report_every: int = 10,
    loss_weights: Sequence[float] | None = None,
    all_finite: Callable[[bool], bool] | None = None,
) -> EpochStats:
    """Train ``model`` for one pass over ``batches`` (train mode; one step per batch).

    Args:
        model: any module mapping images (B, C, H, W) to logits (B, C).
        loss_fn: ``loss_fn(logits, targets)``, or ``loss_fn(logits, FractionalMix)`` with ``mix``
            (e.g. :class:`~dismax_cli.core.losses.DisMaxLoss`).
        batches: a ``DataLoader`` or any iterable of ``(images, targets)``: float (B, C, H, W)
            and int64 (B,), B >= 2 (BatchNorm); moved to ``device`` when elsewhere.
        optimizer: stepped once per batch.
        mix: FPR mixer (:func:`fpr_mix`, METHOD.md §2) or None for clean batches.
        device: where to train (default: the device of the model's parameters).
        on_batch: called with the running :class:`EpochStats` every ``report_every`` batches
            and after the last one.
        report_every: batches between ``on_batch`` calls.
        loss_weights: per batch, a factor on the loss before ``backward`` (the reported loss is
            unscaled); :attr:`InMemoryBatches.loss_weights` under torchrun.
        all_finite: ``all_finite(ok) -> ok on every rank``
            (:func:`~dismax_cli.engine.distributed.all_finite`): the finiteness checks then run
            at the same batches on every rank, so a non-finite loss on one stops them all.

    Returns:
        The epoch's :class:`EpochStats` (mean loss per image, clean accuracy, time).

    Raises:
        NonFiniteLossError: (a :class:`DismaxError`) when the loss becomes NaN or infinite
            (checked every batch on CPU, at every report and at the end elsewhere).
    """
    device = _device_of(model) if device is None else torch.device(device)
    total = len(batches) if hasattr(batches, "__len__") else None  # type: ignore[arg-type]
    model.train()
    tally = _Tally(total or 64, device)
    for inputs, targets in batches:
        inputs = to_device_layout(inputs.to(device, non_blocking=True), device)
        targets = targets.to(device, non_blocking=True)
        weight = 1.0 if loss_weights is None else loss_weights[tally.batches]
        step = _step(model, loss_fn, optimizer, inputs, targets, mix, weight)
        tally.add(*step, len(targets))
        done = tally.batches
        due = done % report_every == 0 or done == total
        report = on_batch is not None and due
        if (due or device.type == "cpu") and not tally.finite(all_finite):
            raise NonFiniteLossError(f"the training loss became non-finite in batch {done}")
        if report:
            on_batch(tally.stats())  # type: ignore[misc]
    if not tally.finite(all_finite):
        raise NonFiniteLossError(f"the training loss became non-finite in batch {tally.batches}")
    return tally.stats()


class _Tally:
    """An epoch's running loss (float32 on the device), clean accuracy and image counts."""

    def __init__(self, expected_batches: int, device: torch.device) -> None:
        self.meter = LossMeter(expected_batches, device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.batches = self.images = self.clean = 0
        self.started = time.perf_counter()

    def add(self, loss: torch.Tensor, correct: torch.Tensor, clean: int, images: int) -> None:
        self.meter.add(loss, images)
        self.correct += correct
        self.clean += clean
        self.images += images
        self.batches += 1

    def finite(self, all_finite: Callable[[bool], bool] | None) -> bool:
        ok = math.isfinite(self.meter.total())
        return ok if all_finite is None else all_finite(ok)

    def stats(self) -> EpochStats:
        return EpochStats(
            batches=self.batches,
            images=self.images,
            loss=self.meter.total() / max(self.images, 1),
            accuracy=int(self.correct) / max(self.clean, 1),
            seconds=time.perf_counter() - self.started,
            clean=self.clean,
        )


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached, contiguous CPU copy of ``model.state_dict()`` (what checkpoints store)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


__all__ = [
    "EpochStats",
    "InMemoryBatches",
    "LossMeter",
    "MixFn",
    "NonFiniteLossError",
    "batch_sizes",
    "cpu_state",
    "epoch_generator",
    "seeded_global_rng",
    "fpr_mix",
    "iterate_batches",
    "train_one_epoch",
]
