"""Faults a tester found with bad inputs (QA round): each test fails on the code before its fix."""

from __future__ import annotations

import pytest
import torch

from dismax_cli.core.heads import DisMaxHead, IsoMaxPlusHead


# ----------------------------------------------------------------------------- item 8: heads


@pytest.mark.parametrize("head_cls", [DisMaxHead, IsoMaxPlusHead])
@pytest.mark.parametrize("magnitude", [1e19, 2e19, 1e30, 3e38])
def test_head_keeps_logits_and_gradient_of_huge_finite_features(head_cls, magnitude):
    """METHOD.md §1: the logits depend on f / ‖f‖ only, so a huge finite f keeps them."""
    torch.manual_seed(0)
    head = head_cls(4, 3)
    direction = torch.tensor([[0.5, -1.0, 0.25, 0.75], [-0.3, 0.2, 1.0, -0.1]])
    unit = direction.clone().requires_grad_(True)
    expected = head(unit)
    huge = (direction * magnitude).requires_grad_(True)
    assert torch.isfinite(huge).all()
    logits = head(huge)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    # not the degenerate [-2, -2, -2] pattern of an overflowing norm
    assert logits.std(dim=1).min() > 1e-3
    weights = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.7, -1.0]])
    (logits * weights).sum().backward()
    (expected * weights).sum().backward()
    assert torch.isfinite(huge.grad).all() and (huge.grad != 0).any()
    # d/df of a function of f/‖f‖ scales as 1/|f|: grad(huge) * magnitude == grad(unit)
    scaled = huge.grad.double() * magnitude
    torch.testing.assert_close(scaled, unit.grad.double(), rtol=2e-2, atol=1e-4)
