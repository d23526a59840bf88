"""gluon-deeplab: DeepLabV3 semantic segmentation (ResNet-v2, ASPP / Vortex pooling) in Gluon."""

from . import amx

# Before MXNet's first oneDNN primitive: ask Linux for the AMX tile state (see amx.py).
amx.enable()

from .models import DeepLabV3, build_backbone, build_model  # noqa: E402

__version__ = "0.1.0"
__all__ = ["DeepLabV3", "build_backbone", "build_model", "__version__"]
