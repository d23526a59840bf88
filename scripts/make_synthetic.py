#!/usr/bin/env python
"""Write the synthetic segmentation set: see ``python scripts/make_synthetic.py --help`` (same
as ``gluon-deeplab-make-synthetic``)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gluon_deeplab.data.synthetic_cli import main  # noqa: E402

if __name__ == "__main__":
    main()
