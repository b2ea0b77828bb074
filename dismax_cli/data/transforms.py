"""Batch transforms on uint8 image tensors: the evaluation transform, augmentation, statistics.

One :class:`ImageTransform` serves the in-distribution test split and every OOD set, so all of
them reach the model through exactly the same pipeline (channels, resize and centre crop,
normalisation with the ID statistics). Training augmentation (:func:`augment_batch`) works on
whole uint8 batches on the device; its random numbers come from a CPU generator so that a seed
gives the same crops and flips on any device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from dismax_cli.data.imageset import ImageSet
from dismax_cli.errors import DismaxError, kind_of, quote_value

#: ITU-R 601-2 luma weights (the ones Pillow's ``convert("L")`` uses) for RGB -> grey.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
#: Smallest standard deviation :func:`compute_mean_std` returns (constant channels).
MIN_STD = 1e-3
#: The ImageNet per-channel mean and std on the 0..1 scale (torchvision's reference recipe).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Model input sides from which the 224-pixel (ImageNet) recipe applies (README "224-pixel
#: recipes"): RandomResizedCrop + flip to train, resize to 256/224 of the side + centre crop.
IMAGENET_RECIPE_SIZE = 224


def _check_images(images: torch.Tensor, what: str) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        raise DismaxError(
            f"{what} needs uint8 images (N, H, W, C); got "
            f"{getattr(images, 'dtype', type(images).__name__)} "
            f"{tuple(getattr(images, 'shape', ()))}; load them with dismax_cli.data.load_dataset"
        )
    if images.shape[-1] not in (1, 3):
        raise DismaxError(
            f"{what} needs 1 (grey) or 3 (RGB) channels in the last dimension; got shape "
            f"{tuple(images.shape)}; pass images as (N, H, W, C)"
        )


class ImageTransform:
    """The evaluation transform: channels, resize and centre crop, normalisation.

    Steps, on whole batches and on the batch's device:

    1. uint8 -> float32 on the 0..1 scale, ``(N, H, W, C)`` -> ``(N, C, H, W)``.
    2. RGB -> grey with the ITU-R 601-2 luma weights when the model takes 1 channel.
    3. Resize so that the shorter side equals ``resize`` (default ``image_size``; bilinear,
       antialiased when shrinking; the longer side as ``int(long * resize / short)``, like
       torchvision's ``Resize(int)``), then centre-crop to ``image_size`` x ``image_size``
       (offsets as torchvision's ``CenterCrop``). Skipped when the images already have that
       size and ``resize == image_size``. The 224-pixel recipe uses ``resize = 256`` for 224.
    4. Grey -> RGB by repeating the channel when the model takes 3 channels.
    5. ``(x - mean_c) / std_c``.

    Args:
        image_size: Side of the square model input.
        channels: Channels of the model input (1 or 3).
        mean: Per-channel mean on the 0..1 scale (one value is repeated for every channel).
        std: Per-channel standard deviation on the 0..1 scale, all > 0.
        resize: Shorter side before the centre crop (>= ``image_size``); default ``image_size``.

    Raises:
        DismaxError: If the size, channels, mean, std or resize are invalid.

    Shape:
        - Input: uint8 ``(N, H, W, C)``, any ``H``, ``W`` and ``C`` in {1, 3}.
        - Output: float32 ``(N, channels, image_size, image_size)``, on the input's device.
    """

    def __init__(
        self,
        *,
        image_size: int,
        channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        resize: int | None = None,
    ) -> None:
        if int(image_size) != image_size or image_size < 1:
            raise DismaxError(f"image_size '{image_size}' must be a positive integer, e.g. 32")
        if channels not in (1, 3):
            raise DismaxError(f"channels '{channels}' must be 1 (grey) or 3 (RGB)")
        mean_t = tuple(float(m) for m in mean)
        std_t = tuple(float(s) for s in std)
        if len(mean_t) == 1:
            mean_t = mean_t * channels
        if len(std_t) == 1:
            std_t = std_t * channels
        if len(mean_t) != channels or len(std_t) != channels:
            raise DismaxError(
                f"mean {tuple(mean)} and std {tuple(std)} need 1 or {channels} values for "
                f"{channels}-channel input; give one value per channel"
            )
        if not all(s > 0 for s in std_t):
            raise DismaxError(f"std {std_t} must be positive in every channel")
        resize = int(image_size) if resize is None else resize
        if isinstance(resize, bool) or int(resize) != resize or resize < image_size:
            raise DismaxError(
                f"resize '{resize}' must be an integer >= image_size {image_size}, e.g. 256 for "
                "a 224 crop"
            )
        self.image_size = int(image_size)
        self.channels = int(channels)
        self.mean = mean_t
        self.std = std_t
        self.resize = int(resize)

    def __repr__(self) -> str:
        extra = f", resize={self.resize}" if self.resize != self.image_size else ""
        return (
            f"ImageTransform(image_size={self.image_size}, channels={self.channels}, "
            f"mean={self.mean}, std={self.std}{extra})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageTransform) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.image_size, self.channels, self.mean, self.std, self.resize))

    def resized_shape(self, height: int, width: int) -> tuple[int, int]:
        """Return ``(H, W)`` after the shorter-side resize (before the centre crop)."""
        size = self.resize
        if height <= width:
            return size, max(size, int(width * size / height))
        return max(size, int(height * size / width)), size

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Transform a batch of uint8 images for the model.

        Args:
            images: uint8 ``(N, H, W, C)`` on any device.

        Returns:
            float32 ``(N, channels, image_size, image_size)`` on the same device.

        Raises:
            DismaxError: If ``images`` is not a uint8 ``(N, H, W, C)`` tensor with C in {1, 3}.
        """
        _check_images(images, "ImageTransform")
        return self.from_float(images.permute(0, 3, 1, 2).to(torch.float32).div_(255.0))

    def from_float(self, x: torch.Tensor, *, geometry: bool = True) -> torch.Tensor:
        """Steps 2–5 on float pixels: what :meth:`__call__` does after its uint8 conversion.

        Args:
            x: float32 ``(N, C, H, W)`` on the 0..1 scale, C in {1, 3}, any ``H`` and ``W``.
            geometry: False skips step 3 (for crops already ``image_size`` square, such as
                the 224-pixel recipe's RandomResizedCrop).

        Returns:
            float32 ``(N, channels, image_size, image_size)`` on the same device.
        """
        if x.shape[1] == 3 and self.channels == 1:
            w = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            x = (x * w).sum(dim=1, keepdim=True)
        height, width = int(x.shape[2]), int(x.shape[3])
        size = self.image_size
        if geometry and ((height, width) != (size, size) or self.resize != size):
            if min(height, width) != self.resize:
                new_h, new_w = self.resized_shape(height, width)
                x = F.interpolate(
                    x.contiguous(),
                    size=(new_h, new_w),
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )
                height, width = new_h, new_w
            top = int(round((height - size) / 2.0))
            left = int(round((width - size) / 2.0))
            x = x[:, :, top : top + size, left : left + size]
        if x.shape[1] == 1 and self.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return ((x - mean) / std).contiguous()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (stored with the model); ``resize`` only when it is not
        ``image_size``, so checkpoints of the 32-pixel recipe keep their format."""
        out: dict[str, Any] = {
            "image_size": self.image_size,
            "channels": self.channels,
            "mean": list(self.mean),
            "std": list(self.std),
        }
        if self.resize != self.image_size:
            out["resize"] = self.resize
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ImageTransform:
        """Rebuild a transform from :meth:`to_dict`'s output.

        Raises:
            DismaxError: If keys are missing or unknown.
        """
        keys = {"image_size", "channels", "mean", "std"}
        if not isinstance(d, Mapping) or not keys <= set(d) <= keys | {"resize"}:
            got = f"with keys {quote_value(list(d))}" if isinstance(d, Mapping) else kind_of(d)
            raise DismaxError(
                f"transform settings ({got}) must have exactly the keys "
                f"{quote_value(sorted(keys))}; "
                "the checkpoint may be from another tool version, retrain or re-export it"
            )
        return cls(
            image_size=int(d["image_size"]),
            channels=int(d["channels"]),
            mean=list(d["mean"]),
            std=list(d["std"]),
            resize=None if d.get("resize") is None else int(d["resize"]),
        )


def augment_batch(
    images: torch.Tensor, *, generator: torch.Generator, pad: int = 4, flip: bool = True
) -> torch.Tensor:
    """Randomly crop (with zero padding) and horizontally flip a batch of uint8 images.

    The standard CIFAR augmentation: pad every side with ``pad`` zero pixels, take a random
    ``H x W`` window, flip it left-right with probability 1/2. Vectorised over the batch (one
    gather, no Python loop per image). The random numbers are drawn on the CPU from
    ``generator`` in a fixed order (row offsets, column offsets, then flips), so a seed gives
    the same result on any device.

    Args:
        images: uint8 ``(B, H, W, C)`` on any device.
        generator: A CPU :class:`torch.Generator`.
        pad: Zero padding on each side; 0 disables the crop.
        flip: Whether to flip horizontally at random.

    Returns:
        uint8 ``(B, H, W, C)`` on the same device (a new tensor).

    Raises:
        DismaxError: If ``images`` is not uint8 ``(B, H, W, C)`` or ``pad`` is negative.

    Shape:
        - images: ``(B, H, W, C)``.
        - Output: ``(B, H, W, C)``.
    """
    _check_images(images, "augment_batch")
    if pad < 0:
        raise DismaxError(f"pad {pad} must be >= 0")
    b, h, w, _ = images.shape
    device = images.device
    if b == 0 or (pad == 0 and not flip):
        return images.clone()
    if pad > 0:
        off_y = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        off_x = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    else:
        off_y = torch.zeros(b, dtype=torch.int64)
        off_x = torch.zeros(b, dtype=torch.int64)
    rows = off_y[:, None] + torch.arange(h)[None, :]  # (B, H) in padded coordinates
    cols = off_x[:, None] + torch.arange(w)[None, :]  # (B, W)
    if flip:
        flips = torch.rand(b, generator=generator) < 0.5
        cols = torch.where(flips[:, None], cols.flip(1), cols)
    if pad > 0:
        padded = images.new_zeros((b, h + 2 * pad, w + 2 * pad, images.shape[3]))
        padded[:, pad : pad + h, pad : pad + w] = images
    else:
        padded = images
    batch = torch.arange(b, device=device)[:, None, None]
    rows = rows.to(device)[:, :, None]
    cols = cols.to(device)[:, None, :]
    return padded[batch, rows, cols].contiguous()


def compute_mean_std(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Compute per-channel mean and (population) standard deviation on the 0..1 scale.

    Exact: built from a 256-bin histogram per channel in float64, so it needs no float copy of
    the images. The standard deviation is floored at ``MIN_STD`` so that a constant channel
    cannot divide by zero.

    Args:
        images: uint8 ``(N, H, W, C)``, N > 0.

    Returns:
        ``(mean, std)``, each a tuple of C floats.

    Raises:
        DismaxError: If ``images`` is not uint8 ``(N, H, W, C)`` or is empty.

    Shape:
        - images: ``(N, H, W, C)``.
    """
    _check_images(images, "compute_mean_std")
    if images.shape[0] == 0:
        raise DismaxError("compute_mean_std needs at least one image; the training split is empty")
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[3]):
        counts = torch.bincount(images[..., c].reshape(-1).cpu(), minlength=256).to(torch.float64)
        n = counts.sum()
        mean = (counts * values).sum() / n
        var = (counts * (values - mean) ** 2).sum() / n
        means.append(float(mean))
        stds.append(max(float(var.sqrt()), MIN_STD))
    return tuple(means), tuple(stds)


def make_transform(
    train: ImageSet,
    *,
    image_size: int | None = None,
    channels: int = 3,
    recipe: str = "cifar",
) -> ImageTransform:
    """Build the evaluation transform for a model trained on ``train``.

    ``recipe="cifar"``: the set's known normalisation constants when it has them
    (``train.mean``/``std``), else statistics computed from the training images (pass the
    training split, never the test split; a streamed set computes them on a fixed sample, see
    :meth:`~dismax_cli.data.stream.StreamSet.sample_mean_std`). Grey statistics are repeated for
    a 3-channel model; for a 1-channel model fed RGB images they are computed on the
    luma-converted images. ``recipe="imagenet"`` (the 224-pixel recipe, README "224-pixel
    recipes"): the ImageNet mean/std and a resize of the shorter side to ``256/224`` of
    ``image_size`` before the centre crop (256 for 224).

    Args:
        train: The in-distribution training split (an ``ImageSet`` or a streamed set).
        image_size: Model input side; default the training images' shorter side.
        channels: Model input channels (1 or 3).
        recipe: ``"cifar"`` or ``"imagenet"``.

    Returns:
        The transform; store ``to_dict()`` with the model.

    Raises:
        DismaxError: If ``channels`` is not 1 or 3, the recipe is unknown or the training split
            is empty.
    """
    h, w, c = train.image_shape
    size = int(image_size) if image_size is not None else min(h, w)
    if channels not in (1, 3):
        raise DismaxError(f"channels '{channels}' must be 1 (grey) or 3 (RGB)")
    if recipe not in RECIPES:
        raise DismaxError(f"recipe '{recipe}' is not one of {', '.join(RECIPES)}")
    if recipe == "imagenet" and channels == 3:
        resize = round(size * 256 / 224)
        return ImageTransform(
            image_size=size, channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, resize=resize
        )
    resize = round(size * 256 / 224) if recipe == "imagenet" else None
    if (
        train.mean is not None
        and train.std is not None
        and (len(train.mean) == channels or len(train.mean) == 1)
    ):
        mean, std = train.mean, train.std
    elif not isinstance(train.images, torch.Tensor):
        mean, std = train.sample_mean_std(size=size, channels=channels)  # type: ignore[attr-defined]
    elif c == 3 and channels == 1:
        mean, std = _luma_mean_std(train.images)
    else:
        mean, std = compute_mean_std(train.images)
    return ImageTransform(image_size=size, channels=channels, mean=mean, std=std, resize=resize)


#: Transform recipes: ``cifar`` (pad-4 crop + flip, resize to the side) and ``imagenet``.
RECIPES = ("cifar", "imagenet")


def recipe_for(image_size: int | None) -> str:
    """The recipe of a model input side: ``imagenet`` from :data:`IMAGENET_RECIPE_SIZE` up."""
    if image_size is not None and image_size >= IMAGENET_RECIPE_SIZE:
        return "imagenet"
    return "cifar"


def random_resized_crop_box(
    height: int, width: int, *, generator: torch.Generator
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a RandomResizedCrop box: torchvision's rule, seeded.

    Scale (0.08, 1) of the area and aspect ratio (3/4, 4/3) drawn log-uniformly, up to 10
    tries; then a centre crop of the ratio clamped into that range (as
    ``torchvision.transforms.v2.RandomResizedCrop``), with every draw from ``generator`` (CPU).

    References:
        Szegedy et al., "Going Deeper with Convolutions", arXiv:1409.4842 (the crop); the
        torchvision reference recipe for ImageNet.
    """
    area = height * width
    log_lo, log_hi = math.log(3 / 4), math.log(4 / 3)
    for _ in range(10):
        u = torch.rand(3, generator=generator, dtype=torch.float64).tolist()
        target = area * (0.08 + (1.0 - 0.08) * u[0])
        ratio = math.exp(log_lo + (log_hi - log_lo) * u[1])
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < 3 / 4:
        w, h = width, int(round(width / (3 / 4)))
    elif in_ratio > 4 / 3:
        h, w = height, int(round(height * (4 / 3)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop_flip(
    image: torch.Tensor, *, size: int, generator: torch.Generator, flip: bool = True
) -> torch.Tensor:
    """The 224-pixel recipe's training augmentation of one image: RandomResizedCrop + flip.

    The box comes from :func:`random_resized_crop_box`; the crop is resized with
    ``torchvision.transforms.v2.functional.resized_crop`` (bilinear, antialiased), then flipped
    left-right with probability 1/2 (one more draw from ``generator``).

    Args:
        image: uint8 ``(C, H, W)`` on any device.
        size: Output side.
        generator: A CPU generator.
        flip: Whether to flip at random.

    Returns:
        uint8 ``(C, size, size)`` on ``image``'s device.
    """
    from torchvision.transforms.v2 import functional as TF

    top, left, h, w = random_resized_crop_box(
        int(image.shape[1]), int(image.shape[2]), generator=generator
    )
    out = TF.resized_crop(image, top, left, h, w, [size, size], antialias=True)
    if flip and bool(torch.rand(1, generator=generator) < 0.5):
        out = TF.horizontal_flip(out)
    return out


def random_resized_crop_batch(
    images: torch.Tensor, *, size: int, generator: torch.Generator, flip: bool = True
) -> torch.Tensor:
    """:func:`random_resized_crop_flip` of every image of a uint8 ``(B, H, W, C)`` batch.

    Returns:
        uint8 ``(B, size, size, C)`` on the batch's device (draws image by image, in order).

    Raises:
        DismaxError: If ``images`` is not uint8 ``(B, H, W, C)``.
    """
    _check_images(images, "random_resized_crop_batch")
    chw = images.permute(0, 3, 1, 2)
    crops = [random_resized_crop_flip(x, size=size, generator=generator, flip=flip) for x in chw]
    if not crops:
        return images.new_zeros((0, size, size, images.shape[3]))
    return torch.stack(crops).permute(0, 2, 3, 1).contiguous()


def _luma_mean_std(images: torch.Tensor) -> tuple[tuple[float], tuple[float]]:
    if images.shape[0] == 0:
        raise DismaxError("compute_mean_std needs at least one image; the training split is empty")
    w = torch.tensor(LUMA_WEIGHTS, dtype=torch.float64)
    total, total_sq, n = 0.0, 0.0, 0
    for start in range(0, images.shape[0], 4096):
        grey = (images[start : start + 4096].to(torch.float64) / 255.0) @ w
        total += float(grey.sum())
        total_sq += float((grey * grey).sum())
        n += grey.numel()
    mean = total / n
    std = max((max(total_sq / n - mean * mean, 0.0)) ** 0.5, MIN_STD)
    return (mean,), (std,)
