"""scripts/bench.py beyond --quick (tests/test_deploy.py): the PyTorch peer's
plumbing (without PyTorch), --gpus, and the SyncBN rows."""

from __future__ import annotations

import pytest

from gluon_deeplab.bench import BenchConfig, BenchRow, run_benchmark
from gluon_deeplab.bench import rows as bench_rows
from gluon_deeplab.bench.cli import bench_main


def test_bench_peer_torch_without_torch_is_a_one_line_error(monkeypatch, tmp_path, capsys):
    missing = str(tmp_path / "no-such-python")
    monkeypatch.setenv("TORCH_PYTHON", missing)
    with pytest.raises(SystemExit) as exit_info:
        bench_main(["--quick", "--peer", "torch"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert f"--peer torch: {missing} cannot import torch" in err and "TORCH_PYTHON=" in err


def test_bench_gpus_this_machine_lacks_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_main(["--quick", "--parts", "train", "--gpus", "97"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "--gpus" in err


def _fake_rows(monkeypatch, seconds):
    """Rows made without running anything: each case's value from ``seconds``."""
    def fake_row(part, name, case, unit, unavailable=None, **kwargs):
        if unavailable:
            return BenchRow(part, name, None, unit, note=f"n/a ({unavailable})")
        key = (case, kwargs.get("variant"), kwargs.get("bf16"), kwargs.get("amp"))
        return BenchRow(part, name, seconds.get(key, 1.0), unit, isa="avx2")

    monkeypatch.setattr(bench_rows, "row", fake_row)
    monkeypatch.setattr(bench_rows, "_bf16_unavailable", lambda: "no bf16 here")
    monkeypatch.setattr(bench_rows, "_torch_bf16_unavailable", lambda: None)


def test_torch_peer_rows_sit_beside_ours_with_their_ratios(monkeypatch):
    _fake_rows(monkeypatch, {("forward", "fp32", None, None): 2.0,
                             ("torch_forward", None, False, None): 3.0,
                             ("torch_forward", None, True, None): 5.0,
                             ("trainer_step", None, None, False): 4.0,
                             ("torch_train", None, False, None): 6.0})
    config = BenchConfig(output_strides=(16,), heads=("aspp",), peers=("torch",), int8=False)
    forward = bench_rows._forward_rows(config)
    peer_fp32 = next(r for r in forward if "PyTorch" in r.name and "fp32" in r.name)
    assert peer_fp32.ratio == pytest.approx(1.5) and peer_fp32.ratio_of == "torch / ours fp32"
    peer_bf16 = next(r for r in forward if "bf16 autocast" in r.name)
    # our bf16 row is n/a here: the autocast row is set against our fp32, without a target
    assert peer_bf16.ratio == pytest.approx(2.5) and peer_bf16.target == ""
    train = bench_rows._train_rows(config)
    names = [r.name for r in train]
    assert any(n.startswith("PyTorch train iteration fp32 batch 4 crop 321 OS 16")
               for n in names), names
    peer_train = next(r for r in train if r.name.startswith("PyTorch train iteration fp32"))
    assert peer_train.ratio == pytest.approx(1.5) and peer_train.target == ">= 1.0"
    quick = bench_rows._forward_rows(BenchConfig.quick(peers=("torch",), int8=False))
    assert all(r.ratio is None and "resnet50" in r.note for r in quick if "PyTorch" in r.name)


def test_bench_syncbn_rows_time_both_steps_on_two_cpu_contexts():
    config = BenchConfig.quick(parts=("syncbn",), train_crop=33)
    rows = run_benchmark(config)
    plain, sync = rows[1], rows[2]
    assert "BatchNorm batch 2 crop 33 OS 16 on 2 CPU contexts" in plain.name
    assert sync.name.startswith("train iteration (trainer's loop) SyncBatchNorm")
    assert plain.value > 0 and sync.value > 0
    assert sync.ratio == pytest.approx(sync.value / plain.value) and sync.target == "<= 1.3"
    assert plain.isa and sync.isa  # what oneDNN ran, from the row's own process
