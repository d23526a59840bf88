"""Devices from the command line: ``--gpus 0,1`` (empty: CPU), ``--cpu_devices N``."""

from __future__ import annotations

from typing import List

import mxnet as mx


def resolve_contexts(gpus: str = "", cpu_devices: int = 0) -> List[mx.Context]:
    """Contexts from ``--gpus 0,1`` (empty: CPU) and ``--cpu_devices N``; unknown GPUs are an
    error that says how many this machine has."""
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
    available = mx.context.num_gpus()
    missing = [i for i in ids if i >= available]
    if missing:
        have = (f"{available} GPU(s), ids 0..{available - 1}" if available
                else "no GPU (leave --gpus empty to train on the CPU)")
        raise ValueError(f"--gpus {gpus}: GPU {missing[0]} does not exist; this machine has "
                         f"{have}")
    return [mx.gpu(i) for i in ids]
