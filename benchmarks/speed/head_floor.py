"""How fast can a DisMax head's forward+backward be on this CPU? Other ways to run the same maths.

Usage: python benchmarks/speed/head_floor.py [--batch 128] [--features 512] [--classes 100]
       [--threads 1] [--runs 300] [--compile]

Times forward+backward (``logits.sum().backward()``, median CPU time per step over interleaved
blocks, as ``heads.py``) of:

* ``SoftMaxHead`` (the reference, 1.00) and ``DisMaxHead`` (one fused autograd node with a
  hand-written backward; what the package ships);
* the same logits (METHOD.md §1) in plain autograd operations, matrix-product form;
* the fused node's common path (no rare-path checks) with its forward and backward compiled by
  TorchScript, so no Python runs between its operations: the cost of the operations themselves;
* an ``autograd.Function`` that does no arithmetic (returns precomputed tensors): what a custom
  node costs in the framework alone;
* with ``--compile``, the plain form under ``torch.compile`` (needs a C++ compiler; the first
  call compiles for tens of seconds).

Issue 11's target is DisMaxHead <= 1.3x SoftMaxHead; this script shows where each way lands.
It prints and exits 0 (it has no target of its own).
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heads import interleaved_medians  # noqa: E402

from dismax_cli.core.heads import DisMaxHead, SoftMaxHead  # noqa: E402


def plain_dismax(x: torch.Tensor, p: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """DisMax logits in plain autograd ops: ``d² = 2 − 2 f̂·p̂`` (METHOD.md §1)."""
    d = (2 - 2 * F.normalize(x, dim=1) @ F.normalize(p, dim=1).t()).clamp_min(0).sqrt()
    delta = s.abs() * d / math.sqrt(2.0)
    return -(delta + delta.mean(dim=1, keepdim=True))


@functools.cache
def _scripted() -> tuple[Callable[..., object], Callable[..., object]]:
    """The fused node's common path (every d² ≥ 0.0625, no zero or huge rows) in TorchScript."""

    def forward(f: torch.Tensor, p: torch.Tensor, a: float):  # noqa: ANN202
        nf = torch.linalg.vector_norm(f, dim=[1], keepdim=True)
        np_ = torch.linalg.vector_norm(p, dim=[1])
        denom = nf * np_
        prod = torch.mm(f, p.t())
        d = torch.addcdiv(torch.full((1,), 2.0), prod, denom, value=-2.0).sqrt_()
        ones = torch.ones(d.shape[1])
        logits = torch.addr(d, d.sum(dim=1), ones, beta=-a, alpha=-a / d.shape[1])
        return logits, d, prod, denom, nf, np_

    def backward(g: torch.Tensor, d: torch.Tensor, prod: torch.Tensor, denom: torch.Tensor,
                 nf: torch.Tensor, np_: torch.Tensor, f: torch.Tensor, p: torch.Tensor,
                 a: float, factor: float):  # noqa: ANN202  # fmt: skip
        gd = torch.add(g, g.sum(dim=1, keepdim=True), alpha=1.0 / d.shape[1])
        gs = (gd * d).sum().reshape(1) * -factor
        scaled = torch.addcdiv(torch.zeros(1), torch.div(gd, d), denom, value=a)
        radial = scaled * prod
        gf = torch.mm(scaled, p)
        gf.addcmul_(f, radial.sum(dim=1, keepdim=True).div_(nf.square()), value=-1.0)
        gp = torch.mm(scaled.t(), f)
        gp.addcmul_(p, radial.sum(dim=0).div_(np_.square())[:, None], value=-1.0)
        return gf, gp, gs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
        return torch.jit.script(forward), torch.jit.script(backward)


FACTOR = 1.0 / math.sqrt(2.0)  # DisMax's δ = |s| d / √2 (METHOD.md §1)


class ScriptedDisMax(torch.autograd.Function):
    """DisMaxHead's fused node, common path only, forward and backward in TorchScript."""

    @staticmethod
    def forward(ctx, f, p, s):  # type: ignore[no-untyped-def, override]
        script_forward, _ = _scripted()
        a = abs(float(s)) * FACTOR
        logits, *saved = script_forward(f, p, a)
        ctx.saved = (*saved, f, p, a, FACTOR * (1.0 if float(s) >= 0 else -1.0))
        return logits

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def, override]
        _, script_backward = _scripted()
        return script_backward(g, *ctx.saved)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    b, dim, c = args.batch, args.features, args.classes
    x = torch.randn(b, dim, requires_grad=True)
    softmax, dismax = SoftMaxHead(dim, c), DisMaxHead(dim, c)
    p, s = dismax.prototypes, dismax.distance_scale
    out, gx, gp, gs = torch.randn(b, c), torch.randn(b, dim), torch.randn(c, dim), torch.ones(1)

    class Nothing(torch.autograd.Function):
        @staticmethod
        def forward(ctx, f, p, s):  # type: ignore[no-untyped-def, override]
            return out.clone()

        @staticmethod
        def backward(ctx, g):  # type: ignore[no-untyped-def, override]
            return gx.clone(), gp.clone(), gs.clone()

    with torch.no_grad():
        same = (ScriptedDisMax.apply(x, p, s) - dismax(x)).abs().max().item()
    forwards: dict[str, Callable[[], torch.Tensor]] = {
        "SoftMaxHead": lambda: softmax(x),
        "DisMaxHead (fused node, shipped)": lambda: dismax(x),
        "plain autograd ops": lambda: plain_dismax(x, p, s),
        "fused node in TorchScript": lambda: ScriptedDisMax.apply(x, p, s),
        "autograd.Function doing nothing": lambda: Nothing.apply(x, p, s),
    }
    if args.compile:
        compiled = torch.compile(plain_dismax)
        started = time.perf_counter()
        compiled(x, p, s).sum().backward()
        print(f"torch.compile: first call {time.perf_counter() - started:.1f} s")
        forwards["plain ops under torch.compile"] = lambda: compiled(x, p, s)
    steps = {name: (lambda f=f: f().sum().backward()) for name, f in forwards.items()}
    timings = interleaved_medians(steps, rounds=args.runs // 10, block=10, warmup=50)
    base = timings["SoftMaxHead"]
    print(
        f"forward+backward, B={b} D={dim} C={c}, {args.threads} CPU thread(s), median CPU time "
        f"of {args.runs} runs in interleaved blocks of 10 (TorchScript logits within {same:.1e})"
    )
    print(f"{'way':36s} {'median (us)':>12s} {'x SoftMax':>10s}")
    for name, seconds in timings.items():
        print(f"{name:36s} {seconds * 1e6:12.1f} {seconds / base:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
