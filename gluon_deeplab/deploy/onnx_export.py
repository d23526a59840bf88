"""ONNX export through MXNet's converter (``mx.onnx.export_model``), opset 13.

MXNet 1.9.1's converter only has translations up to opset 13 but stamps and checks the graph
with the installed ``onnx`` package's newest opset, which rejects e.g. ReduceMean's ``axes``
attribute (an input since opset 18). The export therefore runs with the opset pinned to 13.
The model must be built with ``fixed_size=(H, W)``: the converter handles BilinearResize2D only
in size mode, so an ONNX file takes one input size (the batch dimension is free). Unlike the
symbol export it does not pad its input: at H, W = output_stride * k + 1 it gives predict.py's
result.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator, Tuple

import numpy as np
from mxnet.gluon import HybridBlock

from ..files import atomic_write
from .export_format import export_model

ONNX_OPSET = 13
ONNX_INSTALL = "pip install -e '.[onnx]'"  # the onnx extra, as the README installs it


def require_onnx():
    """The ``onnx`` module, or an ImportError saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise ImportError(f"--onnx needs the onnx package (the onnx extra): {ONNX_INSTALL}"
                          ) from None
    return onnx


@contextlib.contextmanager
def _pinned_opset(onnx, version: int) -> Iterator[None]:
    """Make ``onnx`` report ``version`` as its newest opset while MXNet converts."""
    import onnx.checker
    import onnx.defs

    saved = onnx.defs.onnx_opset_version, onnx.checker.DEFAULT_CONTEXT.opset_imports
    onnx.defs.onnx_opset_version = lambda: version
    onnx.checker.DEFAULT_CONTEXT.opset_imports = {"": version}
    try:
        yield
    finally:
        onnx.defs.onnx_opset_version = saved[0]
        onnx.checker.DEFAULT_CONTEXT.opset_imports = saved[1]


def export_onnx(net: HybridBlock, path: str, input_size: Tuple[int, int],
                overwrite: bool = False) -> str:
    """Write ``net`` (built with ``fixed_size=input_size``) as an ONNX model to ``path``.

    Input 'data' is float32 N x 3 x H x W (N free), output the logits N x C x H x W.
    """
    import mxnet as mx

    onnx = require_onnx()
    h, w = (int(s) for s in input_size)
    fixed = getattr(net, "fixed_size", None)
    if fixed is not None and tuple(fixed) != (h, w):
        raise ValueError(f"the model resizes its logits to {fixed}, not to --input_size "
                         f"{(h, w)}; build it with fixed_size={(h, w)}")
    if fixed is None and hasattr(net, "fixed_size"):
        raise ValueError("ONNX export needs a model built with fixed_size=(H, W) (MXNet's "
                         "converter cannot resize 'like' the input)")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; choose another --output or pass --overwrite")
    with tempfile.TemporaryDirectory() as tmp:
        symbol_file, params_file = export_model(net, os.path.join(tmp, "model"),
                                                probe_size=(h, w), self_padding=False)
        tmp_onnx = os.path.join(tmp, "model.onnx")
        with _pinned_opset(onnx, ONNX_OPSET):
            mx.onnx.export_model(symbol_file, params_file, [(1, 3, h, w)], [np.float32],
                                 tmp_onnx, dynamic=True,
                                 dynamic_input_shapes=[(None, 3, h, w)])
        model = onnx.load(tmp_onnx)
    # Weights are initializers, not inputs: runtimes can then fold and fuse them.
    weights = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    onnx.checker.check_model(model, full_check=True)
    atomic_write(path, lambda tmp_path: onnx.save(model, tmp_path))
    return path


def onnx_logits(path: str, images: np.ndarray) -> np.ndarray:
    """Run an exported ONNX model on float32 NCHW ``images`` with onnxruntime.

    (The ``onnx`` package's ReferenceEvaluator cannot run it: its Resize fails on the empty
    ``roi`` input that MXNet's converter writes, in onnx 1.16.)
    """
    try:
        import onnxruntime
    except ImportError:
        raise ImportError(f"running an ONNX model needs onnxruntime (the onnx extra): "
                          f"{ONNX_INSTALL}") from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    images = np.ascontiguousarray(images, dtype=np.float32)
    return session.run(None, {session.get_inputs()[0].name: images})[0]
