"""An AMX machine for test processes: import this module before gluon_deeplab.

On a CPU without AMX, importing it makes ``/proc/cpuinfo`` show the AMX flags and gives
``ctypes.CDLL(None)`` (libc, which ``gluon_deeplab.amx.arch_prctl`` calls) a ``syscall`` that
answers arch_prctl like a Linux that grants the AMX tile state (with ``AMX_SIM_KERNEL=refuse``:
one that refuses it); every option asked is recorded in ``KERNEL_CALLS``. On a CPU and kernel
with AMX nothing is faked: the tests run for real. Children made with 'spawn' import it again
(their target lives here), so they are on the same simulated machine.
"""

from __future__ import annotations

import builtins
import ctypes
import io
import os
import sys
from typing import List

AMX_FLAGS = ("amx_tile", "amx_bf16", "amx_int8", "avx512_bf16")
XCOMP_SUPP_WITH_AMX = 0x60007  # x87, SSE, AVX, XTILECFG (17), XTILEDATA (18)
KERNEL_CALLS: List[int] = []
_real_open = builtins.open
_real_cdll = ctypes.CDLL


def _real_cpuinfo() -> str:
    with _real_open("/proc/cpuinfo", encoding="utf-8") as f:
        return f.read()


class _FakeSyscall:
    restype = None

    def __init__(self, grant: bool):
        self.grant = grant
        self.granted = False

    def __call__(self, number, option, target):
        assert number.value == 158, number  # SYS_arch_prctl
        KERNEL_CALLS.append(option.value)
        if option.value == 0x1021:  # ARCH_GET_XCOMP_SUPP
            target._obj.value = XCOMP_SUPP_WITH_AMX
        elif option.value == 0x1023:  # ARCH_REQ_XCOMP_PERM
            if not self.grant:
                ctypes.set_errno(28)  # ENOSPC: the kernel's answer to a too-small sigaltstack
                return -1
            self.granted = target.value == 18
        elif option.value == 0x1022:  # ARCH_GET_XCOMP_PERM
            target._obj.value = XCOMP_SUPP_WITH_AMX if self.granted else 0x7
        return 0


class _FakeLibc:
    def __init__(self, real, syscall: _FakeSyscall):
        self._real = real
        self.syscall = syscall

    def __getattr__(self, name):
        return getattr(self._real, name)


def simulated() -> bool:
    """True where this process fakes AMX (the CPU has none)."""
    return builtins.open is not _real_open


def install() -> None:
    """Fake the AMX flags and the kernel in this process, where the CPU has no AMX."""
    cpuinfo = _real_cpuinfo()
    if all(f" {flag}" in cpuinfo for flag in AMX_FLAGS) or simulated():
        return
    faked = "".join(line.rstrip("\n") + " " + " ".join(AMX_FLAGS) + "\n"
                    if line.startswith("flags") else line
                    for line in cpuinfo.splitlines(keepends=True))
    syscall = _FakeSyscall(grant=os.environ.get("AMX_SIM_KERNEL", "grant") == "grant")

    def fake_open(path, *args, **kwargs):
        if path == "/proc/cpuinfo":
            return io.StringIO(faked)
        return _real_open(path, *args, **kwargs)

    def fake_cdll(name, *args, **kwargs):
        real = _real_cdll(name, *args, **kwargs)
        return _FakeLibc(real, syscall) if name is None else real

    builtins.open = fake_open
    ctypes.CDLL = fake_cdll


def cast(x, bf16: bool):
    """``x`` in bfloat16 where ``bf16``. MXNet's NDArray functions take bfloat16 only as this
    numpy dtype (they call ``np.dtype(dtype)``, which knows no "bfloat16" string)."""
    import numpy as np

    return x.astype(np.dtype([("bfloat16", np.uint16)])) if bf16 else x


def run_conv(bf16: bool) -> None:
    """One convolution, in bfloat16 where ``bf16`` (on AMX that is an AMX kernel), else fp32."""
    import mxnet as mx

    x, w = mx.nd.ones((1, 32, 14, 14)), mx.nd.ones((32, 32, 3, 3)) / 288
    out = mx.nd.Convolution(cast(x, bf16), cast(w, bf16), kernel=(3, 3), pad=(1, 1),
                            num_filter=32, no_bias=True)
    assert abs(float(out.astype("float32")[0, 0, 5, 5].asscalar()) - 1) < 0.02


def spawned_child(bf16: bool) -> None:
    """A 'spawn' child (a fresh interpreter, like a bench row): imports gluon_deeplab, which
    must ask the kernel itself, then runs a convolution; exits 1 when a check fails."""
    from gluon_deeplab import amx

    enabled, reason = amx.status()
    print(f"spawned child: AMX {enabled} ({reason}); kernel calls {KERNEL_CALLS}", flush=True)
    if not enabled or (simulated() and 0x1023 not in KERNEL_CALLS):
        sys.exit(1)
    if "DNNL_MAX_CPU_ISA" in os.environ:
        sys.exit(2)
    run_conv(bf16)


install()
