"""The dataset registry: layout name -> builder, the old names, ``get_dataset``, the default
data folders and the train/val pairing (``train_val_datasets``)."""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from .base import SegmentationDataset, numbered_classes
from .folder import folder_dataset
from .io import DataError
from .synthetic import synthetic_classes
from .synthetic_reader import synthetic_dataset
from .transforms import IGNORE_LABEL
from .voc import (
    GLUONCV_LAYOUTS,
    VOC_CLASSES,
    VOC_FAMILY,
    gluoncv_voc_root,
    sbd_dataset,
    voc_aug_dataset,
    voc_dataset,
)

LEGACY_DATA_DIR = "./VOCdevkit_aug"
# name -> builder(root, split, **options) of a SegmentationDataset
_FACTORIES: Dict[str, Callable[..., SegmentationDataset]] = {
    "voc": voc_dataset, "voc_sbd": sbd_dataset, "voc_aug": voc_aug_dataset,
    "folder": folder_dataset, "synthetic": synthetic_dataset}
DATASET_ALIASES = {"vocaug": "voc_sbd"}  # the SBD layout's first name
DATASET_NAMES = tuple(_FACTORIES)
DATASET_CHOICES = DATASET_NAMES + tuple(DATASET_ALIASES)  # what --dataset accepts


def canonical_dataset_name(name: str) -> str:
    """The name of a layout, ``vocaug`` being the old name of ``voc_sbd``."""
    return DATASET_ALIASES.get(name, name)


def default_classes(num_classes: int, dataset: Optional[str] = None) -> List[str]:
    """The class names a dataset layout gives ``num_classes`` classes (what a model trained on
    it predicts, for files that do not record them): a synthetic set's, VOC's 21 (also when
    the layout is unknown), else ``class0``, ``class1``, ..."""
    name = canonical_dataset_name(dataset) if dataset else None
    if name == "synthetic":
        return synthetic_classes(num_classes)
    if name in (None,) + tuple(VOC_FAMILY) and num_classes == len(VOC_CLASSES):
        return list(VOC_CLASSES)
    return numbered_classes(num_classes)


def default_data_dir(dataset: str) -> str:
    """``--data_dir`` when not given: gluoncv's root for voc and voc_sbd, else ./VOCdevkit_aug."""
    return gluoncv_voc_root() if canonical_dataset_name(dataset) in GLUONCV_LAYOUTS \
        else LEGACY_DATA_DIR


def check_disjoint(train: SegmentationDataset, val: SegmentationDataset, limit: int = 5) -> None:
    """Refuse a validation set sharing images with the training set (DataError naming ids).

    VOC-family datasets (voc, voc_sbd, voc_aug) compare image ids, which name the same image
    across layouts; other datasets compare the image files themselves.
    """
    family = {ds.name.split(":")[0] for ds in (train, val)}
    if family <= set(VOC_FAMILY):
        val_keys = set(val.ids)
        shared = [i for i in train.ids if i in val_keys]
    else:
        val_files = {os.path.realpath(val.image_path(i)) for i in range(len(val))}
        shared = [train.ids[i] for i in range(len(train))
                  if os.path.realpath(train.image_path(i)) in val_files]
    if shared:
        shared = sorted(set(shared))
        more = f", ... ({len(shared)} in all)" if len(shared) > limit else ""
        raise DataError(
            f"training split {train.name} and validation split {val.name} share "
            f"{len(shared)} image(s) ({', '.join(shared[:limit])}{more}): the validation "
            "score would be inflated; choose disjoint splits (--train_split, --val_split, "
            "--val_dataset)")


def train_val_datasets(dataset: str, data_dir: Optional[str], train_split: str,
                       val_split: Optional[str], val_dataset: Optional[str] = None,
                       val_data_dir: Optional[str] = None, crop_size=513,
                       num_classes: Optional[int] = None, ignore_label: int = IGNORE_LABEL,
                       folder_options: Optional[Dict[str, str]] = None,
                       ) -> Tuple[SegmentationDataset, Optional[SegmentationDataset]]:
    """The training set and the validation set (None when ``val_split`` is None).

    The validation set defaults to the training dataset and folder; it may be another one
    (e.g. SBD train_aug validated on VOC 2012 val). Both must share no image and agree on the
    classes. ``folder_options`` (image_dir, label_dir, list_file) go to the 'folder' sets.
    """
    def options(name: str) -> Dict[str, str]:
        return dict(folder_options or {}) if name == "folder" else {}

    data_dir = data_dir or default_data_dir(dataset)
    train = get_dataset(dataset, data_dir, train_split, mode="train", crop_size=crop_size,
                        num_classes=num_classes, ignore_label=ignore_label, **options(dataset))
    if val_split is None:
        return train, None
    val_dataset = val_dataset or dataset
    val = get_dataset(val_dataset, val_data_dir or data_dir, val_split, mode="val",
                      num_classes=num_classes or train.num_classes, ignore_label=ignore_label,
                      **options(val_dataset))
    if val.num_classes != train.num_classes:
        raise DataError(f"validation set {val.name} has {val.num_classes} classes, the "
                        f"training set {train.name} {train.num_classes}")
    check_disjoint(train, val)
    return train, val


def get_dataset(name: str, root: str, split: str = "train", mode: str = "train",
                crop_size: Union[int, Sequence[int]] = 513, num_classes: Optional[int] = None,
                ignore_label: int = IGNORE_LABEL, **options) -> SegmentationDataset:
    """A ``SegmentationDataset`` of layout ``name`` ('voc', 'voc_sbd' (alias 'vocaug'),
    'voc_aug', 'folder', 'synthetic') under ``root``. ``options``: skip_bad, scale_range, flip,
    blur_prob, classes, and per layout: voc_root (voc_sbd); image_dir, label_dir, list_file,
    label_ext (folder); num_train, num_val, size, seed (synthetic generation)."""
    name = canonical_dataset_name(name)
    if name not in _FACTORIES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)}")
    if not os.path.isdir(root) and name != "synthetic":  # synthetic: its own message
        raise DataError(f"{root}: dataset root folder not found")
    if num_classes is not None:
        options["num_classes"] = num_classes
    return _FACTORIES[name](root, split, mode=mode, crop_size=crop_size,
                            ignore_label=ignore_label, **options)
