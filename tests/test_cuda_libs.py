"""CUDA libraries from NVIDIA's pip wheels, without a GPU: stub shared libraries with the real
sonames in a fake ``site-packages/nvidia/<name>/lib`` tree, and a fake ``mxnet`` package whose
``libmxnet.so`` needs them all (RUNPATH ``$ORIGIN``, as the real one). Each case runs in its own
Python (``-S``: no real site-packages, no LD_LIBRARY_PATH) so the loader starts clean."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from gluon_deeplab.cuda_libs import missing_line
from gluon_deeplab.mxnet_builds import CUDA11_LIBRARIES, CUDA11_WHEELS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CC = shutil.which("cc")
pytestmark = pytest.mark.skipif(CC is None, reason="needs a C compiler (cc)")
# Dependencies between the stubs, as between the real libraries (so the order matters).
NEEDS = {"libcublas.so.11": ["libcublasLt.so.11"],
         "libcusolver.so.11": ["libcublas.so.11", "libcublasLt.so.11"]}
FAKE_MXNET = """import ctypes, os
_LIB = ctypes.CDLL(os.path.join(os.path.dirname(__file__), "libmxnet.so"), ctypes.RTLD_LOCAL)
__version__ = "1.9.1"
CALLS = _LIB.stub_libmxnet_so()
"""


def _symbol(soname):
    return "stub_" + "".join(c if c.isalnum() else "_" for c in soname)


def _compile(out, soname, needs=(), folder=None, calls=()):
    """A shared library ``out`` with ``soname`` that links ``needs`` (paths: each becomes a
    NEEDED entry) and whose one function calls each of ``calls``' functions."""
    body = "".join(f"int {_symbol(c)}(void);\n" for c in calls)
    total = "".join(f" + {_symbol(c)}()" for c in calls)
    body += f"int {_symbol(soname)}(void) {{ return 1{total}; }}\n"
    source = out.parent / (out.name + ".c")
    source.write_text(body)
    rpath = ["-Wl,-rpath,$ORIGIN", "-Wl,--enable-new-dtags"] if folder else []
    subprocess.run([CC, "-shared", "-fPIC", "-o", str(out), str(source), f"-Wl,-soname,{soname}",
                    *rpath, "-Wl,--no-as-needed", *map(str, needs)], check=True, timeout=120)
    source.unlink()


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    """{soname: path} of the CUDA stubs, built once (in dependency order)."""
    root = tmp_path_factory.mktemp("cuda_stubs")
    built = {}
    for soname, _ in CUDA11_LIBRARIES:
        built[soname] = root / soname
        _compile(built[soname], soname, [built[n] for n in NEEDS.get(soname, ())])
    built["libcuda.so.1"] = root / "libcuda.so.1"
    _compile(built["libcuda.so.1"], "libcuda.so.1")
    return built


def _site(root, stubs, dist="mxnet_cu117-1.9.1", wheels=True, driver=True):
    """A site-packages folder: the nvidia/*/lib tree (``wheels``), the fake mxnet package whose
    libmxnet.so needs every library (libcuda.so.1 next to it where ``driver``), its dist-info."""
    site = root / "site"
    if wheels:
        for soname, folder in CUDA11_LIBRARIES:
            (site / "nvidia" / folder / "lib").mkdir(parents=True, exist_ok=True)
            shutil.copy(stubs[soname], site / "nvidia" / folder / "lib" / soname)
    package = site / "mxnet"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_MXNET)
    needs = [stubs[soname] for soname, _ in CUDA11_LIBRARIES] + [stubs["libcuda.so.1"]]
    _compile(package / "libmxnet.so", "libmxnet.so", needs, folder=package,
             calls=[soname for soname, _ in CUDA11_LIBRARIES] + ["libcuda.so.1"])
    if driver:
        shutil.copy(stubs["libcuda.so.1"], package / "libcuda.so.1")
    info = site / f"{dist}.dist-info"
    info.mkdir()
    name, version = dist.split("-")
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\n"
                                   f"Version: {version}\n")
    return site


def _python(site, code, script=None, env=None):
    environ = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    environ.update(PYTHONPATH=os.pathsep.join([REPO, str(site)]), **(env or {}))
    argv = [sys.executable, "-S", *([script] if script else ["-c", code])]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=environ)


REPORT = ("import gluon_deeplab, mxnet\nfrom gluon_deeplab import cuda_libs\n"
          "print(mxnet.CALLS, sorted(set(p if p == 'system' else 'pip' "
          "for p in cuda_libs.LOADED.values())), len(cuda_libs.LOADED))\n")


def test_libmxnet_does_not_load_without_the_preload_and_does_with_it(tmp_path, stubs):
    site = _site(tmp_path, stubs)
    bare = _python(site, "import mxnet")
    assert bare.returncode == 1 and "libcudart.so.11.0: cannot open shared object" in bare.stderr
    done = _python(site, REPORT)
    assert done.returncode == 0, done.stderr
    # libmxnet's function called each library's: 1 + 11 + libcuda's 1.
    assert done.stdout.split() == ["13", "['pip']", str(len(CUDA11_LIBRARIES))]


def test_a_system_cuda_on_the_loader_path_is_used_as_it_is(tmp_path, stubs):
    site = _site(tmp_path, stubs, wheels=False)
    system = tmp_path / "usr_local_cuda_lib64"
    system.mkdir()
    for soname, _ in CUDA11_LIBRARIES:
        shutil.copy(stubs[soname], system / soname)
    done = _python(site, REPORT, env={"LD_LIBRARY_PATH": str(system)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["13", "['system']", str(len(CUDA11_LIBRARIES))]


def test_the_cpu_build_loads_no_cuda_library(tmp_path, stubs):
    site = _site(tmp_path, stubs, dist="mxnet-1.9.1")
    shutil.rmtree(site / "mxnet")
    (site / "mxnet").mkdir()
    (site / "mxnet" / "__init__.py").write_text("CALLS = 0\n")
    done = _python(site, REPORT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "[]", "0"]


def test_a_missing_cuda_library_is_one_line_naming_its_wheel(tmp_path, stubs):
    site = _site(tmp_path, stubs)
    shutil.rmtree(site / "nvidia" / "cudnn")
    (tmp_path / "train.py").write_text("import gluon_deeplab\nimport mxnet\nprint('trained')\n")
    done = _python(site, None, script=str(tmp_path / "train.py"))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "train.py: error: import mxnet (mxnet-cu117 1.9.1) fails: libcudnn.so.8 not found: pip "
        f"install {CUDA11_WHEELS['cudnn']} (pip install -e '.[cu117]' installs them all)"]
    caught = _python(site, "import gluon_deeplab\ntry:\n    import mxnet\nexcept ImportError "
                           "as e:\n    print(type(e).__name__, e.name)\n")
    assert caught.stdout.split() == ["MXNetLoadError", "mxnet"]  # an ImportError to catch


def test_a_missing_driver_is_one_line_naming_it(tmp_path, stubs):
    site = _site(tmp_path, stubs, driver=False)
    done = _python(site, "import gluon_deeplab, mxnet")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "-c: error: import mxnet (mxnet-cu117 1.9.1) fails: libcuda.so.1 (the NVIDIA driver) is "
        "missing: install the driver (or run the container with --gpus all), or the CPU build "
        "(README, Install)"]


DRIVER_STUB = """
#include <stdlib.h>
#include <string.h>
/* The driver calls cuda_libs makes, answering from FAKE_CC="9.0,8.6" (one GPU per entry). */
static const char *caps(void) { const char *c = getenv("FAKE_CC"); return c ? c : ""; }
int cuInit(unsigned int flags) { return caps()[0] ? 0 : 100; }
int cuDeviceGetCount(int *n) { *n = (strlen(caps()) + 1) / 4; return 0; }
int cuDeviceGet(int *device, int ordinal) { *device = ordinal; return 0; }
int cuDeviceGetName(char *name, int len, int device) { strncpy(name, "Fake GPU", len); return 0; }
int cuDeviceGetAttribute(int *value, int attribute, int device) {
    *value = caps()[device * 4 + (attribute == 75 ? 0 : 2)] - '0'; return 0; }
"""


def test_the_compute_capability_comes_from_the_driver_as_mxnet_sees_the_gpus(tmp_path):
    (tmp_path / "driver.c").write_text(DRIVER_STUB)
    driver = tmp_path / "libcuda.so.1"
    subprocess.run([CC, "-shared", "-fPIC", "-o", str(driver), str(tmp_path / "driver.c")],
                   check=True, timeout=120)
    code = ("from gluon_deeplab.cuda_libs import device_capabilities\n"
            f"print(device_capabilities({str(driver)!r}))\n")
    done = _python(tmp_path, code, env={"FAKE_CC": "9.0,8.6"})
    assert done.stdout.strip() == "[('Fake GPU', (9, 0)), ('Fake GPU', (8, 6))]", done.stderr
    no_gpu = _python(tmp_path, code, env={"FAKE_CC": ""})  # cuInit fails: no device
    assert no_gpu.stdout.strip() == "[]"
    no_driver = _python(tmp_path, code.replace(str(driver), str(tmp_path / "none.so")))
    assert no_driver.stdout.strip() == "[]"


def test_builds_without_wheels_and_other_load_errors_are_one_line_too():
    gone = OSError("libcudart.so.11.0: cannot open shared object file: No such file or directory")
    assert missing_line(gone, "mxnet-cu114", "cu114") == (
        "import mxnet (mxnet-cu114 1.9.1) fails: libcudart.so.11.0 not found: mxnet-cu114 needs "
        "the system's CUDA, cuDNN and NCCL of its version (no pip wheels fit it: README, Install)")
    other = OSError("/x/mxnet/libmxnet.so: undefined symbol: cudnnFoo\nmore")
    assert missing_line(other, "mxnet-cu117", "cu117") == (
        "import mxnet (mxnet-cu117 1.9.1) fails: /x/mxnet/libmxnet.so: undefined symbol: cudnnFoo")
