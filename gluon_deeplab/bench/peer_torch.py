"""The PyTorch peer (``scripts/bench.py --peer torch``): the same DeepLabV3-ResNet50 in
PyTorch (torch_model.py), forward and one SGD training step, fp32 or bf16 autocast, timed in
a bench row's process like ours. PyTorch is optional (``.[peers]``); only these cases
import it."""

from __future__ import annotations

import importlib.util
import os
import time
from typing import List, Sequence

PEERS = ("torch",)
PEERS_EXTRA = "pip install -e '.[peers]' (torch==2.13.0)"


def missing_peers(peers: Sequence[str]) -> List[str]:
    """The peers asked for whose package is not installed (a peer's name is its package)."""
    return [peer for peer in peers if importlib.util.find_spec(peer) is None]


def _torch_setup(output_stride: int, train: bool):
    """The peer model and torch, on as many threads as MXNet uses (OMP_NUM_THREADS)."""
    import torch

    from .torch_model import DeepLabV3

    threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    return torch, DeepLabV3(21, output_stride).train(train)


def _median(times: List[float]) -> float:
    return sorted(times)[len(times) // 2]


def torch_forward_case(size: int, stride: int, bf16: bool, repeats: int, warmup: int
                       ) -> float:
    """Median seconds of one forward pass (batch 1) of the PyTorch peer."""
    torch, net = _torch_setup(stride, train=False)
    x = torch.randn(1, 3, size, size)
    times = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(warmup + repeats):
            start = time.perf_counter()
            net(x)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return _median(times)


def torch_train_case(batch: int, crop: int, stride: int, iterations: int, bf16: bool,
                     warmup: int = 1) -> float:
    """Median seconds of one SGD step (momentum 0.9, weight decay; cross-entropy over the
    pixels, 255 ignored) of the PyTorch peer on random data."""
    torch, net = _torch_setup(stride, train=True)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, crop, crop)
    y = torch.randint(0, 21, (batch, crop, crop))
    times = []
    for i in range(warmup + iterations):
        start = time.perf_counter()
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
        loss = torch.nn.functional.cross_entropy(out.float(), y, ignore_index=255)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return _median(times)
