"""Command line of ``scripts/download_voc.py``: VOC 2012 and SBD into gluoncv's layout
(:func:`.download.download_voc`)."""

from __future__ import annotations

import argparse
from typing import List, Optional

from ..cli_help import DefaultsHelpFormatter
from ..download_timeout import DEFAULT_TIMEOUT_S
from .download import MIRROR_ENV, VOC_ARCHIVES, DownloadError, download_voc


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``gluon-deeplab-download-voc`` (``scripts/download_voc.py``)."""
    p = argparse.ArgumentParser(
        prog="gluon-deeplab-download-voc", formatter_class=DefaultsHelpFormatter,
        description="Download PASCAL VOC 2012 and SBD (SHA-1 checked) into gluoncv's layout: "
                    "ROOT/VOC2012 and ROOT/VOCaug/dataset, ROOT = $MXNET_HOME/datasets/voc "
                    "(~/.mxnet/datasets/voc).")
    p.add_argument("--root", default=None,
                   help="data root (default: gluoncv's $MXNET_HOME/datasets/voc)")
    p.add_argument("--mirror", default=None,
                   help=f"URL folder holding the archives under their own names, instead of "
                        f"their sites (also ${MIRROR_ENV})")
    p.add_argument("--only", choices=[a.name for a in VOC_ARCHIVES], default=None,
                   help="fetch one archive only (default: both)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help="seconds without progress before a download gives up")
    return p


def main(argv: Optional[List[str]] = None) -> None:
    """Download as the flags say; errors are one line and exit status 1 (returns None so it can
    be a console script)."""
    args = build_parser().parse_args(argv)
    archives = [a for a in VOC_ARCHIVES if args.only in (None, a.name)]
    try:
        done = download_voc(args.root, args.mirror, archives, timeout=args.timeout)
    except (DownloadError, OSError) as err:
        raise SystemExit(f"error: {err}") from None
    print("ready: " + ", ".join(f"{name} in {path}" for name, path in done.items()))
