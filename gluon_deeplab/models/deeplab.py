"""The DeepLabV3 (+) block and the one function that builds a model from arguments."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import mxnet as mx
import numpy as np
from mxnet.gluon import nn
from mxnet.gluon.nn import HybridBlock

from .decoder import LOW_LEVEL_STRIDE, DeepLabV3PlusDecoder
from .heads import (
    ASPP,
    ASPP_RATES,
    CLASSIFIER_INIT,
    FCNHead,
    VortexPooling,
    vortex_kernels_for,
)
from .pretrained import resolve_pretrained
from .resnet_v2 import (
    DEFAULT_MULTI_GRID,
    KAIMING_INIT,
    build_backbone,
    canonical_backbone_name,
    check_output_stride,
)
from .upsample import exact_upsample, exact_upsample_fixed

# The seed project's --aspp_or_vortex values.
HEAD_ALIASES = {1: "aspp", 2: "vortex", "1": "aspp", "2": "vortex"}
# Vortex kernels of every output stride before they scaled with it (checkpoints without
# a recorded 'vortex_kernels' were trained with these).
LEGACY_VORTEX_KERNELS = (3, 9, 27)


def canonical_head_name(head: Union[str, int]) -> str:
    """'aspp' / 'vortex', also accepting the seed's 1 / 2."""
    name = HEAD_ALIASES.get(head, head)
    if name not in ("aspp", "vortex"):
        raise ValueError(f"unknown head {head!r}; expected 'aspp' (1) or 'vortex' (2)")
    return name


class DeepLabV3(HybridBlock):
    """Backbone -> head (ASPP or Vortex) [-> V3+ decoder] -> 1x1 classifier -> bilinear
    upsampling to the input.

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


def default_head_settings(head: Union[str, int], output_stride: int) -> Dict[str, Tuple[int, ...]]:
    """The head's settings at ``output_stride``: ASPP rates or Vortex kernels (= conv rates)."""
    if canonical_head_name(head) == "aspp":
        return {"aspp_rates": tuple(ASPP_RATES[output_stride])}
    return {"vortex_kernels": vortex_kernels_for(output_stride)}


def recorded_head_settings(config: Dict[str, Any],
                           output_stride: Optional[int] = None) -> Dict[str, Tuple[int, ...]]:
    """Head settings that rebuild a recorded model (``config``: a checkpoint's model record).

    At the recorded output stride: the recorded settings; a record without them predates
    them and gets what was built then (ASPP: the rates of its stride; Vortex: 3/9/27 at any
    stride). At another ``output_stride``, settings that follow the default rule move with the
    stride (ASPP 6/12/18 -> 12/24/36, Vortex 3/9/27 -> 7/19/55); other settings are kept.
    """
    head = canonical_head_name(config.get("head", "aspp"))
    trained = int(config.get("output_stride", 16))
    target = int(output_stride or trained)
    key = "aspp_rates" if head == "aspp" else "vortex_kernels"
    legacy = ASPP_RATES[trained] if head == "aspp" else LEGACY_VORTEX_KERNELS
    recorded = tuple(config.get(key) or legacy)
    if target != trained and recorded == default_head_settings(head, trained)[key]:
        return default_head_settings(head, target)
    return {key: recorded}


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
                aspp_rates: Optional[Sequence[int]] = None,
                vortex_kernels: Optional[Sequence[int]] = None,
                freeze_bn: bool = False, syncbn_devices: int = 0,
                fixed_size: Optional[Tuple[int, int]] = None, decoder: bool = False,
                separable: bool = False,
                ctx: Union[mx.Context, Sequence[mx.Context], None] = None) -> DeepLabV3:
    """Build an initialized DeepLabV3 (DeepLabV3+ with ``decoder=True``).

    ``head`` is 'aspp'/'vortex' (or the seed's 1/2); ``pretrained_backbone`` a model zoo
    ImageNet ``.params`` file, loaded strictly, or 'imagenet' (MXNet's model store, see
    :func:`resolve_pretrained`) or 'none'. ``aspp_rates`` / ``vortex_kernels`` default to
    the output stride's (:func:`default_head_settings`); only the chosen head's may be given.
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
    head = canonical_head_name(head)
    if (aspp_rates and head != "aspp") or (vortex_kernels and head != "vortex"):
        raise ValueError(f"aspp_rates are for the ASPP head and vortex_kernels for the Vortex "
                         f"head; the {head} head was asked for")
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
    settings = default_head_settings(head, output_stride)
    if head == "aspp":
        head_block = ASPP(features.out_channels, aspp_rates or settings["aspp_rates"],
                          separable=separable, **norms)
    else:
        head_block = VortexPooling(features.out_channels,
                                   vortex_kernels or settings["vortex_kernels"],
                                   separable=separable, **norms)
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
