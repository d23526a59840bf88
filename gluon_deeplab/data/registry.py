"""Reading datasets by layout name: ``get_dataset``, the default data folders and class names,
and the train/val pairing (``train_val_datasets``), all from the specs in ``layouts``."""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

from .base import SegmentationDataset, numbered_classes
from .folder import FOLDER_SPEC
from .io import DataError
from .layouts import get_layout, register_layout
from .synthetic_reader import SYNTHETIC_SPEC
from .transforms import IGNORE_LABEL
from .voc import VOC_LAYOUTS

# The built-in layouts, in the order --help lists them; a new one adds its spec here.
for _spec in VOC_LAYOUTS + (FOLDER_SPEC, SYNTHETIC_SPEC):
    register_layout(_spec)


def default_classes(num_classes: int, dataset: Optional[str] = None) -> List[str]:
    """The class names a dataset layout gives ``num_classes`` classes (what a model trained on
    it predicts, for files that do not record them): the layout's own (VOC's 21 also when the
    layout is not known), else ``class0``, ``class1``, ..."""
    try:
        spec = get_layout(dataset or "voc")
    except ValueError:  # a layout this process has not registered
        return numbered_classes(num_classes)
    names = spec.classes(num_classes) if spec.classes else None
    return list(names) if names else numbered_classes(num_classes)


def default_data_dir(dataset: str) -> str:
    """``--data_dir`` when not given: the layout's default folder (gluoncv's root for voc and
    voc_sbd, else ./VOCdevkit_aug)."""
    return get_layout(dataset).default_data_dir()


def check_disjoint(train: SegmentationDataset, val: SegmentationDataset, limit: int = 5) -> None:
    """Refuse a validation set sharing images with the training set (DataError naming ids).

    Datasets of one layout family (voc, voc_sbd, voc_aug) compare image ids, which name the
    same image across its layouts; other datasets compare the image files themselves.
    """
    family = {get_layout(ds.name.split(":")[0]).family for ds in (train, val)}
    if len(family) == 1 and None not in family:
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
        return {k: v for k, v in (folder_options or {}).items() if k in get_layout(name).options}

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
    """A ``SegmentationDataset`` of a registered layout ``name`` (e.g. 'voc', 'voc_sbd' (alias
    'vocaug'), 'voc_aug', 'folder', 'synthetic') under ``root``. ``options``: skip_bad,
    scale_range, flip, blur_prob, classes, and per layout: voc_root (voc_sbd); image_dir,
    label_dir, list_file, label_ext (folder); num_train, num_val, size, seed (synthetic)."""
    spec = get_layout(name)
    if not os.path.isdir(root) and spec.needs_root:
        raise DataError(f"{root}: dataset root folder not found")
    if num_classes is not None:
        options["num_classes"] = num_classes
    return spec.factory(root, split, mode=mode, crop_size=crop_size, ignore_label=ignore_label,
                        **options)
