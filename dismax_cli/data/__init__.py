"""The data layer: dataset registry, verified downloads, uint8 tensor caches, transforms, splits.

Dataset families are sources (:mod:`dismax_cli.data.sources`), one module each, registered in
one table (:data:`SOURCES`); :func:`register_source` adds one.

Images are held as one uint8 tensor ``(N, H, W, C)`` per split (:class:`ImageSet`); the
training and scoring loops index and transform whole batches, never single PIL images.

Attributes load on first use (module ``__getattr__``), so that checking a spec
(:func:`dismax_cli.data.registry.check_spec`) or importing the package does not import torch:
a usage error answers before torch loads (issue 10 item 13, README "Design notes").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dismax_cli.lazy_exports import lazy_exports

#: Submodules, also reachable as attributes (``dismax_cli.data.registry``) without an import.
_SUBMODULES = frozenset(
    ["download", "files", "imageset", "odin", "registry", "sources", "subsets"]
    + ["torchvision_sets", "transforms"]
)
#: Public name -> the submodule that defines it (imported on first access).
_LAZY: dict[str, str] = {
    **dict.fromkeys(("RawArrays", "read_image_folder", "read_npz"), "files"),
    **dict.fromkeys(
        (
            "ImageSet",
            "SplitRecord",
            "check_disjoint",
            "indices_sha256",
            "stratified_holdout",
            "train_val_split",
        ),
        "imageset",
    ),
    **dict.fromkeys(("ODIN_ARCHIVES", "OdinArchive"), "odin"),
    **dict.fromkeys(
        (
            "ALIASES",
            "CARVE_SEED",
            "DATA_DIR_ENV",
            "DEFAULT_DATASET",
            "TEST_FRACTION",
            "DatasetInfo",
            "canonical_name",
            "canonical_requirement",
            "canonical_spec",
            "clear_cache",
            "is_native_split",
            "list_datasets",
            "load_dataset",
            "load_id_splits",
            "load_ood",
            "resolve_data_dir",
        ),
        "registry",
    ),
    **dict.fromkeys(
        (
            "SOURCES",
            "DatasetSpec",
            "Source",
            "SourceBase",
            "SpecText",
            "register_source",
            "registered_source",
            "unregister_source",
        ),
        "sources",
    ),
    **dict.fromkeys(("TORCHVISION_SOURCES", "TorchvisionSource"), "torchvision_sets"),
    **dict.fromkeys(
        ("ImageTransform", "augment_batch", "compute_mean_std", "make_transform"), "transforms"
    ),
}

if TYPE_CHECKING:
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
        canonical_name,
        canonical_requirement,
        canonical_spec,
        clear_cache,
        is_native_split,
        list_datasets,
        load_dataset,
        load_id_splits,
        load_ood,
        resolve_data_dir,
    )
    from dismax_cli.data.sources import (
        SOURCES,
        DatasetSpec,
        Source,
        SourceBase,
        SpecText,
        register_source,
        registered_source,
        unregister_source,
    )
    from dismax_cli.data.torchvision_sets import TORCHVISION_SOURCES, TorchvisionSource
    from dismax_cli.data.transforms import (
        ImageTransform,
        augment_batch,
        compute_mean_std,
        make_transform,
    )


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY, submodules=_SUBMODULES)


__all__ = [
    "ALIASES",
    "CARVE_SEED",
    "DATA_DIR_ENV",
    "DEFAULT_DATASET",
    "ODIN_ARCHIVES",
    "SOURCES",
    "TEST_FRACTION",
    "TORCHVISION_SOURCES",
    "DatasetInfo",
    "DatasetSpec",
    "ImageSet",
    "ImageTransform",
    "OdinArchive",
    "RawArrays",
    "Source",
    "SourceBase",
    "SpecText",
    "SplitRecord",
    "TorchvisionSource",
    "augment_batch",
    "canonical_name",
    "canonical_requirement",
    "canonical_spec",
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
    "register_source",
    "registered_source",
    "resolve_data_dir",
    "stratified_holdout",
    "train_val_split",
    "unregister_source",
]
