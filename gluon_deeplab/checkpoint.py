"""The one checkpoint format: a single MXNet ``.params`` file that describes itself.

It holds the model parameters (``param:<structural name>``), the optimizer state as named arrays
(``optimizer:<structural name>``: SGD's momentum buffers) and a JSON record (``__meta__``): the
model configuration that :func:`gluon_deeplab.build_model` takes (models/rebuild.py rebuilds
the model from it), the iteration, the training
arguments, the best validation mIoU, the optimizer's update counts and a SHA-256 of every other
array, checked on load (a damaged file is refused). Nothing in it is unpickled: checkpoints are
shared like model files, and resuming one must be as safe as evaluating it. Checkpoints written
before (pickled ``__optimizer__`` bytes, no checksum) still load their weights; resuming their
optimizer state is refused with a message that says to use ``--init_checkpoint``.

It is written with :func:`gluon_deeplab.files.atomic_write`, so a crash never leaves a
half-written checkpoint behind. The optimizer state is taken from and put back into a Gluon
trainer by training/trainer_state.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import mxnet as mx
import numpy as np
from mxnet.gluon.nn import HybridBlock

from .files import atomic_write
from .params import parameter_arrays

CHECKPOINT_FORMAT = "gluon-deeplab-checkpoint/1"
_META, _OPTIMIZER, _PARAM = "__meta__", "__optimizer__", "param:"
_OPT_ARRAY = "optimizer:"  # optimizer:<structural name>[#k] (k: element of a tuple state)
OPTIMIZER_STATE_FORMAT = "named-arrays/1"
# A run folder passed where a checkpoint file is expected: the first of these that exists.
BEST, FINAL = "best.params", "final.params"


@dataclass
class OptimizerState:
    """A Gluon trainer's optimizer state without pickle: per-parameter state arrays keyed by
    structural name (``<name>`` or ``<name>#k``) and a JSON record (optimizer, update counts,
    state layout). ``legacy_pickle``: the checkpoint holds the old pickled state (not loaded)."""

    record: Dict[str, Any]
    arrays: Dict[str, mx.nd.NDArray] = field(default_factory=dict)
    source: str = "checkpoint"
    legacy_pickle: bool = False


@dataclass
class Checkpoint:
    """What a checkpoint file holds."""

    params: Dict[str, mx.nd.NDArray]
    model_config: Dict[str, Any]
    iteration: int = 0
    args: Dict[str, Any] = field(default_factory=dict)
    best_miou: Optional[float] = None
    extra: Dict[str, Any] = field(default_factory=dict)
    optimizer_states: Optional[OptimizerState] = None
    path: Optional[str] = None


def _bytes_array(data: bytes) -> mx.nd.NDArray:
    return mx.nd.array(np.frombuffer(data, dtype=np.uint8), dtype=np.uint8)


def payload_checksum(arrays: Dict[str, mx.nd.NDArray]) -> str:
    """SHA-256 over every array but ``__meta__``, by name order: name, dtype, shape, bytes."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        if name == _META:
            continue
        value = arrays[name].asnumpy()
        digest.update(f"{name}\0{value.dtype.str}\0{value.shape}\0".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def save_checkpoint(path: str, net: HybridBlock, iteration: int = 0,
                    optimizer_state: Optional[OptimizerState] = None,
                    args: Optional[Dict[str, Any]] = None, best_miou: Optional[float] = None,
                    extra: Optional[Dict[str, Any]] = None) -> str:
    """Write ``net`` (a DeepLabV3: its ``model_config()`` is the model record), the optimizer
    state (see training/trainer_state.py) and the training record to ``path`` atomically."""
    arrays = {_PARAM + k: v for k, v in parameter_arrays(net).items()}
    optimizer = None
    if optimizer_state is not None:
        optimizer = optimizer_state.record
        arrays.update({_OPT_ARRAY + k: v for k, v in optimizer_state.arrays.items()})
    meta = {
        "format": CHECKPOINT_FORMAT,
        "model": net.model_config(),
        "iteration": int(iteration),
        "args": args or {},
        "best_miou": best_miou,
        "extra": extra or {},
        "optimizer": optimizer,
        "sha256": payload_checksum(arrays),
    }
    arrays[_META] = _bytes_array(json.dumps(meta, default=str).encode("utf-8"))
    atomic_write(path, lambda tmp: mx.nd.save(tmp, arrays))
    return path


def resolve_checkpoint_path(path: str) -> str:
    """``path`` itself, or for a run folder its best.params (else final.params), said on stderr."""
    if not os.path.isdir(path):
        return path
    for name in (BEST, FINAL):
        candidate = os.path.join(path, name)
        if os.path.isfile(candidate):
            print(f"{path} is a run folder: using its {name} ({candidate})", file=sys.stderr,
                  flush=True)
            return candidate
    raise FileNotFoundError(f"checkpoint {path!r} is a folder without {BEST} or {FINAL}; "
                            "pass a checkpoint file")


def _read_arrays(path: str) -> Dict[str, mx.nd.NDArray]:
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise PermissionError(f"checkpoint {path}: permission denied (cannot read it)") from None
    try:
        arrays = mx.nd.load(path)
    except mx.base.MXNetError:
        raise ValueError(f"{path} is not a gluon-deeplab checkpoint (not an MXNet parameter "
                         "file, or a damaged one)") from None
    if not isinstance(arrays, dict) or _META not in arrays:
        raise ValueError(f"{path} is not a gluon-deeplab checkpoint (no {_META} record); "
                         "a plain parameter file? Use a file written by the trainer")
    return arrays


def load_checkpoint(path: str) -> Checkpoint:
    """Read a checkpoint (a run folder: its best.params, else final.params) and verify its
    checksum; a missing, unreadable, damaged or foreign file is a one-line error."""
    path = resolve_checkpoint_path(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    arrays = _read_arrays(path)
    try:
        meta = json.loads(arrays[_META].asnumpy().tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"{path} is damaged: its {_META} record is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ValueError(f"{path}: unsupported checkpoint format {found!r}, "
                         f"expected {CHECKPOINT_FORMAT!r}")
    if "sha256" in meta and payload_checksum(arrays) != meta["sha256"]:
        raise ValueError(f"{path} is damaged: its arrays do not match the checksum written with "
                         "them (a partial copy or a disk error?); use another checkpoint")
    optimizer = None
    if meta.get("optimizer"):
        optimizer = OptimizerState(
            meta["optimizer"], {k[len(_OPT_ARRAY):]: v for k, v in arrays.items()
                                if k.startswith(_OPT_ARRAY)}, source=path)
    elif _OPTIMIZER in arrays:  # written before the change: never unpickled
        optimizer = OptimizerState({}, source=path, legacy_pickle=True)
    return Checkpoint(
        params={k[len(_PARAM):]: v for k, v in arrays.items() if k.startswith(_PARAM)},
        model_config=meta["model"], iteration=meta["iteration"], args=meta.get("args", {}),
        best_miou=meta.get("best_miou"), extra=meta.get("extra", {}),
        optimizer_states=optimizer, path=path)
