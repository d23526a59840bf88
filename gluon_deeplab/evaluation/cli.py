"""``scripts/eval.py``: evaluate a checkpoint or an exported model on a split; report metrics.

Every flag is a field of :class:`.config.EvalConfig` with the same name and default.

The model is rebuilt from the checkpoint alone (its recorded configuration); only the output
stride may be overridden (weights do not depend on it). An export (fp32, bf16 or INT8) is
evaluated as it was exported.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from ..cli_help import DefaultsHelpFormatter
from ..data import (
    DATASET_CHOICES,
    DATASET_NAMES,
    DataError,
    canonical_dataset_name,
    default_data_dir,
    explain_data_error,
    get_dataset,
)
from ..data.folder import FOLDER_LAYOUT, add_folder_arguments
from ..devices import resolve_contexts
from ..models import OUTPUT_STRIDES
from ..paths import check_writable
from ..tensorboard import tensorboard_missing, write_evaluation
from .config import DEFAULT_DATASET, EvalConfig, as_eval_config
from .crf import DenseCRF
from .inference import FUSIONS
from .segmenter import open_segmenter
from .split import evaluate

METRIC_NAMES = ("pixel_accuracy", "mean_accuracy", "miou", "fwiou")
D = EvalConfig()  # the defaults


def parse_scales(text: str) -> List[float]:
    """'0.5,0.75,1.0' -> [0.5, 0.75, 1.0] (a one-line error names the flag)."""
    try:
        scales = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--scales: expected comma-separated numbers, got {text!r}") from None
    if not scales or any(s <= 0 for s in scales):
        raise ValueError(f"--scales: expected positive numbers, got {text!r}")
    return scales


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
    parser.add_argument("--no_buckets", dest="buckets", action="store_false",
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


def crf_from_args(args: Union[argparse.Namespace, EvalConfig]) -> Optional[DenseCRF]:
    """The DenseCRF that the --crf flags ask for (None without --crf)."""
    if not args.crf:
        return None
    return DenseCRF(**{name: getattr(args, f"crf_{name}")
                       for name in DenseCRF.__dataclass_fields__})


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
    parser.add_argument("--data_dir", default=D.data_dir,
                        help="dataset root folder (default: gluoncv's $MXNET_HOME/datasets/voc, "
                             "i.e. ~/.mxnet/datasets/voc, for voc and voc_sbd; else "
                             "./VOCdevkit_aug)")
    parser.add_argument("--dataset", default=D.dataset, choices=DATASET_CHOICES,
                        metavar="{" + ",".join(DATASET_NAMES) + "}",
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


def _folder_options(args: EvalConfig) -> Dict[str, str]:
    """--image_dir, --label_dir, --list_file as given (an error with a dataset not 'folder')."""
    given = {name: getattr(args, name) for name in FOLDER_LAYOUT
             if getattr(args, name, None) is not None}
    if given and args.dataset != "folder":
        raise ValueError(f"--{next(iter(given))} is an option of --dataset folder, not of "
                         f"--dataset {args.dataset}")
    return given


def _check_counts(args: EvalConfig) -> None:
    if args.max_images is not None and args.max_images < 1:
        raise ValueError(f"--max_images: expected an integer >= 1, got {args.max_images}")
    if args.num_workers is not None and args.num_workers < 0:
        raise ValueError(f"--num_workers: expected an integer >= 0, got {args.num_workers}")


def _check_outputs(args: EvalConfig) -> None:
    if args.output:
        check_writable(args.output, "--output")
    if args.save_predictions:
        check_writable(args.save_predictions, "--save_predictions", folder=True)
    if args.tensorboard:
        check_writable(args.tensorboard, "--tensorboard", folder=True)
    if args.overwrite:
        return
    if args.output and os.path.exists(args.output):
        raise FileExistsError(f"--output {args.output} exists; choose another file or pass "
                              "--overwrite")
    if args.save_predictions and os.path.isdir(args.save_predictions) and \
            os.listdir(args.save_predictions):
        raise FileExistsError(f"--save_predictions {args.save_predictions} is not empty; "
                              "choose another folder or pass --overwrite")
    if args.save_probabilities and not args.save_predictions:
        raise ValueError("--save_probabilities needs --save_predictions DIR")


def run_eval(settings: Union[EvalConfig, Mapping[str, Any]]) -> Dict[str, Any]:
    """Evaluate as ``settings`` say (an :class:`EvalConfig` or a dict of its field names, the
    rest at their defaults); returns the JSON-ready result (also written to --output)."""
    args = as_eval_config(settings)
    scales = parse_scales(args.scales)
    _check_counts(args)
    folder_options = _folder_options(args)
    ctxs = resolve_contexts(args.gpus, verb="evaluate")
    _check_outputs(args)
    crf = crf_from_args(args)
    board, missing = args.tensorboard, args.tensorboard and tensorboard_missing()
    if missing:  # the evaluation goes on; one line says how to get the event files
        print(missing, flush=True)
        board = None
    model = open_segmenter(args.checkpoint, args.exported, ctxs, args.output_stride).model
    source = args.checkpoint or args.exported
    what = f"checkpoint {source}" if args.checkpoint else f"exported model {source}"
    model_classes = model.num_classes
    if args.num_classes is not None and args.num_classes != model_classes:
        raise ValueError(f"--num_classes {args.num_classes} disagrees with {what} "
                         f"({model_classes} classes)")
    dataset = _dataset(args, folder_options)
    if dataset.num_classes != model_classes:
        raise ValueError(f"{what} predicts {model_classes} classes but "
                         f"--dataset {args.dataset} at {args.data_dir} has "
                         f"{dataset.num_classes}; {_dataset_hint(args, model.train_args)}")
    start = time.time()
    metrics, _ = evaluate(model.net, dataset, ctxs, scales=scales, flip=args.flip,
                          fusion=args.fusion, crf=crf, progress=not args.no_progress,
                          max_images=args.max_images, save_dir=args.save_predictions,
                          crop_size=args.crop_size, save_probabilities=args.save_probabilities,
                          num_workers=args.num_workers, buckets=args.buckets)
    num_images = len(dataset) if args.max_images is None else min(len(dataset), args.max_images)
    result = {name: metrics[name] for name in METRIC_NAMES}
    result.update({
        "per_class_iou": dict(zip(dataset.classes, metrics["per_class_iou"])),
        "per_class_accuracy": dict(zip(dataset.classes, metrics["per_class_accuracy"])),
        "num_images": num_images,
        "num_pixels": metrics["num_pixels"],
        "seconds": round(time.time() - start, 3),
        "checkpoint": os.path.abspath(args.checkpoint) if args.checkpoint else None,
        "exported": os.path.abspath(args.exported) if args.exported else None,
        "precision": model.precision,
        "iteration": model.iteration,
        "dataset": args.dataset, "data_dir": os.path.abspath(args.data_dir),
        "split": args.split,
        "settings": {"output_stride": model.output_stride, "scales": scales,
                     "flip": args.flip, "fusion": args.fusion, "crop_size": args.crop_size,
                     "buckets": args.buckets,
                     "crf": crf.config() if crf else None, "contexts": [str(c) for c in ctxs]},
    })
    if args.output:
        folder = os.path.dirname(os.path.abspath(args.output))
        os.makedirs(folder, exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    if board:
        write_evaluation(board, result)
    return result


def _dataset(args: EvalConfig, folder_options: Dict[str, str]):
    """The split to evaluate; an error names the defaults it came from."""
    defaults = [("--dataset", args.dataset)] if args.dataset == DEFAULT_DATASET else []
    if not args.data_dir:
        args.data_dir = default_data_dir(args.dataset)
        defaults.append(("--data_dir", args.data_dir))
    try:
        return get_dataset(args.dataset, args.data_dir, split=args.split, mode="val",
                           num_classes=args.num_classes, ignore_label=args.ignore_label,
                           **folder_options)
    except DataError as err:
        raise explain_data_error(err, "eval.py", defaults, args.dataset, args.data_dir) from None


def _dataset_hint(args: EvalConfig, trained: Dict[str, Any]) -> str:
    """What to change when the model and the dataset disagree on the class count."""
    trained_on = trained.get("dataset") if isinstance(trained, dict) else None
    if trained_on and canonical_dataset_name(trained_on) != canonical_dataset_name(args.dataset):
        return (f"the model was trained on --dataset {trained_on}: pass --dataset {trained_on} "
                "(eval.py's default is voc)")
    if args.dataset == "folder":
        return "pass --num_classes with the model's class count"
    return "evaluate it on the kind of data it was trained on (--dataset, --data_dir)"


def format_report(result: Dict[str, Any]) -> str:
    """A per-class IoU / accuracy table followed by the four split metrics."""
    names = list(result["per_class_iou"])
    width = max([len("class")] + [len(n) for n in names])
    lines = [f"{'class':<{width}}  {'IoU':>7}  {'acc':>7}"]
    for name in names:
        iou, acc = result["per_class_iou"][name], result["per_class_accuracy"][name]
        lines.append(f"{name:<{width}}  {_pct(iou):>7}  {_pct(acc):>7}")
    lines.append("")
    for label, key in (("pixel accuracy", "pixel_accuracy"), ("mean accuracy", "mean_accuracy"),
                       ("mIoU", "miou"), ("frequency-weighted IoU", "fwiou")):
        lines.append(f"{label:<23} {100 * result[key]:6.2f}")
    lines.append(f"({result['num_images']} images, classes marked '-' are absent from both "
                 "prediction and ground truth and not averaged)")
    return "\n".join(lines)


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


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
