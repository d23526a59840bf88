"""Evaluation and prediction: metrics, multi-scale inference, colour map, CRF, ensembles."""

from .colormap import colorize, mask_image, save_mask, voc_colormap
from .inference import evaluate, predict_probabilities, predict_probabilities_nd
from .metrics import ConfusionMatrix

__all__ = [
    "ConfusionMatrix",
    "colorize",
    "evaluate",
    "mask_image",
    "predict_probabilities",
    "predict_probabilities_nd",
    "save_mask",
    "voc_colormap",
]
