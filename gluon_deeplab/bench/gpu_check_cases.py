"""What ``gluon-deeplab-gpu-check`` runs in each child process (``runner.run_case``): a tiny
kernel on every device, a short training run through the trainer itself, and a multi-scale +
flip evaluation through the evaluation library.

Each runs in a fresh process so that a GPU whose kernels fail cannot take the check down with
it, and so that AMP (``amp.init`` patches MXNet for the whole process) touches one run only.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from typing import Any, Dict, List, Optional, Sequence

import mxnet as mx
import numpy as np

from ..devices import resolve_contexts
from ..errors import error_line

MIB = 1024.0 * 1024.0


def kernel_case(gpus: str, cpu_devices: int) -> List[Dict[str, Any]]:
    """Run an elementwise op and a 3x3 convolution (cuDNN on GPUs, oneDNN on CPUs) on each
    device and check the answer; per device: {"device", "ok", "detail"}."""
    results = []
    for ctx in resolve_contexts(gpus, cpu_devices):
        try:
            x = mx.nd.ones((1, 4, 8, 8), ctx=ctx)
            total = float(((x * 2.0) + 1.0).sum().asscalar())
            conv = mx.nd.Convolution(x, mx.nd.ones((4, 4, 3, 3), ctx=ctx), kernel=(3, 3),
                                     pad=(1, 1), num_filter=4, no_bias=True)
            centre = float(conv[0, 0, 4, 4].asscalar())
            ok = total == 3.0 * x.size and centre == 36.0
            detail = "ran" if ok else f"wrong answers ({total}, {centre})"
        except mx.base.MXNetError as err:
            ok, detail = False, error_line(err)
        results.append({"device": str(ctx), "ok": ok, "detail": detail})
    return results


def gpu_memory_used_mib(ctxs: Sequence[mx.Context]) -> Optional[List[float]]:
    """MiB in use on each GPU of ``ctxs`` (all processes'); None on CPU contexts."""
    if any(ctx.device_type != "gpu" for ctx in ctxs):
        return None
    used = []
    for ctx in ctxs:
        free, total = mx.context.gpu_memory_info(ctx.device_id)
        used.append((total - free) / MIB)
    return used


def _pool_growth(before: Optional[List[float]], ctxs: Sequence[mx.Context]) -> Optional[float]:
    """The most any GPU's memory in use grew since ``before``: MXNet's memory pool keeps what
    it allocated, so this is the run's peak (None on CPU contexts)."""
    after = gpu_memory_used_mib(ctxs)
    if before is None or after is None:
        return None
    return max(a - b for a, b in zip(after, before))


def _median_step_seconds(records: List[Dict[str, Any]], warmup: int) -> Dict[str, Any]:
    """The median seconds of the iterations after ``warmup`` (the first build the graphs and
    tune the kernels), from a run's log records written at ``--log_interval 1``."""
    steps = [1.0 / r["it_per_s"] for r in records
             if r.get("kind") == "train" and r["iteration"] > warmup]
    if not steps:
        raise ValueError(f"no iteration after the {warmup} warm-up ones was logged")
    skipped = sum(r.get("amp_skipped", 0) for r in records if r.get("kind") == "train")
    return {"seconds": statistics.median(steps), "timed": len(steps), "amp_skipped": skipped}


def train_case(settings: Dict[str, Any], warmup: int) -> Dict[str, Any]:
    """Train as ``settings`` say (``gluon_deeplab.training.train``, logging every iteration);
    the median seconds per iteration after ``warmup``, the GPU memory the run took, its final
    checkpoint and the kvstore / SyncBN it used."""
    from ..training import train

    ctxs = resolve_contexts(settings.get("gpus", ""), settings.get("cpu_devices", 0))
    before = gpu_memory_used_mib(ctxs)
    result = train(dict(settings, log_interval=1))
    with open(os.path.join(result["output_dir"], "log.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    used = next(r["args"] for r in records if r.get("kind") == "start")
    return {**_median_step_seconds(records, warmup), "gpu_mib": _pool_growth(before, ctxs),
            "checkpoint": result["checkpoint"], "kvstore": used["kvstore"],
            "syncbn": used["syncbn"]}


def eval_case(checkpoint: str, data_dir: str, gpus: str, cpu_devices: int,
              scales: Sequence[float], flip: bool) -> Dict[str, Any]:
    """Evaluate ``checkpoint`` on the synthetic val split at ``scales`` (+ flip) on every
    device (``gluon_deeplab.evaluation.evaluate``), timed after one warm-up group of images
    (one per device: the graphs of every scale are built there)."""
    from ..data import get_dataset
    from ..evaluation import evaluate
    from ..evaluation.loading import load_inference_model

    ctxs = resolve_contexts(gpus, cpu_devices, verb="evaluate")
    before = gpu_memory_used_mib(ctxs)
    model = load_inference_model(checkpoint, None, ctxs)
    dataset = get_dataset("synthetic", data_dir, split="val", mode="val")
    options = dict(scales=tuple(scales), flip=flip, progress=False, num_workers=0)
    evaluate(model.net, dataset, ctxs, max_images=len(ctxs), **options)
    start = time.perf_counter()
    metrics, _ = evaluate(model.net, dataset, ctxs, **options)
    seconds = time.perf_counter() - start
    return {"seconds": seconds / len(dataset), "images": len(dataset),
            "miou": float(np.nan_to_num(metrics["miou"])), "gpu_mib": _pool_growth(before, ctxs)}
