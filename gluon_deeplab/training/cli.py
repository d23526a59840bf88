"""Command line of the trainer (``gluon-deeplab-train``, ``scripts/train.py``): the seed's flags.

Every flag is a field of :class:`.config.TrainConfig` with the same name and default. Fields
whose default depends on other flags hold None there; their help names the default
(``--max_iter`` and ``--aux_weight`` from the config's DEFAULT_MAX_ITER / DEFAULT_AUX_WEIGHT).
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from ..cli_help import DefaultsHelpFormatter
from ..data import layout_choices, layout_metavar
from ..data.folder import add_folder_arguments
from ..data.layouts import (
    data_dir_help,
    dataset_help,
    train_split_help,
    val_dataset_help,
)
from ..models import OUTPUT_STRIDES, describe_heads, head_spec
from .config import DEFAULT_AUX_WEIGHT, DEFAULT_MAX_ITER, TrainConfig
from .errors import SettingsError
from .multi_device import SYNCBN_BELOW
from .trainer import TrainingError, train

D = TrainConfig()  # the defaults


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


def _head(value: str):
    """--aspp_or_vortex: 1 / 2 as the seed's ints, or any registered head's name or alias."""
    try:
        head_spec(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a registered head, one of {describe_heads()}; "
                                         f"got {value!r}") from None
    return int(value) if value.isdigit() else value


def _model_flags(g: argparse._ArgumentGroup) -> None:
    """Backbone, head and starting weights."""
    g.add_argument("--base_architecture", default=D.base_architecture,
                   help="backbone: resnet18_v2 .. resnet152_v2, or the seed's resnet_v2_50 / "
                        "resnet_v2_101 spellings")
    g.add_argument("--aspp_or_vortex", type=_head, metavar="{1,2}", default=D.aspp_or_vortex,
                   help="head: 1 = ASPP, 2 = Vortex pooling")
    g.add_argument("--output_stride", type=int, choices=OUTPUT_STRIDES, default=D.output_stride,
                   help="input size / feature size of the backbone")
    g.add_argument("--freeze_batch_norm", type=_bool01, default=D.freeze_batch_norm,
                   help="1: every BatchNorm uses its running statistics and is not trained "
                        "(phase 2); 0: BN trained")
    g.add_argument("--pre_trained_model", default=D.pre_trained_model,
                   help="starting weights of the backbone: 'imagenet' (the model zoo file, "
                        "from $MXNET_HOME/models or downloaded with its SHA-1 check), 'none' "
                        "(random), or a model zoo .params file, loaded strictly (default: "
                        "imagenet; none for --dataset synthetic)")
    g.add_argument("--init_checkpoint", default=D.init_checkpoint,
                   help="start from the weights of another run's checkpoint (e.g. phase 2 "
                        "from phase 1's final.params); its iteration and optimizer are not used")
    g.add_argument("--decoder", action="store_true",
                   help="DeepLabV3+: add the decoder on the stride-4 stage-1 features")
    g.add_argument("--separable", action="store_true",
                   help="depthwise-separable 3x3 convs in the head and the decoder")
    g.add_argument("--aux", action="store_true",
                   help="add the auxiliary FCN head on stage 3 (training only)")
    g.add_argument("--aux_weight", type=float, default=D.aux_weight,
                   help=f"weight of the auxiliary loss (needs --aux; default {DEFAULT_AUX_WEIGHT})")
    g.add_argument("--num_classes", type=int, default=D.num_classes,
                   help="number of classes (default: the dataset's)")
    g.add_argument("--hybridize", type=_bool01, default=D.hybridize,
                   help="1: run the network as a hybridized graph (faster)")


def _data_flags(g: argparse._ArgumentGroup) -> None:
    """Dataset layout, folders, splits and loading."""
    g.add_argument("--dataset", default=D.dataset, choices=layout_choices(),
                   metavar=layout_metavar(), help=dataset_help())
    g.add_argument("--data_dir", default=D.data_dir, help=data_dir_help())
    g.add_argument("--train_split", default=D.train_split, help=train_split_help())
    g.add_argument("--val_split", default=D.val_split, help="validation split")
    g.add_argument("--val_dataset", default=D.val_dataset, choices=layout_choices(),
                   metavar=layout_metavar(), help=val_dataset_help())
    g.add_argument("--val_data_dir", default=D.val_data_dir,
                   help="root folder of the validation set (default: --data_dir)")
    g.add_argument("--crop_size", type=_positive_int, default=D.crop_size,
                   help="training crop size (pixels, square)")
    g.add_argument("--ignore_label", type=int, default=D.ignore_label,
                   help="label value of unlabelled pixels in the dataset's label files")
    g.add_argument("--num_workers", type=_non_negative_int, default=D.num_workers,
                   help="data loading processes (0: in the training process; default: 4 per "
                        "device, at most the CPU count)")
    add_folder_arguments(g)


def _schedule_flags(g: argparse._ArgumentGroup) -> None:
    """Iterations, batch, learning rate and seed."""
    g.add_argument("--max_iter", type=_positive_int, default=D.max_iter,
                   help=f"number of optimizer steps (default {DEFAULT_MAX_ITER})")
    g.add_argument("--train_epochs", type=float, default=D.train_epochs,
                   help="alternative to --max_iter: passes over the training set, converted "
                        "to iterations (ceil(epochs x images / global batch))")
    g.add_argument("--batch_size", type=_positive_int, default=D.batch_size,
                   help="images per step on this machine, split over its devices")
    g.add_argument("--initial_learning_rate", type=float, default=D.initial_learning_rate,
                   help="learning rate of the first step")
    g.add_argument("--end_learning_rate", type=float, default=D.end_learning_rate,
                   help="learning rate the poly (power 0.9) schedule decays to")
    g.add_argument("--weight_decay", type=float, default=D.weight_decay,
                   help="L2 weight decay (not applied to BN gamma/beta and biases)")
    g.add_argument("--head_lr_mult", type=float, default=D.head_lr_mult,
                   help="learning-rate multiplier of everything outside the backbone")
    g.add_argument("--seed", type=int, default=D.seed,
                   help="seed of the data order, augmentation, dropout and initialization")


def _devices_flags(g: argparse._ArgumentGroup) -> None:
    """Contexts, gradient reduction, SyncBN and AMP."""
    g.add_argument("--gpus", default=D.gpus,
                   help="comma-separated GPU ids, e.g. 0,1 (empty: CPU)")
    g.add_argument("--cpu_devices", type=_non_negative_int, default=D.cpu_devices,
                   help="train on N CPU contexts (tests the multi-device path without GPUs)")
    g.add_argument("--kvstore", default=D.kvstore,
                   help="gradient reduction (default: device on one machine, also on several "
                        "GPUs; nccl asks for MXNet's NCCL kvstore; across machines "
                        "dist_device_sync with GPUs, else dist_sync)")
    sync = g.add_mutually_exclusive_group()
    sync.add_argument("--syncbn", dest="syncbn", action="store_const", const=True,
                      default=D.syncbn,
                      help="SyncBatchNorm: BN statistics over the whole batch of all devices "
                           "(default: on when BN is trained on 2+ devices with fewer than "
                           f"{SYNCBN_BELOW} images each; the batch must split evenly)")
    sync.add_argument("--no_syncbn", dest="syncbn", action="store_const", const=False,
                      help="never SyncBatchNorm (each device's BN sees its own images)")
    g.add_argument("--amp", action="store_true",
                   help="automatic mixed precision (MXNet AMP): float16 with dynamic loss "
                        "scaling on GPUs, bfloat16 on CPUs that support it; weights, "
                        "checkpoints and loss stay fp32")


def _output_flags(g: argparse._ArgumentGroup) -> None:
    """Run folder, resume, checkpoints, validation and logging."""
    g.add_argument("--output_dir", default=D.output_dir,
                   help="folder of checkpoints, log.jsonl and curves.png (one per phase)")
    g.add_argument("--resume", default=D.resume,
                   help="checkpoint to continue from, or 'auto' (newest in --output_dir; "
                        "fresh start if none); -1 = no resume (seed spelling)")
    g.add_argument("--checkpoint_interval", type=_positive_int, default=D.checkpoint_interval,
                   help="save a checkpoint every N iterations")
    g.add_argument("--keep_checkpoints", type=_positive_int, default=D.keep_checkpoints,
                   help="periodic checkpoints kept (best.params and final.params always kept)")
    g.add_argument("--val_interval", type=_non_negative_int, default=D.val_interval,
                   help="validate every N iterations and at the end (0: never)")
    g.add_argument("--log_interval", type=_positive_int, default=D.log_interval,
                   help="write mean loss, lr and it/s to log.jsonl every N iterations")
    g.add_argument("--progress", type=_bool01, default=D.progress, help="1: show a progress bar")
    g.add_argument("--tensorboard", action="store_true", default=D.tensorboard,
                   help="write TensorBoard event files to OUTPUT_DIR/tensorboard/ (default: on "
                        "where the tensorboard extra is installed: pip install -e "
                        ".[tensorboard])")
    g.add_argument("--no_tensorboard", dest="tensorboard", action="store_false",
                   help="write no TensorBoard event files (the default writes them)")


def build_parser() -> argparse.ArgumentParser:
    """The trainer's flags (names of the seed project where it had them)."""
    p = argparse.ArgumentParser(
        prog="gluon-deeplab-train",
        description="Train DeepLabV3 (ResNet-v2 + ASPP or Vortex pooling) for a number of "
                    "iterations with the poly learning-rate schedule.",
        formatter_class=DefaultsHelpFormatter)
    _model_flags(p.add_argument_group("model"))
    _data_flags(p.add_argument_group("data"))
    _schedule_flags(p.add_argument_group("schedule"))
    _devices_flags(p.add_argument_group("devices"))
    _output_flags(p.add_argument_group("output"))
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The checked :class:`TrainConfig` of parsed flags (ValueError naming a bad flag)."""
    return TrainConfig.from_mapping(vars(args)).check()


def main(argv: Optional[List[str]] = None) -> int:
    """Parse the flags, train, print where the final checkpoint is."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:  # train() checks the settings once, before anything starts
        result = train(TrainConfig.from_mapping(vars(args)))
    except SettingsError as err:  # a bad value, not a malformed command line: no usage
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    except (TrainingError, ValueError, FileNotFoundError, OSError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    print(f"final checkpoint: {result['checkpoint']}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
