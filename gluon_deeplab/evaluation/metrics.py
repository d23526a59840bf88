"""Segmentation metrics from one confusion matrix accumulated over a whole split.

Per-image averaging (what seed 000 did) weights small images like large ones and turns a
class missing from one image into a 0; one matrix over the split avoids both.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np


class ConfusionMatrix:
    """A ``num_classes x num_classes`` pixel count; rows are ground truth, columns prediction.

    Pixels labelled ``ignore_label`` are not counted. Classes absent from both prediction and
    ground truth have no IoU / accuracy (``None``) and are left out of the means.
    """

    def __init__(self, num_classes: int, ignore_label: Optional[int] = 255):
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_label = ignore_label
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def reset(self) -> None:
        self.matrix[:] = 0

    def update(self, pred: Any, label: Any) -> None:
        """Count the pixels of one prediction / ground-truth pair (any equal shapes)."""
        pred, label = np.asarray(pred), np.asarray(label)
        if pred.shape != label.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from label shape "
                             f"{label.shape}")
        for name, arr in (("prediction", pred), ("label", label)):
            if arr.dtype.kind == "f":
                if not np.all(np.equal(np.mod(arr, 1), 0)):
                    raise ValueError(f"{name} holds non-integer values")
            elif arr.dtype.kind not in "iub":
                raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
        pred = pred.astype(np.int64).ravel()
        label = label.astype(np.int64).ravel()
        if self.ignore_label is not None:
            keep = label != self.ignore_label
            pred, label = pred[keep], label[keep]
        n = self.num_classes
        for name, arr in (("label", label), ("prediction", pred)):
            if arr.size and (arr.min() < 0 or arr.max() >= n):
                bad = arr[(arr < 0) | (arr >= n)][0]
                raise ValueError(f"{name} value {bad} outside [0, {n - 1}] "
                                 f"(ignore label {self.ignore_label})")
        self.matrix += np.bincount(label * n + pred, minlength=n * n).reshape(n, n)

    def merge(self, other: ConfusionMatrix) -> None:
        """Add the counts of another matrix (e.g. from another device or process)."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge a {other.num_classes}-class confusion matrix into "
                             f"a {self.num_classes}-class one")
        self.matrix += other.matrix

    def metrics(self) -> Dict[str, Any]:
        """Pixel accuracy, mean class accuracy, mIoU, frequency-weighted IoU, per-class IoU."""
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        gt = m.sum(axis=1)
        predicted = m.sum(axis=0)
        union = gt + predicted - tp
        total = m.sum()
        present = union > 0
        iou = np.divide(tp, union, out=np.zeros_like(tp), where=present)
        has_gt = gt > 0
        acc = np.divide(tp, gt, out=np.zeros_like(tp), where=has_gt)
        per_class: List[Optional[float]] = [float(v) if p else None
                                            for v, p in zip(iou, present)]
        return {
            "pixel_accuracy": float(tp.sum() / total) if total else 0.0,
            "mean_accuracy": float(acc[has_gt].mean()) if has_gt.any() else 0.0,
            "miou": float(iou[present].mean()) if present.any() else 0.0,
            "fwiou": float((gt * iou).sum() / total) if total else 0.0,
            "per_class_iou": per_class,
            "per_class_accuracy": [float(v) if h else None for v, h in zip(acc, has_gt)],
            "num_pixels": int(total),
        }

    def __repr__(self) -> str:
        return (f"ConfusionMatrix(num_classes={self.num_classes}, "
                f"ignore_label={self.ignore_label}, pixels={int(self.matrix.sum())})")
