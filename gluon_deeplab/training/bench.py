"""Training speed and memory of one configuration on given devices (random data)."""

from __future__ import annotations

import resource
import time
from typing import Dict, Sequence, Union

import mxnet as mx
import numpy as np

from ..models import build_model
from .loss import SegmentationLoss
from .mixed_precision import init_amp, init_amp_trainer
from .optim import make_trainer
from .step import forward_backward


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def benchmark_training(backbone: str = "resnet50_v2", batch_size: int = 4, crop_size: int = 321,
                       output_stride: int = 16, iterations: int = 3,
                       ctx: Union[mx.Context, Sequence[mx.Context], None] = None,
                       hybridize: bool = True, warmup: int = 1,
                       num_classes: int = 21, amp: bool = False) -> Dict[str, float]:
    """Seconds per training step (forward, backward, SGD update; after ``warmup`` steps) and
    peak RSS, for the trainer's own step on random images and labels. ``amp`` trains as
    ``--amp`` does; it switches this whole process to AMP (see mixed_precision.py)."""
    ctxs = [mx.cpu()] if ctx is None else ([ctx] if isinstance(ctx, mx.Context) else list(ctx))
    amp_dtype = init_amp(ctxs) if amp else None
    net = build_model(num_classes, backbone, "aspp", output_stride, ctx=ctxs)
    if hybridize:
        net.hybridize()
    trainer = make_trainer(net, 1e-3, 1e-4)
    if amp:
        init_amp_trainer(trainer)
    loss_fn = SegmentationLoss()
    rng = np.random.default_rng(0)
    images = mx.nd.array(rng.standard_normal((batch_size, 3, crop_size, crop_size)),
                         dtype=np.float32)
    labels = mx.nd.array(rng.integers(0, num_classes, (batch_size, crop_size, crop_size)),
                         dtype=np.float32)

    def step() -> None:
        forward_backward(net, loss_fn, images, labels, ctxs, amp_trainer=trainer if amp else None)
        trainer.step(1)
        mx.nd.waitall()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    elapsed = time.perf_counter() - start
    return {"seconds_per_iter": elapsed / iterations, "peak_rss_mb": peak_rss_mb(),
            "backbone": backbone, "batch_size": batch_size, "crop_size": crop_size,
            "output_stride": output_stride, "hybridized": bool(hybridize),
            "devices": len(ctxs), "amp": amp_dtype}
