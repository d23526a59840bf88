"""The one checkpoint format: a single MXNet ``.params`` file that describes itself.

It holds the model parameters (``param:<structural name>``), the optimizer state
(``__optimizer__``, bytes) and a JSON record (``__meta__``): the model configuration that
:func:`gluon_deeplab.build_model` takes, the iteration, the training arguments and the best
validation mIoU. It is written to a temporary file in the same folder, flushed to disk and
renamed, so a crash never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

import mxnet as mx
import numpy as np

from .models import DeepLabV3, VortexPooling, build_model
from .params import assign_parameters, parameter_arrays

CHECKPOINT_FORMAT = "gluon-deeplab-checkpoint/1"
# build_model arguments recorded in every checkpoint.
MODEL_CONFIG_KEYS = ("num_classes", "backbone", "head", "output_stride", "aux", "multi_grid",
                     "decoder", "separable")
_META, _OPTIMIZER, _PARAM = "__meta__", "__optimizer__", "param:"


@dataclass
class Checkpoint:
    """What a checkpoint file holds."""

    params: Dict[str, mx.nd.NDArray]
    model_config: Dict[str, Any]
    iteration: int = 0
    args: Dict[str, Any] = field(default_factory=dict)
    best_miou: Optional[float] = None
    extra: Dict[str, Any] = field(default_factory=dict)
    optimizer_states: Optional[bytes] = None


def _bytes_array(data: bytes) -> mx.nd.NDArray:
    return mx.nd.array(np.frombuffer(data, dtype=np.uint8), dtype=np.uint8)


def atomic_write(path: str, write) -> None:
    """Call ``write(tmp_path)``, flush the result to disk, then rename it onto ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def trainer_states(trainer: mx.gluon.Trainer) -> bytes:
    """The optimizer state of a Gluon trainer as bytes (momentum buffers, update counts)."""
    with tempfile.TemporaryDirectory() as tmp:
        fname = os.path.join(tmp, "states")
        trainer.save_states(fname)
        with open(fname, "rb") as f:
            return f.read()


def restore_trainer_states(trainer: mx.gluon.Trainer, states: bytes) -> None:
    """Inverse of :func:`trainer_states`."""
    with tempfile.TemporaryDirectory() as tmp:
        fname = os.path.join(tmp, "states")
        with open(fname, "wb") as f:
            f.write(states)
        trainer.load_states(fname)


def model_config_of(net: DeepLabV3, **config: Any) -> Dict[str, Any]:
    """The build_model arguments that rebuild ``net`` (explicit ``config`` entries win)."""
    backbone = net.backbone
    derived = {
        "num_classes": net.num_classes,
        "backbone": backbone.backbone_name,
        "head": "vortex" if isinstance(net.head, VortexPooling) else "aspp",
        "output_stride": backbone.output_stride,
        "aux": net.aux_head is not None,
        "multi_grid": list(backbone.multi_grid) if backbone.multi_grid else None,
        "decoder": net.decoder is not None,
        "separable": bool(getattr(net.head, "separable", False)),
    }
    derived.update(config)
    return derived


def save_checkpoint(path: str, net: DeepLabV3, iteration: int = 0,
                    trainer: Optional[mx.gluon.Trainer] = None,
                    args: Optional[Dict[str, Any]] = None, best_miou: Optional[float] = None,
                    extra: Optional[Dict[str, Any]] = None) -> str:
    """Write ``net`` (+ optimizer state and training record) to ``path`` atomically."""
    meta = {
        "format": CHECKPOINT_FORMAT,
        "model": model_config_of(net),
        "iteration": int(iteration),
        "args": args or {},
        "best_miou": best_miou,
        "extra": extra or {},
    }
    arrays = {_PARAM + k: v for k, v in parameter_arrays(net).items()}
    arrays[_META] = _bytes_array(json.dumps(meta, default=str).encode("utf-8"))
    if trainer is not None:
        arrays[_OPTIMIZER] = _bytes_array(trainer_states(trainer))
    atomic_write(path, lambda tmp: mx.nd.save(tmp, arrays))
    return path


def load_checkpoint(path: str) -> Checkpoint:
    """Read a checkpoint; a missing file or a file of another kind is a one-line error."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        arrays = mx.nd.load(path)
    except mx.base.MXNetError:
        raise ValueError(f"{path} is not a gluon-deeplab checkpoint (not an MXNet file)") from None
    if not isinstance(arrays, dict) or _META not in arrays:
        raise ValueError(f"{path} is not a gluon-deeplab checkpoint (no {_META} record); "
                         "a plain parameter file? Use a file written by the trainer")
    meta = json.loads(arrays[_META].asnumpy().tobytes().decode("utf-8"))
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: unsupported checkpoint format {meta.get('format')!r}, "
                         f"expected {CHECKPOINT_FORMAT!r}")
    optimizer = arrays.get(_OPTIMIZER)
    return Checkpoint(
        params={k[len(_PARAM):]: v for k, v in arrays.items() if k.startswith(_PARAM)},
        model_config=meta["model"], iteration=meta["iteration"], args=meta.get("args", {}),
        best_miou=meta.get("best_miou"), extra=meta.get("extra", {}),
        optimizer_states=optimizer.asnumpy().tobytes() if optimizer is not None else None)


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
    drops the training-only auxiliary head.
    """
    source = checkpoint if isinstance(checkpoint, str) else "checkpoint"
    ckpt = load_checkpoint(checkpoint) if isinstance(checkpoint, str) else checkpoint
    config = {k: ckpt.model_config[k] for k in MODEL_CONFIG_KEYS if k in ckpt.model_config}
    config["aux"] = bool(aux and config.get("aux"))
    if output_stride is not None:
        config["output_stride"] = output_stride
    config.update(overrides)
    net = build_model(**config, freeze_bn=freeze_bn, syncbn_devices=syncbn_devices,
                      fixed_size=fixed_size, ctx=ctx)
    load_model_weights(net, ckpt, source)
    return net, ckpt

