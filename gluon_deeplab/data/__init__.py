"""Datasets (VOC 2012, SBD, SegmentationClassAug, own folders, synthetic), transforms, loaders."""

from __future__ import annotations

from .base import SegmentationDataset, read_list
from .folder import folder_dataset
from .hints import explain_data_error, layouts_in
from .io import DataError, read_image, read_label_any, read_label_mat, read_label_png
from .layouts import (
    LayoutSpec,
    canonical_dataset_name,
    get_layout,
    layout_choices,
    layout_metavar,
    layout_names,
    register_layout,
    registered_layouts,
)
from .loader import (
    SeededBatchSampler,
    SegmentationLoader,
    SharedMemoryError,
    benchmark_loader,
    check_shared_memory,
    default_num_workers,
    make_dataloader,
)
from .registry import (
    check_disjoint,
    default_data_dir,
    get_dataset,
    train_val_datasets,
)
from .synthetic import make_sample, make_synthetic_dataset, synthetic_classes
from .synthetic_reader import synthetic_dataset
from .transforms import (
    IGNORE_LABEL,
    MEAN,
    PAD_COLOUR,
    PAD_ERROR,
    STD,
    TrainTransform,
    ValTransform,
    normalize,
    normalize_batch,
    normalize_numpy,
    to_ndarray,
)
from .voc import (
    VOC_CLASSES,
    gluoncv_voc_root,
    sbd_dataset,
    voc2012_val_ids,
    voc_aug_dataset,
    voc_dataset,
)

__all__ = [
    "LayoutSpec", "get_layout", "layout_choices", "layout_metavar", "layout_names",
    "register_layout", "registered_layouts", "VOC_CLASSES", "canonical_dataset_name",
    "check_disjoint",
    "default_data_dir", "explain_data_error", "gluoncv_voc_root", "layouts_in",
    "read_label_any", "train_val_datasets", "IGNORE_LABEL", "MEAN", "PAD_COLOUR", "PAD_ERROR",
    "STD", "DataError", "SegmentationDataset", "SeededBatchSampler", "SegmentationLoader",
    "SharedMemoryError", "TrainTransform", "check_shared_memory", "default_num_workers",
    "normalize_batch",
    "ValTransform", "benchmark_loader", "folder_dataset", "get_dataset", "make_dataloader",
    "make_sample", "make_synthetic_dataset", "normalize", "normalize_numpy", "read_image",
    "read_label_mat", "read_label_png", "read_list", "sbd_dataset", "synthetic_classes",
    "synthetic_dataset", "to_ndarray", "voc2012_val_ids", "voc_aug_dataset", "voc_dataset",
]
