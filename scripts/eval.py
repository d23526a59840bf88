#!/usr/bin/env python
"""Evaluate a checkpoint on a dataset split (mIoU etc.). See ``python scripts/eval.py --help``."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gluon_deeplab.evaluation.cli import eval_main as main  # noqa: E402

if __name__ == "__main__":
    main()
