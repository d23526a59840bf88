"""Masks, overlays and panels for images, written as files (the library side of
``scripts/predict.py``, whose parser is :mod:`.predict_cli`).

Output layout under ``--output_dir``: ``masks/<name>.png`` (palette PNG, VOC colours; with
``--save_probabilities`` also ``masks/<name>.npy``, so ``masks/`` folders of several models
can be fed to ``scripts/ensemble.py``), ``overlays/<name>.png`` and ``panels/<name>.png``
(image | label | prediction, the label only with ``--label_dir``).
"""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Sequence

from ..data import read_label_png
from ..data.base import IMAGE_EXTS
from ..paths import check_writable
from .colormap import save_mask
from .inference import save_probability_file
from .segmenter import Segmenter
from .visualize import overlay, panel, save_rgb

OUTPUT_FOLDERS = ("masks", "overlays", "panels")


def collect_images(inputs: Sequence[str]) -> List[str]:
    """Image files named on the command line, folders expanded (non-recursive, sorted)."""
    images: List[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, f) for f in os.listdir(item)
                           if f.lower().endswith(IMAGE_EXTS)
                           and os.path.isfile(os.path.join(item, f)))
            if not found:
                raise ValueError(f"{item}: folder holds no images ({', '.join(IMAGE_EXTS)})")
            images += found
        elif os.path.isfile(item):
            images.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such image or folder")
    stems: Dict[str, str] = {}
    for path in images:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in stems and os.path.abspath(stems[stem]) != os.path.abspath(path):
            raise ValueError(f"{stems[stem]} and {path} would write the same output name "
                             f"{stem}.png; predict them into separate --output_dir folders")
        stems[stem] = path
    return list(stems.values())


def output_paths(image: str, output_dir: str) -> Dict[str, str]:
    stem = os.path.splitext(os.path.basename(image))[0]
    paths = {kind: os.path.join(output_dir, kind, stem + ".png") for kind in OUTPUT_FOLDERS}
    paths["probabilities"] = os.path.join(output_dir, "masks", stem + ".npy")
    return paths


def check_outputs(images: Sequence[str], output_dir: str, overwrite: bool,
                  save_probabilities: bool) -> None:
    """Refuse (one line) an output folder that cannot be written, that holds an input image,
    or whose files would be replaced without ``overwrite``."""
    check_writable(output_dir, "--output_dir", folder=True)
    inputs = {os.path.realpath(p) for p in images}
    for image in images:
        paths = output_paths(image, output_dir)
        if not save_probabilities:
            del paths["probabilities"]
        for path in paths.values():
            if os.path.realpath(path) in inputs:
                raise ValueError(f"{path} is an input image and would be overwritten; "
                                 "choose another --output_dir")
            if os.path.exists(path) and not overwrite:
                raise FileExistsError(f"{path} exists; choose another --output_dir or pass "
                                      "--overwrite")


def label_paths(images: Sequence[str], label_dir: Optional[str]) -> Dict[str, Optional[str]]:
    """The ground-truth PNG of each image in ``label_dir`` (None without a label folder)."""
    labels: Dict[str, Optional[str]] = {}
    for image in images:
        labels[image] = None
        if label_dir:
            stem = os.path.splitext(os.path.basename(image))[0]
            labels[image] = os.path.join(label_dir, stem + ".png")
            if not os.path.isfile(labels[image]):
                raise FileNotFoundError(f"{labels[image]}: no label for {image} in --label_dir")
    return labels


def predict_images(segmenter: Segmenter, images: Sequence[str], output_dir: str,
                   scales: Sequence[float] = (1.0,), flip: bool = False, fusion: str = "mean",
                   crop_size: Optional[int] = None, label_dir: Optional[str] = None,
                   crf: Optional[Callable] = None, save_probabilities: bool = False,
                   alpha: float = 0.5, overwrite: bool = False,
                   buckets: Optional[bool] = None, batch_size: int = 1) -> List[Dict[str, str]]:
    """Segment every image (:meth:`Segmenter.segment_iter`, round-robin over its devices)
    and write mask, overlay and panel; ``buckets``: as in
    :func:`gluon_deeplab.evaluation.predict_probabilities`."""
    check_outputs(images, output_dir, overwrite, save_probabilities)
    labels = label_paths(images, label_dir)
    written = []
    for path, result in zip(images, segmenter.segment_iter(
            images, scales, flip, crf or False, save_probabilities, fusion=fusion,
            crop_size=crop_size, buckets=buckets, batch_size=batch_size)):
        mask, rgb = result.mask, result.image
        label = read_label_png(labels[path]) if labels[path] else None
        if label is not None and label.shape != mask.shape:
            raise ValueError(f"{labels[path]}: label is {label.shape[0]}x{label.shape[1]}, "
                             f"image {path} is {mask.shape[0]}x{mask.shape[1]}")
        paths = output_paths(path, output_dir)
        save_mask(mask, paths["masks"])
        save_rgb(overlay(rgb, mask, alpha), paths["overlays"])
        save_rgb(panel(rgb, mask, label), paths["panels"])
        if save_probabilities:
            save_probability_file(result.probabilities, paths["probabilities"])
        else:
            del paths["probabilities"]
        written.append(paths)
    return written


