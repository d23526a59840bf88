"""Deployment: symbol/params + meta file, INT8 (oneDNN) quantization, ONNX."""

from __future__ import annotations

from .export_format import (
    EXPORT_FORMAT,
    export_model,
    load_exported,
    meta_path,
    read_meta,
    write_meta,
)
from .exporting import checkpoint_meta, export_checkpoint
from .int8 import CALIB_MODES, QUANTIZED_DTYPES, calibration_loader, quantize_model
from .onnx_export import ONNX_OPSET, export_onnx, onnx_logits

__all__ = [
    "CALIB_MODES", "EXPORT_FORMAT", "ONNX_OPSET", "QUANTIZED_DTYPES", "calibration_loader",
    "checkpoint_meta", "export_checkpoint", "export_model", "export_onnx", "load_exported",
    "meta_path", "onnx_logits", "quantize_model", "read_meta", "write_meta",
]
