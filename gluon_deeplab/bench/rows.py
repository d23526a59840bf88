"""The rows of the benchmark table, part by part, and :func:`run_benchmark`.

Every row runs in a child process of its own, one after another (runner.py); gluoncv's
DeepLabV3 and, with ``peers=("torch",)``, the same network in PyTorch are timed in the same
way, beside ours. Rows that cannot run on this CPU (bf16 and AMP where oneDNN has no bf16
kernels) say "n/a (reason)".
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Dict, List, Optional

from .config import BenchConfig
from .runner import BenchRow, ratio, row, run_case, versus_fused

REFERENCE_BACKBONE = "resnet50_v2"  # gluoncv's DeepLabV3 and the PyTorch peer run ResNet-50


def _bf16_unavailable() -> Optional[str]:
    from ..precision import bf16_support

    support = bf16_support()
    return None if support.ok else support.reason


def _versus_resnet50(config: BenchConfig, this: BenchRow, reference: BenchRow, of: str,
                     target: str = "", inverse: bool = False) -> BenchRow:
    """A ratio against gluoncv / PyTorch only when our backbone is ResNet-50 like theirs."""
    if config.backbone == REFERENCE_BACKBONE:
        return ratio(this, reference, of, target, inverse)
    if this.value is not None:  # a failed or n/a row keeps its reason
        this.note = f"no ratio: the reference runs resnet50, ours {config.backbone}"
    return this


def _versus_gluoncv(config: BenchConfig, this: BenchRow, reference: BenchRow) -> BenchRow:
    return _versus_resnet50(config, this, reference, "gluoncv / ours", ">= 1.0")


def _versus_ours(config: BenchConfig, peer: BenchRow, fp32: BenchRow,
                 low: Optional[BenchRow] = None, what: str = "") -> BenchRow:
    """A peer's row against ours, as peer / ours (> 1: ours is faster): a fp32 peer against
    our fp32 row; a bf16 peer against our ``low`` row (bf16 / AMP) where that ran, else
    against our fp32 row, without a target."""
    if low is not None and low.value:
        return _versus_resnet50(config, peer, low, f"torch / ours {what}", ">= 1.0", True)
    return _versus_resnet50(config, peer, fp32, "torch / ours fp32", "" if what else ">= 1.0",
                            True)


def _torch_bf16_unavailable() -> Optional[str]:
    """Why PyTorch's bf16 rows are not run here: without native bf16 it emulates it, far
    slower than its fp32 (measured 18x at 64x64 on an AVX2 CPU), which tells nothing."""
    from ..precision import cpu_flags

    if cpu_flags() & {"avx512_bf16", "amx_bf16"}:
        return None
    return "no avx512_bf16 / amx_bf16: PyTorch emulates bf16 (18x slower than its fp32 at " \
           "64x64 on an AVX2 CPU)"


def _int8_target() -> str:
    """INT8 against fp32: >= 3.5x where oneDNN has AMX for it, >= 1.8x elsewhere."""
    from ..precision import cpu_flags

    return ">= 3.5" if "amx_int8" in cpu_flags() else ">= 1.8"


def _forward_rows(config: BenchConfig) -> List[BenchRow]:
    rows: List[BenchRow] = []
    no_bf16 = _bf16_unavailable() if config.bf16 else None
    for stride in config.output_strides:
        for head in config.heads:
            tag = f"OS {stride} {head} {config.size}x{config.size}"
            common = dict(backbone=config.backbone, head=head, stride=stride, size=config.size,
                          repeats=config.repeats, warmup=config.warmup)
            plain = row("forward", f"forward fp32 {tag}", "forward", "s/img",
                        variant="fp32", **common)
            fused = ratio(row("forward", f"forward fp32 fused (MKLDNN) {tag}", "forward",
                              "s/img", variant="fused", **common), plain, "fp32 plain / this")
            rows += [plain, fused]
            if config.int8:
                int8 = ratio(row("forward", f"forward int8 {tag}", "forward", "s/img",
                                 variant="int8", calib_mode=config.calib_mode,
                                 quantized_dtype=config.quantized_dtype, **common),
                             plain, "fp32 plain / this", _int8_target())
                rows.append(versus_fused(int8, fused))
            bf16 = None
            if config.bf16:
                bf16 = ratio(row("forward", f"forward bf16 {tag}", "forward", "s/img",
                                 no_bf16, variant="bf16", **common),
                             plain, "fp32 plain / this", ">= 1.8")
                rows.append(versus_fused(bf16, fused))
            if "torch" in config.peers and head == "aspp":
                rows += _torch_forward_rows(config, stride, plain, bf16)
    return rows


def _torch_forward_rows(config: BenchConfig, stride: int, plain: BenchRow,
                        bf16: Optional[BenchRow]) -> List[BenchRow]:
    tag = f"OS {stride} aspp {config.size}x{config.size}"
    common = dict(size=config.size, stride=stride, repeats=config.repeats, warmup=config.warmup)
    fp32 = row("forward", f"PyTorch DeepLabV3-resnet50 forward fp32 {tag}", "torch_forward",
               "s/img", bf16=False, **common)
    auto = row("forward", f"PyTorch DeepLabV3-resnet50 forward bf16 autocast {tag}",
               "torch_forward", "s/img", _torch_bf16_unavailable(), bf16=True, **common)
    return [_versus_ours(config, fp32, plain), _versus_ours(config, auto, plain, bf16, "bf16")]


def _reference_rows(config: BenchConfig) -> List[BenchRow]:
    size = config.reference_size
    tag = f"OS 8 aspp {size}x{size}"
    ref = row("reference", f"gluoncv DeepLabV3-resnet50 forward fp32 {tag}",
              "reference_forward", "s/img", size=size, repeats=config.repeats,
              warmup=config.warmup)
    ours = row("reference", f"forward fp32 {config.backbone} {tag} (ours)", "forward",
               "s/img", backbone=config.backbone, head="aspp", stride=8, size=size,
               variant="fp32", repeats=config.repeats, warmup=config.warmup)
    return [ref, _versus_gluoncv(config, ours, ref)]


def _devices(config: BenchConfig) -> str:
    return f" on GPUs {config.gpus}" if config.gpus else ""


def _train_rows(config: BenchConfig) -> List[BenchRow]:
    b, crop, n = config.train_batch, config.train_crop, config.train_iterations
    tag = f"batch {b} crop {crop}"
    ref_crop = crop - crop % 8  # gluoncv bakes the size in and needs a multiple of 8
    loop = dict(backbone=config.backbone, batch=b, iterations=n, gpus=config.gpus)
    ref = row("train", f"gluoncv train iteration {tag} OS 8{_devices(config)}", "train_loop",
              "s/it", model="gluoncv", crop=ref_crop, **loop)
    if ref.value is not None:  # a failed row keeps its reason
        ref.note = f"crop {ref_crop}"
    ours = row("train", f"train iteration {config.backbone} aspp {tag} OS 16 (ours)"
               f"{_devices(config)}", "train_loop", "s/it", model="ours", crop=crop, **loop)
    rows = [ref, _versus_gluoncv(config, ours, ref)]
    no_amp = _bf16_unavailable() if config.amp and not config.gpus else None  # CPU AMP: bf16
    for stride in config.output_strides:
        common = dict(backbone=config.backbone, batch=b, crop=crop, stride=stride,
                      iterations=n, gpus=config.gpus)
        fp32 = row("train", f"train iteration (trainer's loop) {tag} OS {stride}"
                   f"{_devices(config)}", "trainer_step", "s/it", amp=False, **common)
        rows.append(_versus_gluoncv(config, fp32, ref))
        amp = None
        if config.amp:
            amp = row("train", f"train iteration AMP (trainer's loop) {tag} OS {stride}"
                      f"{_devices(config)}", "trainer_step", "s/it", no_amp, amp=True,
                      **common)
            rows.append(ratio(amp, fp32, "fp32 / AMP", ">= 1.5" if stride == 16 else ""))
        if "torch" in config.peers:
            rows += _torch_train_rows(config, stride, fp32, amp)
    return rows


def _torch_train_rows(config: BenchConfig, stride: int, fp32: BenchRow,
                      amp: Optional[BenchRow]) -> List[BenchRow]:
    b, crop = config.train_batch, config.train_crop
    tag = f"batch {b} crop {crop} OS {stride}"
    common = dict(batch=b, crop=crop, stride=stride, iterations=config.train_iterations)
    plain = row("train", f"PyTorch train iteration fp32 {tag}", "torch_train", "s/it",
                bf16=False, **common)
    auto = row("train", f"PyTorch train iteration bf16 autocast {tag}", "torch_train", "s/it",
               _torch_bf16_unavailable(), bf16=True, **common)
    return [_versus_ours(config, plain, fp32), _versus_ours(config, auto, fp32, amp, "AMP")]


def _syncbn_rows(config: BenchConfig) -> List[BenchRow]:
    """The trainer's step at OS 16 on several devices, plain BatchNorm and SyncBatchNorm; the
    target: SyncBN within 1.3x of the plain step."""
    devices = f"GPUs {config.gpus}" if config.gpus else f"{config.syncbn_devices} CPU contexts"
    common = dict(backbone=config.backbone, batch=config.train_batch, crop=config.train_crop,
                  stride=16, iterations=config.train_iterations, gpus=config.gpus,
                  cpu_devices=config.syncbn_devices)
    tag = f"batch {config.train_batch} crop {config.train_crop} OS 16 on {devices}"
    plain = row("syncbn", f"train iteration (trainer's loop) BatchNorm {tag}", "trainer_step",
                "s/it", syncbn=False, **common)
    sync = row("syncbn", f"train iteration (trainer's loop) SyncBatchNorm {tag}",
               "trainer_step", "s/it", syncbn=True, **common)
    return [plain, ratio(sync, plain, "this / BatchNorm", "<= 1.3", inverse=True)]


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
                this = row("decoder", f"forward fp32 {model} {config.backbone} OS {stride} "
                           f"{head} {config.size}x{config.size}", "forward", "s/img",
                           backbone=config.backbone, head=head, stride=stride,
                           size=config.size, variant="fp32", repeats=config.repeats,
                           warmup=config.warmup, decoder=decoder, separable=separable)
                rows.append(this)
                by_case[stride, head, model] = this
    for (stride, head, model), this in by_case.items():
        if stride == 16 and model != "V3" and (8, head, "V3") in by_case:
            ratio(this, by_case[8, head, "V3"], "this / V3 OS 8",
                  "<= 0.5" if model == "V3+" else "", inverse=True)
    b, crop = config.train_batch, config.train_crop
    for model, decoder, separable in DECODER_VARIANTS[1:]:
        rows.append(row("decoder", f"train iteration {model} {config.backbone} "
                        f"{config.heads[0]} batch {b} crop {crop} OS 16", "train_loop", "s/it",
                        model="ours", backbone=config.backbone, batch=b, crop=crop,
                        iterations=config.train_iterations, head=config.heads[0],
                        decoder=decoder, separable=separable))
    return rows


def _amp_cast_rows(config: BenchConfig) -> List[BenchRow]:
    """AMP's dtype-changing casts of activations per training step (forward and its mirror
    in the backward), and the elements they convert per image; weight casts in the note."""
    rows = []
    for stride in config.output_strides:
        name = (f"AMP activation casts per step {config.backbone} {config.heads[0]} "
                f"crop {config.train_crop} OS {stride}")
        this = row("amp_casts", name, "amp_casts", "casts", backbone=config.backbone,
                   head=config.heads[0], stride=stride, crop=config.train_crop)
        found = this.value  # the case's counts, or None where it failed (the note says why)
        if found is not None:
            this.value = 2 * found["activations"]
            this.note = (f"{2 * found['elements'] / 1e6:.2f} M elements/image; "
                         f"{found['weights']} weight casts")
        rows.append(this)
    return rows


def _loader_rows(config: BenchConfig, train_seconds: Optional[float]) -> List[BenchRow]:
    this = row("loader", f"data loader crop {config.train_crop} batch {config.train_batch} "
               f"workers {config.loader_workers}", "loader", "img/s",
               batch=config.train_batch, workers=config.loader_workers,
               batches=config.loader_batches, image_size=tuple(config.loader_image_size),
               crop=config.train_crop)
    this.target = ">= 1.0"
    if train_seconds and this.value:
        this.ratio = this.value / (config.train_batch / train_seconds)
        this.ratio_of = "loader img/s / training img/s"
    return [this]


def _log_row(log: Callable[[str], None], this: BenchRow) -> None:
    value = f"{this.value:.4f} {this.unit}" if this.value is not None else this.note
    log(f"  {this.name}: {value}"
        + (f" (ratio {this.ratio:.2f}, {this.ratio_of})" if this.ratio else "")
        + (f" [{this.isa}]" if this.isa else ""))


def run_benchmark(config: BenchConfig, log: Optional[Callable[[str], None]] = None
                  ) -> List[BenchRow]:
    """Run the parts of ``config`` and return the table rows (every row in its own process)."""
    logging.getLogger().setLevel(logging.WARNING)
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
    _, baseline, _ = run_case("baseline")
    rows: List[BenchRow] = [BenchRow("memory", "process baseline (MXNet imported, nothing run)",
                                     None, "", peak_mib=baseline,
                                     note="every row's peak MiB includes this")]
    steps = [("forward", _forward_rows), ("reference", _reference_rows),
             ("train", _train_rows), ("syncbn", _syncbn_rows), ("decoder", _decoder_rows),
             ("amp_casts", _amp_cast_rows)]
    for part, fn in steps:
        if part in config.parts:
            if log:
                log(f"benchmark: {part} ...")
            for this in fn(config):
                rows.append(this)
                if log:
                    _log_row(log, this)
    if "loader" in config.parts:
        train = [r.value for r in rows if r.part == "train" and "(ours)" in r.name]
        rows += _loader_rows(config, train[0] if train else None)
    return rows
