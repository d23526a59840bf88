#!/usr/bin/env sh
# Creates .venv (once) and installs gluon-deeplab with its pinned dependencies and one MXNet build.
# Usage: [MXNET=auto|cpu|cu117|...|cu110|cu102] sh sh/setup_env.sh [--dry-run] [EXTRAS]
#   e.g. sh sh/setup_env.sh test,onnx      MXNET=cu117 sh sh/setup_env.sh
# MXNET=auto (the default) keeps the MXNet build already in .venv; else it takes the newest CUDA
# build that the driver runs and that holds kernels for every GPU nvidia-smi reports (compute
# capability), else the CPU build. One line says which and why. A GPU that no pip build runs
# (Hopper and newer: compute capability 9.0+) stops it with one line: use NVIDIA's container.
# A build is never installed over another one (a one-line error names both).
# --dry-run prints the choice and the pip command and installs nothing (.venv is still created).
set -eu
cd "$(dirname "$0")/.."
if [ -n "${NVIDIA_MXNET_VERSION:-}" ]; then
    echo "setup_env.sh: error: this is NVIDIA's MXNet container ($NVIDIA_MXNET_VERSION): a .venv" \
        "would hide its MXNet; install into its Python with pip install -e . (README, Install)" >&2
    exit 1
fi
dry_run=0
if [ "${1:-}" = "--dry-run" ]; then
    dry_run=1
    shift
fi
if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
fi
# -I: the script's folder (gluon_deeplab/) must not shadow the standard library's modules.
extras=$(.venv/bin/python -I gluon_deeplab/mxnet_builds.py --mxnet "${MXNET:-auto}" \
    --extras "${1:-}" --where .venv)
target=.
if [ -n "$extras" ]; then
    target=".[$extras]"
fi
pip_install=".venv/bin/python -m pip install --quiet --disable-pip-version-check"
if [ "$dry_run" = 1 ]; then
    echo "would run: $pip_install -e $target"
    exit 0
fi
$pip_install --upgrade pip
$pip_install -e "$target"
