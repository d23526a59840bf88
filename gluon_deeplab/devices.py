"""Devices from the command line: ``--gpus 0,1`` (empty: CPU), ``--cpu_devices N``."""

from __future__ import annotations

from typing import List

import mxnet as mx

from .mxnet_builds import (
    BUILDS,
    DEFAULT_CUDA_BUILD,
    build_for_driver,
    driver_cuda_version,
    installed_builds,
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


def resolve_contexts(gpus: str = "", cpu_devices: int = 0,
                     verb: str = "train") -> List[mx.Context]:
    """Contexts from ``--gpus 0,1`` (empty: CPU) and ``--cpu_devices N``; GPUs on an MXNet
    build without CUDA, or GPUs this machine lacks, are an error that says what to do (``verb``:
    what the command does, for the hint to leave ``--gpus`` empty)."""
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
    return [mx.gpu(i) for i in ids]
