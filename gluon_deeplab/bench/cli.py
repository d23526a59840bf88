"""Command line of scripts/bench.py (argparse + one library call)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from ..cli_help import DefaultsHelpFormatter
from ..deploy.int8 import CALIB_MODES, QUANTIZED_DTYPES
from ..models import OUTPUT_STRIDES, head_names
from .config import PARTS, BenchConfig
from .peer_torch import PEER_SETUP, PEERS, missing_peers, torch_python


def build_bench_parser() -> argparse.ArgumentParser:
    """Flags of scripts/bench.py."""
    d = BenchConfig()
    p = argparse.ArgumentParser(formatter_class=DefaultsHelpFormatter,
                                description="Benchmark forward (fp32 / fused / INT8 / bf16), "
                                            "training step (fp32 / AMP, SyncBN), data loader "
                                            "and memory against gluoncv and, with --peer, "
                                            "PyTorch; each row in its own process.")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes and resnet18_v2: checks that everything runs, in seconds")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=None,
                   help="parts to run (default: all)")
    p.add_argument("--backbone", default=None, help=f"default {d.backbone}")
    p.add_argument("--size", type=int, default=None, help=f"forward input size (default {d.size})")
    p.add_argument("--output_strides", type=int, nargs="+", choices=OUTPUT_STRIDES, default=None)
    p.add_argument("--heads", nargs="+", choices=head_names(), default=None)
    p.add_argument("--no_int8", action="store_true", help="skip the INT8 rows")
    p.add_argument("--no_bf16", action="store_true", help="skip the bf16 forward rows")
    p.add_argument("--no_amp", action="store_true", help="skip the AMP training rows")
    p.add_argument("--calib_mode", choices=CALIB_MODES, default=None)
    p.add_argument("--quantized_dtype", choices=QUANTIZED_DTYPES, default=None)
    p.add_argument("--repeats", type=int, default=None, help=f"timed runs (default {d.repeats})")
    p.add_argument("--train_iterations", type=int, default=None)
    p.add_argument("--train_batch", type=int, default=None,
                   help=f"training rows' batch (default {d.train_batch})")
    p.add_argument("--train_crop", type=int, default=None,
                   help=f"training rows' crop (default {d.train_crop})")
    p.add_argument("--gpus", default=None,
                   help="GPU ids (0,1) of the training and SyncBN rows; empty: the CPU")
    p.add_argument("--peer", dest="peers", action="append", choices=PEERS, default=None,
                   help="also time the same network in this engine (torch: PyTorch fp32 and "
                        "bf16 autocast, forward and training; in the Python TORCH_PYTHON names)")
    p.add_argument("--loader_workers", type=int, default=None)
    p.add_argument("--json", action="store_true", help="also print the rows as one JSON line")
    return p


def _config(args: argparse.Namespace) -> BenchConfig:
    overrides = {key: getattr(args, key) for key in (
        "parts", "backbone", "size", "output_strides", "heads", "calib_mode", "quantized_dtype",
        "repeats", "train_iterations", "train_batch", "train_crop", "loader_workers", "gpus",
        "peers")
        if getattr(args, key) is not None}
    for flag, key in (("no_int8", "int8"), ("no_bf16", "bf16"), ("no_amp", "amp")):
        if getattr(args, flag):
            overrides[key] = False
    return BenchConfig.quick(**overrides) if args.quick else BenchConfig(**overrides)


def _check(parser: argparse.ArgumentParser, config: BenchConfig) -> None:
    """Refuse, in one line and before anything runs, a peer that is not installed or --gpus
    that this machine or MXNet build cannot run."""
    missing = missing_peers(config.peers)
    if missing:
        parser.exit(2, f"bench.py: error: --peer {missing[0]}: {torch_python()} cannot import "
                       f"{missing[0]}; {PEER_SETUP}\n")
    if config.gpus:
        from ..devices import resolve_contexts

        try:
            resolve_contexts(config.gpus)
        except ValueError as err:
            parser.exit(2, f"bench.py: error: {err}\n")


def bench_main(argv: Optional[List[str]] = None) -> list:
    """Run scripts/bench.py: prints the table (and the rows as JSON with --json)."""
    from .rows import run_benchmark
    from .runner import FAILED, format_table, rows_as_dicts

    parser = build_bench_parser()
    args = parser.parse_args(argv)
    config = _config(args)
    _check(parser, config)
    rows = run_benchmark(config, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(format_table(rows))
    if args.json:
        print(json.dumps(rows_as_dicts(rows)))
    failed = [r.name for r in rows if r.note.startswith(FAILED)]
    if failed:
        sys.exit(f"bench: {len(failed)} row(s) failed: {'; '.join(failed)}")
    return rows


def bench_command(argv: Optional[List[str]] = None) -> int:
    """``gluon-deeplab-bench``: :func:`bench_main`, exit status 0 when every row ran."""
    bench_main(argv)
    return 0
