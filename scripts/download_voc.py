#!/usr/bin/env python
"""Download VOC 2012 and SBD: see ``python scripts/download_voc.py --help`` (same as
``gluon-deeplab-download-voc``)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gluon_deeplab.data.download_cli import main  # noqa: E402

if __name__ == "__main__":
    main()
