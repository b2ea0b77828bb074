"""Mahalanobis: class-conditional Gaussians with one shared (tied) covariance.

References:
    Lee, Lee, Lee and Shin, "A Simple Unified Framework for Detecting Out-of-Distribution
    Samples and Adversarial Attacks", arXiv:1807.03888 (NeurIPS 2018; reference code:
    github.com/pokaxpoka/deep_Mahalanobis_detector).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from dismax_cli.core.detectors._common import (
    Detector,
    DetectorInputs,
    DetectorStatistics,
    Head,
    check_feature_size,
)
from dismax_cli.errors import DismaxError

_CHUNK_ELEMENTS = 1 << 23
"""Entries of one (rows × classes × rank) difference block: 64 MiB of float64."""


class MahalanobisDetector(Detector):
    """Score ``−min_c (f − μ_c)ᵀ Σ⁺ (f − μ_c)``, minus the smallest squared Mahalanobis distance.

    :meth:`fit` computes, from the training features only, the mean ``μ_c`` of every class
    present in ``train_targets`` and the shared covariance
    ``Σ = (1/N) Σ_c Σ_{i: y_i = c} (f_i − μ_c)(f_i − μ_c)ᵀ`` (the maximum-likelihood estimate, as
    the reference code's ``sklearn.covariance.EmpiricalCovariance``), all in float64. Its
    inverse is the Moore–Penrose pseudo-inverse through a symmetric eigendecomposition:
    eigenvalues below ``D · eps · λ_max`` are dropped (the rule of ``numpy.linalg.pinv`` /
    scikit-learn's ``pinvh``), so a singular covariance (D > N, a constant or duplicated
    feature) gives finite scores that ignore the directions without training variance. The
    statistics hold the class means, the class indices and a whitening matrix ``A`` with
    ``A Aᵀ = Σ⁺``. The reference code's score is ``max_c −½ d_c²``; the factor ½ changes no
    rank. No input preprocessing (the paper's optional perturbation and feature ensemble are
    not applied, as in the issue's protocol).

    Shape:
        features ``(N, D)`` -> scores ``(N,)``, ≤ 0.

    Raises:
        DismaxError: At fit, for fewer than 2 classes in ``train_targets``; at score, for
            features of another D, NaN/inf values or no statistics.

    References:
        Lee, Lee, Lee and Shin, "A Simple Unified Framework for Detecting Out-of-Distribution
        Samples and Adversarial Attacks", arXiv:1807.03888.
    """

    name: ClassVar[str] = "mahalanobis"
    inputs: ClassVar[DetectorInputs] = DetectorInputs(
        features=True, logits=False, head=False, gradients=False, training_statistics=True
    )
    required_tensors: ClassVar[tuple[str, ...]] = ("classes", "class_means", "whitening")

    def _fit(
        self, features: torch.Tensor, targets: torch.Tensor, head: Head | None
    ) -> tuple[dict[str, torch.Tensor], dict[str, float | int]]:
        classes = torch.unique(targets)
        if classes.numel() < 2:
            raise DismaxError(
                f"train_targets holds {classes.numel()} class(es); the Mahalanobis detector "
                "needs training features of at least 2 classes"
            )
        means = torch.stack([features[targets == c].mean(dim=0) for c in classes])
        index = torch.searchsorted(classes, targets)
        centred = features - means[index]
        covariance = centred.t() @ centred / features.shape[0]
        covariance = (covariance + covariance.t()) / 2.0
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        cutoff = features.shape[1] * torch.finfo(torch.float64).eps * eigenvalues.abs().max()
        keep = eigenvalues > cutoff
        whitening = eigenvectors[:, keep] / eigenvalues[keep].sqrt()
        return {"classes": classes, "class_means": means, "whitening": whitening}, {}

    def _score(
        self,
        features: torch.Tensor | None,
        logits: torch.Tensor | None,
        head: Head | None,
        statistics: DetectorStatistics | None,
    ) -> torch.Tensor:
        assert features is not None and statistics is not None
        means = statistics.tensors["class_means"]
        whitening = statistics.tensors["whitening"]
        check_feature_size(features, means.shape[1], detector=self.name)
        centres = means @ whitening  # (K, r)
        rows = max(1, _CHUNK_ELEMENTS // max(1, centres.numel()))
        out = torch.empty(features.shape[0], dtype=torch.float64)
        for start in range(0, features.shape[0], rows):
            whitened = features[start : start + rows] @ whitening  # (n, r)
            diff = whitened[:, None, :] - centres[None, :, :]  # (n, K, r), at most 64 MiB
            out[start : start + rows] = diff.square().sum(dim=2).min(dim=1).values
        return -out


__all__ = ["MahalanobisDetector"]
