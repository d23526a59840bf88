"""A head defined outside the package, registered through the public API, goes through every
command: train, save, resume, evaluate, export fp32 and INT8 (the steps of docs/add-a-head.md)."""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn
from mxnet.gluon.nn import HybridBlock

from gluon_deeplab.checkpoint import load_checkpoint
from gluon_deeplab.data import get_dataset, make_synthetic_dataset
from gluon_deeplab.deploy import export_checkpoint, read_meta
from gluon_deeplab.deploy.int8 import excluded_layer_names
from gluon_deeplab.evaluation import predict_probabilities
from gluon_deeplab.evaluation.run import run_eval
from gluon_deeplab.models import (
    HeadSpec,
    build_model,
    head_names,
    model_from_checkpoint,
    register_head,
    registry,
)
from gluon_deeplab.training import TrainConfig, train
from gluon_deeplab.training.cli import build_parser


class ToyHead(HybridBlock):
    """One 3x3 atrous conv -> BN -> ReLU, plus a global-pooling 1x1 conv added on top."""

    def __init__(self, in_channels: int, rates, separable: bool = False,
                 norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        self.rates, self.separable = tuple(rates), separable
        with self.name_scope():
            self.conv = nn.Conv2D(256, 3, padding=self.rates[0], dilation=self.rates[0],
                                  in_channels=in_channels, use_bias=False)
            self.bn = norm_layer(in_channels=256, **(norm_kwargs or {}))
            self.pool = nn.Conv2D(256, 1, in_channels=in_channels)

    def hybrid_forward(self, F, x):
        pooled = self.pool(F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg"))
        return F.broadcast_add(F.relu(self.bn(self.conv(x))), pooled)


TOY = HeadSpec(
    name="toy", title="Toy", aliases=("t",), block_type=ToyHead,
    defaults=lambda stride: {"toy_rates": (32 // stride,)},
    build=lambda in_channels, settings, **kw: ToyHead(in_channels, settings["toy_rates"], **kw),
    record=lambda head: {"toy_rates": list(head.rates)},
    fp32_layers=lambda head: [head.pool.prefix])


@pytest.fixture(scope="module")
def toy_head():
    """The toy head registered for this module only (the registry is restored afterwards)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "_HEADS", dict(registry._HEADS))
        patch.setattr(registry, "_ALIASES", dict(registry._ALIASES))
        yield register_head(TOY)


def test_a_head_registered_outside_the_package_trains_resumes_evaluates_and_exports(
        toy_head, tmp_path):
    assert "toy" in head_names()
    assert build_parser().parse_args(["--aspp_or_vortex", "t"]).aspp_or_vortex == "t"
    assert build_parser().parse_args(["--aspp_or_vortex", "2"]).aspp_or_vortex == 2
    root = make_synthetic_dataset(str(tmp_path / "data"), num_train=4, num_val=2, size=(48, 64),
                                  num_classes=3, seed=0)
    run = dict(dataset="synthetic", data_dir=root, output_dir=str(tmp_path / "run"),
               aspp_or_vortex="toy", base_architecture="resnet18_v2", crop_size=48,
               batch_size=2, max_iter=2, checkpoint_interval=1, val_interval=0, num_workers=0,
               progress=0, seed=1)
    first = load_checkpoint(train(run)["checkpoint"])
    assert first.model_config["head"] == "toy" and first.model_config["toy_rates"] == [2]
    resumed = train(dict(run, max_iter=3, resume=first.path, output_dir=str(tmp_path / "more")))
    ckpt = load_checkpoint(resumed["checkpoint"])
    assert ckpt.iteration == 3
    net, _ = model_from_checkpoint(ckpt, output_stride=8)  # the default rate moves with it
    assert isinstance(net.head, ToyHead) and net.head.rates == (4,)

    result = run_eval({"checkpoint": ckpt.path, "dataset": "synthetic", "data_dir": root,
                       "no_progress": True})
    assert 0.0 <= result["miou"] <= 1.0
    fp32 = export_checkpoint(ckpt, str(tmp_path / "fp32"))
    assert read_meta(str(tmp_path / "fp32"))["head_settings"] == {"toy_rates": [2]}
    bare = mx.gluon.SymbolBlock.imports(fp32["symbol"], ["data"], fp32["params"])
    x = mx.nd.random.uniform(shape=(1, 3, 48, 64))
    reference, _ = model_from_checkpoint(ckpt)
    probabilities = mx.nd.softmax(bare(x), axis=1).asnumpy()[0]  # the export pads like predict
    expected = predict_probabilities(reference, x[0], mx.cpu(), buckets=False)
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)

    assert excluded_layer_names(reference, ["image_pooling"]) == [reference.head.pool.name + "_fwd"]
    calib = get_dataset("synthetic", root, "train", mode="val")
    export_checkpoint(ckpt, str(tmp_path / "int8"), dtype="int8", calib_dataset=calib,
                      num_calib_images=2, calib_size=(48, 64),
                      exclude=("first_conv", "classifier", "image_pooling"))
    meta = read_meta(str(tmp_path / "int8"))
    assert meta["precision"] == "int8" and meta["head"] == "toy"
    int8 = mx.gluon.SymbolBlock.imports(str(tmp_path / "int8-symbol.json"), ["data"],
                                        str(tmp_path / "int8-0000.params"))
    assert int8(x).shape == (1, 3, 48, 64)


def test_unknown_and_unrecorded_heads_are_one_line_errors(toy_head, tmp_path):
    with pytest.raises(ValueError, match=r"--aspp_or_vortex must be a registered head.*'toy'"):
        TrainConfig(aspp_or_vortex="nope").check()
    with pytest.raises(ValueError, match="head name 't' is taken by the toy head"):
        register_head(HeadSpec(name="t", title="T", block_type=ToyHead, defaults=TOY.defaults,
                               build=TOY.build, record=TOY.record))
    with pytest.raises(ValueError, match="only the toy head's settings .toy_rates. may be given, "
                                         "got aspp_rates for the ASPP head"):
        build_model(3, "resnet18_v2", "toy", aspp_rates=(6, 12, 18))
    from gluon_deeplab.checkpoint import save_checkpoint
    path = save_checkpoint(str(tmp_path / "toy.params"), build_model(3, "resnet18_v2", "toy"))
    for change, message in ((lambda c: c.update(head="gone"), "unknown head 'gone'"),
                            (lambda c: c.pop("head"), "its model record names no head"),
                            (lambda c: c.pop("toy_rates"), "no 'toy_rates' for the toy head")):
        ckpt = load_checkpoint(path)
        change(ckpt.model_config)
        with pytest.raises(ValueError, match=f"toy.params: cannot rebuild its model.*{message}"):
            model_from_checkpoint(ckpt)
