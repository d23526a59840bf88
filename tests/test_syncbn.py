"""SyncBN on several CPU contexts: the default switch, the batch-size rules, statistics equal to
one device's on the whole batch, and a step from one thread that does not hang (every run
that could hang runs in a subprocess under a time-out)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 420  # seconds: a deadlock becomes a failure, not a hung test run
CROP, BATCH_PER_DEVICE, STEPS = 33, 2, 20


def run_here(*args: str, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    """This file's ``__main__`` (below) in a subprocess with a time-out."""
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, os.path.abspath(__file__), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_syncbn_statistics_equal_one_device_on_the_whole_batch_over_20_steps():
    num_devices = 3  # an odd count: no pairwise shortcut can pass it
    proc = run_here("stats", str(num_devices), str(STEPS))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["devices"] and result["layers"] >= 40
    assert result["moved"] >= result["layers"] - 2  # all but the frozen input BN's two
    assert result["stats_gap"] < 1e-5, result


def test_syncbn_default_switch():
    from gluon_deeplab.training.multi_device import SYNCBN_BELOW, resolve_syncbn

    on, said = resolve_syncbn(None, 16, 8, freeze_bn=False)  # sh/train.sh phase 1, 8 GPUs
    assert on and "SyncBN on" in said and "--no_syncbn" in said
    assert resolve_syncbn(None, 8, 8, freeze_bn=True) == (False, None)  # phase 2: BN frozen
    assert resolve_syncbn(None, 16, 2, freeze_bn=False) == (False, None)  # 8 images each
    assert resolve_syncbn(None, 4 * SYNCBN_BELOW, 4, freeze_bn=False) == (False, None)
    assert resolve_syncbn(None, 2, 1, freeze_bn=False) == (False, None)  # one device
    assert resolve_syncbn(False, 16, 8, freeze_bn=False) == (False, None)  # --no_syncbn
    assert resolve_syncbn(True, 32, 2, freeze_bn=False) == (True, None)  # --syncbn: silent


def test_syncbn_flags_and_the_recorded_setting():
    from gluon_deeplab.training.cli import build_parser, config_from_args

    parse = build_parser().parse_args
    assert config_from_args(parse([])).syncbn is None
    assert config_from_args(parse(["--syncbn"])).syncbn is True
    assert config_from_args(parse(["--no_syncbn"])).syncbn is False
    with pytest.raises(SystemExit):
        parse(["--syncbn", "--no_syncbn"])
    with pytest.raises(ValueError, match="--syncbn has no effect with --freeze_batch_norm 1"):
        config_from_args(parse(["--syncbn", "--freeze_batch_norm", "1"]))
    from gluon_deeplab.training.config import TrainConfig

    # a config recorded before SyncBN could be automatic ("syncbn": false) still loads, off
    assert TrainConfig.from_mapping({"syncbn": False, "kvstore": "device"}).check().syncbn is False


@pytest.mark.parametrize("extra, message", [
    (["--cpu_devices", "3", "--batch_size", "2"],
     "--batch_size 2 is smaller than the number of devices (3): each device needs at least "
     "one image"),
    (["--cpu_devices", "3", "--batch_size", "4"],
     "--batch_size 4 does not split evenly over 3 devices, which SyncBN needs"),
    (["--cpu_devices", "3", "--batch_size", "16", "--syncbn"],
     "--batch_size 16 does not split evenly over 3 devices, which SyncBN needs (it weighs "
     "every device's statistics the same); use --batch_size 15 or 18, or --no_syncbn"),
])
def test_batch_size_against_device_count_is_a_one_line_error_before_anything_starts(
        tmp_path, capsys, extra, message):
    from gluon_deeplab.training import train
    from gluon_deeplab.training.cli import main

    out = tmp_path / "run"
    args = ["--dataset", "synthetic", "--data_dir", str(tmp_path / "none"), "--output_dir",
            str(out), *extra]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("gluon-deeplab-train: error:")
    settings = {"dataset": "synthetic", "data_dir": str(tmp_path / "none"),
                "output_dir": str(out), "cpu_devices": 3,
                "batch_size": int(extra[extra.index("--batch_size") + 1]),
                "syncbn": True if "--syncbn" in extra else None}
    with pytest.raises(ValueError, match=re.escape(message)):
        train(settings)  # the library entry point refuses too
    assert not out.exists()


def test_an_uneven_split_without_syncbn_trains(data_dir, tmp_path, capsys):
    from gluon_deeplab.training import train

    result = train({"dataset": "synthetic", "data_dir": data_dir, "base_architecture":
                    "resnet18_v2", "crop_size": CROP, "batch_size": 9, "cpu_devices": 2,
                    "num_workers": 0, "progress": 0, "val_interval": 0, "max_iter": 1,
                    "output_dir": str(tmp_path / "run")})  # 4 and 5 images: SyncBN stays off
    assert result["iteration"] == 1 and "SyncBN" not in capsys.readouterr().out


@pytest.mark.parametrize("old_kind", ["SyncBatchNorm", "BatchNorm"])
def test_a_checkpoint_saved_with_the_old_input_bn_loads_unchanged(tmp_path, monkeypatch,
                                                                  old_kind):
    """``features.0`` used to be built like every other BN (a SyncBatchNorm with SyncBN, a
    trained BN without): its parameter names are the same, so those checkpoints load."""
    import mxnet as mx

    import gluon_deeplab.models.resnet_v2 as resnet_v2
    from gluon_deeplab.checkpoint import save_checkpoint
    from gluon_deeplab.models import build_model, model_from_checkpoint
    from gluon_deeplab.params import parameter_arrays

    layers = {"SyncBatchNorm": lambda: mx.gluon.contrib.nn.SyncBatchNorm(
        scale=False, center=False, in_channels=3, num_devices=2),
              "BatchNorm": lambda: mx.gluon.nn.BatchNorm(scale=False, center=False,
                                                         in_channels=3)}
    with monkeypatch.context() as patch:
        patch.setattr(resnet_v2, "input_norm", layers[old_kind])
        old = build_model(3, "resnet18_v2", "aspp", 16,
                          syncbn_devices=2 if old_kind == "SyncBatchNorm" else 0)
    assert type(old.backbone.features[0]).__name__ == old_kind
    old.backbone.features[0].running_mean.set_data(mx.nd.array([0.1, -0.2, 0.3]))
    path = save_checkpoint(str(tmp_path / "old.params"), old)
    net, _ = model_from_checkpoint(path)
    assert type(net.backbone.features[0]) is mx.gluon.nn.BatchNorm
    assert net.backbone.features[0]._kwargs["use_global_stats"]
    want, got = parameter_arrays(old), parameter_arrays(net)
    assert sorted(want) == sorted(got)
    for name in want:
        np.testing.assert_array_equal(got[name].asnumpy(), want[name].asnumpy(), err_msg=name)


def flags(data_dir, output_dir, *extra):
    return ["--dataset", "synthetic", "--data_dir", data_dir, "--output_dir", str(output_dir),
            "--base_architecture", "resnet18_v2", "--crop_size", str(CROP), "--num_workers",
            "0", "--progress", "0", "--log_interval", "5", *extra]


def test_syncbn_is_on_by_default_and_30_steps_with_validation_keep_exact_statistics(
        data_dir, tmp_path):
    """Two CPU contexts, 2 images each (phase 1's load on 8 GPUs): SyncBN by default, a
    hybridized step from one thread that does not hang (it used to, after a step or two),
    and every device's running statistics the same at each validation and checkpoint."""
    out = tmp_path / "run"
    proc = run_here("train", *flags(data_dir, out, "--cpu_devices", "2", "--batch_size", "4",
                                    "--max_iter", "30", "--val_interval", "15",
                                    "--checkpoint_interval", "10"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["exit"] == 0
    assert "SyncBN on: BatchNorm is trained with 2 image(s) per device on 2 devices" in proc.stdout
    assert "kvstore: device" in proc.stdout
    assert seen["calls"] == 5 and seen["layers"] >= 40  # saves 10, 20; val 15, 30; the end
    assert seen["gap"] == 0.0
    from gluon_deeplab.checkpoint import load_checkpoint

    ckpt = load_checkpoint(str(out / "final.params"))
    assert ckpt.args["syncbn"] is True and ckpt.iteration == 30
    records = [json.loads(line) for line in open(out / "log.jsonl", encoding="utf-8")]
    assert [r["iteration"] for r in records if r["kind"] == "val"] == [15, 30]
    assert [r["iteration"] for r in records if r["kind"] == "train"] == [5, 10, 15, 20, 25, 30]
    assert all(np.isfinite(a.asnumpy()).all() for a in ckpt.params.values())


# -- the subprocess side ---------------------------------------------------------------------
STATS = ("running_mean", "running_var")


def _model(ctxs, init, syncbn: bool):
    """A tiny hybridized model from ``init`` (dropout off: its masks are per device) and its
    SGD trainer."""
    import mxnet as mx

    from gluon_deeplab.models import build_model
    from gluon_deeplab.params import assign_parameters
    from gluon_deeplab.training.optim import make_trainer

    net = build_model(3, "resnet18_v2", "aspp", 16, ctx=ctxs,
                      syncbn_devices=len(ctxs) if syncbn else 0)
    assign_parameters(net, init, "reference")
    net.apply(lambda b: setattr(b, "_rate", 0.0) if isinstance(b, mx.gluon.nn.Dropout) else None)
    net.hybridize()
    return net, make_trainer(net, 0.01, 1e-4, kvstore="device")


def _compare_statistics(num_devices: int, steps: int) -> dict:
    """``steps`` SGD steps of one plain-BN model on one context and of a SyncBN copy on
    ``num_devices`` contexts, on the same batches; before each step the copy takes the
    one-device weights (float rounding would otherwise make the trajectories drift apart),
    while each keeps its own running statistics. Returns the largest gap of any device's
    statistics to the one device's (relative to the layer's largest value)."""
    import mxnet as mx

    from gluon_deeplab.models import build_model
    from gluon_deeplab.params import parameter_arrays
    from gluon_deeplab.training.loss import SegmentationLoss
    from gluon_deeplab.training.step import forward_backward

    init = parameter_arrays(build_model(3, "resnet18_v2", "aspp", 16, ctx=[mx.cpu(0)]))
    ctxs = [mx.cpu(k) for k in range(num_devices)]
    (one, one_trainer), (many, many_trainer) = (_model([mx.cpu(0)], init, False),
                                                _model(ctxs, init, True))
    one_params, many_params = (net._collect_params_with_prefix() for net in (one, many))
    weights = [name for name in one_params if not name.endswith(STATS)]
    rng = np.random.default_rng(7)
    batch = BATCH_PER_DEVICE * num_devices
    for _ in range(steps):
        for name in weights:
            many_params[name].set_data(one_params[name].data())
        images = mx.nd.array(rng.standard_normal((batch, 3, CROP, CROP)) * 2 + 0.5)
        labels = mx.nd.array(rng.integers(0, 3, (batch, CROP, CROP)))
        for net, trainer, where in ((one, one_trainer, [mx.cpu(0)]), (many, many_trainer, ctxs)):
            forward_backward(net, SegmentationLoss(), images, labels, where)
            trainer.step(1)
    gaps = {}
    for name, param in one_params.items():
        if name.endswith(STATS):
            want = param.data().asnumpy()
            gaps[name] = max(float(np.abs(got.asnumpy() - want).max() / (np.abs(want).max()
                                                                         + 1e-6))
                             for got in many_params[name].list_data())
    moved = sum(not np.allclose(one_params[name].data().asnumpy(), init[name].asnumpy())
                for name in gaps)
    return {"stats_gap": max(gaps.values()), "worst": max(gaps, key=gaps.get),
            "moved": moved, "layers": len(gaps),
            "devices": {len(many_params[name].list_data()) for name in gaps} == {num_devices}}


def _train_and_watch(argv) -> dict:
    """The trainer's command line on ``argv``; before every average of the running
    statistics over devices (validation, checkpoints, the end), the largest gap between
    two devices' copies (SyncBN: none, every device has the whole batch's)."""
    from gluon_deeplab.training.cli import main
    from gluon_deeplab.training.step import RunningStatsSync

    seen = {"calls": 0, "gap": 0.0, "layers": 0}
    average = RunningStatsSync.__call__

    def watched(self):
        for param in self.params:
            copies = [d.asnumpy() for d in param.list_data()]
            seen["gap"] = max([seen["gap"]] + [float(np.abs(c - copies[0]).max())
                                                for c in copies])
        seen["calls"] += 1
        seen["layers"] = len(self.params)
        average(self)

    RunningStatsSync.__call__ = watched
    seen["exit"] = main(argv)
    return seen


if __name__ == "__main__":  # pragma: no cover - run by the tests above, in a subprocess
    if sys.argv[1] == "stats":
        print(json.dumps(_compare_statistics(int(sys.argv[2]), int(sys.argv[3]))))
    elif sys.argv[1] == "train":
        print(json.dumps(_train_and_watch(sys.argv[2:])))
