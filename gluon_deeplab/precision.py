"""Low precision on this machine: can oneDNN run bfloat16 here, and the bf16 conversion itself.

MXNet 1.9's oneDNN runs bfloat16 convolutions only on AVX-512 CPUs, and is faster than fp32
only on AMX (``amx_bf16``, with the kernel's permission: see :mod:`.amx`). With
``avx512_bf16`` but no AMX (Intel Cooper Lake, AMD Zen 4/5) it runs ``avx512_core_bf16``
kernels with a cast around every convolution of a pre-activation ResNet, and is slower than
fp32; on plain AVX-512 it is emulated (correct, slower than fp32). On an AVX2-only CPU the
convolution has no kernel at all ("could not create a primitive descriptor"), so bf16 is
refused there. The CPU flags and the AMX status only explain the answer; a tiny bf16
convolution run once per process decides it.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Optional

import mxnet as mx
from mxnet.gluon import HybridBlock, SymbolBlock, nn

from . import amx
from .cpuinfo import cpu_flags, cpu_name
from .errors import error_line

AVX512_CORE = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq"})


class PrecisionUnavailable(ValueError):
    """The requested precision cannot run on this machine (the message says why)."""


@dataclass(frozen=True)
class Bf16Support:
    """Whether bfloat16 runs here, whether faster than fp32 (only on AMX), and a one-line
    reason (why it is slower, where it is)."""

    ok: bool
    fast: bool
    reason: str


def _bf16_probe() -> Optional[str]:
    """Run one tiny bf16 convolution through AMP's conversion; None if it worked, else why."""
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, padding=1, in_channels=4))
    net.initialize(ctx=mx.cpu())
    net.hybridize()
    x = mx.nd.ones((1, 4, 8, 8))
    expected = net(x).asnumpy()
    try:
        out = to_bf16(net)(x).asnumpy()
    except mx.base.MXNetError as err:
        return error_line(err)
    if abs(out - expected).max() > 0.05 * max(1.0, abs(expected).max()):
        return "a bf16 convolution gave wrong results"
    return None


@functools.lru_cache(maxsize=1)
def bf16_support() -> Bf16Support:
    """Can this CPU run bfloat16 convolutions in MXNet's oneDNN (probed once per process),
    and faster than fp32 (only with AMX on)."""
    flags = cpu_flags()
    failure = _bf16_probe()
    if failure is not None:
        if flags and not AVX512_CORE <= flags:
            why = "has no AVX-512, which oneDNN's bfloat16 convolution needs"
        else:
            why = f"cannot run a bfloat16 convolution ({failure})"
        return Bf16Support(False, False, f"{cpu_name()} {why}")
    amx_on, amx_why = amx.status()
    if amx_on:
        return Bf16Support(True, True, f"{cpu_name()}: bf16 on AMX")
    if "avx512_bf16" in flags:
        return Bf16Support(True, False, f"{cpu_name()}: avx512_bf16 without AMX ({amx_why}): "
                                        "MXNet 1.9's bf16 is slower than fp32 here")
    return Bf16Support(True, False, f"{cpu_name()}: bf16 emulated on AVX-512 (no avx512_bf16, "
                                    "no AMX): correct but slower than fp32")


def require_bf16(flag: str) -> Bf16Support:
    """The bf16 support of this CPU, or :class:`PrecisionUnavailable` naming ``flag``."""
    support = bf16_support()
    if not support.ok:
        raise PrecisionUnavailable(f"{flag} needs a CPU that runs bfloat16: {support.reason}")
    return support


def to_bf16(net: HybridBlock, ctx: Optional[mx.Context] = None) -> SymbolBlock:
    """``net`` (hybridized, run once) with convolutions in bfloat16 (AMP's bf16 lists).

    Input and output stay float32; BatchNorm parameters and everything AMP keeps in fp32
    (softmax, resizing, mean) stay float32, convolution weights are stored in bfloat16.
    """
    from mxnet.contrib import amp

    with warnings.catch_warnings():  # "Cannot decide type for ... data": it is float32
        warnings.simplefilter("ignore", UserWarning)
        return amp.convert_hybrid_block(net, target_dtype="bfloat16",
                                        cast_optional_params=True, ctx=ctx or mx.cpu())
