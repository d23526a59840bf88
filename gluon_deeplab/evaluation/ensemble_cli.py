"""Command line of ``scripts/ensemble.py``: per-pixel majority vote over mask folders
(:func:`.ensemble.ensemble_folders`)."""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from ..cli_help import DefaultsHelpFormatter
from .ensemble import ensemble_folders


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Pixel-wise majority vote over the prediction folders of several models.",
        formatter_class=DefaultsHelpFormatter)
    parser.add_argument("folders", nargs="+", help="prediction folders (same mask names)")
    parser.add_argument("--output_dir", required=True, help="folder for the voted masks")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace masks already in --output_dir")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command line entry point (returns None so it can be a console script)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        stats = ensemble_folders(args.folders, args.output_dir, overwrite=args.overwrite)
    except (ValueError, OSError) as err:
        parser.exit(2, f"error: {err}\n")
    print(f"wrote {stats['images']} voted masks to {args.output_dir} "
          f"({stats['probability_ties']} with probability tie-breaking)")
