"""Exports pad their input themselves: a bare ``SymbolBlock.imports`` gives predict.py's result at
any size (fp32, INT8; bf16 where it runs), and exports written before still load and are padded
by inference instead."""

from __future__ import annotations

import json

import mxnet as mx
import numpy as np
import pytest

from gluon_deeplab import build_model
from gluon_deeplab.checkpoint import save_checkpoint
from gluon_deeplab.data import get_dataset
from gluon_deeplab.deploy import export_checkpoint, quantize_model, read_meta
from gluon_deeplab.deploy.export_format import EXPORT_FORMAT, export_model, load_exported
from gluon_deeplab.deploy.int8 import calibration_loader
from gluon_deeplab.evaluation import predict_probabilities
from gluon_deeplab.models import model_from_checkpoint, pad_to_stride, padded_size
from gluon_deeplab.precision import bf16_support

ODD_SIZES = [(37, 53), (45, 71), (63, 30)]  # none of them is output_stride * k + 1


def _imports(prefix):
    return mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"],
                                        prefix + "-0000.params")


def _probabilities(block, x):
    return mx.nd.softmax(block(x), axis=1).asnumpy()


@pytest.mark.parametrize("stride", [8, 16])
def test_pad_to_stride_pads_with_zeros_to_stride_k_plus_1_in_a_graph(stride):
    data = mx.sym.var("data")
    graph = pad_to_stride(mx.sym, data, stride)
    for h, w in [(1, 1), (stride, stride + 1), (37, 2 * stride + 1), (50, 91)]:
        x = mx.nd.random.uniform(1, 2, shape=(2, 3, h, w))
        out = graph.eval(data=x)[0].asnumpy()
        assert out.shape == (2, 3, padded_size(h, stride), padded_size(w, stride))
        np.testing.assert_array_equal(out[:, :, :h, :w], x.asnumpy())
        assert out.sum() == pytest.approx(x.asnumpy().sum(), rel=1e-6)  # the rest is 0


@pytest.mark.parametrize("output_stride", [16, 8])
def test_bare_imports_equals_predict_py_probabilities_at_three_odd_sizes(
        tmp_path, output_stride, predict_py_probabilities):
    net = build_model(4, "resnet18_v2", "aspp", 16)
    checkpoint = save_checkpoint(str(tmp_path / "model.params"), net)
    prefix = str(tmp_path / "deeplab")
    export_checkpoint(checkpoint, prefix, output_stride=output_stride)
    assert read_meta(prefix)["pads_input"] is True
    bare = _imports(prefix)
    reference, _ = model_from_checkpoint(checkpoint, output_stride=output_stride)
    for h, w in ODD_SIZES:
        x = mx.nd.random.normal(shape=(1, 3, h, w))
        expected = predict_py_probabilities(reference, x)
        unpadded = mx.nd.softmax(reference(x), axis=1).asnumpy()
        assert np.abs(unpadded - expected).max() > 1e-4  # the padding matters at this size
        assert np.abs(_probabilities(bare, x) - expected).max() < 1e-5, (h, w)


def test_export_is_padded_once_by_eval_and_predict_and_old_exports_still_load(tmp_path):
    """eval/predict pad an export as they pad its checkpoint (to the size's bucket, or with
    --no_buckets to the smallest stride * k + 1); the graph's own padding then adds nothing."""
    net = build_model(4, "resnet18_v2", "aspp", 16)
    new = str(tmp_path / "new")
    export_model(net, new)
    # An export written before: the bare graph and the short meta file of that time.
    old = str(tmp_path / "old")
    net.hybridize()
    net(mx.nd.zeros((1, 3, 64, 64)))
    net.export(old, epoch=0)
    with open(old + "-meta.json", "w", encoding="utf-8") as f:
        json.dump({"output_stride": 16, "num_classes": 4}, f)
    # ... and one with the full record of export_checkpoint from before ``pads_input``.
    old_full = str(tmp_path / "old_full")
    net.export(old_full, epoch=0)
    with open(old_full + "-meta.json", "w", encoding="utf-8") as f:
        json.dump({"format": EXPORT_FORMAT, "num_classes": 4, "classes": None,
                   "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                   "input_name": "data", "backbone": "resnet18_v2", "head": "aspp",
                   "output_stride": 16, "iteration": 0, "precision": "fp32"}, f)
    image = mx.nd.random.normal(shape=(3, 41, 59))  # bucket 65 x 65, own size 49 x 65
    for buckets in (True, False):
        expected = predict_probabilities(net, image, mx.cpu(), buckets=buckets)
        for prefix in (new, old, old_full):
            block = load_exported(prefix)
            assert block.output_stride == 16
            got = predict_probabilities(block, image, mx.cpu(), buckets=buckets)
            assert np.abs(got - expected).max() < 1e-5, (prefix, buckets)


def test_int8_export_pads_itself_like_predict_py(trained_synthetic, tmp_path,
                                                 predict_py_probabilities):
    root, checkpoint = trained_synthetic
    calib = get_dataset("synthetic", root, "train", mode="val")
    fp32, _ = model_from_checkpoint(checkpoint, aux=False)
    qnet = quantize_model(fp32, calibration_loader(calib, 2, (48, 64)))
    prefix = str(tmp_path / "int8")
    export_model(qnet, prefix)
    bare = _imports(prefix)
    reference, _ = model_from_checkpoint(checkpoint)
    image = get_dataset("synthetic", root, "val", mode="val")[0][0].expand_dims(0)
    for h, w in ODD_SIZES:
        x = mx.nd.contrib.BilinearResize2D(image, height=h, width=w)
        got = _probabilities(bare, x)
        # The same INT8 graph padded by predict.py (qnet knows its stride).
        assert np.abs(got - predict_py_probabilities(qnet, x)).max() < 1e-4, (h, w)
        same = (got.argmax(axis=1) == predict_py_probabilities(reference, x).argmax(axis=1))
        assert same.mean() > 0.9, (h, w, same.mean())


def test_bf16_export_graph_pads_itself_at_any_size(trained_synthetic, tmp_path,
                                                   predict_py_probabilities):
    """The graph is checked everywhere; it is run where this CPU runs bfloat16."""
    checkpoint = trained_synthetic[1]
    prefix = str(tmp_path / "bf16")
    export_checkpoint(checkpoint, prefix, dtype="bf16", check_bf16=False)
    assert read_meta(prefix)["pads_input"] is True
    symbol = mx.sym.load(prefix + "-symbol.json")
    assert any(name.startswith("pad_to_stride_") for name in symbol.get_internals().list_outputs())
    for h, w in ODD_SIZES:
        _, (out_shape,), _ = symbol.infer_shape(data=(1, 3, h, w))
        assert out_shape[2:] == (h, w)
    if not bf16_support().ok:
        pytest.skip(f"bfloat16 cannot run here: {bf16_support().reason}")
    bare = _imports(prefix)
    reference, _ = model_from_checkpoint(checkpoint)
    image = get_dataset("synthetic", trained_synthetic[0], "val", mode="val")[0][0]
    for h, w in ODD_SIZES:
        x = mx.nd.contrib.BilinearResize2D(image.expand_dims(0), height=h, width=w)
        same = (_probabilities(bare, x).argmax(axis=1)
                == predict_py_probabilities(reference, x).argmax(axis=1))
        assert same.mean() >= 0.98, (h, w, same.mean())
