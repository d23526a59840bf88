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
from typing import Dict, List, Optional, Sequence, Tuple

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

GPU_QUERY = ("--query-gpu=index,name,compute_cap,memory.total",
             "--format=csv,noheader,nounits")
CONTAINER_ROUTE = "see the README, Install (NVIDIA's MXNet container)"


@dataclass(frozen=True)
class KernelArchs:
    """The GPU architectures a build holds kernels for, whether it holds PTX (which the driver
    compiles for newer GPUs), and where the list comes from."""

    archs: Tuple[Tuple[int, int], ...]
    ptx: bool
    source: str


_CONFIG = "MXNet's config/distribution/linux_{}.cmake (MXNET_CUDA_ARCH; the wheel not inspected)"
_SM_50_86 = ((5, 0), (6, 0), (7, 0), (8, 0), (8, 6))
# cu117 is inspected (cuobjdump --list-elf / --list-ptx on libmxnet.so); the others are MXNet's
# build configuration of its pip builds, whose lists carry no "+PTX".
BUILD_ARCHS: Dict[str, KernelArchs] = {
    "cu117": KernelArchs(_SM_50_86, False, "cuobjdump of mxnet-cu117 1.9.1's libmxnet.so"),
    **{b: KernelArchs(_SM_50_86, False, _CONFIG.format(b))
       for b in ("cu116", "cu115", "cu114", "cu113", "cu112", "cu111")},
    "cu110": KernelArchs(((5, 0), (6, 0), (7, 0), (8, 0)), False, _CONFIG.format("cu110")),
    "cu102": KernelArchs(((3, 0), (5, 0), (6, 0), (7, 0), (7, 5)), False,
                         _CONFIG.format("cu102")),
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


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_builds() -> List[Tuple[str, str]]:
    """(distribution, version) of every MXNet build installed for this Python, sorted."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = _normalize(dist.metadata["Name"] or "")
        if _MXNET_DIST.match(name):
            found.setdefault(name, dist.version)
    return sorted(found.items())


def build_of(distribution: str) -> Optional[str]:
    """The build name (``cpu``, ``cu117``) of an MXNet distribution; None for one not listed."""
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
    note = "" if known.source.startswith("cuobjdump") else " (by MXNet's build config)"
    usable = [a for a in known.archs
              if a[0] == compute_capability[0] and a[1] <= compute_capability[1]]
    if usable:
        return True, f"{sm(max(usable))} kernels: runs{note}"
    if known.ptx and min(known.archs) <= compute_capability:
        return True, f"PTX, compiled by the driver for {target}: runs{note}"
    return False, f"no kernels for {target}: {_advice(build, compute_capability)}{note}"


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


def machine_build(header: Optional[str], smi_found: bool = True) -> Tuple[str, str]:
    """The build for this machine from ``nvidia-smi``'s output (None: absent or failing), and
    why: the newest CUDA build the driver runs, else the CPU build."""
    if header is None:
        return "cpu", ("nvidia-smi fails (no GPU or no driver)" if smi_found
                       else "no nvidia-smi on PATH")
    cuda = driver_cuda_version(header)
    if cuda is None:
        return "cpu", "nvidia-smi reports no CUDA version"
    version = f"{cuda[0]}.{cuda[1]}"
    build = build_for_driver(cuda)
    if build is None:
        return "cpu", f"the driver runs CUDA {version}, older than every CUDA build (cu102: 10.2)"
    return build, f"nvidia-smi reports a GPU whose driver runs CUDA {version}"


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
                 smi_found: bool = True, pip: str = "pip") -> Tuple[str, str]:
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
        kept = build_of(name)
        if asked in ("auto", kept):
            return kept or "", f"keeping {name} {version}, already installed in {where}"
        raise BuildConflict(
            f"MXNet build {asked} ({BUILDS[asked][0]}) would be written over {name} {version}, "
            f"already installed in {where}: {pip} uninstall -y {name} first, or MXNET=auto to "
            "keep it")
    if asked != "auto":
        return asked, "asked for"
    return machine_build(header, smi_found)


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
                                  pip=os.path.join(args.where, "bin", "pip"))
    except BuildConflict as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    named = f"{build} ({pip_requirement(build)})" if build else "an MXNet build not listed here"
    print(f"MXNet build: {named}: {why}", file=sys.stderr)
    print(",".join([build] * bool(build) + [e for e in extras if e not in BUILDS]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
