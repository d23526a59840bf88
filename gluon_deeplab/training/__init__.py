"""Training: the iteration-based DeepLabV3 trainer and its pieces. The command line lives in
``training.cli`` (and ``training.launch_cli``): importing the library imports no argparse code."""

from __future__ import annotations

from ..devices import resolve_contexts
from .config import TrainConfig
from .errors import TrainingDiverged, TrainingError
from .loss import SegmentationLoss, count_valid_pixels, pixel_cross_entropy_sum
from .optim import configure_parameter_groups, make_trainer
from .run_folder import latest_checkpoint, list_checkpoints, prune_checkpoints
from .schedule import poly_lr
from .step import forward_backward, split_batch
from .trainer import iterations_for_epochs, step_seed, train

__all__ = [
    "SegmentationLoss", "TrainConfig", "TrainingDiverged", "TrainingError",
    "configure_parameter_groups", "count_valid_pixels",
    "forward_backward", "iterations_for_epochs", "latest_checkpoint", "list_checkpoints",
    "make_trainer", "pixel_cross_entropy_sum", "poly_lr", "prune_checkpoints",
    "resolve_contexts", "split_batch", "step_seed", "train",
]
