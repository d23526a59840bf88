"""The DeepLabV3 (+) block and the one function that builds a model from arguments."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import mxnet as mx
import numpy as np
from mxnet.gluon import nn
from mxnet.gluon.nn import HybridBlock

from .decoder import LOW_LEVEL_STRIDE, DeepLabV3PlusDecoder
from .heads import CLASSIFIER_INIT, FCNHead
from .pretrained import resolve_pretrained
from .registry import chosen_head_settings, head_of, head_spec
from .resnet_v2 import (
    DEFAULT_MULTI_GRID,
    KAIMING_INIT,
    build_backbone,
    canonical_backbone_name,
    check_output_stride,
)
from .upsample import exact_upsample, exact_upsample_fixed


class DeepLabV3(HybridBlock):
    """Backbone -> head (ASPP, Vortex or another registered one) [-> V3+ decoder] -> 1x1
    classifier -> bilinear upsampling to the input.

    Returns the logits, or (logits, auxiliary logits) when built with an auxiliary head. The
    upsampling is pixel-exact at any H x W (:func:`~.upsample.exact_upsample`): feature j
    lands on pixel ``output_stride * j`` (with a ``decoder``, a
    :class:`~.decoder.DeepLabV3PlusDecoder`, the classifier sees stride-4 features, so on
    pixel ``4 * j``). ``fixed_size=(H, W)`` resizes to a constant size instead of the input's:
    only for converters (ONNX) that cannot resize "like" a tensor.
    """

    def __init__(self, backbone: HybridBlock, head: HybridBlock, num_classes: int,
                 aux_head: Optional[HybridBlock] = None,
                 fixed_size: Optional[Tuple[int, int]] = None,
                 decoder: Optional[HybridBlock] = None, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.fixed_size = tuple(fixed_size) if fixed_size else None
        with self.name_scope():
            self.backbone = backbone
            self.head = head
            self.decoder = decoder
            self.classifier = nn.Conv2D(num_classes, 1, in_channels=256,
                                        weight_initializer=CLASSIFIER_INIT)
            self.aux_head = aux_head

    @property
    def output_stride(self) -> int:
        """Input size / size of the features the head sees (8, 16 or 32)."""
        return self.backbone.output_stride

    def _upsample(self, F, logits, x, stride: int):
        if self.fixed_size:
            return exact_upsample_fixed(F, logits, self.fixed_size, stride)
        return exact_upsample(F, logits, x, stride)

    def explain_mismatch(self, missing: List[str], unexpected: List[str]) -> Optional[str]:
        """Why a parameter file does not fit, when the decoder is the reason (for
        :func:`~gluon_deeplab.params.assign_parameters`)."""
        if self.decoder is not None and any(n.startswith("decoder.") for n in missing):
            return "it has no decoder.* arrays: it was trained without --decoder (DeepLabV3)"
        if self.decoder is None and any(n.startswith("decoder.") for n in unexpected):
            return "it has decoder.* arrays: it was trained with --decoder (DeepLabV3+)"
        return None

    def model_config(self) -> Dict[str, Any]:
        """The build_model arguments that rebuild this model: what a checkpoint records
        (the head's settings as its registered spec records them)."""
        backbone, head = self.backbone, head_of(self.head)
        return {
            "num_classes": self.num_classes,
            "backbone": backbone.backbone_name,
            "head": head.name,
            "output_stride": backbone.output_stride,
            "aux": self.aux_head is not None,
            "multi_grid": list(backbone.multi_grid) if backbone.multi_grid else None,
            **head.record(self.head),
            "decoder": self.decoder is not None,
            "separable": bool(getattr(self.head, "separable", False)),
        }

    def hybrid_forward(self, F, x):
        if self.decoder is None:
            c3, c4 = self.backbone.stages(x)
            logits = self._upsample(F, self.classifier(self.head(c4)), x, self.output_stride)
        else:
            c1, c3, c4 = self.backbone.stages_with_low_level(x)
            features = self.decoder(self.head(c4), c1)
            logits = self._upsample(F, self.classifier(features), x, LOW_LEVEL_STRIDE)
        if self.aux_head is None:
            return logits
        # Stage 3 is never dilated beyond stride 16 (at OS 32 it has stride 16).
        aux_stride = min(self.output_stride, 16)
        return logits, self._upsample(F, self.aux_head(c3), x, aux_stride)


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
                fixed_size: Optional[Tuple[int, int]] = None, decoder: bool = False,
                separable: bool = False,
                ctx: Union[mx.Context, Sequence[mx.Context], None] = None,
                **head_settings: Optional[Sequence[int]]) -> DeepLabV3:
    """Build an initialized DeepLabV3 (DeepLabV3+ with ``decoder=True``).

    ``head`` is a registered head's name or alias ('aspp'/'vortex', the seed's 1/2; see
    models/registry.py); ``pretrained_backbone`` a model zoo
    ImageNet ``.params`` file, loaded strictly, or 'imagenet' (MXNet's model store, see
    :func:`resolve_pretrained`) or 'none'. ``head_settings`` (``aspp_rates``,
    ``vortex_kernels``, ...) default to the output stride's (``default_head_settings``); only
    the chosen head's may be given.
    ``freeze_bn`` makes every BatchNorm use its
    running statistics and receive no gradient (phase 2 of the schedule); ``syncbn_devices > 1``
    uses SyncBatchNorm across that many devices. ``decoder`` adds the DeepLabV3+ decoder
    (:class:`~.decoder.DeepLabV3PlusDecoder`) on the stage-1 features; ``separable`` makes the
    3x3 convs of the head and the decoder depthwise-separable. Parameters do not depend on the
    output stride.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    num_classes = int(num_classes)
    output_stride = check_output_stride(output_stride)
    backbone = canonical_backbone_name(backbone)
    spec = head_spec(head)
    settings = chosen_head_settings(spec, output_stride, head_settings)
    ctx = ctx or mx.cpu()
    norm_layer, norm_kwargs = nn.BatchNorm, {}
    if syncbn_devices > 1 and not freeze_bn:
        norm_layer = mx.gluon.contrib.nn.SyncBatchNorm
        norm_kwargs = {"num_devices": syncbn_devices}
    if freeze_bn:
        norm_kwargs = {"use_global_stats": True}
    pretrained_backbone = resolve_pretrained(pretrained_backbone, backbone)
    features = build_backbone(backbone, output_stride, pretrained_backbone, multi_grid, ctx,
                              norm_layer, norm_kwargs)
    norms = {"norm_layer": norm_layer, "norm_kwargs": norm_kwargs}
    head_block = spec.build(features.out_channels, settings, separable=separable, **norms)
    aux_head = FCNHead(features.stage3_channels, num_classes, **norms) if aux else None
    decoder_block = (DeepLabV3PlusDecoder(features.stage1_channels, output_stride,
                                          fixed_size=fixed_size, separable=separable,
                                          **norms)
                     if decoder else None)
    net = DeepLabV3(features, head_block, num_classes, aux_head, fixed_size, decoder_block)
    # The backbone is initialized (maybe pretrained) already; initialize only the rest.
    for name, param in net._collect_params_with_prefix().items():
        if not name.startswith("backbone."):
            param.initialize(default_init=KAIMING_INIT, ctx=ctx)
    if freeze_bn:
        freeze_batchnorm_parameters(net)
    return net
