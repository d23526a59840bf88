"""Command line of ``scripts/make_synthetic.py``: writes the synthetic set
(:func:`.synthetic.make_synthetic_dataset`)."""

from __future__ import annotations

import argparse
from typing import List, Optional

from ..cli_help import DefaultsHelpFormatter
from .io import DataError
from .synthetic import make_synthetic_dataset


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``gluon-deeplab-make-synthetic`` (``scripts/make_synthetic.py``)."""
    p = argparse.ArgumentParser(
        prog="gluon-deeplab-make-synthetic", formatter_class=DefaultsHelpFormatter,
        description="Write the synthetic segmentation set (VOC 2012 layout) used by the tests "
                    "and the quick start.")
    p.add_argument("--output", required=True, help="folder: new, empty or a synthetic set")
    p.add_argument("--num_train", type=int, default=40, help="training images")
    p.add_argument("--num_val", type=int, default=10, help="validation images")
    p.add_argument("--size", type=int, nargs="+", default=[128, 160],
                   help="image size: H W, or one number for square images")
    p.add_argument("--num_classes", type=int, default=5, help="classes including background 0")
    p.add_argument("--seed", type=int, default=0, help="same seed, same files")
    return p


def main(argv: Optional[List[str]] = None) -> None:
    """Generate the set the flags describe (returns None so it can be a console script)."""
    args = build_parser().parse_args(argv)
    if len(args.size) not in (1, 2):
        raise SystemExit(f"--size takes H W or one number, got {args.size}")
    size = (args.size[0], args.size[-1])
    try:
        root = make_synthetic_dataset(args.output, num_train=args.num_train,
                                      num_val=args.num_val, size=size,
                                      num_classes=args.num_classes, seed=args.seed)
    except (DataError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    print(f"wrote {args.num_train} train + {args.num_val} val images ({size[0]}x{size[1]}, "
          f"{args.num_classes} classes, seed {args.seed}) to {root}")
