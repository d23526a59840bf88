"""The PASCAL VOC colour map and palette PNG masks (written by ``data.io``, re-exported here)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.io import PALETTE_SIZE, as_mask, mask_image, save_mask, voc_colormap

__all__ = ["PALETTE_SIZE", "colorize", "mask_image", "save_mask", "voc_colormap"]


def colorize(mask: Any) -> np.ndarray:
    """An RGB uint8 H x W x 3 image of a class mask in VOC colours."""
    return voc_colormap()[as_mask(mask)]
