"""Training records: a JSON-lines log of every figure, its TensorBoard mirror, and a
loss / mIoU curves image."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ..evaluation.inference import denormalize, predict_probabilities_nd
from ..evaluation.visualize import panel
from ..files import atomic_write
from ..tensorboard import EventWriter, event_files, metric_scalars, tensorboard_missing

TENSORBOARD_DIR = "tensorboard"
NUM_PANELS = 4  # val images shown as image | label | prediction at each validation


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


class TrainingBoard:
    """The run's records as TensorBoard tracks in ``folder`` (OUTPUT_DIR/tensorboard/), with
    the image | label | prediction panels of the first val images at each validation."""

    def __init__(self, folder: str, net: Any = None, val_set: Any = None):
        self.folder, self.net, self.val_set = folder, net, val_set
        self.writer: Optional[EventWriter] = None
        self.images_per_step = 1

    def write(self, record: Dict[str, Any]) -> None:
        kind, step = record.get("kind"), int(record.get("iteration", 0))
        if kind == "start":
            self._open(record)
        elif self.writer is None:
            return
        elif kind == "train":
            scalars = {"train/lr": record["lr"],
                       "train/images_per_second": record["it_per_s"] * self.images_per_step}
            if record.get("loss") is not None:  # None: every step of the window was skipped
                scalars["train/loss"] = record["loss"]
            if "loss_scale" in record:
                scalars["train/amp_loss_scale"] = record["loss_scale"]
            self.writer.scalars(scalars, step)
        elif kind == "val":
            ious = record["per_class_iou"]
            classes = getattr(self.val_set, "classes", None) or [str(k) for k in range(len(ious))]
            self.writer.scalars(metric_scalars("val", record, dict(zip(classes, ious))), step)
            for index, picture in self._panels():
                self.writer.image(f"val/panel/{index}", picture, step)

    def _open(self, record: Dict[str, Any]) -> None:
        """A new event file. A fresh run's replaces those of a run that saved no checkpoint
        (as ``log.jsonl`` is replaced) and starts with the configuration; a resumed run's
        restarts the session after its checkpoint, which drops what the killed run logged
        later (as ``log.jsonl`` is truncated)."""
        self.images_per_step = record["args"]["batch_size"] * record.get("workers", 1)
        start = int(record["iteration"])
        if start:
            self.writer = EventWriter(self.folder, session_start=start + 1)
            return
        stale = event_files(self.folder)
        for name in stale:
            os.remove(os.path.join(self.folder, name))
        if stale:
            print(f"removed {len(stale)} event file(s) from {self.folder}: left by a run that "
                  "saved no checkpoint", flush=True)
        self.writer = EventWriter(self.folder, session_start=0)
        self.writer.text("config", config_markdown(record), 0)

    def _panels(self) -> Iterator[Tuple[int, np.ndarray]]:
        if self.net is None or self.val_set is None:
            return
        ctx = next(iter(self.net.collect_params().values())).list_ctx()[0]
        for index in range(min(NUM_PANELS, len(self.val_set))):
            image, label = self.val_set[index]
            prediction = predict_probabilities_nd(self.net, image, ctx).argmax(axis=0)
            label = label.asnumpy()
            label = np.where(label == self.val_set.ignore_label, 255, label)
            yield index, panel(denormalize(image), prediction.asnumpy(), label)


def config_markdown(record: Dict[str, Any]) -> str:
    """A run's start record as a Markdown table: the run (id, devices, length), then every
    setting."""
    rows = [(k, v) for k, v in record.items() if k not in ("kind", "iteration", "args")]
    rows += list(record.get("args", {}).items())
    lines = ["| setting | value |", "| --- | --- |"]
    lines += [f"| {name} | `{json.dumps(value, default=str)}` |" for name, value in rows]
    return "\n".join(lines)


class RunLog(JsonlLog):
    """``log.jsonl``, each record also sent to a :class:`TrainingBoard` when one is given."""

    def __init__(self, path: str, board: Optional[TrainingBoard] = None):
        super().__init__(path)
        self.board = board

    def write(self, record: Dict[str, Any]) -> None:
        super().write(record)
        if self.board is not None:
            self.board.write(record)


def open_run_log(out: str, name: str, tensorboard: bool, net: Any = None,
                 val_set: Any = None) -> RunLog:
    """The log ``out/name``; with ``tensorboard`` (the flag, on the chief) mirrored into
    ``out/tensorboard/``, or one line saying how to install the writer when it is missing."""
    board = None
    if tensorboard:
        missing = tensorboard_missing()
        if missing:
            print(missing, flush=True)
        else:
            board = TrainingBoard(os.path.join(out, TENSORBOARD_DIR), net, val_set)
    return RunLog(os.path.join(out, name), board)


def plot_curves(records: List[Dict[str, Any]], path: str) -> None:
    """Training loss and validation mIoU against the iteration, as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("kind") == "train"]
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
