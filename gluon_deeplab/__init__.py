"""gluon-deeplab: DeepLabV3 semantic segmentation (ResNet-v2, ASPP / Vortex pooling) in Gluon."""

from .models import DeepLabV3, build_backbone, build_model

__version__ = "0.1.0"
__all__ = ["DeepLabV3", "build_backbone", "build_model", "__version__"]
