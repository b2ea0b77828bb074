"""No float64 tensor on an accelerator (issue 9 item 7): Apple's MPS has no float64.

The CPU-only test machine has no MPS or CUDA device, so the ``meta`` device stands in for one: a
dispatch mode records every tensor that an operation creates off the CPU, and a copy from
``meta`` to the CPU returns the real values the test started from, so the code under test runs
to the end. The assertion is that no recorded tensor is float64, and that no copy to the CPU
casts to float64 on the way (the cast must come after the move, on the CPU).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from dismax_cli import evaluation
from dismax_cli.core import _arrays, calibration, ensemble, metrics, scores


class MetaAsAccelerator(TorchDispatchMode):
    """Record float64 tensors created off the CPU; give meta -> CPU copies real values."""

    def __init__(self, real: dict[tuple[int, ...], torch.Tensor]) -> None:
        super().__init__()
        self.real = real
        self.float64_off_cpu: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        source = args[0] if args and isinstance(args[0], torch.Tensor) else None
        to_cpu = str(kwargs.get("device", "")) == "cpu"
        if func is torch.ops.aten._to_copy.default and source is not None and to_cpu:
            if source.device.type == "meta":
                dtype = kwargs.get("dtype") or source.dtype
                if dtype == torch.float64 and source.dtype != torch.float64:
                    # A cast inside the device-to-host copy may run on the device (CUDA's copy
                    # kernel casts there first), which MPS cannot do for float64.
                    self.float64_off_cpu.append(f"{func} casting {source.dtype} on the move")
                return self.real[tuple(source.shape)].to(dtype=dtype)
        out = func(*args, **kwargs)
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "cpu":
                if tensor.dtype == torch.float64:
                    self.float64_off_cpu.append(str(func))
        return out


@pytest.fixture(autouse=True)
def meta_has_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """Here ``meta`` tensors get their values from :class:`MetaAsAccelerator`: the API's
    refusal of meta tensors (no values, ``core/tensor_checks.py``) does not apply."""
    from dismax_cli.core import tensor_checks

    monkeypatch.setattr(tensor_checks, "VALUELESS_DEVICES", ())


def run_on_fake_accelerator(
    function: Callable[..., object], *inputs: torch.Tensor
) -> tuple[object, list[str]]:
    """Call ``function`` on meta copies of ``inputs`` (distinct shapes); return result, records."""
    real = {tuple(t.shape): t for t in inputs}
    assert len(real) == len(inputs), "give every input its own shape"
    metas = [t.to("meta") for t in inputs]
    mode = MetaAsAccelerator(real)
    error: Exception | None = None
    result: object = None
    with mode:
        try:
            result = function(*metas)
        except Exception as caught:  # reported after the float64 check
            error = caught
    assert not mode.float64_off_cpu, f"float64 created off the CPU by {mode.float64_off_cpu}"
    assert error is None, repr(error)
    return result, mode.float64_off_cpu


LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-3.0, 4.0, 0.0], [1.0, 1.0, 1.0]])


@pytest.mark.parametrize("name", sorted(scores.SCORES))
def test_scores_create_no_float64_tensor_on_the_logits_device(name: str) -> None:
    result, _ = run_on_fake_accelerator(scores.SCORES[name], LOGITS)
    assert isinstance(result, torch.Tensor) and result.device.type == "cpu"
    assert result.dtype == torch.float64
    assert torch.allclose(result, scores.SCORES[name](LOGITS), atol=1e-12)


@pytest.mark.parametrize(
    "function",
    [ensemble.predictive_probs, ensemble.predictive_log_probs, ensemble.mutual_information],
)
def test_ensemble_functions_create_no_float64_tensor_off_the_cpu(
    function: Callable[[torch.Tensor], torch.Tensor],
) -> None:
    members = torch.stack([LOGITS, LOGITS.flip(1)])
    result, _ = run_on_fake_accelerator(function, members)
    assert isinstance(result, torch.Tensor) and result.device.type == "cpu"
    assert torch.allclose(result, function(members), atol=1e-12)


def test_metrics_and_calibration_create_no_float64_tensor_off_the_cpu() -> None:
    id_scores = torch.tensor([0.9, 0.8, 0.7, 0.95, 0.6])
    ood_scores = torch.tensor([0.1, 0.75, 0.3])
    for metric in (metrics.auroc, metrics.aupr_in, metrics.fpr_at_95_tpr):
        got, _ = run_on_fake_accelerator(metric, id_scores, ood_scores)
        assert got == pytest.approx(metric(id_scores, ood_scores))
    probs = torch.softmax(LOGITS, dim=1)
    targets = [0, 2, 1, 0]
    got, _ = run_on_fake_accelerator(lambda p: metrics.ece(p, targets), probs)
    assert got == pytest.approx(metrics.ece(probs, targets))
    got, _ = run_on_fake_accelerator(lambda z: calibration.nll_from_logits(z, targets), LOGITS)
    assert got == pytest.approx(calibration.nll_from_logits(LOGITS, targets))


def test_evaluation_probabilities_create_no_float64_tensor_off_the_cpu() -> None:
    got, _ = run_on_fake_accelerator(lambda z: evaluation.probs_at(z, 0.5), LOGITS)
    assert isinstance(got, torch.Tensor) and got.device.type == "cpu"
    assert torch.allclose(got, torch.softmax(LOGITS.double() / 0.5, dim=1), atol=1e-12)


def test_host_float64_moves_before_casting() -> None:
    seen: list[tuple[str, torch.dtype]] = []

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            kwargs = kwargs or {}
            if func is torch.ops.aten._to_copy.default:
                seen.append((args[0].device.type, kwargs.get("dtype")))
                if args[0].device.type == "meta":
                    return torch.zeros(args[0].shape, dtype=args[0].dtype)
            return func(*args, **kwargs)

    with Spy():
        out = _arrays.host_float64(torch.ones(2, 3, dtype=torch.float16, device="meta"))
    assert out.device.type == "cpu" and out.dtype == torch.float64
    # First the move from the device in float16 (no dtype change), then the cast on the CPU.
    assert seen == [("meta", torch.float16), ("cpu", torch.float64)]
    cpu_input = torch.ones(2, dtype=torch.float32, requires_grad=True)
    moved = _arrays.host_float64(cpu_input)
    moved.sum().backward()
    assert cpu_input.grad is not None  # autograd follows
