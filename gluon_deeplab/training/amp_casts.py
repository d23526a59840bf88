"""What AMP adds to the training graph: its ``amp_cast`` / ``amp_multicast`` nodes, the ones that
change a dtype, and how many elements those convert per image. Counted on the symbol, so the
counts are the same on every CPU (and on CPUs without bf16); the backward pass mirrors each
forward cast (the gradient of a cast is a cast back), so a step runs twice the forward's.

``amp.init`` patches MXNet for the whole process: count in a process of its own (the bench runs
each case in a child process)."""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import mxnet as mx
import numpy as np

CASTS = ("amp_cast", "amp_multicast")


@dataclass
class CastCount:
    """AMP's casts in one forward graph: ``nodes`` (every cast node), ``weights`` (fp32 master
    weights cast for their layer, once per step whatever the layout), ``activations`` (casts
    of data that change its dtype) and the elements they convert (``activation_elements``,
    per image), with the consuming operator of each (``by_consumer``)."""

    nodes: int = 0
    weights: int = 0
    activations: int = 0
    activation_elements: int = 0
    by_consumer: Dict[str, int] = field(default_factory=dict)


def _dtype_name(dtype) -> str:
    name = str(dtype)
    return "bfloat16" if "bfloat16" in name or name == "|V2" else np.dtype(dtype).name


def _output_info(symbol: mx.sym.Symbol, data_shape: Tuple[int, ...]) -> Dict[str, tuple]:
    internals = symbol.get_internals()
    names = internals.list_outputs()
    _, types, _ = internals.infer_type(data="float32")
    _, shapes, _ = internals.infer_shape_partial(data=data_shape)
    return {n: (_dtype_name(t), s) for n, t, s in zip(names, types, shapes)}


def count_casts(symbol: mx.sym.Symbol, data_shape: Tuple[int, ...]) -> CastCount:
    """The casts of ``symbol`` (built after ``amp.init``) for an input of ``data_shape``."""
    nodes = json.loads(symbol.tojson(remove_amp_cast=False))["nodes"]
    info = _output_info(symbol, data_shape)
    consumers: Dict[int, List[str]] = collections.defaultdict(list)
    for node in nodes:
        for src in node["inputs"]:
            consumers[src[0]].append(node["op"])

    def output(index: int, k: int = 0) -> tuple:
        node = nodes[index]
        name = node["name"] if node["op"] == "null" else f"{node['name']}_output"
        if node["op"] == "amp_multicast":
            name = f"{node['name']}_output{k}"
        return info.get(name, (None, ()))

    count, by_consumer = CastCount(), collections.Counter()
    batch = data_shape[0]
    for index, node in enumerate(nodes):
        if node["op"] not in CASTS:
            continue
        count.nodes += 1
        inputs = [("weight" if nodes[i]["op"] == "null" and nodes[i]["name"] != "data"
                   else nodes[i]["op"], output(i, k)) for i, k, *_ in node["inputs"]]
        if node["op"] == "amp_cast":
            targets = [node["attrs"]["dtype"]]
        else:
            narrow = node.get("attrs", {}).get("cast_narrow", "False") in ("True", "1", "true")
            kinds = {dtype for _, (dtype, _) in inputs}
            targets = [(min if narrow else max)(kinds, key=lambda d: np.dtype(
                "float16" if d == "bfloat16" else d).itemsize)] if kinds else []
        for op, (dtype, shape) in inputs:
            if dtype is None or dtype == targets[0]:
                continue
            if op == "weight":
                count.weights += 1
                continue
            count.activations += 1
            count.activation_elements += int(np.prod(shape)) // max(batch, 1)
            for consumer in set(consumers[index]):
                by_consumer[consumer] += 1
    count.by_consumer = dict(by_consumer)
    return count


def training_graph_casts(backbone: str, head: str, output_stride: int, size: int,
                         decoder: bool = False, dtype: str = "bfloat16") -> CastCount:
    """Switch this process to AMP (``dtype``) and count the casts of the model's training
    graph (logits and auxiliary output) on a ``size`` x ``size`` image."""
    from mxnet.contrib import amp

    from ..models import build_model

    amp.init(target_dtype=dtype)
    net = build_model(21, backbone, head, output_stride, decoder=decoder)
    with mx.autograd.train_mode():
        out = net(mx.sym.var("data"))
    symbol = mx.sym.Group(list(out)) if isinstance(out, (list, tuple)) else out
    return count_casts(symbol, (1, 3, size, size))
