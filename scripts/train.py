#!/usr/bin/env python
"""Train DeepLabV3: see ``python scripts/train.py --help`` (same as ``gluon-deeplab-train``)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from gluon_deeplab.training.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
