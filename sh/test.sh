#!/usr/bin/env sh
# The test command: sets up .venv with gluon-deeplab's dependencies, then lints and runs the tests.
set -eu
cd "$(dirname "$0")/.."
# The optional extras are installed too, so the CRF, ONNX, Kubernetes, TensorBoard, video,
# service, demo and browser tests run rather than skip.
sh sh/setup_env.sh test,crf,onnx,kubernetes,tensorboard,video,serve,demo
.venv/bin/python -m ruff check gluon_deeplab scripts tests
exec .venv/bin/python -m pytest -q "$@"
