"""``gluon-deeplab-env`` / ``python -m gluon_deeplab.env [--json]``: what this machine runs, for
bug reports and for checking a machine before training (like PyTorch's ``collect_env``).

MXNet and its build features, the GPUs (``nvidia-smi``), the CPU, the model store and dataset
folders, and the versions of the packages around. Works without MXNet (it says so). Each section
is a function of its inputs (command outputs, paths), so tests can pass fakes.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import shutil
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence

from . import amx, bf16_probe, cuda_libs
from .amx import AmxStatus
from .cli_help import DefaultsHelpFormatter
from .cpuinfo import cpu_flags, cpu_name
from .errors import error_line
from .mxnet_builds import (
    CONTAINER_ENV,
    GPU_QUERY,
    MXNET_MISSING,
    BuildConflict,
    build_of,
    installed_builds,
    kernel_verdict,
    machine_build,
    query_gpus,
    run_nvidia_smi,
)

FEATURES = ("CUDA", "CUDNN", "NCCL", "MKLDNN", "DIST_KVSTORE")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
AMX_FLAGS = ("amx_tile", "amx_bf16", "amx_int8")
PACKAGES = ("numpy", "gluoncv", "pydensecrf2", "onnx", "onnxruntime", "tensorboardX", "torch")
_BACKBONE_FILE = re.compile(r"^resnet\d+_v2-[0-9a-f]+\.params$")

Report = Dict[str, Dict[str, Any]]


def mxnet_section(environ: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """MXNet's version, distribution(s), build and build features, the CUDA libraries loaded
    for it (from NVIDIA's pip wheels or the system); why not where it does not import."""
    environ = os.environ if environ is None else environ
    dists = installed_builds()
    section: Dict[str, Any] = {
        "distribution": ", ".join(f"{n} {v}" for n, v in dists) or "not installed",
        "build": ", ".join(build_of(n, v, environ) or n for n, v in dists) or None}
    if environ.get(CONTAINER_ENV):
        section["container"] = f"NVIDIA's MXNet container {environ[CONTAINER_ENV]}"
    if len(dists) > 1:
        section["problem"] = "several builds written over each other: uninstall all, install one"
    try:
        import mxnet as mx
    except ModuleNotFoundError:
        return {**section, "version": None, "error": MXNET_MISSING}
    except Exception as err:  # noqa: BLE001 - a CUDA build without its libraries: one line
        return {**section, "version": None,
                "error": f"import mxnet fails: {error_line(err, with_type=True)}"}
    features = mx.runtime.Features()
    section.update(version=mx.__version__,
                   features={name: bool(features.is_enabled(name)) for name in FEATURES})
    if cuda_libs.LOADED:
        sources = ["system" if p == "system" else "pip" for p in cuda_libs.LOADED.values()]
        section["cuda_libraries"] = {s: sources.count(s) for s in ("pip", "system")}
    return section


def gpu_section(query: Optional[str], header: Optional[str], smi_found: bool = True,
                build: Optional[str] = None) -> Dict[str, Any]:
    """GPUs from ``nvidia-smi --query-gpu=index,name,compute_cap,memory.total`` (GPU_QUERY)
    with whether the installed ``build`` holds kernels for each, and the driver's CUDA version
    from ``nvidia-smi``'s header (None: absent or failing) with the MXNet build that fits."""
    gpus = []
    for gpu in query_gpus(query or ""):
        kernels = kernel_verdict(build, gpu.compute_capability)[1] if build else None
        gpus.append({"index": gpu.index, "name": gpu.name, "memory_mib": gpu.memory_mib,
                     "compute_capability": "{}.{}".format(*gpu.compute_capability),
                     "kernels": kernels})
    try:
        fit, why = machine_build(header, smi_found, query_gpus(query or ""))
        for_driver = f"{fit} ({why})"
    except BuildConflict as err:
        for_driver = f"none ({err})"
    return {"count": len(gpus), "gpus": gpus, "nvidia_smi": smi_found,
            "mxnet_build_to_install": for_driver}


def cpu_section(cpuinfo: str = "/proc/cpuinfo",
                environ: Optional[Mapping[str, str]] = None,
                amx_status: Optional[AmxStatus] = None) -> Dict[str, Any]:
    """The CPU: model, logical CPUs (and how many this process may use), OMP_NUM_THREADS, the
    bf16 and AMX flags, and whether oneDNN may use AMX in this process, and why (or why not)."""
    environ = os.environ if environ is None else environ
    amx_on, amx_reason = amx_status or amx.status()
    flags = cpu_flags(cpuinfo)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "model": cpu_name(cpuinfo),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "OMP_NUM_THREADS": environ.get("OMP_NUM_THREADS"),
        "bf16_flags": [f for f in BF16_FLAGS if f in flags],
        "amx_flags": [f for f in AMX_FLAGS if f in flags],
        "amx": f"{'on' if amx_on else 'off'} ({amx_reason})",
    }


def mxnet_home(environ: Optional[Mapping[str, str]] = None) -> str:
    """MXNet's data folder as ``mx.base.data_dir()`` gives it ($MXNET_HOME, else ~/.mxnet),
    read without importing MXNet."""
    environ = os.environ if environ is None else environ
    return os.path.expanduser(environ.get("MXNET_HOME", os.path.join("~", ".mxnet")))


def _count_files(folder: str) -> Optional[int]:
    try:
        return sum(1 for entry in os.scandir(folder) if entry.is_file())
    except OSError:
        return None


def paths_section(home: str) -> Dict[str, Any]:
    """MXNET_HOME, the ImageNet backbone files in its model store, and gluoncv's VOC root
    (``HOME/datasets/voc``) with the images of its VOC2012 and SBD (VOCaug/dataset) folders."""
    models = os.path.join(home, "models")
    try:
        backbones = sorted(f for f in os.listdir(models) if _BACKBONE_FILE.match(f))
    except OSError:
        backbones = []
    voc_root = os.path.join(home, "datasets", "voc")
    return {
        "MXNET_HOME": home,
        "model_store": models,
        "backbones": backbones,
        "voc_root": voc_root,
        "VOC2012_images": _count_files(os.path.join(voc_root, "VOC2012", "JPEGImages")),
        "SBD_images": _count_files(os.path.join(voc_root, "VOCaug", "dataset", "img")),
    }


def package_section(names: Sequence[str] = PACKAGES) -> Dict[str, Any]:
    """Python's version and each package's ("not installed" where absent)."""
    versions: Dict[str, Any] = {"python": f"{platform.python_version()} ({sys.executable})"}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def collect() -> Report:
    """The whole report of this machine."""
    mxnet = mxnet_section()
    report: Report = {
        "mxnet": mxnet,
        "gpu": gpu_section(run_nvidia_smi(GPU_QUERY), run_nvidia_smi(),
                           shutil.which("nvidia-smi") is not None, mxnet["build"]),
        "cpu": cpu_section(),
        "paths": paths_section(mxnet_home()),
        "packages": package_section(),
    }
    # bf16's speed against fp32 here: probed once per CPU and MXNet build, then cached
    report["cpu"]["bf16_speed"] = bf16_probe.report()
    return report


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value) or "none"
    return str(value)


def _gpu_text(gpu: Dict[str, Any]) -> str:
    memory = f", {gpu['memory_mib']} MiB" if gpu["memory_mib"] is not None else ""
    kernels = f": {gpu['kernels']}" if gpu["kernels"] else ""
    return f"{gpu['name']}{memory}, compute capability {gpu['compute_capability']}{kernels}"


def format_report(report: Report) -> str:
    """The report as aligned ``field: value`` lines, one block per section."""
    lines: List[str] = []
    for section, fields in report.items():
        lines.append(f"{section}:")
        for key, value in fields.items():
            if key == "gpus":
                for gpu in value:
                    lines.append(f"  {'gpu ' + str(gpu['index']) + ':':<24}{_gpu_text(gpu)}")
                continue
            lines.append(f"  {key + ':':<24}{_text(value)}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Print the report (``--json``: as JSON)."""
    parser = argparse.ArgumentParser(
        prog="gluon-deeplab-env",
        description="Report MXNet, the GPUs, the CPU, the model and data folders and the "
                    "package versions of this machine (for bug reports).",
        formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report = collect()
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
