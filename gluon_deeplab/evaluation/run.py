"""Evaluation of a checkpoint or an exported model on a dataset split, as ``scripts/eval.py``'s
settings (:class:`.config.EvalConfig`) say: one confusion matrix, the four metrics, per-class
IoU and accuracy, written as JSON (and TensorBoard) where asked. The library side of
``evaluation/cli.py``.

The model is rebuilt from the checkpoint alone (its recorded configuration); only the output
stride may be overridden (weights do not depend on it). An export (fp32, bf16 or INT8) is
evaluated as it was exported.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from ..data import (
    DataError,
    canonical_dataset_name,
    default_data_dir,
    explain_data_error,
    get_dataset,
)
from ..data.folder import FOLDER_LAYOUT
from ..devices import resolve_contexts
from ..paths import check_writable
from ..tensorboard import tensorboard_missing, write_evaluation
from .config import DEFAULT_DATASET, EvalConfig, as_eval_config
from .crf import DenseCRF
from .segmenter import open_segmenter
from .split import evaluate

METRIC_NAMES = ("pixel_accuracy", "mean_accuracy", "miou", "fwiou")


def parse_scales(text: str) -> List[float]:
    """'0.5,0.75,1.0' -> [0.5, 0.75, 1.0] (a one-line error names the flag)."""
    try:
        scales = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--scales: expected comma-separated numbers, got {text!r}") from None
    if not scales or any(s <= 0 for s in scales):
        raise ValueError(f"--scales: expected positive numbers, got {text!r}")
    return scales


def crf_from_settings(settings: Any) -> Optional[DenseCRF]:
    """The DenseCRF that ``settings``' crf fields (the --crf flags, an EvalConfig) ask for;
    None without ``crf``."""
    if not settings.crf:
        return None
    return DenseCRF(**{name: getattr(settings, f"crf_{name}")
                       for name in DenseCRF.__dataclass_fields__})


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
    crf = crf_from_settings(args)
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
    dataset, data_dir = _dataset(args, folder_options)
    if dataset.num_classes != model_classes:
        raise ValueError(f"{what} predicts {model_classes} classes but "
                         f"--dataset {args.dataset} at {data_dir} has "
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
        "dataset": args.dataset, "data_dir": os.path.abspath(data_dir),
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


def _dataset(args: EvalConfig, folder_options: Dict[str, str]) -> Tuple[Any, str]:
    """The split to evaluate and the folder it was read from (``args`` is left as given); an
    error names the defaults it came from."""
    defaults = [("--dataset", args.dataset)] if args.dataset == DEFAULT_DATASET else []
    data_dir = args.data_dir
    if not data_dir:
        data_dir = default_data_dir(args.dataset)
        defaults.append(("--data_dir", data_dir))
    try:
        return get_dataset(args.dataset, data_dir, split=args.split, mode="val",
                           num_classes=args.num_classes, ignore_label=args.ignore_label,
                           **folder_options), data_dir
    except DataError as err:
        raise explain_data_error(err, "eval.py", defaults, args.dataset, data_dir) from None


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
