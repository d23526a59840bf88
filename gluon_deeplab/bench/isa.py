"""Which instruction set oneDNN ran: read from its verbose log (``DNNL_VERBOSE`` in MXNet's
oneDNN 2.x, ``ONEDNN_VERBOSE`` in PyTorch's 3.x), so a row names what really ran, AMX or not.

A bench row's process logs every oneDNN primitive it executes to a file
(:func:`verbose_log`); :func:`gluon_deeplab.amx.isa_from_verbose` names the ISA of the
convolutions that took the most time.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
from typing import Iterator, List

from ..amx import VERBOSE_VARIABLES


@contextlib.contextmanager
def verbose_log() -> Iterator[List[str]]:
    """Turn oneDNN's verbose log on for this process and send stdout (where oneDNN writes it)
    to a temporary file; on exit the list holds the log's text.

    Call it before the process runs its first oneDNN primitive: oneDNN reads the variable
    once. The log costs little time (one line per primitive run).
    """
    for name in VERBOSE_VARIABLES:
        os.environ[name] = "1"
    captured: List[str] = []
    libc = ctypes.CDLL(None)
    with tempfile.TemporaryFile(mode="w+b") as log:
        saved = os.dup(1)
        os.dup2(log.fileno(), 1)
        try:
            yield captured
        finally:
            sys.stdout.flush()
            libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
            log.seek(0)
            captured.append(log.read().decode("utf-8", "replace"))
