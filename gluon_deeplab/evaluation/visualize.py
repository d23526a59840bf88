"""Pictures for people: prediction overlays and image | label | prediction panels."""

from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np
from PIL import Image

from .colormap import colorize

PANEL_GAP = 4  # white pixels between the pictures of a panel


def _rgb(image: Any) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 H x W x 3 image, got {image.dtype} "
                         f"{image.shape}")
    return image


def _check_size(image: np.ndarray, mask: Any, what: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"{what} is {mask.shape}, the image {image.shape[:2]}")
    return mask


def overlay(image: Any, mask: Any, alpha: float = 0.5) -> np.ndarray:
    """The image with the mask's VOC colours blended in (background, class 0, left as is)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay alpha must be in [0, 1], got {alpha}")
    image = _rgb(image)
    mask = _check_size(image, mask, "mask")
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colorize(mask).astype(np.float32)
    out = np.where((mask > 0)[..., None], blended, image.astype(np.float32))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def panel(image: Any, prediction: Any, label: Optional[Any] = None) -> np.ndarray:
    """image | label | prediction (label omitted when None) side by side, RGB uint8."""
    image = _rgb(image)
    parts = [image]
    if label is not None:
        parts.append(colorize(_check_size(image, label, "label")))
    parts.append(colorize(_check_size(image, prediction, "prediction")))
    h = image.shape[0]
    gap = np.full((h, PANEL_GAP, 3), 255, np.uint8)
    pieces = []
    for part in parts:
        pieces += [part, gap]
    return np.concatenate(pieces[:-1], axis=1)


def save_rgb(image: np.ndarray, path: str) -> str:
    """Write an RGB uint8 array as a PNG (creating the folder)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(_rgb(image)).save(path, format="PNG")
    return path
