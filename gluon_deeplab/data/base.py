"""The dataset base class and the helpers every on-disk layout shares.

Every dataset is a list of ``(id, image_path, label_path)`` samples built from a split list file at
construction time (fast: file existence is checked with one directory listing per folder); images
and labels are read and validated lazily, per item (``load``), or all at once with ``check()``.
Labels come out as uint8 with the ignore value mapped to 255 (``IGNORE_LABEL``).
"""

from __future__ import annotations

import os
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import mxnet as mx
import numpy as np
from mxnet.gluon.data import Dataset

from .io import DataError, read_image, read_label_png, validate_label
from .transforms import IGNORE_LABEL, TrainTransform, ValTransform, to_ndarray

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".ppm", ".webp")

# A sample key is an index, or (index, rng_seed) where rng_seed seeds this sample's augmentation.
Key = Union[int, Tuple[int, Sequence[int]]]


def numbered_classes(num_classes: int) -> List[str]:
    """Names for classes nobody named: ``class0``, ``class1``, ..."""
    return [f"class{i}" for i in range(num_classes)]


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
            classes = numbered_classes(num_classes)
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


def pair_samples(ids: Sequence[str], image_dir: str, label_dir: str, label_ext: str,
                 list_path: str, skip_bad: bool) -> List[Tuple]:
    """The (id, image, label) samples of ``ids``: an image of any ``IMAGE_EXTS`` and the label
    ``id + label_ext``; a missing file is a DataError naming the list entry (with ``skip_bad``, a
    counted warning)."""
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


def first_dir(candidates: Sequence[str], required: Sequence[str]) -> Optional[str]:
    """The first of ``candidates`` that holds every path of ``required``, else None."""
    for c in candidates:
        if all(os.path.exists(os.path.join(c, r)) for r in required):
            return c
    return None


def split_file(folder: str, split: str, what: str) -> str:
    """``folder/split.txt``; if missing, a DataError listing the splits ``folder`` has."""
    path = os.path.join(folder, f"{split}.txt")
    if not os.path.isfile(path):
        have = sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".txt")) \
            if os.path.isdir(folder) else []
        raise DataError(f"{path}: no list file for split {split!r} of {what} "
                        f"(available: {', '.join(have) or 'none'})")
    return path
