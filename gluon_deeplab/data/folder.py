"""Your own data: the ``folder`` layout (images, index-PNG labels, a list file per split)."""

from __future__ import annotations

import argparse
import os
from typing import Optional

from .base import SegmentationDataset, pair_samples, read_list
from .layouts import LayoutSpec

# Where the folder layout looks under ROOT (the --image_dir, --label_dir, --list_file flags).
FOLDER_LAYOUT = {"image_dir": "images", "label_dir": "labels", "list_file": "{split}.txt"}


def folder_dataset(root: str, split: str = "train", num_classes: Optional[int] = None,
                   image_dir: str = FOLDER_LAYOUT["image_dir"],
                   label_dir: str = FOLDER_LAYOUT["label_dir"],
                   list_file: Optional[str] = None, label_ext: str = ".png",
                   **kwargs) -> SegmentationDataset:
    """Your own data: ``image_dir`` (any PIL image), ``label_dir`` (index PNGs named like the
    images), a list file of ids (default ``{split}.txt``; ``{split}`` in it becomes the split's
    name); relative paths are under ROOT. ``num_classes`` is required; ``ignore_label`` is the
    value marking unlabelled pixels."""
    if num_classes is None:
        raise ValueError("the 'folder' dataset needs num_classes")
    image_dir = os.path.join(root, image_dir)
    label_dir = os.path.join(root, label_dir)
    list_file = (list_file or FOLDER_LAYOUT["list_file"]).replace("{split}", split)
    list_path = os.path.join(root, list_file)
    samples = pair_samples(read_list(list_path), image_dir, label_dir, label_ext, list_path,
                            kwargs.get("skip_bad", False))
    return SegmentationDataset(samples, num_classes=num_classes, name=f"folder:{split}", **kwargs)


FOLDER_SPEC = LayoutSpec("folder", folder_dataset, options=tuple(FOLDER_LAYOUT))


def add_folder_arguments(parser: argparse._ActionsContainer) -> None:
    """--image_dir, --label_dir, --list_file: where ``--dataset folder`` looks (default None:
    :data:`FOLDER_LAYOUT`'s, so that giving one with another dataset can be refused)."""
    for name, what in (("image_dir", "folder of the images"),
                       ("label_dir", "folder of the label PNGs (class index per pixel), named "
                                     "like the images"),
                       ("list_file", "file of a split's image ids (one a line); {split} in it "
                                     "becomes the split's name")):
        parser.add_argument(f"--{name}", default=None,
                            help=f"--dataset folder: {what}; relative to --data_dir (default: "
                                 f"{FOLDER_LAYOUT[name]})")
