"""INT8 with the library's default settings (deploy/int8.py) keeps fp32's predictions."""

from __future__ import annotations

import mxnet as mx
import numpy as np

from gluon_deeplab.data import get_dataset
from gluon_deeplab.deploy import export_checkpoint, read_meta
from gluon_deeplab.deploy.int8 import (
    DEFAULT_CALIB_MODE,
    DEFAULT_EXCLUDE,
    DEFAULT_NUM_CALIB_IMAGES,
    DEFAULT_QUANTIZED_DTYPE,
)
from gluon_deeplab.evaluation import ConfusionMatrix
from gluon_deeplab.evaluation.inference import predict_probabilities
from gluon_deeplab.models import model_from_checkpoint


def test_int8_export_with_default_settings_agrees_with_fp32(trained_synthetic, tmp_path):
    root, checkpoint = trained_synthetic
    calib = get_dataset("synthetic", root, "train", mode="val")
    prefix = str(tmp_path / "int8")
    export_checkpoint(checkpoint, prefix, dtype="int8", calib_dataset=calib,
                      calib_size=(48, 64))
    meta = read_meta(prefix)
    assert meta["calib_mode"] == DEFAULT_CALIB_MODE == "naive"
    assert meta["quantized_dtype"] == DEFAULT_QUANTIZED_DTYPE == "int8"
    assert meta["num_calib_images"] == min(DEFAULT_NUM_CALIB_IMAGES, len(calib))
    assert meta["excluded_from_quantization"] == list(DEFAULT_EXCLUDE)
    int8 = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"],
                                        prefix + "-0000.params")
    int8.output_stride = meta["output_stride"]
    fp32, _ = model_from_checkpoint(checkpoint)
    val = get_dataset("synthetic", root, "val", mode="val")
    matrices = {"fp32": ConfusionMatrix(3), "int8": ConfusionMatrix(3)}
    same = total = 0
    for i in range(len(val)):
        image, label = val[i][0], val[i][1].asnumpy().astype(np.int64)
        preds = {name: predict_probabilities(net, image, mx.cpu()).argmax(0)
                 for name, net in (("fp32", fp32), ("int8", int8))}
        for name, pred in preds.items():
            matrices[name].update(pred.astype(np.int64), label)
        same += int((preds["fp32"] == preds["int8"]).sum())
        total += label.size
    assert same / total >= 0.97
    miou = {name: m.metrics()["miou"] for name, m in matrices.items()}
    assert abs(miou["fp32"] - miou["int8"]) <= 0.02, miou
