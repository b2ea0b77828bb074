"""Heads against a float64 reimplementation of METHOD.md §1."""

from __future__ import annotations

import math

import pytest
import torch

from dismax_cli.core.heads import DisMaxHead, IsoMaxPlusHead, SoftMaxHead
from dismax_cli.errors import DismaxError

D, C = 16, 5


def reference_logits(head: torch.nn.Module, features: torch.Tensor) -> torch.Tensor:
    """METHOD.md §1 in float64 with the exact-difference distance (no matrix shortcut)."""
    with torch.no_grad():
        return _reference_logits(head, features)


def _reference_logits(head: torch.nn.Module, features: torch.Tensor) -> torch.Tensor:
    f = features.double()
    if isinstance(head, SoftMaxHead):
        return f @ head.weight.double().t() + head.bias.double()
    p = head.prototypes.double()
    s = abs(float(head.distance_scale))
    f_hat = f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)
    p_hat = p / p.norm(dim=1, keepdim=True).clamp_min(1e-12)
    dist = (f_hat[:, None, :] - p_hat[None, :, :]).pow(2).sum(-1).sqrt()  # (B, C)
    if isinstance(head, IsoMaxPlusHead):
        return -s * dist
    delta = s * dist / math.sqrt(2.0)
    return -(delta + delta.mean(dim=1, keepdim=True))


HEADS = [SoftMaxHead, IsoMaxPlusHead, DisMaxHead]


@pytest.mark.parametrize("head_cls", HEADS)
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_logits_match_float64_reference(head_cls: type, scale: float) -> None:
    torch.manual_seed(0)
    head = head_cls(D, C)
    if hasattr(head, "distance_scale"):
        with torch.no_grad():
            head.distance_scale.fill_(-2.5)  # used as |s|
    features = torch.randn(32, D) * scale
    got = head(features).double()
    want = reference_logits(head, features)
    tol = 1e-4 * max(1.0, float(want.abs().max()))
    assert got.shape == (32, C)
    assert torch.allclose(got, want, atol=tol, rtol=0), float((got - want).abs().max())


@pytest.mark.parametrize("head_cls", [IsoMaxPlusHead, DisMaxHead])
def test_feature_on_a_prototype_direction_has_finite_gradient(head_cls: type) -> None:
    torch.manual_seed(1)
    head = head_cls(D, C)
    features = (3.0 * head.prototypes[2].detach()).clone()[None].repeat(2, 1)
    features.requires_grad_(True)
    logits = head(features)
    # Distance to prototype 2 is zero, so its logit is the largest (METHOD.md §1).
    assert int(logits[0].argmax()) == 2
    want = reference_logits(head, features.detach())
    assert torch.allclose(logits.double(), want, atol=2e-3)
    logits.sum().backward()
    for grad in (features.grad, head.prototypes.grad, head.distance_scale.grad):
        assert grad is not None and torch.isfinite(grad).all()


@pytest.mark.parametrize("head_cls", [IsoMaxPlusHead, DisMaxHead])
def test_hand_written_backward_matches_float64_autograd(head_cls: type) -> None:
    torch.manual_seed(2)
    head = head_cls(D, C).double()
    with torch.no_grad():
        head.distance_scale.fill_(-1.7)
    features = torch.randn(7, D, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(head, (features,))
    # Gradient for the parameters too, against autograd through the reference formula.
    weights = torch.randn(7, C, dtype=torch.float64)
    (head(features) * weights).sum().backward()
    got = [head.prototypes.grad.clone(), head.distance_scale.grad.clone()]
    p = head.prototypes.detach().clone().requires_grad_(True)
    s = head.distance_scale.detach().clone().requires_grad_(True)
    f_hat = features.detach() / features.detach().norm(dim=1, keepdim=True)
    dist = (f_hat[:, None] - (p / p.norm(dim=1, keepdim=True))[None]).pow(2).sum(-1).sqrt()
    if head_cls is IsoMaxPlusHead:
        ref = -s.abs() * dist
    else:
        delta = s.abs() * dist / math.sqrt(2.0)
        ref = -(delta + delta.mean(1, keepdim=True))
    (ref * weights).sum().backward()
    assert torch.allclose(got[0], p.grad, atol=1e-10)
    assert torch.allclose(got[1], s.grad, atol=1e-10)


def test_initialisation_follows_method_md() -> None:
    torch.manual_seed(3)
    soft = SoftMaxHead(400, 300)
    bound = 1 / math.sqrt(400)
    assert float(soft.weight.detach().abs().max()) <= bound
    assert float(soft.weight.detach().abs().max()) > 0.95 * bound  # uniform fills the range
    assert torch.equal(soft.bias, torch.zeros(300))
    dis = DisMaxHead(400, 300)
    assert abs(float(dis.prototypes.detach().mean())) < 0.01
    assert abs(float(dis.prototypes.detach().std()) - 1.0) < 0.01  # N(0, 1)
    assert float(dis.distance_scale.detach()) == 1.0


@pytest.mark.parametrize("head_cls", HEADS)
def test_heads_hold_no_temperature_and_return_raw_logits(head_cls: type) -> None:
    """METHOD.md §3-§4: heads give logits at T = 1; the fitted T lives with the run."""
    torch.manual_seed(4)
    head = head_cls(D, C)
    assert not any("temperature" in name for name in head.state_dict())
    assert not hasattr(head, "temperature")
    features = torch.randn(4, D)
    want = reference_logits(head, features)
    assert torch.allclose(head(features).double(), want, atol=1e-5, rtol=0)


def test_dismax_mean_term_shifts_max_and_mean_logits_by_the_method_md_amounts() -> None:
    torch.manual_seed(5)
    head = DisMaxHead(D, C)
    with torch.no_grad():
        head.distance_scale.fill_(3.0)
    features = torch.randn(10, D)
    z = head(features).double()
    f_hat = features.double() / features.double().norm(dim=1, keepdim=True)
    p = head.prototypes.detach().double()
    p_hat = p / p.norm(dim=1, keepdim=True)
    d = (f_hat[:, None] - p_hat[None]).pow(2).sum(-1).sqrt() / math.sqrt(2)  # d_j of §1
    assert torch.allclose(z.max(1).values, -3.0 * (d.min(1).values + d.mean(1)), atol=1e-5)
    assert torch.allclose(z.mean(1), -2 * 3.0 * d.mean(1), atol=1e-5)
    assert float(d.max()) <= math.sqrt(2) + 1e-9  # d_j = sqrt(1 - cos) in [0, √2]


@pytest.mark.parametrize("head_cls", HEADS)
def test_wrong_shapes_and_sizes_are_clear_errors(head_cls: type) -> None:
    head = head_cls(D, C)
    with pytest.raises(DismaxError, match=r"expected \(B, 16\)"):
        head(torch.randn(3, D + 1))
    with pytest.raises(DismaxError, match="at least 2 classes"):
        head_cls(D, 1)


@pytest.mark.parametrize("head_cls", [IsoMaxPlusHead, DisMaxHead])
def test_inference_without_grad_equals_the_training_path_bit_for_bit(head_cls: type) -> None:
    """No autograd node when nothing needs a gradient (the prediction path), same logits."""
    torch.manual_seed(5)
    head = head_cls(D, C)
    features = torch.randn(9, D)
    with_grad = head(features)
    assert with_grad.grad_fn is not None
    with torch.no_grad():
        without = head(features)
    assert without.grad_fn is None
    assert torch.equal(with_grad.detach(), without)
    assert torch.allclose(without.double(), reference_logits(head, features), atol=1e-5)
