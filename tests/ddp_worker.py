"""A torchrun worker for tests/test_distributed.py (not a test module itself).

``python -m torch.distributed.run ... tests/ddp_worker.py RESULTS CMD ARGS... ++ CMD ARGS...``
runs each command in turn on every rank and writes ``RESULTS.<rank>.pt`` (one torch.save of
what the commands recorded). Commands:

* ``cli ARGS``: ``dismax ARGS`` (its exit code is recorded);
* ``nobn-cli ARGS``: the same with every ``nn.BatchNorm2d`` built as ``nn.Identity`` (a
  BatchNorm-free ConvNet, whose DDP steps equal one process's);
* ``fit-stop OUT EPOCHS STOP``: ``fit`` of a BatchNorm-free softmax run stopped after STOP;
* ``shards N BATCH EPOCHS``: this rank's batch indices and loss weights for a few epochs;
* ``exact CHECKPOINT``: this rank's distributed logits and one process's for 10, 7 and 1 images;
* ``bn-steps SYNC STEPS``: the largest weight difference after each of STEPS float64 steps of
  a BatchNorm ConvNet under DDP (``--sync-bn`` when SYNC is 1) and of its copy trained in this
  process on the whole global batch.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


@contextlib.contextmanager
def _no_batchnorm() -> Iterator[None]:
    # The backbones' initialiser binds the real BatchNorm2d when it is imported: import it
    # before the swap (dismax_cli.engine loads its modules on first use).
    import dismax_cli.models.base  # noqa: F401

    saved = nn.BatchNorm2d
    nn.BatchNorm2d = lambda *args, **kwargs: nn.Identity()  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        nn.BatchNorm2d = saved  # type: ignore[misc]


def _cli(args: list[str]) -> int:
    from dismax_cli.cli.app import main

    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _shards(n: int, batch: int, epochs: int) -> dict[str, Any]:
    from dismax_cli.engine import distributed
    from dismax_cli.engine.loop import InMemoryBatches, epoch_generator

    distributed.init_process_group(torch.device("cpu"))
    images = torch.zeros(n, 2, 2, 1, dtype=torch.uint8)
    seen, weights = [], []
    for epoch in range(epochs):
        batches = InMemoryBatches(
            images, torch.arange(n), batch_size=batch, transform=lambda x: x.float(),  # type: ignore[arg-type]
            generator=epoch_generator(0, epoch), augment=False,
            rank=distributed.rank(), world_size=distributed.world_size(),
        )  # fmt: skip
        seen.append([t.tolist() for _, t in batches])
        weights.append(batches.loss_weights)
    return {"batches": seen, "weights": weights}


def _fit_stop(out: str, epochs: int, stop: int) -> None:
    from dismax_cli.engine import TrainConfig, fit

    config = TrainConfig(
        dataset="digits[0-5]", method="softmax", epochs=epochs, batch_size=64, augment=False,
        device="cpu", val_fraction=0.12,
    )  # fmt: skip
    with _no_batchnorm():
        fit(config, out, stop_after_epoch=stop)


def _exact(checkpoint: str) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    from dismax_cli.engine import load_bundle
    from dismax_cli.engine.data import rebuild_run_data
    from dismax_cli.engine.predict import _predict_uint8, predict_images

    bundle = load_bundle(checkpoint, device="cpu")
    test = rebuild_run_data(bundle.meta).test
    return {
        n: (predict_images(bundle, test.images[:n], batch_size=4),
            _predict_uint8(bundle, test.images[:n], 4))
        for n in (10, 7, 1)
    }  # fmt: skip


def _bn_steps(sync: bool, steps: int) -> list[float]:
    import copy

    from dismax_cli.engine import TrainConfig, distributed
    from dismax_cli.engine.build import build_training
    from dismax_cli.engine.data import load_run_data
    from dismax_cli.engine.loop import InMemoryBatches, epoch_generator

    device = distributed.init_process_group(torch.device("cpu"))
    config = TrainConfig(dataset="digits[0-5]", method="softmax", batch_size=64, device="cpu")
    data = load_run_data(config)
    setup = build_training(config, data.train, device)
    setup.model.double()
    ref = copy.deepcopy(setup.model)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    opt = torch.optim.SGD(setup.model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    ddp = distributed.wrap_model(setup.model, device, sync_bn=sync)

    def batches(rank: int, world: int) -> InMemoryBatches:
        return InMemoryBatches(
            data.train.images, data.train.labels, batch_size=64, transform=setup.transform,
            generator=epoch_generator(0, 0), augment=False, rank=rank, world_size=world,
        )  # fmt: skip

    diffs = []
    pairs = zip(batches(0, 1), batches(distributed.rank(), distributed.world_size()), strict=True)
    for _, ((x1, y1), (x2, y2)) in zip(range(steps), pairs, strict=False):
        for model, optimizer, x, y in ((ref, ref_opt, x1, y1), (ddp, opt, x2, y2)):
            optimizer.zero_grad()
            setup.loss_fn(model(x.double()), y).backward()
            optimizer.step()
        a, b = ref.state_dict(), setup.model.state_dict()
        diffs.append(max((a[k].double() - b[k].double()).abs().max().item() for k in a))
    return diffs


def _run(command: str, args: list[str]) -> Any:
    if command == "cli":
        return _cli(args)
    if command == "nobn-cli":
        with _no_batchnorm():
            return _cli(args)
    if command == "fit-stop":
        return _fit_stop(args[0], int(args[1]), int(args[2]))
    if command == "shards":
        return _shards(int(args[0]), int(args[1]), int(args[2]))
    if command == "exact":
        return _exact(args[0])
    if command == "bn-steps":
        return _bn_steps(args[0] == "1", int(args[1]))
    raise SystemExit(f"unknown worker command {command!r}")


def main() -> None:
    from dismax_cli.engine import distributed

    results_path, rest = sys.argv[1], sys.argv[2:]
    commands: list[list[str]] = [[]]
    for token in rest:
        if token == "++":
            commands.append([])
        else:
            commands[-1].append(token)
    results = [_run(c[0], c[1:]) for c in commands if c]
    distributed.init_process_group(torch.device("cpu"))
    rank = distributed.rank()
    torch.save({"rank": rank, "results": results}, f"{results_path}.{rank}.pt")


if __name__ == "__main__":
    main()
