"""One-GPU run: ResNet-18 on the full 50,000-image CIFAR-10 with SoftMax and DisMax (README).

Trains each method on ``../shared/data/cifar10_train_jpeg.npz`` (45,000 images after the 10 %
validation carve; the in-memory path: the uint8 training tensor lives on the GPU, augmentation
runs there), under bfloat16 autocast with channels-last inputs and weights (the engine's CUDA
path, ``dismax_cli.engine.devices``) and optionally ``torch.compile``; calibrates the temperature
on the validation split (METHOD.md §4); scores the CIFAR-10 test split against TIN-resize and
MNIST (METHOD.md §5, each method's default score and all others); writes one JSON report with
images/s of every phase (load, train per epoch, calibrate, score).

Run it with ``bash benchmarks/gpu/cifar10.sh`` (which calls this file); ``--smoke`` trains one
epoch on a 128-image subset so the whole path can be checked on a CPU in seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from dismax_cli.core.methods import get_method  # noqa: E402
from dismax_cli.data import check_disjoint, load_ood  # noqa: E402
from dismax_cli.engine import TrainConfig, fit_temperature_noted, training_temperature  # noqa: E402
from dismax_cli.engine.build import build_training  # noqa: E402
from dismax_cli.engine.data import load_run_data  # noqa: E402
from dismax_cli.engine.loop import (  # noqa: E402
    InMemoryBatches,
    epoch_generator,
    fpr_mix,
    train_one_epoch,
)
from dismax_cli.engine.predict import image_batches, predict_logits  # noqa: E402
from dismax_cli.evaluation import (  # noqa: E402
    environment,
    id_metrics_from_logits,
    ood_metrics,
    single_model_scores,
)
from dismax_cli.fileio import atomic_write_bytes  # noqa: E402

METHODS = ("softmax", "dismax")
OOD = {"tin_resize": "tin_resize.npz", "mnist": "mnist_test.npz"}
SMOKE_IMAGES = 128


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument(
        "--out", type=Path, default=None,
        help="report path (default benchmarks/results/gpu-cifar10.json; with --smoke "
        "gpu-cifar10-smoke.json in the current folder: a CPU check never replaces the GPU one)",
    )  # fmt: skip
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--device", default="cuda")
    p.add_argument("--compile", action="store_true", help="torch.compile the model first")
    p.add_argument("--smoke", action="store_true", help="1 epoch on 128 images (CPU check)")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 2:
        p.error(f"--epochs {args.epochs} / --batch-size {args.batch_size}: use >= 1 and >= 2")
    if args.smoke:
        args.epochs = 1
    if args.out is None:
        smoke = Path("gpu-cifar10-smoke.json")
        args.out = smoke if args.smoke else ROOT / "benchmarks/results/gpu-cifar10.json"
    return args


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _subset(s: Any, n: int) -> Any:
    """Every k-th image (class-sorted files keep every class), at most ``n``."""
    step = max(1, len(s) // n)
    return s.subset(torch.arange(0, len(s), step)[:n].numpy(), split=s.split)


def _logits(
    model: torch.nn.Module, images: torch.Tensor, setup: Any
) -> tuple[torch.Tensor, float]:
    """Raw logits (T = 1) of uint8 ``images`` and the images/s it took (device-synchronised)."""
    _sync(setup.device)
    started = time.perf_counter()
    batches = image_batches(images, setup.transform, batch_size=1024, device=setup.device)
    logits = predict_logits(model, batches, device=setup.device)
    _sync(setup.device)
    return logits, len(images) / max(time.perf_counter() - started, 1e-9)


def _train(config: TrainConfig, data: Any, compile_model: bool) -> tuple[Any, Any, list[dict]]:
    setup = build_training(config, data.train, config_device(config))
    model = torch.compile(setup.model) if compile_model else setup.model
    images = data.train.images.to(setup.device)
    labels = data.train.labels.to(setup.device)
    epochs = []
    for epoch in range(config.epochs):
        for group in setup.optimizer.param_groups:
            group["lr"] = config.lr_at(epoch)
        generator = epoch_generator(config.seed, epoch)
        batches = InMemoryBatches(
            images, labels, batch_size=config.batch_size, transform=setup.transform,
            generator=generator, augment=True, recipe=setup.recipe,
        )  # fmt: skip
        mix = fpr_mix(data.train.num_classes, generator=generator) if config.uses_fpr else None
        _sync(setup.device)
        stats = train_one_epoch(model, setup.loss_fn, batches, setup.optimizer, mix=mix)
        _sync(setup.device)
        epochs.append(
            {"epoch": epoch + 1, "loss": stats.loss, "accuracy": stats.accuracy,
             "seconds": stats.seconds, "images_per_s": stats.images_per_s}
        )  # fmt: skip
        rate = f"{stats.images_per_s:,.0f} img/s"
        print(f"{config.method} epoch {epoch + 1}/{config.epochs}: {rate}", flush=True)
    return setup, model, epochs


def config_device(config: TrainConfig) -> torch.device:
    from dismax_cli.engine.devices import resolve_device

    return resolve_device(config.device)


def _run_method(method: str, args: argparse.Namespace, data: Any, oods: dict) -> dict:
    config = TrainConfig(
        dataset=f"npz:{args.data / 'cifar10_train_jpeg.npz'}", method=method, model=args.model,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device,
    )  # fmt: skip
    setup, model, epochs = _train(config, data, args.compile)
    val_logits, val_rate = _logits(model, data.val.images, setup)
    temperature, note = fit_temperature_noted(
        val_logits, data.val.labels, fallback=training_temperature(method, config.entropic_scale)
    )
    test_logits, test_rate = _logits(model, data.test.images, setup)
    id_scores = single_model_scores(test_logits)
    score = get_method(method).default_score
    ood_results, ood_rates = {}, {}
    for name, images in oods.items():
        logits, ood_rates[name] = _logits(model, images, setup)
        scores = single_model_scores(logits)
        ood_results[name] = {s: ood_metrics(id_scores[s], scores[s]) for s in id_scores}
    train_s = sum(e["seconds"] for e in epochs)
    return {
        "method": method,
        "uses_fpr": config.uses_fpr,
        "default_score": score,
        "temperature": temperature,
        "calibration_note": note,
        "id_T1": id_metrics_from_logits(test_logits, data.test.labels),
        "id_calibrated": id_metrics_from_logits(
            test_logits, data.test.labels, temperature=temperature
        ),
        "ood": ood_results,
        "train_s": train_s,
        "train_images_per_s": sum(e["images_per_s"] * e["seconds"] for e in epochs) / train_s,
        "epochs": epochs,
        "calibrate_images_per_s": val_rate,
        "score_images_per_s": {"cifar10_test": test_rate, **ood_rates},
    }


def _load(args: argparse.Namespace) -> tuple[Any, dict[str, torch.Tensor], float]:
    started = time.perf_counter()
    config = TrainConfig(
        dataset=f"npz:{args.data / 'cifar10_train_jpeg.npz'}",
        test_dataset=f"npz:{args.data / 'cifar10_test.npz'}",
    )
    data = load_run_data(config)
    oods = {}
    for name, file in OOD.items():
        ood = load_ood(f"npz:{args.data / file}", like=data.test)
        check_disjoint(data.test, ood)
        oods[name] = ood
    if args.smoke:
        data.train, data.val = _subset(data.train, SMOKE_IMAGES), _subset(data.val, SMOKE_IMAGES)
        data.test = _subset(data.test, SMOKE_IMAGES)
        oods = {k: _subset(v, SMOKE_IMAGES) for k, v in oods.items()}
    return data, {k: v.images for k, v in oods.items()}, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and write the report; returns the exit status."""
    wall = time.perf_counter()
    args = _parse(argv)
    data, oods, load_s = _load(args)
    n_loaded = len(data.train) + len(data.val) + len(data.test) + sum(map(len, oods.values()))
    results = [_run_method(method, args, data, oods) for method in METHODS]
    report = {
        "kind": "dismax-gpu-cifar10",
        "smoke": args.smoke,
        "compile": args.compile,
        "model": args.model,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "autocast": "bfloat16" if args.device.startswith("cuda") else None,
        "channels_last": args.device.startswith("cuda"),
        "n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test),
        "n_ood": {k: len(v) for k, v in oods.items()},
        "load_s": load_s,
        "load_images_per_s": n_loaded / max(load_s, 1e-9),
        "methods": results,
        "environment": environment(config_device(TrainConfig(device=args.device))),
        "wall_s": time.perf_counter() - wall,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out, (json.dumps(report, indent=2, allow_nan=False) + "\n").encode())
    print(f"wrote {args.out} in {report['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
