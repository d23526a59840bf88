"""The timers every bench row uses: one forward pass, a plain SGD loop (the same for any
model, so that ours and gluoncv's compare fairly), and the trainer's own step."""

from __future__ import annotations

import time
import warnings
from typing import Callable, Dict, Sequence, Union

import mxnet as mx
import numpy as np

from ..models import build_model
from ..training.loss import SegmentationLoss
from ..training.mixed_precision import init_amp, init_amp_trainer
from ..training.optim import make_trainer
from ..training.step import forward_backward


def forward_seconds(net: Callable, x: mx.nd.NDArray, repeats: int = 5, warmup: int = 2) -> float:
    """Median seconds of one forward pass of ``x`` (output waited for)."""
    for _ in range(warmup):
        out = net(x)
        (out[0] if isinstance(out, (list, tuple)) else out).wait_to_read()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = net(x)
        (out[0] if isinstance(out, (list, tuple)) else out).wait_to_read()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def train_step_seconds(net: mx.gluon.HybridBlock, batch_size: int, crop: int, num_classes: int,
                       iterations: int = 3, warmup: int = 1, ctx: mx.Context = None) -> float:
    """Median seconds of one SGD step (forward, softmax cross-entropy, backward, update) on
    random data; the same loop for any model, so that models compare fairly."""
    ctx = ctx or mx.cpu()
    net.hybridize(static_alloc=True, static_shape=True)
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd",
                               {"learning_rate": 1e-3, "momentum": 0.9, "wd": 1e-4})
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss(axis=1)
    x = mx.nd.random.normal(shape=(batch_size, 3, crop, crop), ctx=ctx)
    y = mx.nd.random.randint(0, num_classes, shape=(batch_size, crop, crop),
                             ctx=ctx).astype("float32")
    times = []
    for i in range(warmup + iterations):
        start = time.perf_counter()
        with mx.autograd.record():
            out = net(x)
            out = out[0] if isinstance(out, (list, tuple)) else out
            loss = loss_fn(out, y)
        loss.backward()
        trainer.step(batch_size)
        mx.nd.waitall()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def gluoncv_deeplab(height: int, width: int, num_classes: int = 21,
                    ctx: mx.Context = None) -> mx.gluon.HybridBlock:
    """gluoncv's DeepLabV3-ResNet50 (ResNet-v1s, OS 8), randomly initialized, size baked in."""
    from gluoncv.model_zoo import DeepLabV3

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = DeepLabV3(num_classes, backbone="resnet50", aux=False, pretrained_base=False,
                        height=height, width=width, crop_size=height)
        net.collect_params().initialize(mx.init.Xavier(), ctx=ctx or mx.cpu(),
                                        force_reinit=False)
    return net


def benchmark_training(backbone: str = "resnet50_v2", batch_size: int = 4, crop_size: int = 321,
                       output_stride: int = 16, iterations: int = 3,
                       ctx: Union[mx.Context, Sequence[mx.Context], None] = None,
                       hybridize: bool = True, warmup: int = 1, num_classes: int = 21,
                       amp: bool = False, syncbn: bool = False) -> Dict[str, float]:
    """Seconds per training step (forward, backward, SGD update; after ``warmup`` steps) of
    the trainer's own step on random images and labels. ``amp`` trains as ``--amp`` does;
    it switches this whole process to AMP (see mixed_precision.py). ``syncbn`` builds the
    model with SyncBatchNorm over the devices of ``ctx``."""
    ctxs = [mx.cpu()] if ctx is None else ([ctx] if isinstance(ctx, mx.Context) else list(ctx))
    amp_dtype = init_amp(ctxs) if amp else None
    net = build_model(num_classes, backbone, "aspp", output_stride, ctx=ctxs,
                      syncbn_devices=len(ctxs) if syncbn else 0)
    if hybridize:  # as the trainer does, SyncBN included
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
        forward_backward(net, loss_fn, images, labels, ctxs,
                         amp_trainer=trainer if amp else None)
        trainer.step(1)
        mx.nd.waitall()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    elapsed = time.perf_counter() - start
    return {"seconds_per_iter": elapsed / iterations,
            "backbone": backbone, "batch_size": batch_size, "crop_size": crop_size,
            "output_stride": output_stride, "hybridized": bool(hybridize),
            "devices": len(ctxs), "amp": amp_dtype, "syncbn": syncbn}
