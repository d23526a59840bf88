"""eval.py and predict.py on exported models (fp32, bf16, INT8): the mIoU of what is shipped."""

from __future__ import annotations

import pytest

from gluon_deeplab import precision
from gluon_deeplab.data import get_dataset
from gluon_deeplab.deploy import export_checkpoint
from gluon_deeplab.evaluation.cli import eval_main
from gluon_deeplab.evaluation.run import METRIC_NAMES, run_eval
from gluon_deeplab.precision import Bf16Support


def _eval(data_dir, **source):
    return run_eval({**source, "data_dir": data_dir, "dataset": "synthetic",
                     "no_progress": True})


def test_eval_of_exported_fp32_model_equals_its_checkpoint(trained_synthetic, tmp_path):
    root, checkpoint = trained_synthetic
    prefix = str(tmp_path / "fp32")
    export_checkpoint(checkpoint, prefix)
    from_checkpoint = _eval(root, checkpoint=checkpoint)
    from_export = _eval(root, exported=prefix)
    assert from_export["precision"] == "fp32" and from_export["checkpoint"] is None
    assert from_export["iteration"] == from_checkpoint["iteration"] == 100
    assert from_export["settings"]["output_stride"] == 16
    assert from_checkpoint["miou"] > 0.5  # a trained model: the comparison means something
    for name in METRIC_NAMES:
        assert from_export[name] == pytest.approx(from_checkpoint[name], abs=1e-4), name


def test_eval_of_int8_export_reports_its_precision(trained_synthetic, tmp_path):
    root, checkpoint = trained_synthetic
    prefix = str(tmp_path / "int8")
    export_checkpoint(checkpoint, prefix, dtype="int8", num_calib_images=2,
                      calib_dataset=get_dataset("synthetic", root, "train", mode="val"),
                      calib_size=(48, 64))
    result = _eval(root, exported=prefix)
    assert result["precision"] == "int8"
    assert result["miou"] == pytest.approx(_eval(root, checkpoint=checkpoint)["miou"], abs=0.02)


def test_eval_of_bf16_export_on_cpu_without_bf16_is_a_one_line_error(
        trained_synthetic, tmp_path, capsys, monkeypatch):
    root, checkpoint = trained_synthetic
    prefix = str(tmp_path / "bf16")
    export_checkpoint(checkpoint, prefix, dtype="bf16", check_bf16=False)
    monkeypatch.setattr(precision, "bf16_support",
                        lambda: Bf16Support(False, "test CPU has no AVX-512"))
    with pytest.raises(SystemExit) as exit_info:
        eval_main(["--exported", prefix, "--data_dir", root, "--dataset", "synthetic"])
    assert exit_info.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"--exported {prefix} (a bf16 model) needs a CPU that runs bfloat16" in line


def test_eval_needs_exactly_one_model_source(trained_synthetic, capsys):
    root, checkpoint = trained_synthetic
    with pytest.raises(SystemExit):
        eval_main(["--checkpoint", checkpoint, "--exported", "x", "--data_dir", root])
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"{not json", b"[16]", b"\xff\xfe"])
def test_eval_of_export_with_damaged_meta_file_names_it(trained_synthetic, tmp_path, capsys,
                                                        content):
    root, checkpoint = trained_synthetic
    prefix = str(tmp_path / "fp32")
    export_checkpoint(checkpoint, prefix)
    with open(prefix + "-meta.json", "wb") as f:
        f.write(content)
    with pytest.raises(SystemExit) as exit_info:
        eval_main(["--exported", prefix, "--data_dir", root, "--dataset", "synthetic"])
    assert exit_info.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"export meta file {prefix}-meta.json is damaged (expected a JSON object)" in line
