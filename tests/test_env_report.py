"""``gluon-deeplab-env``: each section from fake inputs (nvidia-smi output, /proc/cpuinfo, an
MXNET_HOME), and the command itself, as text and ``--json``, with and without MXNet."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mxnet as mx

from gluon_deeplab import amx
from gluon_deeplab.amx import AmxStatus
from gluon_deeplab.data import gluoncv_voc_root
from gluon_deeplab.env import (
    cpu_section,
    format_report,
    gpu_section,
    mxnet_home,
    mxnet_section,
    package_section,
    paths_section,
)
from gluon_deeplab.models import model_store_root
from gluon_deeplab.mxnet_builds import MXNET_MISSING
from gluon_deeplab.precision import bf16_support

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUERY = "0, NVIDIA A100-SXM4-80GB, 8.0, 81920\n1, NVIDIA H100 80GB HBM3, 9.0, 81559\n"
HEADER = "| NVIDIA-SMI 470.82.01    Driver Version: 470.82.01    CUDA Version: 11.4     |\n"


def _fake_home(root):
    """An MXNET_HOME with one ImageNet backbone (and a file that is none) and VOC2012 images."""
    models = root / "models"
    models.mkdir(parents=True)
    (models / "resnet50_v2-81a4e66a.params").write_bytes(b"x")
    (models / "resnet50_v2-81a4e66a.params.lock").write_bytes(b"")
    images = root / "datasets" / "voc" / "VOC2012" / "JPEGImages"
    images.mkdir(parents=True)
    for name in ("2007_000032.jpg", "2007_000039.jpg"):
        (images / name).write_bytes(b"x")
    return root


def test_the_mxnet_section_names_the_cpu_build_and_its_features():
    section = mxnet_section()
    assert section["distribution"] == "mxnet 1.9.1" and section["build"] == "cpu"
    assert section["version"] == mx.__version__
    assert section["features"]["CUDA"] is False
    assert set(section["features"]) == {"CUDA", "CUDNN", "NCCL", "MKLDNN", "DIST_KVSTORE"}


def test_the_gpu_section_lists_each_gpus_compute_capability_and_the_builds_kernels_for_it():
    section = gpu_section(QUERY, HEADER, build="cu117")
    assert section["count"] == 2
    assert section["gpus"][0] == {"index": 0, "name": "NVIDIA A100-SXM4-80GB",
                                  "memory_mib": 81920, "compute_capability": "8.0",
                                  "kernels": "sm_80 kernels: runs"}
    assert section["gpus"][1]["kernels"] == ("no kernels for sm_90: see the README, Install "
                                             "(NVIDIA's MXNet container)")
    assert section["mxnet_build_to_install"].startswith(
        "none (nvidia-smi reports NVIDIA H100 80GB HBM3 (GPU 1, compute capability 9.0): no pip")
    a100 = gpu_section(QUERY.splitlines()[0], HEADER)
    assert a100["gpus"][0]["kernels"] is None  # no MXNet installed: no verdict
    assert a100["mxnet_build_to_install"].startswith("cu114 (nvidia-smi reports a GPU whose")
    none = gpu_section(None, None, smi_found=False)
    assert none["count"] == 0 and none["mxnet_build_to_install"] == "cpu (no nvidia-smi on PATH)"


def test_the_cpu_section_reads_bf16_and_amx_flags_and_omp_threads(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
                       "flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n")
    section = cpu_section(str(cpuinfo), {"OMP_NUM_THREADS": "4"})
    assert section["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert section["bf16_flags"] == ["avx512_bf16", "amx_bf16"]
    assert section["amx_flags"] == ["amx_tile", "amx_bf16", "amx_int8"]
    assert section["OMP_NUM_THREADS"] == "4"
    plain = cpu_section(str(tmp_path / "missing"), {})
    assert plain["bf16_flags"] == [] and plain["amx_flags"] == []
    assert plain["OMP_NUM_THREADS"] is None and plain["model"] == "unknown CPU"


def test_the_cpu_section_says_whether_amx_is_on_and_why():
    on = cpu_section(amx_status=AmxStatus(True, "kernel granted the AMX tile state"))
    assert on["amx"] == "on (kernel granted the AMX tile state)"
    off = cpu_section(amx_status=AmxStatus(False, "GLUON_DEEPLAB_AMX=0"))
    assert off["amx"] == "off (GLUON_DEEPLAB_AMX=0)"
    enabled, reason = amx.status()  # this process's own decision, as the report prints it
    assert cpu_section()["amx"] == f"{'on' if enabled else 'off'} ({reason})"


def test_the_paths_section_finds_backbones_and_voc_in_mxnet_home(tmp_path, monkeypatch):
    home = str(_fake_home(tmp_path / "mxnet_home"))
    section = paths_section(home)
    assert section["backbones"] == ["resnet50_v2-81a4e66a.params"]
    assert section["VOC2012_images"] == 2 and section["SBD_images"] is None
    monkeypatch.setenv("MXNET_HOME", home)  # the same folders as MXNet and the data code use
    assert mxnet_home() == home
    assert section["model_store"] == model_store_root()
    assert section["voc_root"] == gluoncv_voc_root()
    assert mxnet_home({}) == os.path.expanduser(os.path.join("~", ".mxnet"))


def test_the_package_section_says_not_installed_for_a_missing_extra():
    versions = package_section(["numpy", "no-such-package-here"])
    assert versions["numpy"] == __import__("numpy").__version__
    assert versions["no-such-package-here"] == "not installed"
    assert versions["python"].startswith(".".join(map(str, sys.version_info[:2])))


def test_the_text_report_has_one_aligned_line_per_field():
    text = format_report({"gpu": gpu_section(QUERY, HEADER, build="cu117"),
                          "mxnet": mxnet_section()})
    assert ("  gpu 1:                  NVIDIA H100 80GB HBM3, 81559 MiB, compute capability 9.0: "
            "no kernels for sm_90: see the README, Install (NVIDIA's MXNet container)") in text
    assert "  features:               CUDA no, CUDNN no, NCCL no, MKLDNN yes" in text


def test_the_env_command_reports_json_with_fake_gpus_and_home(tmp_path, fake_nvidia_smi):
    home = _fake_home(tmp_path / "mxnet_home")
    smi = fake_nvidia_smi("12.2", [("NVIDIA L4", 23034, "8.9")] * 8)
    env = dict(os.environ, MXNET_HOME=str(home), OMP_NUM_THREADS="3",
               PATH=os.pathsep.join([str(smi), os.environ.get("PATH", "")]))
    done = subprocess.run([sys.executable, "-m", "gluon_deeplab.env", "--json"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["gpu"]["count"] == 8
    assert report["gpu"]["gpus"][7] == {"index": 7, "name": "NVIDIA L4", "memory_mib": 23034,
                                        "compute_capability": "8.9",
                                        "kernels": "the CPU build has no GPU kernels (sm_89): "
                                                   "see the README, Install"}
    assert report["gpu"]["mxnet_build_to_install"] == (
        "cu117 (nvidia-smi reports a GPU whose driver runs CUDA 12.2; NVIDIA L4 (sm_89): "
        "sm_86 kernels: runs)")
    assert report["mxnet"]["features"]["CUDA"] is False
    assert report["paths"]["backbones"] == ["resnet50_v2-81a4e66a.params"]
    assert report["cpu"]["OMP_NUM_THREADS"] == "3"
    measured = "bf16 runs " if bf16_support().ok else "bf16 cannot run here: "
    assert report["cpu"]["bf16_speed"].startswith(measured)  # the real probe (bf16_probe.py)
    assert report["packages"]["gluoncv"] == "0.10.5.post0"


def test_the_env_command_works_without_mxnet(no_mxnet_path):
    done = subprocess.run([sys.executable, "-S", "-m", "gluon_deeplab.env"], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=no_mxnet_path))
    assert done.returncode == 0, done.stderr
    assert "  distribution:           not installed" in done.stdout
    assert f"  error:                  {MXNET_MISSING}" in done.stdout
    assert "  bf16_speed:             bf16 speed not measured (MXNet is not installed)" \
        in done.stdout
