"""Speed benchmark (``scripts/bench.py``): forward (fp32 / fused / INT8 / bf16), training step
(fp32 / AMP, SyncBN), data loader, memory, DeepLabV3 vs V3+, each row in its own process,
with the ISA oneDNN ran, beside gluoncv's DeepLabV3 and the PyTorch peer (``--peer torch``)."""

from __future__ import annotations

from .config import PARTS, BenchConfig
from .rows import run_benchmark
from .runner import FAILED, BenchRow, format_table, rows_as_dicts, run_case
from .timing import benchmark_training, forward_seconds, train_step_seconds

__all__ = [
    "FAILED", "PARTS", "BenchConfig", "BenchRow", "benchmark_training", "format_table",
    "forward_seconds", "rows_as_dicts", "run_benchmark", "run_case", "train_step_seconds",
]
