"""The AMX switch: the decision (on, off, the user's own variable, a kernel that refuses), the
real arch_prctl call, oneDNN reading its ISA once, children that never die, and bf16 on AMX.

Where the CPU has no AMX, ``amx_sim`` fakes the CPU flags and the kernel in child processes
(see there); on an AMX machine the same tests run for real.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from graph_probes import onednn_isa

from gluon_deeplab import amx
from gluon_deeplab.precision import bf16_support

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, "tests")
AMX_CPU = frozenset(amx.AMX_FLAGS) | {"avx2", "avx512f"}
GRANTED = amx.AmxStatus(True, "AMX tile state granted by the kernel")


class Kernel:
    """A fake ``request()`` that records whether it was asked."""

    def __init__(self, refusal=None):
        self.refusal = refusal
        self.asked = 0

    def __call__(self):
        self.asked += 1
        return self.refusal


def test_amx_cpu_without_variables_asks_the_kernel_then_sets_the_isa():
    kernel = Kernel()
    decision = amx.decide(AMX_CPU, {}, kernel)
    assert decision == amx.Decision(GRANTED, set_variable=True) and kernel.asked == 1


@pytest.mark.parametrize("value", ["0", "off", "False"])
def test_switch_off_asks_nothing_and_says_so(value):
    kernel = Kernel()
    decision = amx.decide(AMX_CPU, {amx.SWITCH: value}, kernel)
    assert not decision.status.enabled and not decision.set_variable and kernel.asked == 0
    assert decision.status.reason == f"turned off by GLUON_DEEPLAB_AMX={value}"


def test_users_amx_variable_is_kept_and_the_kernel_still_asked():
    kernel = Kernel()
    decision = amx.decide(AMX_CPU, {amx.ISA_VARIABLE: "AVX512_CORE_AMX"}, kernel)
    assert decision.status.enabled and not decision.set_variable and kernel.asked == 1
    assert "set by you" in decision.status.reason and decision.warning is None


def test_users_non_amx_variable_is_kept_and_no_kernel_call_made():
    kernel = Kernel()
    decision = amx.decide(AMX_CPU, {amx.ISA_VARIABLE: "AVX512_CORE_BF16"}, kernel)
    assert not decision.status.enabled and not decision.set_variable and kernel.asked == 0
    assert decision.status.reason == "DNNL_MAX_CPU_ISA=AVX512_CORE_BF16 (set by you) keeps " \
                                     "oneDNN below AMX"


def test_kernel_refusal_falls_back_without_amx_and_says_why():
    refusal = "the kernel refused the AMX tile state (ARCH_REQ_XCOMP_PERM: ENOSPC: ...)"
    decision = amx.decide(AMX_CPU, {}, Kernel(refusal))
    assert not decision.status.enabled and not decision.set_variable
    assert decision.status.reason.startswith(refusal) and decision.warning is None
    mine = amx.decide(AMX_CPU, {amx.ISA_VARIABLE: "AVX512_CORE_AMX"}, Kernel(refusal))
    assert not mine.status.enabled and not mine.set_variable
    assert "will crash" in mine.warning and "unset DNNL_MAX_CPU_ISA" in mine.warning


@pytest.mark.parametrize("flags, system, expected", [
    (AMX_CPU - {"amx_int8"}, ("Linux", "x86_64"), "this CPU has no AMX (no amx_int8)"),
    (frozenset({"avx2", "fma"}), ("Linux", "x86_64"),
     "this CPU has no AMX (no amx_tile, amx_bf16, amx_int8, avx512_bf16)"),
    (AMX_CPU, ("Darwin", "x86_64"), "AMX needs Linux on x86-64, this is Darwin/x86_64"),
    (AMX_CPU, ("Linux", "aarch64"), "AMX needs Linux on x86-64, this is Linux/aarch64"),
])
def test_no_amx_cpu_or_os_asks_nothing(flags, system, expected):
    kernel = Kernel()
    decision = amx.decide(flags, {}, kernel, system)
    assert decision == amx.Decision(amx.AmxStatus(False, expected)) and kernel.asked == 0


def _fake_arch_prctl(supported=0x60007, request_errno=0, permitted=0x60007, log=None):
    def call(option, arg=0):
        (log if log is not None else []).append((option, arg))
        if option == amx.ARCH_GET_XCOMP_SUPP:
            return (22, 0) if supported is None else (0, supported)
        if option == amx.ARCH_REQ_XCOMP_PERM:
            return request_errno, 0
        return 0, permitted
    return call


def test_tile_request_asks_supp_then_req_then_perm_for_xtiledata():
    log = []
    assert amx.request_tile_data(_fake_arch_prctl(log=log)) is None
    assert log == [(amx.ARCH_GET_XCOMP_SUPP, 0), (amx.ARCH_REQ_XCOMP_PERM, 18),
                   (amx.ARCH_GET_XCOMP_PERM, 0)]


@pytest.mark.parametrize("kwargs, expected", [
    ({"supported": None}, "ARCH_GET_XCOMP_SUPP: EINVAL"),
    ({"supported": 0x7}, "does not offer the AMX tile state"),
    ({"request_errno": 28}, "refused the AMX tile state (ARCH_REQ_XCOMP_PERM: ENOSPC"),
    ({"permitted": 0x7}, "did not grant the AMX tile state"),
])
def test_tile_request_refusals_are_one_line_reasons(kwargs, expected):
    reason = amx.request_tile_data(_fake_arch_prctl(**kwargs))
    assert expected in reason and "\n" not in reason


@pytest.mark.skipif(sys.platform != "linux" or os.uname().machine != "x86_64",
                    reason="arch_prctl is Linux x86-64")
def test_real_arch_prctl_answers_cleanly():
    """The real syscall on this machine: Linux 5.16+ lists its xstate features (x87 and SSE
    at least); without AMX the request says so, the permission request is refused with an
    errno, and nothing crashes."""
    err, supported = amx.arch_prctl(amx.ARCH_GET_XCOMP_SUPP)
    reason = amx.request_tile_data()
    if err:  # a kernel older than 5.16
        assert reason.startswith("the kernel cannot grant AMX") and "Linux 5.16+" in reason
        return
    assert supported & 0x3 == 0x3
    has_amx = bool(supported & (1 << amx.XFEATURE_XTILEDATA))
    assert (reason is None) == has_amx, reason
    if not has_amx:
        assert reason == "the kernel does not offer the AMX tile state (XTILEDATA)"
        assert amx.arch_prctl(amx.ARCH_REQ_XCOMP_PERM, amx.XFEATURE_XTILEDATA)[0] != 0
        err, permitted = amx.arch_prctl(amx.ARCH_GET_XCOMP_PERM)
        assert err == 0 and not permitted & (1 << amx.XFEATURE_XTILEDATA)


def _enable_with(monkeypatch, flags, env, refusal=None):
    """amx.enable() on a faked CPU and kernel; returns (status, latched values)."""
    latched = []
    monkeypatch.setattr(amx, "_status", amx.status())
    monkeypatch.setattr(amx, "cpu_flags", lambda: flags)
    monkeypatch.setattr(amx, "request_tile_data", lambda: refusal)
    monkeypatch.setattr(amx, "latch_max_isa", latched.append)
    for name in (amx.SWITCH, amx.ISA_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(amx.platform, "system", lambda: "Linux")
    monkeypatch.setattr(amx.platform, "machine", lambda: "x86_64")
    return amx.enable(), latched


def test_enable_latches_amx_and_leaves_no_variable_behind(monkeypatch):
    status, latched = _enable_with(monkeypatch, AMX_CPU, {})
    assert status.enabled and latched == ["AVX512_CORE_AMX"] and amx.status() == status
    assert amx.ISA_VARIABLE not in os.environ


def test_enable_survives_a_failing_latch_with_amx_off(monkeypatch):
    def failing(value):
        os.environ.pop(amx.ISA_VARIABLE, None)
        raise RuntimeError("no oneDNN")

    _enable_with(monkeypatch, AMX_CPU, {})
    monkeypatch.setattr(amx, "latch_max_isa", failing)
    assert amx.enable() == (False, "oneDNN could not be set up for AMX (no oneDNN)")


def test_enable_keeps_the_users_variable_and_reports_refusals(monkeypatch):
    status, latched = _enable_with(monkeypatch, AMX_CPU, {amx.ISA_VARIABLE: "AVX512_CORE_AMX"})
    assert status.enabled and not latched and os.environ[amx.ISA_VARIABLE] == "AVX512_CORE_AMX"
    status, latched = _enable_with(monkeypatch, AMX_CPU, {}, refusal="the kernel refused it")
    assert amx.status() == (False, "the kernel refused it; bf16 and INT8 run without AMX")
    assert not latched and amx.ISA_VARIABLE not in os.environ
    with pytest.warns(RuntimeWarning, match="will crash"):
        _enable_with(monkeypatch, AMX_CPU, {amx.ISA_VARIABLE: "AVX512_CORE_AMX"}, "refused")
    status, latched = _enable_with(monkeypatch, AMX_CPU, {amx.SWITCH: "0"})
    assert not status.enabled and not latched and amx.ISA_VARIABLE not in os.environ


def _python(code: str, env=None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join([REPO, TESTS])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=timeout)


_LATCH = """
import os, sys
from gluon_deeplab import amx
if sys.argv[1:] == ["latch"]:
    amx.latch_max_isa("SSE41")
else:  # the variable set, then removed before oneDNN's first primitive
    os.environ["DNNL_MAX_CPU_ISA"] = "SSE41"
    import mxnet
    del os.environ["DNNL_MAX_CPU_ISA"]
import mxnet as mx
assert "DNNL_MAX_CPU_ISA" not in os.environ
x, w = mx.nd.ones((1, 32, 28, 28)), mx.nd.ones((32, 32, 3, 3))
mx.nd.Convolution(x, w, kernel=(3, 3), pad=(1, 1), num_filter=32, no_bias=True).wait_to_read()
"""


@pytest.mark.skipif(not ({"sse4_1", "avx2"} <= amx.cpu_flags()), reason="needs an AVX2 CPU")
def test_onednn_keeps_the_isa_it_read_at_its_first_primitive():
    """oneDNN 2.4 reads DNNL_MAX_CPU_ISA once, at its first primitive: after latch_max_isa the
    variable is gone from the environment and oneDNN still runs below it (SSE4.1 here stands
    in for AMX); removed before any primitive, it has no effect."""
    env = dict(os.environ, DNNL_VERBOSE="1", OMP_NUM_THREADS="1")
    env.pop("DNNL_MAX_CPU_ISA", None)
    runs = {}
    for mode in ("latch", "plain"):
        proc = _python(_LATCH.replace("sys.argv[1:]", repr([mode])), env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[mode] = proc.stdout
    assert amx.isa_from_verbose(runs["latch"]) == "sse41"
    assert amx.isa_from_verbose(runs["plain"]) not in ("sse41", None)


_CHILDREN = """
import multiprocessing as mp, os, subprocess, sys
import amx_sim
from gluon_deeplab import amx
bf16 = {bf16}
enabled, reason = amx.status()
assert enabled, reason
assert not amx_sim.simulated() or 0x1023 in amx_sim.KERNEL_CALLS, amx_sim.KERNEL_CALLS
assert "DNNL_MAX_CPU_ISA" not in os.environ
amx_sim.run_conv(bf16)
spawned = mp.get_context("spawn").Process(target=amx_sim.spawned_child, args=(bf16,))
spawned.start()
spawned.join(240)
forked = mp.get_context("fork").Process(target=amx_sim.run_conv, args=(bf16,))
forked.start()
forked.join(240)
plain = subprocess.run([sys.executable, "-c", "import os, sys; "
                        "assert 'DNNL_MAX_CPU_ISA' not in os.environ; import mxnet; "
                        "sys.path.insert(0, sys.argv[1]); import amx_sim; "
                        "amx_sim.run_conv(sys.argv[2] == 'True')", {tests!r}, str(bf16)])
print("exit codes", spawned.exitcode, forked.exitcode, plain.returncode)
"""


def test_children_of_an_amx_process_never_die():
    """A process that turned AMX on starts a 'spawn' child (bench rows: it imports
    gluon_deeplab and asks the kernel itself), a 'fork' child (loader workers) and a plain
    ``python -c "import mxnet ..."`` (dist servers, a user's own script) with the inherited
    environment: each runs a convolution (bf16 where this CPU runs it: on AMX, an AMX kernel)
    and exits 0; none sees DNNL_MAX_CPU_ISA. Simulated where the CPU has no AMX."""
    env = dict(os.environ, OMP_NUM_THREADS="1", AMX_SIM_KERNEL="grant")
    for name in (amx.SWITCH, amx.ISA_VARIABLE):
        env.pop(name, None)
    code = "import amx_sim\n" + _CHILDREN.format(bf16=bf16_support().ok, tests=TESTS)
    proc = _python(code, env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "exit codes 0 0 0" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    assert "spawned child: AMX True" in proc.stdout


def test_the_children_make_their_bfloat16_inputs_on_any_cpu():
    """The children's bf16 casts run everywhere (only their convolution needs bf16 kernels): a
    "bfloat16" string there failed on the first AVX-512 bf16 CPU, where no test had run it."""
    code = ("import mxnet as mx, amx_sim\n"
            "x = amx_sim.cast(mx.nd.array([[1.0, 0.5], [-2.0, 3.0]]), bf16=True)\n"
            "print(x.dtype.names, x.astype('float32').asnumpy().tolist())")
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "('bfloat16',) [[1.0, 0.5], [-2.0, 3.0]]"


def test_simulated_kernel_refusal_runs_without_amx_and_says_why():
    code = ("import amx_sim, os\nfrom gluon_deeplab import amx\n"
            "print(amx_sim.simulated(), 'DNNL_MAX_CPU_ISA' in os.environ)\n"
            "print(amx.status())")
    env = dict(os.environ, AMX_SIM_KERNEL="refuse")
    env.pop(amx.ISA_VARIABLE, None)
    proc = _python(code, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    faked, status = proc.stdout.strip().splitlines()[-2:]
    if faked.startswith("False"):  # a real AMX machine: nothing was faked
        pytest.skip("this CPU has AMX: the kernel is not faked")
    assert faked == "True False"
    assert status.startswith("AmxStatus(enabled=False, reason='the kernel refused the AMX tile "
                             "state (ARCH_REQ_XCOMP_PERM: ENOSPC")


@pytest.mark.parametrize("verbose, dtype, expected", [
    ("dnnl_verbose,exec,cpu,convolution,jit:avx2,forward_inference,src_f32::blocked:aBcd8b:f0 "
     "wei_f32::blocked:ABcd8b8a:f0,,alg:convolution_direct,mb1,0.1", "float32", "avx2"),
    ("dnnl_verbose,exec,cpu,convolution,brgconv:avx512_core_amx,forward_inference,"
     "src_bf16::blocked:acdb:f0 wei_bf16::blocked:AcdB16b64a2b:f0,,alg:x,mb1,0.1", "bfloat16",
     "avx512_core_amx"),
    ("dnnl_verbose,exec,cpu,convolution,jit_uni_int8:avx2,forward_inference,"
     "src_s8::blocked:acdb:f0 wei_s8::blocked:ABcd2b8a4b:f3,,alg:x,mb1,0.1", "int8", "avx2"),
    ("dnnl_verbose,exec,cpu,convolution,x64:gemm:jit,forward_inference,"
     "src_f32::blocked:abcd:f0 wei_f32::blocked:abcd:f0,,alg:x,mb1,0.1", "float32", "avx2"),
    ("dnnl_verbose,exec,cpu,reorder,jit:uni,undef,src_f32::blocked:abcd:f0,,,1x4,0.1",
     "float32", None),
    ("dnnl_verbose,exec,cpu,convolution,jit:avx2,forward_inference,src_f32::blocked:a:f0,,,"
     "mb1,0.1", "bfloat16", None),
])
def test_isa_is_read_from_the_verbose_convolution_lines(verbose, dtype, expected):
    assert amx.isa_from_verbose("dnnl_verbose,info,cpu,isa:Intel AVX2\n" + verbose,
                                dtype) == expected


MXNET_LOG = """\
dnnl_verbose,info,oneDNN v2.4.4 (commit 5818c40f07bdb6307f9bc64e929836fe036da644)
dnnl_verbose,info,cpu,isa:Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions
dnnl_verbose,exec,cpu,convolution,jit:avx512_core,forward_training,src_f32::blocked,,,mb1,2.5
dnnl_verbose,exec,cpu,convolution,brgconv:avx512_core_amx,forward_inference,src_bf16,,,mb1,9.0
dnnl_verbose,exec,cpu,convolution,jit_int8:avx512_core_amx,forward_inference,src_u8,,,mb1,4.0
dnnl_verbose,exec,cpu,reorder,jit:uni,undef,src_f32::blocked:abcd:f0,,,1x3x8x8,50.0
"""
TORCH_LOG = """\
onednn_verbose,v1,info,cpu,isa:Intel AVX2
onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx2,forward_training,src:f32,,,mb1,3.1
"""


def test_isa_is_that_of_the_convolutions_that_ran_longest():
    assert amx.isa_from_verbose(MXNET_LOG) == "avx512_core_amx"  # 13 ms AMX vs 2.5 ms AVX-512
    assert amx.isa_from_verbose(MXNET_LOG, "float32") == "avx512_core"
    assert amx.isa_from_verbose(TORCH_LOG) == "avx2"  # PyTorch's oneDNN 3.x layout
    assert amx.isa_from_verbose(TORCH_LOG, "float32") == "avx2"


def test_isa_falls_back_to_the_cpu_line_without_a_jit_convolution():
    gemm_only = ("dnnl_verbose,info,cpu,isa:Intel AVX2\n"
                 "dnnl_verbose,exec,cpu,convolution,x64:gemm:jit,forward_inference,,,,mb1,0.4\n")
    assert amx.isa_from_verbose(gemm_only) == "avx2"
    assert amx.isa_from_verbose(gemm_only.split("\n", 1)[1]) == "x64:gemm:jit"  # no info line
    assert amx.isa_from_verbose("dnnl_verbose,info,cpu,isa:Intel AVX2\n") is None


def test_onednn_isa_names_the_isa_of_fp32_and_int8_convolutions_here():
    isas = ("sse41", "avx", "avx2", "avx2_vnni", "avx512_core", "avx512_core_vnni",
            "avx512_core_bf16", "avx512_core_amx")
    for dtype in ("float32", "int8"):
        assert onednn_isa(dtype) in isas
    if "avx512f" not in amx.cpu_flags():
        assert onednn_isa("float32") == "avx2"
    if not bf16_support().ok:
        with pytest.raises(RuntimeError, match="^a bfloat16 convolution failed: .*primitive"):
            onednn_isa("bfloat16")


@pytest.mark.skipif(not amx.status().enabled, reason=f"AMX is off here: {amx.status().reason}")
@pytest.mark.parametrize("v3plus", [False, True], ids=["v3", "v3plus"])
def test_bf16_on_amx_agrees_with_fp32_at_three_sizes(v3plus, trained_synthetic, trained_v3plus,
                                                     bf16_export_agrees_with_fp32):
    assert onednn_isa("bfloat16").startswith("avx512_core_amx")
    bf16_export_agrees_with_fp32(*(trained_v3plus(1) if v3plus else trained_synthetic))
