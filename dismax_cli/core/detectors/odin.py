"""ODIN: temperature scaling plus a small input perturbation that raises the max softmax.

:func:`odin_scores` follows the reference code: ``sign(0)`` counts as +1
(``torch.ge(grad, 0)``), and when the model sees normalised images ``(x_raw − mean)/std`` the
step is divided by the per-channel ``std`` so that ε is measured in the raw [0, 1] pixel scale
(facebookresearch/odin divides by 63/255, 62.1/255, 66.7/255). The gradient is taken with
respect to the images only (the model's parameter gradients are untouched) in the model's dtype
on the images' device. Each image's score depends on that image only, which is why the model
must be in eval mode (batch-norm statistics, no dropout).

References:
    Liang, Li and Srikant, "Enhancing The Reliability of Out-of-distribution Image Detection in
    Neural Networks", arXiv:1706.02690 (ICLR 2018; reference code:
    github.com/facebookresearch/odin).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from dismax_cli.core.detectors._common import (
    Detector,
    DetectorInputs,
    DetectorStatistics,
    Head,
    as_logits,
    check_positive_float,
    check_positive_int,
)
from dismax_cli.errors import DismaxError

Model = Callable[[torch.Tensor], torch.Tensor]
"""A model: images ``(N, channels, ...)`` -> logits ``(N, C)``."""


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        kind = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
        raise DismaxError(
            f"images must be a floating-point tensor (N, channels, ...), got {kind}; normalise "
            "them as the model expects"
        )
    if images.ndim < 2 or images.shape[0] == 0:
        raise DismaxError(
            f"images must have shape (N, channels, ...) with N ≥ 1, got {tuple(images.shape)}"
        )
    finite = torch.isfinite(images)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise DismaxError(f"images hold {bad} NaN or infinite values; fix the data or transform")


def _std_tensor(input_std: Sequence[float] | None, images: torch.Tensor) -> torch.Tensor | None:
    if input_std is None:
        return None
    std = np.asarray(input_std, dtype=np.float64).reshape(-1)
    if std.shape[0] != images.shape[1] or not np.all(np.isfinite(std)) or np.any(std <= 0):
        raise DismaxError(
            f"input_std={list(np.asarray(input_std).reshape(-1))} must hold one finite std > 0 "
            f"per channel ({images.shape[1]} for images of shape {tuple(images.shape)}); pass the "
            "normalisation's per-channel std"
        )
    shape = (1, images.shape[1]) + (1,) * (images.ndim - 2)
    return torch.as_tensor(std, dtype=images.dtype, device=images.device).reshape(shape)


def _model_logits(model: Model, images: torch.Tensor) -> torch.Tensor:
    logits = model(images)
    if (
        not isinstance(logits, torch.Tensor)
        or logits.ndim != 2
        or logits.shape[0] != (images.shape[0])
    ):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
        raise DismaxError(
            f"the model returned {shape} for {images.shape[0]} images; ODIN needs a model that "
            "maps images (N, ...) to logits (N, C)"
        )
    return logits


def odin_scores(
    model: Model,
    images: torch.Tensor,
    *,
    temperature: float = 1000.0,
    epsilon: float = 0.0014,
    input_std: Sequence[float] | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Compute ODIN scores: ``max_c softmax(z(x̃)/T)_c`` on perturbed images (higher = more ID).

    For each image ``x`` with logits ``z = model(x)`` and predicted class ``ŷ = argmax z``::

        g  = ∇_x [−log softmax(z/T)_ŷ]        (the cross-entropy against ŷ at temperature T)
        x̃  = x − ε · sign(g) / std            (per channel; std = 1 without ``input_std``)
        score = max_c softmax(z(x̃)/T)_c

    i.e. ``x̃ = x − ε·sign(−∇_x log S_ŷ(x; T))``, the step that raises the max softmax (paper
    eq. 2; ``sign(0)`` = +1). Pass the normalisation's std as ``input_std`` so that ε is in raw
    pixel units; ``None`` applies ε to the given images as they are. The softmax of the score is
    computed in float64 on the CPU; the model must be in eval mode.

    Args:
        model: Images -> logits (the whole network, head included, at T = 1).
        images: The input batch, preprocessed exactly as for the model.
        temperature: T > 0, default 1000 (the paper's choice).
        epsilon: ε ≥ 0, default 0.0014 (the paper's choice for CIFAR-10 DenseNet); 0 gives the
            temperature-scaled MSP.
        input_std: Per-channel std of the normalisation the images went through, or ``None``.
        batch_size: Images per forward/backward pass (bounds memory); ``None``: all at once.

    Returns:
        float64 CPU scores in ``[1/C, 1]``.

    Shape:
        images ``(N, channels, ...)`` -> scores ``(N,)``.

    Raises:
        DismaxError: For T ≤ 0, ε < 0, non-finite settings, an ``input_std`` of the wrong
            length or with a value ≤ 0, images that are not a floating tensor (N, channels,
            ...) or hold NaN/inf, a model in training mode, or a model whose output is not
            ``(N, C)`` logits or holds NaN/inf.

    References:
        Liang, Li and Srikant, "Enhancing The Reliability of Out-of-distribution Image
        Detection in Neural Networks", arXiv:1706.02690.
    """
    temperature = check_positive_float(temperature, name="temperature")
    epsilon = check_positive_float(epsilon, name="epsilon", allow_zero=True)
    _check_images(images)
    std = _std_tensor(input_std, images)
    if isinstance(model, nn.Module) and model.training:
        raise DismaxError(
            "the model is in training mode; call model.eval() before ODIN scoring (batch norm "
            "and dropout would make each score depend on the batch)"
        )
    rows = (
        images.shape[0] if batch_size is None else check_positive_int(batch_size, name="batch_size")
    )
    batches = (images[i : i + rows] for i in range(0, images.shape[0], rows))
    return torch.cat([_odin_batch(model, x, temperature, epsilon, std) for x in batches])


def _odin_batch(
    model: Model,
    images: torch.Tensor,
    temperature: float,
    epsilon: float,
    std: torch.Tensor | None,
) -> torch.Tensor:
    """ODIN scores of one batch: the gradient step on the images, then the tempered max softmax.

    Shape:
        images ``(B, channels, ...)`` -> float64 CPU scores ``(B,)``.
    """
    x = images.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = _model_logits(model, x)
        as_logits(logits.detach(), num_samples=x.shape[0], name="model logits")
        log_probs = torch.log_softmax(logits / temperature, dim=1)
        predicted = logits.argmax(dim=1, keepdim=True)
        loss = -log_probs.gather(1, predicted).sum()
        (gradient,) = torch.autograd.grad(loss, x)
    step = torch.where(gradient >= 0, 1.0, -1.0).to(x.dtype)
    if std is not None:
        step = step / std
    perturbed = x.detach() - epsilon * step
    with torch.no_grad():
        logits = _model_logits(model, perturbed)
    z = as_logits(logits, num_samples=x.shape[0], name="model logits")
    return torch.softmax(z / temperature, dim=1).max(dim=1).values


class ODINDetector(Detector):
    """ODIN in the :data:`DETECTORS` table: needs the model and the images (a backward pass).

    It has no training statistics and cannot score from features and logits;
    :meth:`score_images` calls :func:`odin_scores` with this detector's settings.

    Args:
        temperature: T > 0, default 1000.
        epsilon: ε ≥ 0, default 0.0014.
        input_std: Per-channel std of the images' normalisation, or ``None``.

    Raises:
        DismaxError: For invalid settings; from :meth:`score`, always (use
            :meth:`score_images`).

    References:
        Liang, Li and Srikant, "Enhancing The Reliability of Out-of-distribution Image
        Detection in Neural Networks", arXiv:1706.02690.
    """

    name: ClassVar[str] = "odin"
    inputs: ClassVar[DetectorInputs] = DetectorInputs(
        features=False, logits=False, head=False, gradients=True, training_statistics=False
    )

    def __init__(
        self,
        *,
        temperature: float = 1000.0,
        epsilon: float = 0.0014,
        input_std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.temperature = check_positive_float(temperature, name="temperature")
        self.epsilon = check_positive_float(epsilon, name="epsilon", allow_zero=True)
        self.input_std = None if input_std is None else tuple(float(s) for s in input_std)

    def _config(self) -> dict[str, float | int]:
        return {"temperature": self.temperature, "epsilon": self.epsilon}

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
        raise DismaxError(
            "ODIN needs the model and the images (a backward pass), not features and logits; "
            "call ODINDetector.score_images(model, images) or odin_scores(model, images)"
        )

    def score_images(
        self, model: Model, images: torch.Tensor, *, batch_size: int | None = None
    ) -> torch.Tensor:
        """Return :func:`odin_scores` with this detector's T, ε and ``input_std``.

        Shape:
            images ``(N, channels, ...)`` -> scores ``(N,)`` (float64, CPU).
        """
        return odin_scores(
            model,
            images,
            temperature=self.temperature,
            epsilon=self.epsilon,
            input_std=self.input_std,
            batch_size=batch_size,
        )


__all__ = ["ODINDetector", "odin_scores"]
