"""Losses: SoftMax cross-entropy, IsoMax+ and DisMax (with fractional probability regularization).

References:
    Macêdo, Zanchettin, Ludermir, "Distinction Maximization Loss", arXiv:2205.05874 (2022);
    Macêdo & Ludermir, "Enhanced Isotropy Maximization Loss", arXiv:2105.14399 (2021).
    METHOD.md §2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dismax_cli.core.mixing import FractionalMix
from dismax_cli.errors import DismaxError


def _check_logits_targets(logits: torch.Tensor, targets: torch.Tensor) -> None:
    if logits.ndim != 2:
        raise DismaxError(f"logits of shape {tuple(logits.shape)} are invalid: expected (B, C)")
    if targets.shape != logits.shape[:1]:
        raise DismaxError(
            f"targets of shape {tuple(targets.shape)} do not match logits "
            f"{tuple(logits.shape)}: pass one int64 label per row"
        )


class SoftMaxLoss(nn.Module):
    """Cross-entropy on the logits of a :class:`~dismax_cli.core.heads.SoftMaxHead`.

    Shape:
        logits (B, C), targets (B,) int64 -> scalar.

    Raises:
        DismaxError: for mismatched shapes or a mixed (FPR) batch, which SoftMax does not use.

    References:
        METHOD.md §2 (SoftMax).
    """

    def forward(self, logits: torch.Tensor, targets: torch.Tensor | FractionalMix) -> torch.Tensor:
        if isinstance(targets, FractionalMix):
            raise DismaxError("the softmax method does not use FPR: train it with --no-fpr")
        _check_logits_targets(logits, targets)
        return F.cross_entropy(logits, targets)


class IsoMaxPlusLoss(nn.Module):
    """IsoMax+ loss: ``F.cross_entropy(entropic_scale * logits, targets)``.

    Computed through log-softmax, so value and gradient stay finite for logit gaps up to 1e3
    and beyond (the reference code's ``−log(softmax(·))`` overflows above a gap of ~10.4).
    The entropic scale E is used only in training, never at inference.

    Args:
        entropic_scale: E (10.0 in the paper).

    Shape:
        logits (B, C), targets (B,) int64 -> scalar.

    Raises:
        DismaxError: for a non-positive entropic scale or mismatched shapes.

    References:
        Macêdo & Ludermir, arXiv:2105.14399; METHOD.md §2.
    """

    def __init__(self, entropic_scale: float = 10.0) -> None:
        super().__init__()
        if not entropic_scale > 0:
            raise DismaxError(f"entropic_scale={entropic_scale} is invalid: it must be > 0")
        self.entropic_scale = float(entropic_scale)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor | FractionalMix) -> torch.Tensor:
        if isinstance(targets, FractionalMix):
            raise DismaxError("the isomax_plus method does not use FPR: train it with --no-fpr")
        _check_logits_targets(logits, targets)
        return F.cross_entropy(self.entropic_scale * logits, targets)

    def extra_repr(self) -> str:
        return f"entropic_scale={self.entropic_scale}"


class DisMaxLoss(nn.Module):
    """DisMax loss, with or without fractional probability regularization (FPR).

    With int64 targets: ``F.cross_entropy(E · logits, targets)``. With the
    :class:`~dismax_cli.core.mixing.FractionalMix` of a batch:

        L = ½ · [ CE(E·z, y) over the clean rows + α · KL(q ‖ softmax(E·z)) over the mosaic rows ]

    each term averaged over its own rows (an empty part adds 0), with
    KL(q‖p) = Σ_c q_c (log q_c − log p_c) and 0 · log 0 = 0.

    Args:
        entropic_scale: E (10.0).
        alpha: α, the weight of the mosaic term (1.0).

    Shape:
        logits (B, C), targets (B,) int64 or a FractionalMix of B rows -> scalar.

    Raises:
        DismaxError: for invalid constants or shapes that do not match.

    References:
        Macêdo et al., arXiv:2205.05874, Eq. (3)–(5); METHOD.md §2 step 4.
    """

    def __init__(self, entropic_scale: float = 10.0, alpha: float = 1.0) -> None:
        super().__init__()
        if not entropic_scale > 0:
            raise DismaxError(f"entropic_scale={entropic_scale} is invalid: it must be > 0")
        if not alpha >= 0:
            raise DismaxError(f"alpha={alpha} is invalid: it must be >= 0")
        self.entropic_scale = float(entropic_scale)
        self.alpha = float(alpha)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor | FractionalMix) -> torch.Tensor:
        if not isinstance(targets, FractionalMix):
            _check_logits_targets(logits, targets)
            return F.cross_entropy(self.entropic_scale * logits, targets)
        mix = targets
        _check_logits_targets(logits, mix.targets)
        if mix.target_probs.shape != logits.shape:
            raise DismaxError(
                f"target_probs of shape {tuple(mix.target_probs.shape)} do not match logits "
                f"{tuple(logits.shape)}: mix with num_classes={logits.shape[1]}"
            )
        h = mix.num_clean
        log_probs = F.log_softmax(self.entropic_scale * logits, dim=1)
        zero = log_probs.new_zeros(())
        clean = F.nll_loss(log_probs[:h], mix.targets[:h]) if h > 0 else zero
        if h < logits.shape[0]:
            q = mix.target_probs[h:].to(log_probs.dtype)
            kl = (torch.xlogy(q, q) - q * log_probs[h:]).sum(dim=1).mean()
        else:
            kl = zero
        return 0.5 * (clean + self.alpha * kl)

    def extra_repr(self) -> str:
        return f"entropic_scale={self.entropic_scale}, alpha={self.alpha}"


__all__ = ["DisMaxLoss", "IsoMaxPlusLoss", "SoftMaxLoss"]
