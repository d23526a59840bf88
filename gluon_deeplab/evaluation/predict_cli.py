"""Command line of ``scripts/predict.py``: images, folders and videos in; masks, overlays and
panels (or overlay videos) out, through :func:`.predict.predict_images` and
:func:`.video.predict_video`."""

from __future__ import annotations

import argparse
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..cli_help import DefaultsHelpFormatter
from ..devices import resolve_contexts
from ..paths import check_writable
from .cli import add_crf_arguments, add_inference_arguments
from .predict import check_outputs, collect_images, label_paths, predict_images
from .run import crf_from_settings, parse_scales
from .segmenter import Segmenter, open_segmenter
from .video import DEFAULT_FPS, VIDEO_EXTS, is_video, predict_video

VIDEO_BATCH = 4  # frames a batch (all frames of a video share one padded shape)

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
    check_outputs(images, args.output_dir, args.overwrite, args.save_probabilities)
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
