"""The start of a training run: this process's place in it, the devices' plan, the checkpoint
to resume from, the run folder's leftovers, the data sets, the iterations, the starting weights
and the model, and the console the run speaks through."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import mxnet as mx
from tqdm import tqdm

from ..checkpoint import Checkpoint, load_checkpoint
from ..data import DataError, default_num_workers, explain_data_error, train_val_datasets
from ..models import (
    build_model,
    canonical_head_name,
    default_pretrained,
    recorded_head_name,
    recorded_head_settings,
    resolve_pretrained,
)
from .config import DataPlan, TrainConfig
from .errors import TrainingError
from .multi_device import (
    check_devices,
    check_nccl,
    choose_kvstore,
    distributed_worker,
    nccl_available,
    nccl_launch_mode,
)
from .run_folder import latest_checkpoint, remove_stale_temporaries, run_files, same_run

LOG_FILE = "log.jsonl"
Say = Callable[[str], None]  # prints a message of the run (the chief's only)


class Distributed:
    """This process's place in a run: kvstore, rank and number of workers."""

    def __init__(self, kvstore: str):
        self.kvstore: Union[str, mx.kv.KVStore] = kvstore
        self.rank, self.num_workers = 0, 1
        if "dist" in kvstore:
            self.kvstore = mx.kv.create(kvstore)
            self.rank, self.num_workers = self.kvstore.rank, self.kvstore.num_workers

    @property
    def chief(self) -> bool:
        return self.rank == 0


def find_start(args: TrainConfig, say: Say,
               read: Callable[[str], Checkpoint] = load_checkpoint) -> Optional[str]:
    """The checkpoint to resume from (None: fresh start); refuses to overwrite a run: a fresh
    start in a folder that holds one, or a checkpoint of another run resumed into it (read
    with ``read``)."""
    out = args.output_dir
    existing = run_files(out)
    names = ", ".join(os.path.basename(p) for p in existing[:3])
    names += ", ..." if len(existing) > 3 else ""
    if args.resume == "auto":
        path = latest_checkpoint(out)
        if path is None:
            say(f"--resume auto: no checkpoint in {out}, starting a fresh run")
        return path
    if args.resume:
        path = args.resume
        if os.path.isdir(path):  # a run folder: where it stopped, as --resume auto would
            path = latest_checkpoint(path)
            if path is None:
                raise FileNotFoundError(f"--resume {args.resume}: the folder holds no "
                                        "checkpoint-*.params or final.params to continue from")
            say(f"--resume {args.resume} is a run folder: continuing from {path}")
        elif not os.path.isfile(path):
            raise FileNotFoundError(f"--resume {path}: no such checkpoint file or run folder")
        if not same_run(path, out, read):
            raise TrainingError(
                f"--resume {path} is a checkpoint of another run than the one in {out} "
                f"({names}); resume it into its own folder or into an empty --output_dir "
                "(nothing was overwritten)")
        return path
    if existing:
        raise TrainingError(
            f"{out} already holds a run ({names}); pass --resume auto to continue it or "
            "choose another --output_dir (nothing was overwritten)")
    return None


def clean_folder(out: str, say: Say) -> None:
    """Remove what a killed trainer left that no run can use: temporary files of interrupted
    writes, and a log whose run never saved a checkpoint (a fresh start owns the folder)."""
    for path in remove_stale_temporaries(out):
        say(f"removed {path} (left by an interrupted write)")
    log_path = os.path.join(out, LOG_FILE)
    if not run_files(out) and os.path.isfile(log_path):
        os.remove(log_path)
        say(f"replaced {log_path}: it was left by a run that saved no checkpoint")


def datasets_of(args: TrainConfig, defaults: Sequence[Tuple[str, Any]] = ()):
    """The training and validation sets of ``args`` (its data plan applied); an error names
    the ``defaults`` (flag, value) that chose the data."""
    try:
        return train_val_datasets(
            args.dataset, args.data_dir, args.train_split,
            args.val_split if args.val_interval > 0 else None, val_dataset=args.val_dataset,
            val_data_dir=args.val_data_dir, crop_size=args.crop_size,
            num_classes=args.num_classes, ignore_label=args.ignore_label,
            folder_options=args.folder_options())
    except DataError as err:
        raise explain_data_error(err, "train.py", list(defaults), args.dataset,
                                 args.data_dir) from None


def pretrained_weights(args: TrainConfig, resume_path: Optional[str],
                        say: Say) -> Optional[str]:
    """The backbone file to start from (None: random, or weights come from a checkpoint)."""
    if resume_path or args.init_checkpoint:
        return None
    spec = args.pre_trained_model or default_pretrained(args.dataset)
    path = resolve_pretrained(spec, args.base_architecture)
    say(f"backbone weights: {path}" if path
        else "backbone weights: random (--pre_trained_model none)")
    return path


def head_settings_of(ckpt: Optional[Checkpoint], args: TrainConfig) -> Dict[str, Any]:
    """The head settings of the model a run starts from (none: the output stride's defaults).

    A resumed run keeps what it was built with (a Vortex run from before the kernels scaled
    with the output stride stays 3/9/27); phase 2 from a phase-1 checkpoint moves default
    settings to its own stride. A checkpoint of the other head keeps the defaults, and its
    weights are then refused by name when they are loaded.
    """
    if ckpt is None:
        return {}
    if recorded_head_name(ckpt.model_config) != canonical_head_name(args.aspp_or_vortex):
        return {}
    return recorded_head_settings(ckpt.model_config, args.output_stride)


def loader_workers(args: TrainConfig, num_devices: int, say: Say) -> int:
    """--num_workers, or by default 4 per device (at most the CPU count), said once."""
    if args.num_workers is not None:
        return args.num_workers
    count = default_num_workers(num_devices)
    say(f"data loading: {count} worker processes (4 per device, at most the CPU count; "
        "--num_workers sets it)")
    return count


@dataclass(frozen=True)
class DevicePlan:
    """SyncBN and the kvstore as decided for the devices (the run records these), and the
    lines that say why."""

    syncbn: bool
    kvstore: str
    notes: Tuple[str, ...] = ()

    def overrides(self) -> Dict[str, Any]:
        """The config fields this plan decides."""
        return {"syncbn": self.syncbn, "kvstore": self.kvstore}


def plan_devices(args: TrainConfig, ctxs: Sequence[mx.Context]) -> DevicePlan:
    """Decide SyncBN and the kvstore for ``ctxs`` (``args`` is left as given)."""
    syncbn, note = check_devices(args.batch_size, len(ctxs), args.syncbn,
                                 bool(args.freeze_batch_norm))
    kinds = [c.device_type for c in ctxs]
    kvstore, why = choose_kvstore(args.kvstore, kinds, distributed_worker())
    check_nccl(kvstore, kinds, nccl_available())
    notes = [note] if note else []
    if len(ctxs) > 1 or "dist" in kvstore:
        notes.append(f"kvstore: {kvstore} ({why})")
    launch_mode = nccl_launch_mode(kvstore, os.environ)
    return DevicePlan(syncbn, kvstore, tuple(notes + ([launch_mode] if launch_mode else [])))


@dataclass(frozen=True)
class RunPlan:
    """What the start of a run decided (devices, data) beside what was ``asked``; the run
    uses :meth:`config` and its log's start record holds both."""

    devices: DevicePlan
    data: DataPlan
    asked: TrainConfig

    def decided(self) -> Dict[str, Any]:
        """The config fields the plan decides, with their values."""
        return {**self.devices.overrides(), **self.data.overrides()}

    def config(self) -> TrainConfig:
        """The asked config with the decisions in it: what the run records and uses."""
        return dataclasses.replace(self.asked, **self.decided())


class Console:
    """Prints the chief's messages (other workers stay quiet), above the progress bar while
    one is shown."""

    def __init__(self, chief: bool):
        self.chief = chief
        self.bar: Optional[tqdm] = None

    def __call__(self, message: str) -> None:
        if self.chief:
            if self.bar is not None:
                self.bar.write(message)
            else:
                print(message, flush=True)


def iterations_for_epochs(epochs: float, num_samples: int, batch_size: int,
                          num_workers: int = 1) -> int:
    """Optimizer steps that show every training sample ``epochs`` times."""
    return max(1, math.ceil(epochs * num_samples / (batch_size * num_workers)))


def max_iterations(args: TrainConfig, num_images: int, num_workers: int, say: Say) -> int:
    """--max_iter, or the iterations of --train_epochs (said)."""
    if args.train_epochs is None:
        return args.max_iter
    max_iter = iterations_for_epochs(args.train_epochs, num_images, args.batch_size, num_workers)
    say(f"--train_epochs {args.train_epochs}: {max_iter} iterations of batch "
        f"{args.batch_size} x {num_workers} worker(s) over {num_images} images")
    return max_iter


def build_net(args: TrainConfig, ctxs: Sequence[mx.Context], num_classes: int,
              pretrained: Optional[str], ckpt: Optional[Checkpoint]):
    """The model on ``ctxs``, with the head settings of the checkpoint it starts from."""
    return build_model(num_classes, args.base_architecture, args.aspp_or_vortex,
                       args.output_stride, pretrained_backbone=pretrained,
                       aux=args.aux, freeze_bn=bool(args.freeze_batch_norm),
                       decoder=args.decoder, separable=args.separable,
                       syncbn_devices=len(ctxs) if args.syncbn else 0, ctx=ctxs,
                       **head_settings_of(ckpt, args))
