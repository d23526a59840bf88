"""One forward/backward pass of a batch split over several devices."""

from __future__ import annotations

import threading
from typing import List, Sequence

import mxnet as mx
from mxnet import autograd

from .loss import SegmentationLoss, count_valid_pixels


def split_batch(data: mx.nd.NDArray, ctxs: Sequence[mx.Context]) -> List[mx.nd.NDArray]:
    """``data`` split along the batch axis over ``ctxs`` (uneven parts allowed)."""
    return mx.gluon.utils.split_and_load(data, list(ctxs), batch_axis=0, even_split=False)


def forward_backward(net: mx.gluon.Block, loss_fn: SegmentationLoss, images: mx.nd.NDArray,
                     labels: mx.nd.NDArray, ctxs: Sequence[mx.Context],
                     parallel: bool = False) -> float:
    """Forward and backward of one batch over ``ctxs``; returns the batch loss.

    Each device gets a slice; every slice's loss is divided by the labelled-pixel count of
    the whole batch, so the gradients the kvstore adds up are those of the whole-batch loss
    (``trainer.step(1)`` then applies them unscaled). ``parallel`` runs each device in its own
    thread: SyncBatchNorm needs every device inside its forward and backward at once.
    """
    ctxs = list(ctxs)
    parts = split_batch(images, ctxs)
    targets = split_batch(labels, ctxs)
    normalizer = count_valid_pixels(targets, loss_fn.ignore_label)
    losses: List[mx.nd.NDArray] = [None] * len(parts)
    errors: List[BaseException] = []

    def run(i: int) -> None:
        try:
            with autograd.record():
                losses[i] = loss_fn(net(parts[i]), targets[i], normalizer)
            losses[i].backward()
        except BaseException as err:  # surfaced in the calling thread
            errors.append(err)

    if parallel and len(parts) > 1:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(parts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
    else:
        with autograd.record():
            for i in range(len(parts)):
                losses[i] = loss_fn(net(parts[i]), targets[i], normalizer)
        autograd.backward(losses)
    return float(sum(loss.asscalar() for loss in losses))
