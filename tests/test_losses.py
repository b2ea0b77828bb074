"""Losses: METHOD.md §1 property, stability, and the FPR loss against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dismax_cli.core.heads import DisMaxHead, IsoMaxPlusHead
from dismax_cli.core.losses import DisMaxLoss, IsoMaxPlusLoss, SoftMaxLoss
from dismax_cli.core.mixing import FractionalMix, fractional_probability_mix
from dismax_cli.errors import DismaxError


def test_dismax_without_fpr_equals_isomax_plus_with_scale_over_sqrt2() -> None:
    torch.manual_seed(0)
    dis = DisMaxHead(12, 6)
    iso = IsoMaxPlusHead(12, 6)
    with torch.no_grad():
        iso.prototypes.copy_(dis.prototypes)
        dis.distance_scale.fill_(2.0)
        iso.distance_scale.fill_(2.0 / math.sqrt(2.0))
    features = torch.randn(20, 12)
    targets = torch.randint(0, 6, (20,))
    z_dis, z_iso = dis(features), iso(features)
    loss_dis = DisMaxLoss()(z_dis, targets)
    loss_iso = IsoMaxPlusLoss()(z_iso, targets)
    assert float(loss_dis.detach()) == pytest.approx(float(loss_iso.detach()), abs=1e-5)
    # Probabilities, predictions and MSP agree; the logits themselves differ by the mean term.
    assert torch.allclose(F.softmax(z_dis, 1), F.softmax(z_iso, 1), atol=1e-6)
    assert torch.equal(z_dis.argmax(1), z_iso.argmax(1))
    assert not torch.allclose(z_dis, z_iso, atol=1e-3)


def test_losses_equal_scaled_cross_entropy() -> None:
    torch.manual_seed(1)
    logits = torch.randn(9, 4)
    targets = torch.randint(0, 4, (9,))
    want = F.cross_entropy(7.0 * logits, targets)
    assert float(IsoMaxPlusLoss(7.0)(logits, targets)) == pytest.approx(float(want), rel=1e-6)
    assert float(DisMaxLoss(7.0)(logits, targets)) == pytest.approx(float(want), rel=1e-6)
    assert float(SoftMaxLoss()(logits, targets)) == pytest.approx(
        float(F.cross_entropy(logits, targets)), rel=1e-6
    )


@pytest.mark.parametrize("loss", [IsoMaxPlusLoss(), DisMaxLoss()])
def test_stable_for_logit_gaps_up_to_1e3(loss: torch.nn.Module) -> None:
    logits = torch.tensor([[0.0, -1000.0], [-1000.0, 0.0]], requires_grad=True)
    targets = torch.tensor([1, 1])
    value = loss(logits, targets)
    value.backward()
    # Row 0 is wrong by a gap of 1e3: CE = E * gap / 2 rows = 10 * 1000 / 2.
    assert float(value.detach()) == pytest.approx(5000.0, rel=1e-6)
    assert torch.isfinite(logits.grad).all()
    # The reference code's -log(softmax(.)) overflows here.
    naive = -torch.log(F.softmax(10 * logits.detach(), 1))[0, 1]
    assert not torch.isfinite(naive)


def test_fpr_loss_on_a_hand_made_batch_of_four() -> None:
    # Two clean rows, two mosaics (METHOD.md §2): h = 2, n = 2.
    logits = torch.tensor(
        [[0.0, -0.1, -0.3], [-0.2, 0.0, -0.1], [-0.1, -0.1, 0.0], [0.0, -0.2, -0.2]]
    )
    mix = FractionalMix(
        images=torch.zeros(4, 1, 2, 2),
        targets=torch.tensor([0, 2, 0, 1]),
        target_probs=torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0.5, 0.5, 0], [0.25, 0.75, 0]]),
        num_clean=2,
        permutation=torch.arange(4),
        sources=torch.zeros(2, 4, dtype=torch.long),
    )
    e = 10.0

    def log_softmax(row: list[float]) -> list[float]:
        m = max(row)
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        return [v - lse for v in row]

    rows = [log_softmax([e * v for v in r]) for r in logits.tolist()]
    ce = (-rows[0][0] - rows[1][2]) / 2
    kl_a = 0.5 * (math.log(0.5) - rows[2][0]) + 0.5 * (math.log(0.5) - rows[2][1])
    kl_b = 0.25 * (math.log(0.25) - rows[3][0]) + 0.75 * (math.log(0.75) - rows[3][1])
    want = 0.5 * (ce + 1.0 * (kl_a + kl_b) / 2)
    assert float(DisMaxLoss(e, 1.0)(logits, mix)) == pytest.approx(want, rel=1e-5)
    # alpha weights the mosaic term only.
    want2 = 0.5 * (ce + 0.3 * (kl_a + kl_b) / 2)
    assert float(DisMaxLoss(e, 0.3)(logits, mix)) == pytest.approx(want2, rel=1e-5)


def test_fpr_loss_is_zero_when_predictions_equal_targets_kl_part() -> None:
    # KL(q||p) = 0 when p = q: a mosaic row whose softmax(E z) equals its target.
    q = torch.tensor([[0.25, 0.75]])
    logits = torch.log(q) / 10.0
    mix = FractionalMix(
        images=torch.zeros(1, 1, 2, 2),
        targets=torch.tensor([1]),
        target_probs=q,
        num_clean=0,
        permutation=torch.arange(1),
        sources=torch.zeros(1, 4, dtype=torch.long),
    )
    assert float(DisMaxLoss()(logits, mix)) == pytest.approx(0.0, abs=1e-6)


def test_fpr_loss_any_batch_size_and_finite_gradient() -> None:
    torch.manual_seed(2)
    head = DisMaxHead(8, 3)
    for batch in (1, 2, 3, 8, 13):
        images = torch.randn(batch, 8, 1, 1)
        targets = torch.randint(0, 3, (batch,))
        mix = fractional_probability_mix(
            images, targets, 3, generator=torch.Generator().manual_seed(0)
        )
        value = DisMaxLoss()(head(mix.images.flatten(1)), mix)
        value.backward()
        assert torch.isfinite(value)
        assert torch.isfinite(head.prototypes.grad).all()


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(DismaxError, match="entropic_scale=0"):
        DisMaxLoss(0.0)
    with pytest.raises(DismaxError, match="alpha=-1"):
        DisMaxLoss(alpha=-1.0)
    with pytest.raises(DismaxError, match="do not match logits"):
        IsoMaxPlusLoss()(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    mix = fractional_probability_mix(torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 0, 1]), 2)
    with pytest.raises(DismaxError, match="--no-fpr"):
        SoftMaxLoss()(torch.zeros(4, 2), mix)
