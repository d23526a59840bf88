"""The four segmentation metrics of written masks against label PNGs, computed here with plain
numpy, so that tests can check the metrics that eval.py reports against the masks it writes."""

from __future__ import annotations

import os
from typing import Dict, Iterable

import numpy as np
from PIL import Image


def metrics_of_masks(masks: Iterable[str], label_dir: str, num_classes: int,
                     ignore_label: int = 255) -> Dict[str, float]:
    """Pixel accuracy, mean accuracy, mIoU and fwIoU of the mask PNGs (class ids) against the
    labels of the same name in ``label_dir``, over classes that occur (one matrix for all)."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    for path in masks:
        pred = np.asarray(Image.open(path)).astype(np.int64)
        label = np.asarray(Image.open(os.path.join(label_dir, os.path.basename(path))))
        keep = label != ignore_label
        matrix += np.bincount(num_classes * label[keep].astype(np.int64) + pred[keep],
                              minlength=num_classes ** 2).reshape(num_classes, num_classes)
    tp, gt = np.diag(matrix), matrix.sum(axis=1)
    union = gt + matrix.sum(axis=0) - tp
    present = union > 0
    return {"pixel_accuracy": tp.sum() / matrix.sum(),
            "mean_accuracy": (tp[gt > 0] / gt[gt > 0]).mean(),
            "miou": (tp[present] / union[present]).mean(),
            "fwiou": (gt[present] * tp[present] / union[present]).sum() / matrix.sum(),
            "num_pixels": int(matrix.sum())}
