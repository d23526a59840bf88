"""gluon-deeplab: DeepLabV3 semantic segmentation (ResNet-v2, ASPP / Vortex pooling) in Gluon.

The package imports without MXNet, so that ``python -m gluon_deeplab.env`` can report a machine
where it is missing; the model API (``gd.build_model``, ``gd.load_segmenter``, ...) and every
module that needs MXNet then fail with one line naming the install commands.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from typing import Any, List

from . import amx
from .mxnet_builds import MXNET_MISSING

__version__ = "0.1.0"
# The API that needs MXNet, imported on first use: name -> module.
_LAZY = {"DeepLabV3": ".models", "build_backbone": ".models", "build_model": ".models",
         "Segmentation": ".evaluation.segmenter", "Segmenter": ".evaluation.segmenter",
         "load_segmenter": ".evaluation.segmenter"}
__all__ = sorted(_LAZY) + ["__version__"]


class _MXNetMissing(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Last on ``sys.meta_path``, where MXNet is missing: ``import mxnet`` then fails with the
    install commands instead of "No module named 'mxnet'"."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        return importlib.machinery.ModuleSpec(name, self) if name == "mxnet" else None

    def create_module(self, spec: Any) -> None:
        raise ModuleNotFoundError(MXNET_MISSING, name="mxnet")

    def exec_module(self, module: Any) -> None:  # never reached: create_module raises
        raise ModuleNotFoundError(MXNET_MISSING, name="mxnet")


if importlib.util.find_spec("mxnet") is None:
    sys.meta_path.append(_MXNetMissing())

# Before MXNet's first oneDNN primitive: ask Linux for the AMX tile state (see amx.py).
amx.enable()


def __getattr__(name: str) -> Any:
    if name in _LAZY:  # imported on first use, as it needs MXNet
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
