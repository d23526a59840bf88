#!/usr/bin/env python
"""Distributed training through MXNet's tracker: ``python scripts/launch_dist.py --help``
(same as ``gluon-deeplab-launch``), e.g.
``python scripts/launch_dist.py --launcher mpi -n 2 -s 1 -- --dataset synthetic ...``."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from gluon_deeplab.training.launch_cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
