"""Test helpers: evaluation speed and the number of distinct input shapes the network sees.

Each new input shape re-plans a hybridized graph; on a GPU it also re-runs cuDNN autotune and
leaves buffers of its size in the memory pool. :func:`measure_evaluation` reports both the
images per second of :func:`evaluate` and how many shapes it fed the network.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Sequence, Set, Tuple, Union

import mxnet as mx
import numpy as np

from gluon_deeplab.evaluation.inference import output_stride_of
from gluon_deeplab.evaluation.split import evaluate


class ShapeCounter:
    """Calls ``net`` and records each distinct input shape; looks like ``net`` to
    :func:`evaluate` (same output stride and class count)."""

    def __init__(self, net: Any):
        self.net = net
        self.shapes: Set[Tuple[int, ...]] = set()
        self.output_stride = output_stride_of(net)
        self.num_classes = getattr(net, "num_classes", None)

    def __call__(self, x: mx.nd.NDArray) -> Any:
        self.shapes.add(tuple(x.shape))
        return self.net(x)


def distinct_sizes(count: int, low: int, high: int, seed: int = 0) -> List[Tuple[int, int]]:
    """``count`` distinct (height, width) pairs in [low, high], seeded (VOC-like variety)."""
    if high - low + 1 < 2 or count < 1:
        raise ValueError(f"need count >= 1 and low < high, got {count}, {low}, {high}")
    rng = np.random.default_rng(seed)
    sizes: List[Tuple[int, int]] = []
    while len(sizes) < count:
        hw = tuple(int(v) for v in rng.integers(low, high + 1, size=2))
        if hw not in sizes:
            sizes.append(hw)
    return sizes


def measure_evaluation(net: Any, dataset: Any, ctxs: Union[mx.Context, Sequence[mx.Context]],
                       **options: Any) -> Dict[str, Any]:
    """Run :func:`evaluate` once over ``dataset`` (``options`` go to it) and report
    ``images_per_s``, ``seconds``, ``input_shapes`` (distinct shapes the net saw), ``images``
    and ``miou``. Nothing is warmed up: first calls of each shape are part of the cost."""
    counter = ShapeCounter(net)
    start = time.perf_counter()
    metrics, _ = evaluate(counter, dataset, ctxs, progress=False, **options)
    seconds = time.perf_counter() - start
    images = len(dataset) if options.get("max_images") is None else \
        min(len(dataset), int(options["max_images"]))
    return {"images_per_s": images / max(seconds, 1e-9), "seconds": seconds,
            "input_shapes": len(counter.shapes), "images": images, "miou": metrics["miou"]}
