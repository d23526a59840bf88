"""One forward/backward pass of a batch split over several devices."""

from __future__ import annotations

import threading
import warnings
from typing import List, Optional, Sequence

import mxnet as mx
from mxnet import autograd

from ..data import normalize_batch
from .loss import SegmentationLoss, count_valid_pixels


def warn_single_image_batchnorm(batch_size: int, num_devices: int, freeze_bn: bool,
                                syncbn: bool) -> bool:
    """Warn (once per run; returns True) when a device trains BatchNorm on a single image.

    Then the image-pooling branch's BN normalizes one value per channel: its output is the
    constant beta and that branch carries no information.
    """
    if freeze_bn or syncbn or batch_size // max(num_devices, 1) > 1:
        return False
    warnings.warn(
        f"--batch_size {batch_size} over {num_devices} device(s) gives one image per device "
        "with BatchNorm trained: the image-pooling branch's BN sees a single value per channel "
        "and outputs the constant beta; use --syncbn or a larger --batch_size "
        "(or --freeze_batch_norm 1)", UserWarning, stacklevel=2)
    return True


def split_batch(data: mx.nd.NDArray, ctxs: Sequence[mx.Context]) -> List[mx.nd.NDArray]:
    """``data`` split along the batch axis over ``ctxs`` (uneven parts allowed)."""
    return mx.gluon.utils.split_and_load(data, list(ctxs), batch_axis=0, even_split=False)


def forward_backward(net: mx.gluon.Block, loss_fn: SegmentationLoss, images: mx.nd.NDArray,
                     labels: mx.nd.NDArray, ctxs: Sequence[mx.Context],
                     parallel: bool = False,
                     amp_trainer: Optional[mx.gluon.Trainer] = None) -> float:
    """Forward and backward of one batch over ``ctxs``; returns the batch loss.

    Each device gets a slice; every slice's loss is divided by the labelled-pixel count of
    the whole batch, so the gradients the kvstore adds up are those of the whole-batch loss
    (``trainer.step(1)`` then applies them unscaled). ``parallel`` runs each device in its own
    thread: SyncBatchNorm needs every device inside its forward and backward at once.
    ``amp_trainer`` (AMP, see mixed_precision.py): the backward pass runs on the loss times
    that trainer's dynamic loss scale (``amp.scale_loss``); the returned loss is unscaled.
    """
    ctxs = list(ctxs)

    def backward(heads: List[mx.nd.NDArray]) -> None:
        if amp_trainer is None:
            autograd.backward(heads)
            return
        from mxnet.contrib import amp

        with autograd.record(), amp.scale_loss(heads, amp_trainer) as scaled:
            autograd.backward(scaled)

    normalizer = count_valid_pixels([labels], loss_fn.ignore_label)  # host copy, before splitting
    parts = [normalize_batch(p) for p in split_batch(images, ctxs)]  # uint8 -> float on device
    targets = split_batch(labels, ctxs)
    losses: List[mx.nd.NDArray] = [None] * len(parts)
    errors: List[BaseException] = []

    def run(i: int) -> None:
        try:
            with autograd.record():
                losses[i] = loss_fn(net(parts[i]), targets[i], normalizer)
            backward([losses[i]])
        except BaseException as err:  # surfaced in the calling thread
            errors.append(err)

    if parallel and len(parts) > 1:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(parts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # SyncBatchNorm blocks a device's engine worker (one per CPU context) in a barrier
        # until every device reaches the same layer. A SyncBN layer that gets no backward (the
        # backbone's input BN: no parameters, no input gradient) lets the next step's forward
        # start on a device while its worker still has this step's backward queued: that
        # worker then waits in the forward barrier and the other one in a backward barrier,
        # for ever. So every device finishes the step before the next one is pushed.
        mx.nd.waitall()
        if errors:
            raise errors[0]
    else:
        with autograd.record():
            for i in range(len(parts)):
                losses[i] = loss_fn(net(parts[i]), targets[i], normalizer)
        backward(losses)
    return float(sum(loss.asscalar() for loss in losses))


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
