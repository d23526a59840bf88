#!/usr/bin/env sh
# Quick start: set up .venv, then on the embedded synthetic dataset generate the data, train
# DeepLabV3 (ResNet18-v2 + ASPP), evaluate it, export it and predict panels for a few images.
# Every setting can be overridden by an environment variable (the tests run it tiny):
#   OUT, ITERS, BATCH, CROP, NUM_TRAIN, NUM_VAL, HEIGHT, WIDTH, BACKBONE, HEAD, SKIP_SETUP=1, PYTHON
set -eu
cd "$(dirname "$0")/.."

OUT=${OUT:-runs/quickstart}
ITERS=${ITERS:-400}
BATCH=${BATCH:-8}
CROP=${CROP:-80}
NUM_TRAIN=${NUM_TRAIN:-200}
NUM_VAL=${NUM_VAL:-40}
HEIGHT=${HEIGHT:-96}
WIDTH=${WIDTH:-128}
BACKBONE=${BACKBONE:-resnet18_v2}
HEAD=${HEAD:-1}

if [ "${SKIP_SETUP:-0}" != 1 ]; then
    echo "== setting up .venv (pinned dependencies)"
    sh sh/setup_env.sh
fi
PYTHON=${PYTHON:-.venv/bin/python}
DATA="$OUT/data"

if [ ! -f "$DATA/synthetic.json" ]; then
    echo "== generating the synthetic dataset -> $DATA"
    "$PYTHON" scripts/make_synthetic.py --output "$DATA" --num_train "$NUM_TRAIN" \
        --num_val "$NUM_VAL" --size "$HEIGHT" "$WIDTH" --seed 0
fi

echo "== training DeepLabV3 ($BACKBONE, head $HEAD, OS 16) for $ITERS iterations -> $OUT/train"
"$PYTHON" scripts/train.py --dataset synthetic --data_dir "$DATA" \
    --base_architecture "$BACKBONE" --aspp_or_vortex "$HEAD" --output_stride 16 \
    --batch_size "$BATCH" --crop_size "$CROP" --max_iter "$ITERS" \
    --initial_learning_rate 0.01 --weight_decay 1e-4 --val_interval 100 \
    --checkpoint_interval 200 --num_workers 0 --output_dir "$OUT/train" --resume auto

echo "== evaluating on the synthetic val split -> $OUT/eval.json"
"$PYTHON" scripts/eval.py --checkpoint "$OUT/train/final.params" --dataset synthetic \
    --data_dir "$DATA" --split val --output "$OUT/eval.json" --overwrite

echo "== exporting the hybridized model -> $OUT/export/deeplab-symbol.json, -0000.params"
"$PYTHON" scripts/export.py --checkpoint "$OUT/train/final.params" \
    --output "$OUT/export/deeplab" --overwrite

echo "== predicting masks, overlays and panels for 4 val images -> $OUT/predictions"
IMAGES=$(head -n 4 "$DATA/ImageSets/Segmentation/val.txt" | sed "s|^|$DATA/JPEGImages/|; s|$|.jpg|")
# shellcheck disable=SC2086
"$PYTHON" scripts/predict.py --exported "$OUT/export/deeplab" $IMAGES \
    --label_dir "$DATA/SegmentationClass" --output_dir "$OUT/predictions" --overwrite

echo
echo "Done. Everything is under $OUT:"
echo "  data          $DATA"
echo "  checkpoints   $OUT/train (final.params, best.params, log.jsonl, curves.png)"
echo "  metrics       $OUT/eval.json"
echo "  exported      $OUT/export/deeplab-symbol.json + deeplab-0000.params"
echo "  predictions   $OUT/predictions/{masks,overlays,panels}"
