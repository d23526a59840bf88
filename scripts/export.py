#!/usr/bin/env python
"""Export a checkpoint for deployment (fp32 / INT8 symbol + params, meta file, ONNX): see
``python scripts/export.py --help`` (same as ``gluon-deeplab-export``).

Example: python scripts/export.py --checkpoint runs/voc/final.params --output export/deeplab
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gluon_deeplab.deploy.cli import export_command  # noqa: E402

if __name__ == "__main__":
    sys.exit(export_command())
