"""Segmentation heads: ASPP (DeepLabV3), Vortex pooling (Xie et al. 2018) and an auxiliary FCN head.

Every convolution in front of a BatchNorm has no bias, and every conv-BN pair is followed by a
ReLU. All spatial sizes come from the input tensors, so the heads hybridize for any H x W.
"""

from __future__ import annotations

from typing import Optional, Sequence

import mxnet as mx
from mxnet.gluon import nn
from mxnet.gluon.nn import HybridBlock

HEAD_CHANNELS = 256
# ASPP atrous rates for each output stride (Chen et al. 2017, section 3.3).
ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36), 32: (3, 6, 9)}
# Vortex pooling module B: average pool k x k, then 3x3 conv at rate k.
VORTEX_KERNELS = (3, 9, 27)
PROJECT_DROPOUT = 0.5


def conv_bn_relu(in_channels: int, channels: int, kernel: int = 1, dilation: int = 1,
                 norm_layer=nn.BatchNorm, norm_kwargs: Optional[dict] = None,
                 prefix: Optional[str] = None, separable: bool = False) -> nn.HybridSequential:
    """conv (no bias) -> BN -> ReLU; 3x3 convs are padded to keep the spatial size.

    ``separable`` (kernels > 1 only) makes the conv depthwise-separable as in DeepLabV3+:
    depthwise k x k (atrous) conv -> BN -> ReLU -> 1x1 conv -> BN -> ReLU.
    """
    block = nn.HybridSequential(prefix=prefix)
    with block.name_scope():
        if separable and kernel > 1:
            block.add(nn.Conv2D(in_channels, kernel, padding=dilation * (kernel // 2),
                                dilation=dilation, groups=in_channels, use_bias=False,
                                in_channels=in_channels))
            block.add(norm_layer(in_channels=in_channels, **(norm_kwargs or {})))
            block.add(nn.Activation("relu"))
            kernel, dilation = 1, 1
        block.add(nn.Conv2D(channels, kernel, padding=dilation * (kernel // 2), dilation=dilation,
                            use_bias=False, in_channels=in_channels))
        block.add(norm_layer(in_channels=channels, **(norm_kwargs or {})))
        block.add(nn.Activation("relu"))
    return block


class ASPPPooling(HybridBlock):
    """Image-level features: global average pool -> 1x1 conv -> BN -> ReLU -> broadcast."""

    def __init__(self, in_channels: int, channels: int = HEAD_CHANNELS, norm_layer=nn.BatchNorm,
                 norm_kwargs: Optional[dict] = None, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv = conv_bn_relu(in_channels, channels, 1, norm_layer=norm_layer,
                                     norm_kwargs=norm_kwargs)

    def hybrid_forward(self, F, x):
        pooled = self.conv(F.mean(x, axis=(2, 3), keepdims=True))
        # Upsampling a 1x1 map bilinearly is a broadcast.
        return F.broadcast_like(pooled, x, lhs_axes=(2, 3), rhs_axes=(2, 3))


class _ParallelBranches(HybridBlock):
    """Runs branches side by side, concatenates them, projects to ``channels`` (+ dropout)."""

    def __init__(self, branches: Sequence[HybridBlock], channels: int, dropout: float,
                 norm_layer, norm_kwargs, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.branches = nn.HybridSequential(prefix="")
            for branch in branches:
                self.branches.add(branch)
            self.project = conv_bn_relu(channels * len(branches), channels, 1,
                                        norm_layer=norm_layer, norm_kwargs=norm_kwargs)
            self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def hybrid_forward(self, F, x):
        out = self.project(F.concat(*[branch(x) for branch in self.branches], dim=1))
        return self.dropout(out) if self.dropout is not None else out


class ASPP(_ParallelBranches):
    """Atrous spatial pyramid pooling: 1x1 conv, three 3x3 atrous convs, image pooling."""

    def __init__(self, in_channels: int, rates: Sequence[int] = ASPP_RATES[16],
                 channels: int = HEAD_CHANNELS, dropout: float = PROJECT_DROPOUT,
                 norm_layer=nn.BatchNorm, norm_kwargs: Optional[dict] = None,
                 separable: bool = False, **kwargs):
        branches = [conv_bn_relu(in_channels, channels, 1, norm_layer=norm_layer,
                                 norm_kwargs=norm_kwargs)]
        branches += [conv_bn_relu(in_channels, channels, 3, rate, norm_layer, norm_kwargs,
                                  separable=separable)
                     for rate in rates]
        branches.append(ASPPPooling(in_channels, channels, norm_layer, norm_kwargs))
        super().__init__(branches, channels, dropout, norm_layer, norm_kwargs, **kwargs)
        self.rates = tuple(rates)
        self.separable = separable


class VortexBranch(HybridBlock):
    """Average pool k x k (stride 1, padding excluded from the mean), then 3x3 conv at rate k."""

    def __init__(self, in_channels: int, kernel: int, channels: int = HEAD_CHANNELS,
                 norm_layer=nn.BatchNorm, norm_kwargs: Optional[dict] = None,
                 separable: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.kernel = kernel
        with self.name_scope():
            self.conv = conv_bn_relu(in_channels, channels, 3, kernel, norm_layer, norm_kwargs,
                                     separable=separable)

    def hybrid_forward(self, F, x):
        k = self.kernel
        pooled = F.Pooling(x, kernel=(k, k), stride=(1, 1), pad=(k // 2, k // 2),
                           pool_type="avg", count_include_pad=False)
        return self.conv(pooled)


class VortexPooling(_ParallelBranches):
    """Vortex pooling (module B): image pooling, 1x1 conv and pooled atrous branches k=3, 9, 27."""

    def __init__(self, in_channels: int, kernels: Sequence[int] = VORTEX_KERNELS,
                 channels: int = HEAD_CHANNELS, dropout: float = PROJECT_DROPOUT,
                 norm_layer=nn.BatchNorm, norm_kwargs: Optional[dict] = None,
                 separable: bool = False, **kwargs):
        branches = [ASPPPooling(in_channels, channels, norm_layer, norm_kwargs),
                    conv_bn_relu(in_channels, channels, 1, norm_layer=norm_layer,
                                 norm_kwargs=norm_kwargs)]
        branches += [VortexBranch(in_channels, k, channels, norm_layer, norm_kwargs, separable)
                     for k in kernels]
        super().__init__(branches, channels, dropout, norm_layer, norm_kwargs, **kwargs)
        self.kernels = tuple(kernels)
        self.separable = separable


class FCNHead(HybridBlock):
    """Auxiliary head on stage 3: 3x3 conv -> BN -> ReLU -> dropout -> 1x1 classifier."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.1,
                 norm_layer=nn.BatchNorm, norm_kwargs: Optional[dict] = None, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.block = conv_bn_relu(in_channels, in_channels // 4, 3, 1, norm_layer, norm_kwargs)
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Conv2D(num_classes, 1, in_channels=in_channels // 4,
                                        weight_initializer=mx.init.Normal(0.01))

    def hybrid_forward(self, F, x):
        return self.classifier(self.dropout(self.block(x)))
