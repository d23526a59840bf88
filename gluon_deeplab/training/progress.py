"""The loss of the steps between two log records, read from the device once per record, and
the checks made when it is read (a non-finite loss, an AMP loss scale that collapsed)."""

from __future__ import annotations

import math
import time
from typing import Optional, Union

import mxnet as mx

from .errors import TrainingDiverged
from .monitor import JsonlLog

MIN_LOSS_SCALE = 1.0  # AMP: a loss scale halved below this by overflows stops the run


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
