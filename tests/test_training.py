"""Trainer: loss, LR schedule, parameter groups, multi-device step, frozen BN, checkpoints, CLI."""

from __future__ import annotations

import json
import math
import os
import re

import mxnet as mx
import numpy as np
import pytest

from gluon_deeplab import build_model
from gluon_deeplab.checkpoint import load_checkpoint
from gluon_deeplab.data import make_synthetic_dataset
from gluon_deeplab.params import assign_parameters, parameter_arrays
from gluon_deeplab.training import (
    SegmentationLoss,
    TrainingDiverged,
    TrainingError,
    configure_parameter_groups,
    forward_backward,
    iterations_for_epochs,
    make_trainer,
    pixel_cross_entropy_sum,
    poly_lr,
    prune_checkpoints,
    train,
)
from gluon_deeplab.training.cli import build_parser, main

BN_SUFFIXES = ("gamma", "beta", "running_mean", "running_var")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synthetic"))
    make_synthetic_dataset(root, num_train=8, num_val=3, size=(48, 64), num_classes=3, seed=0)
    return root


def run_args(data_dir, output_dir, **overrides):
    args = dict(dataset="synthetic", data_dir=data_dir, output_dir=str(output_dir),
                base_architecture="resnet18_v2", crop_size=48, batch_size=2, max_iter=6,
                checkpoint_interval=2, keep_checkpoints=2, val_interval=0, log_interval=1,
                num_workers=0, initial_learning_rate=5e-3, progress=0, seed=0)
    args.update(overrides)
    return args


def small_net(**kwargs):
    kwargs.setdefault("ctx", [mx.cpu(0)])
    return build_model(3, "resnet18_v2", **kwargs)


def random_batch(n=4, size=32, num_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    images = mx.nd.array(rng.standard_normal((n, 3, size, size)), dtype=np.float32)
    labels = rng.integers(0, num_classes, (n, size, size)).astype(np.float32)
    return images, labels


def without_dropout(net):
    """Dropout draws different masks per device; switched off where updates are compared."""
    def visit(block):
        if isinstance(block, mx.gluon.nn.Dropout):
            block._rate = 0.0
    net.apply(visit)
    return net


def read_log(output_dir):
    with open(os.path.join(output_dir, "log.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# -- a short real run, checked from several sides --------------------------------------------
@pytest.fixture(scope="module")
def short_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    result = train(run_args(data_dir, out, max_iter=16, batch_size=4, val_interval=8,
                            checkpoint_interval=4, initial_learning_rate=0.01))
    return result, str(out)


def test_a_run_leaves_its_config_as_given_and_logs_what_it_decided(data_dir, tmp_path):
    import dataclasses

    from gluon_deeplab.training import TrainConfig

    config = TrainConfig.from_mapping(run_args(data_dir, tmp_path / "out", max_iter=2,
                                               checkpoint_interval=2))
    before = dataclasses.asdict(config)
    train(config)
    assert dataclasses.asdict(config) == before
    start = next(r for r in read_log(tmp_path / "out") if r["kind"] == "start")
    assert start["asked"]["train_split"] is None and start["asked"]["syncbn"] is None
    assert start["decided"] == {"syncbn": False, "kvstore": "device", "data_dir": data_dir,
                                "train_split": "train", "val_dataset": None}
    assert start["args"]["train_split"] == "train" and start["args"]["syncbn"] is False
    assert load_checkpoint(str(tmp_path / "out" / "final.params")).args["kvstore"] == "device"


def test_the_command_line_checks_the_settings_once(data_dir, tmp_path, monkeypatch):
    from gluon_deeplab.training import TrainConfig, trainer

    calls = {"check": 0, "contexts": 0}
    check, contexts = TrainConfig.check, trainer.resolve_contexts

    def counted_check(self):
        calls["check"] += 1
        return check(self)

    def counted_contexts(*args, **kwargs):
        calls["contexts"] += 1
        return contexts(*args, **kwargs)

    monkeypatch.setattr(TrainConfig, "check", counted_check)
    monkeypatch.setattr(trainer, "resolve_contexts", counted_contexts)
    flags = run_args(data_dir, tmp_path / "out", max_iter=1, checkpoint_interval=1)
    argv = [part for key, value in flags.items() for part in (f"--{key}", str(value))]
    assert main(argv) == 0
    assert calls == {"check": 1, "contexts": 1}


def test_training_loss_falls(short_run):
    _, out = short_run
    losses = [r["loss"] for r in read_log(out) if r["kind"] == "train"]
    assert len(losses) == 16
    assert np.mean(losses[-4:]) < 0.9 * np.mean(losses[:4]), losses


def test_logged_learning_rate_follows_the_poly_curve(short_run):
    _, out = short_run
    logged = [(r["iteration"], r["lr"]) for r in read_log(out) if r["kind"] == "train"]
    for iteration, lr in logged:  # the record of step k carries the lr that step used
        assert lr == pytest.approx(poly_lr(iteration - 1, 16, 0.01, 0.0), rel=1e-9)
    assert poly_lr(0, 100, 0.01, 0.001) == pytest.approx(0.01)
    assert poly_lr(50, 100, 0.01, 0.001) == pytest.approx(0.001 + 0.009 * 0.5 ** 0.9)
    assert poly_lr(100, 100, 0.01, 0.001) == pytest.approx(0.001)


def test_run_keeps_last_k_checkpoints_best_final_log_and_curves(short_run):
    result, out = short_run
    names = sorted(os.listdir(out))
    # checkpoints at 4, 8, 12 (16 is final.params); keep_checkpoints=2
    assert [n for n in names if n.startswith("checkpoint-")] == [
        "checkpoint-00000008.params", "checkpoint-00000012.params"]
    assert {"best.params", "final.params", "log.jsonl", "curves.png"} <= set(names)
    assert not [n for n in names if n.startswith(".tmp-")]
    final = load_checkpoint(result["checkpoint"])
    assert final.iteration == result["iteration"] == 16
    assert final.optimizer_states and final.args["max_iter"] == 16
    vals = [r for r in read_log(out) if r["kind"] == "val"]
    assert [r["iteration"] for r in vals] == [8, 16]
    assert result["best_miou"] == pytest.approx(max(r["miou"] for r in vals))
    assert load_checkpoint(os.path.join(out, "best.params")).best_miou == result["best_miou"]
    with open(os.path.join(out, "curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_fresh_run_refuses_an_output_dir_holding_a_run(short_run, data_dir, capsys):
    _, out = short_run
    before = os.path.getmtime(os.path.join(out, "final.params"))
    with pytest.raises(TrainingError, match="already holds a run.*--resume auto"):
        train(run_args(data_dir, out))
    code = main(["--dataset", "synthetic", "--data_dir", data_dir, "--output_dir", out,
                 "--base_architecture", "resnet18_v2", "--num_workers", "0"])
    assert code == 1 and "already holds a run" in capsys.readouterr().err
    assert os.path.getmtime(os.path.join(out, "final.params")) == before


def test_resume_of_a_finished_run_changes_nothing(short_run, data_dir):
    result, out = short_run
    before = os.path.getmtime(result["checkpoint"])
    again = train(run_args(data_dir, out, max_iter=16, batch_size=4, resume="auto"))
    assert again["iteration"] == 16
    assert os.path.getmtime(result["checkpoint"]) == before


# -- loss ---------------------------------------------------------------------------------------
def test_cross_entropy_ignores_255_and_normalizes_by_labelled_pixels():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    label = rng.integers(0, 3, (2, 4, 5)).astype(np.float32)
    label[0, :2] = 255
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    valid = label != 255
    n, h, w = np.nonzero(valid)
    expected = -logp[n, label[valid].astype(int), h, w].sum()
    got = pixel_cross_entropy_sum(mx.nd.array(logits), mx.nd.array(label)).asscalar()
    assert got == pytest.approx(expected, rel=1e-5)
    mean = SegmentationLoss()(mx.nd.array(logits), mx.nd.array(label), int(valid.sum()))
    assert mean.asscalar() == pytest.approx(expected / valid.sum(), rel=1e-5)
    all_ignored = mx.nd.full((2, 4, 5), 255)
    assert SegmentationLoss()(mx.nd.array(logits), all_ignored, 0).asscalar() == 0.0


def test_aux_weight_changes_the_gradient():
    net = without_dropout(small_net(aux=True))
    images, labels = random_batch()
    grads = {}
    for weight in (0.0, 0.4, 0.8):
        forward_backward(net, SegmentationLoss(aux_weight=weight), images, mx.nd.array(labels),
                         [mx.cpu(0)])
        grads[weight] = {k: p.grad().asnumpy().copy()
                         for k, p in net._collect_params_with_prefix().items()
                         if p.grad_req != "null"}
    aux_key = next(k for k in grads[0.4] if k.startswith("aux_head.") and k.endswith("weight"))
    assert np.abs(grads[0.0][aux_key]).max() == 0
    assert np.abs(grads[0.4][aux_key]).max() > 0
    stage3 = next(k for k in grads[0.4] if k.startswith("backbone.features.7.")
                  and k.endswith("weight"))
    # linear in the weight: g(0.8) - g(0.4) == g(0.4) - g(0)
    np.testing.assert_allclose(grads[0.8][stage3] - grads[0.4][stage3],
                               grads[0.4][stage3] - grads[0.0][stage3], rtol=1e-3, atol=1e-5)
    assert np.abs(grads[0.4][stage3] - grads[0.0][stage3]).max() > 0


# -- optimizer ------------------------------------------------------------------------------------
def test_weight_decay_spares_bn_and_biases_and_head_lr_multiplier_applies():
    net = small_net()
    trainable = configure_parameter_groups(net, head_lr_mult=10.0)
    params = net._collect_params_with_prefix()
    assert {id(p) for p in trainable} == {id(p) for p in params.values() if p.grad_req != "null"}
    lr, wd = 0.1, 0.01
    trainer = make_trainer(net, lr, wd, head_lr_mult=10.0)
    before = {k: v.asnumpy() for k, v in parameter_arrays(net).items()}
    images, _ = random_batch()
    ignored = mx.nd.full((4, 32, 32), 255)  # no labelled pixel: zero loss, zero gradient
    forward_backward(without_dropout(net), SegmentationLoss(), images, ignored, [mx.cpu(0)])
    trainer.step(1)
    after = {k: v.asnumpy() for k, v in parameter_arrays(net).items()}
    checked = set()
    for name, param in params.items():
        if param.grad_req == "null":
            continue
        if name.endswith(("gamma", "beta", "bias")):
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)
        else:
            mult = 1.0 if name.startswith("backbone.") else 10.0
            np.testing.assert_allclose(after[name], before[name] * (1 - lr * mult * wd),
                                       rtol=1e-5, atol=1e-8, err_msg=name)
        checked.add(name.split(".")[0] + ":" + name.rsplit(".", 1)[-1])
    assert {"backbone:weight", "backbone:gamma", "head:weight", "classifier:bias",
            "classifier:weight"} <= checked


# -- devices -----------------------------------------------------------------------------------
def _one_step(ctxs, init, syncbn=False, freeze_bn=False):
    net = small_net(ctx=ctxs, freeze_bn=freeze_bn,
                    syncbn_devices=len(ctxs) if syncbn else 0)
    assign_parameters(net, init, "reference")
    without_dropout(net)
    trainer = make_trainer(net, 0.05, 1e-4)
    images, labels = random_batch(n=4, seed=3)
    labels[2:, :, 5:] = 255  # the second device's half is mostly unlabelled
    loss = forward_backward(net, SegmentationLoss(), images, mx.nd.array(labels),
                            ctxs).asscalar()
    # running statistics of every device, after one training-mode forward (and backward)
    stats = {k: [d.asnumpy() for d in p.list_data()]
             for k, p in net._collect_params_with_prefix().items()
             if k.endswith(("running_mean", "running_var"))}
    trainer.step(1)
    return loss, {k: v.asnumpy() for k, v in parameter_arrays(net).items()}, stats


@pytest.mark.parametrize("mode", ["freeze_bn", "syncbn"])
def test_two_cpu_contexts_make_the_same_update_as_one(mode):
    """BN statistics are per device: compared with frozen BN (global statistics), and with
    SyncBatchNorm (statistics of the whole batch) against plain BN on one device."""
    init = parameter_arrays(small_net())
    one_loss, one, one_stats = _one_step([mx.cpu(0)], init, freeze_bn=mode == "freeze_bn")
    two_loss, two, two_stats = _one_step([mx.cpu(0), mx.cpu(1)], init,
                                         syncbn=mode == "syncbn", freeze_bn=mode == "freeze_bn")
    # SyncBN: each device's running statistics are those of the whole batch on one device
    assert len(one_stats) > 40
    for name, (want,) in one_stats.items():
        assert len(two_stats[name]) == 2
        for got in two_stats[name]:
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)
    moved_stats = [k for k, (v,) in one_stats.items() if not np.allclose(v, init[k].asnumpy())]
    assert len(moved_stats) > 40 or mode == "freeze_bn"
    assert two_loss == pytest.approx(one_loss, rel=1e-5)
    for name in one:
        if mode == "freeze_bn":
            np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=2e-6, err_msg=name)
        elif not name.endswith(("running_mean", "running_var")):
            # SyncBatchNorm's float32 statistics: the update agrees to about 1 %.
            step_one = one[name] - init[name].asnumpy()
            step_two = two[name] - init[name].asnumpy()
            gap = np.linalg.norm(step_two - step_one)
            assert gap <= 0.03 * np.linalg.norm(step_one) + 1e-7, name
    moved = [k for k in one if not np.allclose(one[k], init[k].asnumpy())]
    assert any(k.startswith("backbone.") for k in moved)


def test_frozen_batch_norm_changes_no_bn_value():
    net = small_net(freeze_bn=True)
    before = {k: v.asnumpy() for k, v in parameter_arrays(net).items()}
    trainer = make_trainer(net, 0.05, 1e-4)
    for seed in range(3):
        images, labels = random_batch(seed=seed)
        forward_backward(net, SegmentationLoss(), images, mx.nd.array(labels), [mx.cpu(0)])
        trainer.step(1)
    after = {k: v.asnumpy() for k, v in parameter_arrays(net).items()}
    bn = [k for k in before if k.endswith(BN_SUFFIXES)]
    assert len(bn) > 40
    for name in bn:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    assert not np.array_equal(after["classifier.weight"], before["classifier.weight"])


# -- failure modes ---------------------------------------------------------------------------------
def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(
        data_dir, tmp_path, monkeypatch):
    import gluon_deeplab.training.trainer as trainer_module

    real = trainer_module.forward_backward
    calls = []

    def nan_at_third(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(trainer_module, "forward_backward", nan_at_third)
    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged, match=r"loss is nan at iteration 3.*checkpoint-00000002"):
        train(run_args(data_dir, out, max_iter=6, checkpoint_interval=2))
    assert sorted(n for n in os.listdir(out) if n.endswith(".params")) == [
        "checkpoint-00000002.params"]
    assert load_checkpoint(str(out / "checkpoint-00000002.params")).iteration == 2


def test_bad_flags_are_one_line_errors(data_dir, tmp_path, capsys):
    base = ["--dataset", "synthetic", "--data_dir", data_dir, "--output_dir", str(tmp_path)]
    cases = [
        (["--gpus", "7"], "--gpus 7: "),  # no such GPU, or an MXNet build without CUDA
        (["--base_architecture", "resnet_v2_77"], "unknown backbone 'resnet_v2_77'"),
        (["--output_stride", "32"], "--output_stride: invalid choice: 32"),
        (["--train_epochs", "46", "--max_iter", "30000"], "give one (--max_iter counts"),
        (["--aux_weight", "0.4"], "--aux_weight needs --aux"),
        (["--freeze_batch_norm", "2"], "expected 0 or 1"),
        (["--initial_learning_rate", "nan"], "--initial_learning_rate must be a finite number"),
        (["--initial_learning_rate", "inf"], "--initial_learning_rate must be a finite number"),
        (["--end_learning_rate", "nan"], "--end_learning_rate must be a finite number >= 0"),
        (["--weight_decay", "inf"], "--weight_decay must be a finite number >= 0"),
        (["--head_lr_mult", "nan"], "--head_lr_mult must be a finite number > 0"),
        (["--aux", "--aux_weight=-inf"], "--aux_weight must be a finite number >= 0"),
        (["--train_epochs", "nan"], "--train_epochs must be a finite number > 0"),
    ]
    for flags, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(base + flags)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert message in err, flags
        assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(
            "gluon-deeplab-train: error:"), err
    assert not os.listdir(tmp_path)  # nothing started


def test_help_shows_each_default_once_and_every_flag_is_a_config_field():
    text = " ".join(build_parser().format_help().split())
    assert "(default 30000)" in text and "(default: None)" not in text
    assert "(default: 0.007)" in text and "(default: )" not in text
    assert "decays to (default: 0.0)" in text and "dropout and initialization (default: 0)" in text
    assert not re.search(r"\(default[^)]*\) \(default", text)  # said twice
    from dataclasses import fields

    from gluon_deeplab.training import TrainConfig

    parsed = vars(build_parser().parse_args([]))
    assert parsed == {f.name: f.default for f in fields(TrainConfig)}
    with pytest.raises(ValueError, match="unknown training setting.*learning_rate"):
        train({"learning_rate": 0.1})


def test_help_explains_every_flag():
    text = build_parser().format_help()
    for flag in ("--aspp_or_vortex", "--gpus", "--batch_size", "--output_stride",
                 "--freeze_batch_norm", "--initial_learning_rate", "--end_learning_rate",
                 "--weight_decay", "--max_iter", "--resume", "--data_dir", "--base_architecture",
                 "--pre_trained_model", "--init_checkpoint", "--train_epochs", "--dataset",
                 "--num_classes", "--ignore_label", "--crop_size", "--output_dir",
                 "--val_interval", "--checkpoint_interval", "--keep_checkpoints", "--seed",
                 "--kvstore", "--syncbn", "--aux", "--aux_weight", "--head_lr_mult",
                 "--num_workers", "--cpu_devices", "--train_split", "--val_split"):
        assert flag in text, flag
    args = build_parser().parse_args(["--resume", "-1", "--base_architecture", "resnet_v2_50"])
    from gluon_deeplab.training.cli import config_from_args

    config = config_from_args(args)
    assert config.resume is None and config.base_architecture == "resnet50_v2"
    assert config.max_iter == 30000


def test_train_epochs_convert_to_iterations():
    assert iterations_for_epochs(46, 10582, 16) == math.ceil(46 * 10582 / 16)
    assert iterations_for_epochs(1, 10, 4, num_workers=2) == 2


def test_prune_keeps_the_newest_checkpoints_and_never_best_or_final(tmp_path):
    for name in ("checkpoint-00000100.params", "checkpoint-00000200.params",
                 "checkpoint-00000300.params", "best.params", "final.params", "other.txt"):
        (tmp_path / name).write_bytes(b"x")
    removed = prune_checkpoints(str(tmp_path), keep=1)
    assert [os.path.basename(p) for p in removed] == ["checkpoint-00000100.params",
                                                      "checkpoint-00000200.params"]
    assert sorted(os.listdir(tmp_path)) == ["best.params", "checkpoint-00000300.params",
                                            "final.params", "other.txt"]
