"""Segmentation heads: ASPP (DeepLabV3), Vortex pooling (Xie et al. 2018) and an auxiliary FCN head;
ASPP and Vortex are registered here (models/registry.py).

Every convolution in front of a BatchNorm has no bias, and every conv-BN pair is followed by a
ReLU. All spatial sizes come from the input tensors, so the heads hybridize for any H x W.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import mxnet as mx
from mxnet.gluon import nn
from mxnet.gluon.nn import HybridBlock

from .registry import HeadSpec, register_head

HEAD_CHANNELS = 256
# ASPP atrous rates for each output stride (Chen et al. 2017, section 3.3).
ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36), 32: (3, 6, 9)}
# Vortex pooling module B: average pool k x k, then 3x3 conv at rate k. The paper's kernels
# are for output stride 16; other strides scale them (see vortex_kernels_for).
VORTEX_KERNELS = (3, 9, 27)
# Vortex kernels of every output stride before they scaled with it (checkpoints without
# a recorded 'vortex_kernels' were trained with these).
LEGACY_VORTEX_KERNELS = (3, 9, 27)
PROJECT_DROPOUT = 0.5
# The 1x1 classifiers (main and auxiliary head). Small logits at the start: Kaiming fan-out on a
# few output channels gives logits of +-70.
CLASSIFIER_INIT = mx.init.Normal(0.01)
# Vortex pools of at least this size average rows with a k x 1 pool and columns with a band
# matrix (see window_mean). Below it the padding (k // 2 <= 6) stays within what oneDNN's pooling
# kernel handles on every x86 ISA, forward and backward.
SEPARABLE_POOL_FROM = 15


def vortex_kernels_for(output_stride: int, base: Sequence[int] = VORTEX_KERNELS) -> tuple:
    """Vortex pooling kernels (= conv rates) for ``output_stride``; ``base`` is for OS 16.

    Rule: each kernel covers the image span of its OS 16 kernel (k x 16 pixels), rounded to the
    nearest odd number of feature cells, ties upward (odd keeps the window centred):
    OS 16: 3/9/27, OS 8: 7/19/55 (= 2k + 1), OS 32: 1/5/13. As ASPP doubles its rates at OS 8,
    phase 2 then sees the same image-space context as phase 1.
    """
    if output_stride == 16:
        return tuple(base)
    kernels = []
    for k in base:
        cells = k * 16 / output_stride
        low = int(cells) if int(cells) % 2 else int(cells) - 1  # the odd number <= cells
        kernels.append(low if cells - low < low + 2 - cells else low + 2)
    return tuple(max(1, k) for k in kernels)


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
        # A global average Pooling rather than F.mean: under AMP Pooling runs in bf16, while
        # mean is on AMP's fp32 list and would cast the whole feature map to fp32 first.
        pooled = self.conv(F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg"))
        # Upsampling a 1x1 map bilinearly is a broadcast.
        return F.broadcast_like(pooled, x, lhs_axes=(2, 3), rhs_axes=(2, 3))


class _ParallelBranches(HybridBlock):
    """Runs branches side by side, concatenates them, projects to ``channels`` (+ dropout).

    ``make_branches()`` is called inside the head's name scope, so every graph node of the head
    (branch convs included) starts with the head's prefix (what INT8 ``--exclude head`` relies
    on); structural parameter names (``branches.0.0.weight``, ...) do not depend on it.
    """

    def __init__(self, make_branches: Callable[[], List[HybridBlock]], channels: int,
                 dropout: float, norm_layer, norm_kwargs, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            branches = make_branches()
            self.branches = nn.HybridSequential(prefix="")
            for branch in branches:
                self.branches.add(branch)
            self.project = conv_bn_relu(channels * len(branches), channels, 1,
                                        norm_layer=norm_layer, norm_kwargs=norm_kwargs)
            self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def hybrid_forward(self, F, x):
        outs = [branch(x) for branch in self.branches]
        # Under AMP the image-pooling branch ends in fp32 (mean and broadcast are on AMP's
        # fp32 lists) while the conv branches are bf16/fp16, and Concat needs one dtype: cast
        # all to the narrowest. With fp32 branches this is the identity (no parameters), and
        # exports drop it (``remove_amp_cast``).
        outs = F.amp_multicast(*outs, num_outputs=len(outs), cast_narrow=True)
        out = self.project(F.concat(*outs, dim=1))
        return self.dropout(out) if self.dropout is not None else out


class ASPP(_ParallelBranches):
    """Atrous spatial pyramid pooling: 1x1 conv, three 3x3 atrous convs, image pooling."""

    def __init__(self, in_channels: int, rates: Sequence[int] = ASPP_RATES[16],
                 channels: int = HEAD_CHANNELS, dropout: float = PROJECT_DROPOUT,
                 norm_layer=nn.BatchNorm, norm_kwargs: Optional[dict] = None,
                 separable: bool = False, **kwargs):
        def make_branches() -> List[HybridBlock]:
            return ([conv_bn_relu(in_channels, channels, 1, norm_layer=norm_layer,
                                  norm_kwargs=norm_kwargs)]
                    + [conv_bn_relu(in_channels, channels, 3, rate, norm_layer, norm_kwargs,
                                    separable=separable)
                       for rate in rates]
                    + [ASPPPooling(in_channels, channels, norm_layer, norm_kwargs)])
        super().__init__(make_branches, channels, dropout, norm_layer, norm_kwargs, **kwargs)
        self.rates = tuple(rates)
        self.separable = separable


def window_mean(F, x, kernel: int):
    """Mean of the ``kernel`` x ``kernel`` window around each cell (stride 1, padded cells not
    counted): the values of ``Pooling(avg, count_include_pad=False)``, at any size.

    Large windows are separable (the count of unpadded cells factorises into rows x columns):
    a k x 1 pool averages the rows, then a matmul with the column band matrix (each row divided
    by its count) averages the columns. A 1 x k pool would give the same values, but oneDNN's
    pooling kernel handles only as many padded columns as it unrolls (12 on AVX2, 6 in the
    backward pass) and runs a scalar loop beyond: a 1 x 55 pool of a 2048 x 65 x 65 map took
    11.6 s instead of 0.1 s, and 34 s forward + backward. Padded rows have no such limit.
    """
    k = kernel
    if k < SEPARABLE_POOL_FROM:
        return F.Pooling(x, kernel=(k, k), stride=(1, 1), pad=(k // 2, k // 2),
                         pool_type="avg", count_include_pad=False)
    rows = F.Pooling(x, kernel=(k, 1), stride=(1, 1), pad=(k // 2, 0), pool_type="avg",
                     count_include_pad=False)
    column = F.contrib.arange_like(x, axis=3)
    distance = F.abs(F.broadcast_sub(column.reshape((-1, 1)), column.reshape((1, -1))))
    in_window = distance < (k // 2 + 1)
    band = F.BlockGrad(F.broadcast_div(in_window, F.sum(in_window, axis=1, keepdims=True)))
    return F.dot(rows, band, transpose_b=True)


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
        return self.conv(window_mean(F, x, self.kernel))


class VortexPooling(_ParallelBranches):
    """Vortex pooling (module B): image pooling, 1x1 conv and pooled atrous branches
    (k = 3, 9, 27 at OS 16; see :func:`vortex_kernels_for` for other output strides)."""

    def __init__(self, in_channels: int, kernels: Sequence[int] = VORTEX_KERNELS,
                 channels: int = HEAD_CHANNELS, dropout: float = PROJECT_DROPOUT,
                 norm_layer=nn.BatchNorm, norm_kwargs: Optional[dict] = None,
                 separable: bool = False, **kwargs):
        def make_branches() -> List[HybridBlock]:
            return ([ASPPPooling(in_channels, channels, norm_layer, norm_kwargs),
                     conv_bn_relu(in_channels, channels, 1, norm_layer=norm_layer,
                                  norm_kwargs=norm_kwargs)]
                    + [VortexBranch(in_channels, k, channels, norm_layer, norm_kwargs,
                                    separable)
                       for k in kernels])
        super().__init__(make_branches, channels, dropout, norm_layer, norm_kwargs, **kwargs)
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
                                        weight_initializer=CLASSIFIER_INIT)

    def hybrid_forward(self, F, x):
        return self.classifier(self.dropout(self.block(x)))


def image_pooling_layers(head: _ParallelBranches) -> List[str]:
    """Prefixes of a head's image-pooling branches (kept fp32 by ``--exclude image_pooling``)."""
    return [b.prefix for b in head.branches if isinstance(b, ASPPPooling)]


# Both records name the other head's setting as null, as every checkpoint since format 1 has.
register_head(HeadSpec(
    name="aspp", title="ASPP", aliases=(1, "1"), block_type=ASPP,
    defaults=lambda stride: {"aspp_rates": tuple(ASPP_RATES[stride])},
    legacy=lambda stride: {"aspp_rates": tuple(ASPP_RATES[stride])},
    build=lambda in_channels, settings, **kw: ASPP(in_channels, settings["aspp_rates"], **kw),
    record=lambda head: {"aspp_rates": list(head.rates), "vortex_kernels": None},
    fp32_layers=image_pooling_layers))
register_head(HeadSpec(
    name="vortex", title="Vortex", aliases=(2, "2"), block_type=VortexPooling,
    defaults=lambda stride: {"vortex_kernels": vortex_kernels_for(stride)},
    legacy=lambda stride: {"vortex_kernels": LEGACY_VORTEX_KERNELS},
    build=lambda in_channels, settings, **kw: VortexPooling(in_channels,
                                                            settings["vortex_kernels"], **kw),
    record=lambda head: {"aspp_rates": None, "vortex_kernels": list(head.kernels)},
    fp32_layers=image_pooling_layers))
