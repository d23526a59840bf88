"""Joint image/label transforms (numpy + PIL, the training hot path).

Training: random scale in [0.5, 2.0], pad (image with the mean, i.e. 0 after normalization; label
with ignore = 255), random crop, horizontal flip, optional Gaussian blur. Scale + crop are done in
one PIL ``resize(box=...)`` call that only computes the pixels of the crop (same result as resizing
the whole image and cropping, at a fraction of the cost). Labels are resized with nearest
neighbour, so they stay class indices. The loader ships crops as uint8 (``raw=True``: a quarter of
the bytes to copy and to hold in shared memory; padding is the mean rounded to uint8) and the
trainer normalizes them on the device (:func:`normalize_batch`). Validation: the whole image,
full-size label."""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import mxnet as mx
import numpy as np
from PIL import Image, ImageFilter

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
IGNORE_LABEL = 255

_MEAN255 = np.asarray(MEAN, dtype=np.float32) * 255.0
_INV_STD255 = 1.0 / (np.asarray(STD, dtype=np.float32) * 255.0)
# The uint8 colour nearest the mean: a raw crop's padding. Normalized it is at most
# PAD_ERROR (0.0082) from the exact 0 that the float pipeline pads with.
PAD_COLOUR = np.round(_MEAN255).astype(np.uint8)
PAD_ERROR = float(np.max(np.abs(PAD_COLOUR - _MEAN255) * _INV_STD255))
_DEVICE_STATS: Dict[mx.Context, Tuple[mx.nd.NDArray, mx.nd.NDArray]] = {}


def normalize_numpy(image: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """uint8 H x W x 3 RGB -> float32 3 x H x W, ``(x / 255 - MEAN) / STD`` (model zoo stats),
    written into ``out`` when given."""
    if out is None:
        out = np.empty((3,) + image.shape[:2], dtype=np.float32)
    for c in range(3):
        channel = out[c]
        np.subtract(image[:, :, c], _MEAN255[c], out=channel, dtype=np.float32)
        channel *= _INV_STD255[c]
    return out


def normalize_batch(images: mx.nd.NDArray) -> mx.nd.NDArray:
    """uint8 N x 3 x H x W -> float32 ``(x / 255 - MEAN) / STD``, computed on ``images``'s
    device with the same float32 operations as :func:`normalize_numpy` (equal results). A
    float batch is taken as normalized already and returned as it is."""
    if images.dtype != np.uint8:
        return images
    ctx = images.context
    if ctx not in _DEVICE_STATS:
        _DEVICE_STATS[ctx] = (mx.nd.array(_MEAN255.reshape(1, 3, 1, 1), ctx=ctx),
                              mx.nd.array(_INV_STD255.reshape(1, 3, 1, 1), ctx=ctx))
    mean, inv_std = _DEVICE_STATS[ctx]
    return mx.nd.broadcast_mul(mx.nd.broadcast_sub(images.astype(np.float32), mean), inv_std)


def to_ndarray(array: np.ndarray, ctx: Optional[mx.Context] = None,
               dtype: Optional[type] = np.float32) -> mx.nd.NDArray:
    """NDArray copy of a numpy array, float32 or (``dtype=None``) of the array's own dtype:
    one copy, where ``mx.nd.array`` makes two (1.8x its speed for a 4x3x321x321 batch on an AMD
    EPYC, AVX2)."""
    out = mx.nd.empty(array.shape, ctx=ctx or mx.cpu(), dtype=dtype or array.dtype)
    out[:] = array
    return out


def normalize(image: np.ndarray) -> mx.nd.NDArray:
    """uint8 H x W x 3 RGB -> normalized float32 NDArray 3 x H x W (the model's input format)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"normalize expects a uint8 H x W x 3 RGB array, got {image.dtype} {image.shape}")
    return to_ndarray(normalize_numpy(image))


def _pair(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


class TrainTransform:
    """Random scale / pad / crop / flip / blur of an (image, label) pair, then normalization.

    Called as ``t(image uint8 HxWx3, label uint8 HxW, rng: np.random.Generator)`` and returns
    ``(image float32 3 x Ch x Cw, label float32 Ch x Cw)``; every random choice comes from ``rng``
    so a seeded generator reproduces the sample exactly. ``raw=True`` returns the same crop
    unnormalized, ``(image uint8 3 x Ch x Cw padded with PAD_COLOUR, label uint8)``:
    :func:`normalize_batch` of it equals the float crop except in the padding (``PAD_ERROR``).
    """

    def __init__(self, crop_size: Union[int, Sequence[int]] = 513,
                 scale_range: Tuple[float, float] = (0.5, 2.0), flip: bool = True,
                 blur_prob: float = 0.0, ignore_label: int = IGNORE_LABEL):
        self.crop_h, self.crop_w = _pair(crop_size)
        if self.crop_h < 1 or self.crop_w < 1:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        lo, hi = scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < min <= max, got {scale_range}")
        self.scale_range = (float(lo), float(hi))
        self.flip = flip
        self.blur_prob = float(blur_prob)
        self.ignore_label = ignore_label

    def _crop(self, image: np.ndarray, label: np.ndarray,
              rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray, int, int]:
        """(image crop uint8 ch x cw x 3, label crop ch x cw, oy, ox): the scaled, cropped,
        flipped (and blurred) window and where it lands in the padded output."""
        h, w = label.shape
        scale = rng.uniform(*self.scale_range)
        sh, sw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        # Crop window in the scaled image, and where it lands in the (padded) output.
        ch, cw = min(self.crop_h, sh), min(self.crop_w, sw)
        y0 = int(rng.integers(0, sh - ch + 1))
        x0 = int(rng.integers(0, sw - cw + 1))
        oy = int(rng.integers(0, self.crop_h - ch + 1))
        ox = int(rng.integers(0, self.crop_w - cw + 1))
        flip = self.flip and rng.random() < 0.5
        blur = self.blur_prob > 0 and rng.random() < self.blur_prob
        radius = rng.uniform(0.5, 1.5) if blur else 0.0

        fy, fx = h / sh, w / sw
        box = (x0 * fx, y0 * fy, (x0 + cw) * fx, (y0 + ch) * fy)
        img = Image.fromarray(image).resize((cw, ch), Image.BILINEAR, box=box)
        if blur:
            img = img.filter(ImageFilter.GaussianBlur(radius))
        lbl = Image.fromarray(label).resize((cw, ch), Image.NEAREST, box=box)
        img_np = np.asarray(img)
        lbl_np = np.asarray(lbl)
        if flip:
            img_np = img_np[:, ::-1]
            lbl_np = lbl_np[:, ::-1]
        return img_np, lbl_np, oy, ox

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator,
                 raw: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        img_np, lbl_np, oy, ox = self._crop(image, label, rng)
        ch, cw = lbl_np.shape
        size = (self.crop_h, self.crop_w)
        if raw:
            if not 0 <= self.ignore_label <= 255:
                raise ValueError(f"a uint8 crop cannot hold ignore_label {self.ignore_label}")
            out_img = np.empty((3,) + size, dtype=np.uint8)
            out_img[:] = PAD_COLOUR[:, None, None]
            out_img[:, oy:oy + ch, ox:ox + cw] = img_np.transpose(2, 0, 1)
        else:
            out_img = np.zeros((3,) + size, dtype=np.float32)
            normalize_numpy(img_np, out=out_img[:, oy:oy + ch, ox:ox + cw])
        out_lbl = np.full(size, self.ignore_label, dtype=np.uint8 if raw else np.float32)
        out_lbl[oy:oy + ch, ox:ox + cw] = lbl_np
        return out_img, out_lbl


class ValTransform:
    """Whole image, normalized; full-size label as float32 (no resize, no padding)."""

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator = None,
                 raw: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        del rng, raw  # evaluation pads and normalizes whole images on the host
        return normalize_numpy(image), label.astype(np.float32)
