"""Fractional probability regularization (FPR): 2×2 mosaics of four images with fractional targets.

Quadrants split at H//2 and W//2; nothing is resized or moved, so any batch size B ≥ 1 and odd
H, W work (with fewer than 8 images the sources wrap and repeat). Each mosaic source weighs the
share of the H·W pixels its quadrant covers: exactly 0.25 each for even H and W (the paper's
case, METHOD.md §2 step 3); for 33×33, 256/1089, 272/1089, 272/1089 and 289/1089 (top-left,
bottom-left, top-right, bottom-right); for H = 1 the top quadrants are empty and weigh 0.

References:
    Macêdo, Zanchettin, Ludermir, "Distinction Maximization Loss", arXiv:2205.05874, §3.2;
    METHOD.md §2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dismax_cli.errors import DismaxError


@dataclass(frozen=True)
class FractionalMix:
    """A training batch after FPR mixing.

    Attributes:
        images: (B, C, H, W) rows ``[0, num_clean)`` are unchanged (permuted) inputs, the rest are
            2×2 mosaics.
        targets: (B,) int64; for clean rows the label, for mosaic rows the label of the
            top-left source (informational: the loss uses ``target_probs`` there).
        target_probs: (B, num_classes) float; one-hot for clean rows; for mosaic rows each
            source label gets its quadrant's share of the pixels (0.25 each for even H and W,
            weights adding up when sources share a label); every row sums to 1.
        num_clean: h = ⌊B/2⌋, the number of clean rows.
        permutation: (B,) int64, position i of the mixed batch started from input row
            ``permutation[i]``.
        sources: (B − h, 4) int64 input-row indices of each mosaic's quadrants, in the order
            top-left, bottom-left, top-right, bottom-right.
    """

    images: torch.Tensor
    targets: torch.Tensor
    target_probs: torch.Tensor
    num_clean: int
    permutation: torch.Tensor
    sources: torch.Tensor


def fractional_probability_mix(
    images: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    *,
    generator: torch.Generator | None = None,
) -> FractionalMix:
    """Build the FPR batch: a clean half and a half of same-position 2×2 mosaics.

    The batch is randomly permuted (images and labels together); the first h = ⌊B/2⌋ rows stay
    as they are; each of the remaining n = B − h rows, with local index j, becomes a mosaic whose
    top-left quadrant comes from image j, bottom-left from j−1, top-right from j−2 and
    bottom-right from j−3 (indices modulo n in the permuted half). The mosaic target is
    q = Σ_k w_k · onehot(y_k) with w_k the share of the H·W pixels that quadrant k covers
    (0.25 each for even H and W; odd sizes: see the module docstring).

    Args:
        images: (B, C, H, W) float batch, already augmented and normalised.
        targets: (B,) int64 labels in ``[0, num_classes)``.
        num_classes: C of the classifier.
        generator: a CPU ``torch.Generator`` for the permutation (seeded runs repeat exactly).

    Returns:
        A :class:`FractionalMix` on the device of ``images``.

    Shape:
        images (B, C, H, W), targets (B,) -> images (B, C, H, W), target_probs (B, num_classes).
        The weights are fractions of the image area, so they add to 1 in every row.

    Raises:
        DismaxError: for an empty batch, a non-4-D image tensor, a label count that does not
            match, or labels outside ``[0, num_classes)``.

    References:
        Macêdo et al., arXiv:2205.05874, §3.2 (fractional probability regularization);
        METHOD.md §2 steps 1–3.
    """
    targets = _checked_targets(images, targets, num_classes)
    batch, device = images.shape[0], images.device
    permutation = torch.randperm(batch, generator=generator).to(device)
    num_clean = batch // 2
    n = batch - num_clean

    # Sources of local row j in the permuted half: j, j−1, j−2, j−3 (mod n).
    local = torch.arange(n, device=device)
    offsets = torch.arange(4, device=device)
    local_sources = (local[:, None] - offsets[None, :]) % n  # (n, 4)
    sources = permutation[num_clean:][local_sources]  # indices into the input batch
    clean_rows = permutation[:num_clean]
    mixed_images = torch.cat([images[clean_rows], _mosaics(images, sources)], dim=0)
    clean_targets = targets[clean_rows]
    source_labels = targets[sources]  # (n, 4)
    return FractionalMix(
        images=mixed_images,
        targets=torch.cat([clean_targets, source_labels[:, 0]]),
        target_probs=_target_probs(images, clean_targets, source_labels, num_classes),
        num_clean=num_clean,
        permutation=permutation,
        sources=sources,
    )


def _checked_targets(
    images: torch.Tensor, targets: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """The labels as int64 after checking the batch (the errors of the public function)."""
    if images.ndim != 4:
        raise DismaxError(
            f"images of shape {tuple(images.shape)} cannot be mixed: expected (B, C, H, W)"
        )
    batch = images.shape[0]
    if batch < 1:
        raise DismaxError("an empty batch cannot be mixed: pass at least one image")
    if targets.shape != (batch,):
        raise DismaxError(
            f"targets of shape {tuple(targets.shape)} do not match {batch} images: "
            "pass one int64 label per image"
        )
    if int(num_classes) < 1:
        raise DismaxError(f"num_classes={num_classes} is invalid: it must be at least 1")
    targets = targets.long()
    if bool(((targets < 0) | (targets >= num_classes)).any()):
        raise DismaxError(
            f"labels must lie in [0, {num_classes}); got min {int(targets.min())}, "
            f"max {int(targets.max())}"
        )
    return targets


def _mosaics(images: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """The (n, C, H, W) mosaics of input rows ``sources`` (n, 4), split at H//2 and W//2."""
    h2, w2 = images.shape[2] // 2, images.shape[3] // 2
    mosaic = images[sources[:, 0]]  # top-left (and, for now, everything else)
    mosaic[:, :, h2:, :w2] = images[sources[:, 1], :, h2:, :w2]  # bottom-left
    mosaic[:, :, :h2, w2:] = images[sources[:, 2], :, :h2, w2:]  # top-right
    mosaic[:, :, h2:, w2:] = images[sources[:, 3], :, h2:, w2:]  # bottom-right
    return mosaic


def _target_probs(
    images: torch.Tensor,
    clean_targets: torch.Tensor,
    source_labels: torch.Tensor,
    num_classes: int,
) -> torch.Tensor:
    """(B, num_classes) targets: one-hot clean rows, then each mosaic's pixel-share mixture."""
    height, width = images.shape[2], images.shape[3]
    h2, w2 = height // 2, width // 2
    num_clean, n = clean_targets.shape[0], source_labels.shape[0]
    probs_dtype = images.dtype if images.dtype.is_floating_point else torch.float32
    target_probs = torch.zeros(
        num_clean + n, num_classes, dtype=probs_dtype, device=images.device
    )
    target_probs[:num_clean].scatter_(1, clean_targets[:, None], 1.0)
    # Each source weighs its quadrant's share of the pixels (0.25 each for even H and W).
    areas = [h2 * w2, (height - h2) * w2, h2 * (width - w2), (height - h2) * (width - w2)]
    weights = torch.tensor(
        [area / (height * width) for area in areas], dtype=probs_dtype, device=images.device
    )
    target_probs[num_clean:].scatter_add_(1, source_labels, weights.expand(n, 4).contiguous())
    return target_probs


__all__ = ["FractionalMix", "fractional_probability_mix"]
