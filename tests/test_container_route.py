"""NVIDIA's MXNet container (24.05/24.06: its own MXNet 1.9.1 build, CUDA 12.4, Python 3.10,
GluonCV 0.7): ``pip install -e .`` keeps its MXNet and numpy. pip's own resolver (``--dry-run
--report``, no index) runs in a throw-away environment that holds fake installed distributions
like the container's, against fake wheels of other versions that it could pick instead."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import zipfile

import pytest
import setuptools

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the container holds (its numpy version is not in NVIDIA's notes: one above 1.24, the
# pin of PyPI's MXNet builds, and one below; its MXNet's version string is its own).
CONTAINER = {"mxnet": "1.9.1+nv24.6", "gluoncv": "0.7.0", "pillow": "10.3.0", "tqdm": "4.66.4",
             "scipy": "1.13.1", "matplotlib": "3.8.4", "requests": "2.32.3", "pandas": "2.2.2",
             "pyyaml": "6.0.1"}  # no opencv-python: the newest one wants numpy 2
# The container's MXNet declares no numpy bound here (its metadata is NVIDIA's: the worst case).
REQUIRES = {"mxnet": [], "scipy": ["numpy<2.3,>=1.22.4"],
            "matplotlib": ["numpy>=1.21"], "pandas": ["numpy>=1.22.4"],
            "opencv-python": ["numpy>=1.21.2"],
            "gluoncv": ["numpy", "tqdm", "requests", "matplotlib", "portalocker", "Pillow",
                        "scipy", "yacs", "pandas", "pyyaml", "autocfg", "opencv-python"]}
# Offered instead: numpy either way, the gluoncv gluon-deeplab pins and what it adds.
WHEELS = [("numpy", "1.23.5", []), ("numpy", "2.0.0", []),
          ("mxnet", "1.9.1", ["numpy<2.0.0,>1.16.0"]),
          ("gluoncv", "0.10.5.post0", REQUIRES["gluoncv"]), ("portalocker", "2.8.2", []),
          ("yacs", "0.1.8", []), ("autocfg", "0.0.8", []),
          ("opencv-python", "4.10.0.84", REQUIRES["opencv-python"]),
          ("opencv-python", "4.12.0.88", ["numpy<2.3,>=2"])]


def _metadata(name, version, requires):
    return "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                    *(f"Requires-Dist: {r}\n" for r in requires)])


def _fake_wheel(folder, name, version, requires):
    stem = f"{name.replace('-', '_')}-{version}"
    with zipfile.ZipFile(folder / f"{stem}-py3-none-any.whl", "w") as whl:
        whl.writestr(f"{stem}.dist-info/METADATA", _metadata(name, version, requires))
        whl.writestr(f"{stem}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                                                "Root-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{stem}.dist-info/RECORD", "")


def _container(root, numpy):
    """A venv (no pip) holding the container's distributions as dist-info folders."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True,
                   timeout=120)
    site = next((root / "lib").glob("python*/site-packages"))
    for name, version in {**CONTAINER, "numpy": numpy}.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(_metadata(name, version, REQUIRES.get(name, [])))
        (info / "INSTALLER").write_text("pip\n")
    return root / "bin" / "python"


def _requirements(monkeypatch, extra=None):
    """What ``pip install -e .`` (or ``.[extra]``) asks for, from setup.py itself."""
    seen = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: seen.update(kw))
    monkeypatch.chdir(REPO)
    runpy.run_path(os.path.join(REPO, "setup.py"))
    return seen["install_requires"] + (seen["extras_require"][extra] if extra else [])


def _plan(tmp_path, python, requirements):
    """{name: version} pip would install into ``python``'s environment."""
    wheels = tmp_path / "wheels"
    if not wheels.exists():
        wheels.mkdir()
        for name, version, requires in WHEELS:
            _fake_wheel(wheels, name, version, requires)
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--dry-run",
         "--no-index", "--find-links", str(wheels), "--report", str(report), "--quiet",
         *[r for r in requirements if not r.startswith("nvidia-")]],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1"))
    assert done.returncode == 0, done.stderr
    plan = json.loads(report.read_text())["install"]
    return {p["metadata"]["name"]: p["metadata"]["version"] for p in plan}


@pytest.mark.parametrize("numpy", ["1.26.4", "1.23.5"])
def test_pip_install_in_the_container_keeps_its_mxnet_and_numpy(tmp_path, monkeypatch, numpy):
    python = _container(tmp_path / "ngc", numpy)
    plan = _plan(tmp_path, python, _requirements(monkeypatch))
    assert plan == {"gluoncv": "0.10.5.post0", "portalocker": "2.8.2", "yacs": "0.1.8",
                    "autocfg": "0.0.8", "opencv-python": "4.10.0.84"}  # no MXNet, numpy, CUDA


def test_an_mxnet_extra_would_downgrade_the_containers_numpy(tmp_path, monkeypatch):
    python = _container(tmp_path / "ngc", "1.26.4")
    plan = _plan(tmp_path, python, _requirements(monkeypatch, "cpu"))
    assert plan["numpy"] == "1.23.5"  # why the container route installs no extra
    assert "mxnet" not in plan  # "==1.9.1" holds for the container's 1.9.1+nv24.6
