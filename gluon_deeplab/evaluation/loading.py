"""The one way eval and predict load a model: a training checkpoint or an export (fp32/bf16/INT8).

An export is what gets shipped, so evaluating it measures the mIoU users will get.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import mxnet as mx

from ..class_names import checkpoint_classes, export_classes
from ..deploy.export_format import exported_files, load_exported, read_meta
from ..models import model_from_checkpoint

PROBE_SHAPE = (1, 3, 64, 64)


@dataclass
class InferenceModel:
    """A model ready for inference and what is known about it."""

    net: Callable
    num_classes: int
    output_stride: Optional[int]
    precision: str  # 'fp32' for checkpoints; the export's (fp32 / bf16 / int8)
    source: str  # checkpoint path or export prefix
    classes: List[str] = field(default_factory=list)  # recorded, else the dataset's defaults
    iteration: Optional[int] = None
    train_args: Dict[str, Any] = field(default_factory=dict)  # the run's flags, when known


def _exported_classes(prefix: str) -> int:
    """Number of classes of an exported graph, from its output shape."""
    symbol = mx.sym.load(exported_files(prefix)[0])
    _, out_shapes, _ = symbol.infer_shape_partial(data=PROBE_SHAPE)
    return int(out_shapes[0][1])


def load_inference_model(checkpoint: Optional[str], exported: Optional[str],
                         ctxs: Sequence[mx.Context],
                         output_stride: Optional[int] = None) -> InferenceModel:
    """The (hybridized) network of a checkpoint, or of an exported ``PREFIX``.

    A bf16 export is refused, in one line, where this CPU cannot run bfloat16.
    """
    if (checkpoint is None) == (exported is None):
        raise ValueError("give exactly one of --checkpoint and --exported")
    if exported is None:
        net, ckpt = model_from_checkpoint(checkpoint, ctx=list(ctxs), output_stride=output_stride)
        # Buffers planned once per input shape: inference pads to a few bucket sizes.
        net.hybridize(static_alloc=True, static_shape=True)
        return InferenceModel(net, net.num_classes, net.backbone.output_stride, "fp32",
                              checkpoint, checkpoint_classes(ckpt), ckpt.iteration, ckpt.args)
    if output_stride is not None:
        raise ValueError("--output_stride applies to --checkpoint only (an export is fixed)")
    meta = read_meta(exported, required=False)
    precision = meta.get("precision", "fp32")
    if precision == "bf16":
        from ..precision import require_bf16

        require_bf16(f"--exported {exported} (a bf16 model)")
    net = load_exported(exported, ctx=list(ctxs), meta=meta)
    num_classes = _exported_classes(exported)
    if meta and meta.get("num_classes") != num_classes:
        raise ValueError(f"{exported}: the meta file says {meta.get('num_classes')} classes, "
                         f"the graph predicts {num_classes}")
    return InferenceModel(net, num_classes, meta.get("output_stride"), precision, exported,
                          export_classes(meta, num_classes, exported), meta.get("iteration"))
