"""Speed benchmark: forward (fp32 plain / fused / INT8 / bf16), training step (fp32 / AMP),
data loader, memory, DeepLabV3 vs V3+ (decoder).

Every row runs in a child process of its own, one after another, on the CPU; gluoncv's
DeepLabV3 is timed in the same loops as the reference. A row's "peak MiB" is the peak
resident set size of its child: the process baseline (MXNet imported; its own row) plus what
the case needed, never memory left behind by an earlier row. Rows that cannot run on this
CPU (bf16 and AMP where oneDNN has no bf16 kernels) say "n/a (reason)".
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
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
    bf16: bool = True  # bf16 forward rows ("n/a (reason)" where this CPU cannot run bf16)
    amp: bool = True  # AMP training rows (bf16 on CPU; same)
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
                     train_batch=2, train_crop=64, train_iterations=1, loader_workers=1,
                     loader_batches=2, loader_image_size=(64, 80), repeats=1, warmup=1)
        for key, value in overrides.items():
            setattr(config, key, value)
        return config


FAILED = "failed:"  # note of a row whose case failed


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


def _case_in_child(conn, name: str, kwargs: dict) -> None:
    """Child side of :func:`run_case`: run one case, send back (result, peak MiB) or an error."""
    try:
        logging.getLogger().setLevel(logging.WARNING)
        gc.collect()
        _reset_peak_memory()
        result = CASES[name](**kwargs)
        conn.send(("ok", result, peak_memory_mib()))
    except BaseException as err:  # reported by the parent as this row's failure
        lines = str(err).strip().splitlines() or [""]
        conn.send(("error", f"{type(err).__name__}: {lines[-1]}", None))
    finally:
        conn.close()


def run_case(name: str, timeout: float = 1800, **kwargs):
    """Run case ``name`` in a child process of its own; returns (result, peak MiB of the child).

    Each child is a fresh interpreter ('spawn'; MXNet runs single-threaded in a forked
    child) that imports MXNet and this package and runs the one case, so a row's peak is
    its own: the baseline (the "process baseline" row) plus what the case needed, never
    memory left by an earlier case. AMP (``amp.init``) patches MXNet only inside the child.
    """
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    # Not a daemon: the data loader case starts worker processes of its own.
    proc = ctx.Process(target=_case_in_child, args=(child, name, kwargs))
    proc.start()
    child.close()
    if not parent.poll(timeout):
        proc.kill()
        raise TimeoutError(f"benchmark case {name} took more than {timeout:.0f} s")
    try:
        status, result, peak = parent.recv()
    except EOFError:  # the child died without a word (killed, or failed to start)
        proc.join(10)
        raise RuntimeError(f"benchmark case {name} ended without a result (exit code "
                           f"{proc.exitcode}); the calling script needs an "
                           "'if __name__ == \"__main__\":' guard") from None
    proc.join(10)
    if status != "ok":
        raise RuntimeError(f"benchmark case {name} failed: {result}")
    return result, peak


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


# -- cases: each runs in a child process of its own (run_case) and returns seconds -------------

def _forward_case(backbone: str, head: str, stride: int, size: int, variant: str,
                  repeats: int, warmup: int, calib_mode: str = "naive",
                  quantized_dtype: str = "auto", decoder: bool = False,
                  separable: bool = False) -> float:
    """Median forward seconds of one variant: fp32 | fused (MKLDNN) | int8 | bf16."""
    x = mx.nd.random.normal(shape=(1, 3, size, size))
    net = build_model(21, backbone, head, stride, decoder=decoder, separable=separable)
    if variant == "fused":
        net.optimize_for(x, backend="MKLDNN", static_alloc=True, static_shape=True)
    elif variant == "int8":
        net = quantize_model(net, _RandomCalibration(size), calib_mode=calib_mode,
                             quantized_dtype=quantized_dtype)
    elif variant == "bf16":
        from ..precision import to_bf16

        net.hybridize()
        net(x)
        net = to_bf16(net)
    if variant != "fused":
        net.hybridize(static_alloc=True, static_shape=True)
    return forward_seconds(net, x, repeats, warmup)


def _reference_forward_case(size: int, repeats: int, warmup: int) -> float:
    x = mx.nd.random.normal(shape=(1, 3, size, size))
    net = gluoncv_deeplab(size, size)
    net.hybridize(static_alloc=True, static_shape=True)
    return forward_seconds(net, x, repeats, warmup)


def _train_loop_case(model: str, backbone: str, batch: int, crop: int, iterations: int,
                     head: str = "aspp", decoder: bool = False, separable: bool = False
                     ) -> float:
    """The same plain SGD loop for ours (OS 16) and gluoncv's DeepLabV3 (OS 8)."""
    net = gluoncv_deeplab(crop, crop) if model == "gluoncv" else \
        build_model(21, backbone, head, 16, decoder=decoder, separable=separable)
    return train_step_seconds(net, batch, crop, 21, iterations)


def _trainer_step_case(backbone: str, batch: int, crop: int, stride: int, iterations: int,
                       amp: bool) -> float:
    from ..training import benchmark_training

    return benchmark_training(backbone, batch, crop, stride, iterations, mx.cpu(),
                              amp=amp)["seconds_per_iter"]


def _loader_case(batch: int, workers: int, batches: int, image_size: Sequence[int],
                 crop: int) -> float:
    from ..data import benchmark_loader, get_dataset, make_synthetic_dataset

    with tempfile.TemporaryDirectory() as root:
        make_synthetic_dataset(root, num_train=max(8, batch * 2), num_val=1,
                               size=tuple(image_size))
        dataset = get_dataset("synthetic", root, "train", mode="train", crop_size=crop)
        return benchmark_loader(dataset, batch, workers, batches)


def _baseline_case() -> float:
    return 0.0


CASES: Dict[str, Callable[..., float]] = {
    "forward": _forward_case, "reference_forward": _reference_forward_case,
    "train_loop": _train_loop_case, "trainer_step": _trainer_step_case,
    "loader": _loader_case, "baseline": _baseline_case,
}


def _row(part: str, name: str, case: str, unit: str, unavailable: Optional[str] = None,
         **kwargs) -> BenchRow:
    """A row measured by ``case`` in its own process; "n/a (reason)" where it cannot run, and
    "failed: reason" where it fails (the other rows still run)."""
    if unavailable:
        return BenchRow(part, name, None, unit, note=f"n/a ({unavailable})")
    try:
        value, peak = run_case(case, **kwargs)
    except (RuntimeError, TimeoutError) as err:
        return BenchRow(part, name, None, unit, note=f"{FAILED} {err}")
    return BenchRow(part, name, value, unit, peak_mib=peak)


def _ratio(row: BenchRow, reference: BenchRow, of: str, target: str = "",
           inverse: bool = False) -> BenchRow:
    if row.value and reference.value:
        row.ratio = row.value / reference.value if inverse else reference.value / row.value
        row.ratio_of = of
    row.target = target
    return row


def _versus_fused(row: BenchRow, fused: BenchRow) -> BenchRow:
    """Note the speed-up of ``row`` over the fused fp32 row, where both were measured."""
    if row.value and fused.value:
        row.extra = {"speedup_vs_fused": fused.value / row.value}
        row.note = f"vs fused {fused.value / row.value:.2f}x"
    return row


def _bf16_unavailable() -> Optional[str]:
    from ..precision import bf16_support

    support = bf16_support()
    return None if support.ok else support.reason


def _forward_rows(config: BenchConfig) -> List[BenchRow]:
    rows: List[BenchRow] = []
    no_bf16 = _bf16_unavailable() if config.bf16 else None
    for stride in config.output_strides:
        for head in config.heads:
            tag = f"OS {stride} {head} {config.size}x{config.size}"
            common = dict(backbone=config.backbone, head=head, stride=stride, size=config.size,
                          repeats=config.repeats, warmup=config.warmup)
            plain = _row("forward", f"forward fp32 {tag}", "forward", "s/img",
                         variant="fp32", **common)
            fused = _ratio(_row("forward", f"forward fp32 fused (MKLDNN) {tag}", "forward",
                                "s/img", variant="fused", **common), plain, "fp32 plain / this")
            rows += [plain, fused]
            if config.int8:
                int8 = _ratio(_row("forward", f"forward int8 {tag}", "forward", "s/img",
                                   variant="int8", calib_mode=config.calib_mode,
                                   quantized_dtype=config.quantized_dtype, **common),
                              plain, "fp32 plain / this", ">= 1.8")
                rows.append(_versus_fused(int8, fused))
            if config.bf16:
                bf16 = _ratio(_row("forward", f"forward bf16 {tag}", "forward", "s/img",
                                   no_bf16, variant="bf16", **common),
                              plain, "fp32 plain / this", ">= 1.5" if stride == 8 else "")
                rows.append(_versus_fused(bf16, fused))
    return rows


REFERENCE_BACKBONE = "resnet50_v2"  # gluoncv's DeepLabV3 runs ResNet-50


def _versus_gluoncv(config: BenchConfig, row: BenchRow, reference: BenchRow) -> BenchRow:
    """Our row beside gluoncv's: a ratio only when the backbones are alike (ResNet-50)."""
    if config.backbone == REFERENCE_BACKBONE:
        return _ratio(row, reference, "gluoncv / ours", ">= 1.0")
    row.note = f"no ratio: gluoncv runs resnet50, this row {config.backbone}"
    return row


def _reference_rows(config: BenchConfig) -> List[BenchRow]:
    size = config.reference_size
    tag = f"OS 8 aspp {size}x{size}"
    ref = _row("reference", f"gluoncv DeepLabV3-resnet50 forward fp32 {tag}",
               "reference_forward", "s/img", size=size, repeats=config.repeats,
               warmup=config.warmup)
    ours = _row("reference", f"forward fp32 {config.backbone} {tag} (ours)", "forward",
                "s/img", backbone=config.backbone, head="aspp", stride=8, size=size,
                variant="fp32", repeats=config.repeats, warmup=config.warmup)
    return [ref, _versus_gluoncv(config, ours, ref)]


def _train_rows(config: BenchConfig) -> List[BenchRow]:
    b, crop, n = config.train_batch, config.train_crop, config.train_iterations
    tag = f"batch {b} crop {crop}"
    ref_crop = crop - crop % 8  # gluoncv bakes the size in and needs a multiple of 8
    ref = _row("train", f"gluoncv train iteration {tag} OS 8", "train_loop", "s/it",
               model="gluoncv", backbone=config.backbone, batch=b, crop=ref_crop, iterations=n)
    ref.note = f"crop {ref_crop}"
    ours = _row("train", f"train iteration {config.backbone} aspp {tag} OS 16 (ours)",
                "train_loop", "s/it", model="ours", backbone=config.backbone, batch=b,
                crop=crop, iterations=n)
    rows = [ref, _versus_gluoncv(config, ours, ref)]
    no_amp = _bf16_unavailable() if config.amp else None  # CPU AMP is bfloat16
    for stride in config.output_strides:
        common = dict(backbone=config.backbone, batch=b, crop=crop, stride=stride,
                      iterations=n)
        fp32 = _row("train", f"train iteration (trainer's loop) {tag} OS {stride}",
                    "trainer_step", "s/it", amp=False, **common)
        rows.append(_versus_gluoncv(config, fp32, ref))
        if config.amp:
            amp = _row("train", f"train iteration AMP bf16 (trainer's loop) {tag} OS {stride}",
                       "trainer_step", "s/it", no_amp, amp=True, **common)
            rows.append(_ratio(amp, fp32, "fp32 / AMP", "> 1.0"))
    return rows


# (name, decoder, separable 3x3 convs in head and decoder)
DECODER_VARIANTS = (("V3", False, False), ("V3+", True, False), ("V3+ separable", True, True))


def _decoder_rows(config: BenchConfig) -> List[BenchRow]:
    """DeepLabV3 vs V3+ (decoder; also with separable convs): forward fp32 for each output
    stride and head, and the training step of V3+ at OS 16. The issue's target: V3+ at OS 16
    costs at most half of V3 at OS 8 (ratio on the OS 16 rows when OS 8 is benchmarked)."""
    rows: List[BenchRow] = []
    by_case: Dict[tuple, BenchRow] = {}
    for stride in sorted(config.output_strides, reverse=True):
        for head in config.heads:
            for model, decoder, separable in DECODER_VARIANTS:
                row = _row("decoder", f"forward fp32 {model} {config.backbone} OS {stride} "
                           f"{head} {config.size}x{config.size}", "forward", "s/img",
                           backbone=config.backbone, head=head, stride=stride,
                           size=config.size, variant="fp32", repeats=config.repeats,
                           warmup=config.warmup, decoder=decoder, separable=separable)
                rows.append(row)
                by_case[stride, head, model] = row
    for (stride, head, model), row in by_case.items():
        if stride == 16 and model != "V3" and (8, head, "V3") in by_case:
            _ratio(row, by_case[8, head, "V3"], "this / V3 OS 8",
                   "<= 0.5" if model == "V3+" else "", inverse=True)
    b, crop = config.train_batch, config.train_crop
    for model, decoder, separable in DECODER_VARIANTS[1:]:
        rows.append(_row("decoder", f"train iteration {model} {config.backbone} "
                         f"{config.heads[0]} batch {b} crop {crop} OS 16", "train_loop", "s/it",
                         model="ours", backbone=config.backbone, batch=b, crop=crop,
                         iterations=config.train_iterations, head=config.heads[0],
                         decoder=decoder, separable=separable))
    return rows


def _loader_rows(config: BenchConfig, train_seconds: Optional[float]) -> List[BenchRow]:
    row = _row("loader", f"data loader crop {config.train_crop} batch {config.train_batch} "
               f"workers {config.loader_workers}", "loader", "img/s",
               batch=config.train_batch, workers=config.loader_workers,
               batches=config.loader_batches, image_size=tuple(config.loader_image_size),
               crop=config.train_crop)
    row.target = ">= 1.0"
    if train_seconds and row.value:
        row.ratio = row.value / (config.train_batch / train_seconds)
        row.ratio_of = "loader img/s / training img/s"
    return [row]


def run_benchmark(config: BenchConfig, log: Optional[Callable[[str], None]] = None
                  ) -> List[BenchRow]:
    """Run the parts of ``config`` and return the table rows (every row in its own process)."""
    logging.getLogger().setLevel(logging.WARNING)
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
    _, baseline = run_case("baseline")
    rows: List[BenchRow] = [BenchRow("memory", "process baseline (MXNet imported, nothing run)",
                                     None, "", peak_mib=baseline,
                                     note="every row's peak MiB includes this")]
    steps = [("forward", _forward_rows), ("reference", _reference_rows),
             ("train", _train_rows), ("decoder", _decoder_rows)]
    for part, fn in steps:
        if part in config.parts:
            if log:
                log(f"benchmark: {part} ...")
            for row in fn(config):
                rows.append(row)
                if log:
                    value = f"{row.value:.4f} {row.unit}" if row.value is not None else row.note
                    log(f"  {row.name}: {value}"
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
