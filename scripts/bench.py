#!/usr/bin/env python
"""Benchmark table: forward fp32 / fused / INT8 / bf16, training step (fp32 / AMP, SyncBN), data
loader, peak memory and the ISA oneDNN ran, with gluoncv's DeepLabV3-ResNet50 and (``--peer
torch``) PyTorch's beside ours. ``--quick`` runs tiny sizes in seconds."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gluon_deeplab.bench.cli import bench_command  # noqa: E402

if __name__ == "__main__":
    sys.exit(bench_command())
