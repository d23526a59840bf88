"""Which instruction set oneDNN ran: read from its verbose log (``DNNL_VERBOSE`` in MXNet's
oneDNN 2.x, ``ONEDNN_VERBOSE`` in PyTorch's 3.x), so a row names what really ran, AMX or not.

A bench row's process logs every oneDNN primitive it executes to a file
(:func:`verbose_log`), and :func:`isa_from_verbose` names the ISA of the convolutions that
took the most time (``jit:avx2`` -> ``avx2``, ``brgconv:avx512_core_amx`` ->
``avx512_core_amx``, ``jit_int8:avx2`` -> ``avx2``). Without a convolution run by a JIT
kernel (gemm-based or none), it falls back to the CPU's best ISA from oneDNN's info line.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
from collections import defaultdict
from typing import Dict, Iterator, List

VERBOSE_VARIABLES = ("DNNL_VERBOSE", "ONEDNN_VERBOSE", "MKLDNN_VERBOSE")
# oneDNN's info line ("isa:Intel AVX2") in the names its kernels use, most capable first
_INFO_ISA = (("AMX", "avx512_core_amx"), ("bfloat16", "avx512_core_bf16"),
             ("AVX-512", "avx512_core"), ("AVX2", "avx2"), ("SSE4.1", "sse41"))


def _kernel_isa(implementation: str) -> str:
    """``brgconv:avx512_core_amx`` -> ``avx512_core_amx``; '' for gemm / reference kernels."""
    isa = implementation.rsplit(":", 1)[-1]
    return isa if isa.startswith(("avx", "sse", "amx")) else ""


def isa_from_verbose(log: str) -> str:
    """The ISA of the convolutions that ran longest in a oneDNN verbose ``log`` ('' if none)."""
    seconds: Dict[str, float] = defaultdict(float)
    cpu_isa = ""
    for line in log.splitlines():
        fields: List[str] = line.split(",")
        if ",info," in line and ",isa:" in line:
            text = line.split(",isa:", 1)[1]
            cpu_isa = next((isa for key, isa in _INFO_ISA if key in text), text)
        elif ",exec," in line and "convolution" in fields[:-1]:
            implementation = fields[fields.index("convolution") + 1]
            try:
                seconds[_kernel_isa(implementation)] += float(fields[-1])
            except ValueError:
                continue
    seconds.pop("", None)
    return max(seconds, key=seconds.get) if seconds else cpu_isa


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
