"""Head settings across output strides, their record in checkpoints, INT8 exclusion by head
scope, and the one-image-per-device BatchNorm warning."""

from __future__ import annotations

import ast
import json

import mxnet as mx
import numpy as np
import pytest
from graph_probes import quantized_convolutions
from mxnet.gluon.data import ArrayDataset, DataLoader

import gluon_deeplab as gd
from gluon_deeplab.checkpoint import load_checkpoint, save_checkpoint
from gluon_deeplab.deploy.int8 import excluded_layer_names, quantize_model
from gluon_deeplab.models import (
    VortexBranch,
    model_from_checkpoint,
    recorded_head_settings,
    vortex_kernels_for,
)
from gluon_deeplab.models.heads import window_mean
from gluon_deeplab.params import parameter_arrays


def test_vortex_kernels_scale_with_output_stride_as_odd_kernels_of_the_same_image_span():
    assert vortex_kernels_for(16) == (3, 9, 27)
    assert vortex_kernels_for(8) == (7, 19, 55)  # 2k + 1
    assert vortex_kernels_for(32) == (1, 5, 13)
    for os_ in (8, 32):
        for k16, k in zip((3, 9, 27), vortex_kernels_for(os_)):
            assert k % 2 == 1 and abs(k * os_ - k16 * 16) <= os_
    net = gd.build_model(3, "resnet18_v2", "vortex", 8)
    assert net.head.kernels == (7, 19, 55)
    dilations = [b.conv[0]._kwargs["dilate"] for b in net.head.branches if
                 isinstance(b, VortexBranch)]
    assert dilations == [(7, 7), (19, 19), (55, 55)]  # conv rate = pooling kernel


@pytest.mark.parametrize("kernel", [3, 15, 27, 55])
@pytest.mark.parametrize("hybridize", [False, True])
def test_vortex_window_mean_equals_one_square_pool_excluding_padding_with_its_gradient(
        kernel, hybridize):
    mean = mx.gluon.nn.HybridLambda(lambda F, x: window_mean(F, x, kernel))
    if hybridize:
        mean.hybridize()

    def square(x):
        return mx.nd.Pooling(x, kernel=(kernel, kernel), stride=(1, 1),
                             pad=(kernel // 2, kernel // 2), pool_type="avg",
                             count_include_pad=False)

    for shape in ((1, 4, 21, 34), (2, 3, 9, 5), (1, 2, 70, 66)):  # windows wider and narrower
        x = mx.nd.random.uniform(shape=shape)
        head = mx.nd.random.uniform(shape=shape)
        results = []
        for pool in (mean, square):
            x.attach_grad()
            with mx.autograd.record():
                y = pool(x)
            y.backward(head)
            results.append((y.asnumpy(), x.grad.asnumpy()))
        (got, got_grad), (want, want_grad) = results
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=1e-6)
    branch = VortexBranch(4, kernel, channels=4)
    branch.initialize()
    x = mx.nd.random.uniform(shape=(1, 4, 21, 34))
    np.testing.assert_allclose(branch(x).asnumpy(), branch.conv(square(x)).asnumpy(),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_no_vortex_pool_pads_more_columns_than_onednn_pooling_kernels_handle(output_stride):
    """oneDNN's jit pooling takes at most 6 padded columns on AVX2 in the backward pass (12
    forward) and falls back to a scalar loop beyond it, ~100x slower (see window_mean)."""
    net = gd.build_model(3, "resnet18_v2", "vortex", output_stride)
    net.hybridize()
    net(mx.nd.zeros((1, 3, 33, 33)))
    nodes = json.loads(net._cached_graph[1].tojson())["nodes"]
    pools = [n["attrs"] for n in nodes if n["op"] == "Pooling"]
    assert pools  # the Vortex pools are in the graph
    for attrs in pools:
        if attrs.get("global_pool") != "True":
            pad = ast.literal_eval(attrs.get("pad", "(0, 0)"))
            assert pad[1] <= 6, attrs


@pytest.mark.parametrize("head", ["aspp", "vortex"])
def test_parameter_names_and_shapes_do_not_depend_on_output_stride_or_head_scope(head):
    os16 = parameter_arrays(gd.build_model(3, "resnet18_v2", head, 16))
    os8 = parameter_arrays(gd.build_model(3, "resnet18_v2", head, 8))
    assert {k: v.shape for k, v in os16.items()} == {k: v.shape for k, v in os8.items()}
    # The structural names that checkpoints written before hold.
    assert "head.branches.1.0.weight" in os16 and "head.project.0.weight" in os16
    assert ("head.branches.2.conv.0.weight" if head == "vortex"
            else "head.branches.4.conv.0.weight") in os16


def _rewrite_meta(path, drop):
    """A checkpoint as written before the head settings were recorded."""
    arrays = mx.nd.load(path)
    meta = json.loads(arrays["__meta__"].asnumpy().tobytes().decode("utf-8"))
    for key in drop:
        meta["model"].pop(key)
    arrays["__meta__"] = mx.nd.array(np.frombuffer(json.dumps(meta).encode(), np.uint8),
                                     dtype=np.uint8)
    mx.nd.save(path, arrays)


def test_checkpoint_records_head_settings_and_rebuilds_exactly_what_was_trained(tmp_path):
    net = gd.build_model(3, "resnet18_v2", "vortex", 8, vortex_kernels=(5, 11, 21))
    path = save_checkpoint(str(tmp_path / "v.params"), net)
    config = load_checkpoint(path).model_config
    assert config["vortex_kernels"] == [5, 11, 21] and config["aspp_rates"] is None
    assert model_from_checkpoint(path)[0].head.kernels == (5, 11, 21)
    # Custom settings stay at another output stride; default ones move with it.
    assert recorded_head_settings(config, 16) == {"vortex_kernels": (5, 11, 21)}
    aspp16 = {"head": "aspp", "output_stride": 16, "aspp_rates": [6, 12, 18]}
    assert recorded_head_settings(aspp16, 8) == {"aspp_rates": (12, 24, 36)}
    vortex16 = {"head": "vortex", "output_stride": 16, "vortex_kernels": [3, 9, 27]}
    assert recorded_head_settings(vortex16, 8) == {"vortex_kernels": (7, 19, 55)}
    assert recorded_head_settings(vortex16) == {"vortex_kernels": (3, 9, 27)}


def test_old_vortex_os8_checkpoint_rebuilds_with_the_kernels_it_was_trained_with(tmp_path):
    old = gd.build_model(3, "resnet18_v2", "vortex", 8, vortex_kernels=(3, 9, 27))
    path = save_checkpoint(str(tmp_path / "old.params"), old)
    _rewrite_meta(path, drop=("aspp_rates", "vortex_kernels"))
    assert "vortex_kernels" not in load_checkpoint(path).model_config
    net, _ = model_from_checkpoint(path)
    assert net.head.kernels == (3, 9, 27) and net.backbone.output_stride == 8
    x = mx.nd.random.uniform(shape=(1, 3, 41, 41))
    np.testing.assert_allclose(net(x).asnumpy(), old(x).asnumpy(), rtol=1e-5, atol=1e-5)
    # Old ASPP checkpoints: the rates of their stride, as built then.
    assert recorded_head_settings({"head": "aspp", "output_stride": 8}) == \
        {"aspp_rates": (12, 24, 36)}
    assert recorded_head_settings({"head": "vortex", "output_stride": 16}, 8) == \
        {"vortex_kernels": (7, 19, 55)}


def test_head_settings_of_the_other_head_are_an_error():
    with pytest.raises(ValueError, match="vortex_kernels for the Vortex head"):
        gd.build_model(3, "resnet18_v2", "aspp", vortex_kernels=(3, 9, 27))


@pytest.mark.parametrize("head", ["aspp", "vortex"])
def test_exclude_head_keeps_every_head_conv_in_fp32_and_quantizes_the_backbone(head):
    net = gd.build_model(3, "resnet18_v2", head, 16)
    head_nodes = excluded_layer_names(net, ["head"])
    assert all(n.startswith(net.head.prefix) for n in head_nodes)
    calib = DataLoader(ArrayDataset(mx.nd.random.uniform(shape=(1, 3, 33, 33)), mx.nd.zeros(1)),
                       batch_size=1)
    qnet = quantize_model(net, calib, exclude=["first_conv", "classifier", "head"])
    convs = quantized_convolutions(qnet)
    head_convs = sorted(n for n in convs if n.startswith(net.head.prefix))
    # 1x1, three atrous/vortex convs, image pooling, projection: six convs, none quantized.
    assert len(head_convs) == 6 and not any(convs[n] for n in head_convs)
    backbone = [n for n in convs if n.startswith(net.backbone.prefix)]
    assert not convs[backbone[0]] and all(convs[n] for n in backbone[1:])
    assert not convs[net.classifier.name + "_fwd"]


def _tiny_run_args(tmp_path, **overrides):
    """Trainer settings for a few resnet18_v2 steps on 4 synthetic 32x32 images."""
    from gluon_deeplab.data import make_synthetic_dataset

    root = make_synthetic_dataset(str(tmp_path / "data"), num_train=4, num_val=2, size=(32, 32),
                                  num_classes=3, seed=0)
    args = {"dataset": "synthetic", "data_dir": root, "base_architecture": "resnet18_v2",
            "batch_size": 2, "crop_size": 32, "val_interval": 0, "num_workers": 0,
            "progress": 0}
    return dict(args, **overrides)


def test_few_images_per_device_with_trained_bn_and_no_syncbn_warns_once(tmp_path):
    from gluon_deeplab.training import train

    args = _tiny_run_args(tmp_path, cpu_devices=2, max_iter=2, hybridize=0, syncbn=False)
    with pytest.warns(UserWarning, match="1 image.*per device.*no SyncBN.*--no_syncbn") as record:
        train(dict(args, output_dir=str(tmp_path / "a")))
    assert sum("per device with BatchNorm" in str(w.message) for w in record) == 1
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        from gluon_deeplab.training.multi_device import warn_few_images_batchnorm
        assert not warn_few_images_batchnorm(2, 2, freeze_bn=True, syncbn=False)
        assert not warn_few_images_batchnorm(2, 2, freeze_bn=False, syncbn=True)
        assert not warn_few_images_batchnorm(6, 2, freeze_bn=False, syncbn=False)
    with pytest.warns(UserWarning, match="2 image"):
        assert warn_few_images_batchnorm(4, 2, freeze_bn=False, syncbn=False)


def test_resume_keeps_the_head_settings_of_the_run_and_phase_two_moves_defaults(tmp_path):
    from gluon_deeplab.training import train

    args = _tiny_run_args(tmp_path, aspp_or_vortex=2, max_iter=1, checkpoint_interval=1)
    phase1 = train(dict(args, output_dir=str(tmp_path / "os16")))["checkpoint"]
    phase2 = train(dict(args, output_dir=str(tmp_path / "os8"), output_stride=8,
                        freeze_batch_norm=1, init_checkpoint=phase1))["checkpoint"]
    assert load_checkpoint(phase2).model_config["vortex_kernels"] == [7, 19, 55]

    # An OS 8 run from before the kernels scaled with the stride: resumed, it stays 3/9/27.
    _rewrite_meta(phase2, drop=("aspp_rates", "vortex_kernels"))
    resumed = train(dict(args, output_dir=str(tmp_path / "os8"), output_stride=8,
                         freeze_batch_norm=1, resume="auto", max_iter=2))["checkpoint"]
    assert load_checkpoint(resumed).iteration == 2
    assert load_checkpoint(resumed).model_config["vortex_kernels"] == [3, 9, 27]
