"""The PyTorch peer (``scripts/bench.py --peer torch``): the same DeepLabV3-ResNet50 in
PyTorch (torch_model.py), forward and one SGD training step, fp32 or bf16 autocast.

A peer row runs in a bench row's process like ours, which runs torch_model.py in the Python
that ``TORCH_PYTHON`` names (default: this one): torch 2 must live in an environment of its
own, since gluoncv (the project's dependency) refuses to import where torch 2 is installed.
The child's output goes to the row's stdout, so oneDNN's verbose log names its ISA as ours.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import List, Sequence

PEERS = ("torch",)
PEER_SETUP = ("python -m venv .venv-torch && .venv-torch/bin/pip install torch==2.13.0 "
              "'numpy<1.24', then TORCH_PYTHON=.venv-torch/bin/python (torch 2 in the project's "
              "environment breaks gluoncv's import)")
_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_model.py")


def torch_python() -> str:
    """The interpreter that runs the PyTorch peer: ``TORCH_PYTHON``, else this one."""
    return os.environ.get("TORCH_PYTHON") or sys.executable


def missing_peers(peers: Sequence[str]) -> List[str]:
    """The peers asked for that their interpreter cannot import."""
    missing = []
    for peer in peers:
        try:
            found = subprocess.run([torch_python(), "-c", f"import {peer}"], timeout=120,
                                   capture_output=True).returncode == 0
        except OSError:
            found = False
        if not found:
            missing.append(peer)
    return missing


def _run_peer(**request) -> float:
    threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1
    sys.stdout.flush()
    result = subprocess.run([torch_python(), _SCRIPT, json.dumps(dict(request, threads=threads))],
                            stdout=subprocess.PIPE, text=True, check=True)
    sys.stdout.write(result.stdout)  # oneDNN's verbose log, into the row's ISA
    return json.loads(result.stdout.strip().splitlines()[-1])["seconds"]


def torch_forward_case(size: int, stride: int, bf16: bool, repeats: int, warmup: int
                       ) -> float:
    """Median seconds of one forward pass (batch 1) of the PyTorch peer."""
    return _run_peer(mode="forward", size=size, stride=stride, bf16=bf16, repeats=repeats,
                     warmup=warmup)


def torch_train_case(batch: int, crop: int, stride: int, iterations: int, bf16: bool) -> float:
    """Median seconds of one SGD step of the PyTorch peer on random data."""
    return _run_peer(mode="train", batch=batch, crop=crop, stride=stride,
                     iterations=iterations, bf16=bf16)
