"""The run folder: its checkpoints (last K kept, best, final), run ids, the one to resume from."""

from __future__ import annotations

import glob
import os
import re
from typing import Callable, List, Optional, Tuple

from ..checkpoint import BEST, FINAL, Checkpoint, load_checkpoint

CHECKPOINT_PATTERN = "checkpoint-{:08d}.params"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d{8})\.params$")
RUN_ID = "run_id"  # key of the run id in every checkpoint's ``extra`` record


def checkpoint_path(output_dir: str, iteration: int) -> str:
    return os.path.join(output_dir, CHECKPOINT_PATTERN.format(iteration))


def list_checkpoints(output_dir: str) -> List[Tuple[int, str]]:
    """(iteration, path) of the periodic checkpoints in ``output_dir``, oldest first."""
    found = []
    if os.path.isdir(output_dir):
        for name in os.listdir(output_dir):
            match = _CHECKPOINT_RE.match(name)
            if match:
                found.append((int(match.group(1)), os.path.join(output_dir, name)))
    return sorted(found)


def run_files(output_dir: str) -> List[str]:
    """Checkpoint files of an earlier run in ``output_dir`` (periodic, best, final)."""
    files = [path for _, path in list_checkpoints(output_dir)]
    files += [os.path.join(output_dir, n) for n in (BEST, FINAL)
              if os.path.isfile(os.path.join(output_dir, n))]
    return files


def latest_checkpoint(output_dir: str) -> Optional[str]:
    """The checkpoint ``--resume auto`` continues from: the newest periodic one, or
    ``final.params`` when the run finished (resuming it then has nothing left to do)."""
    final = os.path.join(output_dir, FINAL)
    if os.path.isfile(final):
        return final
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def remove_stale_temporaries(output_dir: str) -> List[str]:
    """Delete the temporary files that a killed write left behind (``.tmp-*``: checkpoints,
    log, curves; never a finished file). Call it only while holding the folder's lock."""
    removed = []
    for path in sorted(glob.glob(os.path.join(output_dir, ".tmp-*"))):
        if os.path.isfile(path):
            os.remove(path)
            removed.append(path)
    return removed


def run_id_of(checkpoint: Checkpoint) -> Optional[str]:
    """The id of the run that wrote ``checkpoint`` (None: written before runs had ids)."""
    return checkpoint.extra.get(RUN_ID)


def same_run(path: str, output_dir: str,
             read: Callable[[str], Checkpoint] = load_checkpoint) -> bool:
    """Whether checkpoint ``path`` belongs to the run in ``output_dir`` (a file of that folder,
    or the same run id as the folder's newest checkpoint); ``read`` loads a checkpoint (the
    trainer passes one that keeps what it read, so the run does not read ``path`` again)."""
    if os.path.dirname(os.path.realpath(path)) == os.path.realpath(output_dir):
        return True
    existing = run_files(output_dir)
    if not existing:
        return True
    theirs = latest_checkpoint(output_dir) or existing[0]
    ours = run_id_of(read(path))
    return ours is not None and ours == run_id_of(read(theirs))


def prune_checkpoints(output_dir: str, keep: int) -> List[str]:
    """Delete all but the ``keep`` newest periodic checkpoints (best/final are never touched)."""
    if keep < 1:
        raise ValueError(f"keep_checkpoints must be at least 1, got {keep}")
    found = list_checkpoints(output_dir)
    removed = [path for _, path in found[:-keep]]
    for path in removed:
        os.remove(path)
    return removed
