"""Training records: a JSON-lines log of every figure and a loss / mIoU curves image."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List

from ..checkpoint import atomic_write


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
