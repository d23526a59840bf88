"""AMX for bf16 and INT8: ask Linux for the tile state, then let oneDNN use it.

MXNet 1.9.1 bundles oneDNN 2.4.4. There AMX is off unless ``DNNL_MAX_CPU_ISA=AVX512_CORE_AMX``,
and oneDNN does not ask Linux (5.16+) for the AMX tile state (``arch_prctl(ARCH_REQ_XCOMP_PERM,
XFEATURE_XTILEDATA)``), so with the variable alone the first AMX instruction kills the process
(SIGILL). ``import gluon_deeplab`` calls :func:`enable`: on a Linux x86-64 CPU with AMX it
makes that request and, once granted, lets oneDNN use AMX. ``GLUON_DEEPLAB_AMX=0`` turns it off;
a ``DNNL_MAX_CPU_ISA`` of the user's own is kept (and the request made where it allows AMX).

Child processes: the kernel's permission survives ``fork`` but not ``exec``, while an
environment variable survives both, so a variable left in ``os.environ`` would kill any child
that uses AMX without asking (a plain ``python -c "import mxnet"``). oneDNN reads
``DNNL_MAX_CPU_ISA`` once, when its first primitive asks for the CPU's ISA (a function-local
static in ``cpu_isa_traits.cpp``), and MXNet exports no oneDNN function to set it. So the
variable is set only while one tiny convolution runs (:func:`latch_max_isa`) and is then
removed: this process keeps AMX, forked children (loader workers) inherit both the permission
and oneDNN's setting, and every exec'd child starts without the variable; one that imports
gluon_deeplab (spawned bench rows, dist workers) makes its own request.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, Mapping, NamedTuple, Optional, Tuple

from .cpuinfo import cpu_flags
from .errors import error_line

SWITCH = "GLUON_DEEPLAB_AMX"
ISA_VARIABLE = "DNNL_MAX_CPU_ISA"
AMX_ISA = "AVX512_CORE_AMX"  # the only DNNL_MAX_CPU_ISA value of oneDNN 2.4 that allows AMX
AMX_FLAGS = ("amx_tile", "amx_bf16", "amx_int8", "avx512_bf16")
OFF_VALUES = ("0", "off", "false", "no")

SYS_ARCH_PRCTL = 158  # x86-64
ARCH_GET_XCOMP_SUPP = 0x1021
ARCH_GET_XCOMP_PERM = 0x1022
ARCH_REQ_XCOMP_PERM = 0x1023
XFEATURE_XTILEDATA = 18

# arch_prctl(option, arg) -> (errno, or 0 on success; the value a GET option wrote).
ArchPrctl = Callable[[int, int], Tuple[int, int]]


class AmxStatus(NamedTuple):
    """Whether oneDNN may use AMX in this process, and why (one line)."""

    enabled: bool
    reason: str


@dataclass(frozen=True)
class Decision:
    """What :func:`enable` does: the status, and whether to set (and latch) the variable."""

    status: AmxStatus
    set_variable: bool = False
    warning: Optional[str] = None


_status = AmxStatus(False, "gluon_deeplab.amx.enable() has not run")


def arch_prctl(option: int, arg: int = 0) -> Tuple[int, int]:
    """``arch_prctl(2)`` through libc's ``syscall()``: (errno or 0, the value a GET wrote)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    value = ctypes.c_uint64(0)
    target = ctypes.byref(value) if option != ARCH_REQ_XCOMP_PERM else ctypes.c_ulong(arg)
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(SYS_ARCH_PRCTL), ctypes.c_long(option), target)
    return (ctypes.get_errno() or 1) if result != 0 else 0, value.value


def _errno_text(err: int) -> str:
    import errno

    return f"{errno.errorcode.get(err, err)}: {os.strerror(err)}"


def request_tile_data(call: ArchPrctl = arch_prctl) -> Optional[str]:
    """Ask Linux for the AMX tile state; None when granted, else why not (one line)."""
    bit = 1 << XFEATURE_XTILEDATA
    err, supported = call(ARCH_GET_XCOMP_SUPP, 0)
    if err:
        return f"the kernel cannot grant AMX (ARCH_GET_XCOMP_SUPP: {_errno_text(err)}; " \
               "Linux 5.16+ needed)"
    if not supported & bit:
        return "the kernel does not offer the AMX tile state (XTILEDATA)"
    err, _ = call(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)
    if err:
        return f"the kernel refused the AMX tile state (ARCH_REQ_XCOMP_PERM: {_errno_text(err)})"
    err, permitted = call(ARCH_GET_XCOMP_PERM, 0)
    if err or not permitted & bit:
        return "the kernel did not grant the AMX tile state (ARCH_GET_XCOMP_PERM)"
    return None


def decide(flags: FrozenSet[str], env: Mapping[str, str], request: Callable[[], Optional[str]],
           system: Tuple[str, str] = ("Linux", "x86_64")) -> Decision:
    """The AMX decision for CPU ``flags``, environment ``env`` and OS/machine ``system``;
    ``request()`` (asked only where needed) asks the kernel: None when granted, else why not."""
    if env.get(SWITCH, "").strip().lower() in OFF_VALUES:
        return Decision(AmxStatus(False, f"turned off by {SWITCH}={env[SWITCH]}"))
    if system[0] != "Linux" or system[1].lower() not in ("x86_64", "amd64"):
        return Decision(AmxStatus(False, f"AMX needs Linux on x86-64, this is {'/'.join(system)}"))
    missing = [f for f in AMX_FLAGS if f not in flags]
    if missing:
        return Decision(AmxStatus(False, f"this CPU has no AMX (no {', '.join(missing)})"))
    user = env.get(ISA_VARIABLE)
    if user is not None and user != AMX_ISA:
        return Decision(AmxStatus(False, f"{ISA_VARIABLE}={user} (set by you) keeps oneDNN "
                                         "below AMX"))
    refusal = request()
    if user is None:
        if refusal is not None:
            return Decision(AmxStatus(False, f"{refusal}; bf16 and INT8 run without AMX"))
        return Decision(AmxStatus(True, "AMX tile state granted by the kernel"), True)
    if refusal is not None:
        warning = (f"{ISA_VARIABLE}={AMX_ISA} (set by you) asks oneDNN for AMX, but {refusal}: "
                   f"the first AMX kernel will crash the process; unset {ISA_VARIABLE}")
        return Decision(AmxStatus(False, refusal), warning=warning)
    return Decision(AmxStatus(True, f"AMX tile state granted by the kernel; {ISA_VARIABLE}="
                                    f"{AMX_ISA} set by you"))


def latch_max_isa(value: str) -> None:
    """Make oneDNN read ``DNNL_MAX_CPU_ISA=value`` now (one tiny convolution), then restore
    the environment: oneDNN keeps the value for this process, exec'd children never see it.
    Without effect where a oneDNN primitive already ran in this process."""
    previous = os.environ.get(ISA_VARIABLE)
    os.environ[ISA_VARIABLE] = value
    try:
        import mxnet as mx

        ones = mx.nd.ones((1, 1, 2, 2))
        mx.nd.Convolution(ones, mx.nd.ones((1, 1, 1, 1)), kernel=(1, 1), num_filter=1,
                          no_bias=True).wait_to_read()
    finally:
        if previous is None:
            del os.environ[ISA_VARIABLE]
        else:
            os.environ[ISA_VARIABLE] = previous


def enable() -> AmxStatus:
    """Decide AMX for this process (called by ``import gluon_deeplab``); see :func:`status`."""
    global _status
    import warnings

    mxnet_first = "mxnet" in sys.modules
    decision = decide(cpu_flags(), os.environ, request_tile_data,
                      (platform.system(), platform.machine()))
    if decision.warning:
        warnings.warn(decision.warning, RuntimeWarning, stacklevel=2)
    status_ = decision.status
    if decision.set_variable:
        try:
            latch_max_isa(AMX_ISA)
        except Exception as err:  # optional kernels must not break the import
            status_ = AmxStatus(False, f"oneDNN could not be set up for AMX "
                                       f"({error_line(err)})")
        if mxnet_first and status_.enabled:
            status_ = AmxStatus(True, f"{status_.reason} (mxnet was imported before "
                                      "gluon_deeplab: AMX only if no oneDNN operator ran yet)")
    _status = status_
    return _status


def status() -> AmxStatus:
    """(enabled, reason): whether oneDNN may use AMX in this process, for reports."""
    return _status


# A tiny conv-ReLU-conv in the requested precision, run after ``import gluon_deeplab`` (so with
# AMX as the library sets it) under oneDNN's verbose mode.
# oneDNN turns its verbose log on by one of these: 2.x (MXNet), 3.x (PyTorch), the old name
VERBOSE_VARIABLES = ("DNNL_VERBOSE", "ONEDNN_VERBOSE", "MKLDNN_VERBOSE")
_VERBOSE_DTYPES = {"float32": ("f32",), "bfloat16": ("bf16",), "int8": ("s8", "u8")}
# oneDNN's info line ("isa:Intel AVX2") in the names its kernels use, most capable first
_INFO_ISA = (("AMX", "avx512_core_amx"), ("bfloat16", "avx512_core_bf16"),
             ("AVX-512", "avx512_core"), ("AVX2", "avx2"), ("SSE4.1", "sse41"))


def _kernel_isa(implementation: str) -> str:
    """``brgconv:avx512_core_amx`` -> ``avx512_core_amx``; '' for gemm / reference kernels."""
    isa = implementation.rsplit(":", 1)[-1]
    return isa if isa.startswith(("avx", "sse", "amx")) else ""


def _is_src_dtype(memory: str, dtype: str) -> bool:
    """Whether a verbose line's memory field (``src_f32::blocked...`` in oneDNN 2.x,
    ``src:f32::blocked...`` in 3.x) has a ``dtype`` source."""
    return any(memory.startswith((f"src_{t}:", f"src:{t}")) for t in _VERBOSE_DTYPES[dtype])


def isa_from_verbose(text: str, dtype: Optional[str] = None) -> Optional[str]:
    """The ISA of the convolutions that ran longest in oneDNN verbose output (MXNet's oneDNN
    2.x lines and PyTorch's 3.x ones), in oneDNN's kernel names: ``jit:avx2`` -> 'avx2',
    ``brgconv:avx512_core_amx`` -> 'avx512_core_amx'. ``dtype`` ('float32', 'bfloat16',
    'int8') counts only convolutions of that source type. Where only gemm or reference
    kernels ran, the CPU's ISA from oneDNN's info line; None when no such convolution ran."""
    seconds: Dict[str, float] = {}
    cpu_isa, unnamed = "", ""
    for line in text.splitlines():
        fields = line.split(",")
        if "info" in fields and ",isa:" in line:
            info = line.split(",isa:", 1)[1]
            cpu_isa = next((isa for key, isa in _INFO_ISA if key in info), info)
        if "exec" not in fields:
            continue
        i = fields.index("exec")
        if len(fields) < i + 7 or fields[i + 2] != "convolution":
            continue
        if dtype is not None and not _is_src_dtype(fields[i + 5], dtype):
            continue
        isa = _kernel_isa(fields[i + 3])
        unnamed = unnamed or fields[i + 3]
        try:
            seconds[isa] = seconds.get(isa, 0.0) + float(fields[-1])
        except ValueError:
            seconds.setdefault(isa, 0.0)
    if not seconds:
        return None
    named = {isa: t for isa, t in seconds.items() if isa}
    if named:
        return max(named, key=named.get)
    return cpu_isa or unnamed


def child_environment(extra: Mapping[str, str]) -> Dict[str, str]:
    """This process's environment plus ``extra``, with this copy of gluon_deeplab first on
    ``PYTHONPATH``: for a child probe that imports it (and so sets AMX as it does here)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, **extra, PYTHONPATH=path)
