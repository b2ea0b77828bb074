"""Heads against a float64 reimplementation of METHOD.md §1."""

from __future__ import annotations

import math

import pytest
import torch

from dismax_cli.core.heads import DisMaxHead, IsoMaxPlusHead, SoftMaxHead, normalized_distances
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
    s = abs(float(head.distance_scale.detach()))
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
def test_heads_hold_no_temperature_and_return_raw_logits(head_cls: type) -> None:
    """METHOD.md §3-§4: heads give logits at T = 1; the fitted T lives with the run."""
    torch.manual_seed(4)
    head = head_cls(D, C)
    assert not any("temperature" in name for name in head.state_dict())
    assert not hasattr(head, "temperature")
    features = torch.randn(4, D)
    want = reference_logits(head, features)
    assert torch.allclose(head(features).double(), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("head_cls", HEADS)
def test_wrong_shapes_and_sizes_are_clear_errors(head_cls: type) -> None:
    head = head_cls(D, C)
    with pytest.raises(DismaxError, match=r"expected \(B, 16\)"):
        head(torch.randn(3, D + 1))
    with pytest.raises(DismaxError, match="at least 2 classes"):
        head_cls(D, 1)


# ------------------------------------------------- issue 9: zero features, d -> 0, autocast


def f_normalize_reference(head: torch.nn.Module, features: torch.Tensor) -> torch.Tensor:
    """METHOD.md §1 in float64 with ``F.normalize`` (eps 1e-12) and exact differences."""
    f_hat = torch.nn.functional.normalize(features.double(), dim=1, eps=1e-12)
    p_hat = torch.nn.functional.normalize(head.prototypes.detach().double(), dim=1, eps=1e-12)
    dist = (f_hat[:, None, :] - p_hat[None, :, :]).pow(2).sum(-1).sqrt()
    s = abs(float(head.distance_scale.detach()))
    if isinstance(head, IsoMaxPlusHead):
        return -s * dist
    delta = s * dist / math.sqrt(2.0)
    return -(delta + delta.mean(dim=1, keepdim=True))


def exact_distances(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """‖f̂ − p̂‖ in float64 from explicit differences (no matrix-product shortcut)."""
    f_hat = torch.nn.functional.normalize(features.double(), dim=1, eps=1e-12)
    p_hat = torch.nn.functional.normalize(prototypes.double(), dim=1, eps=1e-12)
    return (f_hat[:, None, :] - p_hat[None, :, :]).pow(2).sum(-1).sqrt()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    ("head_cls", "want"), [(DisMaxHead, -math.sqrt(2.0)), (IsoMaxPlusHead, -1.0)]
)
def test_zero_feature_follows_the_f_normalize_convention(
    head_cls: type, want: float, dtype: torch.dtype
) -> None:
    # Issue 9 item 1: f̂ = 0 for f = 0, so every ‖f̂ − p̂_j‖ = 1 (d_j = 1/√2 for DisMax).
    head = head_cls(2, 2)
    with torch.no_grad():
        head.prototypes.copy_(torch.eye(2))
    for module in (head, head_cls(2, 2).to(dtype)):
        if module is not head:
            module.load_state_dict(head.state_dict())
        features = torch.zeros(1, 2, dtype=dtype, requires_grad=True)
        logits = module(features)
        assert torch.isfinite(logits).all()
        assert torch.allclose(
            logits.double(), torch.full((1, 2), want, dtype=torch.float64), atol=1e-6
        )
        loss = torch.nn.functional.cross_entropy(10.0 * logits.float(), torch.tensor([0]))
        loss.backward()
        for grad in (features.grad, module.prototypes.grad, module.distance_scale.grad):
            assert grad is not None and torch.isfinite(grad.float()).all()
            assert float(grad.float().norm()) <= 1e6


@pytest.mark.parametrize("head_cls", [IsoMaxPlusHead, DisMaxHead])
def test_tiny_and_zero_vectors_match_f_normalize_and_keep_gradients_bounded(
    head_cls: type,
) -> None:
    torch.manual_seed(11)
    head = head_cls(D, C)
    with torch.no_grad():
        head.prototypes[1].zero_()  # a zero prototype
        head.prototypes[3].mul_(1e-30)  # a tiny one
    features = torch.randn(6, D)
    features[0] = 0.0
    features[1] *= 1e-30
    features[2] *= 1e-14  # below eps = 1e-12: F.normalize gives a vector of norm < 1
    features.requires_grad_(True)
    logits = head(features)
    want = f_normalize_reference(head, features.detach())
    assert torch.allclose(logits.double(), want, atol=1e-5, rtol=0), float(
        (logits - want).abs().max()
    )
    (logits * torch.randn(6, C)).sum().backward()
    for grad in (features.grad, head.prototypes.grad, head.distance_scale.grad):
        assert grad is not None and torch.isfinite(grad).all()
        assert float(grad.abs().max()) <= 1e6
    # The ordinary rows still get their gradient (not zeroed along with the degenerate ones).
    assert float(features.grad[3:].abs().max()) > 0


def test_distance_of_a_vector_to_itself_is_zero() -> None:
    # Issue 9 item 2: the matrix-product form gave 3.45e-4 for [1, 1] against itself.
    ones = torch.tensor([[1.0, 1.0]])
    assert float(normalized_distances(ones, ones).abs().max()) <= 1e-6
    torch.manual_seed(12)
    features = torch.randn(64, 512)
    got = normalized_distances(features, features)
    assert float(got.diagonal().abs().max()) <= 1e-6
    assert float((got.double() - exact_distances(features, features)).abs().max()) <= 1e-5


@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("num_features", [3, 64, 2048])
def test_every_distance_matches_the_exact_difference_also_near_zero(
    num_features: int, autocast: bool
) -> None:
    torch.manual_seed(13)
    prototypes = torch.randn(10, num_features)
    prototypes[9] = prototypes[8]  # a duplicate: two distances near 0 for the same feature
    offsets = torch.tensor([0.0, 1e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.1, 0.2, 0.3, 1.0])
    noise = torch.randn(10, num_features) / math.sqrt(num_features)
    scale = prototypes.norm(dim=1, keepdim=True)
    features = torch.cat(
        [(prototypes + offsets[:, None] * noise * scale) * 3.0, torch.randn(6, num_features)]
    )
    context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else torch.no_grad()
    with context:
        got = normalized_distances(features, prototypes)
    assert got.dtype == torch.float32
    want = exact_distances(features, prototypes)
    assert float((got.double() - want).abs().max()) <= 1e-5, float(
        (got.double() - want).abs().max()
    )


@pytest.mark.parametrize("head_cls", [IsoMaxPlusHead, DisMaxHead])
def test_backward_is_exact_near_zero_distances(head_cls: type) -> None:
    torch.manual_seed(14)
    head = head_cls(D, C).double()
    with torch.no_grad():
        head.distance_scale.fill_(1.3)
    near = head.prototypes.detach()[[0, 1, 3]] * torch.tensor([[2.0], [0.5], [4.0]]).double()
    near = near + 1e-2 * torch.randn(3, D, dtype=torch.float64)
    features = torch.cat([near, torch.randn(3, D, dtype=torch.float64)]).requires_grad_(True)
    assert torch.autograd.gradcheck(head, (features,))
    prototypes = head.prototypes.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda p: torch.func.functional_call(head, {"prototypes": p}, (features,)), (prototypes,)
    )


@pytest.mark.parametrize("head_cls", [IsoMaxPlusHead, DisMaxHead])
def test_float32_gradient_near_a_prototype_matches_float64_autograd(head_cls: type) -> None:
    torch.manual_seed(15)
    head = head_cls(64, C)
    base = head.prototypes.detach()[[0, 2]] * 2.0
    features = (base + 1e-3 * torch.randn(2, 64) / 8.0).requires_grad_(True)
    weights = torch.randn(2, C)
    (head(features) * weights).sum().backward()
    f64 = features.detach().double().requires_grad_(True)
    (f_normalize_reference_autograd(head, f64) * weights.double()).sum().backward()
    assert torch.isfinite(features.grad).all()
    error = float((features.grad.double() - f64.grad).norm() / f64.grad.norm())
    assert error < 1e-2, error


def f_normalize_reference_autograd(head: torch.nn.Module, features: torch.Tensor) -> torch.Tensor:
    f_hat = torch.nn.functional.normalize(features, dim=1, eps=1e-12)
    p_hat = torch.nn.functional.normalize(head.prototypes.detach().double(), dim=1, eps=1e-12)
    dist = (f_hat[:, None, :] - p_hat[None, :, :]).pow(2).sum(-1).sqrt()
    s = abs(float(head.distance_scale.detach()))
    if isinstance(head, IsoMaxPlusHead):
        return -s * dist
    delta = s * dist / math.sqrt(2.0)
    return -(delta + delta.mean(dim=1, keepdim=True))


def test_gradient_at_distance_zero_is_finite() -> None:
    head = DisMaxHead(2, 2)
    with torch.no_grad():
        head.prototypes.copy_(torch.eye(2))
    features = torch.tensor([[3.0, 0.0]], requires_grad=True)  # exactly on prototype 0
    logits = head(features)
    # d_0 = 0 and d_1 = 1 (orthogonal unit vectors at distance √2, over √2): z = −(d + mean d).
    want = torch.tensor([[-(0.0 + 0.5), -(1.0 + 0.5)]])
    assert torch.allclose(logits.detach(), want, atol=1e-6)
    logits.sum().backward()
    assert torch.isfinite(features.grad).all() and torch.isfinite(head.prototypes.grad).all()


@pytest.mark.parametrize("head_cls", HEADS)
@pytest.mark.parametrize("feature_dtype", [torch.float32, torch.bfloat16])
def test_heads_return_float32_logits_under_cpu_autocast(
    head_cls: type, feature_dtype: torch.dtype
) -> None:
    # Issue 9 item 3: F.linear under autocast returned bfloat16 logits.
    torch.manual_seed(16)
    head = head_cls(D, C)
    features = torch.randn(8, D).to(feature_dtype)
    want = head(features.float()).detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(features)
    assert logits.dtype == torch.float32
    # Computed in float32, not in bfloat16 and cast up (bfloat16 would be off by ~1e-2).
    assert torch.allclose(logits.detach(), want, atol=1e-5, rtol=0)
    features = features.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        head(features).sum().backward()
    assert features.grad is not None and features.grad.dtype == feature_dtype
    assert torch.isfinite(features.grad.float()).all()


@pytest.mark.parametrize("head_cls", HEADS)
def test_empty_batch_gives_empty_logits_and_zero_gradients(head_cls: type) -> None:
    head = head_cls(D, C)
    features = torch.zeros(0, D, requires_grad=True)
    logits = head(features)
    assert logits.shape == (0, C)
    logits.sum().backward()
    assert features.grad is not None and features.grad.shape == (0, D)


# ------------------------------------------------- issue 11: the head's cost is its op count


class _CountOps(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the aten operations dispatched inside the context (views included)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("head_cls", [IsoMaxPlusHead, DisMaxHead])
def test_prototype_head_runs_few_tensor_ops(head_cls: type) -> None:
    """On CPU each op costs microseconds of dispatch, more than this head's arithmetic.

    The old node dispatched 86 ops for forward+backward (a rescale of every row on every call,
    reciprocal norms, a cosine matrix, a clamp), then 42 (DisMax; 39 IsoMax+); SoftMaxHead
    dispatches 16. Issue 11: DisMax's mean term is one rank-1 ``addr`` (not sum, scale, add)
    in forward and a sum and an add in backward, the backward scales by ``a`` inside an
    ``addcdiv`` and an ``addmv``, and the extremes are read without stacking them: 40 (37).
    Features far from the prototypes take no recompute path (no ``nonzero``, no row gathering).
    """
    torch.manual_seed(21)
    head = head_cls(64, 10)
    features = torch.randn(32, 64, requires_grad=True)
    head(features).sum().backward()  # warm-up: lazy initialisation is not counted
    with _CountOps() as counted:
        head(features).sum().backward()
    assert len(counted.names) <= 40, counted.names
    assert not {"nonzero", "index_select", "abs", "where"} & set(counted.names), counted.names
    with torch.no_grad(), _CountOps() as inference:
        logits = head(features)
    # Without grad: no autograd node and about a third of the ops.
    assert len(inference.names) <= 13, inference.names
    assert torch.allclose(logits.double(), reference_logits(head, features), atol=1e-5)


@pytest.mark.parametrize("head_cls", [IsoMaxPlusHead, DisMaxHead])
@pytest.mark.parametrize("scale", [0.0, -0.5])
def test_scale_gradient_matches_autograd_also_at_zero_and_negative(
    head_cls: type, scale: float
) -> None:
    # ∂L/∂s = −sign(s)·factor·Σ G r (METHOD.md §1): 0 at s = 0, where every other gradient is 0.
    torch.manual_seed(22)
    head = head_cls(D, C).double()
    with torch.no_grad():
        head.distance_scale.fill_(scale)
    base = head.prototypes.detach()[[0, 1]] * 2.0
    features = torch.cat([base + 1e-3, torch.randn(3, D, dtype=torch.float64)]).requires_grad_()
    weights = torch.randn(5, C, dtype=torch.float64)
    (head(features) * weights).sum().backward()
    f = features.detach().clone().requires_grad_(True)
    p = head.prototypes.detach().clone().requires_grad_(True)
    s = head.distance_scale.detach().clone().requires_grad_(True)
    dist = torch.cdist(
        f / f.norm(dim=1, keepdim=True),
        p / p.norm(dim=1, keepdim=True),
        compute_mode="donot_use_mm_for_euclid_dist",
    )
    if head_cls is IsoMaxPlusHead:
        ref = -s.abs() * dist
    else:
        delta = s.abs() * dist / math.sqrt(2.0)
        ref = -(delta + delta.mean(1, keepdim=True))
    (ref * weights).sum().backward()
    for got, want in ((features.grad, f.grad), (head.prototypes.grad, p.grad)):
        assert torch.allclose(got, want, atol=1e-9), float((got - want).abs().max())
    assert torch.allclose(head.distance_scale.grad, s.grad, atol=1e-9)
    if scale == 0.0:
        assert float(features.grad.abs().max()) == 0.0
