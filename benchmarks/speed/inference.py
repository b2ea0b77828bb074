"""Whole-model inference images/s of DisMax against SoftMax on the same backbone (CPU, batch 256).

Usage: python benchmarks/speed/inference.py [--models convnet resnet18] [--images 2048]
       [--batch-size 256] [--threads 1] [--rounds 7] [--repeats 2]
       [--runs SOFTMAX_RUN DISMAX_RUN]

For each backbone, a SoftMax and a DisMax classifier share the same backbone weights (the DisMax
one gets the SoftMax one's), so the only difference is the head: the paper's claim is that
DisMax infers at SoftMax's speed (METHOD.md §1). Both are timed by
:func:`dismax_cli.evaluation.measure_throughputs`, the function ``dismax benchmark`` uses for
its efficiency column: uint8 images through the ID transform and the model (T = 1), batch by
batch, the two models interleaved, the median per batch, in process CPU time on CPU.
``--repeats`` runs the whole
measurement that many times in a row to show how far two consecutive efficiencies lie apart.
A control, a second SoftMax model with the same weights in its own memory, is timed between the
two the same way (never first or last in a round): SoftMax against itself must read 1.00 ± 0.02,
so a bias of the timing itself (order, warm-up, which model ran before) would show there.
Targets (issue 11): efficiency (DisMax images/s ÷ SoftMax images/s) ≥ 0.98 on every backbone,
consecutive repeats within ±0.02, the control within 1.00 ± 0.02. Exits 1 when a target is
missed. ``--runs`` times two trained run folders instead (e.g. a benchmark's SoftMax and
DisMax runs), on the first 1,024 test images of their dataset as ``dismax benchmark`` does, the
control a second load of the SoftMax run.
"""

from __future__ import annotations

import argparse
import copy
import sys

import torch

from dismax_cli.data import ImageTransform
from dismax_cli.engine import ModelBundle, build_model
from dismax_cli.engine.checkpoint import CheckpointMeta, load_bundle
from dismax_cli.engine.data import load_run_data
from dismax_cli.engine.streaming import pixels_of
from dismax_cli.evaluation import measure_throughputs

TARGET, SPREAD = 0.98, 0.02


def bundles(model: str, *, size: int, classes: int = 10) -> dict[str, list[ModelBundle]]:
    """SoftMax, a control copy of it and DisMax with one backbone's weights (as in the benchmark).

    ``softmax_control`` is a deep copy of the SoftMax model (equal weights, separate memory).
    """
    transform = ImageTransform(image_size=size, channels=3, mean=(0.5,) * 3, std=(0.25,) * 3)
    built = {
        method: build_model(
            method=method, model=model, num_classes=classes, channels=3, image_size=size, seed=0
        ).eval()
        for method in ("softmax", "dismax")
    }
    built["dismax"].backbone.load_state_dict(built["softmax"].backbone.state_dict())
    built = {  # the control between the two, as a method in the middle of the benchmark's order
        "softmax": built["softmax"],
        "softmax_control": copy.deepcopy(built["softmax"]),
        "dismax": built["dismax"],
    }
    meta: CheckpointMeta | None = None  # the timing path reads no metadata
    cpu = torch.device("cpu")
    return {m: [ModelBundle(net, transform, meta, cpu)] for m, net in built.items()}  # type: ignore[arg-type]


def trained_bundles(softmax: str, dismax: str) -> tuple[dict[str, list[ModelBundle]], torch.Tensor]:
    """Two trained runs, a control (the SoftMax run loaded again) and the benchmark's images."""
    groups = {
        "softmax": [load_bundle(softmax)],
        "softmax_control": [load_bundle(softmax)],  # its own copy of the weights
        "dismax": [load_bundle(dismax)],
    }
    data = load_run_data(groups["softmax"][0].meta.config)
    return groups, pixels_of(data.test.images[:1024])  # benchmark.THROUGHPUT_IMAGES


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["convnet", "resnet18"])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--size", type=int, default=32, help="image side (digits: 8)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--runs", nargs=2, metavar=("SOFTMAX_RUN", "DISMAX_RUN"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(
        0, 256, (args.images, args.size, args.size, 3), dtype=torch.uint8, generator=generator
    )
    cases = [
        (model, lambda model=model: (bundles(model, size=args.size), images))
        for model in args.models
    ]
    if args.runs:
        cases = [("trained", lambda: trained_bundles(*args.runs))]
    print(
        f"CPU, {args.threads} thread(s), batch {args.batch_size}, "
        f"{'trained runs' if args.runs else f'{args.images} images {args.size}x{args.size}x3'}, "
        f"median of {args.rounds} interleaved rounds per batch, {args.repeats} repeats"
    )
    ok = True
    for model, build in cases:
        groups, images = build()
        efficiencies, controls = [], []
        for repeat in range(args.repeats):
            rates = measure_throughputs(
                groups, images, batch_size=args.batch_size, rounds=args.rounds
            )
            efficiencies.append(rates["dismax"] / rates["softmax"])
            controls.append(rates["softmax_control"] / rates["softmax"])
            print(
                f"{model:9s} run {repeat + 1}: SoftMax {rates['softmax']:8.1f} images/s, DisMax "
                f"{rates['dismax']:8.1f} images/s, efficiency {efficiencies[-1]:.3f}, "
                f"control (SoftMax vs SoftMax) {controls[-1]:.3f}"
            )
        spread = max(efficiencies) - min(efficiencies)
        control_ok = all(abs(c - 1.0) <= SPREAD for c in controls)
        met = min(efficiencies) >= TARGET and spread <= 2 * SPREAD and control_ok
        ok = ok and met
        print(
            f"{model:9s} efficiency >= {TARGET}, repeats within ±{SPREAD} and control within "
            f"1.00 ± {SPREAD}: {'met' if met else 'MISSED'} (spread {spread:.3f})"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
