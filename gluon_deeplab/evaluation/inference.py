"""Inference on whole images: multi-scale, flip, sliding window.

Every image is run at its own size, padded with the mean at the bottom and right to a
``output_stride * k + 1`` from a short ladder of sizes (:func:`bucket_size`: 257, 385, 513, ...)
and cropped back (nothing dropped): the network sees a few input shapes instead of one per image
size. Splits are evaluated by :mod:`.split`.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import mxnet as mx
import numpy as np

from ..data.transforms import MEAN, STD
from ..models.upsample import bucket_size, padded_size

FUSIONS = ("mean", "max")
# Fraction of a crop that consecutive sliding windows share.
WINDOW_OVERLAP = 1.0 / 3.0

CropSize = Union[int, Tuple[int, int], None]


def _pair(crop_size: CropSize) -> Optional[Tuple[int, int]]:
    if crop_size is None:
        return None
    if isinstance(crop_size, int):
        crop_size = (crop_size, crop_size)
    h, w = (int(v) for v in crop_size)
    if h < 1 or w < 1:
        raise ValueError(f"crop_size must be positive, got {crop_size}")
    return h, w


def output_stride_of(net: Any) -> Optional[int]:
    """The output stride of a model (a :class:`DeepLabV3`, or an export loaded with its meta
    file); None when unknown, and then images are not padded."""
    stride = getattr(net, "output_stride", None)
    return int(stride) if stride else None


def _logits(net: Callable, x: mx.nd.NDArray, stride: Optional[int],
            buckets: bool = True) -> mx.nd.NDArray:
    """Logits of ``x`` (1 x 3 x H x W). With a known ``stride`` the image is padded at the
    bottom and right with the mean (0 once normalized) to ``stride * k + 1`` (the bucket of
    :func:`bucket_size`, or with ``buckets=False`` the smallest such size) and the logits are
    cropped back, so that a feature cell lies on the image's last pixel."""
    _, _, h, w = x.shape
    pad = bucket_size if buckets else padded_size
    ph, pw = (pad(h, stride), pad(w, stride)) if stride else (h, w)
    if (ph, pw) != (h, w):
        x = mx.nd.pad(x, mode="constant", constant_value=0.0,
                      pad_width=(0, 0, 0, 0, 0, ph - h, 0, pw - w))
    out = net(x)
    out = out[0] if isinstance(out, (list, tuple)) else out
    return out[:, :, :h, :w] if (ph, pw) != (h, w) else out


def _window_starts(size: int, crop: int) -> List[int]:
    """Start offsets of windows of length ``crop`` covering ``size`` with overlap."""
    if size <= crop:
        return [0]
    stride = max(1, int(math.ceil(crop * (1.0 - WINDOW_OVERLAP))))
    count = int(math.ceil((size - crop) / stride)) + 1
    return sorted({min(i * stride, size - crop) for i in range(count)})


def _softmax_windowed(net: Callable, x: mx.nd.NDArray, crop: Optional[Tuple[int, int]],
                      stride: Optional[int], buckets: bool = True) -> mx.nd.NDArray:
    """Softmax probabilities 1 x C x H x W; windows of ``crop`` averaged where they overlap."""
    _, _, h, w = x.shape
    if crop is None or (h <= crop[0] and w <= crop[1]):
        return mx.nd.softmax(_logits(net, x, stride, buckets), axis=1)
    ch, cw = min(crop[0], h), min(crop[1], w)
    total: Optional[mx.nd.NDArray] = None
    count = np.zeros((h, w), dtype=np.float32)
    for top in _window_starts(h, ch):
        for left in _window_starts(w, cw):
            window = x[:, :, top:top + ch, left:left + cw]
            prob = mx.nd.softmax(_logits(net, window, stride, buckets), axis=1)
            if total is None:
                total = mx.nd.zeros((1, prob.shape[1], h, w), ctx=x.context)
            total[:, :, top:top + ch, left:left + cw] += prob
            count[top:top + ch, left:left + cw] += 1
    return total / mx.nd.array(count, ctx=x.context).reshape((1, 1, h, w))


def _resize(x: mx.nd.NDArray, height: int, width: int) -> mx.nd.NDArray:
    """Resize between two pixel grids with corners aligned: the same mapping both ways, so
    a scale's probabilities come back to the pixels its image was sampled from."""
    if x.shape[2] == height and x.shape[3] == width:
        return x
    return mx.nd.contrib.BilinearResize2D(x, height=height, width=width, align_corners=True)


def predict_probabilities_nd(net: Callable, image: mx.nd.NDArray, ctx: mx.Context,
                             scales: Sequence[float] = (1.0,), flip: bool = False,
                             fusion: str = "mean", crop_size: CropSize = None,
                             buckets: bool = True) -> mx.nd.NDArray:
    """Like :func:`predict_probabilities` but returns a C x H x W NDArray on ``ctx`` without
    waiting for the result (so several devices can be kept busy)."""
    stride = output_stride_of(net)
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    if not scales:
        raise ValueError("scales must hold at least one scale")
    if any(float(s) <= 0 for s in scales):
        raise ValueError(f"scales must be positive, got {tuple(scales)}")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be a normalized 3 x H x W array, got shape {image.shape}")
    crop = _pair(crop_size)
    x = image.as_in_context(ctx).astype("float32").expand_dims(0)
    _, _, h, w = x.shape
    fused: Optional[mx.nd.NDArray] = None
    n = 0
    for scale in scales:
        sh, sw = max(1, int(round(h * float(scale)))), max(1, int(round(w * float(scale))))
        xs = _resize(x, sh, sw)
        inputs = [(xs, False)] + ([(xs.flip(axis=3), True)] if flip else [])
        for xi, flipped in inputs:
            prob = _softmax_windowed(net, xi, crop, stride, buckets)
            if flipped:
                prob = prob.flip(axis=3)
            prob = _resize(prob, h, w)
            if fused is None:
                fused = prob
            elif fusion == "mean":
                fused = fused + prob
            else:
                fused = mx.nd.maximum(fused, prob)
            n += 1
    if fusion == "mean":
        fused = fused / n
    else:  # max fusion: renormalize so the result is still a distribution per pixel
        fused = fused / fused.sum(axis=1, keepdims=True)
    return fused[0]


def predict_probabilities(net: Callable, image: mx.nd.NDArray, ctx: mx.Context,
                          scales: Sequence[float] = (1.0,), flip: bool = False,
                          fusion: str = "mean", crop_size: CropSize = None,
                          buckets: bool = True) -> np.ndarray:
    """Softmax probabilities (float32 C x H x W) for one normalized 3 x H x W image.

    Each scale resizes the image bilinearly, optionally adds its horizontal mirror, runs the
    net (by overlapping ``crop_size`` windows when the scaled image is larger than that) and
    resizes the probabilities back to H x W; the results are fused by their ``mean`` or
    per-pixel ``max`` (renormalized to sum to 1). Every image or window the net sees is
    padded with the mean to ``output_stride * k + 1`` (:func:`output_stride_of`) and its
    logits cropped back, as official DeepLab pads to 513: to the size's bucket
    (:func:`bucket_size`), or with ``buckets=False`` to the smallest such size.
    """
    return predict_probabilities_nd(net, image, ctx, scales, flip, fusion, crop_size,
                                    buckets).asnumpy().astype(np.float32)


def denormalize(image: mx.nd.NDArray) -> np.ndarray:
    """The uint8 H x W x 3 RGB image behind a normalized 3 x H x W array."""
    arr = image.asnumpy().transpose(1, 2, 0)
    arr = arr * np.asarray(STD) + np.asarray(MEAN)
    return np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)


def save_probability_file(prob: np.ndarray, path: str) -> str:
    """Write C x H x W probabilities as float16 ``.npy`` (half the size; ties need no more)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.save(path, np.asarray(prob, dtype=np.float16))
    return path
