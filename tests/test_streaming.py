"""Streaming image folders through DataLoader workers (README "Streaming", issue 13 item 4).

Real data: the Tiny ImageNet test JPEGs of ``../shared/data/tin_test_64_jpeg.npz``, written
byte for byte as files into class folders (the labels are the folder a file was put in).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from support import SHARED_DATA as DATA

from dismax_cli.data import ImageSet, load_dataset
from dismax_cli.data import stream as stream_module
from dismax_cli.data.stream import StreamSet, estimate_bytes, stream_override, streaming
from dismax_cli.data.transforms import make_transform
from dismax_cli.engine.predict import image_batches
from dismax_cli.engine.streaming import StreamBatches, sample_seed, stream_eval_batches

REPO = Path(__file__).resolve().parents[1]
TIN = DATA / "tin_test_64_jpeg.npz"
MIB = 1024 * 1024

pytestmark = pytest.mark.skipif(not TIN.is_file(), reason=f"{TIN} is absent (real TIN JPEGs)")


def write_tin_folder(root: Path, n: int, *, classes: int = 4, start: int = 0) -> Path:
    """``root/c<k>/<i>.jpg``: TIN test JPEGs start..start+n-1, file i in class i % classes."""
    with np.load(TIN) as d:
        data, offsets = d["data"], d["offsets"]
    for i in range(start, start + n):
        folder = root / f"c{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:05d}.jpg").write_bytes(data[offsets[i] : offsets[i + 1]].tobytes())
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tin_folder(tmp_path_factory.mktemp("tin") / "tin", 40)


def test_streamed_folder_keeps_the_in_memory_order_labels_and_pixels(folder: Path) -> None:
    spec = f"imagefolder:{folder}"
    with streaming(True):
        streamed = load_dataset(spec, split="all")
    memory = load_dataset(spec, split="all")
    assert isinstance(streamed, StreamSet) and isinstance(memory, ImageSet)
    assert len(streamed) == len(memory) == 40
    assert torch.equal(streamed.labels, memory.labels)
    assert streamed.classes == ("c0", "c1", "c2", "c3")
    assert streamed.image_shape == (64, 64, 3)
    for i in (0, 17, 39):  # the same file at the same position, decoded to the same pixels
        assert torch.equal(streamed.files.decode(i), memory.images[i])
    # The carve and class subsets work on a streamed set as on the in-memory one.
    with streaming(True):
        part = load_dataset(f"{spec}[1,3]", split="test")
    reference = load_dataset(f"{spec}[1,3]", split="test")
    assert np.array_equal(part.indices, reference.indices)
    assert torch.equal(part.labels, reference.labels)


def test_auto_mode_streams_above_the_byte_estimate(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = sorted((folder / "c0").iterdir())[0]
    assert estimate_bytes(40, first) == 40 * 64 * 64 * 3  # 491,520 bytes
    spec = f"imagefolder:{folder}"
    monkeypatch.setattr(stream_module, "STREAM_ABOVE_BYTES", 40 * 64 * 64 * 3 - 1)
    with streaming(None):
        assert isinstance(load_dataset(spec, split="all"), StreamSet)
    monkeypatch.setattr(stream_module, "STREAM_ABOVE_BYTES", 40 * 64 * 64 * 3)
    with streaming(None):
        assert isinstance(load_dataset(spec, split="all"), ImageSet)
    with streaming(True), stream_override(False):  # score/calibrate --no-stream wins
        assert isinstance(load_dataset(spec, split="all"), ImageSet)
    assert isinstance(load_dataset(spec, split="all"), ImageSet)  # the library default


def test_streamed_evaluation_equals_the_in_memory_transform(folder: Path) -> None:
    spec = f"imagefolder:{folder}"
    with streaming(True):
        streamed = load_dataset(spec, split="all")
    memory = load_dataset(spec, split="all")
    transform = make_transform(memory, image_size=224, recipe="imagenet")
    assert transform.resize == 256 and transform.mean == (0.485, 0.456, 0.406)
    cpu = torch.device("cpu")
    expected = torch.cat(list(image_batches(memory.images, transform, batch_size=16, device=cpu)))
    got = torch.cat(list(stream_eval_batches(streamed.files, transform, batch_size=16, workers=2)))
    assert got.shape == expected.shape == (40, 3, 224, 224)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def _batches(
    train: StreamSet, workers: int, seed: int, *, rank: int = 0, world_size: int = 1
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    transform = make_transform(train, image_size=32)
    generator = torch.Generator().manual_seed(seed)
    batches = StreamBatches(
        train, batch_size=16, transform=transform, generator=generator, augment=True,
        recipe="cifar", workers=workers, rank=rank, world_size=world_size,
    )  # fmt: skip
    return list(batches)


def test_stream_batches_under_torchrun_are_each_ranks_part_of_the_global_batch(
    folder: Path,
) -> None:
    """Two ranks: batch k of rank 0 then rank 1 is global batch k of one process, augmented
    alike (per-image seeds), so DDP streams the same epoch as one process (issue 13)."""
    with streaming(True):
        train = load_dataset(f"imagefolder:{folder}", split="all")
    one = _batches(train, 0, 7)
    ranks = [_batches(train, 0, 7, rank=r, world_size=2) for r in (0, 1)]
    assert [len(t) for _, t in ranks[0]] == [8, 8, 4] and [len(t) for _, t in ranks[1]] == [8, 8, 4]
    for (x, t), (x0, t0), (x1, t1) in zip(one, ranks[0], ranks[1], strict=True):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([t0, t1]), t)
    odd = StreamBatches(
        train, batch_size=15, transform=make_transform(train, image_size=32),
        generator=torch.Generator().manual_seed(0), augment=False, recipe="cifar",
        workers=0, rank=1, world_size=2,
    )  # fmt: skip
    # 40 = 15 + 15 + 10; a 15-image batch splits 8 + 7: rank 1's mean loss is weighted 7*2/15.
    assert odd.loss_weights == [7 * 2 / 15, 7 * 2 / 15, 1.0]


def test_stream_batches_cover_the_epoch_and_do_not_depend_on_workers(folder: Path) -> None:
    with streaming(True):
        train = load_dataset(f"imagefolder:{folder}", split="all")
    one = _batches(train, 0, 7)
    two = _batches(train, 2, 7)
    assert [len(t) for _, t in one] == [16, 16, 8]
    for (x1, t1), (x2, t2) in zip(one, two, strict=True):
        assert torch.equal(x1, x2) and torch.equal(t1, t2)
    # Every image once: the targets of the epoch are the set's labels, reordered.
    targets = torch.cat([t for _, t in one])
    assert torch.equal(targets.sort().values, train.labels.sort().values)
    other = _batches(train, 0, 8)
    assert not torch.equal(torch.cat([t for _, t in other]), targets)  # another epoch's order
    assert sample_seed(5, 1) != sample_seed(5, 2) != sample_seed(6, 1)


_RSS_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, time
    import torch
    from torch import nn
    from dismax_cli.data import load_dataset
    from dismax_cli.data.stream import streaming
    from dismax_cli.data.transforms import make_transform
    from dismax_cli.engine.loop import train_one_epoch
    from dismax_cli.engine.streaming import StreamBatches

    for folder in sys.argv[1:]:  # one epoch per folder; the peaks are high-water marks so far
        torch.manual_seed(0)
        with streaming(True):
            train = load_dataset("imagefolder:" + folder, split="all")
        transform = make_transform(train, image_size=224, recipe="imagenet")
        batches = StreamBatches(
            train, batch_size=32, transform=transform, generator=torch.Generator().manual_seed(0),
            augment=True, recipe="imagenet", workers=2,
        )
        model = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 4))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        shapes = set()
        model.register_forward_pre_hook(lambda m, a: shapes.add(tuple(a[0].shape[1:])))
        started = time.perf_counter()
        stats = train_one_epoch(model, nn.CrossEntropyLoss(), batches, optimizer)
        seconds = time.perf_counter() - started
        kib = 1024
        print(json.dumps({
            "images": stats.images, "shapes": sorted(shapes), "seconds": seconds,
            "self_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib,
            "workers_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kib,
        }), flush=True)
    """
)


def _peaks(*folders: Path) -> list[dict]:
    """One fresh process streams one epoch over each folder in turn; after each, its peak RSS
    so far (``self_mib``) and its busiest finished worker's (``workers_mib``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, *map(str, folders)],
        env=env, capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    return [json.loads(line) for line in out.stdout.strip().splitlines()[-len(folders) :]]


def test_one_streamed_224px_epoch_peak_rss_does_not_grow_with_the_folder(tmp_path: Path) -> None:
    """One epoch at 224 px over 200, then over 800 real TIN JPEGs in the same process: the
    peak RSS of the main process and of the busiest worker grows by less than 24 MiB, while
    holding the 600 extra images as 224 px uint8 would take 600 x 224 x 224 x 3 B = 86 MiB,
    3.6 times the tolerance (README "Streaming" quotes the measurement over 500 and 2,000)."""
    small, large = _peaks(
        write_tin_folder(tmp_path / "small", 200), write_tin_folder(tmp_path / "large", 800)
    )
    assert small["images"] == 200 and large["images"] == 800
    assert small["shapes"] == large["shapes"] == [[3, 224, 224]]
    extra_pixels_mib = 600 * 224 * 224 * 3 / MIB
    assert extra_pixels_mib > 3.5 * 24
    for key in ("self_mib", "workers_mib"):
        growth = large[key] - small[key]
        assert growth < 24, (key, small, large)


def test_stream_and_image_sets_declare_their_metadata_once_in_one_base(folder: Path) -> None:
    """Issue 12 item 8: the ten metadata fields live in ImageSetBase; a subclass only retypes
    ``images``, so both keep the same field order (positional construction) and subset rule."""
    import dataclasses

    from dismax_cli.data.imageset import ImageSetBase

    shared = ["labels", "classes", "spec", "split", "source", "synthetic", "mean", "std",
              "augment", "origin", "indices"]  # fmt: skip
    for cls in (ImageSet, StreamSet):
        assert issubclass(cls, ImageSetBase)
        assert [f.name for f in dataclasses.fields(cls)] == ["images", *shared]
        assert set(cls.__dict__.get("__annotations__", {})) == {"images"}
    with streaming(True):
        streamed = load_dataset(f"imagefolder:{folder}", split="all")
    mask = np.zeros(len(streamed), dtype=bool)
    mask[[3, 5, 38]] = True
    part = streamed.subset(torch.from_numpy(mask), split="val").subset([2, 0], split="val")
    assert part.images is part.files and len(part) == 2
    assert part.indices.tolist() == [38, 3]  # positions in the folder, through both subsets
    assert part.labels.tolist() == [int(streamed.labels[38]), int(streamed.labels[3])]
