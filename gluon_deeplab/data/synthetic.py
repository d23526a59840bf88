"""A small, learnable, deterministic segmentation set in the VOC 2012 layout.

Each object class has its own hue and texture (stripes at a class-specific angle, checkers or
dots), so the class is visible in any small patch; shapes (circles, ellipses, rectangles,
triangles, polygons) are random and may occlude each other; the background is a low-saturation
textured gray. Labels are VOC palette PNGs with a 2-pixel 255 (ignore) band on every object
contour, like VOC's borders. The same seed gives byte-identical files.
"""

from __future__ import annotations

import colorsys
import json
import os
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

from .io import DataError, save_mask

FORMAT = "gluon-deeplab-synthetic"
META_FILE = "synthetic.json"
TEXTURES = ("stripes", "checker", "dots", "diagonal")
SHAPES = ("circle", "ellipse", "rectangle", "triangle", "polygon")


def synthetic_classes(num_classes: int) -> list:
    """Class names: 'background' then '<texture>_<hue index>'."""
    return ["background"] + [f"{TEXTURES[(k - 1) % len(TEXTURES)]}_{k}"
                             for k in range(1, num_classes)]


def _class_colors(num_classes: int) -> np.ndarray:
    colors = np.zeros((num_classes, 2, 3), dtype=np.float32)
    for k in range(1, num_classes):
        hue = (k - 1) / max(1, num_classes - 1)
        colors[k, 0] = colorsys.hsv_to_rgb(hue, 0.9, 0.95)
        colors[k, 1] = colorsys.hsv_to_rgb(hue, 0.9, 0.45)
    return colors * 255.0


def _texture(k: int, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    kind = TEXTURES[(k - 1) % len(TEXTURES)]
    period = 6.0 + 2.0 * ((k - 1) // len(TEXTURES) % 3)
    phase = rng.uniform(0, period)
    if kind == "stripes":
        return (np.sin(2 * np.pi * (yy + phase) / period) > 0).astype(np.float32)
    if kind == "diagonal":
        return (np.sin(2 * np.pi * (xx + yy + phase) / period) > 0).astype(np.float32)
    if kind == "checker":
        return ((((yy + phase) // (period / 2)) + ((xx + phase) // (period / 2))) % 2
                ).astype(np.float32)
    d = np.hypot((yy + phase) % period - period / 2, (xx + phase) % period - period / 2)
    return (d < period / 4).astype(np.float32)


def _shape_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    r = rng.uniform(0.15, 0.35) * min(h, w)
    cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    elif shape == "ellipse":
        draw.ellipse([cx - r, cy - 0.6 * r, cx + r, cy + 0.6 * r], fill=1)
    elif shape == "rectangle":
        a, b = r * rng.uniform(0.6, 1.2), r * rng.uniform(0.6, 1.2)
        draw.rectangle([cx - a, cy - b, cx + a, cy + b], fill=1)
    else:
        n = 3 if shape == "triangle" else int(rng.integers(5, 8))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n)) if n > 3 else \
            rng.uniform(0, 2 * np.pi) + np.array([0, 2.1, 4.2])
        radii = r * rng.uniform(0.7, 1.2, n)
        points = [(cx + rr * np.cos(t), cy + rr * np.sin(t)) for rr, t in zip(radii, angles)]
        draw.polygon(points, fill=1)
    return np.asarray(mask, dtype=bool)


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    gray = rng.uniform(90, 170)
    tint = rng.uniform(-12, 12, size=3)
    coarse = rng.uniform(-35, 35, size=(max(2, h // 16), max(2, w // 16)))
    blobs = np.asarray(Image.fromarray(coarse.astype(np.float32), mode="F")
                       .resize((w, h), Image.BILINEAR))
    return gray + tint[None, None, :] + blobs[:, :, None]


def make_sample(index: int, size: Tuple[int, int], num_classes: int,
                seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """One (RGB uint8 image, uint8 label with 255 borders) pair, a pure function of its args."""
    h, w = size
    rng = np.random.default_rng([seed, index])
    colors = _class_colors(num_classes)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = _background(h, w, rng)
    label = np.zeros((h, w), dtype=np.uint8)
    for _ in range(int(rng.integers(2, 6))):
        k = int(rng.integers(1, num_classes))
        mask = _shape_mask(h, w, rng)
        pattern = _texture(k, yy, xx, rng)[:, :, None]
        fill = colors[k, 0] * pattern + colors[k, 1] * (1 - pattern)
        image[mask] = fill[mask]
        label[mask] = k
    image += rng.normal(0, 6, size=image.shape)
    edge = np.zeros((h, w), dtype=bool)
    edge[:, 1:] |= label[:, 1:] != label[:, :-1]
    edge[:, :-1] |= label[:, 1:] != label[:, :-1]
    edge[1:, :] |= label[1:, :] != label[:-1, :]
    edge[:-1, :] |= label[1:, :] != label[:-1, :]
    label[edge] = 255
    return np.clip(image, 0, 255).astype(np.uint8), label


def _size(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = (int(v) for v in size)
    return h, w


def make_synthetic_dataset(root: str, num_train: int = 40, num_val: int = 10,
                           size: Union[int, Sequence[int]] = (128, 160), num_classes: int = 5,
                           seed: int = 0,
                           val_sizes: Optional[Sequence[Sequence[int]]] = None) -> str:
    """Write a synthetic set in the VOC layout under ``root``; returns ``root``.

    Every image is ``size``, except that val image k is ``val_sizes[k % len(val_sizes)]`` when
    given (many sizes, as in VOC val, for evaluation benchmarks).

    Files: ``JPEGImages/*.jpg``, ``SegmentationClass/*.png`` (VOC palette), ``ImageSets/
    Segmentation/{train,val,trainval}.txt`` and ``synthetic.json`` (written last: a set without it
    is incomplete). Refuses a non-empty ``root`` that is not already a synthetic set.
    """
    h, w = _size(size)
    if not 2 <= num_classes <= 255:
        raise ValueError(f"num_classes must be in [2, 255], got {num_classes}")
    if num_train < 1 or num_val < 1:
        raise ValueError(f"num_train and num_val must be >= 1, got {num_train}, {num_val}")
    if h < 8 or w < 8:
        raise ValueError(f"size must be at least 8x8, got {h}x{w}")
    sizes = [(h, w)] * num_train + [_size(val_sizes[k % len(val_sizes)]) if val_sizes else (h, w)
                                    for k in range(num_val)]
    if min(min(hw) for hw in sizes) < 8:
        raise ValueError(f"val_sizes must be at least 8x8, got {val_sizes}")
    meta_path = os.path.join(root, META_FILE)
    if os.path.isdir(root) and os.listdir(root) and not os.path.isfile(meta_path):
        raise DataError(f"{root}: folder is not empty and holds no synthetic set; "
                        "refusing to write into it")
    if os.path.exists(root) and not os.path.isdir(root):
        raise DataError(f"{root}: exists and is not a folder")
    image_dir = os.path.join(root, "JPEGImages")
    label_dir = os.path.join(root, "SegmentationClass")
    list_dir = os.path.join(root, "ImageSets", "Segmentation")
    for d in (image_dir, label_dir, list_dir):
        os.makedirs(d, exist_ok=True)
    if os.path.isfile(meta_path):
        os.remove(meta_path)  # incomplete until rewritten below
    splits = {"train": [f"synth_{i:06d}" for i in range(num_train)],
              "val": [f"synth_{i:06d}" for i in range(num_train, num_train + num_val)]}
    splits["trainval"] = splits["train"] + splits["val"]
    for i, sid in enumerate(splits["trainval"]):
        image, label = make_sample(i, sizes[i], num_classes, seed)
        Image.fromarray(image).save(os.path.join(image_dir, sid + ".jpg"), quality=95)
        save_mask(label, os.path.join(label_dir, sid + ".png"))
    for split, ids in splits.items():
        with open(os.path.join(list_dir, f"{split}.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(ids) + "\n")
    meta = {"format": FORMAT, "version": 1, "num_classes": num_classes,
            "classes": synthetic_classes(num_classes), "seed": seed, "num_train": num_train,
            "num_val": num_val, "size": [h, w]}
    if val_sizes:
        meta["val_sizes"] = [list(hw) for hw in sizes[num_train:]]
    with open(meta_path, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
    return root


