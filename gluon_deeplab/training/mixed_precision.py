"""AMP training (``--amp``): MXNet's automatic mixed precision, float16 on GPUs, bf16 on CPUs.

``mxnet.contrib.amp.init`` patches MXNet's operators for the whole process: every model
built afterwards (also one built for evaluation) runs in mixed precision, and it cannot be
undone. Call :func:`init_amp` before the model is built, once per process; run AMP training
in its own process (the command line does) when the same process builds fp32 models later.

What stays fp32: the parameters (master weights; checkpoints are fp32 like any other), the
loss and its normalization (softmax/log-softmax are on AMP's fp32 lists), BatchNorm /
SyncBatchNorm statistics and parameters. float16 gradients are protected by dynamic loss
scaling (``amp.scale_loss``; a step whose gradients or loss overflow is skipped and the scale
halved). SyncBatchNorm is on AMP's fp32 lists (its kernel is fp32 only): with ``--amp`` every
SyncBN casts its input to fp32 and the ReLU after it runs in fp32.
"""

from __future__ import annotations

from typing import Optional, Sequence

import mxnet as mx

from .. import bf16_probe
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
    """The one line the trainer prints about the precision it trains in; for bfloat16 with
    bf16's speed against fp32 as measured here (:mod:`..bf16_probe`)."""
    devices = ", ".join(str(c) for c in ctxs)
    if dtype == "float16":
        return f"AMP: float16 with dynamic loss scaling on {devices} (weights and loss fp32)"
    speed = bf16_probe.bf16_speed().describe()
    return f"AMP: bfloat16 on {devices} (weights and loss fp32); {speed}"


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


class LossScaler:
    """AMP's dynamic loss scale (as ``mxnet.contrib.amp``'s), which also counts a non-finite
    loss as an overflow: the step is skipped and the scale halved, as for gradients.

    ``Trainer._update`` calls :meth:`has_overflow` (once per step, one read of a flag);
    ``forward_backward`` hands it the step's loss first (:meth:`watch`).
    """

    def __init__(self, scale: float = 2.0 ** 16, max_scale: float = 2.0 ** 24,
                 grow_after: int = 2000):
        self._loss_scale = self._next_loss_scale = scale
        self._max_loss_scale, self._scale_seq_len = max_scale, grow_after
        self._unskipped = 0
        self._loss: Optional[mx.nd.NDArray] = None
        self.last_skipped = False
        self.skipped = 0  # steps skipped so far

    @property
    def loss_scale(self) -> float:
        return self._loss_scale

    def watch(self, loss: mx.nd.NDArray) -> None:
        """The loss of the step about to be checked."""
        self._loss = loss

    def has_overflow(self, params) -> bool:
        """Whether the step's gradients (first device's, after the sum) or loss are not all
        finite; moves the scale for the next step (halved after an overflow, doubled after
        ``grow_after`` clean steps)."""
        grads = [p._grad[0] for p in params if p._grad is not None]
        ctx = grads[0].context
        arrays = grads + ([self._loss.as_in_context(ctx)] if self._loss is not None else [])
        self._loss = None
        finite = mx.nd.ones((1,), ctx=ctx)
        with mx.autograd.pause():
            for i in range(0, len(arrays), 200):
                chunk = arrays[i:i + 200]
                mx.nd.multi_all_finite(*chunk, num_arrays=len(chunk), init_output=False,
                                       out=finite)
        overflow = not bool(finite.asscalar())
        self._loss_scale = self._next_loss_scale
        if overflow:
            self._next_loss_scale = self._loss_scale / 2.0
            self._unskipped = 0
            self.skipped += 1
        else:
            self._unskipped += 1
            if self._unskipped == self._scale_seq_len:
                self._unskipped = 0
                self._next_loss_scale = min(self._max_loss_scale, self._loss_scale * 2.0)
        self.last_skipped = overflow
        return overflow


def init_amp_trainer(trainer: mx.gluon.Trainer) -> mx.gluon.Trainer:
    """Give ``trainer`` a dynamic loss scaler (what ``amp.init_trainer`` does, with
    :class:`LossScaler`), used by ``forward_backward(amp_trainer=)`` and ``trainer.step``."""
    trainer._amp_loss_scaler = LossScaler()
    trainer._amp_original_scale = trainer._scale
    return trainer
