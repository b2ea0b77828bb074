"""GEN: the generalised-entropy score on the softmax probabilities (no training statistics).

References:
    Liu, Lochman and Zach, "GEN: Pushing the Limits of Softmax-Based Out-of-Distribution
    Detection", CVPR 2023 (reference code: github.com/XixiLiu95/GEN).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from dismax_cli.core.detectors._common import (
    Detector,
    DetectorInputs,
    DetectorStatistics,
    Head,
    check_positive_float,
    check_positive_int,
)
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q


class GENDetector(Detector):
    """Score ``−Σ_{top-M c} p_c^γ (1 − p_c)^γ`` with ``p = softmax(z)`` (higher = more ID).

    The sum runs over the M largest probabilities of each sample, ``M = min(top_m, C)``. A
    confident (peaked) prediction gives a sum near 0, a flat one a large sum, so the negated sum
    ranks in-distribution samples higher. Computed in float64 from the log-softmax; finite for
    any finite logits (``0^γ = 0``). Needs only the logits (at T = 1, METHOD.md §3); :meth:`fit`
    records the hyper-parameters and fits nothing.

    Args:
        gamma: γ ∈ (0, 1], default 0.1 as in the paper.
        top_m: M ≥ 1, default 100 as in the paper (clipped to the number of classes).

    Shape:
        logits ``(N, C)`` -> scores ``(N,)``, in ``[−M · 2^{−2γ}, 0]``.

    Raises:
        DismaxError: For γ outside (0, 1], M < 1, logits that are not 2-D or hold NaN/inf.

    References:
        Liu, Lochman and Zach, "GEN: Pushing the Limits of Softmax-Based Out-of-Distribution
        Detection", CVPR 2023.
    """

    name: ClassVar[str] = "gen"
    inputs: ClassVar[DetectorInputs] = DetectorInputs(
        features=False, logits=True, head=False, gradients=False, training_statistics=False
    )

    def __init__(self, *, gamma: float = 0.1, top_m: int = 100) -> None:
        super().__init__()
        self.gamma = check_positive_float(gamma, name="gamma")
        if self.gamma > 1.0:
            raise DismaxError(f"gamma={q(gamma)} is invalid; pass 0 < gamma ≤ 1 (paper: 0.1)")
        self.top_m = check_positive_int(top_m, name="top_m")

    def _config(self) -> dict[str, float | int]:
        return {"gamma": self.gamma, "top_m": self.top_m}

    def _fit(
        self, features: torch.Tensor, targets: torch.Tensor, head: Head | None
    ) -> tuple[dict[str, torch.Tensor], dict[str, float | int]]:
        return {}, {}

    def _score(
        self,
        features: torch.Tensor | None,
        logits: torch.Tensor | None,
        head: Head | None,
        statistics: DetectorStatistics | None,
    ) -> torch.Tensor:
        assert logits is not None
        return generalized_entropy_score(logits, gamma=self.gamma, top_m=self.top_m)


def generalized_entropy_score(logits: torch.Tensor, *, gamma: float, top_m: int) -> torch.Tensor:
    """Return ``−Σ_{top-min(M, C)} p^γ (1 − p)^γ`` for validated float64 ``logits (N, C)``."""
    probs = torch.softmax(logits, dim=1)
    top = torch.topk(probs, k=min(top_m, logits.shape[1]), dim=1).values
    return -(top.pow(gamma) * (1.0 - top).clamp_min(0.0).pow(gamma)).sum(dim=1)


__all__ = ["GENDetector", "generalized_entropy_score"]
