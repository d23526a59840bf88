"""Deployment artefacts: symbol/params export at any size, INT8, ONNX, the benchmark table."""

from __future__ import annotations

import json
import os

import mxnet as mx
import numpy as np
import pytest

from gluon_deeplab import build_model
from gluon_deeplab.data import get_dataset
from gluon_deeplab.deploy import (
    EXPORT_FORMAT,
    export_checkpoint,
    export_format,
    quantize_model,
    read_meta,
)
from gluon_deeplab.deploy.int8 import excluded_layer_names
from gluon_deeplab.evaluation import ConfusionMatrix
from gluon_deeplab.models import model_from_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 3
IMAGE_SIZE = (48, 64)


def _imports(prefix):
    """Reload an export exactly as a user without this package would."""
    return mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"],
                                        prefix + "-0000.params")


@pytest.fixture(scope="module")
def synthetic_root(trained_synthetic):
    return trained_synthetic[0]


@pytest.fixture(scope="module")
def trained_checkpoint(trained_synthetic):
    """A model whose predictions mean something, so that INT8 is compared with it."""
    return trained_synthetic[1]


def _val_images(root):
    val = get_dataset("synthetic", root, "val", mode="val")
    return [(val[i][0].expand_dims(0), val[i][1].asnumpy()) for i in range(len(val))]


def test_export_reloads_with_symbolblock_imports_at_three_sizes(trained_checkpoint, tmp_path,
                                                               predict_py_probabilities):
    prefix = str(tmp_path / "deeplab")
    files = export_checkpoint(trained_checkpoint, prefix)
    assert sorted(files) == ["meta", "params", "symbol"]
    exported = _imports(prefix)
    reference, _ = model_from_checkpoint(trained_checkpoint)
    for h, w in [(48, 64), (37, 53), (96, 72)]:
        x = mx.nd.random.normal(shape=(2, 3, h, w))
        out = exported(x)
        assert out.shape == (2, NUM_CLASSES, h, w)
        probabilities = mx.nd.softmax(out, axis=1).asnumpy()
        assert np.abs(probabilities - predict_py_probabilities(reference, x)).max() < 1e-4
    meta = read_meta(prefix)
    assert meta["num_classes"] == NUM_CLASSES and meta["output_stride"] == 16
    assert meta["precision"] == "fp32" and meta["input_name"] == "data"
    assert meta["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert meta["std"] == pytest.approx([0.229, 0.224, 0.225])


def test_export_writes_the_full_meta_record_once_atomically_and_last(trained_checkpoint,
                                                                     tmp_path, monkeypatch):
    prefix = str(tmp_path / "deeplab")
    meta_file = prefix + "-meta.json"
    direct, atomic, real_open = [], [], open
    real_atomic = export_format.atomic_write

    def spy_open(path, mode="r", *args, **kwargs):
        if "w" in mode:
            direct.append(os.path.abspath(str(path)))
        return real_open(path, mode, *args, **kwargs)

    def spy_atomic(path, write):
        atomic.append((path, sorted(os.listdir(tmp_path))))
        real_atomic(path, write)
    monkeypatch.setattr("builtins.open", spy_open)
    monkeypatch.setattr(export_format, "atomic_write", spy_atomic)
    export_checkpoint(trained_checkpoint, prefix)
    monkeypatch.undo()
    assert [path for path, _ in atomic] == [meta_file]  # once, through a temporary file
    assert os.path.abspath(meta_file) not in direct  # never written in place
    assert atomic[0][1] == ["deeplab-0000.params", "deeplab-symbol.json"]  # after the graph
    meta = read_meta(prefix)
    assert meta["format"] == EXPORT_FORMAT and meta["pads_input"] is True
    assert meta["num_classes"] == NUM_CLASSES and "head_settings" in meta and "mean" in meta


def test_int8_export_agrees_with_fp32_on_most_pixels(trained_checkpoint, synthetic_root,
                                                     tmp_path, predict_py_probabilities):
    calib = get_dataset("synthetic", synthetic_root, "train", mode="val")
    prefix = str(tmp_path / "int8")
    export_checkpoint(trained_checkpoint, prefix, int8=True, calib_dataset=calib,
                      num_calib_images=4, calib_size=IMAGE_SIZE)
    with open(prefix + "-symbol.json", encoding="utf-8") as f:
        graph = f.read()
    assert "_contrib_quantize" in graph  # really an INT8 graph
    assert read_meta(prefix)["precision"] == "int8"
    int8 = _imports(prefix)
    fp32, _ = model_from_checkpoint(trained_checkpoint)
    same = total = 0
    cm_fp32, cm_int8 = ConfusionMatrix(NUM_CLASSES), ConfusionMatrix(NUM_CLASSES)
    for image, label in _val_images(synthetic_root):
        p32 = predict_py_probabilities(fp32, image)[0].argmax(axis=0).astype(np.int64)
        p8 = int8(image)[0].argmax(axis=0).asnumpy().astype(np.int64)
        same, total = same + (p32 == p8).sum(), total + p32.size
        cm_fp32.update(p32, label.astype(np.int64))
        cm_int8.update(p8, label.astype(np.int64))
    assert same / total > 0.98
    print(f"INT8: {same / total:.4f} of the pixels as fp32, mIoU {cm_int8.metrics()['miou']:.4f} "
          f"against {cm_fp32.metrics()['miou']:.4f}")
    assert abs(cm_fp32.metrics()["miou"] - cm_int8.metrics()["miou"]) < 0.02


def test_quantize_rejects_unknown_calibration_mode_and_layer_group():
    net = build_model(NUM_CLASSES, "resnet18_v2")
    with pytest.raises(ValueError, match="calib_mode"):
        quantize_model(net, calib_loader=None, calib_mode="minmax")
    with pytest.raises(ValueError, match="layer group 'stem'"):
        excluded_layer_names(net, ["stem"])
    names = excluded_layer_names(net, ["first_conv", "classifier", "image_pooling"])
    assert names[1] == net.classifier.name + "_fwd"
    assert any("broadcast_like" in n for n in names)


def test_onnx_export_matches_mxnet_logits_at_fixed_size(trained_checkpoint, tmp_path,
                                                        onnx_export_matches_checkpoint):
    prefix = str(tmp_path / "deeplab")
    onnx_export_matches_checkpoint(trained_checkpoint, prefix, IMAGE_SIZE, batch=2)
    assert read_meta(prefix)["onnx_input_size"] == list(IMAGE_SIZE)


def test_bench_quick_prints_every_row_of_the_table(monkeypatch, capsys):
    """The table of ``bench.py --quick --json``, each case answered by a fake child (the real
    rows take minutes; test_bench_row_measures_in_a_child_of_its_own runs one for real)."""
    from gluon_deeplab.bench import rows as bench_rows
    from gluon_deeplab.bench import runner
    from gluon_deeplab.bench.cli import bench_main

    cases = []

    def fake_case(name, timeout=1800, **kwargs):
        cases.append(name)
        if name == "amp_casts":  # counted on the graph: a count, not seconds
            return {"activations": 8, "elements": 10 ** 6, "weights": 28}, 600.0, ""
        return 0.01 * len(cases), (500.0 if name == "baseline" else 600.0 + len(cases)), "avx2"

    monkeypatch.setattr(runner, "run_case", fake_case)
    monkeypatch.setattr(bench_rows, "run_case", fake_case)
    bench_main(["--quick", "--json"])
    lines = capsys.readouterr().out.splitlines()
    table = "\n".join(lines[:-1])
    for name in ("forward fp32", "forward int8", "forward bf16", "train iteration",
                 "train iteration AMP", "SyncBatchNorm", "data loader", "gluoncv",
                 "process baseline", "forward fp32 fused (MKLDNN)", "AMP activation casts"):
        assert name in table, table
    rows = json.loads(lines[-1])
    assert cases[0] == "baseline" and len(cases) > 10
    # --quick runs resnet18_v2: no ratio against gluoncv's resnet50, and the row says why
    versus = [r for r in rows if r["part"] in ("reference", "train")
              and "gluoncv" not in r["name"] and "AMP" not in r["name"]]
    assert versus and all(r["ratio"] is None and "resnet50" in r["note"] for r in versus)
    assert all(r["isa"] == "avx2" for r in rows if r["value"] is not None
               and r["part"] != "amp_casts")
    casts = next(r for r in rows if r["part"] == "amp_casts")
    assert casts["value"] == 16 and "2.00 M elements/image; 28 weight casts" in casts["note"]
    bf16_rows = [r for r in rows if "bf16" in r["name"]]
    assert bf16_rows and all(r["value"] is not None or r["note"].startswith("n/a (")
                             for r in bf16_rows)
    assert rows[0]["peak_mib"] == 500.0 and rows[0]["value"] is None


def test_bench_row_measures_in_a_child_of_its_own():
    """One real row: timed in a fresh process, with that process's peak memory (above the
    baseline of a process that only imported MXNet) and the ISA oneDNN ran there."""
    from gluon_deeplab.bench.runner import row, run_case

    _, baseline, _ = run_case("baseline")
    this = row("forward", "forward fp32", "forward", "s/img", backbone="resnet18_v2",
               head="aspp", stride=16, size=33, variant="fp32", repeats=1, warmup=0)
    assert this.value > 0 and this.note == "", this
    assert this.peak_mib > baseline > 0
    assert this.isa  # e.g. avx2, avx512_core, avx512_core_amx


def test_bench_row_that_fails_is_reported_and_the_others_still_run():
    from gluon_deeplab.bench.runner import FAILED, row

    broken = row("forward", "broken row", "forward", "s/img", backbone="resnet7_v2",
                 head="aspp", stride=16, size=33, variant="fp32", repeats=1, warmup=0)
    assert broken.value is None and broken.note.startswith(FAILED), broken
    assert "resnet7_v2" in broken.note
    ok = row("memory", "baseline", "baseline", "")
    assert ok.value == 0.0 and ok.peak_mib > 0


def test_bench_ratios_skip_rows_that_failed():
    from gluon_deeplab.bench.runner import FAILED, BenchRow, ratio, versus_fused

    fused = BenchRow("forward", "fused", 1.0, "s/img")
    failed = BenchRow("forward", "int8", None, "s/img", note=f"{FAILED} boom")
    assert versus_fused(failed, fused).note == f"{FAILED} boom" and not failed.extra
    assert versus_fused(fused, failed) is fused and not fused.extra
    assert ratio(failed, fused, "fp32 / this").ratio is None
    int8 = versus_fused(BenchRow("forward", "int8", 0.5, "s/img"), fused)
    assert int8.extra == {"speedup_vs_fused": 2.0} and int8.note == "vs fused 2.00x"
