"""Low precision on this machine: can oneDNN run bfloat16 here, and the bf16 conversion itself.

MXNet 1.9's oneDNN runs bfloat16 convolutions only on AVX-512 CPUs: with AMX (``amx_bf16``,
with the kernel's permission: see :mod:`.amx`), with ``avx512_bf16`` (Intel Cooper Lake, AMD
Zen 4/5), or emulated on plain AVX-512. On an AVX2-only CPU the convolution has no kernel at
all ("could not create a primitive descriptor"), so bf16 is refused there. A tiny bf16
convolution run once per process decides whether bf16 runs; the CPU flags and the AMX status
only explain the answer. Whether it runs faster than fp32 is not known from the flags (bf16
without AMX measured 1.6-1.8x fp32 at 513x513 on a Zen 5, 0.4x at 64x64): :mod:`.bf16_probe`
measures it.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import FrozenSet, Optional

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
    """Whether bfloat16 runs here, and a one-line reason: why not, or on which kernels (AMX,
    avx512_bf16, emulated). Nothing about its speed: see :mod:`.bf16_probe`."""

    ok: bool
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


def unavailable_reason(failure: str, flags: FrozenSet[str]) -> str:
    """Why bf16 cannot run on this CPU (one line), from the failure of a bf16 convolution."""
    if flags and not AVX512_CORE <= flags:
        isa = "AVX2" if "avx2" in flags else "no AVX2"
        return f"{cpu_name()} has no bf16 kernels in MXNet's oneDNN ({isa}, no AVX-512)"
    return f"{cpu_name()} cannot run a bfloat16 convolution ({failure})"


def kernels_reason(flags: FrozenSet[str]) -> str:
    """Which bf16 kernels oneDNN has here, where bf16 runs: AMX, avx512_bf16 or emulated."""
    amx_on, amx_why = amx.status()
    if amx_on:
        return f"{cpu_name()}: bf16 on AMX"
    if "avx512_bf16" in flags:
        return f"{cpu_name()}: bf16 on avx512_bf16, AMX off ({amx_why})"
    return f"{cpu_name()}: bf16 emulated on AVX-512 (no avx512_bf16, no AMX)"


@functools.lru_cache(maxsize=1)
def bf16_support() -> Bf16Support:
    """Can this CPU run bfloat16 convolutions in MXNet's oneDNN (probed once per process)."""
    flags = cpu_flags()
    failure = _bf16_probe()
    if failure is not None:
        return Bf16Support(False, unavailable_reason(failure, flags))
    return Bf16Support(True, kernels_reason(flags))


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
