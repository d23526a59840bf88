"""How ``import mxnet`` goes once gluon_deeplab is imported: a missing MXNet, or a CUDA build's
missing library, is one line naming the command that installs it, not a traceback; a CUDA
build from pip gets its CUDA libraries from NVIDIA's pip wheels first (:mod:`cuda_libs`).

Two finders on ``sys.meta_path``, installed by the package's ``__init__`` (standard library
only, MXNet not imported): :class:`MXNetMissing` last, where MXNet is not installed, and
:class:`CudaPreload` first, where the installed MXNet is a pip CUDA build.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import sys
from typing import Any, Callable, List, Optional, Tuple

from . import cuda_libs
from .mxnet_builds import MXNET_MISSING, PIP_CUDA_BUILDS, build_of, is_mxnet_distribution

_NAME = "mxnet"
_DIST_INFO = re.compile(r"^(mxnet[\w.]*?)-([^-]+)\.dist-info$", re.IGNORECASE)


class MXNetNotInstalled(ModuleNotFoundError):
    """MXNet is not installed (the message names the install commands)."""


class MXNetLoadError(ImportError):
    """MXNet is installed but its library does not load (the message says what is missing)."""


ONE_LINE_ERRORS = (MXNetNotInstalled, MXNetLoadError)


def _one_line_hook(previous: Callable[..., Any]) -> Callable[..., Any]:
    def hook(kind: type, value: BaseException, traceback: Any) -> None:
        if isinstance(value, ONE_LINE_ERRORS):
            prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
            print(f"{prog}: error: {value}", file=sys.stderr)
        else:
            previous(kind, value, traceback)
    hook.one_line = True  # type: ignore[attr-defined]
    return hook


def _raise(error: ImportError) -> None:
    """Raise ``error``; left uncaught, it ends the program with its one line, not a traceback."""
    if not getattr(sys.excepthook, "one_line", False):
        sys.excepthook = _one_line_hook(sys.excepthook)
    error.__suppress_context__ = True
    raise error


class MXNetMissing(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Last on ``sys.meta_path``, where MXNet is missing: ``import mxnet`` then fails with the
    install commands instead of "No module named 'mxnet'"."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        return importlib.machinery.ModuleSpec(name, self) if name == _NAME else None

    def create_module(self, spec: Any) -> None:
        _raise(MXNetNotInstalled(MXNET_MISSING, name=_NAME))

    def exec_module(self, module: Any) -> None:  # never reached: create_module raises
        _raise(MXNetNotInstalled(MXNET_MISSING, name=_NAME))


class _OneLineLoader(importlib.abc.Loader):
    """MXNet's own loader, with an OSError of loading libmxnet.so turned into one line."""

    def __init__(self, loader: Any, distribution: str, build: str):
        self.loader, self.distribution, self.build = loader, distribution, build

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        try:
            self.loader.exec_module(module)
        except OSError as err:
            _raise(MXNetLoadError(cuda_libs.missing_line(err, self.distribution, self.build),
                                  name=_NAME))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


class CudaPreload(importlib.abc.MetaPathFinder):
    """First on ``sys.meta_path`` where the installed MXNet is a pip CUDA build: the first
    ``import mxnet`` loads the CUDA libraries (:func:`cuda_libs.preload`), then MXNet through
    the other finders, its library's OSError as one line; then it steps aside."""

    def __init__(self, distribution: str, build: str):
        self.distribution, self.build = distribution, build

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != _NAME:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        try:
            if self.build in PIP_CUDA_BUILDS:
                cuda_libs.preload()
        except OSError as err:
            _raise(MXNetLoadError(f"import mxnet ({self.distribution}): a CUDA library from "
                                  f"pip does not load: {str(err).splitlines()[0]}", name=_NAME))
        spec.loader = _OneLineLoader(spec.loader, self.distribution, self.build)
        return spec


def installed_next_to(spec: Any) -> List[Tuple[str, str]]:
    """(distribution, version) of the MXNet builds whose dist-info lies next to the ``mxnet``
    package that ``spec`` finds: one folder listing, not a scan of every distribution."""
    folders = list(getattr(spec, "submodule_search_locations", None) or [])
    if not folders:
        return []
    site = os.path.dirname(os.path.abspath(folders[0]))
    found = []
    for entry in os.listdir(site):
        match = _DIST_INFO.match(entry)
        if match and is_mxnet_distribution(match.group(1)):
            found.append((match.group(1).replace("_", "-").lower(), match.group(2)))
    return sorted(found)


def pip_cuda_build(spec: Any) -> Optional[CudaPreload]:
    """The finder for the MXNet that ``spec`` finds where it is one pip CUDA build; None
    otherwise (the CPU build, NVIDIA's container, several builds or none: nothing to do)."""
    installed = installed_next_to(spec)
    if len(installed) != 1:
        return None
    name, version = installed[0]
    build = build_of(name, version)
    return CudaPreload(name, build) if build and build != "cpu" else None


def install() -> None:
    """Put the finders where they apply (once; ``import mxnet`` already done: nothing)."""
    if _NAME in sys.modules or any(isinstance(f, (MXNetMissing, CudaPreload))
                                   for f in sys.meta_path):
        return
    spec = importlib.util.find_spec(_NAME)
    if spec is None:
        sys.meta_path.append(MXNetMissing())
        return
    finder = pip_cuda_build(spec)
    if finder is not None:
        sys.meta_path.insert(0, finder)
