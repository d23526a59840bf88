"""Command line of ``scripts/eval.py``: its flags (each a field of :class:`.config.EvalConfig`
with the same name and default), :func:`.run.run_eval`, the report; and the inference and CRF
flags that ``predict.py`` shares."""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from ..cli_help import DefaultsHelpFormatter
from ..data import layout_choices, layout_metavar
from ..data.folder import add_folder_arguments
from ..data.layouts import data_dir_help
from ..models import OUTPUT_STRIDES
from .config import EvalConfig
from .inference import FUSIONS
from .run import format_report, run_eval

D = EvalConfig()  # the defaults


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by eval and predict: scales, flip, fusion, sliding window, devices."""
    parser.add_argument("--output_stride", type=int, choices=OUTPUT_STRIDES,
                        default=D.output_stride,
                        help="override the checkpoint's output stride (e.g. 8 for evaluation)")
    parser.add_argument("--scales", default=D.scales,
                        help="comma-separated input scales, e.g. 0.5,0.75,1.0,1.25,1.5,1.75")
    parser.add_argument("--flip", action="store_true", help="also run horizontally flipped")
    parser.add_argument("--fusion", choices=FUSIONS, default=D.fusion,
                        help="fuse scales/flips by the mean or per-pixel max of probabilities")
    parser.add_argument("--crop_size", type=int, default=D.crop_size,
                        help="sliding-window size for scaled images larger than this "
                             "(default: whole image at once)")
    parser.add_argument("--gpus", default=D.gpus, help="GPU ids, e.g. 0,1 (empty: CPU)")
    parser.add_argument("--buckets", dest="buckets", action="store_true", default=D.buckets,
                        help="pad images into a few bucket sizes (385, 513, ...: few graph "
                             "shapes), as GPUs do unless --no_buckets; CPUs pad each image to "
                             "its own output_stride*k+1 unless --buckets. The extra padding "
                             "enters the image-pooling average, so metrics can differ")
    # The default (None: chosen by device) comes from --buckets; store_false's own True is not.
    parser.add_argument("--no_buckets", dest="buckets", action="store_false",
                        default=D.buckets,
                        help="pad each image to its own output_stride*k+1, on GPUs too")


def add_crf_arguments(parser: argparse.ArgumentParser) -> None:
    """--crf and its settings (defaults: :class:`DenseCRF`'s, through :class:`EvalConfig`)."""
    parser.add_argument("--crf", action="store_true",
                        help="dense CRF post-processing (needs the optional pydensecrf2)")
    for name, help_text in (("iterations", "mean-field iterations"),
                            ("gaussian_sxy", "Gaussian kernel spatial std"),
                            ("gaussian_compat", "Gaussian kernel weight"),
                            ("bilateral_sxy", "bilateral kernel spatial std"),
                            ("bilateral_srgb", "bilateral kernel colour std"),
                            ("bilateral_compat", "bilateral kernel weight")):
        default = getattr(D, f"crf_{name}")
        parser.add_argument(f"--crf_{name}", type=type(default), default=default,
                            help=f"CRF {help_text} (default {default})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Evaluate a gluon-deeplab checkpoint or exported model: pixel accuracy, "
                    "mean accuracy, mIoU, frequency-weighted IoU and per-class IoU over a "
                    "whole split.", formatter_class=DefaultsHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint",
                        help="checkpoint file (.params), or a run folder (its best.params, "
                             "else final.params)")
    source.add_argument("--exported", metavar="PREFIX",
                        help="exported model (PREFIX-symbol.json + PREFIX-0000.params; fp32, "
                             "bf16 or INT8): the mIoU of the model you ship")
    parser.add_argument("--data_dir", default=D.data_dir, help=data_dir_help())
    parser.add_argument("--dataset", default=D.dataset, choices=layout_choices(),
                        metavar=layout_metavar(),
                        help="dataset layout (default voc: VOC 2012, on whose val split "
                             "train.py validates by default; voc_sbd's old name vocaug is "
                             "accepted)")
    parser.add_argument("--split", default=D.split, help="split to evaluate")
    parser.add_argument("--num_classes", "--num-classes", type=int, default=D.num_classes,
                        help="class count of a 'folder' dataset (must match the checkpoint)")
    parser.add_argument("--ignore_label", "--ignore-label", type=int, default=D.ignore_label,
                        help="label value excluded from the metrics")
    add_folder_arguments(parser)
    add_inference_arguments(parser)
    add_crf_arguments(parser)
    parser.add_argument("--num_workers", type=int, default=D.num_workers,
                        help="threads decoding images ahead of the devices (default: 4 per "
                             "device, at most the CPU count; 0: in the main thread)")
    parser.add_argument("--max_images", type=int, default=D.max_images,
                        help="evaluate only the first N images (quick checks)")
    parser.add_argument("--save_predictions", default=D.save_predictions, metavar="DIR",
                        help="write one palette PNG per image, named like the image ids")
    parser.add_argument("--save_probabilities", action="store_true",
                        help="with --save_predictions: also <id>.npy probabilities "
                             "(used by scripts/ensemble.py to break ties)")
    parser.add_argument("--output", default=D.output, metavar="JSON",
                        help="write the metrics to this JSON file")
    parser.add_argument("--tensorboard", default=D.tensorboard, metavar="DIR",
                        help="also write the metrics and per-class IoU as TensorBoard scalars "
                             "(eval/mIoU, eval/IoU/<class>, ...) at the model's iteration into "
                             "DIR (needs pip install -e .[tensorboard])")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --output file / --save_predictions folder")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def eval_main(argv: Optional[Sequence[str]] = None) -> None:
    """Command line entry point (returns None so it can be a console script)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = run_eval(EvalConfig.from_mapping(vars(args)))
    except (ValueError, OSError, ImportError) as err:
        parser.exit(2, f"error: {err}\n")
    print(format_report(result))
    if args.output:
        print(f"metrics written to {args.output}")
