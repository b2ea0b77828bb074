"""The engine's new pieces (issue 11): format-1 checkpoints, any iterable of batches, T rules."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from dismax_cli.core.losses import DisMaxLoss, SoftMaxLoss
from dismax_cli.engine import (
    CHECKPOINT_NAME,
    CheckpointMeta,
    TrainConfig,
    calibrate_checkpoint,
    fit,
    fpr_mix,
    load_bundle,
    load_checkpoint,
    load_payload,
    load_run_data,
    predict_images,
    predict_logits,
    train_one_epoch,
)
from dismax_cli.engine.loop import LossMeter, NonFiniteLossError
from dismax_cli.errors import DismaxError

CONFIG = TrainConfig(dataset="digits", method="dismax", epochs=1, device="cpu")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("engine") / "dismax"
    fit(CONFIG, folder, data=load_run_data(CONFIG))
    return folder


def _as_format_1(run: Path, dest: Path, temperature: float) -> Path:
    """Rewrite a run's checkpoint as format 1 wrote it: T as the ``head.temperature`` buffer."""
    shutil.copytree(run, dest)
    payload = load_payload(dest)
    del payload["temperature"]
    payload["format_version"] = 1
    payload["state_dict"] = {**payload["state_dict"], "head.temperature": torch.tensor(temperature)}
    torch.save(payload, dest / CHECKPOINT_NAME)
    return dest


def test_a_format_1_checkpoint_loads_with_its_temperature_migrated(
    tmp_path: Path, run: Path
) -> None:
    old = _as_format_1(run, tmp_path / "old", 0.25)
    bundle = load_bundle(old)
    assert bundle.temperature == 0.25 and bundle.meta.temperature == 0.25
    assert not hasattr(bundle.model.head, "temperature")
    images = load_run_data(CONFIG).test.images[:20]
    # Format 1 stored raw weights: the migrated model gives the same raw logits as format 2.
    assert torch.equal(predict_images(bundle, images), predict_images(load_bundle(run), images))
    # Calibrating it writes a format-2 file: T in the metadata, none in the weights.
    result = calibrate_checkpoint(old)
    payload = load_payload(old)
    assert payload["format_version"] == 2 and payload["temperature"] == result.temperature
    assert "head.temperature" not in payload["state_dict"]


def test_a_format_1_checkpoint_without_its_temperature_is_damaged(
    tmp_path: Path, run: Path
) -> None:
    old = _as_format_1(run, tmp_path / "old", 0.25)
    payload = torch.load(old / CHECKPOINT_NAME, weights_only=True)
    del payload["state_dict"]["head.temperature"]
    torch.save(payload, old / CHECKPOINT_NAME)
    with pytest.raises(DismaxError, match="damaged metadata .*head.temperature"):
        load_checkpoint(old)


def test_checkpoint_metadata_round_trips_through_its_dict(run: Path) -> None:
    meta = load_checkpoint(run).meta
    assert isinstance(meta, CheckpointMeta) and isinstance(meta.config, TrainConfig)
    assert CheckpointMeta.from_dict(meta.to_dict()) == meta
    assert meta.to_dict()["mean"] == list(meta.transform["mean"])
    with pytest.raises(DismaxError, match="no 'epoch'"):
        CheckpointMeta.from_dict({k: v for k, v in meta.to_dict().items() if k != "epoch"})


def _toy(
    seed: int = 0, method: str = "dismax"
) -> tuple[torch.nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    from dismax_cli.adapters import replace_head

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.ReLU())
    model.append(torch.nn.Linear(8, 3))
    replace_head(model, method)
    x = torch.randn(40, 3, 2, 2)
    y = torch.arange(40) % 3
    return model, [(x[i : i + 8], y[i : i + 8]) for i in range(0, 40, 8)]


def test_train_one_epoch_takes_a_dataloader_and_a_generator_alike() -> None:
    """The same batches as a DataLoader or a plain generator give the same weights."""
    results = []
    for kind in ("loader", "generator"):
        model, batches = _toy()
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        source = (
            DataLoader(TensorDataset(x, y), batch_size=8)
            if kind == "loader"
            else (b for b in batches)  # no len(): the loss buffer must grow
        )
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        seen: list[int] = []
        stats = train_one_epoch(
            model, DisMaxLoss(), source, optimizer, mix=fpr_mix(3, generator=torch.Generator()),
            on_batch=lambda s, seen=seen: seen.append(s.batches), report_every=2,
        )  # fmt: skip
        assert stats.batches == 5 and stats.images == 40
        results.append((stats.loss, [p.detach().clone() for p in model.parameters()]))
        assert seen[:2] == [2, 4]
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_train_one_epoch_stops_on_a_non_finite_loss() -> None:
    # A linear head overflows at lr 1e30 (DisMax's logits stay bounded: its distances are).
    model, batches = _toy(method="softmax")
    optimizer = torch.optim.SGD(model.parameters(), lr=1e30)
    with pytest.raises(NonFiniteLossError, match="non-finite in batch"):
        for _ in range(5):
            train_one_epoch(model, SoftMaxLoss(), batches, optimizer)


def test_the_loss_meter_grows_past_its_expected_length() -> None:
    meter = LossMeter(1, torch.device("cpu"))
    for loss, n in ((0.5, 2), (1.5, 4), (2.0, 1)):
        meter.add(torch.tensor(loss), n)
    assert meter.total() == 0.5 * 2 + 1.5 * 4 + 2.0 * 1
    assert meter.losses.dtype == torch.float32


def test_predict_logits_never_touches_a_temperature(run: Path) -> None:
    """Scores at T = 1 whatever T the run was calibrated to (METHOD.md §3)."""
    bundle = load_bundle(run)
    images = load_run_data(CONFIG).test.images[:16]
    raw = predict_images(bundle, images)
    bundle.meta = bundle.meta.__class__(**{**bundle.meta.__dict__, "temperature": 0.05})
    assert torch.equal(predict_images(bundle, images), raw)
    batches = [bundle.transform(images[:8]), bundle.transform(images[8:])]
    assert torch.allclose(predict_logits(bundle.model, batches), raw, atol=1e-6)


def test_inference_throughput_counts_work_not_other_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bursts of other processes stretch the wall clock at random; the efficiency stays put."""
    import random
    import time

    import dismax_cli.evaluation as evaluation

    class Member:
        device = torch.device("cpu")

        def __init__(self, cost: float) -> None:
            self.cost = cost  # CPU seconds per image

    cpu = {"now": 0.0}
    wall_noise = random.Random(0)

    def fake_predict(member: Member, batch: torch.Tensor, batch_size: int) -> None:
        cpu["now"] += member.cost * len(batch)

    monkeypatch.setattr(evaluation, "predict_images", fake_predict)
    monkeypatch.setattr(time, "process_time", lambda: cpu["now"])
    monkeypatch.setattr(time, "perf_counter", lambda: cpu["now"] + 5 * wall_noise.random())
    images = torch.zeros(600, 8, 8, 1, dtype=torch.uint8)
    groups = {"softmax": [Member(1e-4)], "dismax": [Member(1.1e-4)], "ensemble": [Member(1e-4)] * 3}
    rates = evaluation.measure_throughputs(groups, images, batch_size=256)  # type: ignore[arg-type]
    assert rates["softmax"] == pytest.approx(1e4, rel=1e-9)
    assert rates["dismax"] / rates["softmax"] == pytest.approx(1 / 1.1, rel=1e-9)
    assert rates["ensemble"] / rates["softmax"] == pytest.approx(1 / 3, rel=1e-9)


def test_run_key_leaves_out_later_fields_at_their_default(monkeypatch):
    """A field added later must not change the key of runs trained before it existed."""
    from dismax_cli.engine import config as config_module
    from dismax_cli.engine.config import TrainConfig

    before = TrainConfig(method="softmax").identity()
    assert "alpha" in before
    monkeypatch.setattr(config_module, "LATER_FIELDS", (*config_module.LATER_FIELDS, "alpha"))
    assert "alpha" not in TrainConfig(method="softmax").identity()
    assert TrainConfig(method="softmax", alpha=0.5).identity()["alpha"] == 0.5
    assert {k: v for k, v in before.items() if k != "alpha"} == TrainConfig(
        method="softmax"
    ).identity()
