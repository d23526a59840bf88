#!/usr/bin/env python
"""Benchmark table: forward fp32 / fused / INT8, training step, data loader, peak memory,
with gluoncv's DeepLabV3-ResNet50 as the reference. ``--quick`` runs tiny sizes in seconds."""

from gluon_deeplab.deploy.cli import bench_main

if __name__ == "__main__":
    bench_main()
