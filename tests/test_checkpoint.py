"""The single checkpoint format: round trip, self-description, atomic writes, clear errors."""

from __future__ import annotations

import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

import gluon_deeplab as gd
from gluon_deeplab.checkpoint import load_checkpoint, save_checkpoint
from gluon_deeplab.files import atomic_write
from gluon_deeplab.models import model_from_checkpoint
from gluon_deeplab.training.trainer_state import restore_trainer_states, trainer_states


def _trained_step(net):
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9})
    with autograd.record():
        out = net(mx.nd.random.uniform(shape=(2, 3, 32, 32)))
        loss = sum(o.mean() for o in out) if isinstance(out, tuple) else out.mean()
    loss.backward()
    trainer.step(2)
    return trainer


def test_checkpoint_round_trip_rebuilds_model_and_optimizer(tmp_path):
    net = gd.build_model(4, "resnet18_v2", "vortex", 16, aux=True)
    trainer = _trained_step(net)
    path = save_checkpoint(str(tmp_path / "ckpt.params"), net, iteration=7,
                           optimizer_state=trainer_states(trainer, net),
                           args={"lr": 0.1}, best_miou=0.5)
    ckpt = load_checkpoint(path)
    assert ckpt.iteration == 7 and ckpt.args == {"lr": 0.1} and ckpt.best_miou == 0.5
    assert ckpt.model_config == {"num_classes": 4, "backbone": "resnet18_v2", "head": "vortex",
                                 "output_stride": 16, "aux": True, "multi_grid": [1, 2, 4],
                                 "aspp_rates": None, "vortex_kernels": [3, 9, 27],
                                 "decoder": False, "separable": False}

    rebuilt, _ = model_from_checkpoint(path, aux=True)
    x = mx.nd.random.uniform(shape=(1, 3, 40, 40))
    np.testing.assert_allclose(rebuilt(x)[0].asnumpy(), net(x)[0].asnumpy(), rtol=1e-5, atol=1e-5)

    fresh = gd.build_model(4, "resnet18_v2", "vortex", 16, aux=True)
    fresh_trainer = gluon.Trainer(fresh.collect_params(), "sgd",
                                  {"learning_rate": 0.1, "momentum": 0.9})
    restore_trainer_states(fresh_trainer, ckpt.optimizer_states, fresh)
    momentum = fresh_trainer._updaters[0].states
    assert momentum and any(np.abs(s.asnumpy()).sum() > 0 for s in momentum.values())


def test_checkpoint_drops_only_the_aux_head_for_inference_and_overrides_output_stride(tmp_path):
    net = gd.build_model(3, "resnet18_v2", "aspp", 16, aux=True)
    path = save_checkpoint(str(tmp_path / "c.params"), net)
    inference, _ = model_from_checkpoint(path, output_stride=8)
    assert inference.aux_head is None and inference.backbone.output_stride == 8
    assert inference.head.rates == (12, 24, 36)


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.params"):
        load_checkpoint(str(tmp_path / "missing.params"))
    plain = str(tmp_path / "plain.params")
    gd.build_model(3, "resnet18_v2").save_parameters(plain)
    with pytest.raises(ValueError, match="plain.params is not a gluon-deeplab checkpoint"):
        load_checkpoint(plain)
    text = tmp_path / "text.params"
    text.write_text("hello")
    with pytest.raises(ValueError, match="text.params is not a gluon-deeplab checkpoint"):
        load_checkpoint(str(text))


def test_checkpoint_with_other_weights_is_a_strict_error(tmp_path):
    path = save_checkpoint(str(tmp_path / "c.params"), gd.build_model(3, "resnet18_v2"))
    ckpt = load_checkpoint(path)
    ckpt.params["classifier.weight"] = mx.nd.zeros((5, 256, 1, 1))
    with pytest.raises(ValueError, match="classifier.weight has shape"):
        model_from_checkpoint(ckpt)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "ckpt.params"
    target.write_bytes(b"old")

    def failing(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(str(target), failing)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["ckpt.params"]
