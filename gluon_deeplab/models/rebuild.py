"""Build a model from what a checkpoint records: the record itself (:func:`model_config_of`),
the rebuild (:func:`model_from_checkpoint`) and the strict weight copy. The head's part of the
record is its registered spec's (models/registry.py); the file format is checkpoint.py's."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Union

from ..checkpoint import Checkpoint, load_checkpoint
from ..params import assign_parameters
from .deeplab import DeepLabV3, build_model
from .registry import recorded_head_settings
from .resnet_v2 import check_output_stride

# build_model arguments recorded in every checkpoint besides the head's own settings.
MODEL_CONFIG_KEYS = ("num_classes", "backbone", "head", "output_stride", "aux", "multi_grid",
                     "decoder", "separable")


def model_config_of(net: DeepLabV3, **config: Any) -> Dict[str, Any]:
    """The build_model arguments that rebuild ``net`` (explicit ``config`` entries win)."""
    return {**net.model_config(), **config}


def load_model_weights(net: DeepLabV3, ckpt: Checkpoint, source: str) -> None:
    """Copy checkpoint weights into ``net`` strictly; an auxiliary head absent from ``net``
    is the only thing allowed to be left over (it exists for training only)."""
    aux_keys = [k for k in ckpt.params if k.startswith("aux_head.")] if net.aux_head is None else []
    assign_parameters(net, ckpt.params, source, ignore=aux_keys)


def model_from_checkpoint(checkpoint: Union[str, Checkpoint], ctx=None,
                          output_stride: Optional[int] = None, aux: bool = False,
                          freeze_bn: bool = False, syncbn_devices: int = 0,
                          fixed_size: Optional[Tuple[int, int]] = None,
                          **overrides: Any) -> Tuple[DeepLabV3, Checkpoint]:
    """Rebuild the model a checkpoint describes and load its weights.

    ``output_stride`` overrides the recorded one (weights do not depend on it); ``aux=False``
    drops the training-only auxiliary head. A record of an unknown head (one not registered in
    this process) or of none is a one-line error that names the file.
    """
    ckpt = load_checkpoint(checkpoint) if isinstance(checkpoint, str) else checkpoint
    source = ckpt.path or "checkpoint"
    config = {k: ckpt.model_config[k] for k in MODEL_CONFIG_KEYS if k in ckpt.model_config}
    config["aux"] = bool(aux and config.get("aux"))
    if output_stride is not None:
        config["output_stride"] = output_stride
    try:
        if output_stride is not None:
            check_output_stride(output_stride)
        config.update(recorded_head_settings(ckpt.model_config, output_stride))
        config.update(overrides)
        net = build_model(**config, freeze_bn=freeze_bn, syncbn_devices=syncbn_devices,
                          fixed_size=fixed_size, ctx=ctx)
    except ValueError as err:
        raise ValueError(f"{source}: cannot rebuild its model ({err})") from None
    load_model_weights(net, ckpt, source)
    return net, ckpt
