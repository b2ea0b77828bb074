"""Estimate the compute of each paper config (benchmarks/configs/paper-*.yaml): an ESTIMATE.

No GPU was available, so GPU time is unmeasured. What this script measures is the forward FLOPs
of each backbone on one 32x32 image (torch's FlopCounterMode, 2 FLOPs per multiply-add); the
rest is arithmetic with stated assumptions:

- training FLOPs per image = 3 x forward (forward + backward, the usual rule of thumb);
- a run sees epochs x 50,000 training images (``--protocol paper``: the full CIFAR split) and
  evaluates the 10,000 test images once per epoch (the paper's best-test-epoch rule);
- runs per config = methods trained x seeds (a deep ensemble adds M - 1 SoftMax members);
- GPU hours at an ASSUMED sustained rate (``--tflops``, default 30 TFLOP/s, about a tenth of
  an A100's bf16 peak; batch-64 training of 32x32 CNNs rarely gets near peak). Divide by your
  measured rate instead as soon as you have one.

Run from the repository root: ``python benchmarks/paper/flops.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from dismax_cli.config import read_yaml_config
from dismax_cli.core.methods import get_method
from dismax_cli.models.registry import build_backbone

TRAIN_IMAGES, TEST_IMAGES = 50_000, 10_000


def forward_flops(model: str) -> int:
    """Forward FLOPs of ``model``'s backbone on one 3x32x32 image (eval mode)."""
    backbone = build_backbone(model).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        backbone(torch.zeros(1, 3, 32, 32))
    return int(counter.get_total_flops())


def runs_of(config: dict) -> int:
    """Trained runs of a benchmark config: methods (ensemble members included) x seeds."""
    runs = 0
    for method in config["methods"]:
        spec = get_method(method)
        runs += (config.get("ensemble_size", 3) - 1) if spec.members_of else 1
    return runs * config.get("seeds", 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflops", type=float, default=30.0, help="assumed sustained TFLOP/s")
    args = parser.parse_args()
    cache: dict[str, int] = {}
    print(f"{'config':<37}{'runs':>5}{'GFLOP/img':>10}{'PFLOP':>9}{'GPU h (est.)':>14}")
    for path in sorted(Path("benchmarks/configs").glob("paper-*.yaml")):
        config = read_yaml_config(path)
        model = config["model"]
        cache.setdefault(model, forward_flops(model))
        per_run = config["epochs"] * (3 * TRAIN_IMAGES + TEST_IMAGES) * cache[model]
        total = per_run * runs_of(config)
        hours = total / (args.tflops * 1e12) / 3600
        print(f"{path.name:<37}{runs_of(config):>5}{cache[model] / 1e9:>10.2f}"
              f"{total / 1e15:>9,.0f}{hours:>14,.1f}")  # fmt: skip
    print(f"GPU hours are an ESTIMATE at an assumed {args.tflops:g} TFLOP/s sustained; unmeasured")


if __name__ == "__main__":
    main()
