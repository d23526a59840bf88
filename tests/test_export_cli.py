"""scripts/export.py: flags, one-line errors, never overwriting the user's files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from gluon_deeplab import build_model
from gluon_deeplab.checkpoint import save_checkpoint
from gluon_deeplab.deploy.cli import export_main
from gluon_deeplab.models import model_from_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    net = build_model(4, "resnet18_v2", "vortex", output_stride=16)
    path = str(tmp_path_factory.mktemp("ckpt") / "model.params")
    save_checkpoint(path, net)
    return path, net


def _error_line(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        export_main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    return err.splitlines()[-1]


def test_missing_checkpoint_is_a_one_line_error_naming_it(tmp_path, capsys):
    missing = str(tmp_path / "nope.params")
    line = _error_line(capsys, ["--checkpoint", missing, "--output", str(tmp_path / "out")])
    assert missing in line and "does not exist" in line
    assert not os.listdir(tmp_path)


def test_existing_output_is_kept_without_overwrite(checkpoint, tmp_path, capsys):
    prefix = str(tmp_path / "deeplab")
    with open(prefix + "-meta.json", "w") as f:
        f.write("mine")
    line = _error_line(capsys, ["--checkpoint", checkpoint[0], "--output", prefix])
    assert "deeplab-meta.json exists" in line and "--overwrite" in line
    assert open(prefix + "-meta.json").read() == "mine"
    assert not os.path.exists(prefix + "-symbol.json")
    files = export_main(["--checkpoint", checkpoint[0], "--output", prefix, "--overwrite"])
    assert json.load(open(files["meta"]))["num_classes"] == 4


def test_flag_combinations_are_checked(checkpoint, tmp_path, capsys):
    out = str(tmp_path / "x")
    line = _error_line(capsys, ["--checkpoint", checkpoint[0], "--output", out, "--onnx"])
    assert "--onnx needs --input_size" in line
    line = _error_line(capsys, ["--checkpoint", checkpoint[0], "--output", out, "--int8"])
    assert "--int8 needs --calib_data_dir" in line
    line = _error_line(capsys, ["--checkpoint", checkpoint[0], "--output", out, "--int8",
                                "--calib_data_dir", str(tmp_path / "none"),
                                "--calib_dataset", "voc"])
    assert "none" in line and "not found" in line
    not_ckpt = tmp_path / "plain.params"
    mx.nd.save(str(not_ckpt), {"w": mx.nd.zeros(1)})
    line = _error_line(capsys, ["--checkpoint", str(not_ckpt), "--output", out])
    assert "not a gluon-deeplab checkpoint" in line
    assert sorted(os.listdir(tmp_path)) == ["plain.params"]


def test_export_script_writes_os8_graph_that_reloads(checkpoint, tmp_path,
                                                     predict_py_probabilities):
    prefix = str(tmp_path / "os8")
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "export.py"), "--checkpoint",
         checkpoint[0], "--output", prefix, "--output_stride", "8"],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    meta = json.load(open(prefix + "-meta.json"))
    assert meta["output_stride"] == 8 and meta["head"] == "vortex"
    block = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"],
                                         prefix + "-0000.params")
    os8, _ = model_from_checkpoint(checkpoint[0], output_stride=8)
    x = mx.nd.random.normal(shape=(1, 3, 40, 56))
    out = mx.nd.softmax(block(x), axis=1).asnumpy()
    assert np.abs(out - predict_py_probabilities(os8, x)).max() < 1e-4
    # the OS 16 model differs
    assert np.abs(out - predict_py_probabilities(checkpoint[1], x)).max() > 1e-3


def test_onnx_without_the_onnx_extra_fails_before_writing_anything(checkpoint, tmp_path, capsys,
                                                                   monkeypatch):
    from gluon_deeplab.deploy.onnx_export import ONNX_INSTALL

    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    line = _error_line(capsys, ["--checkpoint", checkpoint[0], "--output",
                                str(tmp_path / "deeplab"), "--onnx", "--input_size", "33", "33"])
    assert "--onnx needs the onnx package" in line and line.endswith(ONNX_INSTALL)
    assert not os.listdir(tmp_path)
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        assert ONNX_INSTALL in f.read()  # the install command the README gives
