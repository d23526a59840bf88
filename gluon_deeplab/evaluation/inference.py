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


def _padded_shape(h: int, w: int, stride: Optional[int], ctx: mx.Context,
                  buckets: Optional[bool]) -> Tuple[int, int]:
    """The H x W an h x w input is padded to: ``stride * k + 1`` (the bucket of
    :func:`bucket_size`, or with ``buckets=False`` the smallest such size); ``buckets=None``:
    buckets on a GPU (few graph shapes: no re-planning, no cuDNN autotune per image size),
    the image's own size on a CPU. Unknown stride: not padded."""
    if not stride:
        return h, w
    if buckets is None:
        buckets = ctx.device_type == "gpu"
    pad = bucket_size if buckets else padded_size
    return pad(h, stride), pad(w, stride)


def _logits_batch(net: Callable, xs: Sequence[mx.nd.NDArray], stride: Optional[int],
                  buckets: Optional[bool] = None) -> List[mx.nd.NDArray]:
    """Logits of each ``x`` (1 x 3 x h x w) of ``xs``, run as one batch: each is padded at the
    bottom and right with the mean (0 once normalized) to the padded shape they share
    (:func:`_padded_shape`), so that a feature cell lies on the image's last pixel, and its
    logits are cropped back. The extra padding of a bucket enters the image-pooling average,
    so buckets and own sizes can differ (docs/evaluation.md)."""
    ph, pw = _padded_shape(xs[0].shape[2], xs[0].shape[3], stride, xs[0].context, buckets)
    padded = []
    for x in xs:
        _, _, h, w = x.shape
        if _padded_shape(h, w, stride, x.context, buckets) != (ph, pw):
            raise ValueError(f"a batch holds inputs padded to {ph}x{pw} and to another shape "
                             f"({h}x{w}); batch only inputs of one batch_key")
        padded.append(x if (ph, pw) == (h, w) else mx.nd.pad(
            x, mode="constant", constant_value=0.0,
            pad_width=(0, 0, 0, 0, 0, ph - h, 0, pw - w)))
    out = net(padded[0] if len(padded) == 1 else mx.nd.concat(*padded, dim=0))
    out = out[0] if isinstance(out, (list, tuple)) else out
    if len(xs) == 1:
        h, w = xs[0].shape[2:]
        return [out[:, :, :h, :w] if (ph, pw) != (h, w) else out]
    return [out[i:i + 1, :, :x.shape[2], :x.shape[3]] for i, x in enumerate(xs)]


def _logits(net: Callable, x: mx.nd.NDArray, stride: Optional[int],
            buckets: Optional[bool] = None) -> mx.nd.NDArray:
    """Logits of one ``x`` (1 x 3 x H x W), padded and cropped back (:func:`_logits_batch`)."""
    return _logits_batch(net, [x], stride, buckets)[0]


def _window_starts(size: int, crop: int) -> List[int]:
    """Start offsets of windows of length ``crop`` covering ``size`` with overlap."""
    if size <= crop:
        return [0]
    stride = max(1, int(math.ceil(crop * (1.0 - WINDOW_OVERLAP))))
    count = int(math.ceil((size - crop) / stride)) + 1
    return sorted({min(i * stride, size - crop) for i in range(count)})


def _softmax_windowed(net: Callable, x: mx.nd.NDArray, crop: Optional[Tuple[int, int]],
                      stride: Optional[int], buckets: Optional[bool] = None) -> mx.nd.NDArray:
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


def _scaled_size(h: int, w: int, scale: float) -> Tuple[int, int]:
    return max(1, int(round(h * float(scale)))), max(1, int(round(w * float(scale))))


def batch_key(net: Any, height: int, width: int, ctx: mx.Context,
              scales: Sequence[float] = (1.0,), crop_size: CropSize = None,
              buckets: Optional[bool] = None) -> Optional[Tuple[Tuple[int, int], ...]]:
    """What images must share to be run as one batch by :func:`predict_probabilities_batch`:
    the padded input shape at each scale; None for an image that is cut into sliding
    windows at some scale (it runs alone)."""
    stride, crop = output_stride_of(net), _pair(crop_size)
    key = []
    for scale in scales:
        sh, sw = _scaled_size(height, width, scale)
        if crop is not None and (sh > crop[0] or sw > crop[1]):
            return None
        key.append(_padded_shape(sh, sw, stride, ctx, buckets))
    return tuple(key)


def _check_request(images: Sequence[mx.nd.NDArray], scales: Sequence[float],
                   fusion: str) -> None:
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    if not scales:
        raise ValueError("scales must hold at least one scale")
    if any(float(s) <= 0 for s in scales):
        raise ValueError(f"scales must be positive, got {tuple(scales)}")
    if not images:
        raise ValueError("a batch needs at least one image")
    for image in images:
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image must be a normalized 3 x H x W array, got shape "
                             f"{image.shape}")


def predict_probabilities_batch(net: Callable, images: Sequence[mx.nd.NDArray], ctx: mx.Context,
                                scales: Sequence[float] = (1.0,), flip: bool = False,
                                fusion: str = "mean", crop_size: CropSize = None,
                                buckets: Optional[bool] = None) -> List[mx.nd.NDArray]:
    """:func:`predict_probabilities_nd` of several images at once: each scale (and its mirror)
    of every image runs as one batch, each image padded to the shape they share (several
    images must have one :func:`batch_key`, else ValueError). Each result is that image's
    alone (up to the float rounding of another batch size), C x H x W on ``ctx``, not waited
    for. The one inference function: every caller goes through it."""
    _check_request(images, scales, fusion)
    stride, crop = output_stride_of(net), _pair(crop_size)
    xs = [image.as_in_context(ctx).astype("float32").expand_dims(0) for image in images]
    if len(xs) > 1:
        keys = {batch_key(net, x.shape[2], x.shape[3], ctx, scales, crop, buckets) for x in xs}
        if len(keys) != 1 or None in keys:
            raise ValueError("images of one batch must share their padded input shapes and "
                             "not be cut into windows (see batch_key)")
    fused: List[Optional[mx.nd.NDArray]] = [None] * len(xs)
    n = 0
    for scale in scales:
        sizes = [x.shape[2:] for x in xs]
        scaled = [_resize(x, *_scaled_size(h, w, scale)) for x, (h, w) in zip(xs, sizes)]
        for flipped in (False, True) if flip else (False,):
            inputs = [x.flip(axis=3) for x in scaled] if flipped else scaled
            if len(inputs) == 1:
                probs = [_softmax_windowed(net, inputs[0], crop, stride, buckets)]
            else:
                probs = [mx.nd.softmax(out, axis=1)
                         for out in _logits_batch(net, inputs, stride, buckets)]
            for i, (prob, (h, w)) in enumerate(zip(probs, sizes)):
                prob = _resize(prob.flip(axis=3) if flipped else prob, h, w)
                if fused[i] is None:
                    fused[i] = prob
                elif fusion == "mean":
                    fused[i] = fused[i] + prob
                else:
                    fused[i] = mx.nd.maximum(fused[i], prob)
            n += 1
    if fusion == "mean":
        return [f[0] / n for f in fused]
    # max fusion: renormalize so the result is still a distribution per pixel
    return [(f / f.sum(axis=1, keepdims=True))[0] for f in fused]


def predict_probabilities_nd(net: Callable, image: mx.nd.NDArray, ctx: mx.Context,
                             scales: Sequence[float] = (1.0,), flip: bool = False,
                             fusion: str = "mean", crop_size: CropSize = None,
                             buckets: Optional[bool] = None) -> mx.nd.NDArray:
    """Like :func:`predict_probabilities` but returns a C x H x W NDArray on ``ctx`` without
    waiting for the result (so several devices can be kept busy)."""
    return predict_probabilities_batch(net, [image], ctx, scales, flip, fusion, crop_size,
                                       buckets)[0]


def predict_probabilities(net: Callable, image: mx.nd.NDArray, ctx: mx.Context,
                          scales: Sequence[float] = (1.0,), flip: bool = False,
                          fusion: str = "mean", crop_size: CropSize = None,
                          buckets: Optional[bool] = None) -> np.ndarray:
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
