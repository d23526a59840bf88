"""Bench cases: each runs in a child process of its own (runner.run_case) and returns seconds
(images/s for the loader); the GPU check's cases (gpu_check_cases.py) return dicts."""

from __future__ import annotations

import tempfile
from typing import Any, Callable, Dict, Sequence

import mxnet as mx

from ..devices import resolve_contexts
from ..models import build_model
from .gpu_check_cases import eval_case, kernel_case, train_case
from .peer_torch import torch_forward_case, torch_train_case
from .timing import benchmark_training, forward_seconds, gluoncv_deeplab, train_step_seconds


class RandomCalibration:
    """Calibration batches of random images: speed does not depend on the image content."""

    def __init__(self, size: int, count: int = 2):
        self.batches = [(mx.nd.random.normal(shape=(1, 3, size, size)), mx.nd.zeros((1,)))
                        for _ in range(count)]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def forward_case(backbone: str, head: str, stride: int, size: int, variant: str,
                 repeats: int, warmup: int, calib_mode: str = "naive",
                 quantized_dtype: str = "auto", decoder: bool = False,
                 separable: bool = False) -> float:
    """Median forward seconds of one variant: fp32 | fused (MKLDNN) | int8 | bf16."""
    x = mx.nd.random.normal(shape=(1, 3, size, size))
    net = build_model(21, backbone, head, stride, decoder=decoder, separable=separable)
    if variant == "fused":
        net.optimize_for(x, backend="MKLDNN", static_alloc=True, static_shape=True)
    elif variant == "int8":
        from ..deploy.int8 import quantize_model

        net = quantize_model(net, RandomCalibration(size), calib_mode=calib_mode,
                             quantized_dtype=quantized_dtype)
    elif variant == "bf16":
        from ..precision import to_bf16

        net.hybridize()
        net(x)
        net = to_bf16(net)
    if variant != "fused":
        net.hybridize(static_alloc=True, static_shape=True)
    return forward_seconds(net, x, repeats, warmup)


def reference_forward_case(size: int, repeats: int, warmup: int) -> float:
    x = mx.nd.random.normal(shape=(1, 3, size, size))
    net = gluoncv_deeplab(size, size)
    net.hybridize(static_alloc=True, static_shape=True)
    return forward_seconds(net, x, repeats, warmup)


def train_loop_case(model: str, backbone: str, batch: int, crop: int, iterations: int,
                    head: str = "aspp", decoder: bool = False, separable: bool = False,
                    gpus: str = "") -> float:
    """The same plain SGD loop for ours (OS 16) and gluoncv's DeepLabV3 (OS 8), on the first
    device of ``gpus`` (empty: the CPU)."""
    ctx = resolve_contexts(gpus)[0]
    net = gluoncv_deeplab(crop, crop, ctx=ctx) if model == "gluoncv" else \
        build_model(21, backbone, head, 16, decoder=decoder, separable=separable, ctx=ctx)
    return train_step_seconds(net, batch, crop, 21, iterations, ctx=ctx)


def trainer_step_case(backbone: str, batch: int, crop: int, stride: int, iterations: int,
                      amp: bool = False, gpus: str = "", cpu_devices: int = 0,
                      syncbn: bool = False) -> float:
    """The trainer's step (training.step.forward_backward) on ``gpus`` or ``cpu_devices``."""
    ctxs = resolve_contexts(gpus, 0 if gpus else cpu_devices)
    return benchmark_training(backbone, batch, crop, stride, iterations, ctxs, amp=amp,
                              syncbn=syncbn)["seconds_per_iter"]


def loader_case(batch: int, workers: int, batches: int, image_size: Sequence[int],
                crop: int) -> float:
    from ..data import benchmark_loader, get_dataset, make_synthetic_dataset

    with tempfile.TemporaryDirectory() as root:
        make_synthetic_dataset(root, num_train=max(8, batch * 2), num_val=1,
                               size=tuple(image_size))
        dataset = get_dataset("synthetic", root, "train", mode="train", crop_size=crop)
        return benchmark_loader(dataset, batch, workers, batches)


def baseline_case() -> float:
    return 0.0


def amp_casts_case(backbone: str, head: str, stride: int, crop: int) -> Dict[str, Any]:
    """AMP's casts in the training graph (counted on the symbol: the same on every CPU)."""
    from ..training.amp_casts import training_graph_casts

    count = training_graph_casts(backbone, head, stride, crop)
    return {"activations": count.activations, "elements": count.activation_elements,
            "weights": count.weights, "by_consumer": count.by_consumer}


CASES: Dict[str, Callable[..., Any]] = {
    "forward": forward_case, "reference_forward": reference_forward_case,
    "train_loop": train_loop_case, "trainer_step": trainer_step_case,
    "loader": loader_case, "baseline": baseline_case, "amp_casts": amp_casts_case,
    "torch_forward": torch_forward_case, "torch_train": torch_train_case,
    # gluon-deeplab-gpu-check (gpu_check.py): they return dicts, not seconds
    "gpu_kernel": kernel_case, "gpu_check_train": train_case, "gpu_check_eval": eval_case,
}
