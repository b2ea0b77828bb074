"""The speed scripts' controls (issue 11): what they compare must be comparable.

No timing is asserted here (speed targets are measured by the scripts themselves).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SPEED = Path(__file__).resolve().parents[1] / "benchmarks" / "speed"


def _script(name: str):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(f"speed_{name}", SPEED / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inference_script_times_a_softmax_control_between_softmax_and_dismax() -> None:
    """SoftMax against an equal copy of itself must read 1.00: the copy has SoftMax's weights in
    memory of its own, and sits between the two as a method in the benchmark's order does."""
    groups = _script("inference").bundles("convnet", size=8)
    assert list(groups) == ["softmax", "softmax_control", "dismax"]
    softmax, control = groups["softmax"][0].model, groups["softmax_control"][0].model
    assert control is not softmax
    pairs = list(zip(softmax.state_dict().values(), control.state_dict().values(), strict=True))
    assert all(torch.equal(a, b) for a, b in pairs)
    assert all(a.data_ptr() != b.data_ptr() for a, b in pairs if a.numel())
    images = torch.rand(4, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(softmax(images), control(images))


def test_heads_script_rotates_the_order_of_the_timed_steps() -> None:
    """A fixed order always times one step straight after the same other one (a bias of ±15 µs
    at B, D, C = 128, 512, 100); rotated, each step follows every other one equally often."""
    calls: list[str] = []
    steps = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    _script("heads").interleaved_medians(steps, rounds=3, block=1, warmup=0, clock=lambda: 0.0)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    followers = {(calls[i], calls[i + 1]) for i in range(len(calls) - 1)}
    assert {("a", "b"), ("c", "a"), ("b", "c")} <= followers
    assert len({calls[3 * r] for r in range(3)}) == 3  # each step opens one round


def test_throughput_times_every_method_in_the_same_state(monkeypatch) -> None:  # noqa: ANN001
    """Identical models read the same throughput wherever they sit in the order (issue 11).

    A model is slower straight after another one (cold caches) than after itself. In a fixed
    order (reversed every other round) the ends follow themselves half the time and the middle
    never, so two identical copies read apart; each timed run now follows an untimed run of the
    same group, and the order rotates.
    """
    import time

    import dismax_cli.evaluation as evaluation

    class Member:
        device = torch.device("cpu")

    clock = {"now": 0.0, "last": None}

    def fake_predict(member: Member, batch: torch.Tensor, batch_size: int) -> None:
        cold = clock["last"] is not member
        clock["now"] += (1.3 if cold else 1.0) * 1e-4 * len(batch)
        clock["last"] = member

    monkeypatch.setattr(evaluation, "predict_images", fake_predict)
    monkeypatch.setattr(time, "process_time", lambda: clock["now"])
    images = torch.zeros(300, 8, 8, 1, dtype=torch.uint8)
    groups = {name: [Member()] for name in ("softmax", "copy_a", "copy_b", "last")}
    rates = evaluation.measure_throughputs(groups, images, batch_size=256)  # type: ignore[arg-type]
    for name in groups:
        assert rates[name] / rates["softmax"] == pytest.approx(1.0, abs=1e-9), rates
    assert rates["softmax"] == pytest.approx(1e4, rel=1e-9)  # the warm cost, 1e-4 s per image


def test_head_floor_times_the_same_maths_as_the_shipped_head() -> None:
    """``head_floor.py`` compares ways to run DisMax's logits (METHOD.md §1): each must give
    DisMaxHead's logits, and the TorchScript node its gradients too (or its timing says
    nothing about the shipped head)."""
    from dismax_cli.core.heads import DisMaxHead

    floor = _script("head_floor")
    torch.manual_seed(0)
    head = DisMaxHead(16, 5)
    with torch.no_grad():
        head.distance_scale.fill_(-1.7)  # the sign of s reaches its gradient
    x = torch.randn(8, 16, requires_grad=True)
    grads = []
    scripted = floor.ScriptedDisMax.apply
    for way in (head, lambda f: scripted(f, head.prototypes, head.distance_scale)):
        logits = way(x)
        (logits * torch.arange(5.0)).sum().backward()
        grads.append((logits.detach(), x.grad.clone(), head.prototypes.grad.clone(),
                      head.distance_scale.grad.clone()))  # fmt: skip
        for t in (x, head.prototypes, head.distance_scale):
            t.grad = None
    for shipped, scripted in zip(*grads, strict=True):
        torch.testing.assert_close(scripted, shipped, rtol=1e-5, atol=1e-6)
    plain = floor.plain_dismax(x, head.prototypes, head.distance_scale)
    torch.testing.assert_close(plain, grads[0][0], rtol=1e-5, atol=1e-5)
