"""Installing with the right MXNet build: setup.py's extras, setup_env.sh's choice (fake
``nvidia-smi`` scripts on PATH, throw-away venvs with fake installed builds), the package without
MXNet, and ``--gpus`` on MXNet's CPU build (the real one installed here)."""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys

import mxnet as mx
import pytest
import setuptools

import gluon_deeplab.devices as devices
from gluon_deeplab.devices import resolve_contexts
from gluon_deeplab.mxnet_builds import (
    BUILDS,
    CUDA11_WHEELS,
    MXNET_MISSING,
    BuildConflict,
    choose_build,
    machine_build,
)
from gluon_deeplab.training.cli import main as train_main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SH = shutil.which("sh")
HEADER = "| NVIDIA-SMI 470.82.01    Driver Version: 470.82.01    CUDA Version: {}     |"


# -- setup.py --------------------------------------------------------------------------------------
def test_setup_requires_no_mxnet_build_and_pins_one_per_extra(monkeypatch):
    seen = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: seen.update(kw))
    monkeypatch.chdir(REPO)
    runpy.run_path(os.path.join(REPO, "setup.py"))
    assert not [r for r in seen["install_requires"] if r.startswith("mxnet")]
    assert "numpy>=1.21,<2" in seen["install_requires"]  # NVIDIA's container keeps its numpy
    extras = seen["extras_require"]
    assert extras["cpu"] == ["mxnet==1.9.1", "numpy>=1.21,<1.24"]
    for cuda in ("cu116", "cu115", "cu114", "cu113", "cu112", "cu111", "cu110", "cu102"):
        assert extras[cuda] == [f"mxnet-{cuda}==1.9.1", "numpy>=1.21,<1.24"]
    assert extras["cu117"] == ["mxnet-cu117==1.9.1", "numpy>=1.21,<1.24",
                               *CUDA11_WHEELS.values()]
    assert "gluon-deeplab-env=gluon_deeplab.env:main" in seen["entry_points"]["console_scripts"]


# -- the choice, as a function -----------------------------------------------------------------
@pytest.mark.parametrize("cuda, build", [
    ("12.2", "cu117"), ("11.7", "cu117"), ("11.4", "cu114"), ("11.0", "cu110"),
    ("10.2", "cu102"), ("10.1", "cpu"), ("N/A", "cpu")])
def test_the_newest_cuda_build_the_driver_runs_is_chosen(cuda, build):
    assert machine_build(HEADER.format(cuda))[0] == build


def test_an_installed_build_is_kept_and_never_joined_by_another():
    installed = [("mxnet-cu114", "1.9.1")]
    assert choose_build("auto", ["test"], installed, HEADER.format("12.2"))[0] == "cu114"
    assert choose_build("cu114", [], installed, None)[0] == "cu114"
    with pytest.raises(BuildConflict, match=r"cu117 \(mxnet-cu117\).*mxnet-cu114 1\.9\.1"):
        choose_build("auto", ["cu117"], installed, None)
    with pytest.raises(BuildConflict, match="2 MXNet builds.*mxnet 1.9.1, mxnet-cu117 1.9.1"):
        choose_build("auto", [], [("mxnet", "1.9.1"), ("mxnet-cu117", "1.9.1")], None)
    with pytest.raises(BuildConflict, match="MXNET=cpu and cu117 name different"):
        choose_build("cpu", ["cu117"], [], None)
    with pytest.raises(BuildConflict, match="MXNET=cu999: expected one of auto, cpu, cu117"):
        choose_build("cu999", [], [], None)


# -- setup_env.sh, for real, in a throw-away checkout ------------------------------------------
@pytest.fixture
def checkout(tmp_path):
    """A folder laid out like the repository with what setup_env.sh runs, and an empty .venv
    (no pip: --dry-run never calls it, and a run that should stop before pip fails if not)."""
    root = tmp_path / "checkout"
    (root / "sh").mkdir(parents=True)
    (root / "gluon_deeplab").mkdir()
    shutil.copy(os.path.join(REPO, "sh", "setup_env.sh"), root / "sh")
    shutil.copy(os.path.join(REPO, "gluon_deeplab", "mxnet_builds.py"), root / "gluon_deeplab")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")],
                   check=True, timeout=120)
    tools = tmp_path / "tools"  # the only command setup_env.sh needs from PATH
    tools.mkdir()
    os.symlink(shutil.which("dirname"), tools / "dirname")
    return root


def _fake_installed(root, name, version="1.9.1"):
    """A dist-info of ``name`` in the checkout's venv, as pip leaves it."""
    site = next((root / ".venv" / "lib").glob("python*/site-packages"))
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def _setup_env(root, *args, smi=None, mxnet="auto"):
    path = os.pathsep.join([str(p) for p in (smi,) if p] + [str(root.parent / "tools")])
    return subprocess.run([SH, "sh/setup_env.sh", *args], cwd=root, capture_output=True,
                          text=True, timeout=120, env={"PATH": path, "MXNET": mxnet})


@pytest.mark.parametrize("cuda, build", [
    ("11.0", "cu110"), ("11.4", "cu114"), ("11.7", "cu117"), ("12.2", "cu117"), (None, "cpu")])
def test_setup_env_picks_the_build_from_nvidia_smi(checkout, fake_nvidia_smi, cuda, build):
    done = _setup_env(checkout, "--dry-run", "test,crf,onnx", smi=fake_nvidia_smi(cuda))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"-e .[{build},test,crf,onnx]")
    why = (f"nvidia-smi reports a GPU whose driver runs CUDA {cuda}; NVIDIA A100-SXM4-80GB "
           "(sm_80): sm_80 kernels: runs" if cuda else "nvidia-smi fails (no GPU or no driver)")
    assert done.stderr.strip().splitlines() == [
        f"MXNet build: {build} ({BUILDS[build][0]}==1.9.1): {why}"]


def test_setup_env_takes_the_newest_build_with_kernels_for_every_gpu(checkout, fake_nvidia_smi):
    k80 = fake_nvidia_smi("11.4", [("Tesla K80", 11441, "3.7")] * 2)  # cu114 has no sm_3x
    done = _setup_env(checkout, "--dry-run", "test", smi=k80)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("-e .[cu102,test]")
    assert "Tesla K80 (sm_37): sm_30 kernels: runs" in done.stderr


@pytest.mark.parametrize("gpus", [
    [("NVIDIA H100 80GB HBM3", 81559, "9.0")],
    [("NVIDIA A100-SXM4-80GB", 81920, "8.0"), ("NVIDIA H100 80GB HBM3", 81559, "9.0")],
])
def test_setup_env_stops_in_one_line_for_a_gpu_no_pip_build_runs(checkout, fake_nvidia_smi,
                                                                   gpus):
    done = _setup_env(checkout, "test", smi=fake_nvidia_smi("12.4", gpus))  # no --dry-run
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"setup_env.sh: error: nvidia-smi reports NVIDIA H100 80GB HBM3 (GPU {len(gpus) - 1}, "
        "compute capability 9.0): no pip build of MXNet runs it (mxnet-cu117 holds "
        "sm_50..sm_86, no PTX): no kernels for sm_90: see the README, Install (NVIDIA's MXNet "
        "container)"]


def test_setup_env_keeping_a_build_says_which_gpu_it_cannot_run(checkout, fake_nvidia_smi):
    _fake_installed(checkout, "mxnet-cu117")
    smi = fake_nvidia_smi("12.4", [("NVIDIA H100 80GB HBM3", 81559, "9.0")])
    done = _setup_env(checkout, "--dry-run", "test", smi=smi)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines() == [
        "MXNet build: cu117 (mxnet-cu117==1.9.1): keeping mxnet-cu117 1.9.1, already installed "
        "in .venv; it runs no GPU kernel on NVIDIA H100 80GB HBM3 (no kernels for sm_90: see "
        "the README, Install (NVIDIA's MXNet container))"]


def test_setup_env_in_nvidias_container_says_to_install_into_its_python(checkout):
    done = subprocess.run([SH, "sh/setup_env.sh", "test"], cwd=checkout, capture_output=True,
                          text=True, timeout=120,
                          env={"PATH": str(checkout.parent / "tools"),
                               "NVIDIA_MXNET_VERSION": "24.06"})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "setup_env.sh: error: this is NVIDIA's MXNet container (24.06): a .venv would hide its "
        "MXNet; install into its Python with pip install -e . (README, Install)"]


def test_setup_env_without_nvidia_smi_picks_the_cpu_build(checkout):
    done = _setup_env(checkout, "--dry-run", "test")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("-e .[cpu,test]")
    assert "MXNet build: cpu (mxnet==1.9.1): no nvidia-smi on PATH" in done.stderr


def test_setup_env_keeps_the_installed_build(checkout, fake_nvidia_smi):
    _fake_installed(checkout, "mxnet-cu114")
    done = _setup_env(checkout, "--dry-run", "test", smi=fake_nvidia_smi("12.2"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("-e .[cu114,test]")
    assert "keeping mxnet-cu114 1.9.1, already installed in .venv" in done.stderr


@pytest.mark.parametrize("mxnet, extras", [("cpu", "test"), ("auto", "cpu,test")])
def test_setup_env_refuses_a_second_build_in_one_line(checkout, mxnet, extras):
    _fake_installed(checkout, "mxnet-cu117")
    done = _setup_env(checkout, extras, mxnet=mxnet)  # no --dry-run: it must stop before pip
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "setup_env.sh: error: MXNet build cpu (mxnet) would be written over mxnet-cu117 1.9.1, "
        "already installed in .venv: .venv/bin/pip uninstall -y mxnet-cu117 first, or "
        "MXNET=auto to keep it"]


# -- without MXNet ------------------------------------------------------------------------------
def run_without_mxnet(no_mxnet_path, *args):
    """``python -S ARGS`` where MXNet is not installed."""
    return subprocess.run([sys.executable, "-S", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, PYTHONPATH=no_mxnet_path))


def test_the_model_api_without_mxnet_names_the_install_commands(no_mxnet_path):
    code = ("import gluon_deeplab as gd\ntry:\n    gd.build_model\nexcept ImportError as e:\n"
            "    print(e)\ntry:\n    gd.load_segmenter\nexcept ImportError as e:\n"
            "    print(e)\ntry:\n    import gluon_deeplab.training\nexcept ImportError as e:\n"
            "    print(e)\n")
    done = run_without_mxnet(no_mxnet_path, "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [MXNET_MISSING, MXNET_MISSING, MXNET_MISSING]
    assert "pip install -e .[cpu]" in MXNET_MISSING and ".[cu117]" in MXNET_MISSING


def test_a_command_without_mxnet_ends_in_one_line_not_a_traceback(no_mxnet_path):
    done = run_without_mxnet(no_mxnet_path, "scripts/train.py", "--gpus", "0")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [f"train.py: error: {MXNET_MISSING}"]


# -- --gpus on MXNet's CPU build -------------------------------------------------------------
def test_gpus_on_the_cpu_build_says_which_cuda_build_to_install(monkeypatch, fake_nvidia_smi):
    assert not mx.runtime.Features().is_enabled("CUDA")  # the CPU wheel installed here
    monkeypatch.setenv("PATH", str(fake_nvidia_smi("11.4")))
    with pytest.raises(ValueError) as err:
        resolve_contexts("0", verb="evaluate")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("--gpus 0: the installed MXNet (mxnet 1.9.1) is built without CUDA")
    assert "pip uninstall -y mxnet && pip install mxnet-cu114==1.9.1" in message
    assert "MXNET=cu114 sh sh/setup_env.sh" in message
    assert message.endswith("leave --gpus empty to evaluate on the CPU")


def test_train_and_eval_show_the_no_cuda_error_in_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit):
        train_main(["--gpus", "0,1", "--output_dir", str(tmp_path / "run")])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("gluon-deeplab-train: error: --gpus 0,1: the installed MXNet")
    assert error.endswith("to train on the CPU")
    done = subprocess.run(
        [sys.executable, "scripts/eval.py", "--checkpoint", str(tmp_path / "x.params"),
         "--data_dir", str(tmp_path), "--gpus", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "error: --gpus 0: the installed MXNet (mxnet 1.9.1) is built without" in done.stderr
    assert done.stderr.strip().endswith("to evaluate on the CPU")


def test_gpus_on_a_cuda_build_are_checked_against_the_gpus_present(monkeypatch):
    monkeypatch.setattr(devices, "cuda_build", lambda: True)
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 2)
    assert resolve_contexts("0,1") == [mx.gpu(0), mx.gpu(1)]
    with pytest.raises(ValueError, match=r"--gpus 0,3: GPU 3 does not exist; this machine has "
                                         r"2 GPU\(s\), ids 0\.\.1"):
        resolve_contexts("0,3")
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 0)
    with pytest.raises(ValueError, match=r"no GPU \(leave --gpus empty to predict on the CPU"):
        resolve_contexts("0", verb="predict")


def test_gpus_without_kernels_for_the_gpu_stop_in_one_line_before_the_run(monkeypatch, capsys,
                                                                          tmp_path):
    monkeypatch.setattr(devices, "cuda_build", lambda: True)
    monkeypatch.setattr(mx.context, "num_gpus", lambda: 2)
    monkeypatch.setattr(devices, "installed_builds", lambda: [("mxnet-cu117", "1.9.1")])
    monkeypatch.setattr(devices.cuda_libs, "device_capabilities", lambda: [
        ("NVIDIA A100-SXM4-80GB", (8, 0)), ("NVIDIA H100 80GB HBM3", (9, 0))])
    assert resolve_contexts("0") == [mx.gpu(0)]
    line = ("--gpus 0,1: GPU 1 (NVIDIA H100 80GB HBM3, compute capability 9.0) and mxnet-cu117 "
            "1.9.1: no kernels for sm_90: see the README, Install (NVIDIA's MXNet container)")
    with pytest.raises(ValueError) as err:
        resolve_contexts("0,1")
    assert str(err.value) == line
    with pytest.raises(SystemExit):
        train_main(["--gpus", "0,1", "--output_dir", str(tmp_path / "run")])
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"gluon-deeplab-train: error: {line}"
    assert not (tmp_path / "run").exists()  # before anything starts
    # NVIDIA's container and MXNet built from source: kernel lists not known, not refused.
    monkeypatch.setenv("NVIDIA_MXNET_VERSION", "24.06")
    monkeypatch.setattr(devices, "installed_builds", lambda: [("mxnet", "1.9.1")])
    assert resolve_contexts("0,1") == [mx.gpu(0), mx.gpu(1)]
    monkeypatch.delenv("NVIDIA_MXNET_VERSION")
    assert resolve_contexts("0,1") == [mx.gpu(0), mx.gpu(1)]
