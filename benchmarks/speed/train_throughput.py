"""Images/s of ``train_one_epoch`` on a DataLoader against a bare PyTorch loop, same batches.

Usage: python benchmarks/speed/train_throughput.py [--device cpu|cuda|auto] [--model convnet]
       [--method dismax] [--images 2048] [--batch-size 64] [--threads 1] [--repeats 7]

Both loops train the same model (built by :func:`dismax_cli.engine.build_training`, as ``fit``
builds it) with the same optimiser and loss on the same ``DataLoader`` of pre-normalised float
batches, FPR mosaics included for DisMax (:func:`dismax_cli.engine.fpr_mix`, as
``train_one_epoch(mix=...)`` uses it). The bare loop is forward, loss, backward, step; the engine
adds its bookkeeping: device placement, the float32 loss meter, the clean-accuracy count and the
non-finite check. Epochs of the two alternate (engine, bare, engine, ...), so background load hits
both alike; the median epoch of each counts. The overhead is ``1 − engine / bare``; target
(issue 11): at most 5 % on CPU. Data are random uint8 32×32×3 images with 10 classes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from dismax_cli.data import ImageSet
from dismax_cli.engine import TrainConfig, build_training, fpr_mix, resolve_device, train_one_epoch
from dismax_cli.engine.devices import autocast

TARGET = 0.05


def synthetic_train_set(n: int, seed: int = 0) -> ImageSet:
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, 10, size=n).astype(np.int64))
    return ImageSet(
        images=images,
        labels=labels,
        classes=tuple(str(c) for c in range(10)),
        spec="random-uint8",
        split="train",
        source="random uint8 pixels (speed measurement only)",
        origin="random-uint8",
        indices=np.arange(n, dtype=np.int64),
    )


def bare_epoch(model, loss_fn, loader, optimizer, mix, device) -> None:  # noqa: ANN001
    """The plain PyTorch loop: forward, loss, backward, step (FPR mixing when the engine mixes)."""
    model.train()
    for inputs, targets in loader:
        inputs, targets = inputs.to(device), targets.to(device)
        with autocast(device):
            if mix is not None:
                batch = mix(inputs, targets)
                loss = loss_fn(model(batch.images).float(), batch)
            else:
                loss = loss_fn(model(inputs).float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def timed(fn, device: torch.device) -> tuple[float, float]:  # noqa: ANN001
    """(wall-clock seconds, this process's CPU seconds) of ``fn()``."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="convnet")
    parser.add_argument("--method", default="dismax")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = TrainConfig(
        dataset="random-uint8",
        method=args.method,
        model=args.model,
        batch_size=args.batch_size,
        device=args.device,
    ).validate()
    device = resolve_device(config.device)
    train = synthetic_train_set(args.images)
    setup = build_training(config, train, device)
    dataset = TensorDataset(setup.transform(train.images), train.labels)  # type: ignore[arg-type]
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=False, drop_last=True)
    generator = torch.Generator().manual_seed(0)
    mix = fpr_mix(train.num_classes, generator=generator) if config.uses_fpr else None
    model, loss_fn, optimizer = setup.model, setup.loss_fn, setup.optimizer

    def engine() -> None:
        train_one_epoch(model, loss_fn, loader, optimizer, mix=mix, device=device)

    def bare() -> None:
        bare_epoch(model, loss_fn, loader, optimizer, mix, device)

    engine()  # warm-up: allocator, kernels, caches
    bare()
    engines, bares = [], []
    for _ in range(args.repeats):
        engines.append(timed(engine, device))
        bares.append(timed(bare, device))
    images = len(loader) * config.batch_size
    # On CPU the process's CPU time is the measure: other processes on a shared machine stretch
    # the wall clock of both loops but not the work each one does. On CUDA: the wall clock.
    which = 1 if device.type == "cpu" else 0
    rates = {}
    for name, runs in (("engine", engines), ("bare", bares)):
        rates[name] = [images / statistics.median(r[k] for r in runs) for k in (0, 1)]
    overhead = 1.0 - rates["engine"][which] / rates["bare"][which]
    print(
        f"{args.method} + {args.model}, batch {args.batch_size}, {images} images per epoch, "
        f"device {device}, {args.threads} CPU thread(s), median of {args.repeats} interleaved "
        "epochs each"
    )
    for name, label in (("engine", "train_one_epoch (DataLoader)"), ("bare", "bare PyTorch loop")):
        wall, cpu = rates[name]
        print(f"{label:29s} {wall:9.1f} images/s wall clock, {cpu:9.1f} images/CPU-s")
    verdict = "met" if overhead <= TARGET else "MISSED"
    measure = "CPU time" if which else "wall clock"
    print(
        f"engine overhead ({measure}): {overhead * 100:.1f} % "
        f"(target <= {TARGET * 100:.0f} %): {verdict}"
    )
    return 0 if overhead <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
