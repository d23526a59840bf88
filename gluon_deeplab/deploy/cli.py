"""Command line of scripts/export.py: argparse, the calibration set, then `export_checkpoint`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from ..cli_help import DefaultsHelpFormatter
from ..data import layout_choices, layout_metavar
from ..models import OUTPUT_STRIDES
from .exporting import EXPORT_DTYPES
from .int8 import (
    CALIB_MODES,
    DEFAULT_CALIB_MODE,
    DEFAULT_EXCLUDE,
    DEFAULT_NUM_CALIB_IMAGES,
    DEFAULT_QUANTIZED_DTYPE,
    EXCLUDE_GROUPS,
    QUANTIZED_DTYPES,
)

DEFAULT_CALIB_DATASET = "voc"


def _calibration_set(args: argparse.Namespace):
    """The calibration split; an error names --calib_dataset when its default was used."""
    from ..data import DataError, explain_data_error, get_dataset

    defaults = [("--calib_dataset", args.calib_dataset)] \
        if args.calib_dataset == DEFAULT_CALIB_DATASET else []
    try:
        calib = get_dataset(args.calib_dataset, args.calib_data_dir, args.calib_split,
                            mode="val")
    except DataError as err:
        raise explain_data_error(err, "export.py", defaults, args.calib_dataset,
                                 args.calib_data_dir, "--calib_dataset") from None
    if args.num_calib_images > len(calib):
        print(f"--num_calib_images {args.num_calib_images}: {calib.name} holds "
              f"{len(calib)} images; calibrating on all {len(calib)}", file=sys.stderr)
    return calib


def build_export_parser() -> argparse.ArgumentParser:
    """Flags of scripts/export.py."""
    p = argparse.ArgumentParser(
        description="Export a gluon-deeplab checkpoint: PREFIX-symbol.json + PREFIX-0000.params "
                    "(fp32, bf16 or INT8), PREFIX-meta.json, optionally PREFIX.onnx.",
        formatter_class=DefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint written by the trainer")
    p.add_argument("--output", required=True, help="output prefix, e.g. export/deeplab")
    p.add_argument("--output_stride", type=int, choices=OUTPUT_STRIDES, default=None,
                   help="output stride of the exported graph (when not given: the checkpoint's)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--dtype", choices=EXPORT_DTYPES, default=None,
                   help="precision of the export (fp32 when not given): fp32, bf16 "
                        "(convolutions in bfloat16; needs an AVX-512 CPU, and prints bf16's "
                        "speed against fp32 as measured on this one), int8 (= --int8)")
    q = p.add_argument_group("INT8 (oneDNN post-training quantization)")
    q.add_argument("--int8", action="store_true", help="export an INT8 model (= --dtype int8)")
    q.add_argument("--calib_data_dir", help="dataset root for calibration images")
    q.add_argument("--calib_dataset", default=DEFAULT_CALIB_DATASET, choices=layout_choices(),
                   metavar=layout_metavar(),
                   help="dataset layout of --calib_data_dir")
    q.add_argument("--calib_split", default="train", help="split to take calibration images from")
    q.add_argument("--num_calib_images", type=int, default=DEFAULT_NUM_CALIB_IMAGES,
                   help="calibration images (at most the split's size)")
    q.add_argument("--calib_mode", choices=CALIB_MODES, default=DEFAULT_CALIB_MODE,
                   help="naive: min/max ranges; entropy: KL-optimal thresholds")
    q.add_argument("--calib_size", type=int, nargs=2, default=(513, 513), metavar=("H", "W"),
                   help="calibration images are center-cropped / padded to this size")
    q.add_argument("--quantized_dtype", choices=QUANTIZED_DTYPES, default=DEFAULT_QUANTIZED_DTYPE,
                   help="int8: signed everywhere; auto: uint8 after a ReLU (mIoU per CPU: "
                        "docs/deployment.md)")
    q.add_argument("--exclude", nargs="*", choices=EXCLUDE_GROUPS, default=list(DEFAULT_EXCLUDE),
                   help="layer groups kept in fp32")
    o = p.add_argument_group("ONNX")
    o.add_argument("--onnx", action="store_true", help="also write PREFIX.onnx (fp32)")
    o.add_argument("--input_size", type=int, nargs=2, metavar=("H", "W"),
                   help="the one input size of the ONNX model (required with --onnx)")
    return p


def export_main(argv: Optional[List[str]] = None) -> dict:
    """Run scripts/export.py; errors are one line on stderr and exit status 2."""
    from .exporting import export_checkpoint

    parser = build_export_parser()
    args = parser.parse_args(argv)
    if args.onnx and not args.input_size:
        parser.error("--onnx needs --input_size H W")
    if args.int8 and args.dtype not in (None, "int8"):
        parser.error(f"--int8 and --dtype {args.dtype} disagree; give one")
    dtype = "int8" if args.int8 else (args.dtype or "fp32")
    if dtype == "int8" and not args.calib_data_dir:
        parser.error(f"{'--int8' if args.int8 else '--dtype int8'} needs --calib_data_dir "
                     "(and --calib_dataset) for calibration")
    try:
        calib = _calibration_set(args) if dtype == "int8" else None
        files = export_checkpoint(
            args.checkpoint, args.output, output_stride=args.output_stride,
            overwrite=args.overwrite, dtype=dtype, calib_dataset=calib,
            num_calib_images=args.num_calib_images, calib_mode=args.calib_mode,
            quantized_dtype=args.quantized_dtype, calib_size=tuple(args.calib_size),
            exclude=args.exclude, onnx_input_size=tuple(args.input_size) if args.onnx else None)
    except (OSError, ValueError, ImportError) as err:
        parser.exit(2, f"export.py: error: {err}\n")
    if dtype == "bf16":
        from ..bf16_probe import bf16_speed

        print(f"--dtype bf16: {bf16_speed().describe()}", file=sys.stderr)
    print(json.dumps(files, indent=2))
    return files


def export_command(argv: Optional[List[str]] = None) -> int:
    """``gluon-deeplab-export``: :func:`export_main`, exit status 0 (a console script exits with
    what its function returns)."""
    export_main(argv)
    return 0
