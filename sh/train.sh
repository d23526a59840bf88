#!/usr/bin/env sh
# The paper's two-phase schedule (DeepLabV3, Chen et al. 2017), one output folder per phase:
#   phase 1: train_aug, output stride 16, batch 16, lr 7e-3, BN trained, 30K iterations
#            (SyncBN by default where that leaves fewer than 4 images per GPU, e.g. 8 GPUs)
#   phase 2: output stride 8, batch 8, lr 1e-3, BN frozen, 30K iterations,
#            initialized from phase 1's final checkpoint.
# With no variable set: voc_sbd train_aug (VOC 2012 + SBD) from gluoncv's root
# ~/.mxnet/datasets/voc (what scripts/download_voc.py fills), validated on VOC 2012 val, backbone
# from the ImageNet weights of MXNet's model store.
# Every setting can be overridden by an environment variable, e.g. a smoke run on the data of
# the quick start (sh sh/quickstart.sh):
#   MAX_ITER=50 DATASET=synthetic DATA_DIR=runs/quickstart/data BACKBONE=resnet18_v2 \
#     CROP_SIZE=64 BATCH_SIZE_1=4 BATCH_SIZE_2=4 OUTPUT_DIR=runs/smoke sh sh/train.sh
# Extra arguments are passed to both phases (e.g. --num_workers 8). An interrupted phase is
# continued by running the script again (RESUME=auto, the default).
set -eu
cd "$(dirname "$0")/.."

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
# A setting left unset is train.py's default, and train.py's defaults are phase 1's numbers
# (gluon-deeplab-train --help lists them): the script passes only the variables that are set and
# what differs per phase.
OUTPUT_DIR=${OUTPUT_DIR:-runs/deeplabv3}
VAL_SPLIT=${VAL_SPLIT:-val}
VAL_INTERVAL=${VAL_INTERVAL:-2000}   # the recipe validates less often than train.py's 1000
RESUME=${RESUME:-auto}
BATCH_SIZE_2=${BATCH_SIZE_2:-8}      # phase 2: batch 8, lr 1e-3, BN frozen, output stride 8
LR_2=${LR_2:-1e-3}
MAX_ITER_1=${MAX_ITER_1:-${MAX_ITER:-}}
MAX_ITER_2=${MAX_ITER_2:-${MAX_ITER:-}}

set -- --val_split "$VAL_SPLIT" --val_interval "$VAL_INTERVAL" --resume "$RESUME" "$@"
if [ -n "${DATASET:-}" ]; then set -- --dataset "$DATASET" "$@"; fi
if [ -n "${DATA_DIR:-}" ]; then set -- --data_dir "$DATA_DIR" "$@"; fi
if [ -n "${TRAIN_SPLIT:-}" ]; then set -- --train_split "$TRAIN_SPLIT" "$@"; fi
if [ -n "${VAL_DATASET:-}" ]; then set -- --val_dataset "$VAL_DATASET" "$@"; fi
if [ -n "${VAL_DATA_DIR:-}" ]; then set -- --val_data_dir "$VAL_DATA_DIR" "$@"; fi
if [ -n "${BACKBONE:-}" ]; then set -- --base_architecture "$BACKBONE" "$@"; fi
if [ -n "${HEAD:-}" ]; then set -- --aspp_or_vortex "$HEAD" "$@"; fi  # 1 ASPP, 2 Vortex
if [ -n "${CROP_SIZE:-}" ]; then set -- --crop_size "$CROP_SIZE" "$@"; fi
if [ -n "${GPUS:-}" ]; then set -- --gpus "$GPUS" "$@"; fi           # e.g. 0,1 (unset: CPU)
if [ -n "${WEIGHT_DECAY:-}" ]; then set -- --weight_decay "$WEIGHT_DECAY" "$@"; fi
if [ -n "${CHECKPOINT_INTERVAL:-}" ]; then
    set -- --checkpoint_interval "$CHECKPOINT_INTERVAL" "$@"
fi
if [ -n "${NUM_WORKERS:-}" ]; then set -- --num_workers "$NUM_WORKERS" "$@"; fi
case "${AMP:-0}" in              # 1: mixed precision (float16 on GPUs, bf16 on bf16 CPUs)
    1) set -- --amp "$@" ;;
    0) ;;
    *) echo "train.sh: AMP must be 0 or 1, got '$AMP'" >&2; exit 2 ;;
esac
case "${DECODER:-0}" in          # 1: DeepLabV3+ (decoder on the stride-4 features)
    1) set -- --decoder "$@" ;;
    0) ;;
    *) echo "train.sh: DECODER must be 0 or 1, got '$DECODER'" >&2; exit 2 ;;
esac
case "${SEPARABLE:-0}" in        # 1: depthwise-separable 3x3 convs in head and decoder
    1) set -- --separable "$@" ;;
    0) ;;
    *) echo "train.sh: SEPARABLE must be 0 or 1, got '$SEPARABLE'" >&2; exit 2 ;;
esac

PHASE1="$OUTPUT_DIR/phase1_os16"
PHASE2="$OUTPUT_DIR/phase2_os8"

PHASE1_FLAGS=""
if [ -n "$MAX_ITER_1" ]; then PHASE1_FLAGS="$PHASE1_FLAGS --max_iter $MAX_ITER_1"; fi
if [ -n "${BATCH_SIZE_1:-}" ]; then PHASE1_FLAGS="$PHASE1_FLAGS --batch_size $BATCH_SIZE_1"; fi
if [ -n "${LR_1:-}" ]; then PHASE1_FLAGS="$PHASE1_FLAGS --initial_learning_rate $LR_1"; fi
if [ -n "${PRETRAINED:-}" ]; then PHASE1_FLAGS="$PHASE1_FLAGS --pre_trained_model $PRETRAINED"; fi
PHASE2_FLAGS=""
if [ -n "$MAX_ITER_2" ]; then PHASE2_FLAGS="--max_iter $MAX_ITER_2"; fi

echo "== phase 1: output stride 16, BN trained -> $PHASE1"
# shellcheck disable=SC2086  # the phase's flags are words without spaces
"$PYTHON" scripts/train.py "$@" --output_dir "$PHASE1" --output_stride 16 \
    --freeze_batch_norm 0 $PHASE1_FLAGS

echo "== phase 2: output stride 8, batch $BATCH_SIZE_2, lr $LR_2, BN frozen -> $PHASE2"
# shellcheck disable=SC2086
"$PYTHON" scripts/train.py "$@" --output_dir "$PHASE2" --output_stride 8 \
    --batch_size "$BATCH_SIZE_2" --initial_learning_rate "$LR_2" --freeze_batch_norm 1 \
    --init_checkpoint "$PHASE1/final.params" $PHASE2_FLAGS
