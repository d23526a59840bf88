"""One forward/backward pass of a batch split over several devices."""

from __future__ import annotations

from typing import List, Optional, Sequence

import mxnet as mx
from mxnet import autograd

from ..data import normalize_batch
from .cpu_step import needs_step_thread, step_thread, step_threads
from .loss import SegmentationLoss, count_valid_pixels


def split_batch(data: mx.nd.NDArray, ctxs: Sequence[mx.Context]) -> List[mx.nd.NDArray]:
    """``data`` split along the batch axis over ``ctxs`` (uneven parts allowed)."""
    return mx.gluon.utils.split_and_load(data, list(ctxs), batch_axis=0, even_split=False)


def _seed_here(seed: int, ctxs: Sequence[mx.Context]) -> None:
    for k, ctx in enumerate(ctxs):
        mx.random.seed((seed + k * 65_537) % (2 ** 31 - 1), ctx=ctx)


def seed_devices(seed: int, ctxs: Sequence[mx.Context]) -> None:
    """Seed MXNet's generator on every device (distinct streams per device), in this thread
    and in the CPU step threads (MXNet's generators belong to the thread that pushes)."""
    _seed_here(seed, ctxs)
    for thread in step_threads():
        thread.run(_seed_here, seed, ctxs)


def forward_backward(net: mx.gluon.Block, loss_fn: SegmentationLoss, images: mx.nd.NDArray,
                     labels: mx.nd.NDArray, ctxs: Sequence[mx.Context],
                     amp_trainer: Optional[mx.gluon.Trainer] = None) -> mx.nd.NDArray:
    """Forward and backward of one batch over ``ctxs``; returns the batch loss, a 1-element
    array on ``ctxs[0]`` (read it only when needed: reading waits for the step).

    Each device gets a slice; every slice's loss is divided by the labelled-pixel count of
    the whole batch, so the gradients the kvstore adds up are those of the whole-batch loss
    (``trainer.step(1)`` then applies them unscaled). The forward runs on each device in
    turn inside one ``autograd.record``, then one backward covers every device's loss: MXNet
    runs each device's operators on its own worker, so the devices of a SyncBatchNorm meet
    in its barriers without a thread per device or a wait. ``amp_trainer`` (AMP, see
    mixed_precision.py): the backward runs on the loss times that trainer's dynamic loss
    scale (``amp.scale_loss``), and its scaler sees the loss (a non-finite one skips the
    step); the returned loss is unscaled.
    """
    ctxs = list(ctxs)
    if needs_step_thread(net, ctxs):
        return step_thread(len(ctxs)).run(
            _forward_backward, net, loss_fn, images, labels, ctxs, amp_trainer)
    return _forward_backward(net, loss_fn, images, labels, ctxs, amp_trainer)


def _forward_backward(net, loss_fn, images, labels, ctxs, amp_trainer) -> mx.nd.NDArray:
    normalizer = count_valid_pixels(labels, loss_fn.ignore_label)  # before splitting
    parts = [normalize_batch(p) for p in split_batch(images, ctxs)]  # uint8 -> float on device
    targets = split_batch(labels, ctxs)
    with autograd.record():
        losses = [loss_fn(net(x), y, normalizer.as_in_context(y.context))
                  for x, y in zip(parts, targets)]
    _backward(losses, amp_trainer)
    total = mx.nd.add_n(*[loss.as_in_context(ctxs[0]) for loss in losses])
    watch = getattr(getattr(amp_trainer, "_amp_loss_scaler", None), "watch", None)
    if watch is not None:
        watch(total)
    return total


def _backward(heads: List[mx.nd.NDArray], amp_trainer: Optional[mx.gluon.Trainer]) -> None:
    if amp_trainer is None:
        autograd.backward(heads)
        return
    from mxnet.contrib import amp

    with autograd.record(), amp.scale_loss(heads, amp_trainer) as scaled:
        autograd.backward(scaled)


def nonfinite_parameters(net: mx.gluon.Block) -> List[str]:
    """Names of the parameters (running statistics included) with a NaN or infinite value in
    any device's copy. One reduction per array and a single read back: cheap enough to run
    before every save."""
    names, finite = [], []
    for name, param in sorted(net._collect_params_with_prefix().items()):
        for data in param.list_data():
            names.append(name)
            finite.append(mx.nd.contrib.isfinite(data).min().as_in_context(mx.cpu()))
    flags = mx.nd.concat(*finite, dim=0).asnumpy()
    return sorted({name for name, ok in zip(names, flags) if not ok})


RUNNING_STATS = ("running_mean", "running_var")
_STATS_KEY_BASE = 1_000_000  # kvstore keys clear of the trainer's (0 .. number of parameters)


class RunningStatsSync:
    """Make BatchNorm running statistics equal on every device (and every worker).

    Each device (and each distributed worker) updates its running mean/variance from its own
    slice of the batch; checkpoints and validation should see one value. ``__call__`` sets
    every copy to the mean over devices and, given a distributed kvstore, over workers
    (a collective call: every worker must make it at the same iteration).
    """

    def __init__(self, net: mx.gluon.Block, kvstore=None, num_workers: int = 1):
        self.params = [p for name, p in sorted(net._collect_params_with_prefix().items())
                       if name.endswith(RUNNING_STATS)]
        self.kvstore = kvstore if num_workers > 1 else None
        self.num_workers = num_workers
        if self.kvstore is not None:
            for k, param in enumerate(self.params):
                self.kvstore.init(_STATS_KEY_BASE + k, mx.nd.zeros(param.shape))

    def __call__(self) -> None:
        for k, param in enumerate(self.params):
            mean = param._reduce()
            if self.kvstore is not None:
                key = _STATS_KEY_BASE + k
                self.kvstore.push(key, mean)
                self.kvstore.pull(key, out=mean)
                mean /= self.num_workers
            param.set_data(mean)
