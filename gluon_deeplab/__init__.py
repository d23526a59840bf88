"""gluon-deeplab: DeepLabV3 semantic segmentation (ResNet-v2, ASPP / Vortex pooling) in Gluon.

The package imports without MXNet, so that ``python -m gluon_deeplab.env`` can report a machine
where it is missing; the model API (``gd.build_model``, ``gd.load_segmenter``, ...) and every
module that needs MXNet then fail with one line naming the install commands.
"""

from __future__ import annotations

import importlib
from typing import Any, List

from . import amx, mxnet_import

__version__ = "0.1.0"
# The API that needs MXNet, imported on first use: name -> module.
_LAZY = {"DeepLabV3": ".models", "build_backbone": ".models", "build_model": ".models",
         "Segmentation": ".evaluation.segmenter", "Segmenter": ".evaluation.segmenter",
         "load_segmenter": ".evaluation.segmenter"}
__all__ = sorted(_LAZY) + ["__version__"]

# Before the first ``import mxnet``: a missing MXNet or CUDA library is one line, and a pip CUDA
# build gets its CUDA libraries from NVIDIA's wheels (see mxnet_import.py).
mxnet_import.install()

# Before MXNet's first oneDNN primitive: ask Linux for the AMX tile state (see amx.py).
amx.enable()


def __getattr__(name: str) -> Any:
    if name in _LAZY:  # imported on first use, as it needs MXNet
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
