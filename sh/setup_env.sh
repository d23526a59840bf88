#!/usr/bin/env sh
# Creates .venv (once) and installs gluon-deeplab with its pinned dependencies into it.
# Usage: sh sh/setup_env.sh [EXTRAS]   e.g. EXTRAS=test or test,onnx
set -eu
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
if [ -n "$extras" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$extras]"
else
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
fi
