"""Data-parallel training and exact evaluation under ``torchrun`` (``torch.distributed``).

Everything here is a no-op in one process: :func:`launched` is true only when torchrun started
the process with ``WORLD_SIZE`` > 1, and every helper then answers as for rank 0 of 1.

* Process group: :func:`init_process_group` reads torchrun's ``RANK`` / ``WORLD_SIZE`` /
  ``LOCAL_RANK`` / ``MASTER_ADDR`` / ``MASTER_PORT`` (``init_method="env://"``); NCCL when the
  run's device is CUDA (each rank on ``cuda:LOCAL_RANK``), gloo on CPU.
* Sharding (METHOD.md §6 batches, split over ranks): every rank draws the same epoch order from
  the run's ``(seed, epoch)`` generator (``DistributedSampler``'s ``set_epoch`` idea), cuts it
  into the global batches of ``--batch-size`` and takes its contiguous part of each
  (:func:`rank_batches`), so the ranks' shards are disjoint and together cover the epoch once.
  Unlike ``DistributedSampler`` nothing is padded with repeated images and nothing is dropped:
  a tail too small to give every rank ``MIN_BATCH`` images joins the batch before it
  (:func:`global_batch_sizes`), and an uneven tail split is weighted (:func:`loss_weight`) so the
  averaged gradient is that of the global batch's mean loss.
* Augmentation and FPR mosaics (METHOD.md §2) are drawn per rank from that rank's own stream
  (:func:`rank_generator`), over that rank's shard.
* Evaluation is exact: :func:`shard_range` gives each rank a contiguous, possibly uneven slice
  and :func:`gather_rows` gathers the variable-length results back in the original order, so
  every sample is scored once (no padding duplicate, no dropped tail).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

from dismax_cli.config import InvalidValueError
from dismax_cli.engine.config import MIN_BATCH
from dismax_cli.engine.devices import torchrun_device as rank_device
from dismax_cli.engine.devices import torchrun_env_int as _env_int
from dismax_cli.errors import DismaxError

if TYPE_CHECKING:
    from dismax_cli.engine.loop import EpochStats


def launched() -> bool:
    """Whether torchrun started this process as one of several (``WORLD_SIZE`` > 1)."""
    return _env_int("WORLD_SIZE", 1) > 1


def active() -> bool:
    """Whether a process group of more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


_local_depth = 0


@contextlib.contextmanager
def local_only() -> Iterator[None]:
    """Within this block :func:`sharded` is false: each rank predicts every image itself,
    without collectives (for per-rank timing loops whose length depends on the clock)."""
    global _local_depth
    _local_depth += 1
    try:
        yield
    finally:
        _local_depth -= 1


def sharded() -> bool:
    """Whether prediction is split over the ranks and gathered (torchrun, outside
    :func:`local_only`)."""
    return active() and _local_depth == 0


def rank() -> int:
    """This process's rank (0 in one process)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """The number of ranks (1 in one process)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Whether this process writes files and prints (rank 0, or the only process)."""
    return rank() == 0 if active() else _env_int("RANK", 0) == 0


def init_process_group(device: torch.device) -> torch.device:
    """Join torchrun's process group (once; a no-op in one process) and return this rank's device.

    Backend NCCL for CUDA, gloo for CPU. The group is destroyed at exit.

    Raises:
        DismaxError: see :func:`rank_device`.
    """
    device = rank_device(device)
    if not launched() or dist.is_initialized():
        return device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method="env://")
    atexit.register(_destroy)
    return device


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    """Where collective tensors live: the current GPU for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every rank (a no-op in one process)."""
    if active():
        dist.barrier()


def check_batch_size(batch_size: int, world: int) -> None:
    """Refuse a global batch that does not split evenly over ``world`` ranks of >= 2 images.

    Raises:
        InvalidValueError: naming the value and the fix (exit 2).
    """
    if world > 1 and (batch_size % world or batch_size < MIN_BATCH * world):
        raise InvalidValueError(
            "batch_size",
            f"--batch-size {batch_size} does not split over {world} ranks: the global batch is "
            f"split evenly, at least {MIN_BATCH} images per rank; use a multiple of {world} of "
            f"at least {MIN_BATCH * world}",
        )


def global_batch_sizes(n: int, batch_size: int, world: int) -> list[int]:
    """The sizes of one epoch's global batches over ``n`` images on ``world`` ranks.

    Batches of ``batch_size``, then the remainder; a remainder smaller than ``MIN_BATCH * world``
    (too small to give every rank 2 images for BatchNorm) joins the batch before it. With
    ``world`` = 1 these are :func:`~dismax_cli.engine.loop.batch_sizes`.

    Raises:
        DismaxError: when ``n`` < ``MIN_BATCH * world``.
    """
    least = MIN_BATCH * world
    if n < least:
        raise DismaxError(
            f"the training split holds {n} image(s): {world} ranks need at least {least} "
            f"({MIN_BATCH} per rank for BatchNorm); use fewer ranks or a larger dataset"
        )
    sizes = [batch_size] * (n // batch_size)
    rest = n % batch_size
    if rest and rest < least and sizes:
        sizes[-1] += rest
    elif rest:
        sizes.append(rest)
    return sizes


def split_sizes(n: int, parts: int) -> list[int]:
    """``n`` items in ``parts`` contiguous pieces, sizes differing by at most 1 (larger first)."""
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def shard_range(n: int, *, part: int | None = None, parts: int | None = None) -> range:
    """The contiguous indices of ``range(n)`` that rank ``part`` of ``parts`` scores."""
    part = rank() if part is None else part
    parts = world_size() if parts is None else parts
    sizes = split_sizes(n, parts)
    start = sum(sizes[:part])
    return range(start, start + sizes[part])


def rank_batches(
    order: torch.Tensor, sizes: list[int], part: int, parts: int
) -> list[torch.Tensor]:
    """This rank's contiguous piece of every global batch of ``order`` (sizes from
    :func:`global_batch_sizes`): int64 index tensors, disjoint across ranks, covering ``order``."""
    out, start = [], 0
    for size in sizes:
        piece = shard_range(size, part=part, parts=parts)
        out.append(order[start + piece.start : start + piece.stop])
        start += size
    return out


def loss_weight(local: int, global_batch: int, world: int) -> float:
    """Factor on a rank's mean loss so DDP's gradient mean is that of the global batch's mean.

    DDP averages the ranks' gradients (divides by ``world``); a rank holding ``local`` of the
    ``global_batch`` images scales its mean loss by ``local * world / global_batch`` (1 when the
    batch splits evenly).
    """
    return local * world / global_batch


def rank_generator(generator: torch.Generator, part: int) -> torch.Generator:
    """Rank ``part``'s stream of augmentation and FPR draws in an epoch.

    Rank 0 keeps the epoch's generator (so one process draws what it always drew); rank r > 0
    gets a generator seeded from the epoch generator's seed and r.
    """
    if part == 0:
        return generator
    digest = hashlib.sha256(f"dismax-rank:{generator.initial_seed()}:{part}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def all_finite(ok: bool) -> bool:
    """True when ``ok`` holds on every rank (one all_reduce of a flag; ``ok`` in one process)."""
    if not active():
        return ok
    flag = torch.tensor([0.0 if ok else 1.0], device=_comm_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item() == 0.0)


def sum_over_ranks(values: list[float]) -> list[float]:
    """Element-wise sums of ``values`` over the ranks, in float64 (``values`` in one process)."""
    if not active():
        return list(values)
    total = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(total)
    return total.tolist()


def global_epoch_stats(stats: EpochStats) -> EpochStats:
    """An epoch's mean loss, clean accuracy and image counts over every rank (sums of each
    rank's ``loss × images``, correct predictions and counts); ``stats`` in one process."""
    if not active():
        return stats
    correct = stats.accuracy * max(stats.clean, 1)
    loss_sum, correct, clean, images = sum_over_ranks(
        [stats.loss * stats.images, correct, stats.clean, stats.images]
    )
    return dataclasses.replace(
        stats,
        images=int(images),
        clean=int(clean),
        loss=loss_sum / max(images, 1),
        accuracy=round(correct) / max(clean, 1),
    )


def gather_rows(local: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's rows ``(n_r, ...)`` in rank order, on the CPU, on every rank.

    The sizes are gathered first, each piece is padded to the largest and trimmed after the
    ``all_gather``, so the ranks' pieces may differ in length (0 included).

    Returns:
        ``(sum n_r, ...)`` with ``local``'s dtype and trailing shape (``local`` in one process).
    """
    if not active():
        return local
    device = _comm_device()
    sizes = torch.zeros(world_size(), dtype=torch.int64, device=device)
    # all_gather_single is the newer name (torch 2.11+) of all_gather_into_tensor.
    gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather_single(sizes, torch.tensor([len(local)], device=device))
    counts = sizes.tolist()
    padded = torch.zeros((max(counts), *local.shape[1:]), dtype=local.dtype, device=device)
    padded[: len(local)] = local.to(device)
    pieces = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(pieces, padded)
    return torch.cat([p[:c].cpu() for p, c in zip(pieces, counts, strict=True)])


class _AllReduceSum(torch.autograd.Function):
    """``all_reduce(SUM)`` with its gradient (the sum of every rank's gradient), as
    ``torch.distributed.nn.functional.all_reduce`` (deprecated in torch 2.14) does it."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(grad)


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the global batch, for gloo on the CPU.

    torch's ``nn.SyncBatchNorm`` runs only on GPUs; this computes the same statistics (the sum
    of x, then of the squared deviations, over every rank's images) through an ``all_reduce``
    whose backward all-reduces the gradient, so the gradient flows through the collective.
    Input (B, C, ...) with B >= 1 per rank; outside training or in one process it is plain
    BatchNorm. Its parameters and buffers are BatchNorm's, so checkpoints load into the plain
    model. Source: Ioffe & Szegedy 2015 (batch statistics), computed over the global batch.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and active()):
            return super().forward(input)
        all_reduce = _AllReduceSum.apply
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        count = torch.tensor([input.numel() / input.shape[1]], dtype=torch.float64)
        dist.all_reduce(count)
        total = float(count.item())
        mean = all_reduce(input.sum(dims)) / total
        centred = input - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims)) / total
        out = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1  # type: ignore[operator]
                factor = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                unbiased = var * (total / max(total - 1.0, 1.0))
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.detach(), alpha=factor)  # type: ignore[union-attr]
        return out


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of ``model`` synchronised over the ranks: torch's ``nn.SyncBatchNorm``
    on CUDA, :class:`CpuSyncBatchNorm` elsewhere (parameters and buffers shared, not copied)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert_cpu(model)


def _convert_cpu(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, CpuSyncBatchNorm
    ):
        new = CpuSyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine,
            module.track_running_stats,
        )  # fmt: skip
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        new.running_mean, new.running_var = module.running_mean, module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, _convert_cpu(child))
    return module


def wrap_model(model: nn.Module, device: torch.device, *, sync_bn: bool) -> nn.Module:
    """The module to train: ``model`` itself in one process, else DistributedDataParallel
    around it (BatchNorm converted in place first with ``sync_bn``). ``model`` keeps the
    weights, so checkpoints hold its plain ``state_dict`` (no ``module.`` prefix)."""
    if not active():
        return model
    if sync_bn:
        converted = convert_sync_batchnorm(model, device)
        if converted is not model:  # pragma: no cover - a bare BatchNorm as the whole model
            raise DismaxError("--sync-bn needs a model that is not itself one BatchNorm layer")
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


__all__ = [
    "CpuSyncBatchNorm",
    "active",
    "all_finite",
    "barrier",
    "check_batch_size",
    "convert_sync_batchnorm",
    "gather_rows",
    "global_batch_sizes",
    "global_epoch_stats",
    "init_process_group",
    "is_main",
    "launched",
    "local_only",
    "loss_weight",
    "rank",
    "rank_batches",
    "rank_device",
    "rank_generator",
    "shard_range",
    "sharded",
    "split_sizes",
    "sum_over_ranks",
    "world_size",
]
