"""Training records: a JSON-lines log of every figure and a loss / mIoU curves image."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Dict, List, Optional, Union

import mxnet as mx

from ..checkpoint import atomic_write
from .errors import TrainingDiverged

MIN_LOSS_SCALE = 1.0  # AMP: a loss scale halved below this by overflows stops the run


class JsonlLog:
    """Append-only ``log.jsonl``: one JSON object per line (train steps, validations)."""

    def __init__(self, path: str):
        self.path = path

    def write(self, record: Dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=float) + "\n")
            f.flush()

    def read(self) -> List[Dict[str, Any]]:
        if not os.path.isfile(self.path):
            return []
        records = []
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError:  # a line cut by a kill
                        continue
        return records

    def truncate_after(self, iteration: int) -> None:
        """Drop records past ``iteration`` (written by a killed run after its last checkpoint)."""
        kept = [r for r in self.read() if r.get("iteration", 0) <= iteration]

        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r, default=float) + "\n" for r in kept)

        atomic_write(self.path, write)


class LossWindow:
    """The training losses since the last log record, summed where they were computed (on
    the device): reading them is a host sync, done once per log record, not once per step."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._sum: Union[None, float, mx.nd.NDArray] = None
        self.steps, self.skipped, self.first = 0, 0, None
        self.start = time.perf_counter()

    def add(self, iteration: int, loss: Union[float, mx.nd.NDArray]) -> None:
        """The loss of step ``iteration`` (1-based), one that updated the weights."""
        self.first = iteration if self.first is None else self.first
        self._sum = loss if self._sum is None else self._sum + loss
        self.steps += 1

    def mean(self) -> Optional[float]:
        """Mean loss of the steps added (None: none was)."""
        if self._sum is None:
            return None
        total = self._sum.asscalar() if isinstance(self._sum, mx.nd.NDArray) else self._sum
        return float(total) / self.steps

    def steps_per_second(self) -> float:
        return (self.steps + self.skipped) / max(time.perf_counter() - self.start, 1e-9)


def plot_curves(records: List[Dict[str, Any]], path: str) -> None:
    """Training loss and validation mIoU against the iteration, as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("kind") == "train" and r.get("loss") is not None]
    val = [r for r in records if r.get("kind") == "val"]
    fig, (ax_loss, ax_miou) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot([r["iteration"] for r in train], [r["loss"] for r in train], lw=1)
    ax_loss.set(xlabel="iteration", ylabel="training loss", title="loss")
    ax_miou.plot([r["iteration"] for r in val], [r["miou"] for r in val], "o-")
    ax_miou.set(xlabel="iteration", ylabel="validation mIoU", title="mIoU", ylim=(0, 1))
    for ax in (ax_loss, ax_miou):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80))
    plt.close(fig)


def log_window(window: LossWindow, done: int, lr: float, scaler, log: Optional[JsonlLog],
               bar, last_good: Optional[str]) -> None:
    """Read the window's loss (the step's one host sync, at the log interval), stop on a
    non-finite one, write the log record (``log`` None: not the chief) and start a new one."""
    mean = window.mean()
    if mean is not None and not math.isfinite(mean):
        where = (f"at iteration {done}" if window.first == done
                 else f"in iterations {window.first}-{done}")
        raise TrainingDiverged(
            f"loss is {mean} {where}: training stopped; the diverged weights were not saved "
            f"(last good checkpoint: {last_good or 'none'}); lower --initial_learning_rate "
            "and resume")
    record = {"kind": "train", "iteration": done, "loss": mean, "lr": lr,
              "it_per_s": window.steps_per_second()}
    if scaler is not None:
        record.update(amp_skipped=window.skipped, loss_scale=scaler.loss_scale)
    if log is not None:
        log.write(record)
    bar.set_postfix(loss="-" if mean is None else f"{mean:.4f}", lr=f"{lr:.2e}")
    window.reset()


def check_loss_scale(scaler, done: int, last_good: Optional[str]) -> None:
    """AMP: stop when overflows have halved the loss scale below ``MIN_LOSS_SCALE`` (a loss
    scale does not cure a forward pass that overflows by itself)."""
    if scaler.loss_scale < MIN_LOSS_SCALE:
        raise TrainingDiverged(
            f"AMP: {scaler.skipped} steps skipped for a non-finite loss or gradients, the loss "
            f"scale fell to {scaler.loss_scale:g} at iteration {done}: training stopped (last "
            f"good checkpoint: {last_good or 'none'}); lower --initial_learning_rate or train "
            "without --amp, and resume")
