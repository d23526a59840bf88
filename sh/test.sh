#!/usr/bin/env sh
# Sets up .venv with the pinned dependencies (once) and runs the test suite.
set -eu
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
.venv/bin/python -m ruff check gluon_deeplab scripts tests
exec .venv/bin/python -m pytest -q "$@"
