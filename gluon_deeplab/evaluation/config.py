"""The evaluation's configuration: one field per ``gluon-deeplab-eval`` flag, with its default.

The command line (:mod:`.cli`) takes its parser's defaults from :class:`EvalConfig`;
:func:`.cli.run_eval` takes one (or a dict of field names), as the trainer takes a
``TrainConfig``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

from ..settings import config_from_mapping
from .crf import DenseCRF

DEFAULT_DATASET = "voc"  # VOC 2012, whose val split the trainer's default run validates on
_CRF = DenseCRF.__dataclass_fields__


@dataclass
class EvalConfig:
    """Every evaluation setting, named like its flag (``--checkpoint`` ...)."""

    # model: exactly one of checkpoint / exported
    checkpoint: Optional[str] = None
    exported: Optional[str] = None
    # data
    data_dir: Optional[str] = None  # None: the dataset's default root (default_data_dir)
    dataset: str = DEFAULT_DATASET
    split: str = "val"
    num_classes: Optional[int] = None
    ignore_label: int = 255
    image_dir: Optional[str] = None  # --dataset folder: None = FOLDER_LAYOUT's
    label_dir: Optional[str] = None
    list_file: Optional[str] = None
    # inference (the flags shared with predict)
    output_stride: Optional[int] = None  # None: the checkpoint's
    scales: str = "1.0"
    flip: bool = False
    fusion: str = "mean"
    crop_size: Optional[int] = None  # None: whole image at once
    gpus: str = ""
    buckets: Optional[bool] = None  # None: by the device (GPUs bucket, CPUs do not)
    # dense CRF
    crf: bool = False
    crf_iterations: int = _CRF["iterations"].default
    crf_gaussian_sxy: float = _CRF["gaussian_sxy"].default
    crf_gaussian_compat: float = _CRF["gaussian_compat"].default
    crf_bilateral_sxy: float = _CRF["bilateral_sxy"].default
    crf_bilateral_srgb: float = _CRF["bilateral_srgb"].default
    crf_bilateral_compat: float = _CRF["bilateral_compat"].default
    # run and outputs
    num_workers: Optional[int] = None  # None: 4 per device, at most the CPU count
    max_images: Optional[int] = None
    save_predictions: Optional[str] = None
    save_probabilities: bool = False
    output: Optional[str] = None
    tensorboard: Optional[str] = None
    overwrite: bool = False
    no_progress: bool = False

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> EvalConfig:
        """A config from ``{field: value}`` (unknown names are an error)."""
        return config_from_mapping(cls, values, "evaluation")


def as_eval_config(settings: Union[EvalConfig, Mapping[str, Any]]) -> EvalConfig:
    """A copy of ``settings`` as an :class:`EvalConfig` (the caller's object is not changed
    when the evaluation fills in defaults such as ``data_dir``)."""
    if isinstance(settings, EvalConfig):
        return dataclasses.replace(settings)
    return EvalConfig.from_mapping(settings)
