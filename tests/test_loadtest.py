"""``gluon-deeplab-loadtest`` at a tiny size: it starts the real server, drives it, stops it by
PID and prints its table (no figure is checked: they depend on the CPU)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the service needs the [serve] extra")

from gluon_deeplab.deploy import export_checkpoint  # noqa: E402
from gluon_deeplab.deploy.loadtest import COLUMNS, loadtest_command, metric_sum  # noqa: E402


def test_loadtest_prints_a_row_per_setting_without_errors(trained_synthetic, tmp_path, capsys):
    _, checkpoint = trained_synthetic
    prefix = str(tmp_path / "export" / "deeplab")
    export_checkpoint(checkpoint, prefix)
    status = loadtest_command(["--model", f"fp32={prefix}", "--sizes", "tiny",
                               "--max_batch", "4", "--concurrency", "1", "3",
                               "--requests", "3", "6", "--log_dir", str(tmp_path)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert status == 0
    assert lines[0] == "| " + " | ".join(COLUMNS) + " |"
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    assert [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows] == [
        ("fp32", "tiny", "direct", "1", "3", "0"), ("fp32", "tiny", "4", "1", "3", "0"),
        ("fp32", "tiny", "4", "3", "6", "0")]
    for row in rows:
        p50, p99, rate, mean_batch = map(float, row[6:])
        assert 0 < p50 <= p99 and rate > 0 and 1.0 <= mean_batch <= 4.0
    assert (tmp_path / "serve-fp32-4.log").exists()


def test_metric_sum_adds_the_samples_of_one_name_only():
    text = ("# HELP x\ngluon_deeplab_batch_size_count 3.0\ngluon_deeplab_batch_size_sum 7.0\n"
            'gluon_deeplab_errors_total{code="400",route="/v1/segment"} 2.0\n'
            'gluon_deeplab_errors_total{code="413",route="/v1/segment"} 1.0\n')
    assert metric_sum(text, "gluon_deeplab_batch_size_count") == 3.0
    assert metric_sum(text, "gluon_deeplab_errors_total") == 3.0
    assert metric_sum(text, "gluon_deeplab_batch_size") == 0.0


def test_loadtest_refuses_a_missing_model_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        loadtest_command(["--model", str(tmp_path / "nothing")])
    assert exit_info.value.code == 2
    assert "is not a checkpoint or an export prefix" in capsys.readouterr().err
