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
DATASET=${DATASET:-voc_sbd}
DATA_DIR=${DATA_DIR:-}               # empty: train.py's default (gluoncv's root for voc, voc_sbd)
TRAIN_SPLIT=${TRAIN_SPLIT:-}         # empty: train_aug for voc_sbd and voc_aug, else train
VAL_SPLIT=${VAL_SPLIT:-val}
VAL_DATASET=${VAL_DATASET:-}         # empty: voc (VOC 2012 val) for voc_sbd, else DATASET
VAL_DATA_DIR=${VAL_DATA_DIR:-}
BACKBONE=${BACKBONE:-resnet_v2_50}
HEAD=${HEAD:-1}                      # 1 = ASPP, 2 = Vortex pooling
# Phase 1's backbone: imagenet (MXNet's model store, downloaded when missing), none, or a
# .params file; the default is imagenet, none for the generated synthetic set.
if [ "$DATASET" = synthetic ]; then PRETRAINED=${PRETRAINED:-none}; else PRETRAINED=${PRETRAINED:-imagenet}; fi
DECODER=${DECODER:-0}                # 1 = DeepLabV3+ (decoder on the stride-4 features)
SEPARABLE=${SEPARABLE:-0}            # 1 = depthwise-separable 3x3 convs in head and decoder
CROP_SIZE=${CROP_SIZE:-513}
GPUS=${GPUS:-}                       # e.g. 0,1 (empty: CPU)
OUTPUT_DIR=${OUTPUT_DIR:-runs/deeplabv3}
MAX_ITER=${MAX_ITER:-30000}
MAX_ITER_1=${MAX_ITER_1:-$MAX_ITER}
MAX_ITER_2=${MAX_ITER_2:-$MAX_ITER}
BATCH_SIZE_1=${BATCH_SIZE_1:-16}
BATCH_SIZE_2=${BATCH_SIZE_2:-8}
LR_1=${LR_1:-7e-3}
LR_2=${LR_2:-1e-3}
WEIGHT_DECAY=${WEIGHT_DECAY:-2e-4}
VAL_INTERVAL=${VAL_INTERVAL:-2000}
CHECKPOINT_INTERVAL=${CHECKPOINT_INTERVAL:-1000}
NUM_WORKERS=${NUM_WORKERS:-}               # empty: 4 per device, at most the CPU count
RESUME=${RESUME:-auto}
AMP=${AMP:-0}                        # 1: mixed precision (float16 on GPUs, bf16 on bf16 CPUs)

set -- --dataset "$DATASET" --val_split "$VAL_SPLIT" \
    --base_architecture "$BACKBONE" --aspp_or_vortex "$HEAD" --crop_size "$CROP_SIZE" \
    --gpus "$GPUS" --weight_decay "$WEIGHT_DECAY" --val_interval "$VAL_INTERVAL" \
    --checkpoint_interval "$CHECKPOINT_INTERVAL" --resume "$RESUME" "$@"
if [ -n "$NUM_WORKERS" ]; then set -- --num_workers "$NUM_WORKERS" "$@"; fi
if [ -n "$DATA_DIR" ]; then set -- --data_dir "$DATA_DIR" "$@"; fi
if [ -n "$TRAIN_SPLIT" ]; then set -- --train_split "$TRAIN_SPLIT" "$@"; fi
if [ -n "$VAL_DATASET" ]; then set -- --val_dataset "$VAL_DATASET" "$@"; fi
if [ -n "$VAL_DATA_DIR" ]; then set -- --val_data_dir "$VAL_DATA_DIR" "$@"; fi
if [ "$AMP" = "1" ]; then set -- --amp "$@"; fi
case "$DECODER" in
    1) set -- --decoder "$@" ;;
    0) ;;
    *) echo "train.sh: DECODER must be 0 or 1, got '$DECODER'" >&2; exit 2 ;;
esac
case "$SEPARABLE" in
    1) set -- --separable "$@" ;;
    0) ;;
    *) echo "train.sh: SEPARABLE must be 0 or 1, got '$SEPARABLE'" >&2; exit 2 ;;
esac

PHASE1="$OUTPUT_DIR/phase1_os16"
PHASE2="$OUTPUT_DIR/phase2_os8"

echo "== phase 1: OS 16, batch $BATCH_SIZE_1, lr $LR_1, BN trained, $MAX_ITER_1 iterations, backbone $PRETRAINED -> $PHASE1"
"$PYTHON" scripts/train.py "$@" --output_dir "$PHASE1" --output_stride 16 \
    --batch_size "$BATCH_SIZE_1" --initial_learning_rate "$LR_1" --freeze_batch_norm 0 \
    --max_iter "$MAX_ITER_1" --pre_trained_model "$PRETRAINED"

echo "== phase 2: OS 8, batch $BATCH_SIZE_2, lr $LR_2, BN frozen, $MAX_ITER_2 iterations -> $PHASE2"
"$PYTHON" scripts/train.py "$@" --output_dir "$PHASE2" --output_stride 8 \
    --batch_size "$BATCH_SIZE_2" --initial_learning_rate "$LR_2" --freeze_batch_norm 1 \
    --max_iter "$MAX_ITER_2" --init_checkpoint "$PHASE1/final.params"
