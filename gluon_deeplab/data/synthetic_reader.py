"""Reading the generated set (``synthetic.py`` writes it): the ``synthetic`` layout."""

from __future__ import annotations

import json
import os
from typing import Optional

from .base import SegmentationDataset, pair_samples, read_list, split_file
from .io import DataError
from .layouts import LayoutSpec
from .synthetic import FORMAT, META_FILE, make_synthetic_dataset, synthetic_classes


def read_synthetic_meta(root: str) -> Optional[dict]:
    """The synthetic.json of a generated set (None if ``root`` holds none)."""
    path = os.path.join(root, META_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT:
        raise DataError(f"{path}: not a gluon-deeplab synthetic set description")
    return meta


def synthetic_dataset(root: str, split: str = "train", num_classes: Optional[int] = None,
                      num_train: int = 40, num_val: int = 10, size=(128, 160), seed: int = 0,
                      **kwargs) -> SegmentationDataset:
    """The generated set (VOC layout + synthetic.json). It is generated only into an existing,
    empty ``root`` (a folder the user made for it); a missing folder is an error that says how
    to generate the set, so a mistyped path never gets a new set to evaluate on."""
    meta = read_synthetic_meta(root)
    if meta is None and not os.path.isdir(root):
        raise DataError(
            f"{root}: no synthetic set (folder not found); generate one with "
            f"'python scripts/make_synthetic.py --output {root}', or create the empty folder "
            "to have it generated there on first use")
    if meta is None:
        make_synthetic_dataset(root, num_train=num_train, num_val=num_val, size=size,
                               num_classes=num_classes or 5, seed=seed)
        meta = read_synthetic_meta(root)
    if num_classes is not None and num_classes != meta["num_classes"]:
        raise ValueError(f"{root}: synthetic set has {meta['num_classes']} classes, "
                         f"num_classes={num_classes} was asked")
    kwargs.pop("classes", None)
    list_path = split_file(os.path.join(root, "ImageSets", "Segmentation"), split, "synthetic")
    samples = pair_samples(read_list(list_path), os.path.join(root, "JPEGImages"),
                            os.path.join(root, "SegmentationClass"), ".png", list_path,
                            kwargs.get("skip_bad", False))
    return SegmentationDataset(samples, num_classes=meta["num_classes"], classes=meta["classes"],
                               name=f"synthetic:{split}", **kwargs)


SYNTHETIC_SPEC = LayoutSpec(
    "synthetic", synthetic_dataset, classes=synthetic_classes, needs_root=False,
    detect=lambda root: os.path.isfile(os.path.join(root, META_FILE)))
