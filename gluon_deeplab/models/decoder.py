"""The DeepLabV3+ decoder (Chen et al. 2018, "Encoder-Decoder with Atrous Separable Convolution").

Low-level features: the output of the last unit of stage 1 (``features[5]``, stride 4), taken
before stage 2. ResNet-v2 units are pre-activation, so that output is a raw residual sum (no
BN, no ReLU); stage 2 normalizes and rectifies it first thing. The paper's ResNet-v1 hands the
decoder its post-ReLU block output, so the decoder gives the stage-1 output its own BN-ReLU
(``preact``: the same operation as stage 2's pre-activation, i.e. the post-activation view
the paper uses) before the 1x1 reduction. Its own rather than stage 2's ``bn1``: sharing that
BN would update its running statistics twice per training step and tie the decoder's
normalization to the backbone's; one BN over the stride-4 map costs next to nothing.
"""

from __future__ import annotations

from typing import Optional, Tuple

from mxnet.gluon import nn
from mxnet.gluon.nn import HybridBlock

from .heads import HEAD_CHANNELS, conv_bn_relu
from .upsample import exact_upsample, exact_upsample_fixed

# The paper's numbers: 48 low-level channels (section 4.1, table 1), two 3x3 convs of 256.
LOW_LEVEL_CHANNELS = 48
DECODER_CHANNELS = 256
DECODER_CONVS = 2
# Stride of the stage-1 output of every ResNet (7x7/2 conv, 3x3/2 max pool).
LOW_LEVEL_STRIDE = 4


class DeepLabV3PlusDecoder(HybridBlock):
    """Upsample the head's features to stride 4, concatenate the reduced stage-1 features,
    refine with two 3x3 conv-BN-ReLU layers; returns ``channels`` features at stride 4.

    ``head_stride`` is the head's output stride; the upsampling to the low-level grid is
    pixel-exact (:func:`~.upsample.exact_upsample`, factor ``head_stride / 4``).
    ``fixed_size=(H, W)`` (the network's input size) resizes to the constant stride-4 grid
    ceil(H / 4) x ceil(W / 4) instead, for converters (ONNX) that cannot resize "like".
    ``separable`` makes the 3x3 convs depthwise-separable (see :func:`~.heads.conv_bn_relu`).
    """

    def __init__(self, low_level_in_channels: int, head_stride: int,
                 in_channels: int = HEAD_CHANNELS, low_level_channels: int = LOW_LEVEL_CHANNELS,
                 channels: int = DECODER_CHANNELS, num_convs: int = DECODER_CONVS,
                 fixed_size: Optional[Tuple[int, int]] = None, norm_layer=nn.BatchNorm,
                 norm_kwargs: Optional[dict] = None, separable: bool = False, **kwargs):
        super().__init__(**kwargs)
        if head_stride % LOW_LEVEL_STRIDE:
            raise ValueError(f"the head's stride must be a multiple of {LOW_LEVEL_STRIDE}, "
                             f"got {head_stride}")
        self.factor = head_stride // LOW_LEVEL_STRIDE
        self.low_level_size = (tuple(-(-n // LOW_LEVEL_STRIDE) for n in fixed_size)
                               if fixed_size else None)
        self.channels = channels
        with self.name_scope():
            self.preact = norm_layer(in_channels=low_level_in_channels, **(norm_kwargs or {}))
            self.reduce = conv_bn_relu(low_level_in_channels, low_level_channels, 1,
                                       norm_layer=norm_layer, norm_kwargs=norm_kwargs)
            self.fuse = nn.HybridSequential(prefix="")
            for i in range(num_convs):
                self.fuse.add(conv_bn_relu(in_channels + low_level_channels if i == 0
                                           else channels, channels, 3, norm_layer=norm_layer,
                                           norm_kwargs=norm_kwargs, separable=separable))

    def hybrid_forward(self, F, x, low_level):
        low = self.reduce(F.Activation(self.preact(low_level), act_type="relu"))
        if self.low_level_size:
            up = exact_upsample_fixed(F, x, self.low_level_size, self.factor)
        else:
            up = exact_upsample(F, x, low, self.factor)
        # In bf16/fp16 (AMP, --dtype bf16) the resize is fp32 (AMP's fp32 lists) while the
        # reduced features come from a low-precision conv; Concat needs one dtype, so cast both
        # to the narrowest as the heads do (the identity in fp32; exports drop it).
        up, low = F.amp_multicast(up, low, num_outputs=2, cast_narrow=True)
        return self.fuse(F.concat(up, low, dim=1))
