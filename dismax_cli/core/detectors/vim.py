"""ViM: virtual-logit matching, the energy minus the scaled residual off the principal space.

References:
    Wang, Li, Feng and Zhang, "ViM: Out-Of-Distribution with Virtual-logit Matching",
    arXiv:2203.10807 (CVPR 2022; reference code: github.com/haoqiwang/vim).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from dismax_cli.core.detectors._common import (
    Detector,
    DetectorInputs,
    DetectorStatistics,
    Head,
    check_feature_size,
    check_positive_int,
    head_logits,
    require_head,
)
from dismax_cli.core.heads import SoftMaxHead
from dismax_cli.errors import DismaxError
from dismax_cli.errors import quote_value as q


def default_principal_dim(num_features: int) -> int:
    """Return the paper's principal-space size for features of size D.

    D ≥ 1500: 1000 (the paper's "N ≥ 1500", e.g. ResNet-50's 2048); D = 768 (ViT-B): 512, the
    reference code's value (``benchmark.py`` uses 512 for every D < 2048); otherwise D // 2
    (OpenOOD v1.5 uses 256 for ResNet-18's 512). Always at most D − 1.
    """
    if num_features >= 1500:
        dim = 1000
    elif num_features == 768:
        dim = 512
    else:
        dim = num_features // 2
    return max(1, min(dim, num_features - 1))


def linear_origin(head: Head) -> torch.Tensor | None:
    """Return ``u = −W⁺ b`` (float64) for a linear head, or ``None`` for any other head.

    A :class:`~dismax_cli.core.heads.SoftMaxHead` or an ``nn.Linear`` with a bias counts as
    linear; ``u`` is the point nearest the origin where every logit ``W u + b`` is 0 (the
    head's temperature does not move it).
    """
    if isinstance(head, SoftMaxHead | nn.Linear) and getattr(head, "bias", None) is not None:
        weight = head.weight.detach().to("cpu", torch.float64)
        bias = head.bias.detach().to("cpu", torch.float64)
        return -(torch.linalg.pinv(weight) @ bias)
    return None


class ViMDetector(Detector):
    """Score ``logsumexp_c z_c − α ‖(f − u) R‖₂`` (higher = more in-distribution).

    :meth:`fit`, on the training features only:

    - origin ``u = −W⁺ b`` for a linear head (``SoftMaxHead`` or ``nn.Linear``, weight
      ``(C, D)``, bias ``(C,)``), as the paper; for any other head (IsoMax+, DisMax) there is
      no such point and ``u`` is the mean of the training features (plain PCA), a choice of
      this package;
    - the eigenvectors of ``(1/N) Σ_i (f_i − u)(f_i − u)ᵀ`` (float64, symmetric solver); ``R``
      ``(D, D − dim)`` holds those outside the ``dim`` largest eigenvalues;
    - ``α = Σ_i max_c z_ic / Σ_i ‖(f_i − u) R‖₂`` with the head's training logits ``z``.

    :meth:`score` returns the energy of the given logits minus the virtual logit
    ``α ‖(f − u) R‖₂``, i.e. the negated energy of the virtual class in the paper's
    formulation (sign checked: a larger residual lowers the score). Logits and head at T = 1
    (METHOD.md §3).

    Args:
        dim: Size of the principal space, 1 ≤ dim < D; default :func:`default_principal_dim`.
        alpha: Override α (> 0). Needed where the training max logits are ≤ 0 on average (a
            distance head such as IsoMax+ or DisMax), which would make the fitted α ≤ 0.

    Shape:
        features ``(N, D)``, logits ``(N, C)`` -> scores ``(N,)``.

    Raises:
        DismaxError: At fit, without a head, for ``dim`` ≥ D, or a fitted α ≤ 0 (pass
            ``alpha``); at score, for features of another D, NaN/inf values or no statistics.

    References:
        Wang, Li, Feng and Zhang, "ViM: Out-Of-Distribution with Virtual-logit Matching",
        arXiv:2203.10807.
    """

    name: ClassVar[str] = "vim"
    inputs: ClassVar[DetectorInputs] = DetectorInputs(
        features=True, logits=True, head=True, gradients=False, training_statistics=True
    )
    required_tensors: ClassVar[tuple[str, ...]] = ("origin", "residual_basis")
    required_values: ClassVar[tuple[str, ...]] = ("alpha", "dim")

    def __init__(self, *, dim: int | None = None, alpha: float | None = None) -> None:
        super().__init__()
        self.dim = None if dim is None else check_positive_int(dim, name="dim")
        if alpha is not None and (not math.isfinite(float(alpha)) or float(alpha) <= 0):
            raise DismaxError(f"alpha={q(alpha)} is invalid; pass a finite alpha > 0 or None")
        self.alpha = None if alpha is None else float(alpha)

    def _config(self) -> dict[str, float | int]:
        config: dict[str, float | int] = {}
        if self.dim is not None:
            config["dim"] = self.dim
        if self.alpha is not None:
            config["alpha"] = self.alpha
        return config

    def _fit(
        self, features: torch.Tensor, targets: torch.Tensor, head: Head | None
    ) -> tuple[dict[str, torch.Tensor], dict[str, float | int]]:
        head = require_head(head, detector=self.name, when="fit time (for the training logits)")
        num_features = features.shape[1]
        dim = default_principal_dim(num_features) if self.dim is None else self.dim
        if dim >= num_features:
            raise DismaxError(
                f"dim={dim} leaves no residual space for {num_features}-d features; pass "
                f"dim < {num_features}"
            )
        origin = linear_origin(head)
        if origin is None:
            origin = features.mean(dim=0)
        if origin.shape != (num_features,):
            raise DismaxError(
                f"the head's weight has {origin.shape[0]} columns but the features have "
                f"{num_features}; pass the head the features were extracted for"
            )
        centred = features - origin
        moment = centred.t() @ centred / features.shape[0]
        _, eigenvectors = torch.linalg.eigh((moment + moment.t()) / 2.0)  # ascending
        residual_basis = eigenvectors[:, : num_features - dim].contiguous()
        values: dict[str, float | int] = {"dim": dim}
        if self.alpha is None:
            max_logits = head_logits(head, features).max(dim=1).values
            residual = torch.linalg.vector_norm(centred @ residual_basis, dim=1)
            alpha = float(max_logits.sum() / residual.sum())
            if not math.isfinite(alpha) or alpha <= 0:
                raise DismaxError(
                    f"ViM's fitted alpha = Σ max logit / Σ residual norm is {alpha:.4g} (the "
                    "training max logits average ≤ 0 or the residuals are 0); pass "
                    "ViMDetector(alpha=...) with a positive value"
                )
            values["alpha"] = alpha
        return {"origin": origin, "residual_basis": residual_basis}, values

    def _score(
        self,
        features: torch.Tensor | None,
        logits: torch.Tensor | None,
        head: Head | None,
        statistics: DetectorStatistics | None,
    ) -> torch.Tensor:
        assert features is not None and logits is not None and statistics is not None
        origin = statistics.tensors["origin"]
        check_feature_size(features, origin.shape[0], detector=self.name)
        residual = torch.linalg.vector_norm(
            (features - origin) @ statistics.tensors["residual_basis"], dim=1
        )
        return torch.logsumexp(logits, dim=1) - float(statistics.values["alpha"]) * residual


__all__ = ["ViMDetector", "default_principal_dim", "linear_origin"]
