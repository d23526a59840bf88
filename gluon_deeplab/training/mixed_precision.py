"""AMP training (``--amp``): MXNet's automatic mixed precision, float16 on GPUs, bf16 on CPUs.

``mxnet.contrib.amp.init`` patches MXNet's operators for the whole process: every model
built afterwards (also one built for evaluation) runs in mixed precision, and it cannot be
undone. Call :func:`init_amp` before the model is built, once per process; run AMP training
in its own process (the command line does) when the same process builds fp32 models later.

What stays fp32: the parameters (master weights; checkpoints are fp32 like any other), the
loss and its normalization (softmax/log-softmax are on AMP's fp32 lists), BatchNorm /
SyncBatchNorm statistics and parameters. float16 gradients are protected by dynamic loss
scaling (``amp.scale_loss``; a step whose gradients overflow is skipped and the scale halved).
"""

from __future__ import annotations

from typing import Optional, Sequence

import mxnet as mx

from .. import precision
from ..precision import PrecisionUnavailable, require_bf16

# None: MXNet's own lists of operators run in low precision (tests narrow them).
TARGET_PRECISION_OPS: Optional[list] = None
_initialized: Optional[str] = None


def amp_dtype(ctxs: Sequence[mx.Context]) -> str:
    """'float16' on GPU contexts, 'bfloat16' on CPUs that run it; else a one-line error."""
    kinds = {ctx.device_type for ctx in ctxs}
    if kinds == {"gpu"}:
        return "float16"
    if kinds == {"cpu"}:
        try:
            require_bf16("--amp on CPU (bfloat16)")
        except PrecisionUnavailable as err:
            raise PrecisionUnavailable(f"{err}; no GPU given (--gpus) for float16 either, "
                                       "so train without --amp") from None
        return "bfloat16"
    raise PrecisionUnavailable("--amp needs all devices of one kind (GPUs or CPUs)")


def describe_amp(dtype: str, ctxs: Sequence[mx.Context]) -> str:
    """The one line the trainer prints about the precision it trains in."""
    devices = ", ".join(str(c) for c in ctxs)
    if dtype == "float16":
        return f"AMP: float16 with dynamic loss scaling on {devices} (weights and loss fp32)"
    support = precision.bf16_support()
    where = " on AMX" if support.fast else f" - slower than fp32: {support.reason}"
    return f"AMP: bfloat16 on {devices} (weights and loss fp32){where}"


def init_amp(ctxs: Sequence[mx.Context]) -> str:
    """Check support and switch MXNet to AMP for ``ctxs``; returns the low-precision dtype."""
    global _initialized
    from mxnet.contrib import amp

    dtype = amp_dtype(ctxs)
    if _initialized is not None and _initialized != dtype:
        raise PrecisionUnavailable(f"--amp: this process already runs AMP in {_initialized}; "
                                   f"start a new process for {dtype}")
    amp.init(target_dtype=dtype, target_precision_ops=TARGET_PRECISION_OPS)
    _initialized = dtype
    return dtype


def init_amp_trainer(trainer: mx.gluon.Trainer) -> mx.gluon.Trainer:
    """Give ``trainer`` AMP's dynamic loss scaler (used by ``forward_backward(amp_trainer=)``)."""
    from mxnet.contrib import amp

    amp.init_trainer(trainer)
    return trainer
