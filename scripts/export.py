#!/usr/bin/env python
"""Export a checkpoint for deployment (fp32 / INT8 symbol + params, meta file, ONNX).

Example: python scripts/export.py --checkpoint runs/voc/final.params --output export/deeplab
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gluon_deeplab.deploy.cli import export_main  # noqa: E402

if __name__ == "__main__":
    export_main()
