"""A thread that pushes the SyncBN steps of several CPU contexts, with per-step resources.

Several CPU contexts stand in for GPUs in tests (``--cpu_devices``). MXNet gives each pushing
thread its own resource pools; a GPU gets temporary space and random generators of its own,
but every CPU context shares one pool of the pushing thread: ``MXNET_CPU_TEMP_COPY`` (4)
round-robin copies of temporary space and ``MXNET_CPU_PARALLEL_RAND_COPY`` (1) generators
(Dropout). A SyncBatchNorm backward holds its copy of temporary space while it waits in its
barrier for the other devices, and a bulked segment holds Dropout's generator while its
SyncBatchNorm waits: when another device needs that copy first, the step deadlocks (pushed
from one thread with the default pools, it did, in the first step). This thread is given
pools large enough that no two operators of one step share a copy, as if each CPU context
had its own like a GPU, and the step runs exactly as it does on GPUs.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Sequence, TypeVar

import mxnet as mx

TEMP_COPIES = 4096  # > temporary-space requests of one step (a copy allocates only when used)
RANDOM_COPIES_PER_DEVICE = 4  # > Dropout layers per device (a copy holds ~5 MB of state)
T = TypeVar("T")

_threads: Dict[int, CpuStepThread] = {}
_lock = threading.Lock()


class CpuStepThread:
    """One long-lived thread whose MXNet resource pools are sized for ``num_devices``."""

    def __init__(self, num_devices: int):
        self.num_devices = num_devices
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="gluon-deeplab-cpu-step")
        self._executor.submit(self._create_pools).result()

    def _create_pools(self) -> None:
        """Create this thread's resource manager now, while the sizes are in the environment
        (MXNet reads them when a thread first needs a resource)."""
        sizes = {"MXNET_CPU_TEMP_COPY": str(TEMP_COPIES),
                 "MXNET_CPU_PARALLEL_RAND_COPY": str(RANDOM_COPIES_PER_DEVICE * self.num_devices)}
        saved = {name: os.environ.get(name) for name in sizes}
        os.environ.update(sizes)
        try:
            mx.random.seed(0, ctx=mx.cpu())
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """``fn(*args, **kwargs)`` on this thread (its exceptions are raised here)."""
        return self._executor.submit(fn, *args, **kwargs).result()


def needs_step_thread(net: mx.gluon.Block, ctxs: Sequence[mx.Context]) -> bool:
    """Several CPU contexts and a SyncBatchNorm in ``net``: the case the thread is for."""
    if len(ctxs) < 2 or any(ctx.device_type != "cpu" for ctx in ctxs):
        return False
    found = []
    net.apply(lambda block: found.append(1)
              if isinstance(block, mx.gluon.contrib.nn.SyncBatchNorm) else None)
    return bool(found)


def step_thread(num_devices: int) -> CpuStepThread:
    """The process's step thread for ``num_devices`` CPU contexts (created on first use)."""
    with _lock:
        if num_devices not in _threads:
            _threads[num_devices] = CpuStepThread(num_devices)
        return _threads[num_devices]


def step_threads() -> List[CpuStepThread]:
    """The step threads created so far (MXNet's generators are per thread: seed them all)."""
    with _lock:
        return list(_threads.values())
