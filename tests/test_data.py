"""Data layer: registry, npz/imagefolder readers, splits, transforms, augmentation, errors."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import struct
import tarfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support import SHARED_DATA

from dismax_cli.data import (
    ImageSet,
    ImageTransform,
    augment_batch,
    check_disjoint,
    clear_cache,
    compute_mean_std,
    list_datasets,
    load_dataset,
    load_id_splits,
    load_ood,
    make_transform,
    resolve_data_dir,
    train_val_split,
)
from dismax_cli.data import torchvision_sets as tvs
from dismax_cli.errors import DismaxError

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
DIGITS = tuple(str(i) for i in range(10))

# file -> (N, (H, W, C), classes or None, per-class counts or None)
SHARED_EXPECTED: dict[str, tuple[int, tuple[int, int, int], tuple[str, ...] | None, list | None]]
SHARED_EXPECTED = {
    "cifar10_test.npz": (10_000, (32, 32, 3), CIFAR10_CLASSES, [1000] * 10),
    "cifar10_train_10k.npz": (10_000, (32, 32, 3), CIFAR10_CLASSES, [1000] * 10),
    "cifar10_train_jpeg.npz": (50_000, (32, 32, 3), CIFAR10_CLASSES, [5000] * 10),
    "cifar10_test_first20_png.npz": (20, (32, 32, 3), CIFAR10_CLASSES, None),
    "cifar100_test_first20.npz": (20, (32, 32, 3), None, None),
    "tin_resize.npz": (10_000, (32, 32, 3), (), None),
    "tin_test_64_jpeg.npz": (10_000, (64, 64, 3), (), None),
    "mnist_test.npz": (
        10_000,
        (28, 28, 1),
        DIGITS,
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
    ),  # fmt: skip
    "fashion_mnist_test.npz": (10_000, (28, 28, 1), None, [1000] * 10),
}


def _shared_files() -> list[str]:
    if not SHARED_DATA.is_dir():
        return ["<absent>"]
    return sorted(p.name for p in SHARED_DATA.glob("*.npz"))


def _need_shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"real data {path} is absent (../shared/data beside the repo root)")
    return path


@pytest.fixture(autouse=True, scope="module")
def data_free_memory() -> None:
    yield
    clear_cache()


# ----------------------------------------------------------------------------- real npz files


@pytest.mark.parametrize("name", _shared_files())
def test_every_shared_npz_loads_with_right_n_shape_and_classes(name: str) -> None:
    path = _need_shared(name)
    s = load_dataset(f"npz:{path}", split="all")
    assert s.images.dtype == torch.uint8 and s.images.is_contiguous()
    with np.load(path) as raw:
        files = set(raw.files)
        n_file = len(raw["x"]) if "x" in files else len(raw["offsets"]) - 1
        classes_file = tuple(str(c) for c in raw["classes"]) if "classes" in files else ()
        y_file = raw["y"] if "y" in files else None
        first = raw["x"][0] if "x" in files else None
        if first is None:
            data, off = raw["data"], raw["offsets"]
            first = np.asarray(Image.open(io.BytesIO(data[off[0] : off[1]])))
    assert len(s) == n_file
    assert s.classes == classes_file
    np.testing.assert_array_equal(s.images[0].numpy().reshape(first.shape), first)
    if y_file is None:
        assert s.labels is None
    else:
        np.testing.assert_array_equal(s.labels.numpy(), y_file)
    if name in SHARED_EXPECTED:
        n, shape, classes, counts = SHARED_EXPECTED[name]
        assert len(s) == n
        assert s.image_shape == shape
        if classes is not None:
            assert s.classes == classes
        if counts is not None:
            assert s.labels is not None and s.labels.bincount().tolist() == counts
    if name == "cifar100_test_first20.npz":
        assert s.num_classes == 100 and s.classes[:2] == ("apple", "aquarium_fish")


def test_shared_split_carve_and_id_pair_from_two_files() -> None:
    train_path = _need_shared("cifar10_train_10k.npz")
    test_path = _need_shared("cifar10_test.npz")
    train, test = load_id_splits(f"npz:{train_path}", test_spec=f"npz:{test_path}")
    assert (len(train), len(test)) == (10_000, 10_000)
    assert train.split == "all" and test.split == "all" and train.classes == CIFAR10_CLASSES
    tr, te = load_id_splits(f"npz:{test_path}")  # one file: stratified 80/20 carve
    assert (len(tr), len(te)) == (8_000, 2_000)
    assert te.labels.bincount().tolist() == [200] * 10
    check_disjoint(tr, te)
    with pytest.raises(DismaxError, match="share 10000"):
        load_id_splits(f"npz:{test_path}", test_spec=f"npz:{test_path}")


def test_mnist_through_cifar10_transform_becomes_3x32x32() -> None:
    path = _need_shared("mnist_test.npz")
    mnist = load_dataset(f"npz:{path}", split="all")
    assert mnist.image_shape == (28, 28, 1) and not mnist.augment
    tf = ImageTransform(image_size=32, channels=3, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    out = tf(mnist.images[:64])
    assert out.shape == (64, 3, 32, 32) and out.dtype == torch.float32
    # grey -> RGB: the three channels carry the same 0..1 values before normalisation
    unnorm = out * torch.tensor(CIFAR10_STD).view(1, 3, 1, 1) + torch.tensor(CIFAR10_MEAN).view(
        1, 3, 1, 1
    )
    torch.testing.assert_close(unnorm[:, 0], unnorm[:, 2], atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- transform


def test_mnist_shaped_images_through_cifar10_transform() -> None:
    images = torch.randint(0, 256, (5, 28, 28, 1), dtype=torch.uint8)
    tf = ImageTransform(image_size=32, channels=3, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    assert tf(images).shape == (5, 3, 32, 32)


def test_constant_grey_128_becomes_the_cifar10_constants() -> None:
    tf = ImageTransform(image_size=32, channels=3, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    out = tf(torch.full((2, 28, 28, 1), 128, dtype=torch.uint8))
    for c in range(3):
        expected = (128 / 255 - CIFAR10_MEAN[c]) / CIFAR10_STD[c]
        torch.testing.assert_close(out[:, c], torch.full((2, 32, 32), expected), atol=1e-5, rtol=0)


@pytest.mark.parametrize("side", [64, 36])
def test_larger_constant_image_comes_out_3x32x32_and_constant(side: int) -> None:
    tf = ImageTransform(image_size=32, channels=3, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    images = torch.empty((1, side, side, 3), dtype=torch.uint8)
    images[..., 0], images[..., 1], images[..., 2] = 200, 17, 90
    out = tf(images)
    assert out.shape == (1, 3, 32, 32)
    for c, v in enumerate((200, 17, 90)):
        expected = (v / 255 - CIFAR10_MEAN[c]) / CIFAR10_STD[c]
        assert float(out[0, c].max() - out[0, c].min()) < 1e-5
        assert float(out[0, c, 0, 0]) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("hw", [(64, 80), (28, 40), (36, 36), (32, 32), (50, 20)])
def test_transform_matches_torchvision_resize_and_center_crop(hw: tuple[int, int]) -> None:
    from torchvision.transforms import functional as tvf

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, *hw, 3), dtype=torch.uint8, generator=g)
    tf = ImageTransform(image_size=32, channels=3, mean=(0.5,), std=(0.25,))
    x = images.permute(0, 3, 1, 2).float() / 255
    ref = tvf.center_crop(tvf.resize(x, 32, antialias=True), [32, 32])
    torch.testing.assert_close(tf(images), (ref - 0.5) / 0.25, atol=1e-4, rtol=0)


def test_transform_rgb_to_grey_and_roundtrip() -> None:
    images = torch.zeros((1, 32, 32, 3), dtype=torch.uint8)
    images[..., 0] = 255
    tf = ImageTransform(image_size=32, channels=1, mean=(0.0,), std=(1.0,))
    out = tf(images)
    assert out.shape == (1, 1, 32, 32)
    torch.testing.assert_close(out, torch.full((1, 1, 32, 32), 0.299))
    assert ImageTransform.from_dict(json.loads(json.dumps(tf.to_dict()))) == tf
    with pytest.raises(DismaxError, match="keys"):
        ImageTransform.from_dict({"image_size": 32})
    with pytest.raises(DismaxError, match="1 or 3"):
        ImageTransform(image_size=32, channels=3, mean=(0.1, 0.2), std=(1.0,))
    with pytest.raises(DismaxError, match="uint8"):
        tf(torch.zeros((1, 32, 32, 3)))


def test_compute_mean_std_matches_numpy_and_floors_constant_channels() -> None:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (7, 5, 6, 3), dtype=torch.uint8, generator=g)
    mean, std = compute_mean_std(images)
    x = images.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 2)), atol=1e-12)
    np.testing.assert_allclose(std, x.std(axis=(0, 1, 2)), atol=1e-12)
    mean1, std1 = compute_mean_std(torch.full((2, 4, 4, 1), 51, dtype=torch.uint8))
    assert mean1 == pytest.approx((0.2,)) and std1 == (1e-3,)


def test_make_transform_uses_known_constants_else_training_statistics() -> None:
    digits = load_dataset("digits", split="train")
    tf = make_transform(digits)
    mean, std = compute_mean_std(digits.images)
    assert tf.image_size == 8 and tf.channels == 3
    assert tf.mean == mean * 3 and tf.std == std * 3
    mnist_like = ImageSet(
        images=torch.zeros((2, 28, 28, 1), dtype=torch.uint8), labels=None, classes=(),
        spec="mnist", split="train", source="t", mean=(0.1307,), std=(0.3081,),
    )  # fmt: skip
    tf2 = make_transform(mnist_like, image_size=32)
    assert tf2.mean == (0.1307,) * 3 and tf2.std == (0.3081,) * 3 and tf2.image_size == 32
    rgb = torch.zeros((3, 4, 4, 3), dtype=torch.uint8)
    rgb[..., 1] = 255
    grey = make_transform(ImageSet(rgb, None, (), "x", "train", "t"), channels=1)
    assert grey.mean == pytest.approx((0.587,)) and grey.std == (1e-3,)


# ----------------------------------------------------------------------------- augmentation


def _reference_augment(images: np.ndarray, oy: int, ox: int, flip: bool, pad: int) -> np.ndarray:
    h, w = images.shape[:2]
    padded = np.zeros((h + 2 * pad, w + 2 * pad, images.shape[2]), np.uint8)
    padded[pad : pad + h, pad : pad + w] = images
    crop = padded[oy : oy + h, ox : ox + w]
    return crop[:, ::-1] if flip else crop


def test_augment_batch_is_crop_plus_flip_and_deterministic() -> None:
    g = torch.Generator().manual_seed(3)
    images = torch.randint(1, 256, (16, 8, 9, 3), dtype=torch.uint8, generator=g)
    out = augment_batch(images, generator=torch.Generator().manual_seed(5))
    again = augment_batch(images, generator=torch.Generator().manual_seed(5))
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(out, again)
    # the draws, in the documented order: row offsets, column offsets, flips
    rg = torch.Generator().manual_seed(5)
    oy = torch.randint(0, 9, (16,), generator=rg)
    ox = torch.randint(0, 9, (16,), generator=rg)
    flips = torch.rand(16, generator=rg) < 0.5
    for i in range(16):
        ref = _reference_augment(images[i].numpy(), int(oy[i]), int(ox[i]), bool(flips[i]), 4)
        np.testing.assert_array_equal(out[i].numpy(), ref)
    assert 0 < int(flips.sum()) < 16
    flip_only = augment_batch(images, generator=torch.Generator().manual_seed(0), pad=0)
    for i in range(16):
        assert torch.equal(flip_only[i], images[i]) or torch.equal(flip_only[i], images[i].flip(1))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_augment_and_transform_give_the_same_result_on_cuda() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 28, 30, 1), dtype=torch.uint8, generator=g)
    cpu = augment_batch(images, generator=torch.Generator().manual_seed(9))
    gpu = augment_batch(images.cuda(), generator=torch.Generator().manual_seed(9))
    assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu)
    tf = ImageTransform(image_size=32, channels=3, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    out = tf(images.cuda())
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), tf(images), atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- digits & splits


def test_digits_open_set_subsets_are_disjoint_with_documented_sizes() -> None:
    id_train, id_test = load_id_splits("digits[0-5]")
    ood = load_ood("digits[6-9]", like=id_test)
    assert (len(id_train), len(id_test)) == (867, 216)
    assert len(ood) == 143 and len(load_dataset("digits[6-9]", split="train")) == 571
    assert id_train.classes == ("0", "1", "2", "3", "4", "5")
    assert ood.classes == ("6", "7", "8", "9")
    assert set(id_train.classes).isdisjoint(ood.classes)
    assert id_train.labels.unique().tolist() == [0, 1, 2, 3, 4, 5]
    assert ood.labels.unique().tolist() == [0, 1, 2, 3]  # re-indexed 0..k-1
    for s in (id_train, id_test, ood):
        assert s.image_shape == (8, 8, 1) and not s.augment and s.mean is None
    check_disjoint(id_train, id_test)
    check_disjoint(id_test, ood)
    whole = load_dataset("digits", split="all")
    assert len(whole) == 1797 and whole.source.startswith("scikit-learn")
    # pixels: sklearn's 0..16 values scaled by 255/16 and rounded; labels mapped back
    from sklearn.datasets import load_digits

    d = load_digits()
    pos = ood.indices
    expected = np.rint(d.images[pos] * 255 / 16).astype(np.uint8)[..., None]
    np.testing.assert_array_equal(ood.images.numpy(), expected)
    np.testing.assert_array_equal(ood.labels.numpy() + 6, d.target[pos])
    tr, te = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    assert (len(tr), len(te)) == (1438, 359)
    assert te.labels.bincount().tolist() == [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]


def test_class_selection_forms_and_errors() -> None:
    s = load_dataset("digits[0,2,7]", split="all")
    assert s.classes == ("0", "2", "7") and s.labels.bincount().tolist() == [178, 177, 179]
    with pytest.raises(DismaxError, match="outside 0-9"):
        load_dataset("digits[3-12]")
    with pytest.raises(DismaxError, match="unlabelled"):
        load_dataset("gaussian[0-3]")
    with pytest.raises(DismaxError, match="neither"):
        load_dataset("digits[a-b]")


def test_train_val_split_is_disjoint_stratified_and_stable() -> None:
    train = load_dataset("digits[0-5]", split="train")
    a_tr, a_val, rec = train_val_split(train, val_fraction=0.1, seed=0)
    b_tr, b_val, rec_b = train_val_split(train, val_fraction=0.1, seed=0)
    _, c_val, rec_c = train_val_split(train, val_fraction=0.1, seed=1)
    assert (len(a_tr), len(a_val)) == (780, 87) and a_val.split == "val"
    assert np.intersect1d(a_tr.indices, a_val.indices).size == 0
    assert sorted(np.concatenate([a_tr.indices, a_val.indices]).tolist()) == sorted(
        train.indices.tolist()
    )
    np.testing.assert_array_equal(a_val.indices, b_val.indices)
    assert rec == rec_b and rec != rec_c
    assert rec.to_dict() == {
        "seed": 0, "val_fraction": 0.1, "n_train": 780, "n_val": 87,
        "val_indices_sha256": rec.val_indices_sha256,
    }  # fmt: skip
    assert len(rec.val_indices_sha256) == 64
    assert not np.array_equal(a_val.indices, c_val.indices)
    counts = a_val.labels.bincount().tolist()
    assert max(counts) - min(counts) <= 1 and sum(counts) == 87
    check_disjoint(a_tr, a_val)
    with pytest.raises(DismaxError, match="share"):
        check_disjoint(train, a_val)
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(DismaxError, match="val_fraction"):
            train_val_split(train, val_fraction=bad)


def test_check_disjoint_catches_identical_pixels_from_different_origins() -> None:
    a = load_dataset("digits", split="test")
    b = ImageSet(
        images=a.images.clone(), labels=None, classes=(), spec="copy", split="test",
        source="test", origin="elsewhere",
    )  # fmt: skip
    with pytest.raises(DismaxError, match="identical"):
        check_disjoint(a, b)
    check_disjoint(a, load_dataset("digits", split="train"))


# ----------------------------------------------------------------------------- other sources


def test_synthetic_sets_follow_like_and_are_marked() -> None:
    like = load_dataset("digits", split="test")
    g = load_ood("gaussian", like=like)
    u = load_ood("uniform:50", like=like)
    assert g.synthetic and u.synthetic and "SYNTHETIC" in g.source
    assert len(g) == 359 and g.image_shape == (8, 8, 1) and g.labels is None
    assert len(u) == 50 and u.image_shape == (8, 8, 1)
    assert torch.equal(load_ood("gaussian", like=like).images, g.images)
    assert not torch.equal(g.images[:50], u.images)
    plain = load_dataset("uniform", split="all")
    assert len(plain) == 1000 and plain.image_shape == (32, 32, 3)
    with pytest.raises(DismaxError, match="positive integer"):
        load_dataset("uniform:zero")


def _save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(path)


def test_imagefolder_labelled_flat_and_mixed_sizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (6, 10, 12, 3), dtype=np.uint8)
    for i, cls in enumerate(["b_cls", "a_cls", "b_cls", "a_cls", "b_cls", "b_cls"]):
        _save_png(tmp_path / "lab" / cls / f"{i}.png", imgs[i])
    s = load_dataset(f"imagefolder:{tmp_path / 'lab'}", split="all")
    assert s.classes == ("a_cls", "b_cls") and s.labels.tolist() == [0, 0, 1, 1, 1, 1]
    np.testing.assert_array_equal(s.images[0].numpy(), imgs[1])
    assert s.augment  # RGB
    grey = rng.integers(0, 256, (3, 9, 9, 1), dtype=np.uint8)
    for i in range(3):
        _save_png(tmp_path / "flat" / f"{i}.png", grey[i])
    f = load_dataset(f"imagefolder:{tmp_path / 'flat'}", split="all")
    assert f.labels is None and f.classes == () and f.image_shape == (9, 9, 1)
    np.testing.assert_array_equal(f.images.numpy(), grey)
    _save_png(tmp_path / "mixed" / "a.png", np.full((40, 60, 3), 7, np.uint8))
    _save_png(tmp_path / "mixed" / "b.png", np.full((20, 20, 3), 9, np.uint8))
    m = load_dataset(f"imagefolder:{tmp_path / 'mixed'}", split="all")
    assert m.image_shape == (32, 32, 3)
    assert m.images[0].unique().tolist() == [7] and m.images[1].unique().tolist() == [9]
    with pytest.raises(DismaxError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")


def test_npz_user_errors_are_one_line(tmp_path: Path) -> None:
    np.savez(tmp_path / "float.npz", x=np.zeros((2, 4, 4, 3), np.float32))
    np.savez(tmp_path / "chw.npz", x=np.zeros((2, 3, 4, 4), np.uint8))
    np.savez(tmp_path / "ylen.npz", x=np.zeros((2, 4, 4, 3), np.uint8), y=np.zeros(3, np.int64))
    cases = {
        f"npz:{tmp_path / 'missing.npz'}": "does not exist",
        f"npz:{tmp_path / 'float.npz'}": "uint8",
        f"npz:{tmp_path / 'chw.npz'}": "transpose",
        f"npz:{tmp_path / 'ylen.npz'}": "one label per image",
        "cifar11": "unknown dataset 'cifar11'",
        "foo.npz": "npz:foo.npz",
        "digits[]": "empty",
    }
    for spec, fragment in cases.items():
        with pytest.raises(DismaxError) as info:
            load_dataset(spec, split="all")
        assert fragment in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(DismaxError, match="train_val_split"):
        load_dataset("digits", split="val")
    np.savez(tmp_path / "ok.npz", x=np.zeros((5, 4, 4), np.uint8), y=np.arange(5) % 2)
    ok = load_dataset(f"npz:{tmp_path / 'ok.npz'}", split="all")
    assert ok.image_shape == (4, 4, 1) and ok.classes == ("0", "1")


def test_resolve_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISMAX_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir() == tmp_path / "xdg" / "dismax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "dismax"
    monkeypatch.setenv("DISMAX_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    (tmp_path / "file").write_text("x")
    with pytest.raises(DismaxError, match="is a file"):
        resolve_data_dir(tmp_path / "file")


# ----------------------------------------------------------------------------- bad input files


def _err(spec: str, **kwargs: object) -> str:
    """Load ``spec`` (split all) expecting a one-line DismaxError; return its message."""
    kwargs.setdefault("split", "all")
    with pytest.raises(DismaxError) as info:
        load_dataset(spec, **kwargs)  # type: ignore[arg-type]
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _bytes_npz(path: Path, blobs: list[bytes] | bytes, offsets: list[int]) -> str:
    data = blobs if isinstance(blobs, bytes) else b"".join(blobs)
    np.savez(path, data=np.frombuffer(data, np.uint8), offsets=np.asarray(offsets, np.int64))
    return f"npz:{path}"


def test_encoded_npz_with_undecodable_image_or_bad_offsets_names_file_and_index(
    tmp_path: Path,
) -> None:
    garbage = _bytes_npz(tmp_path / "garbage.npz", b"notanimage" * 10, [0, 50, 100])
    msg = _err(garbage)
    assert (
        str(tmp_path / "garbage.npz") in msg and "image 0 " in msg and "not in a recognised" in msg
    )
    png = _png_bytes(np.full((4, 4, 3), 9, np.uint8))
    second = _bytes_npz(tmp_path / "second.npz", [png, b"x" * 30], [0, len(png), len(png) + 30])
    assert "image 1 " in _err(second)
    back = _bytes_npz(tmp_path / "back.npz", [png, png], [0, len(png) * 2, len(png)])
    msg = _err(back)
    assert "go backwards at image 1" in msg and str(tmp_path / "back.npz") in msg
    assert "image 0 is empty" in _err(_bytes_npz(tmp_path / "zero.npz", png, [0, 0, len(png)]))
    beyond = _bytes_npz(tmp_path / "beyond.npz", png, [0, len(png) + 10])
    assert f"holds {len(png)} bytes" in _err(beyond)
    names = tmp_path / "names.npz"
    np.savez(
        names, data=np.frombuffer(b"junk" * 8, np.uint8), offsets=np.array([0, 32]),
        filenames=np.array(["cat_001.jpg"]),
    )  # fmt: skip
    assert "image 0 (cat_001.jpg)" in _err(f"npz:{names}")
    text_offsets = tmp_path / "text_offsets.npz"
    np.savez(text_offsets, data=np.frombuffer(png, np.uint8), offsets=np.array(["0", "9"]))
    assert "'offsets' <U1" in _err(f"npz:{text_offsets}")


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def test_imagefolder_truncated_and_oversized_png_name_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    good = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    _save_png(tmp_path / "cut" / "a.png", good)
    full = _png_bytes(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    (tmp_path / "cut" / "b.png").write_bytes(full[: len(full) // 2])
    msg = _err(f"imagefolder:{tmp_path / 'cut'}")
    assert str(tmp_path / "cut" / "b.png") in msg and "truncated" in msg
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )
    _save_png(tmp_path / "big" / "cls" / "a.png", good)
    (tmp_path / "big" / "cls" / "bomb.png").write_bytes(bomb)
    msg = _err(f"imagefolder:{tmp_path / 'big'}")
    assert str(tmp_path / "big" / "cls" / "bomb.png") in msg and "too large" in msg
    bomb_npz = _bytes_npz(tmp_path / "bomb.npz", bomb, [0, len(bomb)])
    assert "image 0 is too large" in _err(bomb_npz)


def test_empty_text_npy_and_pickle_npz_files_are_refused_plainly(tmp_path: Path) -> None:
    (tmp_path / "empty.npz").write_bytes(b"")
    msg = _err(f"npz:{tmp_path / 'empty.npz'}")
    assert "is empty or not an npz file" in msg and str(tmp_path / "empty.npz") in msg
    (tmp_path / "text.npz").write_text("hello, this is text\n")
    np.save(tmp_path / "array.npy", np.zeros((2, 4, 4, 3), np.uint8))
    (tmp_path / "array.npy").rename(tmp_path / "array.npz")
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object))
    with zipfile.ZipFile(tmp_path / "zip.npz", "w") as z:
        z.writestr("readme.txt", "not an array")
    (tmp_path / "badzip.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    expected = {
        "text.npz": "is not an npz archive of arrays",
        "array.npz": "single .npy array",
        "objects.npz": "holds Python objects",
        "zip.npz": "not an npz archive of arrays",
        "badzip.npz": "not a readable npz archive of arrays",
    }
    for name, fragment in expected.items():
        msg = _err(f"npz:{tmp_path / name}")
        assert fragment in msg and str(tmp_path / name) in msg, msg
        assert "allow_pickle" not in msg and "trust" not in msg, msg


def test_npz_labels_with_gaps_need_a_classes_array(tmp_path: Path) -> None:
    x = np.zeros((60, 4, 4, 1), np.uint8)
    y = np.repeat(np.array([0, 1, 2, 1_000_000]), 15)
    np.savez(tmp_path / "gaps.npz", x=x, y=y)
    msg = _err(f"npz:{tmp_path / 'gaps.npz'}")
    for fragment in (str(tmp_path / "gaps.npz"), "4 distinct labels", "1000000", "relabel"):
        assert fragment in msg, msg
    assert "'classes'" in msg
    np.savez(tmp_path / "no_zero.npz", x=x, y=np.arange(60) % 3 + 1)
    assert "label 0 is unused" in _err(f"npz:{tmp_path / 'no_zero.npz'}")
    np.savez(tmp_path / "named.npz", x=x, y=np.arange(60) % 3 + 1, classes=np.array(list("abcd")))
    named = load_dataset(f"npz:{tmp_path / 'named.npz'}", split="all")
    assert named.classes == ("a", "b", "c", "d")  # explicit names may leave a class empty
    np.savez(tmp_path / "dense.npz", x=x, y=np.arange(60) % 4)
    assert load_dataset(f"npz:{tmp_path / 'dense.npz'}", split="all").num_classes == 4


def test_reversed_class_range_says_so() -> None:
    msg = _err("digits[9-3]")
    assert "reversed" in msg and "[3-9]" in msg and "outside" not in msg
    assert "outside 0-9" in _err("digits[3-12]")


def test_empty_selection_file_and_carve_say_what_is_empty(tmp_path: Path) -> None:
    x = np.zeros((10, 4, 4, 3), np.uint8)
    np.savez(tmp_path / "abc.npz", x=x, y=np.arange(10) % 2, classes=np.array(["a", "b", "c"]))
    msg = _err(f"npz:{tmp_path / 'abc.npz'}[2]")
    assert "keeps no images" in msg and "pick classes that have images: a, b" in msg, msg
    assert "split 'all'" not in msg
    assert "its test part has" in _err(f"npz:{tmp_path / 'abc.npz'}[c]", split="test")
    np.savez(tmp_path / "none.npz", x=np.zeros((0, 4, 4, 3), np.uint8))
    like = load_dataset("digits", split="test")
    with pytest.raises(DismaxError) as info:
        load_ood(f"npz:{tmp_path / 'none.npz'}", like=like)
    msg = str(info.value)
    assert "holds no images" in msg and "none.npz" in msg and "split 'all'" not in msg
    np.savez(tmp_path / "one.npz", x=x[:1])
    assert "too few to carve a test part" in _err(f"npz:{tmp_path / 'one.npz'}", split="test")
    shared = SHARED_DATA / "cifar100_test_first20.npz"
    if shared.is_file():
        msg = _err(f"npz:{shared}[99]", split="test")
        assert "keeps no images" in msg and "pick classes that have images" in msg


def test_overlap_errors_are_user_facing() -> None:
    _, id_test = load_id_splits("digits[0-5]")
    with pytest.raises(DismaxError) as info:
        load_ood("digits", like=id_test)
    msg = str(info.value)
    assert "the in-distribution test set 'digits[0-5]' and the OOD set 'digits' share" in msg
    assert "choose an OOD set disjoint" in msg and "train_val_split" not in msg
    train = load_dataset("digits", split="train")
    _, val, _ = train_val_split(train, val_fraction=0.1)
    with pytest.raises(DismaxError) as info:
        check_disjoint(train, val)
    msg = str(info.value)
    assert "the training set 'digits' and the validation set 'digits' share" in msg
    assert "train_val_split" not in msg and "load_dataset" not in msg


def test_overlapping_test_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=np.zeros((10, 4, 4, 1), np.uint8), y=np.arange(10) % 2)
    spec = f"npz:{tmp_path / 'a.npz'}"
    with pytest.raises(DismaxError) as info:
        load_id_splits(spec, test_spec=spec)
    msg = str(info.value)
    assert "the training set" in msg and "the test set" in msg and "share 10 images" in msg
    assert "separate test set" in msg and "train_val_split" not in msg


def test_16_bit_grey_png_is_scaled_not_saturated(tmp_path: Path) -> None:
    grad = np.tile(np.arange(256, dtype=np.uint16) * 257, (4, 1))  # 0..65535 in 257 steps
    grad[0, :4] = [65535, 32768, 128, 0]  # 255, 128 (127.50 rounds up), 0 (0.50 rounds down), 0
    expected = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    expected[0, :4] = [255, 128, 0, 0]
    png = _png_bytes(grad)
    assert Image.open(io.BytesIO(png)).mode.startswith("I")  # really a 16-bit file
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "g.png").write_bytes(png)
    flat = load_dataset(f"imagefolder:{tmp_path / 'flat'}", split="all")
    assert flat.image_shape == (4, 256, 1)
    np.testing.assert_array_equal(flat.images[0, ..., 0].numpy(), expected)
    (tmp_path / "mixed" / "grey").mkdir(parents=True)
    (tmp_path / "mixed" / "grey" / "g.png").write_bytes(png)
    _save_png(tmp_path / "mixed" / "rgb" / "c.png", np.zeros((4, 256, 3), np.uint8))
    mixed = load_dataset(f"imagefolder:{tmp_path / 'mixed'}", split="all")
    assert mixed.image_shape == (4, 256, 3)  # one colour file makes the set RGB
    for c in range(3):
        np.testing.assert_array_equal(mixed.images[0, ..., c].numpy(), expected)
    packed = _bytes_npz(tmp_path / "g16.npz", [png, png], [0, len(png), 2 * len(png)])
    s = load_dataset(packed, split="all")
    np.testing.assert_array_equal(s.images[1, ..., 0].numpy(), expected)


# ----------------------------------------------------------------------------- torchvision sets


def _write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 2051, n, h, w) + images.tobytes()
    )
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 2049, n) + labels.astype(np.uint8).tobytes()
    )


def test_mnist_via_torchvision_from_local_files_is_cached(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    tr_x, te_x = (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for n in (30, 20))
    tr_y, te_y = np.arange(30) % 10, np.arange(20) % 10
    _write_idx(raw, "train", tr_x, tr_y)
    _write_idx(raw, "t10k", te_x, te_y)
    test = load_dataset("mnist", split="test", data_dir=tmp_path, download=False)
    assert test.image_shape == (28, 28, 1) and test.classes == DIGITS
    np.testing.assert_array_equal(test.images.numpy()[..., 0], te_x)
    assert test.mean == (0.1307,) and test.std == (0.3081,) and not test.augment
    assert tvs.cache_path("mnist", "test", tmp_path).is_file()
    whole = load_dataset("mnist", split="all", data_dir=tmp_path, download=False)
    assert len(whole) == 50 and whole.split == "all"
    train = load_dataset("mnist", split="train", data_dir=tmp_path, download=False)
    check_disjoint(train, test)
    with pytest.raises(DismaxError, match="share"):
        check_disjoint(whole, test)
    assert len(load_ood("mnist", like=train, data_dir=tmp_path, download=False)) == 20
    clear_cache()
    for p in raw.iterdir():  # the uint8 cache alone is enough now
        p.unlink()
    again = load_dataset("mnist", split="test", data_dir=tmp_path, download=False)
    assert torch.equal(again.images, test.images)
    info = {d.name: d for d in list_datasets(tmp_path)}
    assert info["mnist"].present and not info["cifar10"].present and info["digits"].present


def test_hand_fetched_mnist_gz_files_are_verified_and_gunzipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(1)
    staging = tmp_path / "staging"
    _write_idx(staging, "t10k", rng.integers(0, 256, (4, 28, 28), np.uint8), np.arange(4))
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    md5s = {}
    for f in staging.iterdir():
        blob = gzip.compress(f.read_bytes())
        (raw / f"{f.name}.gz").write_bytes(blob)
        md5s[f"MNIST/raw/{f.name}.gz"] = hashlib.md5(blob).hexdigest()
    src = tvs.TORCHVISION_SOURCES["mnist"]
    hand = tuple((rel, md5s.get(rel, md5)) for rel, md5 in src.hand_files)
    patched = tvs.TorchvisionSource(**{**src.__dict__, "hand_files": hand})
    monkeypatch.setitem(tvs.TORCHVISION_SOURCES, "mnist", patched)
    monkeypatch.setenv("DISMAX_OFFLINE", "1")
    info = {d.name: d for d in list_datasets(tmp_path / "data")}
    assert not info["mnist"].present  # the train files are missing
    assert tvs.part_present("mnist", "test", tmp_path / "data")
    test = load_dataset("mnist", split="test", data_dir=tmp_path / "data")
    assert len(test) == 4 and (raw / "t10k-images-idx3-ubyte").is_file()
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"not the file")
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(b"not the file")
    with pytest.raises(DismaxError, match="f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        load_dataset("mnist", split="train", data_dir=tmp_path / "data")


def test_hand_fetched_dtd_archive_is_unpacked_and_resized(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members: dict[str, bytes] = {}
    lines: dict[str, list[str]] = {"train1": [], "val1": [], "test1": []}
    for k, (cls, split) in enumerate(
        [("banded", "train1"), ("dotted", "val1"), ("banded", "test1"), ("dotted", "test1")]
    ):
        buf = io.BytesIO()
        Image.fromarray(np.full((40, 64, 3), 10 * k + 5, np.uint8)).save(buf, format="PNG")
        members[f"dtd/images/{cls}/{cls}_{k}.jpg"] = buf.getvalue()  # PNG bytes, any name
        lines[split].append(f"{cls}/{cls}_{k}.jpg")
    for split, entries in lines.items():
        members[f"dtd/labels/{split}.txt"] = ("\n".join(entries) + "\n").encode()
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    archive = tmp_path / "dtd" / "dtd-r1.0.1.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(tar_buf.getvalue())
    src = tvs.TORCHVISION_SOURCES["textures"]
    hand = (("dtd/dtd-r1.0.1.tar.gz", hashlib.md5(tar_buf.getvalue()).hexdigest()),)
    monkeypatch.setitem(
        tvs.TORCHVISION_SOURCES, "textures",
        tvs.TorchvisionSource(**{**src.__dict__, "hand_files": hand}),
    )  # fmt: skip
    monkeypatch.setenv("DISMAX_OFFLINE", "1")
    assert tvs.part_present("textures", "test", tmp_path)
    test = load_dataset("textures", split="test", data_dir=tmp_path)
    assert (tmp_path / "dtd" / "dtd" / "images" / "banded").is_dir()
    assert test.image_shape == (32, 32, 3) and test.classes == ("banded", "dotted")
    assert test.images[0].unique().tolist() == [25] and test.labels.tolist() == [0, 1]
    train = load_dataset("dtd", split="train", data_dir=tmp_path)
    assert len(train) == 2 and test.augment and test.mean is None
    like = load_dataset("digits", split="test")  # an ID test set: OOD must not overlap it
    assert len(load_ood("textures", like=like, data_dir=tmp_path)) == 4  # all DTD images
    with pytest.raises(DismaxError, match="the OOD set 'textures' share 2 images"):
        load_ood("textures", like=test, data_dir=tmp_path)


def test_missing_cifar10_offline_error_is_one_line_and_names_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISMAX_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(DismaxError) as info:
        load_dataset("cifar10", split="test", data_dir=tmp_path / "data")
    msg = str(info.value)
    assert time.monotonic() - start < 5
    assert "\n" not in msg
    for fragment in (
        "'cifar10'",
        str(tmp_path / "data"),
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "npz:PATH",
        "imagefolder:PATH",
        "DISMAX_OFFLINE=1",
    ):
        assert fragment in msg
    assert not (tmp_path / "data").exists()


def test_missing_cifar10_with_unreachable_network_fails_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_closed_port_url: str
) -> None:
    monkeypatch.delenv("DISMAX_OFFLINE", raising=False)
    monkeypatch.setenv("DISMAX_NET_TIMEOUT", "2")
    src = tvs.TORCHVISION_SOURCES["cifar10"]
    monkeypatch.setitem(
        tvs.TORCHVISION_SOURCES, "cifar10", tvs.TorchvisionSource(
            **{**src.__dict__, "url": data_closed_port_url + "/cifar-10-python.tar.gz"}
        )
    )  # fmt: skip
    start = time.monotonic()
    with pytest.raises(DismaxError) as info:
        load_dataset("cifar10", split="train", data_dir=tmp_path, download=True)
    assert time.monotonic() - start < 5
    msg = str(info.value)
    assert "\n" not in msg and "unreachable" in msg and "by hand" in msg and "cifar10" in msg


@pytest.fixture
def data_closed_port_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ----------------------------------------------------------------------------- pinned counts


def _save_jpegs(folder: Path, n: int, seed: int = 0) -> np.ndarray:
    images = np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"{i:05d}.jpg", format="JPEG")
    return images


@pytest.mark.parametrize(("name", "pinned"), [("lsun_resize", "10,000"), ("isun", "8,925")])
def test_odin_folder_with_another_image_count_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, pinned: str
) -> None:
    monkeypatch.setenv("DISMAX_OFFLINE", "1")
    clear_cache()
    _save_jpegs(tmp_path / "odin" / name / "test", 3)
    with pytest.raises(DismaxError) as info:
        load_dataset(name, split="all", data_dir=tmp_path)
    message = str(info.value)
    assert "holds 3 images" in message and pinned in message and "\n" not in message
    assert not (tmp_path / "odin" / f"{name}.npz").exists()  # no 3-image cache was written


def test_odin_cache_with_another_image_count_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISMAX_OFFLINE", "1")
    clear_cache()
    (tmp_path / "odin").mkdir()
    cache = tmp_path / "odin" / "tin_crop.npz"
    np.savez(cache, x=np.zeros((7, 32, 32, 3), np.uint8), source=np.array(["x"]))
    with pytest.raises(DismaxError) as info:
        load_dataset("tin_crop", split="all", data_dir=tmp_path)
    message = str(info.value)
    assert "holds 7 images" in message and "10,000" in message and str(cache) in message


def test_odin_folder_with_the_pinned_count_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dismax_cli.data.odin import ODIN_ARCHIVES

    monkeypatch.setenv("DISMAX_OFFLINE", "1")
    clear_cache()
    entry = ODIN_ARCHIVES["lsun_crop"]
    monkeypatch.setitem(
        ODIN_ARCHIVES, "lsun_crop", type(entry)(**{**entry.__dict__, "n_images": 4})
    )
    _save_jpegs(tmp_path / "odin" / "lsun_crop", 4)
    (tmp_path / "odin" / "lsun_crop" / "README.txt").write_text("not an image")
    assert len(load_dataset("lsun_crop", split="all", data_dir=tmp_path)) == 4


@pytest.mark.parametrize(
    ("name", "part", "pinned"), [("svhn", "test", "26,032"), ("cifar10", "train", "50,000")]
)
def test_torchvision_cache_with_another_count_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, part: str, pinned: str
) -> None:
    monkeypatch.setenv("DISMAX_OFFLINE", "1")
    clear_cache()
    cache = tvs.cache_path(name, part, tmp_path)
    cache.parent.mkdir(parents=True)
    np.savez(
        cache, x=np.zeros((3, 32, 32, 3), np.uint8), y=np.arange(3), classes=np.array(DIGITS),
        source=np.array(["x"]),
    )  # fmt: skip
    with pytest.raises(DismaxError) as info:
        load_dataset(name, split=part, data_dir=tmp_path)
    message = str(info.value)
    assert "holds 3 images" in message and pinned in message and str(cache) in message


def test_image_folder_says_how_many_entries_it_skipped(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    _save_jpegs(flat, 2)
    (flat / ".DS_Store").write_bytes(b"\0")
    (flat / "notes.txt").write_text("x")
    (flat / "labels.csv").write_text("x")
    s = load_dataset(f"imagefolder:{flat}", split="all")
    assert len(s) == 2
    assert "skipped 3 entries: 1 hidden, 2 not image files" in s.source
    labelled = tmp_path / "labelled"
    _save_jpegs(labelled / "a", 2)
    _save_jpegs(labelled / "b", 1)
    (labelled / "a" / ".hidden.jpg").write_bytes(b"")
    (labelled / ".git").mkdir()
    (labelled / "top.jpg").write_bytes(b"")
    s = load_dataset(f"imagefolder:{labelled}", split="all")
    assert len(s) == 3 and s.classes == ("a", "b")
    assert "skipped 3 entries: 2 hidden, 1 outside the class folders" in s.source
    clean = tmp_path / "clean"
    _save_jpegs(clean, 2)
    assert load_dataset(f"imagefolder:{clean}", split="all").source == str(clean)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("x")
    with pytest.raises(DismaxError, match="skipped 1 entry: 1 not an image file"):
        load_dataset(f"imagefolder:{empty}", split="all")
