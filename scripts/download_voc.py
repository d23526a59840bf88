#!/usr/bin/env python
"""Download PASCAL VOC 2012 and SBD (SHA-1 checked) into gluoncv's layout:
ROOT/VOC2012 and ROOT/VOCaug/dataset, ROOT = $MXNET_HOME/datasets/voc (~/.mxnet/datasets/voc)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_parser() -> argparse.ArgumentParser:
    from gluon_deeplab.data.download import MIRROR_ENV, VOC_ARCHIVES

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--root", default=None,
                   help="data root (default: gluoncv's $MXNET_HOME/datasets/voc)")
    p.add_argument("--mirror", default=None,
                   help=f"URL folder holding the archives under their own names, instead of "
                        f"their sites (also ${MIRROR_ENV})")
    p.add_argument("--only", choices=[a.name for a in VOC_ARCHIVES], default=None,
                   help="fetch one archive only (default: both)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds without progress before a download gives up")
    return p


def main(argv: Optional[List[str]] = None) -> Dict[str, str]:
    args = build_parser().parse_args(argv)
    from gluon_deeplab.data.download import VOC_ARCHIVES, DownloadError, download_voc

    archives = [a for a in VOC_ARCHIVES if args.only in (None, a.name)]
    try:
        done = download_voc(args.root, args.mirror, archives, timeout=args.timeout)
    except (DownloadError, OSError) as err:
        raise SystemExit(f"error: {err}") from None
    print("ready: " + ", ".join(f"{name} in {path}" for name, path in done.items()))
    return done


if __name__ == "__main__":
    main(sys.argv[1:])
