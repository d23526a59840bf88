#!/usr/bin/env python
"""Load-test gluon-deeplab-serve on 127.0.0.1. See ``python scripts/loadtest.py --help``."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gluon_deeplab.deploy.loadtest import loadtest_command  # noqa: E402

if __name__ == "__main__":
    sys.exit(loadtest_command())
