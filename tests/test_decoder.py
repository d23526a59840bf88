"""DeepLabV3+: the decoder on either head, at any size, trained, checkpointed and exported."""

from __future__ import annotations

import json
import os
import subprocess

import mxnet as mx
import numpy as np
import pytest

from gluon_deeplab import build_model
from gluon_deeplab.checkpoint import load_checkpoint, save_checkpoint
from gluon_deeplab.data import get_dataset, make_synthetic_dataset
from gluon_deeplab.deploy import export_checkpoint, read_meta
from gluon_deeplab.deploy.int8 import excluded_layer_names
from gluon_deeplab.models import DeepLabV3PlusDecoder, model_from_checkpoint
from gluon_deeplab.training import train

NUM_CLASSES = 3


@pytest.fixture(scope="module")
def v3plus_run(tmp_path_factory):
    """(data root, final checkpoint, losses): resnet18_v2 + ASPP + decoder, 24 iterations
    of the project's own trainer on 40x48 crops."""
    base = tmp_path_factory.mktemp("v3plus")
    root = make_synthetic_dataset(str(base / "data"), num_train=8, num_val=2, size=(40, 48),
                                  num_classes=NUM_CLASSES, seed=0)
    out = str(base / "run")
    result = train({"dataset": "synthetic", "data_dir": root, "output_dir": out,
                    "base_architecture": "resnet18_v2", "decoder": True, "batch_size": 4,
                    "crop_size": 33, "max_iter": 24, "initial_learning_rate": 0.02,
                    "val_interval": 0, "checkpoint_interval": 1000, "num_workers": 0,
                    "progress": 0, "log_interval": 1})
    with open(os.path.join(out, "log.jsonl"), encoding="utf-8") as f:
        losses = [r["loss"] for r in map(json.loads, f) if r["kind"] == "train"]
    return root, result["checkpoint"], losses


@pytest.mark.parametrize("head", ["aspp", "vortex"])
@pytest.mark.parametrize("output_stride", [8, 16])
def test_v3plus_logits_have_the_input_size_at_odd_sizes(head, output_stride):
    net = build_model(NUM_CLASSES, "resnet18_v2", head, output_stride, decoder=True)
    assert isinstance(net.decoder, DeepLabV3PlusDecoder)
    assert net.decoder.factor == output_stride // 4
    for h, w in [(33, 47), (64, 64), (9, 17)]:
        assert net(mx.nd.zeros((1, 3, h, w))).shape == (1, NUM_CLASSES, h, w)


def test_low_level_features_are_the_stride4_stage1_output():
    net = build_model(NUM_CLASSES, "resnet18_v2", decoder=True)
    x = mx.nd.random.normal(shape=(1, 3, 37, 50))
    c1, c3, c4 = net.backbone.stages_with_low_level(x)
    assert c1.shape == (1, net.backbone.stage1_channels, 10, 13)  # ceil(37 / 4), ceil(50 / 4)
    np.testing.assert_allclose(c1.asnumpy(), net.backbone.features[:6](x).asnumpy())
    old_c3, old_c4 = net.backbone.stages(x)
    np.testing.assert_allclose(c3.asnumpy(), old_c3.asnumpy())
    np.testing.assert_allclose(c4.asnumpy(), old_c4.asnumpy())


def test_hybridized_v3plus_agrees_with_imperative_at_three_sizes():
    net = build_model(NUM_CLASSES, "resnet18_v2", "vortex", 16, decoder=True)
    sizes = [(33, 47), (48, 64), (17, 80)]
    xs = [mx.nd.random.normal(shape=(2, 3, h, w)) for h, w in sizes]
    expected = [net(x).asnumpy() for x in xs]
    net.hybridize()
    for x, want, (h, w) in zip(xs, expected, sizes):
        got = net(x).asnumpy()
        assert got.shape == (2, NUM_CLASSES, h, w)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_v3plus_export_reloads_with_the_same_logits(tmp_path):
    net = build_model(NUM_CLASSES, "resnet18_v2", "aspp", 16, decoder=True)
    net.hybridize()
    net(mx.nd.zeros((1, 3, 33, 33)))
    net.export(str(tmp_path / "v3plus"))
    loaded = mx.gluon.SymbolBlock.imports(str(tmp_path / "v3plus-symbol.json"), ["data"],
                                          str(tmp_path / "v3plus-0000.params"))
    for h, w in [(33, 33), (45, 61)]:
        x = mx.nd.random.normal(shape=(1, 3, h, w))
        np.testing.assert_allclose(loaded(x).asnumpy(), net(x).asnumpy(), rtol=1e-4, atol=1e-4)


def test_v3plus_loss_falls_in_a_short_training_run(v3plus_run):
    _, _, losses = v3plus_run
    assert len(losses) == 24
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4]), losses


def test_checkpoint_records_the_decoder_and_rebuilds_it(v3plus_run):
    _, checkpoint, _ = v3plus_run
    assert load_checkpoint(checkpoint).model_config["decoder"] is True
    net, _ = model_from_checkpoint(checkpoint, output_stride=8)
    assert net.decoder is not None and net.decoder.factor == 2


def test_v3_checkpoint_does_not_load_into_v3plus_and_says_why(tmp_path):
    path = save_checkpoint(str(tmp_path / "v3.params"), build_model(NUM_CLASSES, "resnet18_v2"))
    with pytest.raises(ValueError, match=r"no decoder\.\* arrays: it was trained without "
                                         r"--decoder.*missing decoder\."):
        model_from_checkpoint(path, decoder=True)
    plus = save_checkpoint(str(tmp_path / "v3plus.params"),
                           build_model(NUM_CLASSES, "resnet18_v2", decoder=True))
    with pytest.raises(ValueError, match=r"it was trained with --decoder"):
        model_from_checkpoint(plus, decoder=False)


def test_checkpoint_without_decoder_key_rebuilds_plain_v3(tmp_path):
    ckpt = load_checkpoint(save_checkpoint(str(tmp_path / "old.params"),
                                           build_model(NUM_CLASSES, "resnet18_v2")))
    del ckpt.model_config["decoder"]  # written before the decoder existed
    net, _ = model_from_checkpoint(ckpt)
    assert net.decoder is None


def test_int8_export_of_v3plus_runs_and_keeps_its_predictions(v3plus_run, tmp_path,
                                                              predict_py_probabilities):
    root, checkpoint, _ = v3plus_run
    calib = get_dataset("synthetic", root, "train", mode="val")
    prefix = str(tmp_path / "int8")
    export_checkpoint(checkpoint, prefix, int8=True, calib_dataset=calib, num_calib_images=2,
                      calib_size=(40, 48))
    meta = read_meta(prefix)
    assert meta["precision"] == "int8" and meta["decoder"] is True
    int8 = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"],
                                        prefix + "-0000.params")
    fp32, _ = model_from_checkpoint(checkpoint)
    x = get_dataset("synthetic", root, "val", mode="val")[0][0].expand_dims(0)
    p8 = int8(x).argmax(axis=1).asnumpy()
    p32 = predict_py_probabilities(fp32, x).argmax(axis=1)
    assert p8.shape == (1, 40, 48) and (p8 == p32).mean() > 0.8


def test_int8_head_group_keeps_the_decoder_in_fp32():
    net = build_model(NUM_CLASSES, "resnet18_v2", decoder=True)
    names = excluded_layer_names(net, ["head"])
    assert any(n.startswith(net.decoder.prefix) and "conv" in n for n in names)
    assert any(n.startswith(net.head.prefix) for n in names)


def test_onnx_export_of_v3plus_matches_mxnet(v3plus_run, tmp_path, onnx_export_matches_checkpoint):
    _, checkpoint, _ = v3plus_run
    size = (37, 50)  # odd: the stride-4 grid is ceil(H / 4), computed statically
    onnx_export_matches_checkpoint(checkpoint, str(tmp_path / "v3plus"), size)


def test_separable_model_uses_depthwise_then_pointwise_convs_and_checkpoints_say_so(tmp_path):
    net = build_model(NUM_CLASSES, "resnet18_v2", "vortex", 16, decoder=True, separable=True)
    plain = build_model(NUM_CLASSES, "resnet18_v2", "vortex", 16, decoder=True)
    depthwise, pointwise = net.decoder.fuse[0][0], net.decoder.fuse[0][3]
    assert depthwise._kwargs["num_group"] == depthwise._in_channels == 256 + 48
    assert depthwise._kwargs["kernel"] == (3, 3) and pointwise._kwargs["kernel"] == (1, 1)
    assert net.head.branches[2].conv[0]._kwargs["num_group"] == 512  # Vortex k = 3 branch

    def count(model):
        return sum(p.data().size for p in model.collect_params().values())
    assert count(net) < count(plain)
    net.hybridize()
    for h, w in [(33, 47), (20, 9)]:
        assert net(mx.nd.zeros((1, 3, h, w))).shape == (1, NUM_CLASSES, h, w)
    path = save_checkpoint(str(tmp_path / "sep.params"), net)
    assert load_checkpoint(path).model_config["separable"] is True
    rebuilt, _ = model_from_checkpoint(path)
    assert rebuilt.decoder.fuse[0][0]._kwargs["num_group"] == 256 + 48


def test_train_sh_passes_decoder_and_separable_to_both_phases(tmp_path):
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "ARGS $*"\n')
    fake.chmod(0o755)
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sh",
                          "train.sh")
    env = dict(os.environ, PYTHON=str(fake), DECODER="1", SEPARABLE="1",
               OUTPUT_DIR=str(tmp_path / "runs"))
    proc = subprocess.run(["sh", script], env=env, capture_output=True, text=True, timeout=30)
    calls = [line for line in proc.stdout.splitlines() if line.startswith("ARGS")]
    assert proc.returncode == 0 and len(calls) == 2, proc.stdout + proc.stderr
    assert all("--decoder" in c.split() and "--separable" in c.split() for c in calls)
    env["DECODER"] = "yes"
    proc = subprocess.run(["sh", script], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "DECODER must be 0 or 1" in proc.stderr


def test_bench_decoder_part_lists_v3_and_v3plus_with_the_ratio_to_os8(monkeypatch):
    """The table's shape on faked children; one real row below runs a case for real."""
    from gluon_deeplab.bench import BenchConfig
    from gluon_deeplab.bench import rows as bench_rows

    cases = []

    def fake_row(part, name, case, unit, unavailable=None, **kwargs):
        cases.append((case, kwargs))
        seconds = 2.0 if kwargs.get("stride") == 8 else 1.0 if kwargs.get("decoder") else 0.5
        return bench_rows.BenchRow(part, name, seconds, unit, isa="avx2")

    monkeypatch.setattr(bench_rows, "row", fake_row)
    config = BenchConfig.quick(parts=("decoder",), size=33, output_strides=(16, 8),
                               train_crop=33, warmup=0)
    rows = bench_rows._decoder_rows(config)
    names = [r.name for r in rows]
    for model in ("V3", "V3+", "V3+ separable"):
        for stride in (16, 8):
            assert f"forward fp32 {model} resnet18_v2 OS {stride} aspp 33x33" in names, names
    plus16 = next(r for r in rows if r.name.startswith("forward fp32 V3+ resnet18_v2 OS 16"))
    assert plus16.ratio == pytest.approx(0.5) and plus16.target == "<= 0.5"
    assert any(n.startswith("train iteration V3+ resnet18_v2 aspp") for n in names)
    assert {(k["decoder"], k["separable"]) for c, k in cases if c == "train_loop"} == {
        (True, False), (True, True)}


def test_bench_decoder_cases_time_v3plus_in_their_own_processes(monkeypatch):
    from gluon_deeplab.bench import BenchConfig, run_benchmark
    from gluon_deeplab.bench import rows as bench_rows

    monkeypatch.setattr(bench_rows, "DECODER_VARIANTS", bench_rows.DECODER_VARIANTS[:2])
    config = BenchConfig.quick(parts=("decoder",), size=33, output_strides=(16,),
                               train_crop=33, warmup=0)
    rows = [r for r in run_benchmark(config) if r.part == "decoder"]
    assert [r.name.split(" resnet")[0] for r in rows] == [
        "forward fp32 V3", "forward fp32 V3+", "train iteration V3+"], rows
    assert all(r.value > 0 for r in rows), rows
