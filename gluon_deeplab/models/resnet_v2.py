"""Dilated ResNet-v2 backbones, parameter-compatible with ``mxnet.gluon.model_zoo.vision``.

The block tree (``features.0`` ... ``features.10``) mirrors the model zoo's ``ResNetV2.features``
so that its ImageNet files (``resnet50_v2-81a4e66a.params``) load strictly by structural name.
Output stride 8/16 replaces the stride 2 of stages 3/4 by dilation; strides and dilations change
no parameter shape, so one set of weights serves every output stride.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

import mxnet as mx
import numpy as np
from mxnet.gluon import nn
from mxnet.gluon.nn import HybridBlock

from ..errors import error_line
from ..params import assign_parameters

# name -> (block kind, units per stage, channels [stem, stage1..4])
RESNET_V2_SPECS: Dict[str, Tuple[str, List[int], List[int]]] = {
    "resnet18_v2": ("basic", [2, 2, 2, 2], [64, 64, 128, 256, 512]),
    "resnet34_v2": ("basic", [3, 4, 6, 3], [64, 64, 128, 256, 512]),
    "resnet50_v2": ("bottleneck", [3, 4, 6, 3], [64, 256, 512, 1024, 2048]),
    "resnet101_v2": ("bottleneck", [3, 4, 23, 3], [64, 256, 512, 1024, 2048]),
    "resnet152_v2": ("bottleneck", [3, 8, 36, 3], [64, 256, 512, 1024, 2048]),
}

# The seed project's --base_architecture spellings.
BACKBONE_ALIASES = {
    "resnet_v2_18": "resnet18_v2",
    "resnet_v2_34": "resnet34_v2",
    "resnet_v2_50": "resnet50_v2",
    "resnet_v2_101": "resnet101_v2",
    "resnet_v2_152": "resnet152_v2",
}

# Strides of stages 1-4 and stage dilations for each output stride.
STAGE_STRIDES_AND_DILATIONS = {
    32: ((1, 2, 2, 2), (1, 1, 1, 1)),
    16: ((1, 2, 2, 1), (1, 1, 1, 2)),
    8: ((1, 2, 1, 1), (1, 1, 2, 4)),
}
# What the model blocks build (OS 32: the model zoo network) ...
MODEL_OUTPUT_STRIDES = (8, 16, 32)
# ... and what the scripts offer (--output_stride of train, eval, predict, export, bench).
OUTPUT_STRIDES = (8, 16)
DEFAULT_MULTI_GRID = (1, 2, 4)
# Keys of the model zoo classifier, present in ImageNet files but not part of the backbone.
CLASSIFIER_KEYS = ("output.weight", "output.bias")
KAIMING_INIT = mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2)


def canonical_backbone_name(name: str) -> str:
    """Map seed spellings (``resnet_v2_50``) to model zoo names (``resnet50_v2``)."""
    name = BACKBONE_ALIASES.get(name, name)
    if name not in RESNET_V2_SPECS:
        choices = ", ".join(sorted(RESNET_V2_SPECS) + sorted(BACKBONE_ALIASES))
        raise ValueError(f"unknown backbone {name!r}; expected one of: {choices}")
    return name


def check_output_stride(value: object, allowed: Sequence[int] = MODEL_OUTPUT_STRIDES,
                        name: str = "output_stride") -> int:
    """``value`` as an int if it is one of ``allowed``, else a ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value not in allowed:
        choices = ", ".join(str(s) for s in allowed[:-1]) + f" or {allowed[-1]}"
        raise ValueError(f"{name} must be {choices}, got {value!r}")
    return int(value)


def _conv3x3(channels: int, stride: int, dilation: int, in_channels: int) -> nn.Conv2D:
    return nn.Conv2D(channels, 3, strides=stride, padding=dilation, dilation=dilation,
                     use_bias=False, in_channels=in_channels)


class BasicBlockV2(HybridBlock):
    """Pre-activation basic unit (ResNet-18/34), with a dilation for its 3x3 convs."""

    def __init__(self, channels: int, stride: int, downsample: bool, in_channels: int,
                 dilation: int = 1, norm_layer=nn.BatchNorm, norm_kwargs: Optional[dict] = None,
                 **kwargs):
        super().__init__(**kwargs)
        norm_kwargs = norm_kwargs or {}
        self.dilation = dilation
        self.bn1 = norm_layer(in_channels=in_channels, **norm_kwargs)
        self.conv1 = _conv3x3(channels, stride, dilation, in_channels)
        self.bn2 = norm_layer(in_channels=channels, **norm_kwargs)
        self.conv2 = _conv3x3(channels, 1, dilation, channels)
        self.downsample = (nn.Conv2D(channels, 1, stride, use_bias=False, in_channels=in_channels)
                           if downsample else None)

    def hybrid_forward(self, F, x):
        residual = x
        x = F.Activation(self.bn1(x), act_type="relu")
        if self.downsample is not None:
            residual = self.downsample(x)
        x = self.conv1(x)
        x = F.Activation(self.bn2(x), act_type="relu")
        x = self.conv2(x)
        return x + residual


class BottleneckV2(HybridBlock):
    """Pre-activation bottleneck unit; the stride sits on the 3x3 conv as in the model zoo."""

    def __init__(self, channels: int, stride: int, downsample: bool, in_channels: int,
                 dilation: int = 1, norm_layer=nn.BatchNorm, norm_kwargs: Optional[dict] = None,
                 **kwargs):
        super().__init__(**kwargs)
        norm_kwargs = norm_kwargs or {}
        self.dilation = dilation
        self.bn1 = norm_layer(in_channels=in_channels, **norm_kwargs)
        self.conv1 = nn.Conv2D(channels // 4, 1, use_bias=False, in_channels=in_channels)
        self.bn2 = norm_layer(in_channels=channels // 4, **norm_kwargs)
        self.conv2 = _conv3x3(channels // 4, stride, dilation, channels // 4)
        self.bn3 = norm_layer(in_channels=channels // 4, **norm_kwargs)
        self.conv3 = nn.Conv2D(channels, 1, use_bias=False, in_channels=channels // 4)
        self.downsample = (nn.Conv2D(channels, 1, stride, use_bias=False, in_channels=in_channels)
                           if downsample else None)

    def hybrid_forward(self, F, x):
        residual = x
        x = F.Activation(self.bn1(x), act_type="relu")
        if self.downsample is not None:
            residual = self.downsample(x)
        x = self.conv1(x)
        x = F.Activation(self.bn2(x), act_type="relu")
        x = self.conv2(x)
        x = F.Activation(self.bn3(x), act_type="relu")
        x = self.conv3(x)
        return x + residual


def unit_dilations(num_units: int, dilation: int, previous_dilation: int,
                   multi_grid: Optional[Sequence[int]] = None) -> List[int]:
    """Dilation of each unit of a stage.

    The first unit keeps the previous stage's dilation (its 3x3 conv is the one that used to
    carry the stride); the others use the stage dilation. Multi-grid multiplies these
    unit by unit, e.g. stage 4 at OS 16 with (1, 2, 4): (1, 4, 8); at OS 8: (2, 8, 16).
    """
    base = [previous_dilation] + [dilation] * (num_units - 1)
    if not multi_grid:
        return base
    return [d * multi_grid[i % len(multi_grid)] for i, d in enumerate(base)]


class ResNetV2Backbone(HybridBlock):
    """ResNet-v2 feature extractor with output stride 8, 16 or 32.

    ``features`` holds, as in the model zoo: [0] data BN, [1] 7x7/2 conv, [2] BN, [3] ReLU,
    [4] 3x3/2 max pool, [5..8] stages 1-4, [9] BN, [10] ReLU (the final pre-activation).
    Multi-grid applies to stage 4 when it is dilated (OS 8/16); at OS 32 the backbone is the
    model zoo network. Calling the block returns the final feature map; :meth:`stages` also
    returns stage 3, :meth:`stages_with_low_level` also the stage-1 output (stride 4).
    """

    def __init__(self, name: str = "resnet50_v2", output_stride: int = 16,
                 multi_grid: Optional[Sequence[int]] = DEFAULT_MULTI_GRID,
                 norm_layer=nn.BatchNorm, norm_kwargs: Optional[dict] = None, **kwargs):
        super().__init__(**kwargs)
        name = canonical_backbone_name(name)
        check_output_stride(output_stride)
        kind, layers, channels = RESNET_V2_SPECS[name]
        block = BasicBlockV2 if kind == "basic" else BottleneckV2
        strides, dilations = STAGE_STRIDES_AND_DILATIONS[output_stride]
        norm_kwargs = dict(norm_kwargs or {})
        self.backbone_name = name
        self.output_stride = output_stride
        self.multi_grid = tuple(multi_grid) if multi_grid else None
        self.stage1_channels = channels[1]
        self.stage3_channels = channels[3]
        self.out_channels = channels[4]
        self.stage_dilations: List[List[int]] = []
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            self.features.add(norm_layer(scale=False, center=False, in_channels=3,
                                         **norm_kwargs))
            self.features.add(nn.Conv2D(channels[0], 7, 2, 3, use_bias=False, in_channels=3))
            self.features.add(norm_layer(in_channels=channels[0], **norm_kwargs))
            self.features.add(nn.Activation("relu"))
            self.features.add(nn.MaxPool2D(3, 2, 1))
            in_channels, previous = channels[0], 1
            for i, num_units in enumerate(layers):
                grid = multi_grid if i == 3 and dilations[i] > 1 else None
                unit_dils = unit_dilations(num_units, dilations[i], previous, grid)
                self.stage_dilations.append(unit_dils)
                stage = nn.HybridSequential(prefix=f"stage{i + 1}_")
                with stage.name_scope():
                    for u, dil in enumerate(unit_dils):
                        stage.add(block(channels[i + 1], strides[i] if u == 0 else 1,
                                        u == 0 and channels[i + 1] != in_channels,
                                        in_channels if u == 0 else channels[i + 1],
                                        dilation=dil, norm_layer=norm_layer,
                                        norm_kwargs=norm_kwargs, prefix=""))
                self.features.add(stage)
                in_channels, previous = channels[i + 1], dilations[i]
            self.features.add(norm_layer(in_channels=in_channels, **norm_kwargs))
            self.features.add(nn.Activation("relu"))

    def stages(self, x):
        """Return (stage-3 output, final pre-activated stage-4 features)."""
        return self.stages_with_low_level(x)[1:]

    def stages_with_low_level(self, x):
        """Return (stage-1 output, stage-3 output, final pre-activated stage-4 features).

        The stage-1 output (``features[5]``, stride 4) is a raw pre-activation sum: stage 2
        applies its BN + ReLU first thing (see :mod:`.decoder` for how V3+ uses it).
        """
        for i in range(6):
            x = self.features[i](x)
        c1 = x
        for i in range(6, 8):
            x = self.features[i](x)
        c3 = x
        for i in range(8, 11):
            x = self.features[i](x)
        return c1, c3, x

    def hybrid_forward(self, F, x):
        return self.stages(x)[1]


def load_pretrained_backbone(backbone: ResNetV2Backbone, path: str) -> None:
    """Load a model zoo ImageNet file into an initialized ``backbone`` strictly, in place.

    Every backbone array must be present with the right shape and nothing but the model zoo
    classifier (``output.*``) may be left over; otherwise a ValueError names the arrays.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained backbone file {path!r} does not exist")
    try:
        loaded = mx.nd.load(path)
    except mx.base.MXNetError as err:
        raise ValueError(f"{path}: not an MXNet parameter file "
                         f"({error_line(err)})") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected named arrays (save_parameters), found a list")
    assign_parameters(backbone, loaded, f"pretrained file {path} ({backbone.backbone_name})",
                      ignore=CLASSIFIER_KEYS)


def build_backbone(name: str = "resnet50_v2", output_stride: int = 16,
                   pretrained: Optional[str] = None,
                   multi_grid: Optional[Sequence[int]] = DEFAULT_MULTI_GRID,
                   ctx=None, norm_layer=nn.BatchNorm,
                   norm_kwargs: Optional[dict] = None) -> ResNetV2Backbone:
    """Build an initialized backbone; ``pretrained`` is a model zoo ``.params`` file."""
    backbone = ResNetV2Backbone(name, output_stride, multi_grid, norm_layer, norm_kwargs)
    backbone.initialize(KAIMING_INIT, ctx=ctx or mx.cpu())
    if pretrained:
        load_pretrained_backbone(backbone, pretrained)
    return backbone
