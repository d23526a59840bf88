"""gluon-deeplab-gpu-check: end to end on 1 and 2 CPU contexts (the same code as on GPUs, at
tiny sizes), the AMP row on a CPU without bfloat16, and what a GPU without kernels for the
installed build makes of the report (faked: no GPU here)."""

from __future__ import annotations

import json

import mxnet as mx
import pytest

from gluon_deeplab.bench import gpu_check, gpu_check_cases
from gluon_deeplab.bench.gpu_check import GpuCheckConfig, run_gpu_check
from gluon_deeplab.bench.gpu_check_cli import gpu_check_command
from gluon_deeplab.precision import Bf16Support, bf16_support

TINY = ["--backbone", "resnet18_v2", "--crop_size", "33", "--batch_per_device", "1",
        "--iterations", "3", "--warmup", "1", "--image_size", "40", "48", "--num_train", "4",
        "--val_images", "2", "--scales", "0.75,1.25", "--num_workers", "0"]
TINY_CONFIG = GpuCheckConfig(backbone="resnet18_v2", crop_size=33, batch_per_device=1,
                             iterations=3, warmup=1, image_size=(40, 48), num_train=4,
                             val_images=2, scales=(0.75, 1.25), num_workers=0)
# nvidia-smi --query-gpu=index,name,compute_cap,memory.total --format=csv,noheader,nounits
SMI = "0, NVIDIA H100 80GB HBM3, 9.0, 81559\n1, NVIDIA A100-SXM4-80GB, 8.0, 81920\n"


def _rows(report):
    return {row["name"].split(" resnet18_v2")[0].split(" 2 images")[0]: row
            for row in report["rows"]}


def test_gpu_check_runs_end_to_end_on_two_cpu_contexts_and_says_why_amp_did_not(
        monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(gpu_check, "bf16_support",
                        lambda: Bf16Support(False, "this test's CPU has no bfloat16"))
    out = tmp_path / "check.json"
    assert gpu_check_command(["--cpu_devices", "2", *TINY, "--json", str(out)]) == 0
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["devices"] == ["cpu(0)", "cpu(1)"] and report["problems"] == []
    assert [k["ok"] for k in report["kernels"]] == [True, True]
    rows = _rows(report)
    fp32, sync = rows["train fp32"], rows["train fp32 SyncBN"]
    for row in (fp32, sync):  # batch 2 over 2 CPU contexts, timed after the warm-up
        assert row["seconds"] > 0 and row["images_per_s"] == pytest.approx(2 / row["seconds"])
        assert row["memory"] == "RSS" and row["peak_mib"] > 0 and row["isa"]
        assert row["extra"]["timed"] == 2 and row["extra"]["kvstore"] == "device"
    assert fp32["extra"]["syncbn"] is False and sync["extra"]["syncbn"] is True
    assert sync["speedup"] == pytest.approx(fp32["seconds"] / sync["seconds"])
    amp = rows["train AMP bfloat16"]
    assert amp["seconds"] is None and amp["note"] == (
        "n/a (AMP on CPU contexts is bfloat16: this test's CPU has no bfloat16)")
    assert rows["train fp32 kvstore nccl"]["note"] == "n/a (the nccl kvstore runs on GPUs only)"
    evaluation = rows["eval scales 0.75,1.25 + flip,"]
    assert evaluation["unit"] == "s/img" and evaluation["seconds"] > 0
    assert evaluation["note"].startswith("mIoU ") and "after 3 iterations" in evaluation["note"]
    for row in report["rows"]:  # the table shows every row with its figure or its reason
        line = next(line for line in table.splitlines() if line.startswith(row["name"]))
        assert (f"{row['seconds']:.4f}" if row["seconds"] else row["note"]) in line
    assert "devices: cpu(0), cpu(1) (asked for)" in table and "all ran" in table


def test_gpu_check_on_one_cpu_context_trains_amp_where_this_cpu_runs_bfloat16():
    report = run_gpu_check(GpuCheckConfig(**{**TINY_CONFIG.__dict__, "cpu_devices": 1}))
    rows = _rows(report)
    fp32, amp = rows["train fp32"], rows["train AMP bfloat16"]
    assert report["devices"] == ["cpu(0)"] and report["problems"] == [] and fp32["seconds"] > 0
    support = bf16_support()
    if support.ok:  # AVX-512 CPUs: AMP ran for real, with its speed-up over fp32
        assert amp["seconds"] > 0
        assert amp["speedup"] == pytest.approx(fp32["seconds"] / amp["seconds"])
    else:  # e.g. AVX2: the row says why, nothing crashed
        assert amp["seconds"] is None
        assert amp["note"] == f"n/a (AMP on CPU contexts is bfloat16: {support.reason})"
    assert rows["train fp32 SyncBN"]["note"].startswith("n/a (SyncBN needs 2+ devices")
    assert rows["eval scales 0.75,1.25 + flip,"]["seconds"] > 0


def test_a_device_whose_kernel_fails_blocks_every_run_and_is_the_one_line_problem(
        monkeypatch, capsys):
    # What an H100 gives with mxnet-cu117 (no sm_90 kernels, no PTX), faked on cpu(0).
    failure = "no kernel image is available for execution on the device"
    monkeypatch.setattr(gpu_check, "kernel_results", lambda *args: [
        {"device": "cpu(0)", "ok": False, "detail": failure}])
    monkeypatch.setattr(gpu_check, "_case", lambda *a, **k: pytest.fail("a run was started"))
    assert gpu_check_command(["--cpu_devices", "1", *TINY]) == 1
    captured = capsys.readouterr()
    problem = f"gluon-deeplab-gpu-check: cpu(0): the kernel check failed: {failure}"
    assert captured.err.strip().splitlines()[-1] == problem
    for name in ("train fp32", "train AMP", "eval scales"):
        line = next(line for line in captured.out.splitlines() if line.startswith(name))
        assert "n/a (the kernel check failed on cpu(0))" in line


def test_a_run_that_fails_is_a_row_and_a_problem_and_the_others_still_run(monkeypatch):
    # Every child faked: the rows' arithmetic, the GPU memory column, a failing SyncBN run.
    train = {"seconds": 0.5, "timed": 2, "amp_skipped": 1, "gpu_mib": 2048.0,
             "checkpoint": "final.params", "kvstore": "device", "syncbn": False}
    answers = {"gpu_kernel": [{"device": d, "ok": True, "detail": "ran"}
                              for d in ("cpu(0)", "cpu(1)")],
               "gpu_check_eval": {"seconds": 0.25, "images": 2, "miou": 0.5, "gpu_mib": None}}

    def case(name, config, **kwargs):
        if name == "gpu_check_train" and kwargs["settings"].get("syncbn"):
            raise RuntimeError("benchmark case gpu_check_train failed: MXNetError: boom")
        if name == "gpu_check_train":
            seconds = 0.25 if kwargs["settings"].get("amp") else 0.5
            return {**train, "seconds": seconds}, 900.0, "avx512_core"
        return answers[name], 700.0, "avx2"

    monkeypatch.setattr(gpu_check, "_case", case)
    monkeypatch.setattr(gpu_check, "bf16_support", lambda: Bf16Support(True, "AMX"))
    report = run_gpu_check(GpuCheckConfig(**{**TINY_CONFIG.__dict__, "cpu_devices": 2}))
    rows = _rows(report)
    fp32, amp, sync = rows["train fp32"], rows["train AMP bfloat16"], rows["train fp32 SyncBN"]
    assert (fp32["seconds"], fp32["images_per_s"], fp32["peak_mib"], fp32["memory"]) == \
        (0.5, 4.0, 2048.0, "GPU")
    assert "checkpoint" not in fp32["extra"]  # it lived in the check's temporary folder
    assert amp["speedup"] == 2.0 and amp["note"] == (
        "kvstore device, 1 AMP step(s) skipped; speed-up vs fp32")
    evaluation = rows["eval scales 0.75,1.25 + flip,"]
    assert (evaluation["images_per_s"], evaluation["peak_mib"], evaluation["memory"]) == \
        (4.0, 700.0, "RSS")
    assert sync["note"].startswith("failed: benchmark case") and sync["speedup"] is None
    assert report["problems"] == [f"{sync['name']}: {sync['note']}"]


def test_gpu_memory_is_the_growth_of_the_busiest_gpu_and_none_on_cpu_contexts(monkeypatch):
    mib = 1024 * 1024
    used = {0: [1000, 5000], 1: [900, 3000]}  # MiB in use on each GPU: before, after the run
    monkeypatch.setattr(mx.context, "gpu_memory_info",
                        lambda i: ((81920 - used[i].pop(0)) * mib, 81920 * mib))
    gpus = [mx.gpu(0), mx.gpu(1)]
    before = gpu_check_cases.gpu_memory_used_mib(gpus)
    assert before == [1000.0, 900.0]
    assert gpu_check_cases._pool_growth(before, gpus) == 4000.0
    assert gpu_check_cases.gpu_memory_used_mib([mx.cpu(0), mx.cpu(1)]) is None


def test_each_gpu_is_listed_with_its_compute_capability_and_the_builds_verdict():
    h100, a100 = gpu_check.gpu_lines("cu117", SMI)
    assert (h100["sm"], h100["kernels"]) == ("sm_90", False)
    assert "no kernels for sm_90" in h100["verdict"] and "container" in h100["verdict"]
    assert (a100["sm"], a100["kernels"], a100["verdict"]) == ("sm_80", True, "sm_80 kernels: runs")
    report = {"gpus": [h100], "kernels": [{"device": "gpu(0)", "ok": False, "detail": "209"}],
              "devices": ["gpu(0)"], "devices_why": "asked for"}
    assert gpu_check.problems(report, [], asked_cpu=False) == [
        f"gpu(0): the kernel check failed: 209 (nvidia-smi: sm_90: {h100['verdict']})"]
    unused = {**report, "kernels": [], "devices": ["cpu(0)"],
              "devices_why": "the CPU: this MXNet is built without CUDA"}
    assert gpu_check.problems(unused, [], asked_cpu=False) == [
        "nvidia-smi lists 1 GPU(s) but the check ran on the CPU: this MXNet is built without "
        "CUDA"]
    assert gpu_check.problems(unused, [], asked_cpu=True) == []


def test_the_installed_build_names_the_kernel_list_and_a_container_mxnet_is_unlisted(
        monkeypatch):
    assert gpu_check.installed_build() == "cpu"  # this machine: MXNet's CPU build
    monkeypatch.setattr(gpu_check, "cuda_build", lambda: True)
    monkeypatch.setattr(gpu_check, "installed_builds", lambda: [("mxnet-cu117", "1.9.1")])
    assert gpu_check.installed_build() == "cu117"
    # NVIDIA's container: a CUDA MXNet whose distribution is named like the CPU build
    monkeypatch.setattr(gpu_check, "installed_builds", lambda: [("mxnet", "1.9.1")])
    assert gpu_check.installed_build() is None
    assert "not known here" in gpu_check.gpu_lines(None, SMI)[0]["verdict"]


def test_devices_default_to_the_cpu_here_and_multi_device_runs_say_what_they_need(
        monkeypatch):
    assert gpu_check.choose_devices("", 0) == ("", 1, "the CPU: this MXNet is built without "
                                                      "CUDA")
    assert gpu_check.choose_devices("", 3) == ("", 3, "asked for")
    assert gpu_check.multi_device_unavailable("gpu", 1) == {
        "syncbn": "SyncBN needs 2+ devices (--gpus 0,1 or --cpu_devices 2)",
        "nccl": "the nccl kvstore needs 2+ GPUs"}
    monkeypatch.setattr(gpu_check, "nccl_available", lambda: False)
    assert gpu_check.multi_device_unavailable("gpu", 2) == {
        "syncbn": None, "nccl": "this MXNet is built without NCCL"}
    monkeypatch.setattr(gpu_check, "nccl_available", lambda: True)
    assert gpu_check.multi_device_unavailable("gpu", 8)["nccl"] is None


@pytest.mark.parametrize("flags, expected", [
    (["--gpus", "0"], "--gpus 0: the installed MXNet"),
    (["--iterations", "2", "--warmup", "2"], "--iterations 2 must exceed --warmup 2"),
    (["--crop_size", "0"], "--crop_size must be >= 1"),
    (["--cpu_devices", "1", "--scales", "0"], "--scales must be positive numbers"),
    (["--cpu_devices", "-1"], "--cpu_devices must be >= 0"),
])
def test_bad_flags_are_one_line_errors_before_anything_runs(monkeypatch, capsys, flags,
                                                            expected):
    monkeypatch.setattr(gpu_check, "_case", lambda *a, **k: pytest.fail("a run was started"))
    with pytest.raises(SystemExit) as exit_info:
        gpu_check_command(flags)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and expected in err[0]
