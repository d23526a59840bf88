"""Test helpers that look into what a graph runs: which convolutions a quantized graph runs in
INT8, and which ISA oneDNN picks for a convolution of each dtype on this CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Dict

import mxnet as mx
from mxnet.gluon import HybridBlock

from gluon_deeplab import amx

ISA_PROBE = """
import sys
import gluon_deeplab  # noqa: F401
import mxnet as mx
from mxnet.gluon import nn
dtype = sys.argv[1]
net = nn.HybridSequential()
net.add(nn.Conv2D(32, 3, padding=1, in_channels=32, use_bias=False), nn.Activation("relu"),
        nn.Conv2D(32, 3, padding=1, in_channels=32, use_bias=False))
net.initialize()
net.hybridize()
x = mx.nd.random.uniform(shape=(1, 32, 28, 28))
if dtype == "bfloat16":
    from gluon_deeplab.precision import to_bf16
    net(x)
    net = to_bf16(net)
elif dtype == "int8":
    from mxnet.contrib.quantization import quantize_net_v2
    net = quantize_net_v2(net, quantized_dtype="auto", calib_mode="none", ctx=mx.cpu(),
                          data_shapes=[mx.io.DataDesc("data", x.shape)])
net(x).wait_to_read()
"""


def quantized_convolutions(qnet: HybridBlock) -> Dict[str, bool]:
    """Every convolution of a quantized graph by its fp32 node name -> whether it runs INT8
    (oneDNN fuses conv + BN + ReLU into one node; the original names live in its subgraph)."""
    result: Dict[str, bool] = {}
    for node in json.loads(qnet(mx.sym.var("data")).tojson())["nodes"]:
        quantized = node.get("attrs", {}).get("quantized") == "true" \
            or node["op"].startswith("_contrib_quantized_conv")
        inner = [m for sub in node.get("subgraphs", []) for m in sub["nodes"]]
        for conv in [node] + inner:
            if conv["op"] == "Convolution" or conv["op"].startswith("_contrib_quantized_conv"):
                result[conv["name"]] = quantized
    return result


def onednn_isa(dtype: str = "float32", timeout: float = 300) -> str:
    """The ISA oneDNN runs a ``dtype`` ('float32', 'bfloat16', 'int8') convolution on here,
    e.g. 'avx2', 'avx512_core', 'avx512_core_amx': a tiny network in a child process that
    imports gluon_deeplab (AMX as the library sets it) under ``DNNL_VERBOSE``.
    RuntimeError (one line) when the child fails or runs no such convolution."""

    if dtype not in amx._VERBOSE_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(amx._VERBOSE_DTYPES)}, got {dtype!r}")
    env = amx.child_environment({name: "1" for name in amx.VERBOSE_VARIABLES})
    proc = subprocess.run([sys.executable, "-c", ISA_PROBE, dtype], capture_output=True,
                          text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or f"exit status {proc.returncode}").splitlines()
        raise RuntimeError(f"a {dtype} convolution failed: {lines[-1]}")
    isa = amx.isa_from_verbose(proc.stdout, dtype)
    if isa is None:
        raise RuntimeError(f"oneDNN ran no {dtype} convolution")
    return isa
