"""Command line of the trainer (``gluon-deeplab-train``, ``scripts/train.py``): the seed's flags."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from ..models import canonical_backbone_name

NO_RESUME = ("", "-1", "none")


def _bool01(value: str) -> int:
    if value not in ("0", "1"):
        raise argparse.ArgumentTypeError(f"expected 0 or 1, got {value!r}")
    return int(value)


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return number


def build_parser() -> argparse.ArgumentParser:
    """The trainer's flags (names of the seed project where it had them)."""
    p = argparse.ArgumentParser(
        prog="gluon-deeplab-train",
        description="Train DeepLabV3 (ResNet-v2 + ASPP or Vortex pooling) for a number of "
                    "iterations with the poly learning-rate schedule.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--base_architecture", default="resnet_v2_50",
                   help="backbone: resnet18_v2 .. resnet152_v2, or the seed's resnet_v2_50 / "
                        "resnet_v2_101 spellings")
    g.add_argument("--aspp_or_vortex", type=int, choices=(1, 2), default=1,
                   help="head: 1 = ASPP, 2 = Vortex pooling")
    g.add_argument("--output_stride", type=int, choices=(8, 16), default=16,
                   help="input size / feature size of the backbone")
    g.add_argument("--freeze_batch_norm", type=_bool01, default=0,
                   help="1: every BatchNorm uses its running statistics and is not trained "
                        "(phase 2); 0: BN trained")
    g.add_argument("--pre_trained_model", default=None,
                   help="model zoo ImageNet .params of the backbone (e.g. "
                        "resnet50_v2-81a4e66a.params), loaded strictly")
    g.add_argument("--init_checkpoint", default=None,
                   help="start from the weights of another run's checkpoint (e.g. phase 2 "
                        "from phase 1's final.params); its iteration and optimizer are not used")
    g.add_argument("--decoder", action="store_true",
                   help="DeepLabV3+: add the decoder on the stride-4 stage-1 features")
    g.add_argument("--separable", action="store_true",
                   help="depthwise-separable 3x3 convs in the head and the decoder")
    g.add_argument("--aux", action="store_true",
                   help="add the auxiliary FCN head on stage 3 (training only)")
    g.add_argument("--aux_weight", type=float, default=None,
                   help="weight of the auxiliary loss (needs --aux; default 0.4)")
    g.add_argument("--num_classes", type=int, default=None,
                   help="number of classes (default: the dataset's)")
    g.add_argument("--hybridize", type=_bool01, default=1,
                   help="1: run the network as a hybridized graph (faster); not with --syncbn")

    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="voc_aug",
                   help="layout: voc, vocaug (SBD .mat), voc_aug (SegmentationClassAug PNGs), "
                        "folder, synthetic")
    g.add_argument("--data_dir", default="./VOCdevkit_aug", help="dataset root folder")
    g.add_argument("--train_split", default=None,
                   help="training split (default train_aug for voc_aug, else train)")
    g.add_argument("--val_split", default="val", help="validation split")
    g.add_argument("--crop_size", type=_positive_int, default=513,
                   help="training crop size (pixels, square)")
    g.add_argument("--ignore_label", type=int, default=255,
                   help="label value of unlabelled pixels in the dataset's label files")
    g.add_argument("--num_workers", type=_non_negative_int, default=4,
                   help="data loading processes (0: in the training process)")

    g = p.add_argument_group("schedule")
    g.add_argument("--max_iter", type=_positive_int, default=None,
                   help="number of optimizer steps (default 30000)")
    g.add_argument("--train_epochs", type=float, default=None,
                   help="alternative to --max_iter: passes over the training set, converted "
                        "to iterations (ceil(epochs x images / global batch))")
    g.add_argument("--batch_size", type=_positive_int, default=16,
                   help="images per step on this machine, split over its devices")
    g.add_argument("--initial_learning_rate", type=float, default=7e-3,
                   help="learning rate of the first step")
    g.add_argument("--end_learning_rate", type=float, default=0.0,
                   help="learning rate the poly (power 0.9) schedule decays to")
    g.add_argument("--weight_decay", type=float, default=2e-4,
                   help="L2 weight decay (not applied to BN gamma/beta and biases)")
    g.add_argument("--head_lr_mult", type=float, default=1.0,
                   help="learning-rate multiplier of everything outside the backbone")
    g.add_argument("--seed", type=int, default=0,
                   help="seed of the data order, augmentation, dropout and initialization")

    g = p.add_argument_group("devices")
    g.add_argument("--gpus", default="",
                   help="comma-separated GPU ids, e.g. 0,1 (empty: CPU)")
    g.add_argument("--cpu_devices", type=_non_negative_int, default=0,
                   help="train on N CPU contexts (tests the multi-device path without GPUs)")
    g.add_argument("--kvstore", default="device",
                   help="gradient reduction: device, local, or dist_sync / dist_device_sync "
                        "(several machines, started by scripts/launch_dist.py)")
    g.add_argument("--syncbn", action="store_true",
                   help="SyncBatchNorm: BN statistics over the whole batch of all devices")

    g = p.add_argument_group("output")
    g.add_argument("--output_dir", default="runs/deeplab",
                   help="folder of checkpoints, log.jsonl and curves.png (one per phase)")
    g.add_argument("--resume", default=None,
                   help="checkpoint to continue from, or 'auto' (newest in --output_dir; "
                        "fresh start if none); -1 = no resume (seed spelling)")
    g.add_argument("--checkpoint_interval", type=_positive_int, default=1000,
                   help="save a checkpoint every N iterations")
    g.add_argument("--keep_checkpoints", type=_positive_int, default=3,
                   help="periodic checkpoints kept (best.params and final.params always kept)")
    g.add_argument("--val_interval", type=_non_negative_int, default=1000,
                   help="validate every N iterations and at the end (0: never)")
    g.add_argument("--log_interval", type=_positive_int, default=10,
                   help="write mean loss, lr and it/s to log.jsonl every N iterations")
    g.add_argument("--progress", type=_bool01, default=1, help="1: show a progress bar")
    return p


def check_args(args: argparse.Namespace) -> None:
    """Normalize and check values argparse cannot (ValueError naming the flag)."""
    args.base_architecture = canonical_backbone_name(args.base_architecture)
    if args.output_stride not in (8, 16):
        raise ValueError(f"--output_stride must be 8 or 16, got {args.output_stride}")
    if args.aspp_or_vortex not in (1, 2):
        raise ValueError(f"--aspp_or_vortex must be 1 (ASPP) or 2 (Vortex), "
                         f"got {args.aspp_or_vortex}")
    if args.resume is not None and str(args.resume).strip().lower() in NO_RESUME:
        args.resume = None
    if args.train_epochs is not None:
        if args.max_iter is not None:
            raise ValueError("--train_epochs and --max_iter both set the length of training; "
                             "give one (--max_iter counts optimizer steps)")
        if args.train_epochs <= 0:
            raise ValueError(f"--train_epochs must be > 0, got {args.train_epochs}")
    elif args.max_iter is None:
        args.max_iter = 30000
    if args.aux_weight is not None and not args.aux:
        raise ValueError("--aux_weight needs --aux (the auxiliary head)")
    if args.aux and args.aux_weight is None:
        args.aux_weight = 0.4
    if args.aux_weight is not None and args.aux_weight < 0:
        raise ValueError(f"--aux_weight must be >= 0, got {args.aux_weight}")
    if args.pre_trained_model and args.init_checkpoint:
        raise ValueError("--pre_trained_model and --init_checkpoint both set the starting "
                         "weights; give one")
    if args.initial_learning_rate <= 0 or args.end_learning_rate < 0:
        raise ValueError("--initial_learning_rate must be > 0 and --end_learning_rate >= 0")
    if args.end_learning_rate > args.initial_learning_rate:
        raise ValueError("--end_learning_rate must not exceed --initial_learning_rate")
    if args.weight_decay < 0:
        raise ValueError(f"--weight_decay must be >= 0, got {args.weight_decay}")
    if args.head_lr_mult <= 0:
        raise ValueError(f"--head_lr_mult must be > 0, got {args.head_lr_mult}")
    if args.syncbn and args.freeze_batch_norm:
        raise ValueError("--syncbn has no effect with --freeze_batch_norm 1 (frozen BN uses "
                         "running statistics); drop one")
    kv = args.kvstore
    if kv not in ("device", "local", "nccl", "dist_sync", "dist_device_sync", "dist_sync_device"):
        raise ValueError(f"--kvstore {kv!r}: expected device, local, nccl, dist_sync or "
                         "dist_device_sync (synchronous: every worker applies the same update)")


def main(argv: Optional[List[str]] = None) -> int:
    """Parse the flags, train, print where the final checkpoint is."""
    from ..devices import resolve_contexts
    from .trainer import TrainingError, train

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_args(args)
        resolve_contexts(args.gpus, args.cpu_devices)
    except ValueError as err:
        parser.error(str(err))
    try:
        result = train(args)
    except (TrainingError, ValueError, FileNotFoundError, OSError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    print(f"final checkpoint: {result['checkpoint']}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
