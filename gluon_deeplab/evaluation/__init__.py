"""Evaluation and prediction: metrics, multi-scale inference, colour map, CRF, ensembles."""

from .colormap import colorize, mask_image, save_mask, voc_colormap
from .config import EvalConfig
from .crf import DenseCRF
from .inference import predict_probabilities, predict_probabilities_nd
from .metrics import ConfusionMatrix
from .split import evaluate
from .visualize import overlay, panel, save_rgb

__all__ = [
    "ConfusionMatrix",
    "DenseCRF",
    "EvalConfig",
    "colorize",
    "evaluate",
    "mask_image",
    "overlay",
    "panel",
    "predict_probabilities",
    "predict_probabilities_nd",
    "save_mask",
    "save_rgb",
    "voc_colormap",
]
