"""The multi-device step's other choices: the kvstore, reading the loss only at the log
interval, labelled pixels counted on the device, and AMP skipping a step whose loss overflows."""

from __future__ import annotations

import json
import os

import mxnet as mx
import numpy as np
import pytest

from gluon_deeplab.models import build_model
from gluon_deeplab.params import parameter_arrays
from gluon_deeplab.training import step as step_module
from gluon_deeplab.training import train
from gluon_deeplab.training.loss import SegmentationLoss, count_valid_pixels
from gluon_deeplab.training.mixed_precision import init_amp_trainer
from gluon_deeplab.training.multi_device import (
    check_nccl,
    choose_kvstore,
    distributed_worker,
    nccl_available,
    nccl_launch_mode,
)
from gluon_deeplab.training.optim import make_trainer
from gluon_deeplab.training.step import forward_backward


def run_settings(data_dir, output_dir, **overrides):
    settings = dict(dataset="synthetic", data_dir=data_dir, output_dir=str(output_dir),
                    base_architecture="resnet18_v2", crop_size=33, batch_size=2, max_iter=10,
                    checkpoint_interval=1000, val_interval=0, log_interval=5, num_workers=0,
                    progress=0, seed=0)
    settings.update(overrides)
    return settings


def test_kvstore_is_device_on_one_machine_also_on_several_gpus():
    gpus8, cpus2 = ["gpu"] * 8, ["cpu"] * 2
    name, why = choose_kvstore(None, gpus8, distributed=False)
    assert name == "device" and "--kvstore nccl" in why
    assert choose_kvstore(None, ["gpu"], distributed=False)[0] == "device"
    assert choose_kvstore(None, cpus2, distributed=False)[0] == "device"
    assert choose_kvstore(None, gpus8, distributed=True)[0] == "dist_device_sync"
    assert choose_kvstore(None, ["cpu"], distributed=True)[0] == "dist_sync"
    assert choose_kvstore("nccl", gpus8, distributed=False) == ("nccl", "--kvstore")
    assert choose_kvstore("dist_sync", gpus8, distributed=True)[0] == "dist_sync"


def test_nccl_kvstore_sets_parallel_launch_mode_unless_the_user_set_one():
    environ = {}
    line = nccl_launch_mode("nccl", environ)
    assert environ == {"NCCL_LAUNCH_MODE": "PARALLEL"} and "NCCL_LAUNCH_MODE=PARALLEL" in line
    mine = {"NCCL_LAUNCH_MODE": "GROUP"}
    assert nccl_launch_mode("nccl", mine) is None and mine == {"NCCL_LAUNCH_MODE": "GROUP"}
    untouched = {}
    assert nccl_launch_mode("device", untouched) is None and untouched == {}


def test_nccl_kvstore_needs_gpus_and_an_mxnet_with_nccl():
    check_nccl("nccl", ["gpu", "gpu"], nccl=True)
    check_nccl("device", ["cpu"], nccl=False)
    with pytest.raises(ValueError, match="--kvstore nccl sums gradients on GPUs only"):
        check_nccl("nccl", ["cpu", "cpu"], nccl=True)
    with pytest.raises(ValueError, match="built without NCCL"):
        check_nccl("nccl", ["gpu", "gpu"], nccl=False)


def test_train_kvstore_nccl_on_cpu_contexts_is_a_one_line_error_before_it_starts(
        data_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("NCCL_LAUNCH_MODE", raising=False)
    with pytest.raises(ValueError, match="--kvstore nccl") as err:
        train(run_settings(data_dir, tmp_path / "run", cpu_devices=2, kvstore="nccl"))
    assert len(str(err.value).splitlines()) == 1
    assert not (tmp_path / "run" / "log.jsonl").exists()


def test_kvstore_facts_of_this_machine(monkeypatch):
    assert nccl_available() is bool(mx.runtime.Features().is_enabled("NCCL"))
    monkeypatch.delenv("DMLC_ROLE", raising=False)
    assert not distributed_worker()
    monkeypatch.setenv("DMLC_ROLE", "worker")
    assert distributed_worker()


def test_labelled_pixels_are_counted_on_the_device_for_float_and_uint8_labels():
    labels = np.full((2, 5, 7), 255, dtype=np.uint8)
    labels[0, :3] = 1
    labels[1, 4, :] = 0
    for array in (mx.nd.array(labels, dtype="uint8", ctx=mx.cpu(1)),
                  mx.nd.array(labels, dtype="float32", ctx=mx.cpu(1))):
        count = count_valid_pixels(array)
        assert isinstance(count, mx.nd.NDArray) and count.context == mx.cpu(1)
        assert count.asscalar() == 3 * 7 + 7


def test_the_loss_is_read_from_the_device_only_at_the_log_interval(data_dir, tmp_path,
                                                                   monkeypatch):
    reads = []
    real = mx.nd.NDArray.asscalar

    def counted(self):
        reads.append(1)
        return real(self)

    monkeypatch.setattr(mx.nd.NDArray, "asscalar", counted)
    result = train(run_settings(data_dir, tmp_path / "run", max_iter=10, log_interval=5))
    assert len(reads) == 3  # the logs at iterations 5 and 10, and the last loss returned
    assert np.isfinite(result["last_loss"])
    with open(tmp_path / "run" / "log.jsonl", encoding="utf-8") as f:
        losses = [r["loss"] for r in map(json.loads, f) if r["kind"] == "train"]
    assert len(losses) == 2 and all(np.isfinite(losses))


def test_the_kvstore_gives_every_device_the_starting_weights_before_the_first_forward(
        data_dir, tmp_path, monkeypatch):
    # Gluon would do it inside the first step, with the first gradients already queued: with a
    # distributed kvstore a worker's pull of its starting weights then raced them (test_dist).
    events = []
    real_init, real_step = mx.gluon.Trainer._init_params, step_module._forward_backward
    monkeypatch.setattr(mx.gluon.Trainer, "_init_params",
                        lambda self: events.append("kvstore init") or real_init(self))
    monkeypatch.setattr(step_module, "_forward_backward",
                        lambda *args: events.append("forward") or real_step(*args))
    train(run_settings(data_dir, tmp_path / "run", max_iter=2, cpu_devices=2,
                       freeze_batch_norm=1))
    assert events == ["kvstore init", "forward", "forward"]


class OverflowingLoss(SegmentationLoss):
    """The loss plus +inf: a non-finite loss with finite gradients (forced overflow)."""

    def __call__(self, outputs, label, normalizer):
        return super().__call__(outputs, label, normalizer) + float("inf")


def test_a_nonfinite_amp_loss_skips_the_step_and_halves_the_loss_scale():
    net = build_model(3, "resnet18_v2", "aspp", 16, ctx=[mx.cpu(0)])
    trainer = init_amp_trainer(make_trainer(net, 0.05, 1e-4))
    scaler = trainer._amp_loss_scaler
    images = mx.nd.random.normal(shape=(2, 3, 33, 33))
    labels = mx.nd.array(np.random.default_rng(0).integers(0, 3, (2, 33, 33)))
    before = {k: v.asnumpy() for k, v in parameter_arrays(net).items()}
    scale = scaler.loss_scale

    loss = forward_backward(net, OverflowingLoss(), images, labels, [mx.cpu(0)],
                            amp_trainer=trainer)
    trainer.step(1)
    assert not np.isfinite(loss.asscalar())
    assert scaler.last_skipped and scaler.skipped == 1
    weights = {k: v.asnumpy() for k, v in parameter_arrays(net).items()}
    learned = [k for k in before if not k.endswith(("running_mean", "running_var"))]
    assert all(np.array_equal(weights[k], before[k]) for k in learned)

    forward_backward(net, SegmentationLoss(), images, labels, [mx.cpu(0)], amp_trainer=trainer)
    trainer.step(1)
    assert scaler.loss_scale == scale / 2 and not scaler.last_skipped
    assert not np.array_equal(parameter_arrays(net)["classifier.weight"].asnumpy(),
                              before["classifier.weight"])


def test_an_amp_run_skips_a_step_whose_loss_overflows_instead_of_stopping(
        data_dir, tmp_path, monkeypatch):
    """AMP's training path (loss scaler, scaled backward) on an fp32 model: this CPU cannot
    run bf16, so ``init_amp`` is replaced; the third step's loss overflows."""
    import gluon_deeplab.training.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "init_amp", lambda ctxs: "float16")
    real, steps = trainer_module.forward_backward, []

    def third_overflows(net, loss_fn, *args, **kwargs):
        steps.append(1)
        assert kwargs["amp_trainer"] is not None
        return real(net, OverflowingLoss(0) if len(steps) == 3 else loss_fn, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "forward_backward", third_overflows)
    out = tmp_path / "amp"
    result = train(run_settings(data_dir, out, amp=True, max_iter=10, log_interval=5))
    assert result["iteration"] == 10 and np.isfinite(result["last_loss"])
    with open(out / "log.jsonl", encoding="utf-8") as f:
        logged = [r for r in map(json.loads, f) if r["kind"] == "train"]
    assert [r["amp_skipped"] for r in logged] == [1, 0]
    assert logged[0]["loss_scale"] == 2.0 ** 15 and np.isfinite(logged[0]["loss"])
    assert os.path.isfile(out / "final.params")
