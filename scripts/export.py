#!/usr/bin/env python
"""Export a checkpoint for deployment (fp32 / INT8 symbol + params, meta file, ONNX).

Example: python scripts/export.py --checkpoint runs/voc/final.params --output export/deeplab
"""

from gluon_deeplab.deploy.cli import export_main

if __name__ == "__main__":
    export_main()
