"""Per-detector inference cost relative to MSP, on the CIFAR-10 npz copy (CPU, batch 256).

Usage: python benchmarks/speed/detectors.py [--data ../shared/data] [--model convnet]
       [--images 1024] [--threads 1] [--rounds 3] [--run RUN_DIR]

A SoftMax and a DisMax classifier (random weights with ``--model``, or a trained run with
``--run``, which replaces the SoftMax one) get every detector fitted on the CIFAR-10 training
copy (``cifar10_train_10k.npz``, 10,000 images), then every (model, score) is timed on the same
``--images`` test images (``cifar10_test.npz``) by :func:`dismax_cli.detection.measure_score_costs`,
the function ``dismax benchmark --scores`` uses for its speed column: uint8 images through the
transform and the model, plus the score (ODIN: a backward pass and a second forward; KNN: the
search among the training features; ViM: the projection), interleaved rounds, the median per
batch, in process CPU time. Prints images/s and the cost relative to SoftMax with MSP.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from dismax_cli.data import ImageTransform, load_dataset
from dismax_cli.detection import DetectorStage
from dismax_cli.engine import ModelBundle, build_model, load_bundle
from dismax_cli.score_names import DETECTOR_SCORES


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).parents[3] / "shared" / "data"))
    parser.add_argument("--model", default="convnet")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--run", default=None, help="a trained SoftMax run folder to time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    train = load_dataset(f"npz:{data / 'cifar10_train_10k.npz'}", split="all")
    test = load_dataset(f"npz:{data / 'cifar10_test.npz'}", split="all")
    images = test.images[: args.images]
    transform = ImageTransform(
        image_size=32, channels=3, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)
    )
    cpu = torch.device("cpu")
    groups: dict[str, list[ModelBundle]] = {}
    for method in ("softmax", "dismax"):
        net = build_model(
            method=method, model=args.model, num_classes=10, channels=3, image_size=32, seed=0
        ).eval()
        groups[method] = [ModelBundle(net, transform, None, cpu)]  # type: ignore[arg-type]
    if args.run:
        groups["softmax"] = [load_bundle(args.run, device="cpu")]
    stage = DetectorStage(("all",))
    for method, bundles in groups.items():
        stage.prepare(method, bundles, train, run_dir=None)
    scores = ("msp", "mmles", *DETECTOR_SCORES)
    available = {m: scores for m in groups}
    relative = stage.costs(
        groups, available, images, baseline=("softmax", "msp"), rounds=args.rounds
    )
    print(
        f"CPU, {args.threads} thread(s), batch 256, {len(images)} CIFAR-10 test images, "
        f"statistics from {len(train):,} training images, {args.model}, median of "
        f"{args.rounds} interleaved rounds; cost = images/s relative to SoftMax + MSP"
    )
    print(f"{'model':8s} {'score':12s} {'relative':>8s}")
    for method in groups:
        for score in scores:
            print(f"{method:8s} {score:12s} {relative[method][score]:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
