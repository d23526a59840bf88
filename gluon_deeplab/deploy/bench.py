"""Speed benchmark: forward (fp32 plain / fp32 fused / INT8), training step, data loader, memory,
DeepLabV3 vs V3+ (decoder).

Everything runs in this process, one case after another, on the CPU; gluoncv's DeepLabV3 is
timed in the same loops as the reference. Peak memory is the process's peak resident set size
during a case (Linux: reset through /proc/self/clear_refs before each case), so it includes
memory MXNet still holds from earlier cases.
"""

from __future__ import annotations

import gc
import logging
import os
import resource
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import mxnet as mx
import numpy as np

from ..models import build_model
from .int8 import quantize_model


@dataclass
class BenchConfig:
    """What the benchmark runs (defaults: the real figures; :meth:`quick`: seconds, for tests)."""

    backbone: str = "resnet50_v2"
    size: int = 513
    reference_size: int = 512  # gluoncv needs a multiple of 8
    output_strides: Sequence[int] = (16, 8)
    heads: Sequence[str] = ("aspp", "vortex")
    int8: bool = True
    calib_mode: str = "naive"
    quantized_dtype: str = "auto"
    train_batch: int = 4
    train_crop: int = 321
    train_iterations: int = 3
    loader_workers: int = 2
    loader_batches: int = 10
    loader_image_size: Sequence[int] = (375, 500)
    repeats: int = 5
    warmup: int = 2
    parts: Sequence[str] = ("forward", "reference", "train", "loader", "decoder")

    @classmethod
    def quick(cls, **overrides) -> BenchConfig:
        config = cls(backbone="resnet18_v2", size=64, reference_size=64, output_strides=(16,),
                     heads=("aspp",),
                     train_batch=2, train_crop=64, train_iterations=1, loader_workers=0,
                     loader_batches=2, loader_image_size=(64, 80), repeats=1, warmup=1)
        for key, value in overrides.items():
            setattr(config, key, value)
        return config


@dataclass
class BenchRow:
    """One line of the table."""

    part: str
    name: str
    value: Optional[float]
    unit: str
    ratio: Optional[float] = None
    ratio_of: str = ""
    target: str = ""
    peak_mib: Optional[float] = None
    note: str = ""
    extra: Dict[str, float] = field(default_factory=dict)


def _reset_peak_memory() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_memory_mib() -> float:
    """Peak resident set size of this process since the last reset, in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _measured(fn: Callable[..., float], *args):
    """``fn(*args)`` and the peak memory while it ran."""
    gc.collect()
    _reset_peak_memory()
    value = fn(*args)
    return value, peak_memory_mib()


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
                       iterations: int = 3, warmup: int = 1) -> float:
    """Median seconds of one SGD step (forward, softmax cross-entropy, backward, update) on
    random data; the same loop for any model, so that models compare fairly."""
    net.hybridize(static_alloc=True, static_shape=True)
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd",
                               {"learning_rate": 1e-3, "momentum": 0.9, "wd": 1e-4})
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss(axis=1)
    x = mx.nd.random.normal(shape=(batch_size, 3, crop, crop))
    y = mx.nd.random.randint(0, num_classes, shape=(batch_size, crop, crop)).astype("float32")
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


def gluoncv_deeplab(height: int, width: int, num_classes: int = 21) -> mx.gluon.HybridBlock:
    """gluoncv's DeepLabV3-ResNet50 (ResNet-v1s, OS 8), randomly initialized, size baked in."""
    from gluoncv.model_zoo import DeepLabV3

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = DeepLabV3(num_classes, backbone="resnet50", aux=False, pretrained_base=False,
                        height=height, width=width, crop_size=height)
        net.collect_params().initialize(mx.init.Xavier(), force_reinit=False)
    return net


class _RandomCalibration:
    """Calibration batches of random images: speed does not depend on the image content."""

    def __init__(self, size: int, count: int = 2):
        self.batches = [(mx.nd.random.normal(shape=(1, 3, size, size)), mx.nd.zeros((1,)))
                        for _ in range(count)]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _forward_rows(config: BenchConfig) -> List[BenchRow]:
    rows: List[BenchRow] = []
    x = mx.nd.random.normal(shape=(1, 3, config.size, config.size))
    time_it = lambda net: forward_seconds(net, x, config.repeats, config.warmup)  # noqa: E731
    for stride in config.output_strides:
        for head in config.heads:
            tag = f"OS {stride} {head} {config.size}x{config.size}"
            net = build_model(21, config.backbone, head, stride)
            net.hybridize(static_alloc=True, static_shape=True)
            plain, mem = _measured(time_it, net)
            rows.append(BenchRow("forward", f"forward fp32 {tag}", plain, "s/img", peak_mib=mem))
            # Speed does not depend on the weights: a second model of the same shape is fused.
            fused_net = build_model(21, config.backbone, head, stride)
            fused_net.optimize_for(x, backend="MKLDNN", static_alloc=True, static_shape=True)
            fused, mem = _measured(time_it, fused_net)
            rows.append(BenchRow("forward", f"forward fp32 fused (MKLDNN) {tag}", fused, "s/img",
                                 plain / fused, "fp32 plain / this", peak_mib=mem))
            if config.int8:
                qnet = quantize_model(net, _RandomCalibration(config.size),
                                      calib_mode=config.calib_mode,
                                      quantized_dtype=config.quantized_dtype)
                qnet.hybridize(static_alloc=True, static_shape=True)
                int8, mem = _measured(time_it, qnet)
                rows.append(BenchRow("forward", f"forward int8 {tag}", int8, "s/img",
                                     plain / int8, "fp32 plain / this", ">= 1.8", mem,
                                     extra={"speedup_vs_fused": fused / int8}))
                rows[-1].note = f"vs fused {fused / int8:.2f}x"
                del qnet
            del net, fused_net
    return rows


def _reference_rows(config: BenchConfig) -> List[BenchRow]:
    size = config.reference_size
    x = mx.nd.random.normal(shape=(1, 3, size, size))
    time_it = lambda net: forward_seconds(net, x, config.repeats, config.warmup)  # noqa: E731
    ours = build_model(21, config.backbone, "aspp", 8)
    ours.hybridize(static_alloc=True, static_shape=True)
    ours_s, ours_mem = _measured(time_it, ours)
    ref = gluoncv_deeplab(size, size)
    ref.hybridize(static_alloc=True, static_shape=True)
    ref_s, ref_mem = _measured(time_it, ref)
    tag = f"OS 8 aspp {size}x{size}"
    return [
        BenchRow("reference", f"gluoncv DeepLabV3-resnet50 forward fp32 {tag}", ref_s, "s/img",
                 peak_mib=ref_mem),
        BenchRow("reference", f"forward fp32 {config.backbone} {tag} (ours)", ours_s, "s/img",
                 ref_s / ours_s, "gluoncv / ours", ">= 1.0", ours_mem),
    ]


def _train_rows(config: BenchConfig) -> List[BenchRow]:
    b, crop, n = config.train_batch, config.train_crop, config.train_iterations
    tag = f"batch {b} crop {crop} OS 16"
    ours = build_model(21, config.backbone, "aspp", 16)
    ours_s, ours_mem = _measured(train_step_seconds, ours, b, crop, 21, n)
    ref_crop = crop - crop % 8  # gluoncv bakes the size in and needs a multiple of 8
    ref = gluoncv_deeplab(ref_crop, ref_crop)
    ref_s, ref_mem = _measured(train_step_seconds, ref, b, ref_crop, 21, n)
    rows = [
        BenchRow("train", f"gluoncv train iteration {tag.replace('OS 16', 'OS 8')}", ref_s,
                 "s/it", peak_mib=ref_mem, note=f"crop {ref_crop}"),
        BenchRow("train", f"train iteration {config.backbone} aspp {tag} (ours)", ours_s, "s/it",
                 ref_s / ours_s, "gluoncv / ours", ">= 1.0", ours_mem),
    ]
    from ..training import benchmark_training

    result, mem = _measured(benchmark_training, config.backbone, b, crop, 16, n, mx.cpu())
    trainer_s = result["seconds_per_iter"]
    rows.append(BenchRow("train", f"train iteration (trainer's loop) {tag}", trainer_s, "s/it",
                         ref_s / trainer_s, "gluoncv / ours", ">= 1.0", mem))
    return rows


# (name, decoder, separable 3x3 convs in head and decoder)
DECODER_VARIANTS = (("V3", False, False), ("V3+", True, False), ("V3+ separable", True, True))


def _decoder_rows(config: BenchConfig) -> List[BenchRow]:
    """DeepLabV3 vs V3+ (decoder; also with separable convs): forward fp32 for each output
    stride and head, and the training step of V3+ at OS 16. The issue's target: V3+ at OS 16
    costs at most half of V3 at OS 8 (ratio on the OS 16 rows when OS 8 is benchmarked)."""
    rows: List[BenchRow] = []
    x = mx.nd.random.normal(shape=(1, 3, config.size, config.size))
    time_it = lambda net: forward_seconds(net, x, config.repeats, config.warmup)  # noqa: E731
    by_case: Dict[tuple, BenchRow] = {}
    for stride in sorted(config.output_strides, reverse=True):
        for head in config.heads:
            for model, decoder, separable in DECODER_VARIANTS:
                net = build_model(21, config.backbone, head, stride, decoder=decoder,
                                  separable=separable)
                net.hybridize(static_alloc=True, static_shape=True)
                value, mem = _measured(time_it, net)
                row = BenchRow("decoder", f"forward fp32 {model} {config.backbone} OS {stride} "
                               f"{head} {config.size}x{config.size}", value, "s/img",
                               peak_mib=mem)
                rows.append(row)
                by_case[stride, head, model] = row
                del net
    for (stride, head, model), row in by_case.items():
        if stride == 16 and model != "V3" and (8, head, "V3") in by_case:
            row.ratio = row.value / by_case[8, head, "V3"].value
            row.ratio_of = "this / V3 OS 8"
            row.target = "<= 0.5" if model == "V3+" else ""
    b, crop = config.train_batch, config.train_crop
    for model, decoder, separable in DECODER_VARIANTS[1:]:
        net = build_model(21, config.backbone, config.heads[0], 16, decoder=decoder,
                          separable=separable)
        value, mem = _measured(train_step_seconds, net, b, crop, 21, config.train_iterations)
        rows.append(BenchRow("decoder", f"train iteration {model} {config.backbone} "
                             f"{config.heads[0]} batch {b} crop {crop} OS 16", value, "s/it",
                             peak_mib=mem))
    return rows


def _loader_rows(config: BenchConfig, train_seconds: Optional[float]) -> List[BenchRow]:
    from ..data import benchmark_loader, get_dataset, make_synthetic_dataset

    with tempfile.TemporaryDirectory() as root:
        make_synthetic_dataset(root, num_train=max(8, config.train_batch * 2), num_val=1,
                               size=tuple(config.loader_image_size))
        dataset = get_dataset("synthetic", root, "train", mode="train",
                              crop_size=config.train_crop)
        ips, mem = _measured(benchmark_loader, dataset, config.train_batch,
                             config.loader_workers, config.loader_batches)
    row = BenchRow("loader", f"data loader crop {config.train_crop} batch {config.train_batch} "
                   f"workers {config.loader_workers}", ips, "img/s", peak_mib=mem,
                   target=">= 1.0")
    if train_seconds:
        row.ratio = ips / (config.train_batch / train_seconds)
        row.ratio_of = "loader img/s / training img/s"
    return [row]


def run_benchmark(config: BenchConfig, log: Optional[Callable[[str], None]] = None
                  ) -> List[BenchRow]:
    """Run the parts of ``config`` and return the table rows."""
    logging.getLogger().setLevel(logging.WARNING)
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
    rows: List[BenchRow] = []
    steps = [("forward", _forward_rows), ("reference", _reference_rows),
             ("train", _train_rows), ("decoder", _decoder_rows)]
    for part, fn in steps:
        if part in config.parts:
            if log:
                log(f"benchmark: {part} ...")
            for row in fn(config):
                rows.append(row)
                if log:
                    log(f"  {row.name}: {row.value:.4f} {row.unit}"
                        + (f" (ratio {row.ratio:.2f}, {row.ratio_of})" if row.ratio else ""))
    if "loader" in config.parts:
        train = [r.value for r in rows if r.part == "train" and "(ours)" in r.name]
        rows += _loader_rows(config, train[0] if train else None)
    return rows


def format_table(rows: Sequence[BenchRow]) -> str:
    """A plain-text table of the rows."""
    header = ("case", "value", "unit", "ratio", "ratio is", "target", "peak MiB", "note")
    lines = [header]
    for r in rows:
        lines.append((r.name, f"{r.value:.4f}" if r.value is not None else "-", r.unit,
                      f"{r.ratio:.2f}" if r.ratio is not None else "", r.ratio_of, r.target,
                      f"{r.peak_mib:.0f}" if r.peak_mib is not None else "", r.note))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    text = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, "-" * len(text[0]))
    return "\n".join(text)


def rows_as_dicts(rows: Sequence[BenchRow]) -> List[dict]:
    return [asdict(r) for r in rows]
