"""Model blocks: dilated ResNet-v2 backbones, the head registry with ASPP / Vortex, the V3+ decoder,
DeepLabV3, and the rebuild of a model from a checkpoint record."""

from .decoder import DeepLabV3PlusDecoder
from .deeplab import DeepLabV3, build_model, freeze_batchnorm_parameters
from .heads import ASPP, ASPPPooling, FCNHead, VortexBranch, VortexPooling, vortex_kernels_for
from .pretrained import (
    PretrainedUnavailable,
    default_pretrained,
    imagenet_file,
    model_store_root,
    resolve_pretrained,
)
from .rebuild import (
    MODEL_CONFIG_KEYS,
    load_model_weights,
    model_config_of,
    model_from_checkpoint,
)
from .registry import (
    HeadSpec,
    canonical_head_name,
    default_head_settings,
    describe_heads,
    head_names,
    head_of,
    head_spec,
    recorded_head_name,
    recorded_head_settings,
    register_head,
)
from .resnet_v2 import (
    MODEL_OUTPUT_STRIDES,
    OUTPUT_STRIDES,
    RESNET_V2_SPECS,
    ResNetV2Backbone,
    build_backbone,
    canonical_backbone_name,
    check_output_stride,
    load_pretrained_backbone,
)
from .upsample import (
    BUCKET_STEP,
    bucket_size,
    exact_upsample,
    exact_upsample_fixed,
    pad_to_stride,
    padded_size,
)

__all__ = [
    "ASPP", "ASPPPooling", "BUCKET_STEP", "DeepLabV3", "DeepLabV3PlusDecoder", "FCNHead",
    "RESNET_V2_SPECS", "ResNetV2Backbone",
    "VortexBranch", "VortexPooling", "bucket_size", "build_backbone", "build_model",
    "canonical_backbone_name",
    "canonical_head_name", "default_head_settings", "exact_upsample", "exact_upsample_fixed",
    "freeze_batchnorm_parameters", "load_pretrained_backbone", "pad_to_stride", "padded_size",
    "recorded_head_settings", "vortex_kernels_for",
    "PretrainedUnavailable", "default_pretrained", "imagenet_file", "model_store_root",
    "resolve_pretrained", "MODEL_OUTPUT_STRIDES", "OUTPUT_STRIDES", "check_output_stride",
    "HeadSpec", "describe_heads", "head_names", "head_of", "head_spec", "recorded_head_name",
    "register_head",
    "MODEL_CONFIG_KEYS", "load_model_weights", "model_config_of", "model_from_checkpoint",
]
