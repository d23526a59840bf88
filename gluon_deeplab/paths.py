"""Checks that an output can be written, made before any work starts (one-line errors)."""

from __future__ import annotations

import os


def check_writable(path: str, flag: str, folder: bool = False) -> None:
    """Raise a one-line error if ``path`` (a file, or a folder when ``folder``) cannot be created
    or replaced: a file where a folder is needed on the way, a folder where the file goes, or a
    folder without write permission. Nothing is created."""
    path = os.path.abspath(path)
    if os.path.isdir(path) and not folder:
        raise IsADirectoryError(f"{flag} {path}: is a folder; expected a file path")
    if os.path.exists(path) and folder and not os.path.isdir(path):
        raise NotADirectoryError(f"{flag} {path}: is a file; expected a folder")
    target = path if folder and os.path.isdir(path) else os.path.dirname(path)
    while not os.path.exists(target):  # the first folder on the way that exists
        target = os.path.dirname(target)
    if not os.path.isdir(target):
        raise NotADirectoryError(f"{flag} {path}: {target} is a file, not a folder")
    if not os.access(target, os.W_OK | os.X_OK):
        raise PermissionError(f"{flag} {path}: folder {target} is not writable")
