"""The VOC 2012 family of layouts: ``voc``, ``voc_sbd`` and ``voc_aug``, and their split recipes.

Two layouts hold VOC 2012 + SBD: ``voc_sbd`` (old name ``vocaug``) reads SBD as gluoncv and
``scripts/download_voc.py`` lay it out (``VOCaug/dataset``, ``.mat`` labels) beside VOC 2012;
``voc_aug`` reads SegmentationClassAug: the same labels as grayscale PNGs, from the
``SegmentationClassAug.zip`` that DrSleep's tensorflow-deeplab-resnet links (not downloaded here).
"""

from __future__ import annotations

import os
import warnings
from typing import List, Optional

import mxnet as mx

from .base import SegmentationDataset, first_dir, pair_samples, read_list, split_file
from .io import DataError, read_label_any, read_label_mat
from .layouts import LayoutSpec
from .synthetic import META_FILE

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor")


def gluoncv_voc_root() -> str:
    """GluonCV's VOC root, ``$MXNET_HOME/datasets/voc`` (MXNET_HOME defaults to ~/.mxnet):
    ``VOC2012/`` and ``VOCaug/dataset/`` below it (what ``scripts/download_voc.py`` writes)."""
    return os.path.join(os.path.expanduser(mx.base.data_dir()), "datasets", "voc")


def _voc_classes(kwargs: dict) -> None:
    """VOC's 21 classes unless ``kwargs`` asks for others (then unnamed unless named there)."""
    kwargs.setdefault("classes", VOC_CLASSES if kwargs.get("num_classes", 21) == 21 else None)
    kwargs.setdefault("num_classes", 21)


def find_voc2012(root: str) -> Optional[str]:
    """The VOC2012 folder of ``root``: ROOT/VOC2012, ROOT itself, or ROOT/VOCdevkit/VOC2012."""
    return first_dir([os.path.join(root, "VOC2012"), root,
                       os.path.join(root, "VOCdevkit", "VOC2012")],
                      ["JPEGImages", "ImageSets"])


def find_sbd(root: str) -> Optional[str]:
    """The SBD folder of ``root`` (with img/ and cls/): ROOT/VOCaug/dataset, ROOT/dataset or
    ROOT itself."""
    return first_dir([os.path.join(root, "VOCaug", "dataset"), os.path.join(root, "dataset"),
                      root], ["img", "cls"])


def voc2012_val_ids(root: str) -> Optional[List[str]]:
    """VOC 2012 segmentation val ids found under ``root`` (see ``find_voc2012``), else None."""
    voc = find_voc2012(root)
    if voc is None:
        return None
    path = os.path.join(voc, "ImageSets", "Segmentation", "val.txt")
    return read_list(path) if os.path.isfile(path) else None


def voc_dataset(root: str, split: str = "train", **kwargs) -> SegmentationDataset:
    """PASCAL VOC 2012: ``VOC2012/{JPEGImages, SegmentationClass (palette PNG, 255 = border /
    ignore), ImageSets/Segmentation/{train,val,trainval}.txt}``. 'train' is the 1464-image train
    list only (gluoncv's 'train' is trainval)."""
    voc = find_voc2012(root)
    if voc is None:
        raise DataError(f"{root}: no VOC 2012 folder (expected ROOT/VOC2012/JPEGImages, "
                        "ROOT/JPEGImages or ROOT/VOCdevkit/VOC2012/JPEGImages)")
    list_path = split_file(os.path.join(voc, "ImageSets", "Segmentation"), split, "VOC 2012")
    samples = pair_samples(read_list(list_path), os.path.join(voc, "JPEGImages"),
                            os.path.join(voc, "SegmentationClass"), ".png", list_path,
                            kwargs.get("skip_bad", False))
    _voc_classes(kwargs)
    return SegmentationDataset(samples, name=f"voc:{split}", **kwargs)


# -- SBD (.mat), gluoncv's VOCaug layout: voc_sbd ------------------------------------------------
def _sbd_train_aug(base: str, voc_root: str, **kwargs) -> SegmentationDataset:
    """The paper's train_aug: (SBD train + SBD val + VOC 2012 train) minus VOC 2012 val.

    An id in both VOC 2012 train and SBD takes VOC's image and fine PNG label (255 borders):
    it is the official annotation, drawn the way VOC 2012 val, the reported split, is, while
    SBD's are coarser crowd-sourced outlines; SegmentationClassAug makes the same choice.
    """
    voc = find_voc2012(voc_root)
    if voc is None:
        raise DataError(f"{voc_root}: train_aug needs VOC 2012 (its train and val lists, images "
                        "and labels) at ROOT/VOC2012; pass voc_root= or download it "
                        "(scripts/download_voc.py)")
    sets = os.path.join(voc, "ImageSets", "Segmentation")
    val = set(read_list(split_file(sets, "val", "VOC 2012")))
    voc_list = split_file(sets, "train", "VOC 2012")
    voc_ids = [i for i in dict.fromkeys(read_list(voc_list)) if i not in val]
    sbd_ids = read_list(split_file(base, "train", "SBD (VOCaug)")) \
        + read_list(split_file(base, "val", "SBD (VOCaug)"))
    taken = set(voc_ids)
    sbd_ids = [i for i in dict.fromkeys(sbd_ids) if i not in val and i not in taken]
    skip_bad = kwargs.get("skip_bad", False)
    samples = pair_samples(voc_ids, os.path.join(voc, "JPEGImages"),
                            os.path.join(voc, "SegmentationClass"), ".png", voc_list, skip_bad)
    if sbd_ids:
        samples += pair_samples(sbd_ids, os.path.join(base, "img"), os.path.join(base, "cls"),
                                 ".mat", os.path.join(base, "train.txt + val.txt"), skip_bad)
    samples.sort(key=lambda sample: sample[0])
    _voc_classes(kwargs)
    return SegmentationDataset(samples, name="voc_sbd:train_aug", label_reader=read_label_any,
                               **kwargs)


def sbd_dataset(root: str, split: str = "train", voc_root: Optional[str] = None,
                **kwargs) -> SegmentationDataset:
    """SBD as gluoncv lays it out: ``VOCaug/dataset/{img/*.jpg, cls/*.mat, train.txt, val.txt}``.

    'train' = SBD train.txt minus every VOC 2012 val id (the VOC 2012 val list is looked up under
    ``voc_root`` or ROOT; if none is found a warning says the split could overlap VOC 2012 val).
    'val' = SBD's own val.txt (not VOC 2012 val). 'train_aug' = the paper's 10,582 images (see
    ``_sbd_train_aug``; needs VOC 2012 under ``voc_root`` or ROOT). Labels:
    ``GTcls.Segmentation`` of each .mat.
    """
    base = find_sbd(root)
    if base is None:
        raise DataError(f"{root}: no SBD folder (expected ROOT/VOCaug/dataset/{{img,cls}})")
    if split == "train_aug":
        return _sbd_train_aug(base, voc_root or root, **kwargs)
    list_path = split_file(base, split, "SBD (VOCaug)")
    ids = read_list(list_path)
    name = f"voc_sbd:{split}"
    if split == "train":
        val_ids = voc2012_val_ids(voc_root or root)
        if val_ids is None:
            warnings.warn(f"{name}: no VOC 2012 val list found under {voc_root or root}; cannot "
                          "exclude VOC 2012 val images from SBD train", stacklevel=2)
        else:
            val = set(val_ids)
            ids = [i for i in ids if i not in val]
    samples = pair_samples(ids, os.path.join(base, "img"), os.path.join(base, "cls"), ".mat",
                            list_path, kwargs.get("skip_bad", False))
    _voc_classes(kwargs)
    return SegmentationDataset(samples, name=name, label_reader=read_label_mat, **kwargs)


# -- SegmentationClassAug PNGs ------------------------------------------------------------------
def voc_aug_dataset(root: str, split: str = "train_aug", **kwargs) -> SegmentationDataset:
    """VOC 2012 + SBD as grayscale PNGs: ``ROOT/SegmentationClassAug/*.png``, images in
    ROOT/JPEGImages or ROOT/[VOCdevkit/]VOC2012/JPEGImages, lists ``train_aug.txt`` / ``val.txt``
    in ROOT or ROOT/ImageSets/Segmentation. 'train' is an alias of 'train_aug'. train_aug must hold
    no VOC 2012 val image (error naming them)."""
    split = "train_aug" if split == "train" else split
    label_dir = os.path.join(root, "SegmentationClassAug")
    if not os.path.isdir(label_dir):
        raise DataError(f"{label_dir}: folder not found (voc_aug layout)")
    image_dir = first_dir([root, os.path.join(root, "VOC2012"),
                            os.path.join(root, "VOCdevkit", "VOC2012")], ["JPEGImages"])
    if image_dir is None:
        raise DataError(f"{root}: no JPEGImages folder (ROOT/JPEGImages or ROOT/VOC2012/...)")
    image_dir = os.path.join(image_dir, "JPEGImages")
    list_dir = first_dir([root, os.path.join(root, "ImageSets", "Segmentation")],
                          [f"{split}.txt"])
    if list_dir is None:
        raise DataError(f"{os.path.join(root, split + '.txt')}: no list file for split "
                        f"{split!r} (also looked in ROOT/ImageSets/Segmentation)")
    list_path = os.path.join(list_dir, f"{split}.txt")
    ids = read_list(list_path)
    if split == "train_aug":
        val_path = os.path.join(list_dir, "val.txt")
        if os.path.isfile(val_path):
            overlap = sorted(set(ids) & set(read_list(val_path)))
            if overlap:
                raise DataError(
                    f"{list_path}: {len(overlap)} VOC 2012 val image(s) in train_aug "
                    f"(e.g. {', '.join(overlap[:5])}); remove them or training leaks val")
        else:
            warnings.warn(f"{val_path}: not found; cannot check train_aug against VOC 2012 val",
                          stacklevel=2)
    samples = pair_samples(ids, image_dir, label_dir, ".png", list_path,
                            kwargs.get("skip_bad", False))
    _voc_classes(kwargs)
    return SegmentationDataset(samples, name=f"voc_aug:{split}", **kwargs)


def _voc_names(num_classes: int) -> Optional[List[str]]:
    return list(VOC_CLASSES) if num_classes == len(VOC_CLASSES) else None


def _holds_voc2012(root: str) -> bool:  # a synthetic set uses VOC's layout: not VOC 2012
    return bool(find_voc2012(root)) and not os.path.isfile(os.path.join(root, META_FILE))


# The family shares VOC image ids (comparable across layouts); voc and voc_sbd live in
# gluoncv's VOC root (download_voc.py's), voc_aug in the folder of the SegmentationClassAug zip.
_GLUONCV = dict(data_dir=gluoncv_voc_root, family="voc", classes=_voc_names,
                data_dir_text="gluoncv's $MXNET_HOME/datasets/voc, i.e. ~/.mxnet/datasets/voc",
                missing_hint="scripts/download_voc.py downloads VOC 2012 and SBD there")
VOC_LAYOUTS = (
    LayoutSpec("voc", voc_dataset, detect=_holds_voc2012, summary="VOC 2012", **_GLUONCV),
    LayoutSpec("voc_sbd", sbd_dataset, aliases=("vocaug",), train_split="train_aug",
               val_dataset="voc", detect=lambda root: bool(find_sbd(root)), **_GLUONCV,
               summary="VOC 2012 + SBD's .mat labels as scripts/download_voc.py and gluoncv "
                       "lay them out; old name vocaug"),
    LayoutSpec("voc_aug", voc_aug_dataset, train_split="train_aug", family="voc",
               classes=_voc_names, summary="SegmentationClassAug PNGs",
               detect=lambda root: os.path.isdir(os.path.join(root, "SegmentationClassAug"))))
