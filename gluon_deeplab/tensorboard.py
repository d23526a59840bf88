"""TensorBoard event files (the optional ``tensorboard`` extra, written with tensorboardX).

Events are written synchronously and flushed after each call: a killed process leaves on
disk everything it logged (tensorboardX's ``SummaryWriter`` queues events for a thread, and
a SIGKILL loses the queue). Each training process opens a new event file with a
``SessionLog.START``; a resumed run's, at its first new step, is a restart to TensorBoard's
readers, which then drop what the killed run logged past its checkpoint, so each step shows
once (as ``log.jsonl`` is truncated).
"""

from __future__ import annotations

import os
import re
import time
import weakref
from typing import Any, Mapping, Optional

import numpy as np

INSTALL_HINT = "pip install -e .[tensorboard]"
EVENT_FILE = re.compile(r"^events\.out\.tfevents\.(\d+)\.")
NOT_IN_TAG = re.compile(r"[^-\w.]")
# (metric key of ConfusionMatrix.metrics / eval.py's result, tag name)
METRIC_TAGS = (("miou", "mIoU"), ("pixel_accuracy", "pixel_accuracy"),
               ("mean_accuracy", "mean_accuracy"), ("fwiou", "fwIoU"))


def tensorboard_missing() -> Optional[str]:
    """None when tensorboardX imports, else the one line that says how to install it."""
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        return f"TensorBoard: no event files (tensorboardX is not installed: {INSTALL_HINT})"
    return None


def event_files(folder: str) -> list:
    """The event files in ``folder`` (names), oldest first."""
    if not os.path.isdir(folder):
        return []
    return sorted(name for name in os.listdir(folder) if EVENT_FILE.match(name))


def metric_scalars(prefix: str, metrics: Mapping[str, Any],
                   class_iou: Mapping[str, Optional[float]]) -> dict:
    """``{prefix}/mIoU`` ... ``{prefix}/fwIoU`` and ``{prefix}/IoU/<class>`` (a class absent
    from prediction and ground truth has no IoU and no point; characters a tag cannot hold,
    '/' included, become '_')."""
    scalars = {f"{prefix}/{tag}": metrics[key] for key, tag in METRIC_TAGS}
    for name, iou in class_iou.items():
        if iou is not None:
            scalars[f"{prefix}/IoU/{NOT_IN_TAG.sub('_', str(name))}"] = iou
    return scalars


def write_evaluation(folder: str, result: Mapping[str, Any]) -> None:
    """eval.py's metrics and per-class IoU as ``eval/...`` scalars at the model's iteration,
    in a new event file in ``folder``."""
    writer = EventWriter(folder)
    writer.scalars(metric_scalars("eval", result, result["per_class_iou"]),
                   result.get("iteration") or 0)
    writer.close()


def _after_newest_event_file(folder: str, longest: float = 2.0) -> None:
    """Wait (at most ``longest`` s) for the clock to pass the newest event file's second:
    tensorboardX names a file by the second it opens it, and the reader goes through a run's
    files in name order, so the new file must sort last (and not replace one of that name)."""
    stamps = [int(EVENT_FILE.match(name).group(1)) for name in event_files(folder)]
    deadline = time.monotonic() + longest
    while stamps and int(time.time()) <= max(stamps) and time.monotonic() < deadline:
        time.sleep(0.05)


class EventWriter:
    """One new event file in ``folder``: scalars, images and text at integer steps.

    ``session_start``: the file opens with a ``SessionLog.START`` at that step. A run's first
    START opens it; a later one is a restart: the readers drop the events at that step and
    later from the run's older files (the Python readers by the marker, the Rust data server
    as each tag's steps start again below what it holds).
    """

    def __init__(self, folder: str, session_start: Optional[int] = None):
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog

        os.makedirs(folder, exist_ok=True)
        _after_newest_event_file(folder)
        self._events = EventsWriter(os.path.join(folder, "events"))
        self._event = Event
        self._close = weakref.finalize(self, self._events.close)
        if session_start is not None:
            self._events.write_event(Event(step=session_start, wall_time=time.time(),
                                           session_log=SessionLog(status=SessionLog.START)))
        self._events.flush()

    def _write(self, summary: Any, step: int) -> None:
        self._events.write_event(self._event(wall_time=time.time(), step=int(step),
                                             summary=summary))

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        from tensorboardX import summary

        for tag, value in values.items():
            self._write(summary.scalar(tag, float(value)), step)
        self._events.flush()

    def image(self, tag: str, rgb: np.ndarray, step: int) -> None:
        """An RGB uint8 H x W x 3 image."""
        from tensorboardX import summary

        self._write(summary.image(tag, rgb, dataformats="HWC"), step)
        self._events.flush()

    def text(self, tag: str, text: str, step: int) -> None:
        """Markdown text (the Text tab renders it)."""
        from tensorboardX import summary

        self._write(summary.text(tag, text), step)
        self._events.flush()

    def close(self) -> None:
        self._close()
