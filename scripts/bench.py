#!/usr/bin/env python
"""Benchmark table: forward fp32 / fused / INT8, training step, data loader, peak memory,
with gluoncv's DeepLabV3-ResNet50 as the reference. ``--quick`` runs tiny sizes in seconds."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gluon_deeplab.deploy.cli import bench_command  # noqa: E402

if __name__ == "__main__":
    sys.exit(bench_command())
