"""``scripts/predict.py``: masks, overlays and panels for images, from a checkpoint or an export;
overlay videos of video files and folders of frames (:mod:`.video`).

Output layout under ``--output_dir``: ``masks/<name>.png`` (palette PNG, VOC colours; with
``--save_probabilities`` also ``masks/<name>.npy``, so ``masks/`` folders of several models
can be fed to ``scripts/ensemble.py``), ``overlays/<name>.png`` and ``panels/<name>.png``
(image | label | prediction, the label only with ``--label_dir``).
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..cli_help import DefaultsHelpFormatter
from ..data import read_label_png
from ..data.base import IMAGE_EXTS
from ..devices import resolve_contexts
from ..paths import check_writable
from .cli import add_crf_arguments, add_inference_arguments
from .colormap import save_mask
from .inference import save_probability_file
from .run import crf_from_settings, parse_scales
from .segmenter import Segmenter, open_segmenter
from .video import DEFAULT_FPS, VIDEO_EXTS, is_video, predict_video
from .visualize import overlay, panel, save_rgb

OUTPUT_FOLDERS = ("masks", "overlays", "panels")
VIDEO_BATCH = 4  # frames a batch (all frames of a video share one padded shape)


def collect_images(inputs: Sequence[str]) -> List[str]:
    """Image files named on the command line, folders expanded (non-recursive, sorted)."""
    images: List[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, f) for f in os.listdir(item)
                           if f.lower().endswith(IMAGE_EXTS)
                           and os.path.isfile(os.path.join(item, f)))
            if not found:
                raise ValueError(f"{item}: folder holds no images ({', '.join(IMAGE_EXTS)})")
            images += found
        elif os.path.isfile(item):
            images.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such image or folder")
    stems: Dict[str, str] = {}
    for path in images:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in stems and os.path.abspath(stems[stem]) != os.path.abspath(path):
            raise ValueError(f"{stems[stem]} and {path} would write the same output name "
                             f"{stem}.png; predict them into separate --output_dir folders")
        stems[stem] = path
    return list(stems.values())


def output_paths(image: str, output_dir: str) -> Dict[str, str]:
    stem = os.path.splitext(os.path.basename(image))[0]
    paths = {kind: os.path.join(output_dir, kind, stem + ".png") for kind in OUTPUT_FOLDERS}
    paths["probabilities"] = os.path.join(output_dir, "masks", stem + ".npy")
    return paths


def _check_outputs(images: Sequence[str], output_dir: str, overwrite: bool,
                   save_probabilities: bool) -> None:
    check_writable(output_dir, "--output_dir", folder=True)
    inputs = {os.path.realpath(p) for p in images}
    for image in images:
        paths = output_paths(image, output_dir)
        if not save_probabilities:
            del paths["probabilities"]
        for path in paths.values():
            if os.path.realpath(path) in inputs:
                raise ValueError(f"{path} is an input image and would be overwritten; "
                                 "choose another --output_dir")
            if os.path.exists(path) and not overwrite:
                raise FileExistsError(f"{path} exists; choose another --output_dir or pass "
                                      "--overwrite")


def label_paths(images: Sequence[str], label_dir: Optional[str]) -> Dict[str, Optional[str]]:
    """The ground-truth PNG of each image in ``label_dir`` (None without a label folder)."""
    labels: Dict[str, Optional[str]] = {}
    for image in images:
        labels[image] = None
        if label_dir:
            stem = os.path.splitext(os.path.basename(image))[0]
            labels[image] = os.path.join(label_dir, stem + ".png")
            if not os.path.isfile(labels[image]):
                raise FileNotFoundError(f"{labels[image]}: no label for {image} in --label_dir")
    return labels


def predict_images(segmenter: Segmenter, images: Sequence[str], output_dir: str,
                   scales: Sequence[float] = (1.0,), flip: bool = False, fusion: str = "mean",
                   crop_size: Optional[int] = None, label_dir: Optional[str] = None,
                   crf: Optional[Callable] = None, save_probabilities: bool = False,
                   alpha: float = 0.5, overwrite: bool = False,
                   buckets: Optional[bool] = None, batch_size: int = 1) -> List[Dict[str, str]]:
    """Segment every image (:meth:`Segmenter.segment_iter`, round-robin over its devices)
    and write mask, overlay and panel; ``buckets``: as in
    :func:`gluon_deeplab.evaluation.predict_probabilities`."""
    _check_outputs(images, output_dir, overwrite, save_probabilities)
    labels = label_paths(images, label_dir)
    written = []
    for path, result in zip(images, segmenter.segment_iter(
            images, scales, flip, crf or False, save_probabilities, fusion=fusion,
            crop_size=crop_size, buckets=buckets, batch_size=batch_size)):
        mask, rgb = result.mask, result.image
        label = read_label_png(labels[path]) if labels[path] else None
        if label is not None and label.shape != mask.shape:
            raise ValueError(f"{labels[path]}: label is {label.shape[0]}x{label.shape[1]}, "
                             f"image {path} is {mask.shape[0]}x{mask.shape[1]}")
        paths = output_paths(path, output_dir)
        save_mask(mask, paths["masks"])
        save_rgb(overlay(rgb, mask, alpha), paths["overlays"])
        save_rgb(panel(rgb, mask, label), paths["panels"])
        if save_probabilities:
            save_probability_file(result.probabilities, paths["probabilities"])
        else:
            del paths["probabilities"]
        written.append(paths)
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Predict segmentation masks (VOC palette PNG), overlays and panels.",
        formatter_class=DefaultsHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_DIR_OR_VIDEO")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint file written by the trainer, or a run "
                                             "folder (its best.params, else final.params)")
    source.add_argument("--exported", metavar="PREFIX",
                        help="exported model (PREFIX-symbol.json + PREFIX-0000.params; fp32, "
                             "bf16 or INT8)")
    parser.add_argument("--output_dir", required=True,
                        help="gets masks/, overlays/ and panels/ subfolders")
    parser.add_argument("--label_dir", default=None,
                        help="ground-truth PNGs named like the images, shown in the panels")
    add_inference_arguments(parser)
    add_crf_arguments(parser)
    parser.add_argument("--save_probabilities", action="store_true",
                        help="also write masks/<name>.npy (for ensemble tie-breaking)")
    parser.add_argument("--alpha", "--opacity", dest="alpha", type=float, default=0.5,
                        help="overlay opacity")
    parser.add_argument("--video", action="store_true",
                        help="each folder of frames becomes one overlay video (video files "
                             f"{', '.join(VIDEO_EXTS)} always do): <output_dir>/<name>.mp4, "
                             "H.264 (needs the [video] extra)")
    parser.add_argument("--output_fps", type=float, default=None,
                        help="frame rate of the overlay videos (default: the input's; "
                             f"{DEFAULT_FPS:g} for a folder of frames)")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="images of one padded shape run as one batch (default: 1; video "
                             f"frames {VIDEO_BATCH})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace outputs already in --output_dir")
    return parser


def _video_jobs(args: argparse.Namespace) -> List[Tuple[str, List[str], str]]:
    """(source, its frame files or [] for a video file, output video) of each input."""
    if args.label_dir or args.save_probabilities:
        raise ValueError("--label_dir and --save_probabilities apply to images, not videos")
    check_writable(args.output_dir, "--output_dir", folder=True)
    jobs, outputs = [], {}
    for item in args.inputs:
        if os.path.isdir(item):
            frames, name = collect_images([item]), os.path.basename(os.path.normpath(item))
        elif is_video(item):
            frames, name = [], os.path.splitext(os.path.basename(item))[0]
        else:
            raise ValueError(f"{item}: expected a video file ({', '.join(VIDEO_EXTS)}) or, "
                             "with --video, a folder of frames")
        output = os.path.join(args.output_dir, name + ".mp4")
        if output in outputs or os.path.realpath(output) == os.path.realpath(item):
            raise ValueError(f"{item} would write {output}, as {outputs.get(output, item)} "
                             "does; predict them into separate --output_dir folders")
        if os.path.exists(output) and not args.overwrite:
            raise FileExistsError(f"{output} exists; choose another --output_dir or pass "
                                  "--overwrite")
        outputs[output] = item
        jobs.append((item, frames, output))
    return jobs


def run_videos(args: argparse.Namespace, segmenter_of: Callable[[], Segmenter],
               options: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Overlay videos of the video files and folders of frames named on the command line."""
    jobs = _video_jobs(args)
    segmenter = segmenter_of()
    return [predict_video(segmenter, source, output, frames, args.output_fps, args.alpha,
                          args.batch_size or VIDEO_BATCH, **options)
            for source, frames, output in jobs]


def run_predict(args: argparse.Namespace) -> List[Dict[str, Any]]:
    scales = parse_scales(args.scales)
    ctxs = resolve_contexts(args.gpus, verb="predict")
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch_size: expected an integer >= 1, got {args.batch_size}")
    if args.video or any(is_video(item) for item in args.inputs):
        return run_videos(args, lambda: open_segmenter(args.checkpoint, args.exported, ctxs,
                                                       args.output_stride),
                          dict(scales=scales, flip=args.flip, fusion=args.fusion,
                               crop_size=args.crop_size, buckets=args.buckets,
                               crf=crf_from_settings(args) or False))
    images = collect_images(args.inputs)
    crf = crf_from_settings(args)
    # Cheap checks first: no model is loaded for a run that would fail on its outputs.
    _check_outputs(images, args.output_dir, args.overwrite, args.save_probabilities)
    label_paths(images, args.label_dir)
    segmenter = open_segmenter(args.checkpoint, args.exported, ctxs, args.output_stride)
    return predict_images(segmenter, images, args.output_dir, scales=scales, flip=args.flip,
                          fusion=args.fusion, crop_size=args.crop_size,
                          label_dir=args.label_dir, crf=crf,
                          save_probabilities=args.save_probabilities, alpha=args.alpha,
                          overwrite=args.overwrite, buckets=args.buckets,
                          batch_size=args.batch_size or 1)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command line entry point (returns None so it can be a console script)."""
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)  # images may come before and after the flags
    try:
        written = run_predict(args)
    except (ValueError, OSError, ImportError) as err:
        parser.exit(2, f"error: {err}\n")
    if written and "frames" in written[0]:
        for video in written:
            print(f"wrote {video['path']} ({video['frames']} frames at {video['fps']:g} fps)")
    else:
        print(f"wrote {len(written)} masks, overlays and panels under {args.output_dir}")
