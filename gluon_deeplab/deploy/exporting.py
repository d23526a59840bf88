"""Export a training checkpoint for deployment: symbol + params (fp32, bf16 or INT8), meta, ONNX.

Every artefact reloads without this package: ``mxnet.gluon.SymbolBlock.imports(PREFIX +
'-symbol.json', ['data'], PREFIX + '-0000.params')`` (any input size; the graph pads and crops
with evaluation/inference.py's rule) or an ONNX runtime on ``PREFIX.onnx`` (the one size it
was exported at). ``PREFIX-meta.json`` says how to feed the model.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple, Union

import mxnet as mx

from ..checkpoint import Checkpoint, load_checkpoint
from ..class_names import checkpoint_classes
from ..data import MEAN, STD, SegmentationDataset
from ..models import model_from_checkpoint, recorded_head_settings
from ..precision import require_bf16, to_bf16
from .export_format import (
    EXPORT_FORMAT,
    EXPORT_PROBE_SIZE,
    INPUT_CONVENTION,
    OUTPUT_CONVENTION,
    PADS_INPUT,
    check_prefix,
    export_converted,
    exported_files,
    meta_path,
    onnx_path,
    refuse_existing,
    write_graph,
    write_meta,
)
from .int8 import (
    DEFAULT_CALIB_MODE,
    DEFAULT_EXCLUDE,
    DEFAULT_NUM_CALIB_IMAGES,
    DEFAULT_QUANTIZED_DTYPE,
    calibration_loader,
    quantize_model,
)
from .onnx_export import require_onnx

EXPORT_DTYPES = ("fp32", "bf16", "int8")


def checkpoint_meta(ckpt: Checkpoint, output_stride: int, **fields: Any) -> Dict[str, Any]:
    """The full ``PREFIX-meta.json`` record of a checkpoint's export: classes, normalization,
    input/output convention, model config; ``fields`` add to it or replace entries."""
    config = ckpt.model_config
    meta = {
        "format": EXPORT_FORMAT,
        "num_classes": config["num_classes"],
        "classes": checkpoint_classes(ckpt),
        "mean": list(MEAN),
        "std": list(STD),
        "input": INPUT_CONVENTION,
        "output": OUTPUT_CONVENTION,
        "input_name": "data",
        "backbone": config.get("backbone"),
        "head": config.get("head"),
        "head_settings": {k: list(v) for k, v in
                          recorded_head_settings(config, output_stride).items()},
        "decoder": bool(config.get("decoder", False)),
        "separable": bool(config.get("separable", False)),
        "output_stride": output_stride,
        "iteration": ckpt.iteration,
        "best_miou": ckpt.best_miou,
        "precision": "fp32",
        PADS_INPUT: True,
    }
    meta.update(fields)
    return meta


def export_checkpoint(checkpoint: Union[str, Checkpoint], prefix: str, *,
                      output_stride: Optional[int] = None, overwrite: bool = False,
                      dtype: str = "fp32", check_bf16: bool = True,
                      int8: bool = False, calib_dataset: Optional[SegmentationDataset] = None,
                      num_calib_images: int = DEFAULT_NUM_CALIB_IMAGES,
                      calib_mode: str = DEFAULT_CALIB_MODE,
                      quantized_dtype: str = DEFAULT_QUANTIZED_DTYPE,
                      calib_size: Tuple[int, int] = (513, 513),
                      exclude: Sequence[str] = DEFAULT_EXCLUDE,
                      onnx_input_size: Optional[Tuple[int, int]] = None,
                      ctx: Optional[mx.Context] = None) -> Dict[str, str]:
    """Rebuild the model of ``checkpoint`` (auxiliary head dropped) and export it under ``prefix``.

    Writes ``PREFIX-symbol.json`` + ``PREFIX-0000.params`` in ``dtype``: 'fp32'; 'bf16'
    (convolutions in bfloat16, fp32 input and logits; refused where this CPU cannot run bf16
    unless ``check_bf16=False``, which exports for another machine unchecked); 'int8'
    (``int8=True`` is the same): calibrated on ``num_calib_images`` of ``calib_dataset``.
    Also ``PREFIX-meta.json`` and, with ``onnx_input_size=(H, W)``, ``PREFIX.onnx`` (fp32,
    fixed size). Nothing is written when any output exists and ``overwrite`` is False.
    Returns {'symbol', 'params', 'meta'[, 'onnx']}.
    """
    ctx = ctx or mx.cpu()
    dtype = "int8" if int8 else dtype
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(EXPORT_DTYPES)}, got {dtype!r}")
    int8 = dtype == "int8"
    if dtype == "bf16" and onnx_input_size:
        raise ValueError("--onnx exports the fp32 model; run the bf16 and the ONNX export "
                         "separately")
    if dtype == "bf16" and check_bf16:
        require_bf16("--dtype bf16")
    if int8 and onnx_input_size:
        raise ValueError("--onnx exports the fp32 model (MXNet's INT8 operators have no ONNX "
                         "form); run the INT8 and the ONNX export separately")
    if onnx_input_size:
        require_onnx()  # before anything is written
    if int8 and calib_dataset is None:
        raise ValueError("INT8 export needs calibration images: pass --calib_data_dir and "
                         "--calib_dataset")
    symbol_file, params_file = exported_files(check_prefix(prefix))
    outputs = {"symbol": symbol_file, "params": params_file, "meta": meta_path(prefix)}
    if onnx_input_size:
        outputs["onnx"] = onnx_path(prefix)
    refuse_existing(list(outputs.values()), overwrite)
    ckpt = load_checkpoint(checkpoint) if isinstance(checkpoint, str) else checkpoint
    net, _ = model_from_checkpoint(ckpt, ctx=ctx, output_stride=output_stride, aux=False)
    stride = net.backbone.output_stride
    fields: Dict[str, Any] = {}
    if int8:
        loader = calibration_loader(calib_dataset, num_calib_images, calib_size)
        net = quantize_model(net, loader, calib_mode=calib_mode,
                             quantized_dtype=quantized_dtype, exclude=exclude, ctx=ctx)
        fields = {"precision": "int8", "calib_mode": calib_mode,
                  "quantized_dtype": quantized_dtype, "num_calib_images": len(loader),
                  "calib_size": list(calib_size), "excluded_from_quantization": list(exclude)}
    if dtype == "bf16":
        net.hybridize()
        net(mx.nd.zeros((1, 3) + EXPORT_PROBE_SIZE, ctx=ctx))  # the fp32 graph to convert
        export_converted(to_bf16(net, ctx), prefix, stride)
        fields = {"precision": "bf16"}
    else:
        write_graph(net, prefix)
    if onnx_input_size:
        from .onnx_export import export_onnx
        fixed, _ = model_from_checkpoint(ckpt, ctx=ctx, output_stride=output_stride, aux=False,
                                         fixed_size=tuple(onnx_input_size))
        export_onnx(fixed, outputs["onnx"], onnx_input_size, overwrite=True)
        fields["onnx_input_size"] = list(onnx_input_size)
    write_meta(prefix, checkpoint_meta(ckpt, stride, **fields))  # once, last
    return outputs
