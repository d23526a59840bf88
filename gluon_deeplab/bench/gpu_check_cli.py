"""Command line of ``gluon-deeplab-gpu-check`` (argparse + one library call)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional

from ..cli_help import DefaultsHelpFormatter
from .gpu_check import GpuCheckConfig, format_check, run_gpu_check


def _scales(text: str) -> tuple:
    try:
        return tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0.5,1.0, "
                                         f"got {text!r}") from None


def build_gpu_check_parser() -> argparse.ArgumentParser:
    """Flags of ``gluon-deeplab-gpu-check``."""
    d = GpuCheckConfig()
    p = argparse.ArgumentParser(
        prog="gluon-deeplab-gpu-check", formatter_class=DefaultsHelpFormatter,
        description="Check a machine before training: MXNet's build, the GPUs' compute "
                    "capability, a kernel on each device, fp32 and AMP training (SyncBN and "
                    "the nccl kvstore on 2+ devices) and a multi-scale + flip evaluation on a "
                    "generated synthetic set; one table to attach to a bug report.")
    p.add_argument("--gpus", default=d.gpus,
                   help="GPU ids, e.g. 0,1 (default: every GPU MXNet sees, else the CPU)")
    p.add_argument("--cpu_devices", type=int, default=d.cpu_devices,
                   help="run on N CPU contexts instead (the same code as on GPUs)")
    p.add_argument("--backbone", default=d.backbone, help="the model's backbone")
    p.add_argument("--crop_size", type=int, default=d.crop_size, help="training crop")
    p.add_argument("--batch_per_device", type=int, default=d.batch_per_device,
                   help="images per device in each training batch")
    p.add_argument("--iterations", type=int, default=d.iterations,
                   help="training iterations of each run")
    p.add_argument("--warmup", type=int, default=d.warmup,
                   help="first iterations left out of the median")
    p.add_argument("--image_size", type=int, nargs=2, default=list(d.image_size),
                   metavar=("H", "W"), help="size of the synthetic images")
    p.add_argument("--num_train", type=int, default=d.num_train,
                   help="synthetic training images")
    p.add_argument("--val_images", type=int, default=d.val_images,
                   help="synthetic images evaluated")
    p.add_argument("--scales", type=_scales, default=",".join(f"{s:g}" for s in d.scales),
                   help="evaluation scales (with flip)")  # argparse applies _scales to it
    p.add_argument("--num_workers", type=int, default=None,
                   help="loader processes (default: the trainer's, 4 per device)")
    p.add_argument("--json", metavar="PATH", default=None,
                   help="also write the report as JSON to PATH (- for stdout)")
    return p


def gpu_check_main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Run the check, print the report (and write it as JSON with --json); returns it."""
    parser = build_gpu_check_parser()
    args = parser.parse_args(argv)
    config = GpuCheckConfig(
        gpus=args.gpus, cpu_devices=args.cpu_devices, backbone=args.backbone,
        crop_size=args.crop_size, batch_per_device=args.batch_per_device,
        iterations=args.iterations, warmup=args.warmup, image_size=tuple(args.image_size),
        num_train=args.num_train, val_images=args.val_images, scales=args.scales,
        num_workers=args.num_workers)
    try:
        report = run_gpu_check(config, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except ValueError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    print(format_check(report))
    if args.json == "-":
        print(json.dumps(report))
    elif args.json:
        try:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(report, f, indent=2)
        except OSError as err:
            parser.exit(2, f"{parser.prog}: error: --json {args.json}: {err.strerror}\n")
    return report


def gpu_check_command(argv: Optional[List[str]] = None) -> int:
    """``gluon-deeplab-gpu-check``: exit status 0 when everything ran, 1 (and one line per
    problem on stderr) otherwise."""
    report = gpu_check_main(argv)
    for problem in report["problems"]:
        print(f"gluon-deeplab-gpu-check: {problem}", file=sys.stderr)
    return 1 if report["problems"] else 0
