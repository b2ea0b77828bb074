"""The data layer: dataset registry, verified downloads, uint8 tensor caches, transforms, splits.

Images are held as one uint8 tensor ``(N, H, W, C)`` per split (:class:`ImageSet`); the
training and scoring loops index and transform whole batches, never single PIL images.
"""

from __future__ import annotations

from dismax_cli.data.files import RawArrays, read_image_folder, read_npz
from dismax_cli.data.imageset import (
    ImageSet,
    SplitRecord,
    check_disjoint,
    indices_sha256,
    stratified_holdout,
    train_val_split,
)
from dismax_cli.data.odin import ODIN_ARCHIVES, OdinArchive
from dismax_cli.data.registry import (
    ALIASES,
    CARVE_SEED,
    DATA_DIR_ENV,
    DEFAULT_DATASET,
    TEST_FRACTION,
    DatasetInfo,
    clear_cache,
    is_native_split,
    list_datasets,
    load_dataset,
    load_id_splits,
    load_ood,
    resolve_data_dir,
)
from dismax_cli.data.torchvision_sets import TORCHVISION_SOURCES, TorchvisionSource
from dismax_cli.data.transforms import (
    ImageTransform,
    augment_batch,
    compute_mean_std,
    make_transform,
)

__all__ = [
    "ALIASES",
    "CARVE_SEED",
    "DATA_DIR_ENV",
    "DEFAULT_DATASET",
    "ODIN_ARCHIVES",
    "TEST_FRACTION",
    "TORCHVISION_SOURCES",
    "DatasetInfo",
    "ImageSet",
    "ImageTransform",
    "OdinArchive",
    "RawArrays",
    "SplitRecord",
    "TorchvisionSource",
    "augment_batch",
    "check_disjoint",
    "clear_cache",
    "compute_mean_std",
    "indices_sha256",
    "is_native_split",
    "list_datasets",
    "load_dataset",
    "load_id_splits",
    "load_ood",
    "make_transform",
    "read_image_folder",
    "read_npz",
    "resolve_data_dir",
    "stratified_holdout",
    "train_val_split",
]
