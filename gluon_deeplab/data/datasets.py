"""Segmentation datasets: one base class and the five on-disk layouts.

Two layouts hold VOC 2012 + SBD: ``voc_sbd`` (old name ``vocaug``) reads SBD as gluoncv and
``scripts/download_voc.py`` lay it out (``VOCaug/dataset``, ``.mat`` labels) beside VOC 2012;
``voc_aug`` reads SegmentationClassAug: the same labels as grayscale PNGs, from the
``SegmentationClassAug.zip`` that DrSleep's tensorflow-deeplab-resnet links (not downloaded here).

Every dataset is a list of ``(id, image_path, label_path)`` samples built from a split list file at
construction time (fast: file existence is checked with one directory listing per folder); images
and labels are read and validated lazily, per item (``load``), or all at once with ``check()``.
Labels come out as uint8 with the ignore value mapped to 255 (``IGNORE_LABEL``).
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import mxnet as mx
import numpy as np
from mxnet.gluon.data import Dataset

from .io import DataError, read_image, read_label_mat, read_label_png, validate_label
from .synthetic import FORMAT, META_FILE, make_synthetic_dataset
from .transforms import IGNORE_LABEL, TrainTransform, ValTransform, to_ndarray

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor")

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".ppm", ".webp")

# A sample key is an index, or (index, rng_seed) where rng_seed seeds this sample's augmentation.
Key = Union[int, Tuple[int, Sequence[int]]]


class SegmentationDataset(Dataset):
    """Images + index label maps; ``ds[i]`` gives transformed (image, label) NDArrays.

    mode 'train': random scale 0.5-2.0 / pad / crop ``crop_size`` / flip (``TrainTransform``),
    image float32 3 x C x C normalized, label float32 C x C with ignore 255. mode 'val': the whole
    image and its full-size label. ``ds[(i, seed)]`` draws the augmentation from
    ``np.random.default_rng(seed)`` (reproducible); ``ds[i]`` from fresh OS entropy.
    ``skip_bad=True`` replaces a bad sample by the next good one with a counted warning (a sample
    with a wrong label is never returned).
    """

    def __init__(self, samples: Sequence[Tuple[str, str, str]], num_classes: int,
                 classes: Optional[Sequence[str]] = None, mode: str = "train",
                 crop_size: Union[int, Sequence[int]] = 513, ignore_label: int = IGNORE_LABEL,
                 label_reader: Callable[[str], np.ndarray] = read_label_png,
                 skip_bad: bool = False, name: str = "dataset", scale_range=(0.5, 2.0),
                 flip: bool = True, blur_prob: float = 0.0):
        if mode not in ("train", "val"):
            raise ValueError(f"mode must be 'train' or 'val', got {mode!r}")
        if not 1 <= int(num_classes) <= 255:
            raise ValueError(f"num_classes must be in [1, 255], got {num_classes}")
        if not 0 <= int(ignore_label) <= 65535 or num_classes > ignore_label >= 0:
            raise ValueError(
                f"ignore_label must not be a class index (num_classes={num_classes}), "
                f"got {ignore_label}")
        if classes is None:
            classes = [f"class{i}" for i in range(num_classes)]
        if len(classes) != num_classes:
            raise ValueError(f"{len(classes)} class names for num_classes={num_classes}")
        if not samples:
            raise DataError(f"{name}: no samples (empty split)")
        self.name = name
        self.mode = mode
        self.num_classes = int(num_classes)
        self.classes = list(classes)
        self.source_ignore_label = int(ignore_label)
        self.ignore_label = IGNORE_LABEL
        self.skip_bad = skip_bad
        self._samples = [tuple(s) for s in samples]
        self._label_reader = label_reader
        self.skipped: Dict[str, str] = {}
        if mode == "train":
            self.transform = TrainTransform(crop_size, scale_range, flip, blur_prob, IGNORE_LABEL)
        else:
            self.transform = ValTransform()

    # -- identity ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._samples)

    @property
    def ids(self) -> List[str]:
        return [s[0] for s in self._samples]

    def image_path(self, i: int) -> str:
        return self._samples[i][1]

    def label_path(self, i: int) -> str:
        return self._samples[i][2]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}, {len(self)} samples, mode={self.mode!r}, "
                f"num_classes={self.num_classes})")

    # -- loading -------------------------------------------------------------------------------
    def load(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        """Validated raw sample: (RGB uint8 H x W x 3, label uint8 H x W, ignore 255)."""
        _, image_path, label_path = self._samples[i]
        image = read_image(image_path)
        label = self._label_reader(label_path)
        label = validate_label(label, image.shape, self.num_classes, self.source_ignore_label,
                               label_path)
        return image, label

    def _load_or_skip(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        if not self.skip_bad:
            return self.load(index)
        n = len(self)
        for step in range(n):
            j = (index + step) % n
            if self._samples[j][0] in self.skipped:
                continue
            try:
                return self.load(j)
            except DataError as err:
                self.skipped[self._samples[j][0]] = str(err)
                warnings.warn(f"skipping bad sample ({len(self.skipped)} skipped so far): {err}",
                              stacklevel=2)
        raise DataError(f"{self.name}: every sample is bad ({len(self.skipped)} skipped)")

    def get_numpy(self, key: Key, raw: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        """Transformed sample as numpy (image float32 3 x H x W, label float32 H x W); in
        train mode ``raw`` gives the same crop as uint8 image and label (loader batches)."""
        if isinstance(key, (tuple, list)):
            index, seed = key
            rng = np.random.default_rng(seed)
        else:
            index, rng = key, np.random.default_rng()
        index = int(index)
        if index < 0:
            index += len(self)
        image, label = self._load_or_skip(index)
        return self.transform(image, label, rng, raw=raw)

    def __getitem__(self, key: Key) -> Tuple[mx.nd.NDArray, mx.nd.NDArray]:
        image, label = self.get_numpy(key)
        return to_ndarray(image), to_ndarray(label)

    def check(self, raise_error: bool = True) -> List[str]:
        """Validate every sample; return the list of problems (one line each).

        With ``skip_bad`` the bad samples are dropped from the dataset (counted warning) instead
        of raising; otherwise, if ``raise_error``, any problem raises one ``DataError``.
        """
        problems, good = [], []
        for i, sample in enumerate(self._samples):
            try:
                self.load(i)
                good.append(sample)
            except DataError as err:
                problems.append(str(err))
        if problems and self.skip_bad:
            if not good:
                raise DataError(f"{self.name}: every sample is bad ({len(problems)})")
            warnings.warn(f"{self.name}: dropped {len(problems)} bad sample(s) of "
                          f"{len(self._samples)}; first: {problems[0]}", stacklevel=2)
            self._samples = good
        elif problems and raise_error:
            raise DataError(f"{self.name}: {len(problems)} bad sample(s); first: {problems[0]}")
        return problems


def read_label_any(path: str) -> np.ndarray:
    """An SBD ``.mat`` (GTcls.Segmentation) or an index/palette PNG, by file extension."""
    return read_label_mat(path) if path.lower().endswith(".mat") else read_label_png(path)


# -- list files and folder lookup ---------------------------------------------------------------
def read_list(path: str) -> List[str]:
    """Image ids of a split list: one per line; the first token's file stem is the id (so both
    ``2007_000032`` and ``/JPEGImages/2007_000032.jpg /SegmentationClassAug/...png`` work)."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: split list file not found")
    ids = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            first = line.split()[0]
            if "/" in first or first.lower().endswith(IMAGE_EXTS + (".mat",)):
                first = os.path.splitext(os.path.basename(first))[0]
            ids.append(first)
    if not ids:
        raise DataError(f"{path}: empty split list")
    return ids


def _listing(folder: str) -> set:
    """File names of a folder (one listdir, so opening a 10k-image set is fast)."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: folder not found")
    return set(os.listdir(folder))


def _pair_samples(ids: Sequence[str], image_dir: str, label_dir: str, label_ext: str,
                  list_path: str, skip_bad: bool) -> List[Tuple]:
    images, labels = _listing(image_dir), _listing(label_dir)
    samples, missing = [], []
    for sid in ids:
        image_name = next((sid + e for e in IMAGE_EXTS + tuple(e.upper() for e in IMAGE_EXTS)
                           if sid + e in images), None)
        label_name = sid + label_ext
        if image_name is None:
            missing.append(f"{list_path}: entry {sid!r} has no image in {image_dir}")
        elif label_name not in labels:
            missing.append(f"{list_path}: entry {sid!r} has no label {label_name} in {label_dir}")
        else:
            samples.append((sid, os.path.join(image_dir, image_name),
                            os.path.join(label_dir, label_name)))
    if missing:
        if not skip_bad:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DataError(missing[0] + more)
        warnings.warn(f"skipping {len(missing)} list entries without files; first: {missing[0]}",
                      stacklevel=3)
    if not samples:
        raise DataError(f"{list_path}: no usable entries (empty split)")
    return samples


def _first_dir(candidates: Sequence[str], required: Sequence[str]) -> Optional[str]:
    for c in candidates:
        if all(os.path.exists(os.path.join(c, r)) for r in required):
            return c
    return None


def _split_file(folder: str, split: str, what: str) -> str:
    path = os.path.join(folder, f"{split}.txt")
    if not os.path.isfile(path):
        have = sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".txt")) \
            if os.path.isdir(folder) else []
        raise DataError(f"{path}: no list file for split {split!r} of {what} "
                        f"(available: {', '.join(have) or 'none'})")
    return path


# -- VOC 2012 -----------------------------------------------------------------------------------
def find_voc2012(root: str) -> Optional[str]:
    """The VOC2012 folder of ``root``: ROOT/VOC2012, ROOT itself, or ROOT/VOCdevkit/VOC2012."""
    return _first_dir([os.path.join(root, "VOC2012"), root,
                       os.path.join(root, "VOCdevkit", "VOC2012")],
                      ["JPEGImages", "ImageSets"])


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
    list_path = _split_file(os.path.join(voc, "ImageSets", "Segmentation"), split, "VOC 2012")
    samples = _pair_samples(read_list(list_path), os.path.join(voc, "JPEGImages"),
                            os.path.join(voc, "SegmentationClass"), ".png", list_path,
                            kwargs.get("skip_bad", False))
    kwargs.setdefault("classes", VOC_CLASSES if kwargs.get("num_classes", 21) == 21 else None)
    kwargs.setdefault("num_classes", 21)
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
    val = set(read_list(_split_file(sets, "val", "VOC 2012")))
    voc_list = _split_file(sets, "train", "VOC 2012")
    voc_ids = [i for i in dict.fromkeys(read_list(voc_list)) if i not in val]
    sbd_ids = read_list(_split_file(base, "train", "SBD (VOCaug)")) \
        + read_list(_split_file(base, "val", "SBD (VOCaug)"))
    taken = set(voc_ids)
    sbd_ids = [i for i in dict.fromkeys(sbd_ids) if i not in val and i not in taken]
    skip_bad = kwargs.get("skip_bad", False)
    samples = _pair_samples(voc_ids, os.path.join(voc, "JPEGImages"),
                            os.path.join(voc, "SegmentationClass"), ".png", voc_list, skip_bad)
    if sbd_ids:
        samples += _pair_samples(sbd_ids, os.path.join(base, "img"), os.path.join(base, "cls"),
                                 ".mat", os.path.join(base, "train.txt + val.txt"), skip_bad)
    samples.sort(key=lambda sample: sample[0])
    kwargs.setdefault("classes", VOC_CLASSES if kwargs.get("num_classes", 21) == 21 else None)
    kwargs.setdefault("num_classes", 21)
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
    base = _first_dir([os.path.join(root, "VOCaug", "dataset"), os.path.join(root, "dataset"),
                       root], ["img", "cls"])
    if base is None:
        raise DataError(f"{root}: no SBD folder (expected ROOT/VOCaug/dataset/{{img,cls}})")
    if split == "train_aug":
        return _sbd_train_aug(base, voc_root or root, **kwargs)
    list_path = _split_file(base, split, "SBD (VOCaug)")
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
    samples = _pair_samples(ids, os.path.join(base, "img"), os.path.join(base, "cls"), ".mat",
                            list_path, kwargs.get("skip_bad", False))
    kwargs.setdefault("classes", VOC_CLASSES if kwargs.get("num_classes", 21) == 21 else None)
    kwargs.setdefault("num_classes", 21)
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
    image_dir = _first_dir([root, os.path.join(root, "VOC2012"),
                            os.path.join(root, "VOCdevkit", "VOC2012")], ["JPEGImages"])
    if image_dir is None:
        raise DataError(f"{root}: no JPEGImages folder (ROOT/JPEGImages or ROOT/VOC2012/...)")
    image_dir = os.path.join(image_dir, "JPEGImages")
    list_dir = _first_dir([root, os.path.join(root, "ImageSets", "Segmentation")],
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
    samples = _pair_samples(ids, image_dir, label_dir, ".png", list_path,
                            kwargs.get("skip_bad", False))
    kwargs.setdefault("classes", VOC_CLASSES if kwargs.get("num_classes", 21) == 21 else None)
    kwargs.setdefault("num_classes", 21)
    return SegmentationDataset(samples, name=f"voc_aug:{split}", **kwargs)


# -- own data -----------------------------------------------------------------------------------
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
    samples = _pair_samples(read_list(list_path), image_dir, label_dir, label_ext, list_path,
                            kwargs.get("skip_bad", False))
    return SegmentationDataset(samples, num_classes=num_classes, name=f"folder:{split}", **kwargs)


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


# -- synthetic ----------------------------------------------------------------------------------
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
    list_path = _split_file(os.path.join(root, "ImageSets", "Segmentation"), split, "synthetic")
    samples = _pair_samples(read_list(list_path), os.path.join(root, "JPEGImages"),
                            os.path.join(root, "SegmentationClass"), ".png", list_path,
                            kwargs.get("skip_bad", False))
    return SegmentationDataset(samples, num_classes=meta["num_classes"], classes=meta["classes"],
                               name=f"synthetic:{split}", **kwargs)


# -- defaults and train/val pairing ------------------------------------------------------------
VOC_FAMILY = ("voc", "voc_sbd", "voc_aug")  # ids are VOC image ids, comparable across layouts
LEGACY_DATA_DIR = "./VOCdevkit_aug"
DATASET_ALIASES = {"vocaug": "voc_sbd"}  # the SBD layout's first name


def canonical_dataset_name(name: str) -> str:
    """The name of a layout, ``vocaug`` being the old name of ``voc_sbd``."""
    return DATASET_ALIASES.get(name, name)


def gluoncv_voc_root() -> str:
    """GluonCV's VOC root, ``$MXNET_HOME/datasets/voc`` (MXNET_HOME defaults to ~/.mxnet):
    ``VOC2012/`` and ``VOCaug/dataset/`` below it (what ``scripts/download_voc.py`` writes)."""
    return os.path.join(os.path.expanduser(mx.base.data_dir()), "datasets", "voc")


def default_data_dir(dataset: str) -> str:
    """``--data_dir`` when not given: gluoncv's root for voc and voc_sbd, else ./VOCdevkit_aug."""
    return gluoncv_voc_root() if canonical_dataset_name(dataset) in ("voc", "voc_sbd") \
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


_FACTORIES = {"voc": voc_dataset, "voc_sbd": sbd_dataset, "voc_aug": voc_aug_dataset,
              "folder": folder_dataset, "synthetic": synthetic_dataset}
DATASET_NAMES = tuple(_FACTORIES)
DATASET_CHOICES = DATASET_NAMES + tuple(DATASET_ALIASES)  # what --dataset accepts


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
