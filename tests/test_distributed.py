"""torchrun: DDP training and exact distributed evaluation (dismax_cli/engine/distributed.py).

One ``python -m torch.distributed.run --nproc_per_node=2`` launch (gloo, CPU) runs every
distributed command of this module (tests/ddp_worker.py chains them), next to one plain process
running the same two trainings (with and without BatchNorm); the tests compare the two. That
launch also runs the README torchrun block's ``train`` arguments (the block's ``score`` line
then runs as written, on that run). Batches are METHOD.md §6's, split over the ranks.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from test_readme import BLOCKS, commands  # tests/ is on sys.path (pytest's rootdir)

from dismax_cli.engine import distributed
from dismax_cli.engine.loop import InMemoryBatches, NonFiniteLossError, train_one_epoch

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "ddp_worker.py"
TRAIN = ["--dataset", "digits[0-5]", "--method", "softmax", "--no-augment", "--device", "cpu"]
TRAIN += ["--quiet"]
#: BatchNorm + --sync-bn through the CLI (float32, 4 steps of 256 on 780 images): the ranks'
#: reductions sum in another order than one process's BatchNorm, and ConvNet's max-pooling over
#: the flat digit backgrounds turns such 1e-7 differences into up to ~2e-3 within a few steps
#: (the same steps in float64 agree to 1e-12: test_sync_bn_float64_steps_equal_one_process).
SYNC_BN_TOLERANCE = 1e-2
#: The README's "### torchrun" block: ``torchrun`` + these launcher options + ``dismax ARGS``.
README_TORCHRUN = "torchrun --standalone --nproc_per_node=2 -m dismax_cli "
README_TRAIN, README_SCORE = commands(BLOCKS[("test", "torchrun")])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _commands(out: Path, *, ranks: int) -> list[str]:
    """The worker's command line of one side (``out`` its folder).

    The one-process side (``ranks`` 1) trains only the two references the tests compare the
    ranks' runs with (``nobn``, ``sync``); the other commands' one-process references are
    computed on the ranks themselves (``exact``, ``bn-steps``) or in the test process.
    """
    nobn = ["nobn-cli", "train", *TRAIN, "--epochs", "2", "--batch-size", "64",
            "--val-fraction", "0.12", "--out", f"{out}/nobn"]  # fmt: skip
    sync = ["cli", "train", *TRAIN, "--epochs", "1", "--batch-size", "256", "--sync-bn",
            "--out", f"{out}/sync"]  # fmt: skip
    if ranks == 1:
        return [f"{out}/results", *nobn, "++", *sync, "++"]
    cmds = [
        nobn,
        ["fit-stop", f"{out}/resumed", "2", "1"],
        ["nobn-cli", "train", "--out", f"{out}/resumed", "--resume", "--quiet"],
        sync,
        ["cli", "score", f"{out}/sync", "--ood", "digits[6-9]", "--device", "cpu", "--quiet",
         "--format", "json", "--out", f"{out}/score.json", "--dump", f"{out}/score.npz"],
        ["exact", f"{out}/sync"],
        ["shards", "11", "4", "3"],
        ["bn-steps", "1", "6"],
        ["bn-steps", "0", "6"],
        ["cli", "train", *TRAIN, "--batch-size", "63", "--out", f"{out}/bad"],
        ["cli", "benchmark", "--methods", "softmax", "--epochs", "1", "--ood", "digits[6-9]",
         "--device", "cpu", "--runs-dir", f"{out}/runs", "--out", f"{out}/bench.json",
         "--quiet", "--format", "json"],
        # The README block's train line, run from the folder the fixture gives this launch.
        ["cli", *shlex.split(README_TRAIN.removeprefix(README_TORCHRUN))],
    ]  # fmt: skip
    line: list[str] = [f"{out}/results"]
    for cmd in cmds:
        line += [*cmd, "++"]
    return line


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the commands under torchrun (2 ranks) and in one process, at the same time."""
    base = tmp_path_factory.mktemp("ddp")
    (base / "readme").mkdir()  # the README torchrun block's folder (relative --out)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "DISMAX_OFFLINE": "1"}
    launcher = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{_free_port()}",
    ]  # fmt: skip
    ddp = subprocess.Popen(
        [*launcher, str(WORKER), *_commands(base / "ddp", ranks=2)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=base / "readme",
    )  # fmt: skip
    one = subprocess.run(
        [sys.executable, str(WORKER), *_commands(base / "one", ranks=1)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out, err = ddp.communicate(timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    assert ddp.returncode == 0, err[-3000:]
    return {
        "base": base,
        "stdout": out,
        "stderr": err,
        "ranks": [torch.load(base / f"ddp/results.{r}.pt", weights_only=False) for r in (0, 1)],
        "one": torch.load(base / "one/results.0.pt", weights_only=False),
    }


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=False)["state_dict"]


def _max_diff(a: Path, b: Path) -> float:
    wa, wb = _weights(a), _weights(b)
    assert sorted(wa) == sorted(wb)  # plain state_dict keys: no DDP "module." prefix
    return max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa)


def test_ddp_weights_equal_one_process_without_batchnorm(sides: dict[str, Any]) -> None:
    base = sides["base"]
    # 763 images: per epoch 11 global batches of 64 and one of 59, split 30 + 29 (its losses
    # weighted 60/59 and 58/59), on 2 ranks = one process, to 1e-5.
    assert _max_diff(base / "ddp/nobn", base / "one/nobn") < 1e-5
    # The log's loss and accuracy are over both ranks' images (summed, then divided).
    logs = [
        [json.loads(line) for line in (base / side / "nobn/train_log.jsonl").open()]
        for side in ("ddp", "one")
    ]
    for ddp_epoch, one_epoch in zip(*logs, strict=True):
        assert math.isclose(ddp_epoch["loss"], one_epoch["loss"], rel_tol=1e-6)
        assert ddp_epoch["accuracy"] == one_epoch["accuracy"]
    assert logs[1][1]["loss"] < logs[1][0]["loss"]  # it trained


def test_ddp_resume_equals_uninterrupted(sides: dict[str, Any]) -> None:
    base = sides["base"]
    assert _max_diff(base / "ddp/resumed", base / "ddp/nobn") < 1e-6
    log = (base / "ddp/resumed/train_log.jsonl").read_text().splitlines()
    assert len(log) == 2


def test_ddp_sync_bn_equals_one_process_within_tolerance(sides: dict[str, Any]) -> None:
    base = sides["base"]
    assert _max_diff(base / "ddp/sync", base / "one/sync") < SYNC_BN_TOLERANCE
    running = _weights(base / "ddp/sync")["backbone.features.1.num_batches_tracked"]
    assert int(running) == 4  # 3 batches of 256 and the 12-image tail, on both ranks


def test_sync_bn_float64_steps_equal_one_process(sides: dict[str, Any]) -> None:
    for rank_result in sides["ranks"]:
        synced, unsynced = rank_result["results"][7], rank_result["results"][8]
        assert max(synced) < 1e-12  # global-batch statistics: the one-process steps
        assert min(unsynced) > 1e-6  # per-rank statistics: visibly another model


def test_only_rank_zero_writes_and_prints(sides: dict[str, Any]) -> None:
    ddp = sides["base"] / "ddp"
    names = sorted(p.name for p in (ddp / "sync").iterdir() if not p.name.startswith("."))
    assert names == ["checkpoint.pt", "train_log.jsonl"]
    # One line per epoch: rank 1 appended nothing.
    assert len((ddp / "sync/train_log.jsonl").read_text().splitlines()) == 1
    # The command printed its checkpoint path once (rank 1 is silent).
    assert sides["stdout"].count(f"{ddp}/sync/checkpoint.pt") == 1


def test_bad_batch_size_for_the_ranks_exits_2_and_writes_nothing(sides: dict[str, Any]) -> None:
    codes = [r["results"][9] for r in sides["ranks"]]
    assert codes == [2, 2]
    assert not (sides["base"] / "ddp/bad").exists()
    lines = [line for line in sides["stderr"].splitlines() if "--batch-size 63" in line]
    assert len(lines) == 1, sides["stderr"][-2000:]
    assert "use a multiple of 2" in lines[0] and "Traceback" not in sides["stderr"]


def _metrics(report: dict[str, Any]) -> list[Any]:
    return [
        (m["id_before"], m["n_id"], [(o["ood"], o["n_ood"], o["metrics"]) for o in m["ood"]])
        for m in report["methods"]
    ]


def test_distributed_scoring_equals_one_process(sides: dict[str, Any]) -> None:
    import numpy as np

    from dismax_cli.benchmark import score_checkpoint
    from dismax_cli.reports import to_json

    base = sides["base"]
    ddp = json.loads((base / "ddp/score.json").read_text())
    # The same checkpoint scored in this one process (1 thread, as the ranks).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = score_checkpoint(base / "ddp/sync", ["digits[6-9]"], device="cpu",
                                  dump=base / "one-score.npz")  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    one = json.loads(to_json(report))
    method = ddp["methods"][0]
    assert method["n_id"] == 216 and method["ood"][0]["n_ood"] == 143  # each sample once
    assert _metrics(ddp) == _metrics(one)
    dumps = np.load(base / "ddp/score.npz"), np.load(base / "one-score.npz")
    assert dumps[0]["id_logits"].shape == (216, 6)
    assert len(dumps[0]["ood/digits[6-9]/msp"]) == 143  # odd: 72 + 71 rows
    for key in ("id_logits", "ood/digits[6-9]/msp"):
        np.testing.assert_array_equal(dumps[0][key], dumps[1][key])


def test_exact_distributed_logits_each_sample_once(sides: dict[str, Any]) -> None:
    for rank_result in sides["ranks"]:
        exact = rank_result["results"][5]
        for n, (gathered, local) in exact.items():
            assert gathered.shape == local.shape == (n, 6)
            torch.testing.assert_close(gathered, local, rtol=0, atol=1e-6)
            assert torch.equal(gathered.argmax(1), local.argmax(1))


def test_shards_disjoint_cover_the_epoch_and_change(sides: dict[str, Any]) -> None:
    r0, r1 = (r["results"][6] for r in sides["ranks"])
    for epoch in range(3):
        b0, b1 = r0["batches"][epoch], r1["batches"][epoch]
        # 11 images, global batch 4 on 2 ranks: [4, 7] (the 3-image tail joins: < 2 per rank).
        assert [len(x) for x in b0] == [2, 4] and [len(x) for x in b1] == [2, 3]
        seen = [i for batch in b0 + b1 for i in batch]
        assert sorted(seen) == list(range(11))  # disjoint and covering the epoch
    assert r0["batches"][0] != r0["batches"][1] != r0["batches"][2]
    assert r0["weights"][0] == [1.0, 8 / 7] and r1["weights"][0] == [1.0, 6 / 7]


# ----------------------------------------------------------------- in one process (no torchrun)


def test_global_batch_sizes_by_hand() -> None:
    assert distributed.global_batch_sizes(11, 4, 2) == [4, 7]
    assert distributed.global_batch_sizes(12, 4, 2) == [4, 4, 4]
    assert distributed.global_batch_sizes(13, 4, 2) == [4, 4, 5]
    assert distributed.global_batch_sizes(9, 4, 1) == [4, 5]  # = loop.batch_sizes
    assert distributed.global_batch_sizes(3, 8, 1) == [3]
    with pytest.raises(distributed.DismaxError, match="2 ranks need at least 4"):
        distributed.global_batch_sizes(3, 4, 2)


@pytest.mark.parametrize("batch", [63, 3, 2, 65])
def test_check_batch_size_refuses_uneven_global_batches(batch: int) -> None:
    from dismax_cli.config import InvalidValueError

    with pytest.raises(InvalidValueError, match=f"--batch-size {batch} does not split over"):
        distributed.check_batch_size(batch, 2 if batch != 65 else 4)
    distributed.check_batch_size(64, 4)
    distributed.check_batch_size(3, 1)


def test_rank_batches_and_shard_range_cover_in_order() -> None:
    order = torch.tensor([5, 3, 9, 0, 1, 2, 8, 4, 6, 7])
    pieces = [distributed.rank_batches(order, [4, 6], r, 3) for r in range(3)]
    assert [p.tolist() for p in pieces[0]] == [[5, 3], [1, 2]]
    assert [p.tolist() for p in pieces[1]] == [[9], [8, 4]]
    assert [p.tolist() for p in pieces[2]] == [[0], [6, 7]]
    for n in (10, 7, 1, 0):  # 10 samples on 4 ranks: 3, 3, 2, 2 rows, contiguous, in order
        ranges = [distributed.shard_range(n, part=r, parts=4) for r in range(4)]
        assert [i for rng in ranges for i in rng] == list(range(n))
    assert [len(distributed.shard_range(10, part=r, parts=4)) for r in range(4)] == [3, 3, 2, 2]


def test_loss_weights_give_the_global_mean() -> None:
    # Ranks hold 4 and 3 of 7 images; DDP averages the two gradients: weighted means add up.
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], dtype=torch.float64)
    w0, w1 = distributed.loss_weight(4, 7, 2), distributed.loss_weight(3, 7, 2)
    ddp_mean = (w0 * losses[:4].mean() + w1 * losses[4:].mean()) / 2
    assert math.isclose(float(ddp_mean), float(losses.mean()), rel_tol=1e-15)


def test_in_memory_batches_one_process_unchanged_by_the_hook() -> None:
    from dismax_cli.engine.loop import epoch_generator, iterate_batches

    images = torch.zeros(9, 2, 2, 1, dtype=torch.uint8)
    batches = InMemoryBatches(
        images, torch.arange(9), batch_size=4, transform=lambda x: x.float(),  # type: ignore[arg-type]
        generator=epoch_generator(3, 1), augment=False,
    )  # fmt: skip
    got = [t.tolist() for _, t in batches]
    want = [t.tolist() for t in iterate_batches(9, 4, epoch_generator(3, 1))]
    assert got == want and batches.loss_weights == [1.0, 1.0]


def test_a_non_finite_flag_from_another_rank_stops_this_one() -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))] * 3
    flags: list[bool] = []

    def other_rank_failed(ok: bool) -> bool:
        flags.append(ok)
        return False  # this rank's loss is finite, another rank's was not

    with pytest.raises(NonFiniteLossError, match="batch 1"):
        train_one_epoch(
            model, torch.nn.CrossEntropyLoss(), batches, optimizer, all_finite=other_rank_failed
        )
    assert flags == [True]


def test_rank_generator_keeps_rank_zero_and_differs_for_others() -> None:
    from dismax_cli.engine.loop import epoch_generator

    g = epoch_generator(0, 0)
    assert distributed.rank_generator(g, 0) is g
    a = torch.rand(4, generator=distributed.rank_generator(epoch_generator(0, 0), 1))
    b = torch.rand(4, generator=distributed.rank_generator(epoch_generator(0, 0), 1))
    c = torch.rand(4, generator=epoch_generator(0, 0))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_no_process_group_outside_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.launched()
    assert distributed.init_process_group(torch.device("cpu")) == torch.device("cpu")
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    x = torch.arange(6.0).reshape(3, 2)
    assert distributed.gather_rows(x) is x
    assert distributed.all_finite(False) is False


def test_benchmark_under_torchrun_trains_scores_and_reports_once(sides: dict[str, Any]) -> None:
    codes = [r["results"][10] for r in sides["ranks"]]
    assert codes == [0, 0]
    report = json.loads((sides["base"] / "ddp/bench.json").read_text())
    method = report["methods"][0]
    assert method["method"] == "softmax"
    assert method["n_id"] == 216 and method["ood"][0]["n_ood"] == 143
    runs = list((sides["base"] / "ddp/runs").iterdir())
    assert len(runs) == 1 and len((runs[0] / "train_log.jsonl").read_text().splitlines()) == 1


def test_sync_bn_joins_the_run_key_only_when_set() -> None:
    from dismax_cli.engine import TrainConfig

    # Runs trained before the option existed keep their key (and are reused) ...
    assert "sync_bn" not in TrainConfig().identity()
    assert TrainConfig(sync_bn=True).identity()["sync_bn"] is True
    # ... and their checkpoints' configs, which have no sync_bn, still load.
    saved = TrainConfig().to_dict()
    del saved["sync_bn"]
    assert TrainConfig.from_dict(saved).sync_bn is False


def test_local_only_turns_sharding_off_inside_the_block() -> None:
    depth = distributed._local_depth
    with distributed.local_only(), distributed.local_only():
        assert distributed._local_depth == depth + 2 and not distributed.sharded()
    assert distributed._local_depth == depth


def test_readme_torchrun_block_runs(sides: dict[str, Any]) -> None:
    """The README's "### torchrun" block: its ``train`` arguments ran in the module's torchrun
    launch (2 ranks, the same ``main(argv)`` that ``-m dismax_cli`` calls, from a fresh folder);
    its ``score`` line runs here as written (``torchrun`` from this Python's bin, ``--standalone``,
    ``-m dismax_cli``) on that run."""
    assert README_TRAIN.startswith(README_TORCHRUN + "train ")
    assert README_SCORE.startswith(README_TORCHRUN + "score ")
    assert [r["results"][11] for r in sides["ranks"]] == [0, 0]  # train's exit codes
    assert sides["stdout"].count("runs/ddp-dismax/checkpoint.pt") == 1  # rank 0 only
    cwd = sides["base"] / "readme"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "DISMAX_OFFLINE": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", README_SCORE],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, f"{README_SCORE}\n{proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr
    assert "n_id 216, n_ood 143" in proc.stdout
    run = cwd / "runs/ddp-dismax"
    names = sorted(p.name for p in run.iterdir() if not p.name.startswith("."))
    assert names == ["checkpoint.pt", "train_log.jsonl"]


def test_torchrun_device_per_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    from dismax_cli.engine.devices import torchrun_device

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert torchrun_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(distributed.DismaxError, match="pass --device cuda$"):
        torchrun_device(torch.device("cuda", 0))
    with pytest.raises(distributed.DismaxError, match="torchrun with --device mps"):
        torchrun_device(torch.device("mps"))
    if torch.cuda.device_count() < 2:
        with pytest.raises(distributed.DismaxError, match="local rank 1 has no GPU"):
            torchrun_device(torch.device("cuda"))
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: the device as asked
    assert torchrun_device(torch.device("cuda", 0)) == torch.device("cuda", 0)
