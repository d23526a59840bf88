"""The trainer's configuration: one field per ``gluon-deeplab-train`` flag, with its default.

The command line (:mod:`.cli`) builds its parser from these defaults and fills a
:class:`TrainConfig`; :func:`gluon_deeplab.training.train` takes one (or a dict of field
names), so the library does not depend on its command line.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from ..data import default_data_dir, get_layout
from ..data.folder import FOLDER_LAYOUT
from ..models import (
    OUTPUT_STRIDES,
    canonical_backbone_name,
    check_output_stride,
    describe_heads,
    head_spec,
)
from ..settings import config_from_mapping

NO_RESUME = ("", "-1", "none")
DEFAULT_MAX_ITER = 30000
DEFAULT_AUX_WEIGHT = 0.4
KVSTORES = ("device", "local", "nccl", "dist_sync", "dist_device_sync", "dist_sync_device")


@dataclass(frozen=True)
class DataPlan:
    """Where a run's data comes from, defaults decided: the folder, the training split, the
    validation dataset, and the (flag, value) of each default that chose data (for errors)."""

    data_dir: str
    train_split: str
    val_dataset: Optional[str]
    defaults_used: Tuple[Tuple[str, Any], ...] = ()

    def overrides(self) -> Dict[str, Any]:
        """The config fields this plan decides."""
        return {"data_dir": self.data_dir, "train_split": self.train_split,
                "val_dataset": self.val_dataset}


@dataclass
class TrainConfig:
    """Every training setting, named like its flag (``--base_architecture`` ...)."""

    # model
    base_architecture: str = "resnet_v2_50"
    aspp_or_vortex: Union[int, str] = 1  # a registered head's name or alias (1: ASPP, 2: Vortex)
    output_stride: int = 16
    freeze_batch_norm: int = 0
    pre_trained_model: Optional[str] = None
    init_checkpoint: Optional[str] = None
    aux: bool = False
    aux_weight: Optional[float] = None
    num_classes: Optional[int] = None
    hybridize: int = 1
    decoder: bool = False
    separable: bool = False
    # data
    dataset: str = "voc_sbd"
    data_dir: Optional[str] = None  # gluoncv's root for voc/voc_sbd, else ./VOCdevkit_aug
    train_split: Optional[str] = None  # train_aug for voc_sbd and voc_aug, else train
    val_split: str = "val"
    val_dataset: Optional[str] = None  # voc (VOC 2012 val) for voc_sbd, else --dataset
    val_data_dir: Optional[str] = None
    crop_size: int = 513
    ignore_label: int = 255
    num_workers: Optional[int] = None  # None: default_num_workers(number of devices)
    image_dir: Optional[str] = None  # --dataset folder: None = FOLDER_LAYOUT's
    label_dir: Optional[str] = None
    list_file: Optional[str] = None
    # schedule
    max_iter: Optional[int] = None
    train_epochs: Optional[float] = None
    batch_size: int = 16
    initial_learning_rate: float = 7e-3
    end_learning_rate: float = 0.0
    weight_decay: float = 2e-4
    head_lr_mult: float = 1.0
    seed: int = 0
    # devices
    gpus: str = ""
    cpu_devices: int = 0
    kvstore: Optional[str] = None  # None: chosen from the devices (multi_device.choose_kvstore)
    syncbn: Optional[bool] = None  # None: automatic (multi_device.resolve_syncbn)
    amp: bool = False
    # output
    output_dir: str = "runs/deeplab"
    resume: Optional[str] = None
    checkpoint_interval: int = 1000
    keep_checkpoints: int = 3
    val_interval: int = 1000
    log_interval: int = 10
    progress: int = 1
    tensorboard: bool = True  # on where tensorboardX is installed

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainConfig:
        """A config from ``{field: value}`` (unknown names are an error)."""
        return config_from_mapping(cls, values, "training")

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def check(self) -> TrainConfig:
        """Normalize (seed spellings, defaults that depend on other flags) and check the
        values in place; a bad value is a ValueError that names its flag. Returns ``self``."""
        self.base_architecture = canonical_backbone_name(self.base_architecture)
        self.dataset = get_layout(self.dataset).name  # unknown: an error naming the flag
        if self.val_dataset:
            self.val_dataset = get_layout(self.val_dataset, "--val_dataset").name
        check_output_stride(self.output_stride, OUTPUT_STRIDES, "--output_stride")
        _check_head(self.aspp_or_vortex)
        for name in ("freeze_batch_norm", "hybridize", "progress"):
            _check_choice(name, getattr(self, name), (0, 1))
        for name in ("crop_size", "batch_size", "checkpoint_interval", "keep_checkpoints",
                     "log_interval"):
            _check_int(name, getattr(self, name), 1)
        for name in ("num_workers", "cpu_devices", "val_interval"):
            if name != "num_workers" or self.num_workers is not None:
                _check_int(name, getattr(self, name), 0)
        if self.resume is not None and str(self.resume).strip().lower() in NO_RESUME:
            self.resume = None
        self._check_length()
        self._check_aux()
        self._check_folder_options()
        if str(self.pre_trained_model or "none").lower() != "none" and self.init_checkpoint:
            raise ValueError("--pre_trained_model and --init_checkpoint both set the starting "
                             "weights; give one")
        self._check_optimizer()
        if self.syncbn not in (None, True, False):
            raise ValueError(f"--syncbn must be on, off or automatic (None), got {self.syncbn!r}")
        if self.syncbn and self.freeze_batch_norm:
            raise ValueError("--syncbn has no effect with --freeze_batch_norm 1 (frozen BN uses "
                             "running statistics); drop one")
        if self.kvstore is not None and self.kvstore not in KVSTORES:
            raise ValueError(f"--kvstore {self.kvstore!r}: expected device, local, nccl, "
                             "dist_sync or dist_device_sync (synchronous: every worker applies "
                             "the same update)")
        return self

    def data_plan(self) -> DataPlan:
        """The data folder, training split and validation dataset this config leaves to their
        defaults, decided (the config itself is left as given)."""
        used = [("--dataset", self.dataset)] if self.dataset == TrainConfig.dataset else []
        data_dir = self.data_dir
        if not data_dir:
            data_dir = default_data_dir(self.dataset)
            used.append(("--data_dir", data_dir))
        val_dataset = self.val_dataset
        layout = get_layout(self.dataset)
        if self.val_interval > 0 and not val_dataset and layout.val_dataset:
            val_dataset = layout.val_dataset
            used.append(("--val_dataset", val_dataset))
        return DataPlan(data_dir, self.train_split or layout.train_split, val_dataset,
                        tuple(used))

    def _check_length(self) -> None:
        if self.train_epochs is not None:
            if self.max_iter is not None:
                raise ValueError("--train_epochs and --max_iter both set the length of "
                                 "training; give one (--max_iter counts optimizer steps)")
            _check_float("train_epochs", self.train_epochs, above=0.0)
        else:
            if self.max_iter is None:
                self.max_iter = DEFAULT_MAX_ITER
            _check_int("max_iter", self.max_iter, 1)

    def _check_aux(self) -> None:
        if self.aux_weight is not None and not self.aux:
            raise ValueError("--aux_weight needs --aux (the auxiliary head)")
        if self.aux and self.aux_weight is None:
            self.aux_weight = DEFAULT_AUX_WEIGHT
        if self.aux_weight is not None:
            _check_float("aux_weight", self.aux_weight, at_least=0.0)

    def folder_options(self) -> Dict[str, str]:
        """The folder layout's settings that were given (image_dir, label_dir, list_file)."""
        return {name: getattr(self, name) for name in FOLDER_LAYOUT
                if getattr(self, name) is not None}

    def _check_folder_options(self) -> None:
        given = self.folder_options()
        if given and "folder" not in (self.dataset, self.val_dataset):
            raise ValueError(f"--{next(iter(given))} is an option of --dataset folder, not of "
                             f"--dataset {self.dataset}")
        list_file = given.get("list_file", "{split}")
        if "{split}" not in list_file and self.val_interval > 0 and self.dataset == "folder" \
                and self.val_dataset in (None, "folder") and not self.val_data_dir:
            raise ValueError(f"--list_file {list_file} would be the list of both the training "
                             "and the validation split; write {split} where the split's name "
                             "goes (e.g. lists/{split}.txt), or pass --val_interval 0")

    def _check_optimizer(self) -> None:
        _check_float("initial_learning_rate", self.initial_learning_rate, above=0.0)
        _check_float("end_learning_rate", self.end_learning_rate, at_least=0.0)
        if self.end_learning_rate > self.initial_learning_rate:
            raise ValueError("--end_learning_rate must not exceed --initial_learning_rate")
        _check_float("weight_decay", self.weight_decay, at_least=0.0)
        _check_float("head_lr_mult", self.head_lr_mult, above=0.0)


def as_config(settings: Union[TrainConfig, Mapping[str, Any]]) -> TrainConfig:
    """A checked copy of ``settings`` (a TrainConfig or ``{field: value}``)."""
    if isinstance(settings, TrainConfig):
        config = dataclasses.replace(settings)
    elif isinstance(settings, Mapping):
        config = TrainConfig.from_mapping(settings)
    else:
        raise TypeError(f"expected a TrainConfig or a dict of settings, got "
                        f"{type(settings).__name__}")
    return config.check()


def _check_choice(name: str, value: Any, allowed: tuple, expected: str = "") -> None:
    if value not in allowed:
        expected = expected or " or ".join(str(a) for a in allowed)
        raise ValueError(f"--{name} must be {expected}, got {value!r}")


def _check_head(value: Any) -> None:
    try:
        head_spec(value)
    except ValueError:
        raise ValueError(f"--aspp_or_vortex must be a registered head, one of {describe_heads()}; "
                         f"got {value!r}") from None


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"--{name} must be an integer >= {minimum}, got {value!r}")


def _check_float(name: str, value: Any, above: Optional[float] = None,
                 at_least: Optional[float] = None) -> None:
    """A finite number (nan and inf make no sense for any of these settings) in range."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and above is not None:
        ok, bound = value > above, f"> {above:g}"
    elif ok and at_least is not None:
        ok, bound = value >= at_least, f">= {at_least:g}"
    else:
        bound = f"> {above:g}" if above is not None else f">= {at_least:g}"
    if not ok:
        raise ValueError(f"--{name} must be a finite number {bound}, got {value!r}")
