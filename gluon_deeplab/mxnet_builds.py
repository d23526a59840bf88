"""The MXNet builds gluon-deeplab installs with: which one is installed, which one fits this
machine, and the one-line messages about them.

MXNet's CPU build (``mxnet``) and its CUDA builds (``mxnet-cu117`` ...) are separate
distributions that write the same ``mxnet/`` folder, so exactly one may be installed. This module
uses the standard library only: ``sh/setup_env.sh`` runs it as a script with the venv's Python
before the package is installed (``python -I gluon_deeplab/mxnet_builds.py --mxnet auto
--extras test``), and the package imports it without MXNet.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

MXNET_VERSION = "1.9.1"
# build -> (distribution, the driver's minimum CUDA version), newest CUDA build first.
BUILDS: Dict[str, Tuple[str, Optional[Tuple[int, int]]]] = {
    "cpu": ("mxnet", None),
    "cu117": ("mxnet-cu117", (11, 7)), "cu116": ("mxnet-cu116", (11, 6)),
    "cu115": ("mxnet-cu115", (11, 5)), "cu114": ("mxnet-cu114", (11, 4)),
    "cu113": ("mxnet-cu113", (11, 3)), "cu112": ("mxnet-cu112", (11, 2)),
    "cu111": ("mxnet-cu111", (11, 1)), "cu110": ("mxnet-cu110", (11, 0)),
    "cu102": ("mxnet-cu102", (10, 2)),
}
DEFAULT_CUDA_BUILD = "cu117"
# Every distribution that installs the mxnet/ folder, including builds this project does not list.
_MXNET_DIST = re.compile(r"^mxnet(-cu\d+(mkl)?|-mkl|-native)?$")
MXNET_MISSING = (
    f"gluon-deeplab needs MXNet {MXNET_VERSION}, which is not installed: pip install -e .[cpu] "
    "for the CPU, or pip install -e .[cu117] for GPUs (the cuXXX that fits the driver: see the "
    "README, Install), or sh sh/setup_env.sh, which picks one")

# MXNet 1.9.1 uses np.bool, gone from numpy 1.24: the pin goes with PyPI's MXNet builds (in
# their extras), so that NVIDIA's container keeps its own MXNet and numpy.
NUMPY_FOR_PYPI_MXNET = "numpy>=1.21,<1.24"
# NVIDIA's pip wheels of the CUDA 11 libraries that libmxnet.so of the CUDA 11 builds needs
# (folder under site-packages/nvidia -> wheel): the set PyTorch 2.0's cu117 wheels pin.
CUDA11_WHEELS: Dict[str, str] = {
    "cuda_runtime": "nvidia-cuda-runtime-cu11==11.7.99",
    "cublas": "nvidia-cublas-cu11==11.10.3.66",
    "cufft": "nvidia-cufft-cu11==10.9.0.58",
    "curand": "nvidia-curand-cu11==10.2.10.91",
    "cusparse": "nvidia-cusparse-cu11==11.7.4.91",
    "cusolver": "nvidia-cusolver-cu11==11.4.0.1",
    "cuda_nvrtc": "nvidia-cuda-nvrtc-cu11==11.7.99",
    "nvtx": "nvidia-nvtx-cu11==11.7.91",
    "cudnn": "nvidia-cudnn-cu11==8.5.0.96",
    "nccl": "nvidia-nccl-cu11==2.14.3",
}
# (soname, folder) of libmxnet.so's NEEDED libraries in those wheels, in dependency order
# (libcublasLt: libcublas's and cuSOLVER's own).
CUDA11_LIBRARIES: Tuple[Tuple[str, str], ...] = (
    ("libcudart.so.11.0", "cuda_runtime"), ("libcublasLt.so.11", "cublas"),
    ("libcublas.so.11", "cublas"), ("libcufft.so.10", "cufft"), ("libcurand.so.10", "curand"),
    ("libcusparse.so.11", "cusparse"), ("libcusolver.so.11", "cusolver"),
    ("libnvrtc.so.11.2", "cuda_nvrtc"), ("libnvToolsExt.so.1", "nvtx"),
    ("libcudnn.so.8", "cudnn"), ("libnccl.so.2", "nccl"),
)
# The builds those wheels fit. cu112..cu116 need the same sonames, but MXNet compiles its fused
# kernels to PTX with NVRTC (nvrtcGetPTX), and PTX from NVRTC 11.7 needs a driver for CUDA 11.7:
# where the driver has that, cu117 is the build. cu110/cu111 need libnvrtc.so.11.0/.11.1 (and
# cu110 libcusolver.so.10), cu102 CUDA 10.2's libraries: no wheels.
PIP_CUDA_BUILDS = ("cu117",)
# Set in NVIDIA's MXNet containers (NGC), whose MXNet is NVIDIA's own build.
CONTAINER_ENV = "NVIDIA_MXNET_VERSION"

GPU_QUERY = ("--query-gpu=index,name,compute_cap,memory.total",
             "--format=csv,noheader,nounits")
CONTAINER_ROUTE = "see the README, Install (NVIDIA's MXNet container)"


@dataclass(frozen=True)
class KernelArchs:
    """The GPU architectures a build holds kernels (cubins) for, and whether it holds PTX, which
    the driver could compile for newer GPUs."""

    archs: Tuple[Tuple[int, int], ...]
    ptx: bool


_SM_50_86 = ((5, 0), (6, 0), (7, 0), (8, 0), (8, 6))
# Read from each 1.9.1 wheel's libmxnet.so (cuobjdump --list-elf / --list-ptx, and the fatbin
# headers for cu102, whose sm_30 today's cuobjdump refuses): 197 or 198 kernel containers, each
# for every listed architecture; no PTX in any. MXNet's own build configs list the same.
BUILD_ARCHS: Dict[str, KernelArchs] = {
    **{b: KernelArchs(_SM_50_86, False)
       for b in ("cu117", "cu116", "cu115", "cu114", "cu113", "cu112", "cu111")},
    "cu110": KernelArchs(((5, 0), (6, 0), (7, 0), (8, 0)), False),
    "cu102": KernelArchs(((3, 0), (5, 0), (6, 0), (7, 0), (7, 5)), False),
}


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as ``nvidia-smi`` reports it."""

    index: int
    name: str
    compute_capability: Tuple[int, int]
    memory_mib: Optional[int]


class BuildConflict(ValueError):
    """The asked MXNet build cannot be installed here (the message says why and what to do)."""


def pip_requirement(build: str) -> str:
    """``mxnet-cu117==1.9.1`` for ``cu117``: the pin of one build."""
    return f"{BUILDS[build][0]}=={MXNET_VERSION}"


def extra_requirements(build: str) -> List[str]:
    """What ``.[build]`` installs: the MXNet build, the numpy it works with and, for cu117,
    NVIDIA's wheels of the CUDA libraries it needs (the other CUDA builds use the system's)."""
    wheels = list(CUDA11_WHEELS.values()) if build in PIP_CUDA_BUILDS else []
    return [pip_requirement(build), NUMPY_FOR_PYPI_MXNET, *wheels]


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def is_mxnet_distribution(name: str) -> bool:
    """Whether distribution ``name`` installs the mxnet/ folder (``mxnet``, ``mxnet-cu117``,
    ``mxnet_cu117``, ``mxnet-mkl`` ...)."""
    return bool(_MXNET_DIST.match(_normalize(name)))


def installed_builds() -> List[Tuple[str, str]]:
    """(distribution, version) of every MXNet build installed for this Python, sorted."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = _normalize(dist.metadata["Name"] or "")
        if is_mxnet_distribution(name):
            found.setdefault(name, dist.version)
    return sorted(found.items())


def build_of(distribution: str, version: str = MXNET_VERSION,
             environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The build name (``cpu``, ``cu117``) of an MXNet distribution; None for one not listed,
    and for NVIDIA's own builds: in its container (``NVIDIA_MXNET_VERSION`` set), or a version
    with a local label (``1.9.1+nv``), whatever the distribution is called."""
    environ = os.environ if environ is None else environ
    if "+" in version or environ.get(CONTAINER_ENV):
        return None
    for build, (dist, _) in BUILDS.items():
        if dist == _normalize(distribution):
            return build
    return None


def run_nvidia_smi(args: Sequence[str] = (), timeout: float = 20) -> Optional[str]:
    """``nvidia-smi ARGS``' output; None where it is absent, fails or hangs."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def query_gpus(output: Optional[str] = None) -> List[GpuInfo]:
    """The GPUs from ``nvidia-smi --query-gpu=index,name,compute_cap,memory.total
    --format=csv,noheader,nounits`` (run here when ``output`` is None); [] without nvidia-smi,
    where it fails (drivers before ``compute_cap`` was a field) or for lines it cannot read."""
    if output is None:
        output = run_nvidia_smi(GPU_QUERY)
    gpus = []
    for line in (output or "").strip().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 4:
            continue
        cc = re.fullmatch(r"(\d+)\.(\d+)", fields[-2])
        if not fields[0].isdigit() or cc is None:
            continue
        memory = fields[-1]
        gpus.append(GpuInfo(int(fields[0]), ", ".join(fields[1:-2]),
                            (int(cc.group(1)), int(cc.group(2))),
                            int(memory) if memory.isdigit() else None))
    return gpus


def sm(compute_capability: Tuple[int, int]) -> str:
    """``sm_86`` for (8, 6)."""
    return f"sm_{compute_capability[0]}{compute_capability[1]}"


def kernel_verdict(build: str, compute_capability: Tuple[int, int]) -> Tuple[bool, str]:
    """Whether ``build`` holds kernels a GPU of ``compute_capability`` runs, and one line why.

    A cubin for sm_XY runs on sm_XZ with Z >= Y (same major: 8.9 runs sm_86 kernels); without
    PTX nothing runs on a newer major. A build whose list is not known is not refused."""
    target = sm(compute_capability)
    if build == "cpu":
        return False, f"the CPU build has no GPU kernels ({target}): see the README, Install"
    known = BUILD_ARCHS.get(build)
    if known is None:
        return True, f"{build}: its kernel list is not known here; {target} not checked"
    usable = [a for a in known.archs
              if a[0] == compute_capability[0] and a[1] <= compute_capability[1]]
    if usable:
        return True, f"{sm(max(usable))} kernels: runs"
    if known.ptx and min(known.archs) <= compute_capability:
        return True, f"PTX, compiled by the driver for {target}: runs"
    return False, f"no kernels for {target}: {_advice(build, compute_capability)}"


def _advice(build: str, compute_capability: Tuple[int, int]) -> str:
    """Where a GPU that ``build`` cannot run goes: the default pip build where that one runs
    it, NVIDIA's container from compute capability 6.0 (the container's floor), else nowhere."""
    if build != DEFAULT_CUDA_BUILD and kernel_verdict(DEFAULT_CUDA_BUILD, compute_capability)[0]:
        return f"install .[{DEFAULT_CUDA_BUILD}] (README, Install)"
    if compute_capability >= (6, 0):
        return CONTAINER_ROUTE
    return "no MXNet build listed in the README runs it"


def driver_cuda_version(header: Optional[str]) -> Optional[Tuple[int, int]]:
    """The newest CUDA version the driver runs, from ``nvidia-smi``'s header ("CUDA Version:
    12.2"); None without one (no driver, no GPU, "N/A")."""
    match = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", header or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def build_for_driver(cuda: Tuple[int, int]) -> Optional[str]:
    """The newest CUDA build a driver of CUDA version ``cuda`` runs (None: older than all)."""
    for build, (_, needs) in BUILDS.items():
        if needs is not None and cuda >= needs:
            return build
    return None


def _no_build_line(gpu: GpuInfo, newest: str) -> str:
    """Why no pip build fits ``gpu``, from the newest build its driver runs."""
    archs = BUILD_ARCHS[newest]
    holds = f"{sm(min(archs.archs))}..{sm(max(archs.archs))}{'' if archs.ptx else ', no PTX'}"
    verdict = kernel_verdict(newest, gpu.compute_capability)[1]
    return (f"nvidia-smi reports {gpu.name} (GPU {gpu.index}, compute capability "
            f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}): no pip build of MXNet "
            f"runs it ({BUILDS[newest][0]} holds {holds}): {verdict}")


def machine_build(header: Optional[str], smi_found: bool = True,
                  gpus: Sequence[GpuInfo] = ()) -> Tuple[str, str]:
    """The build for this machine from ``nvidia-smi``'s output (None: absent or failing) and
    its GPUs (:func:`query_gpus`), and why: the newest CUDA build the driver runs that holds
    kernels for every GPU, else the CPU build without a usable driver; BuildConflict where no
    build runs on a GPU (Hopper and newer: NVIDIA's container)."""
    if header is None:
        return "cpu", ("nvidia-smi fails (no GPU or no driver)" if smi_found
                       else "no nvidia-smi on PATH")
    cuda = driver_cuda_version(header)
    if cuda is None:
        return "cpu", "nvidia-smi reports no CUDA version"
    version = f"{cuda[0]}.{cuda[1]}"
    newest = build_for_driver(cuda)
    if newest is None:
        return "cpu", f"the driver runs CUDA {version}, older than every CUDA build (cu102: 10.2)"
    fits = [b for b, (_, needs) in BUILDS.items() if needs is not None and cuda >= needs
            and all(kernel_verdict(b, g.compute_capability)[0] for g in gpus)]
    if not fits:
        stuck = next(g for g in gpus if not kernel_verdict(newest, g.compute_capability)[0])
        raise BuildConflict(_no_build_line(stuck, newest))
    why = f"nvidia-smi reports a GPU whose driver runs CUDA {version}"
    kinds = sorted({(g.name, g.compute_capability) for g in gpus})
    if kinds:
        why += "; " + ", ".join(f"{name} ({sm(cc)}): {kernel_verdict(fits[0], cc)[1]}"
                                for name, cc in kinds)
    return fits[0], why


def _asked_build(mxnet: str, extras: List[str]) -> str:
    """The build asked by ``MXNET`` and the extras (which may name one), or BuildConflict."""
    named = [e for e in extras if e in BUILDS]
    choices = ", ".join(["auto", *BUILDS])
    if mxnet != "auto" and mxnet not in BUILDS:
        raise BuildConflict(f"MXNET={mxnet}: expected one of {choices}")
    if len(named) > 1 or (named and mxnet not in ("auto", named[0])):
        asked = [f"MXNET={mxnet}"] if mxnet != "auto" else []
        raise BuildConflict(f"{' and '.join(asked + named)} name different MXNet builds; "
                            "give one")
    return named[0] if named else mxnet


def choose_build(mxnet: str, extras: List[str], installed: List[Tuple[str, str]],
                 header: Optional[str], where: str = "this environment",
                 smi_found: bool = True, pip: str = "pip",
                 gpus: Sequence[GpuInfo] = ()) -> Tuple[str, str]:
    """The build to install (``''``: keep an installed build this project does not list) and a
    one-line reason. Never a second build next to an installed one: BuildConflict names both
    (``where`` and ``pip`` name the environment and its pip in the messages)."""
    asked = _asked_build(mxnet, extras)
    have = ", ".join(f"{name} {version}" for name, version in installed)
    if len(installed) > 1:
        raise BuildConflict(
            f"{where} holds {len(installed)} MXNet builds over each other ({have}): uninstall "
            f"them ({pip} uninstall -y {' '.join(n for n, _ in installed)}) and run again")
    if installed:
        name, version = installed[0]
        kept = build_of(name, version)
        if asked in ("auto", kept):
            why = f"keeping {name} {version}, already installed in {where}"
            stuck = [g for g in gpus if kept in BUILD_ARCHS
                     and not kernel_verdict(kept, g.compute_capability)[0]]
            if stuck:
                why += (f"; it runs no GPU kernel on {stuck[0].name} "
                        f"({kernel_verdict(kept, stuck[0].compute_capability)[1]})")
            return kept or "", why
        raise BuildConflict(
            f"MXNet build {asked} ({BUILDS[asked][0]}) would be written over {name} {version}, "
            f"already installed in {where}: {pip} uninstall -y {name} first, or MXNET=auto to "
            "keep it")
    if asked != "auto":
        return asked, "asked for"
    return machine_build(header, smi_found, gpus)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """For setup_env.sh: print the extras to install, MXNet's build first; the choice and why
    go to stderr (one line), a conflict is a one-line error and exit status 1."""
    parser = argparse.ArgumentParser(prog="setup_env.sh")
    parser.add_argument("--mxnet", default="auto")
    parser.add_argument("--extras", default="")
    parser.add_argument("--where", default=sys.prefix, help="the environment's folder")
    args = parser.parse_args(argv)
    extras = [e.strip() for e in args.extras.split(",") if e.strip()]
    try:
        build, why = choose_build(args.mxnet, extras, installed_builds(), run_nvidia_smi(),
                                  args.where, shutil.which("nvidia-smi") is not None,
                                  pip=os.path.join(args.where, "bin", "pip"),
                                  gpus=query_gpus())
    except BuildConflict as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    named = f"{build} ({pip_requirement(build)})" if build else "an MXNet build not listed here"
    print(f"MXNet build: {named}: {why}", file=sys.stderr)
    print(",".join([build] * bool(build) + [e for e in extras if e not in BUILDS]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
