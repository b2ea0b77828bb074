"""Inference: raw logits (T = 1) of any model over any iterable of batches, optionally features.

Heads return raw logits; OOD scores are computed from them at T = 1, probabilities at the run's
fitted temperature as ``softmax(logits / T)`` (METHOD.md §3, §4). Nothing here reads or changes a
temperature.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from dismax_cli.core.heads import DisMaxHead, IsoMaxPlusHead, SoftMaxHead
from dismax_cli.data import ImageTransform
from dismax_cli.data.stream import ImageFiles
from dismax_cli.engine import distributed
from dismax_cli.engine.checkpoint import ModelBundle
from dismax_cli.engine.devices import autocast, to_device_layout
from dismax_cli.errors import DismaxError

_HEADS = (SoftMaxHead, IsoMaxPlusHead, DisMaxHead)


def _images_of(batch: Any) -> torch.Tensor:
    """The images of a batch: the tensor itself, or the first item of ``(images, targets)``."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise DismaxError(
        f"a batch of type {type(batch).__name__} cannot be predicted: yield image tensors "
        "(B, C, H, W) or (images, targets) pairs"
    )


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _find_head(model: nn.Module) -> nn.Module:
    head = getattr(model, "head", None)
    if isinstance(head, nn.Module):
        return head
    found = [m for m in model.modules() if isinstance(m, _HEADS)]
    found = found or [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not found:
        raise DismaxError(
            f"{type(model).__name__} has no head to take features from: pass head=the module "
            "whose input are the features"
        )
    return found[-1]


@torch.no_grad()
def predict_features_logits(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    head: nn.Module | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features and raw logits of every batch, in eval mode, in one pass.

    Args:
        model: any module mapping images to logits; its mode is restored afterwards.
        batches: a ``DataLoader`` or any iterable of image tensors (B, C, H, W) or of
            ``(images, targets)`` pairs.
        head: the module whose input is the features (default: ``model.head``, else the last
            dismax head or ``nn.Linear`` in the model).
        device: where to run (default: the device of the model's parameters).

    Returns:
        ``features`` (N, D) and ``logits`` (N, C), float32 on the CPU.

    Raises:
        DismaxError: for batches that are not image tensors, or a model without a head.
    """
    head = _find_head(model) if head is None else head
    captured: list[torch.Tensor] = []

    def keep(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        captured.append(inputs[0].detach().float().cpu())

    handle = head.register_forward_pre_hook(keep)
    try:
        logits = predict_logits(model, batches, device=device)
    finally:
        handle.remove()
    width = getattr(head, "num_features", getattr(head, "in_features", 0))
    features = torch.cat(captured) if captured else torch.zeros(0, int(width))
    return features, logits


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Raw logits (T = 1) of every batch, in eval mode, without changing the model.

    Args:
        model: any module mapping images (B, C, H, W) to logits (B, C); its train/eval mode is
            restored afterwards.
        batches: a ``DataLoader`` or any iterable of image tensors or ``(images, targets)``.
        device: where to run (default: the device of the model's parameters).

    Returns:
        float32 (N, C) logits on the CPU; (0, 0) when ``batches`` is empty.

    Raises:
        DismaxError: for batches that are not image tensors.
    """
    device = _device_of(model) if device is None else torch.device(device)
    was_training = model.training
    model.eval()
    out: list[torch.Tensor] = []
    try:
        for batch in batches:
            inputs = to_device_layout(_images_of(batch).to(device, non_blocking=True), device)
            with autocast(device):
                out.append(model(inputs).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


def image_batches(
    images: torch.Tensor, transform: ImageTransform, *, batch_size: int, device: torch.device
) -> Iterator[torch.Tensor]:
    """Normalised float batches (B, C, H, W) on ``device`` of uint8 ``images`` (N, H, W, C)."""
    for start in range(0, len(images), batch_size):
        yield transform(images[start : start + batch_size].to(device))


def predict_images(
    bundle: ModelBundle, images: torch.Tensor | ImageFiles, *, batch_size: int = 256
) -> torch.Tensor:
    """Raw logits (T = 1) of uint8 ``images`` through a run's transform and model.

    Args:
        bundle: the model, its transform and device.
        images: uint8 (N, H, W, C), any size and 1 or 3 channels (the transform adapts them),
            or the files of a streamed set (decoded by DataLoader workers, README "Streaming").
        batch_size: images per forward pass (results do not depend on it beyond float rounding).

    Under torchrun each rank scores a contiguous slice and every rank gets all N rows back in
    order (:func:`~dismax_cli.engine.distributed.gather_rows`): each image is scored exactly
    once, whatever N and the number of ranks.

    Returns:
        float32 (N, C) logits on the CPU.

    Raises:
        DismaxError: for a tensor that is not uint8 (N, H, W, C).
    """
    if distributed.launched():
        distributed.init_process_group(bundle.device)
    if isinstance(images, ImageFiles):
        from dismax_cli.engine.streaming import stream_eval_batches

        if len(images) == 0:
            return torch.zeros(0, bundle.meta.num_classes)
        pin = bundle.device.type == "cuda"
        files, sharded = images, distributed.sharded()
        if sharded:  # each rank decodes and scores its contiguous slice (as for tensors)
            part = distributed.shard_range(len(images))
            files = images[part.start : part.stop]
        logits = torch.zeros(0, bundle.meta.num_classes)
        if len(files):
            batches = stream_eval_batches(
                files, bundle.transform, batch_size=batch_size, pin_memory=pin
            )
            logits = predict_logits(bundle.model, batches, device=bundle.device)
        return distributed.gather_rows(logits) if sharded else logits
    if images.ndim != 4 or images.dtype != torch.uint8:
        raise DismaxError(
            f"images of shape {tuple(images.shape)} and dtype {images.dtype} cannot be scored: "
            "expected uint8 (N, H, W, C)"
        )
    if len(images) == 0:
        return torch.zeros(0, bundle.meta.num_classes)
    if distributed.sharded():
        part = distributed.shard_range(len(images))
        local = images[part.start : part.stop]
        logits = _predict_uint8(bundle, local, batch_size) if len(local) else None
        if logits is None:
            logits = torch.zeros(0, bundle.meta.num_classes)
        return distributed.gather_rows(logits)
    return _predict_uint8(bundle, images, batch_size)


def _predict_uint8(bundle: ModelBundle, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    batches = image_batches(images, bundle.transform, batch_size=batch_size, device=bundle.device)
    return predict_logits(bundle.model, batches, device=bundle.device)


__all__ = ["image_batches", "predict_features_logits", "predict_images", "predict_logits"]
