"""The CUDA libraries of MXNet's pip CUDA builds, from NVIDIA's pip wheels, and the GPUs' compute
capability as the CUDA driver reports it.

``libmxnet.so`` of ``mxnet-cu117`` needs libcudart, cuBLAS, cuFFT, cuRAND, cuSPARSE, cuSOLVER,
NVRTC, NVTX, cuDNN and NCCL, ships none of them and finds its dependencies only next to itself
(RPATH ``$ORIGIN``). The ``.[cu117]`` extra installs them as ``nvidia-*-cu11`` wheels into
``site-packages/nvidia/<name>/lib``, where the loader does not look; :func:`preload` loads each
one there (``RTLD_GLOBAL``, in dependency order) before ``import mxnet``, unless the loader
already finds the system's copy. Standard library only: it runs before MXNet is imported.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .mxnet_builds import CUDA11_LIBRARIES, CUDA11_WHEELS, MXNET_VERSION, PIP_CUDA_BUILDS

DRIVER = "libcuda.so.1"
_SONAME = re.compile(r"(lib[\w+.-]+?\.so(?:\.\d+)*)")
# soname -> where it was loaded from (a path under site-packages, or "system"), this process.
LOADED: Dict[str, str] = {}


def _site_dirs() -> List[str]:
    return [p for p in sys.path if p and os.path.isdir(os.path.join(p, "nvidia"))]


def wheel_path(soname: str, folder: str, site_dirs: Optional[Iterable[str]] = None) -> str:
    """``site-packages/nvidia/<folder>/lib/<soname>`` in the first of ``site_dirs`` (default:
    ``sys.path``) that holds it; '' where none does."""
    for site in _site_dirs() if site_dirs is None else site_dirs:
        path = os.path.join(site, "nvidia", folder, "lib", soname)
        if os.path.isfile(path):
            return path
    return ""


def _load(name: str) -> bool:
    try:
        ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return False
    return True


def preload(libraries: Sequence[Tuple[str, str]] = CUDA11_LIBRARIES,
            site_dirs: Optional[Iterable[str]] = None) -> Dict[str, str]:
    """Loads each (soname, folder under nvidia/) of ``libraries`` in order, ``RTLD_GLOBAL``: the
    system's copy where the loader finds one (LD_LIBRARY_PATH, ldconfig: a system CUDA 11 keeps
    working), else the wheel's. Returns soname -> "system" or the path, for those loaded; the
    ones found nowhere are left for ``import mxnet`` to report (:func:`missing_line`). An
    OSError here is a wheel's library that does not load (its message names it)."""
    sites = None if site_dirs is None else list(site_dirs)
    for soname, folder in libraries:
        if soname in LOADED:
            continue
        if _load(soname):
            LOADED[soname] = "system"
            continue
        path = wheel_path(soname, folder, sites)
        if path:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            LOADED[soname] = path
    return dict(LOADED)


def missing_line(err: OSError, distribution: str, build: str) -> str:
    """One line for an OSError of loading ``libmxnet.so``: the missing library and the command
    that installs it (every missing one of the build's, where several are)."""
    text = error_text(err)
    head = f"import mxnet ({distribution} {MXNET_VERSION}) fails"
    # The loader's message: "libcudnn.so.8: cannot open shared object file: ...".
    found = _SONAME.match(text)
    if found is None or "cannot open shared object" not in text:
        return f"{head}: {text}"
    name = found.group(1)
    if name == DRIVER:
        return (f"{head}: {DRIVER} (the NVIDIA driver) is missing: install the driver (or run "
                "the container with --gpus all), or the CPU build (README, Install)")
    if build not in PIP_CUDA_BUILDS:
        return (f"{head}: {name} not found: {distribution} needs the system's CUDA, cuDNN "
                "and NCCL of its version (no pip wheels fit it: README, Install)")
    missing = [lib for lib in CUDA11_LIBRARIES if lib[0] not in LOADED]
    if name not in [soname for soname, _ in missing]:
        return f"{head}: {text}"
    wheels = sorted({CUDA11_WHEELS[folder] for _, folder in missing})
    return (f"{head}: {', '.join(soname for soname, _ in missing)} not found: pip install "
            f"{' '.join(wheels)} (pip install -e '.[{build}]' installs them all)")


def error_text(err: OSError) -> str:
    """The first line of ``err``'s message (its type without one)."""
    return str(err).splitlines()[0] if str(err) else type(err).__name__


class _Driver:
    """The few CUDA driver calls that read each visible GPU's compute capability."""

    MAJOR, MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR

    def __init__(self, library: str = DRIVER):
        self.cuda = ctypes.CDLL(library)
        self._check(self.cuda.cuInit(0))

    @staticmethod
    def _check(status: int) -> None:
        if status != 0:
            raise OSError(f"CUDA driver error {status}")

    def count(self) -> int:
        n = ctypes.c_int()
        self._check(self.cuda.cuDeviceGetCount(ctypes.byref(n)))
        return n.value

    def capability(self, ordinal: int) -> Tuple[str, Tuple[int, int]]:
        device, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        name = ctypes.create_string_buffer(256)
        self._check(self.cuda.cuDeviceGet(ctypes.byref(device), ordinal))
        self._check(self.cuda.cuDeviceGetName(name, len(name), device))
        self._check(self.cuda.cuDeviceGetAttribute(ctypes.byref(major), self.MAJOR, device))
        self._check(self.cuda.cuDeviceGetAttribute(ctypes.byref(minor), self.MINOR, device))
        return name.value.decode(errors="replace"), (major.value, minor.value)


def device_capabilities(library: str = DRIVER) -> List[Tuple[str, Tuple[int, int]]]:
    """(name, compute capability) of each GPU this process sees, in MXNet's order (the driver's,
    after CUDA_VISIBLE_DEVICES); [] without a driver or a GPU."""
    try:
        driver = _Driver(library)
        return [driver.capability(i) for i in range(driver.count())]
    except (OSError, AttributeError):
        return []
