#!/usr/bin/env python
"""Pixel-wise majority vote over several prediction folders (see --help)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gluon_deeplab.evaluation.ensemble_cli import main  # noqa: E402

if __name__ == "__main__":
    main()
