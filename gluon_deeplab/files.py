"""Files written whole or not at all: the one way checkpoints, exports, logs, plots and caches
reach the disk (a crash or a full disk leaves the old file, never half of a new one)."""

from __future__ import annotations

import os
import tempfile
from typing import Callable


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str, write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)``, flush the result to disk, then rename it onto ``path``.

    The file gets the mode a plain ``open(path, 'w')`` would give (0666 minus the umask), not
    the 0600 of ``mkstemp``.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
