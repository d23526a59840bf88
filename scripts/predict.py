#!/usr/bin/env python
"""Predict masks, overlays and panels for images. See ``python scripts/predict.py --help``."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gluon_deeplab.evaluation.predict_cli import main  # noqa: E402

if __name__ == "__main__":
    main()
