"""The DeepLabV3 block and the one function that builds a model from arguments."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import mxnet as mx
import numpy as np
from mxnet.gluon import nn
from mxnet.gluon.nn import HybridBlock

from .heads import ASPP, ASPP_RATES, FCNHead, VortexPooling
from .resnet_v2 import DEFAULT_MULTI_GRID, KAIMING_INIT, build_backbone, canonical_backbone_name

# Small logits at the start: Kaiming fan-out on a few output channels gives logits of +-70.
CLASSIFIER_INIT = mx.init.Normal(0.01)
# The seed project's --aspp_or_vortex values.
HEAD_ALIASES = {1: "aspp", 2: "vortex", "1": "aspp", "2": "vortex"}


def canonical_head_name(head: Union[str, int]) -> str:
    """'aspp' / 'vortex', also accepting the seed's 1 / 2."""
    name = HEAD_ALIASES.get(head, head)
    if name not in ("aspp", "vortex"):
        raise ValueError(f"unknown head {head!r}; expected 'aspp' (1) or 'vortex' (2)")
    return name


class DeepLabV3(HybridBlock):
    """Backbone -> head (ASPP or Vortex) -> 1x1 classifier -> bilinear upsampling to the input.

    Returns the logits, or (logits, auxiliary logits) when built with an auxiliary head.
    ``fixed_size=(H, W)`` resizes to a constant size instead of the input's: only for
    converters (ONNX) that cannot resize "like" another tensor.
    """

    def __init__(self, backbone: HybridBlock, head: HybridBlock, num_classes: int,
                 aux_head: Optional[HybridBlock] = None,
                 fixed_size: Optional[Tuple[int, int]] = None, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.fixed_size = tuple(fixed_size) if fixed_size else None
        with self.name_scope():
            self.backbone = backbone
            self.head = head
            self.classifier = nn.Conv2D(num_classes, 1, in_channels=256,
                                        weight_initializer=CLASSIFIER_INIT)
            self.aux_head = aux_head

    def _upsample(self, F, logits, x):
        if self.fixed_size:
            return F.contrib.BilinearResize2D(logits, height=self.fixed_size[0],
                                              width=self.fixed_size[1])
        return F.contrib.BilinearResize2D(logits, like=x, mode="like")

    def hybrid_forward(self, F, x):
        c3, c4 = self.backbone.stages(x)
        logits = self._upsample(F, self.classifier(self.head(c4)), x)
        if self.aux_head is None:
            return logits
        return logits, self._upsample(F, self.aux_head(c3), x)


def freeze_batchnorm_parameters(net: HybridBlock) -> None:
    """Stop gradients to every BatchNorm's gamma and beta (the running stats never get one)."""
    def visit(block):
        if isinstance(block, nn.BatchNorm):
            for param in block.params.values():
                param.grad_req = "null"
    net.apply(visit)


def build_model(num_classes: int = 21, backbone: str = "resnet50_v2",
                head: Union[str, int] = "aspp", output_stride: int = 16,
                pretrained_backbone: Optional[str] = None, aux: bool = False, *,
                multi_grid: Optional[Sequence[int]] = DEFAULT_MULTI_GRID,
                freeze_bn: bool = False, syncbn_devices: int = 0,
                fixed_size: Optional[Tuple[int, int]] = None,
                ctx: Union[mx.Context, Sequence[mx.Context], None] = None) -> DeepLabV3:
    """Build an initialized DeepLabV3.

    ``head`` is 'aspp'/'vortex' (or the seed's 1/2); ``pretrained_backbone`` a model zoo
    ImageNet ``.params`` file, loaded strictly. ``freeze_bn`` makes every BatchNorm use its
    running statistics and receive no gradient (phase 2 of the schedule); ``syncbn_devices > 1``
    uses SyncBatchNorm across that many devices. Parameters do not depend on the output stride.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    num_classes = int(num_classes)
    if not isinstance(output_stride, (int, np.integer)) or output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    backbone = canonical_backbone_name(backbone)
    head = canonical_head_name(head)
    ctx = ctx or mx.cpu()
    norm_layer, norm_kwargs = nn.BatchNorm, {}
    if syncbn_devices > 1 and not freeze_bn:
        norm_layer = mx.gluon.contrib.nn.SyncBatchNorm
        norm_kwargs = {"num_devices": syncbn_devices}
    if freeze_bn:
        norm_kwargs = {"use_global_stats": True}
    features = build_backbone(backbone, output_stride, pretrained_backbone, multi_grid, ctx,
                              norm_layer, norm_kwargs)
    norms = {"norm_layer": norm_layer, "norm_kwargs": norm_kwargs}
    if head == "aspp":
        head_block = ASPP(features.out_channels, ASPP_RATES[output_stride], **norms)
    else:
        head_block = VortexPooling(features.out_channels, **norms)
    aux_head = FCNHead(features.stage3_channels, num_classes, **norms) if aux else None
    net = DeepLabV3(features, head_block, num_classes, aux_head, fixed_size)
    # The backbone is initialized (maybe pretrained) already; initialize only the rest.
    for name, param in net._collect_params_with_prefix().items():
        if not name.startswith("backbone."):
            param.initialize(default_init=KAIMING_INIT, ctx=ctx)
    if freeze_bn:
        freeze_batchnorm_parameters(net)
    return net
