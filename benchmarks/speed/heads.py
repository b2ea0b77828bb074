"""Time forward+backward of each head on CPU against SoftMaxHead and an exact-difference DisMax.

Usage: python benchmarks/speed/heads.py [--batch 128] [--features 512] [--classes 100]
       [--threads 2] [--runs 400]

Prints the median CPU time per forward+backward (after warm-up; the heads are timed in
interleaved blocks so background load affects them alike, and by the process's CPU time, not the
wall clock, so time the process spends waiting for a core on a loaded machine does not count;
``--clock wall`` for the wall clock) of SoftMaxHead, IsoMaxPlusHead,
DisMaxHead, DisMaxHead on features close to their prototypes (as after training: every row has
a pair near distance 0, which the head recomputes from the exact difference) and a
straightforward DisMax built on ``torch.cdist`` without the matrix-product shortcut, their ratios
to SoftMaxHead, and the largest difference between DisMaxHead's logits and the exact-difference
ones on both kinds of features. Target (issue 11): DisMaxHead ≤ 1.3× SoftMaxHead (issue 2 asked
for 2.0×), logits within 1e-5 also near distance 0. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from dismax_cli.core.heads import DisMaxHead, IsoMaxPlusHead, SoftMaxHead

TARGET = 1.3  # DisMaxHead forward+backward time / SoftMaxHead's (issue 11)


def exact_difference_dismax(head: DisMaxHead, features: torch.Tensor) -> torch.Tensor:
    """DisMax logits (METHOD.md §1) with the distance computed from explicit differences."""
    distances = torch.cdist(
        F.normalize(features, dim=1, eps=1e-12),
        F.normalize(head.prototypes, dim=1, eps=1e-12),
        compute_mode="donot_use_mm_for_euclid_dist",
    )
    delta = head.distance_scale.abs() * distances / math.sqrt(2.0)
    return -(delta + delta.mean(dim=1, keepdim=True))


def interleaved_medians(
    steps: dict[str, Callable[[], None]],
    *,
    rounds: int,
    block: int,
    warmup: int,
    clock: Callable[[], float] = time.process_time,
) -> dict[str, float]:
    """Median seconds per step of each function, timed in interleaved rounds.

    Each round times a block of ``block`` calls of every function in turn, so load from other
    processes and CPU frequency changes affect all of them alike; the median over rounds counts.
    The order rotates every round, so each function follows every other one equally often (in a
    fixed order the same function always ran straight after the same one: ±15 µs of bias at
    B, D, C = 128, 512, 100 between two copies of one head).
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            step = steps[name]
            start = clock()
            for _ in range(block):
                step()
            times[name].append((clock() - start) / block)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    features = torch.randn(args.batch, args.features, requires_grad=True)

    heads = {
        "SoftMaxHead": SoftMaxHead(args.features, args.classes),
        "IsoMaxPlusHead": IsoMaxPlusHead(args.features, args.classes),
        "DisMaxHead": DisMaxHead(args.features, args.classes),
    }
    dismax = heads["DisMaxHead"]
    forwards: dict[str, Callable[[], torch.Tensor]] = {
        name: (lambda head=head: head(features)) for name, head in heads.items()
    }
    # Trained-like features: each row a scaled prototype plus a little noise (d ~ 1e-3 … 0.1).
    labels = torch.arange(args.batch) % args.classes
    spread = torch.logspace(-3, -1, args.batch)[:, None] / math.sqrt(args.features)
    with torch.no_grad():
        near = dismax.prototypes[labels] * 3.0
        near += spread * near.norm(dim=1, keepdim=True) * torch.randn(args.batch, args.features)
    near.requires_grad_(True)
    forwards["DisMaxHead, features near prototypes"] = lambda: dismax(near)
    forwards["DisMax exact-difference (cdist)"] = lambda: exact_difference_dismax(dismax, features)

    steps = {
        name: (lambda forward=forward: forward().sum().backward())
        for name, forward in forwards.items()
    }
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    timings = interleaved_medians(
        steps, rounds=args.runs // 10, block=10, warmup=args.warmup, clock=clock
    )

    with torch.no_grad():
        max_diff = max(
            float((dismax(x) - exact_difference_dismax(dismax, x)).abs().max())
            for x in (features, near)
        )

    base = timings["SoftMaxHead"]
    print(
        f"forward+backward, B={args.batch} D={args.features} C={args.classes}, "
        f"{args.threads} CPU threads, {args.runs} runs each in interleaved blocks of 10, "
        f"median block after {args.warmup} warm-up runs, {args.clock} time"
    )
    print(f"{'head':38s} {'median (us)':>12s} {'x SoftMax':>10s}")
    for name, seconds in timings.items():
        print(f"{name:38s} {seconds * 1e6:12.1f} {seconds / base:10.2f}")
    ratio = timings["DisMaxHead"] / base
    print(
        "DisMaxHead vs exact-difference: "
        f"{timings['DisMaxHead'] / timings['DisMax exact-difference (cdist)']:.3f}x the time"
    )
    print(f"max |DisMaxHead - exact-difference| logits (random and near features): {max_diff:.2e}")
    ok = ratio <= TARGET and max_diff <= 1e-5
    print(
        f"target DisMaxHead <= {TARGET}x SoftMaxHead and logits within 1e-5: "
        f"{'met' if ok else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
