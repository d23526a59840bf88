"""The PASCAL VOC colour map and palette PNG masks."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from gluoncv.utils.viz.segmentation import vocpallete
from PIL import Image

PALETTE_SIZE = 256


def voc_colormap(n: int = PALETTE_SIZE) -> np.ndarray:
    """The first ``n`` colours (uint8, n x 3) of VOC's bit-interleaved palette.

    Entry 255 (the ignore label) is (224, 224, 192), as in the VOC ground truth files.
    """
    if not 1 <= n <= PALETTE_SIZE:
        raise ValueError(f"colour map size must be in [1, {PALETTE_SIZE}], got {n}")
    return np.asarray(vocpallete[: 3 * n], dtype=np.uint8).reshape(n, 3)


def colorize(mask: Any) -> np.ndarray:
    """An RGB uint8 H x W x 3 image of a class mask in VOC colours."""
    return voc_colormap()[_as_mask(mask)]


def mask_image(mask: Any) -> Image.Image:
    """A palette ("P" mode) PIL image of a class mask with the full 256-entry VOC palette."""
    image = Image.fromarray(_as_mask(mask), mode="P")
    image.putpalette(voc_colormap().ravel().tolist())
    return image


def save_mask(mask: Any, path: str) -> str:
    """Write a class mask (H x W, values 0..255) as a palette PNG; returns ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    mask_image(mask).save(path, format="PNG")
    return path


def _as_mask(mask: Any) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D (H x W), got shape {mask.shape}")
    if mask.dtype != np.uint8:
        if mask.size and (mask.min() < 0 or mask.max() > 255):
            raise ValueError(f"mask values must be in [0, 255], got [{mask.min()}, {mask.max()}]")
        mask = mask.astype(np.uint8)
    return mask
