"""Backbone, heads and DeepLabV3: structure, strict pretrained loading, any-size hybridization."""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd
from mxnet.gluon import nn
from mxnet.gluon.model_zoo import vision

import gluon_deeplab as gd
from gluon_deeplab.deploy.export_format import export_model, load_exported
from gluon_deeplab.models import ASPP, VortexPooling
from gluon_deeplab.models.resnet_v2 import unit_dilations


def _image(h, w, n=1):
    return mx.nd.random.uniform(-1, 1, shape=(n, 3, h, w))


def test_zoo_resnet50_v2_file_loads_strictly_into_backbone(zoo_resnet50_v2_file):
    path, zoo = zoo_resnet50_v2_file
    backbone = gd.build_backbone("resnet_v2_50", output_stride=16, pretrained=path)
    zoo_params = zoo._collect_params_with_prefix()
    for name, param in backbone._collect_params_with_prefix().items():
        np.testing.assert_array_equal(param.data().asnumpy(), zoo_params[name].data().asnumpy())


def test_model_with_pretrained_backbone_holds_the_zoo_weights(zoo_resnet50_v2_file):
    path, zoo = zoo_resnet50_v2_file
    net = gd.build_model(21, "resnet50_v2", "aspp", 16, pretrained_backbone=path)
    np.testing.assert_array_equal(net.backbone.features[8][2].conv2.weight.data().asnumpy(),
                                  zoo.features[8][2].conv2.weight.data().asnumpy())


@pytest.mark.parametrize("tamper, message", [
    ("drop", "missing features.6.1.conv2.weight"),
    ("rename", "unexpected features.6.1.conv2.weight_renamed"),
    ("reshape", "features.6.1.conv2.weight has shape (128, 128, 1, 1)"),
])
def test_tampered_pretrained_file_is_an_error_naming_the_array(
        zoo_resnet50_v2_file, tmp_path, tamper, message):
    arrays = mx.nd.load(zoo_resnet50_v2_file[0])
    key = "features.6.1.conv2.weight"
    if tamper == "drop":
        del arrays[key]
    elif tamper == "rename":
        arrays[key + "_renamed"] = arrays.pop(key)
    else:
        arrays[key] = mx.nd.zeros((128, 128, 1, 1))
    bad = str(tmp_path / "tampered.params")
    mx.nd.save(bad, arrays)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        gd.build_backbone("resnet50_v2", pretrained=bad)


def test_pretrained_file_that_is_not_a_parameter_file_is_an_error(tmp_path):
    bad = tmp_path / "weights.params"
    bad.write_bytes(b"not a parameter file")
    with pytest.raises(ValueError, match="weights.params: not an MXNet parameter file"):
        gd.build_backbone("resnet18_v2", pretrained=str(bad))
    with pytest.raises(FileNotFoundError, match="nowhere.params"):
        gd.build_backbone("resnet18_v2", pretrained=str(tmp_path / "nowhere.params"))


def test_output_stride_32_reproduces_model_zoo_features(zoo_resnet50_v2_file):
    path, zoo = zoo_resnet50_v2_file
    backbone = gd.build_backbone("resnet50_v2", output_stride=32, pretrained=path)
    x = _image(64, 96)
    expected = zoo.features[:11](x).asnumpy()
    np.testing.assert_allclose(backbone(x).asnumpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet18_v2", "resnet34_v2"])
def test_output_stride_32_reproduces_model_zoo_basic_block_networks(tmp_path, name):
    zoo = getattr(vision, name)()
    zoo.initialize(mx.init.Xavier())
    x = _image(64, 64)
    zoo(x)
    path = str(tmp_path / f"{name}.params")
    zoo.save_parameters(path)
    backbone = gd.build_backbone(name, output_stride=32, pretrained=path)
    np.testing.assert_allclose(backbone(x).asnumpy(), zoo.features[:11](x).asnumpy(),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("output_stride, stage3, stage4", [
    (16, [1, 1, 1, 1, 1, 1], [1, 4, 8]),
    (8, [1, 2, 2, 2, 2, 2], [2, 8, 16]),
    (32, [1, 1, 1, 1, 1, 1], [1, 1, 1]),
])
def test_feature_shape_and_unit_dilations_follow_output_stride(output_stride, stage3, stage4):
    backbone = gd.build_backbone("resnet50_v2", output_stride=output_stride)
    assert backbone.stage_dilations[2] == stage3
    assert backbone.stage_dilations[3] == stage4
    for unit, dilation in zip(backbone.features[8], stage4):
        assert unit.conv2._kwargs["dilate"] == (dilation, dilation)
        assert unit.conv2._kwargs["pad"] == (dilation, dilation)
    strides = [stage[0].conv2._kwargs["stride"] for stage in list(backbone.features)[5:9]]
    assert strides == {32: [(1, 1), (2, 2), (2, 2), (2, 2)], 16: [(1, 1), (2, 2), (2, 2), (1, 1)],
                       8: [(1, 1), (2, 2), (1, 1), (1, 1)]}[output_stride]
    assert backbone(_image(64, 64)).shape == (1, 2048, 64 // output_stride, 64 // output_stride)


def test_unit_dilations_without_multi_grid_keep_previous_dilation_in_first_unit():
    assert unit_dilations(3, 2, 1) == [1, 2, 2]
    assert unit_dilations(3, 4, 2, (1, 2, 4)) == [2, 8, 16]


def test_backbone_aliases_and_unknown_names():
    assert gd.build_backbone("resnet_v2_18").backbone_name == "resnet18_v2"
    with pytest.raises(ValueError, match="unknown backbone 'resnet_v3_50'"):
        gd.build_model(backbone="resnet_v3_50")
    with pytest.raises(ValueError, match="unknown head 3"):
        gd.build_model(backbone="resnet18_v2", head=3)
    with pytest.raises(ValueError, match="output_stride must be 8, 16 or 32, got 4"):
        gd.build_model(backbone="resnet18_v2", output_stride=4)


def _conv_bn_relu_triples(block):
    """(conv, bn, relu) children of every HybridSequential in ``block``."""
    found = []

    def visit(b):
        if isinstance(b, nn.HybridSequential):
            kids = list(b)
            for i, kid in enumerate(kids[:-2]):
                if isinstance(kid, nn.Conv2D) and isinstance(kids[i + 1], nn.BatchNorm):
                    found.append((kid, kids[i + 1], kids[i + 2]))
    block.apply(visit)
    return found


@pytest.mark.parametrize("head_cls, branches", [(ASPP, 5), (VortexPooling, 5)])
def test_every_head_conv_is_bias_free_and_followed_by_bn_and_relu(head_cls, branches):
    head = head_cls(512)
    convs = []
    head.apply(lambda b: convs.append(b) if isinstance(b, nn.Conv2D) else None)
    triples = _conv_bn_relu_triples(head)
    assert len(convs) == branches + 1 == len(triples)
    for conv, _, relu in triples:
        assert conv.bias is None
        assert isinstance(relu, nn.Activation) and relu._act_type == "relu"


def test_aspp_rates_follow_output_stride():
    assert gd.build_model(backbone="resnet18_v2", output_stride=16).head.rates == (6, 12, 18)
    assert gd.build_model(backbone="resnet18_v2", output_stride=8).head.rates == (12, 24, 36)
    assert gd.build_model(backbone="resnet18_v2", head=2).head.kernels == (3, 9, 27)


@pytest.mark.parametrize("head", ["aspp", "vortex", 1, 2])
def test_head_forward_and_backward_reach_every_trainable_parameter(head):
    net = gd.build_model(5, "resnet18_v2", head, 16)
    x = _image(48, 64, n=2)
    with autograd.record():
        loss = net(x).mean()
    loss.backward()
    assert net(x).shape == (2, 5, 48, 64)
    for name, param in net.collect_params().items():
        if param.grad_req != "null":
            assert np.abs(param.grad().asnumpy()).sum() > 0, name


def test_vortex_pooling_excludes_padding_from_the_average():
    head = VortexPooling(4, kernels=(3,))
    head.initialize()
    branch = head.branches[2]
    ones = mx.nd.ones((1, 4, 5, 5))
    pooled = mx.nd.Pooling(ones, kernel=(3, 3), stride=(1, 1), pad=(1, 1), pool_type="avg",
                           count_include_pad=False)
    np.testing.assert_allclose(pooled.asnumpy(), 1.0)
    assert branch.kernel == 3 and branch.conv[0]._kwargs["dilate"] == (3, 3)


@pytest.mark.parametrize("head", ["aspp", "vortex"])
def test_hybridized_model_gives_the_imperative_logits_at_any_input_size(head):
    net = gd.build_model(3, "resnet18_v2", head, 16)
    inputs = [_image(h, w) for h, w in [(65, 65), (48, 80), (75, 50)]]
    imperative = [net(x).asnumpy() for x in inputs]
    net.hybridize(static_alloc=True)
    for x, expected in zip(inputs, imperative):  # one cached graph, re-planned per shape
        out = net(x)
        assert out.shape == (1, 3) + x.shape[2:]
        np.testing.assert_allclose(out.asnumpy(), expected, rtol=1e-4, atol=1e-4)


def test_hybridized_and_imperative_logits_agree():
    net = gd.build_model(3, "resnet18_v2", "vortex", 8)
    x = _image(57, 41)
    imperative = net(x).asnumpy()
    net.hybridize()
    np.testing.assert_allclose(net(x).asnumpy(), imperative, rtol=1e-4, atol=1e-4)


def test_aux_head_returns_logits_at_input_size():
    net = gd.build_model(4, "resnet18_v2", "aspp", 16, aux=True)
    net.hybridize()
    logits, aux = net(_image(40, 56))
    assert logits.shape == aux.shape == (1, 4, 40, 56)


def test_export_reloads_with_predict_py_probabilities_at_several_sizes(
        tmp_path, predict_py_probabilities):
    net = gd.build_model(4, "resnet18_v2", "aspp", 16)
    files = export_model(net, str(tmp_path / "deeplab"))
    assert [f.rsplit("/", 1)[-1] for f in files] == ["deeplab-symbol.json", "deeplab-0000.params"]
    reloaded = load_exported(str(tmp_path / "deeplab"))
    plain = mx.gluon.SymbolBlock.imports(files[0], ["data"], files[1])
    for h, w in [(64, 64), (37, 91), (100, 60)]:
        x = _image(h, w)
        expected = predict_py_probabilities(net, x)
        for block in (reloaded, plain):
            got = mx.nd.softmax(block(x), axis=1).asnumpy()
            assert np.abs(got - expected).max() < 1e-4
    with pytest.raises(FileExistsError, match="deeplab-symbol.json exists"):
        export_model(net, str(tmp_path / "deeplab"))


def test_os16_parameters_load_into_os8_model(tmp_path):
    os16 = gd.build_model(4, "resnet18_v2", "vortex", 16)
    path = str(tmp_path / "os16.params")
    os16.save_parameters(path)
    os8 = gd.build_model(4, "resnet18_v2", "vortex", 8)
    os8.load_parameters(path)  # strict: no allow_missing / ignore_extra
    assert sorted(os8._collect_params_with_prefix()) == sorted(os16._collect_params_with_prefix())
    x = _image(32, 32)
    assert os8(x).shape == os16(x).shape == (1, 4, 32, 32)


def test_freeze_bn_uses_global_statistics_and_stops_bn_gradients():
    net = gd.build_model(3, "resnet18_v2", "aspp", 16, freeze_bn=True)
    bns = []
    net.apply(lambda b: bns.append(b) if isinstance(b, nn.BatchNorm) else None)
    assert bns and all(bn._kwargs["use_global_stats"] for bn in bns)
    assert all(p.grad_req == "null" for bn in bns for p in bn.params.values())
    before = {k: v.data().asnumpy().copy() for k, v in net.collect_params().items()}
    with autograd.record():
        net(_image(32, 32, n=2)).mean().backward()
    for bn in bns:
        for name, param in bn.params.items():
            np.testing.assert_array_equal(param.data().asnumpy(), before[name])


def test_syncbn_model_has_the_same_parameter_names():
    sync = gd.build_model(3, "resnet18_v2", "aspp", 16, syncbn_devices=2)
    plain = gd.build_model(3, "resnet18_v2", "aspp", 16)
    assert sorted(sync._collect_params_with_prefix()) == sorted(plain._collect_params_with_prefix())
    kinds = set()
    sync.apply(lambda b: kinds.add(type(b).__name__))
    assert "SyncBatchNorm" in kinds
