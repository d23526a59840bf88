"""Devices from the command line: ``--gpus 0,1`` (empty: CPU), ``--cpu_devices N``."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import mxnet as mx

from . import cuda_libs
from .mxnet_builds import (
    BUILDS,
    DEFAULT_CUDA_BUILD,
    build_for_driver,
    build_of,
    driver_cuda_version,
    installed_builds,
    kernel_verdict,
    pip_requirement,
    run_nvidia_smi,
)


def cuda_build() -> bool:
    """True where the installed MXNet was built with CUDA."""
    return bool(mx.runtime.Features().is_enabled("CUDA"))


def no_cuda_message(gpus: str, verb: str = "train") -> str:
    """Why ``--gpus`` cannot run on this MXNet build and which CUDA build to install instead
    (the one this machine's driver runs, else cu117)."""
    installed = installed_builds()
    have = ", ".join(f"{n} {v}" for n, v in installed) or f"mxnet {mx.__version__}"
    cuda = driver_cuda_version(run_nvidia_smi())
    build = (build_for_driver(cuda) if cuda else None) or DEFAULT_CUDA_BUILD
    remove = " ".join(n for n, _ in installed) or "mxnet"
    return (f"--gpus {gpus}: the installed MXNet ({have}) is built without CUDA; for GPUs "
            f"pip uninstall -y {remove} && pip install {pip_requirement(build)} (or "
            f"MXNET={build} sh sh/setup_env.sh after the uninstall; {BUILDS[build][0]} needs "
            f"a driver for CUDA {'.'.join(map(str, BUILDS[build][1]))}+, README: Install), or "
            f"leave --gpus empty to {verb} on the CPU")


def check_kernels(gpus: str, ids: Sequence[int],
                  capabilities: Optional[List[Tuple[str, Tuple[int, int]]]] = None) -> None:
    """ValueError, one line, where the installed pip build holds no kernels for one of the GPUs
    ``ids`` (by the compute capability the CUDA driver reports: ``capabilities``, default
    :func:`cuda_libs.device_capabilities`), before the run starts rather than at its first
    kernel. NVIDIA's and unlisted builds are not checked: their kernel lists are not known."""
    installed = installed_builds()
    if len(installed) != 1:
        return
    name, version = installed[0]
    build = build_of(name, version)
    if build in (None, "cpu"):  # "mxnet" with CUDA: built from source, its kernels not known
        return
    capabilities = cuda_libs.device_capabilities() if capabilities is None else capabilities
    for i in ids:
        if i < len(capabilities):
            gpu, cc = capabilities[i]
            runs, line = kernel_verdict(build, cc)
            if not runs:
                raise ValueError(f"--gpus {gpus}: GPU {i} ({gpu}, compute capability "
                                 f"{cc[0]}.{cc[1]}) and {name} {version}: {line}")


def resolve_contexts(gpus: str = "", cpu_devices: int = 0,
                     verb: str = "train") -> List[mx.Context]:
    """Contexts from ``--gpus 0,1`` (empty: CPU) and ``--cpu_devices N``; GPUs on an MXNet
    build without CUDA, or GPUs this machine lacks, are an error that says what to do (``verb``:
    what the command does, for the hint to leave ``--gpus`` empty), as are GPUs the installed
    build holds no kernels for (:func:`check_kernels`)."""
    gpus = (gpus or "").strip()
    if gpus and cpu_devices:
        raise ValueError("--gpus and --cpu_devices exclude each other; give one")
    if not gpus:
        return [mx.cpu(i) for i in range(max(1, cpu_devices))]
    try:
        ids = [int(g) for g in gpus.split(",") if g.strip()]
    except ValueError:
        raise ValueError(f"--gpus {gpus!r}: expected comma-separated GPU ids like 0,1") from None
    if len(set(ids)) != len(ids) or min(ids) < 0:
        raise ValueError(f"--gpus {gpus!r}: GPU ids must be distinct and >= 0")
    if not cuda_build():
        raise ValueError(no_cuda_message(gpus, verb))
    available = mx.context.num_gpus()
    missing = [i for i in ids if i >= available]
    if missing:
        have = (f"{available} GPU(s), ids 0..{available - 1}" if available
                else f"no GPU (leave --gpus empty to {verb} on the CPU)")
        raise ValueError(f"--gpus {gpus}: GPU {missing[0]} does not exist; this machine has "
                         f"{have}")
    check_kernels(gpus, ids)
    return [mx.gpu(i) for i in ids]
