"""Post-training INT8 quantization with oneDNN (``mxnet.contrib.quantization``).

Calibration runs the fp32 model on a few images of a dataset split (center crop / zero pad to
one fixed size, so every calibration batch has the same shape) and records the range of each
layer's output ('naive': min/max; 'entropy': KL-optimal thresholds). Layers named in
``exclude`` stay fp32: by default the first convolution (it sees the raw normalized image) and
the classifier (its logits decide the argmax), the two layers where INT8 costs the most accuracy
for the least time. ``quantized_dtype`` is 'int8' (signed everywhere; the default) or 'auto'
(uint8 after a ReLU). How much each costs depends on the CPU's INT8 kernels (docs/deployment.md
measures both on the quick start's model: on AVX2 'int8' kept the fp32 mIoU to 0.6 points,
'auto' lost 1.7; entropy calibration loses over 60 points everywhere). oneDNN's third choice,
'uint8' everywhere, is not offered: ResNet-v2 is pre-activation, so many quantized inputs are
negative and uint8 clips them (on the synthetic set it cost 0.47 mIoU).
"""

from __future__ import annotations

import json
import logging
from typing import List, Optional, Sequence, Tuple

import mxnet as mx
from mxnet.gluon import HybridBlock, SymbolBlock
from mxnet.gluon.data import DataLoader, Dataset

from ..data import SegmentationDataset

CALIB_MODES = ("naive", "entropy")
QUANTIZED_DTYPES = ("auto", "int8")
# Groups of layers that can be kept in fp32 (see excluded_layer_names).
EXCLUDE_GROUPS = ("first_conv", "classifier", "image_pooling", "head")
DEFAULT_EXCLUDE = ("first_conv", "classifier")
DEFAULT_CALIB_MODE = "naive"
DEFAULT_NUM_CALIB_IMAGES = 20
DEFAULT_QUANTIZED_DTYPE = "int8"


class CalibrationImages(Dataset):
    """The first ``num_images`` images of a 'val'-mode dataset, center-cropped / zero-padded
    (zero = the mean after normalization) to ``size``; items are (image, 0) tuples because
    MXNet's calibration expects (data, label) batches."""

    def __init__(self, dataset: SegmentationDataset, num_images: int, size: Tuple[int, int]):
        if num_images < 1:
            raise ValueError(f"--num_calib_images must be at least 1, got {num_images}")
        if len(dataset) == 0:
            raise ValueError("the calibration split holds no images")
        self.dataset = dataset
        self.num_images = min(num_images, len(dataset))
        self.size = tuple(size)

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, i: int):
        image = self.dataset[i][0]
        if not isinstance(image, mx.nd.NDArray):
            image = mx.nd.array(image)
        h, w = self.size
        _, ih, iw = image.shape
        top, left = max(0, (ih - h) // 2), max(0, (iw - w) // 2)
        image = image[:, top:top + h, left:left + w]
        out = mx.nd.zeros((3, h, w), dtype="float32")
        out[:, :image.shape[1], :image.shape[2]] = image
        return out, 0.0


def calibration_loader(dataset: SegmentationDataset, num_images: int,
                       size: Tuple[int, int] = (513, 513)) -> DataLoader:
    """A loader of fixed-size calibration batches (batch 1) yielding (data, label) tuples."""
    return DataLoader(CalibrationImages(dataset, num_images, size), batch_size=1, shuffle=False)


def _graph_nodes(net: HybridBlock) -> List[dict]:
    return json.loads(net(mx.sym.var("data")).tojson())["nodes"]


def excluded_layer_names(net: HybridBlock, groups: Sequence[str]) -> List[str]:
    """Graph node names of the layer groups to keep in fp32 (see EXCLUDE_GROUPS)."""
    unknown = [g for g in groups if g not in EXCLUDE_GROUPS]
    if unknown:
        raise ValueError(f"unknown layer group {unknown[0]!r} to exclude from quantization; "
                         f"expected some of {', '.join(EXCLUDE_GROUPS)}")
    nodes = [n for n in _graph_nodes(net) if n["op"] != "null"]
    names: List[str] = []
    if "first_conv" in groups:
        names += [next(n["name"] for n in nodes if n["op"] == "Convolution")]
    if "classifier" in groups:
        names.append(net.classifier.name + "_fwd")
    prefixes = []
    if "head" in groups:  # everything between backbone and classifier, V3+ decoder included
        prefixes.append(net.head.prefix)
        if getattr(net, "decoder", None) is not None:
            prefixes.append(net.decoder.prefix)
    if "image_pooling" in groups:  # the layers the head's spec keeps in fp32
        from ..models import head_of
        prefixes += head_of(net.head).fp32_layers(net.head)
    names += [n["name"] for n in nodes if any(n["name"].startswith(p) for p in prefixes)]
    return names



def quantize_model(net: HybridBlock, calib_loader: DataLoader,
                   calib_mode: str = DEFAULT_CALIB_MODE,
                   quantized_dtype: str = DEFAULT_QUANTIZED_DTYPE,
                   exclude: Sequence[str] = DEFAULT_EXCLUDE,
                   granularity: str = "tensor-wise", ctx: Optional[mx.Context] = None,
                   logger: Optional[logging.Logger] = None) -> SymbolBlock:
    """Quantize a (hybridizable, initialized) fp32 DeepLab to INT8 after calibration.

    Returns a SymbolBlock that takes any input size, exported like any other HybridBlock.
    """
    from mxnet.contrib.quantization import quantize_net_v2

    if calib_mode not in CALIB_MODES:
        raise ValueError(f"--calib_mode must be one of {', '.join(CALIB_MODES)}, got "
                         f"{calib_mode!r}")
    if quantized_dtype not in QUANTIZED_DTYPES:
        raise ValueError(f"--quantized_dtype must be one of {', '.join(QUANTIZED_DTYPES)}, "
                         f"got {quantized_dtype!r}")
    ctx = ctx or mx.cpu()
    excluded = excluded_layer_names(net, exclude)
    net.hybridize(static_alloc=True, static_shape=True)
    qnet = quantize_net_v2(net, quantized_dtype=quantized_dtype, quantize_mode="full",
                           quantize_granularity=granularity, exclude_layers=excluded,
                           calib_data=calib_loader, calib_mode=calib_mode,
                           num_calib_examples=len(calib_loader), ctx=ctx, logger=logger)
    qnet.output_stride = getattr(net, "output_stride", None)  # inference pads to stride*k+1
    return qnet
