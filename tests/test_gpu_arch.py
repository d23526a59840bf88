"""Which GPUs an MXNet build runs on: ``nvidia-smi``'s compute capability against the kernel
architectures each build holds (binary compatibility within a major, no PTX)."""

from __future__ import annotations

import pytest

from gluon_deeplab.mxnet_builds import (
    BUILD_ARCHS,
    BUILDS,
    GpuInfo,
    kernel_verdict,
    query_gpus,
)


@pytest.mark.parametrize("cc, runs, line", [
    ((7, 0), True, "sm_70 kernels: runs"),                 # V100
    ((7, 5), True, "sm_70 kernels: runs"),                 # T4: sm_70 cubins run on 7.5
    ((8, 0), True, "sm_80 kernels: runs"),                 # A100
    ((8, 6), True, "sm_86 kernels: runs"),                 # A10, RTX 30xx
    ((8, 9), True, "sm_86 kernels: runs"),                 # L4, RTX 40xx
    ((9, 0), False, "no kernels for sm_90: see the README, Install (NVIDIA's MXNet container)"),
    ((10, 0), False, "no kernels for sm_100: see the README, Install (NVIDIA's MXNet container)"),
    ((3, 7), False, "no kernels for sm_37: no MXNet build listed in the README runs it"),
])
def test_cu117_runs_volta_to_ada_and_nothing_from_hopper_on(cc, runs, line):
    assert kernel_verdict("cu117", cc) == (runs, line)


def test_older_builds_have_their_own_lists_and_point_to_cu117_where_it_runs():
    assert kernel_verdict("cu102", (7, 5)) == (True, "sm_75 kernels: runs")
    assert kernel_verdict("cu102", (3, 7)) == (True, "sm_30 kernels: runs")  # K80
    assert kernel_verdict("cu102", (8, 6)) == (
        False, "no kernels for sm_86: install .[cu117] (README, Install)")
    assert kernel_verdict("cu110", (8, 6)) == (True, "sm_80 kernels: runs")
    assert not any(archs.ptx for archs in BUILD_ARCHS.values())
    assert set(BUILD_ARCHS) == {b for b in BUILDS if b != "cpu"}


def test_a_build_of_unknown_kernels_is_not_refused_and_the_cpu_build_always_is():
    assert kernel_verdict("ngc", (9, 0)) == (True, "ngc: its kernel list is not known here; "
                                                   "sm_90 not checked")
    assert kernel_verdict("cpu", (8, 0))[0] is False


def test_query_gpus_reads_index_name_compute_capability_and_memory():
    output = ("0, NVIDIA H100 80GB HBM3, 9.0, 81559\n1, NVIDIA A10, 8.6, [N/A]\n"
              "Field \"compute_cap\" is not a valid field to query.\n")
    assert query_gpus(output) == [GpuInfo(0, "NVIDIA H100 80GB HBM3", (9, 0), 81559),
                                  GpuInfo(1, "NVIDIA A10", (8, 6), None)]
    assert query_gpus("") == []


def test_query_gpus_runs_nvidia_smi_from_path(monkeypatch, fake_nvidia_smi):
    monkeypatch.setenv("PATH", str(fake_nvidia_smi("12.4", [("NVIDIA H200", 143771, "9.0")] * 2)))
    assert query_gpus() == [GpuInfo(0, "NVIDIA H200", (9, 0), 143771),
                            GpuInfo(1, "NVIDIA H200", (9, 0), 143771)]
    monkeypatch.setenv("PATH", str(fake_nvidia_smi(None)))
    assert query_gpus() == []
