"""Softmax cross-entropy over labelled pixels, normalized over the whole (multi-device) batch."""

from __future__ import annotations

from typing import Tuple, Union

import mxnet as mx

from ..data import IGNORE_LABEL

Outputs = Union[mx.nd.NDArray, Tuple[mx.nd.NDArray, mx.nd.NDArray]]


def pixel_cross_entropy_sum(logits: mx.nd.NDArray, label: mx.nd.NDArray,
                            ignore_label: int = IGNORE_LABEL) -> mx.nd.NDArray:
    """Sum of -log softmax(logits)[label] over the pixels whose label is not ``ignore_label``.

    Computed in fp32 whatever the logits' dtype (float16 logits under AMP on GPUs).
    """
    logits = logits.astype("float32", copy=False)
    label = label.astype("float32", copy=False)
    valid = label != ignore_label
    target = mx.nd.where(valid, label, mx.nd.zeros_like(label))
    picked = mx.nd.pick(mx.nd.log_softmax(logits, axis=1), target, axis=1)
    return -(picked * valid).sum()


def count_valid_pixels(labels: mx.nd.NDArray, ignore_label: int = IGNORE_LABEL) -> mx.nd.NDArray:
    """Number of labelled pixels of ``labels``, as a 1-element float32 array where the labels
    are (no copy to the host; exact up to 2**24 pixels, e.g. batch 63 at crop 513)."""
    return (labels != ignore_label).astype("float32").sum()


class SegmentationLoss:
    """Cross-entropy (+ ``aux_weight`` x auxiliary cross-entropy) / number of labelled pixels.

    ``normalizer`` is the labelled-pixel count of the WHOLE batch, not of one device's part:
    the per-device losses then add up (as the kvstore adds their gradients) to the loss of one
    device on the whole batch. A batch without labelled pixels gives a zero loss.
    """

    def __init__(self, ignore_label: int = IGNORE_LABEL, aux_weight: float = 0.0):
        if aux_weight < 0:
            raise ValueError(f"aux_weight must be >= 0, got {aux_weight}")
        self.ignore_label = ignore_label
        self.aux_weight = aux_weight

    def __call__(self, outputs: Outputs, label: mx.nd.NDArray,
                 normalizer: Union[int, mx.nd.NDArray]) -> mx.nd.NDArray:
        if isinstance(outputs, (tuple, list)):
            logits, aux_logits = outputs
        else:
            logits, aux_logits = outputs, None
        total = pixel_cross_entropy_sum(logits, label, self.ignore_label)
        if aux_logits is not None and self.aux_weight > 0:
            total = total + self.aux_weight * pixel_cross_entropy_sum(
                aux_logits, label, self.ignore_label)
        if isinstance(normalizer, mx.nd.NDArray):
            return total / mx.nd.maximum(normalizer, 1)
        return total / max(normalizer, 1)
