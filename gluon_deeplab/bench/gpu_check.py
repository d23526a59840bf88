"""``gluon-deeplab-gpu-check``: the first thing to run on a new GPU machine, and what a bug
report attaches. It reports the MXNet build, the GPUs and their compute capability against the
build's kernels, runs a tiny kernel on every device, trains a few iterations in fp32 and in AMP
on a generated synthetic set (with SyncBN and the ``nccl`` kvstore on 2+ devices), evaluates
multi-scale + flip, and prints one table.

Every run goes through the trainer (``training.train``) and the evaluation library
(``evaluation.evaluate``) in a child process of its own (``runner.run_case``), on GPUs or, the
same code, on CPU contexts (``--cpu_devices N``; how the tests run it).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..cpuinfo import cpu_name
from ..devices import cuda_build, resolve_contexts
from ..env import mxnet_section
from ..mxnet_builds import build_of, installed_builds, kernel_verdict, query_gpus, sm
from ..precision import bf16_support
from ..training.multi_device import nccl_available
from .runner import FAILED, aligned, run_case

Log = Callable[[str], None]
EVAL_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # the recipe's evaluation


@dataclass
class GpuCheckConfig:
    """What the check runs (defaults: the recipe's model and crop, a few minutes on one GPU)."""

    gpus: str = ""  # empty: every GPU MXNet sees, else the CPU
    cpu_devices: int = 0
    backbone: str = "resnet50_v2"
    crop_size: int = 513
    batch_per_device: int = 4
    iterations: int = 20
    warmup: int = 2  # iterations not timed (graph builds, kernel tuning)
    image_size: Tuple[int, int] = (375, 500)  # of the synthetic images, VOC's usual size
    num_train: int = 16
    val_images: int = 8
    scales: Tuple[float, ...] = EVAL_SCALES
    num_workers: Optional[int] = None  # the trainer's default: 4 per device
    timeout: float = 900.0  # seconds per child process

    def check(self) -> GpuCheckConfig:
        """One-line ValueErrors naming the flag of a bad value; returns ``self``."""
        for name in ("crop_size", "batch_per_device", "num_train", "val_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0 or self.iterations <= self.warmup:
            raise ValueError(f"--iterations {self.iterations} must exceed --warmup "
                             f"{self.warmup} (>= 0): the timed iterations come after it")
        for name in ("cpu_devices", "num_workers"):
            if (getattr(self, name) or 0) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"--scales must be positive numbers, got {self.scales}")
        return self


@dataclass
class CheckRow:
    """One line of the table: a training run (s/it) or the evaluation (s/img)."""

    name: str
    unit: str
    seconds: Optional[float] = None
    images_per_s: Optional[float] = None
    peak_mib: Optional[float] = None
    memory: str = ""  # "GPU" (MXNet's pool growth, the busiest device) or "RSS" (CPU)
    speedup: Optional[float] = None
    note: str = ""
    isa: str = ""  # what oneDNN ran (CPU contexts)
    extra: Dict[str, Any] = field(default_factory=dict)


def choose_devices(gpus: str, cpu_devices: int) -> Tuple[str, int, str]:
    """(--gpus, --cpu_devices, why): what was asked, else every GPU MXNet sees, else the CPU."""
    if gpus or cpu_devices:
        resolve_contexts(gpus, cpu_devices)  # one-line ValueError for what cannot run here
        return gpus, cpu_devices, "asked for"
    import mxnet as mx

    count = mx.context.num_gpus() if cuda_build() else 0
    if count:
        return ",".join(map(str, range(count))), 0, f"every GPU MXNet sees ({count})"
    why = "MXNet sees no GPU" if cuda_build() else "this MXNet is built without CUDA"
    return "", 1, f"the CPU: {why}"


def installed_build() -> Optional[str]:
    """The installed build's name for ``kernel_verdict``: ``cpu``, ``cu117`` ..., or None
    for a CUDA build not listed here (e.g. NVIDIA's container, whose MXNet is not a pip one)."""
    names = [build_of(name) for name, _ in installed_builds()]
    listed = names[0] if len(names) == 1 else None
    if not cuda_build():
        return "cpu"
    return listed if listed not in (None, "cpu") else None


def gpu_lines(build: Optional[str], smi_output: Optional[str] = None) -> List[Dict[str, Any]]:
    """Each GPU ``nvidia-smi`` lists, with its compute capability and whether the installed
    build has kernels for it (``kernel_verdict``)."""
    gpus = []
    for gpu in query_gpus(smi_output):
        ok, why = kernel_verdict(build or "unlisted", gpu.compute_capability)
        gpus.append({**asdict(gpu), "sm": sm(gpu.compute_capability), "kernels": ok,
                     "verdict": why})
    return gpus


def _case(name: str, config: GpuCheckConfig, **kwargs) -> Tuple[Any, float, str]:
    return run_case(name, timeout=config.timeout, **kwargs)


def kernel_results(config: GpuCheckConfig, gpus: str, cpu_devices: int) -> List[Dict[str, Any]]:
    """The tiny kernel on each device, in a child process (a failing GPU may abort it)."""
    try:
        results, _, _ = _case("gpu_kernel", config, gpus=gpus, cpu_devices=cpu_devices)
        return results
    except (RuntimeError, TimeoutError) as err:
        return [{"device": gpus or "cpu", "ok": False, "detail": str(err)}]


def _memory(result: Dict[str, Any], peak_rss: float) -> Tuple[float, str]:
    if result.get("gpu_mib") is not None:
        return result["gpu_mib"], "GPU"
    return peak_rss, "RSS"


def train_row(name: str, config: GpuCheckConfig, base: Dict[str, Any], images: int,
              unavailable: Optional[str] = None, **settings) -> CheckRow:
    """A training run of ``config.iterations`` through the trainer, timed after the warm-up;
    "n/a (why)" where it cannot run here, "failed: why" where it fails."""
    row = CheckRow(name, "s/it")
    if unavailable:
        row.note = f"n/a ({unavailable})"
        return row
    out = os.path.join(base["work"], name.replace(" ", "_").replace("/", "_"))
    run = dict(base["settings"], output_dir=out, **settings)
    try:
        result, peak, isa = _case("gpu_check_train", config, settings=run,
                                  warmup=config.warmup)
    except (RuntimeError, TimeoutError) as err:
        row.note = f"{FAILED} {err}"
        return row
    row.seconds, row.isa = result["seconds"], isa
    row.images_per_s = images / result["seconds"]
    row.peak_mib, row.memory = _memory(result, peak)
    row.extra = result
    skipped = f", {result['amp_skipped']} AMP step(s) skipped" if result["amp_skipped"] else ""
    row.note = f"kvstore {result['kvstore']}{skipped}"
    return row


def eval_row(config: GpuCheckConfig, base: Dict[str, Any], fp32: CheckRow,
             unavailable: Optional[str] = None) -> CheckRow:
    """Multi-scale + flip evaluation of the fp32 run's final checkpoint."""
    scales = ",".join(f"{s:g}" for s in config.scales)
    row = CheckRow(f"eval scales {scales} + flip, {config.val_images} images", "s/img")
    if unavailable or fp32.seconds is None:
        row.note = f"n/a ({unavailable or 'the fp32 run gave no checkpoint'})"
        return row
    try:
        result, peak, isa = _case(
            "gpu_check_eval", config, checkpoint=fp32.extra["checkpoint"], data_dir=base["data"],
            gpus=base["settings"]["gpus"], cpu_devices=base["settings"]["cpu_devices"],
            scales=config.scales, flip=True)
    except (RuntimeError, TimeoutError) as err:
        row.note = f"{FAILED} {err}"
        return row
    row.seconds, row.isa = result["seconds"], isa
    row.images_per_s = 1.0 / result["seconds"]
    row.peak_mib, row.memory = _memory(result, peak)
    row.note = f"mIoU {result['miou']:.3f} (weights after {config.iterations} iterations)"
    return row


def _speedup(row: CheckRow, reference: CheckRow, what: str) -> CheckRow:
    """``reference``'s s/it over ``row``'s (> 1: ``row`` is faster), noted as ``what``."""
    if row.seconds and reference.seconds:
        row.speedup = reference.seconds / row.seconds
        row.note = f"{row.note}; speed-up vs {what}" if row.note else f"speed-up vs {what}"
    return row


def amp_unavailable(device_type: str) -> Optional[str]:
    """Why AMP cannot run on these devices (None: it can). On CPUs AMP is bfloat16, which
    MXNet's oneDNN runs only on AVX-512 CPUs."""
    if device_type == "gpu":
        return None
    support = bf16_support()
    return None if support.ok else f"AMP on CPU contexts is bfloat16: {support.reason}"


def multi_device_unavailable(device_type: str, count: int) -> Dict[str, Optional[str]]:
    """Why the SyncBN and the nccl kvstore runs cannot run on these devices."""
    syncbn = None if count > 1 else "SyncBN needs 2+ devices (--gpus 0,1 or --cpu_devices 2)"
    if device_type != "gpu":
        nccl = "the nccl kvstore runs on GPUs only"
    elif count < 2:
        nccl = "the nccl kvstore needs 2+ GPUs"
    else:
        nccl = None if nccl_available() else "this MXNet is built without NCCL"
    return {"syncbn": syncbn, "nccl": nccl}


def _train_settings(config: GpuCheckConfig, data: str, gpus: str, cpu_devices: int,
                    batch: int) -> Dict[str, Any]:
    """The trainer's settings every run shares (each run adds its own)."""
    return dict(dataset="synthetic", data_dir=data, base_architecture=config.backbone,
                pre_trained_model="none", crop_size=config.crop_size, batch_size=batch,
                max_iter=config.iterations, val_interval=0,
                checkpoint_interval=config.iterations + 1, progress=0, tensorboard=False,
                num_workers=config.num_workers, gpus=gpus, cpu_devices=cpu_devices,
                syncbn=False, seed=0)


def check_rows(config: GpuCheckConfig, work: str, gpus: str, cpu_devices: int,
               blocked: Optional[str] = None, log: Optional[Log] = None) -> List[CheckRow]:
    """The table's runs, one child process each, on a synthetic set generated in ``work``;
    ``blocked``: why none can run (a device failed the kernel check)."""
    from ..data import make_synthetic_dataset

    ctxs = resolve_contexts(gpus, cpu_devices)
    kind, count = ctxs[0].device_type, len(ctxs)
    data = make_synthetic_dataset(os.path.join(work, "data"), num_train=config.num_train,
                                  num_val=config.val_images, size=config.image_size)
    batch = config.batch_per_device * count
    base = {"work": work, "data": data,
            "settings": _train_settings(config, data, gpus, cpu_devices, batch)}
    tag = f"{config.backbone} crop {config.crop_size} batch {batch}"
    multi = multi_device_unavailable(kind, count)
    runs = [("fp32", "train fp32", None, {}),
            ("amp", f"train AMP {'float16' if kind == 'gpu' else 'bfloat16'}",
             amp_unavailable(kind), {"amp": True}),
            ("syncbn", "train fp32 SyncBN", multi["syncbn"], {"syncbn": True}),
            ("nccl", "train fp32 kvstore nccl", multi["nccl"], {"kvstore": "nccl"})]
    rows: Dict[str, CheckRow] = {}
    for key, name, unavailable, settings in runs:
        rows[key] = this = train_row(f"{name} {tag}", config, base, batch,
                                     blocked or unavailable, **settings)
        if log:
            log(f"  {this.name}: " + (this.note if this.seconds is None
                                      else f"{this.seconds:.3f} s/it"))
    _speedup(rows["amp"], rows["fp32"], "fp32")
    _speedup(rows["syncbn"], rows["fp32"], "fp32 BatchNorm")
    _speedup(rows["nccl"], rows["fp32"], "kvstore device")
    evaluation = eval_row(config, base, rows["fp32"], blocked)
    rows["fp32"].extra.pop("checkpoint", None)  # in the temporary folder, gone afterwards
    return [*rows.values(), evaluation]


def problems(report: Dict[str, Any], rows: Sequence[CheckRow], asked_cpu: bool) -> List[str]:
    """What failed, one line each: a device's kernel, a run, or GPUs left unused."""
    verdicts = {f"gpu({g['index']})": f"{g['sm']}: {g['verdict']}" for g in report["gpus"]}
    found = [f"{k['device']}: the kernel check failed: {k['detail']}"
             + (f" (nvidia-smi: {verdicts[k['device']]})" if k["device"] in verdicts else "")
             for k in report["kernels"] if not k["ok"]]
    found += [f"{r.name}: {r.note}" for r in rows if r.note.startswith(FAILED)]
    if report["gpus"] and not asked_cpu and report["devices"][0].startswith("cpu"):
        found.append(f"nvidia-smi lists {len(report['gpus'])} GPU(s) but the check ran on "
                     f"{report['devices_why']}")
    return found


def run_gpu_check(config: GpuCheckConfig, log: Optional[Log] = None) -> Dict[str, Any]:
    """Run the whole check; the report (JSON-ready): build, CPU, GPUs, devices, kernel
    results, the table's rows, the problems found and the seconds it took."""
    start = time.perf_counter()
    config.check()
    gpus, cpu_devices, why = choose_devices(config.gpus, config.cpu_devices)
    build = installed_build()
    report: Dict[str, Any] = {
        "mxnet": mxnet_section(), "build": build, "cpu": cpu_name(), "gpus": gpu_lines(build),
        "devices": [str(c) for c in resolve_contexts(gpus, cpu_devices)], "devices_why": why,
        "settings": asdict(config)}
    if log:
        log(f"gpu-check on {', '.join(report['devices'])} ({why}) ...")
    report["kernels"] = kernel_results(config, gpus, cpu_devices)
    failed = [k["device"] for k in report["kernels"] if not k["ok"]]
    blocked = f"the kernel check failed on {', '.join(failed)}" if failed else None
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        rows = check_rows(config, work, gpus, cpu_devices, blocked, log)
    report["rows"] = [asdict(r) for r in rows]
    report["problems"] = problems(report, rows, asked_cpu=bool(config.cpu_devices))
    report["seconds"] = round(time.perf_counter() - start, 1)
    return report


def _number(value: Optional[float], digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_check(report: Dict[str, Any]) -> str:
    """The report as text: the build, CPU, GPUs, devices and kernels, then one table."""
    mxnet = report["mxnet"]
    features = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in
                         mxnet.get("features", {}).items())
    gpus = [f"GPU {g['index']}: {g['name']}, {g['sm']}, {g['memory_mib']} MiB: {g['verdict']}"
            for g in report["gpus"]] or ["GPUs (nvidia-smi): none"]
    lines = [f"MXNet {mxnet.get('version')} ({mxnet['distribution']}; {features})",
             f"CPU: {report['cpu']}", *gpus,
             f"devices: {', '.join(report['devices'])} ({report['devices_why']})",
             "kernel: " + "; ".join(f"{k['device']} {k['detail']}" for k in report["kernels"]),
             ""]
    table: List[tuple] = [("run", "seconds", "unit", "images/s", "peak MiB", "memory",
                           "speed-up", "isa", "note")]
    for r in report["rows"]:
        table.append((r["name"], _number(r["seconds"], 4), r["unit"],
                      _number(r["images_per_s"], 2), _number(r["peak_mib"], 0), r["memory"],
                      _number(r["speedup"], 2), r["isa"], r["note"]))
    lines.append(aligned(table))
    lines.append("")
    lines += [f"problem: {p}" for p in report["problems"]] or \
        [f"all ran ({report['seconds']:.0f} s)"]
    return "\n".join(lines)
