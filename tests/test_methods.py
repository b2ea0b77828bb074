"""The methods registry: one contract test over every registered method."""

from __future__ import annotations

import pytest
import torch

from dismax_cli.core.methods import get_method, list_methods
from dismax_cli.core.mixing import fractional_probability_mix
from dismax_cli.errors import DismaxError


def test_registry_names_defaults_and_fpr() -> None:
    assert list_methods() == ["softmax", "isomax_plus", "dismax", "dismax_nofpr"]
    defaults = [get_method(m).default_score for m in list_methods()]
    assert defaults == ["msp", "mds", "mmles", "mmles"]
    assert [get_method(m).uses_fpr for m in list_methods()] == [False, False, True, False]


def test_unknown_method_lists_the_valid_ones() -> None:
    with pytest.raises(DismaxError, match="softmax, isomax_plus, dismax, dismax_nofpr, ensemble"):
        get_method("isomax")


@pytest.mark.parametrize("name", list_methods())
def test_method_contract(name: str) -> None:
    torch.manual_seed(0)
    spec = get_method(name)
    head = spec.make_head(10, 4)
    loss_fn = spec.make_loss(10.0, 1.0)
    features = torch.randn(8, 10, requires_grad=True)
    targets = torch.randint(0, 4, (8,))
    if spec.uses_fpr:
        mix = fractional_probability_mix(features[:, :, None, None], targets, 4)
        logits = head(mix.images.flatten(1))
        loss = loss_fn(logits, mix)
    else:
        logits = head(features)
        loss = loss_fn(logits, targets)
    assert logits.shape == (8, 4)
    assert torch.isfinite(logits).all() and torch.isfinite(loss)
    loss.backward()
    params = dict(head.named_parameters())
    assert params, "a head must have trainable parameters"
    for pname, param in params.items():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname
        assert float(param.grad.abs().sum()) > 0, f"{pname} received no gradient"
    assert features.grad is not None and float(features.grad.abs().sum()) > 0
