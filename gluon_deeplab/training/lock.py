"""One trainer per output folder: an exclusive lock on a file in it, held for the run's lifetime.

It is a POSIX record lock (``fcntl.lockf``): the kernel drops it when its process ends, however
it ends (``kill -9`` included), so a lock left by a killed trainer never blocks the next run; and
unlike ``flock`` it is not shared with forked children (data-loading workers), which may outlive
a killed trainer for a moment. Record locks do not exclude threads of one process, so the folders
this process holds are also kept in a set. The lock file holds the PID of its holder, for the
message the second trainer prints. It is never deleted: removing it while another process has it
open would let two trainers lock two different files.
"""

from __future__ import annotations

import errno
import fcntl
import os
from typing import Optional, Set

from .errors import TrainingError

LOCK_FILE = ".train.lock"
_HELD: Set[str] = set()  # lock files held by this process


class FolderLocked(TrainingError):
    """Another process holds the output folder's lock."""

    def __init__(self, folder: str, pid: Optional[int]):
        self.folder, self.pid = folder, pid
        who = f"PID {pid}" if pid else "another process"
        super().__init__(f"{folder} is in use by another trainer ({who}); wait for it to end "
                         "or choose another --output_dir (nothing was changed)")


class FolderLock:
    """``with FolderLock(folder):`` holds ``folder``'s lock or raises :class:`FolderLocked`."""

    def __init__(self, folder: str):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_FILE)
        self._fd: Optional[int] = None

    def acquire(self) -> FolderLock:
        key = os.path.realpath(self.path)
        if key in _HELD:
            raise FolderLocked(self.folder, os.getpid())
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            pid = _read_pid(fd)
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES):  # held by another process
                raise FolderLocked(self.folder, pid) from None
            raise TrainingError(f"cannot lock {self.path} ({err.strerror}); the output folder "
                                "must be on a filesystem that supports file locks") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD.add(key)
        self._fd, self._key = fd, key
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the record lock
            _HELD.discard(self._key)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> Optional[int]:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except ValueError:  # the holder has not written its PID yet
        return None
