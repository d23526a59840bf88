"""Mixed precision: bf16 conversion of both heads and the V3+ decoder, AMP training, bf16 and
INT8 export, clear refusals.

``amp.init`` patches MXNet for the whole process, so every AMP training run happens in a
subprocess. Tests that run bfloat16 arithmetic need a CPU where oneDNN has bf16 kernels
(AVX-512) and are skipped elsewhere with that reason: on AVX2, MXNet 1.9.1 has no bf16
convolution at all (oneDNN: "could not create a primitive descriptor"; without oneDNN:
"Unknown type enum 12"), and no float16 one either ("FP16 gemm on cpu not implemented"). The
graphs (type inference under ``amp.init`` and the bf16 conversion), the files and the error
paths are checked on any machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from graph_probes import quantized_convolutions

from gluon_deeplab import amx, build_model, precision
from gluon_deeplab.checkpoint import load_checkpoint, save_checkpoint
from gluon_deeplab.data import get_dataset
from gluon_deeplab.deploy import export_checkpoint, read_meta
from gluon_deeplab.deploy.cli import export_main
from gluon_deeplab.precision import Bf16Support, bf16_support, to_bf16
from gluon_deeplab.training import cli as train_cli
from gluon_deeplab.training.mixed_precision import amp_dtype

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BF16 = bf16_support()
needs_bf16 = pytest.mark.skipif(not BF16.ok, reason=f"bfloat16 cannot run here: {BF16.reason}")
NO_BF16 = Bf16Support(False, "test CPU has no AVX-512")
RUNS_BF16 = Bf16Support(True, "test CPU: bf16 on AMX")
AMX_BF16 = np.dtype([("bfloat16", np.uint16)])


def _run_python(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=timeout, env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.parametrize("decoder", [False, True], ids=["v3", "v3plus"])
@pytest.mark.parametrize("head", ["aspp", "vortex"])
def test_bf16_conversion_of_both_heads_type_checks_with_fp32_in_and_out(head, decoder):
    net = build_model(3, "resnet18_v2", head, decoder=decoder)
    net.hybridize()
    x = mx.nd.random.normal(shape=(1, 3, 40, 56))
    expected = net(x).asnumpy()
    # Failed with "Non-uniform data type in Concat" before, in the heads, then in the decoder.
    converted = to_bf16(net)
    symbol = converted._cached_graph[1]
    _, out_types, _ = symbol.infer_type(data="float32")
    assert out_types == [np.float32]
    dtypes = {name: p.dtype for name, p in converted.collect_params().items()}
    convs = [n for n in dtypes if n.endswith("weight") and "conv" in n]
    assert convs and all(dtypes[n] == AMX_BF16 for n in convs)
    assert all(dtypes[n] == np.float32 for n in dtypes if n.endswith(("gamma", "running_mean")))
    assert np.abs(net(x).asnumpy() - expected).max() == 0  # the fp32 model is untouched


@pytest.mark.parametrize("dtype, logits", [("bfloat16", "float32"), ("float16", "float16")])
def test_amp_init_builds_type_consistent_graphs_for_heads_aux_and_syncbn(dtype, logits):
    """The graphs AMP training runs (bf16 on CPUs, float16 on GPUs) type-check, V3+ decoder
    included (``train.py --amp --decoder`` failed in its Concat). The loss casts logits to fp32
    itself (float16 AMP leaves the resize, and so the logits, in float16)."""
    _run_python(f"""
import mxnet as mx
import numpy as np
from mxnet.contrib import amp
amp.init(target_dtype='{dtype}')
from gluon_deeplab import build_model
for kwargs in ({{'head': 'aspp', 'aux': True}}, {{'head': 'vortex', 'aux': True}},
               {{'head': 'aspp', 'syncbn_devices': 2}},
               {{'head': 'aspp', 'aux': True, 'decoder': True}},
               {{'head': 'vortex', 'decoder': True}}):
    net = build_model(3, 'resnet18_v2', **kwargs)
    outs = net(mx.sym.var('data'))
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    sym = mx.sym.Group(list(outs))
    types = sym.infer_type(data='float32')[1]
    assert all(t == np.{logits} for t in types), (kwargs, types)
    assert 'amp_cast' in sym.tojson(remove_amp_cast=False), kwargs
""")


def test_amp_picks_float16_on_gpus_bf16_on_capable_cpus(monkeypatch):
    monkeypatch.setattr(precision, "bf16_support", lambda: RUNS_BF16)
    assert amp_dtype([mx.gpu(0), mx.gpu(1)]) == "float16"
    assert amp_dtype([mx.cpu(0), mx.cpu(1)]) == "bfloat16"


def test_amp_without_gpu_or_bf16_cpu_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(precision, "bf16_support", lambda: NO_BF16)
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main(["--amp", "--dataset", "synthetic", "--data_dir", str(tmp_path),
                        "--output_dir", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--amp" in line and "no AVX-512" in line and "without --amp" in line
    assert not os.path.exists(tmp_path / "run")


def test_bf16_export_on_cpu_without_bf16_is_a_one_line_error(trained_synthetic, tmp_path,
                                                             capsys, monkeypatch):
    monkeypatch.setattr(precision, "bf16_support", lambda: NO_BF16)
    prefix = str(tmp_path / "bf16")
    with pytest.raises(SystemExit) as exit_info:
        export_main(["--checkpoint", trained_synthetic[1], "--output", prefix,
                     "--dtype", "bf16"])
    assert exit_info.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("export.py: error: --dtype bf16 needs a CPU that runs bfloat16")
    assert not os.listdir(tmp_path)
    with pytest.raises(SystemExit):
        export_main(["--checkpoint", trained_synthetic[1], "--output", prefix, "--int8",
                     "--dtype", "bf16"])
    assert "disagree" in capsys.readouterr().err


def test_bf16_export_files_reload_bare_with_bf16_weights(trained_synthetic, tmp_path):
    """Exported for another machine (check_bf16=False): runs wherever bf16 does."""
    prefix = str(tmp_path / "bf16")
    export_checkpoint(trained_synthetic[1], prefix, dtype="bf16", check_bf16=False)
    assert read_meta(prefix)["precision"] == "bf16"
    block = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"],
                                         prefix + "-0000.params")
    dtypes = [p.dtype for p in block.collect_params().values()]
    assert AMX_BF16 in dtypes and np.float32 in dtypes
    symbol = mx.sym.load(prefix + "-symbol.json")
    assert symbol.infer_type(data="float32")[1] == [np.float32]


@needs_bf16
def test_bf16_export_agrees_with_fp32_at_three_sizes(trained_synthetic,
                                                    bf16_export_agrees_with_fp32):
    bf16_export_agrees_with_fp32(*trained_synthetic)


@needs_bf16
@pytest.mark.parametrize("head", [1, 2], ids=["aspp", "vortex"])
def test_v3plus_bf16_export_agrees_with_fp32_at_three_sizes(head, trained_v3plus,
                                                           bf16_export_agrees_with_fp32):
    """``export.py --dtype bf16`` of a V3+ checkpoint failed in the decoder's Concat."""
    bf16_export_agrees_with_fp32(*trained_v3plus(head))


@pytest.mark.parametrize("head", ["aspp", "vortex"])
def test_v3plus_bf16_export_of_either_head_type_checks_and_reloads(head, tmp_path):
    """The V3+ bf16 export on any CPU (unchecked, for another machine): fp32 in and out,
    the decoder's convolutions stored in bf16."""
    checkpoint = save_checkpoint(str(tmp_path / "v3plus.params"),
                                 build_model(3, "resnet18_v2", head, decoder=True))
    prefix = str(tmp_path / "bf16")
    export_checkpoint(checkpoint, prefix, dtype="bf16", check_bf16=False)
    meta = read_meta(prefix)
    assert meta["precision"] == "bf16" and meta["decoder"] is True
    block = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"],
                                         prefix + "-0000.params")
    decoder_convs = [p for name, p in block.collect_params().items()
                     if "decoder" in name and "conv" in name and name.endswith("weight")]
    assert decoder_convs and all(p.dtype == AMX_BF16 for p in decoder_convs)
    symbol = mx.sym.load(prefix + "-symbol.json")
    assert symbol.infer_type(data="float32")[1] == [np.float32]


@pytest.mark.parametrize("head", ["aspp", "vortex"])
def test_v3plus_int8_export_of_either_head_quantizes_the_decoder_and_runs_at_any_size(
        head, trained_synthetic, tmp_path):
    root = trained_synthetic[0]
    checkpoint = save_checkpoint(str(tmp_path / "v3plus.params"),
                                 build_model(3, "resnet18_v2", head, decoder=True))
    prefix = str(tmp_path / "int8")
    export_checkpoint(checkpoint, prefix, int8=True, num_calib_images=2, calib_size=(48, 64),
                      calib_dataset=get_dataset("synthetic", root, "train", mode="val"))
    meta = read_meta(prefix)
    assert meta["precision"] == "int8" and meta["decoder"] is True
    int8 = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"],
                                        prefix + "-0000.params")
    convs = quantized_convolutions(int8)
    assert any(quantized for name, quantized in convs.items() if "decoder" in name)
    for h, w in [(48, 64), (37, 53)]:
        out = int8(mx.nd.random.normal(shape=(1, 3, h, w)))
        assert out.shape == (1, 3, h, w) and out.dtype == np.float32
        assert np.isfinite(out.asnumpy()).all()


_AMP_RUN = """
import json, sys
from gluon_deeplab.training import train, mixed_precision
{setup}
root, out, max_iter, model = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
result = train({{"dataset": "synthetic", "data_dir": root, "base_architecture": "resnet18_v2",
                "batch_size": 4, "crop_size": 48, "max_iter": max_iter, "amp": True,
                "aux": True, "initial_learning_rate": 0.02, "val_interval": 0,
                "checkpoint_interval": 6, "log_interval": 1, "num_workers": 0,
                "progress": 0, "output_dir": out, "resume": "auto", **model}})
print(json.dumps(result))
"""
# AMP's whole machinery (amp.init, init_trainer, dynamic loss scaling of float16) on a CPU
# without low-precision kernels: the op list is emptied, so the arithmetic stays fp32.
_PLUMBING = """
mixed_precision.amp_dtype = lambda ctxs: "float16"
mixed_precision.TARGET_PRECISION_OPS = []
"""


def _amp_train(setup: str, root: str, out: str, max_iter: int, model: dict):
    code = _AMP_RUN.format(setup=setup)
    result = subprocess.run([sys.executable, "-c", code, root, out, str(max_iter),
                             json.dumps(model)],
                            capture_output=True, text=True, cwd=REPO, timeout=300,
                            env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _check_amp_run_resumes_and_exports(setup, expected_line, trained_synthetic, tmp_path,
                                       read_tensorboard, model=None):
    root = trained_synthetic[0]
    out = str(tmp_path / "run")
    stdout = _amp_train(setup, root, out, 6, model or {})
    assert stdout.count("AMP: ") == 1 and expected_line in stdout
    stdout = _amp_train(setup, root, out, 12, model or {})  # resumes from checkpoint-6
    assert "resuming from" in stdout
    with open(os.path.join(out, "log.jsonl"), encoding="utf-8") as f:
        records = [r for r in map(json.loads, f) if r["kind"] == "train"]
    losses = [r["loss"] for r in records]
    assert len(losses) == 12 and all(np.isfinite(losses))
    board = read_tensorboard(os.path.join(out, "tensorboard"))["scalars"]
    assert board["train/amp_loss_scale"] == [(r["iteration"], r["loss_scale"]) for r in records]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    final = os.path.join(out, "final.params")
    ckpt = load_checkpoint(final)
    assert ckpt.args["amp"] and ckpt.iteration == 12
    assert all(a.dtype == np.float32 for a in ckpt.params.values())  # master weights: fp32
    prefix = str(tmp_path / "export")
    export_main(["--checkpoint", final, "--output", prefix])
    block = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"],
                                         prefix + "-0000.params")
    assert block(mx.nd.zeros((1, 3, 48, 64))).shape == (1, 3, 48, 64)


def test_amp_machinery_trains_resumes_and_exports_with_loss_scaling(trained_synthetic,
                                                                    tmp_path, read_tensorboard):
    _check_amp_run_resumes_and_exports(_PLUMBING, "AMP: float16 with dynamic loss scaling",
                                       trained_synthetic, tmp_path, read_tensorboard)


@needs_bf16
@pytest.mark.parametrize("model", [{}, {"decoder": True},
                                   {"decoder": True, "aspp_or_vortex": 2}],
                         ids=["v3", "v3plus-aspp", "v3plus-vortex"])
def test_amp_bf16_training_loss_falls_resumes_and_exports(trained_synthetic, tmp_path, model,
                                                          read_tensorboard):
    _check_amp_run_resumes_and_exports("", "AMP: bfloat16 on cpu(0)", trained_synthetic,
                                       tmp_path, read_tensorboard, model)


def test_train_sh_amp_1_trains_with_amp_or_refuses_in_one_line(tmp_path):
    from gluon_deeplab.data import make_synthetic_dataset

    data_dir = make_synthetic_dataset(str(tmp_path / "data"), num_train=4, num_val=1,
                                      size=(48, 64), num_classes=3, seed=0)
    out = tmp_path / "runs"
    env = dict(os.environ, AMP="1", DATASET="synthetic", DATA_DIR=data_dir,
               OUTPUT_DIR=str(out), BACKBONE="resnet18_v2", CROP_SIZE="48", MAX_ITER_1="2",
               MAX_ITER_2="1", BATCH_SIZE_1="2", BATCH_SIZE_2="2", VAL_INTERVAL="0",
               NUM_WORKERS="0", PYTHON=sys.executable)
    proc = subprocess.run(["sh", os.path.join(REPO, "sh", "train.sh"), "--progress", "0"],
                          env=env, capture_output=True, text=True, timeout=240)
    if BF16.ok:
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert load_checkpoint(str(out / "phase2_os8" / "final.params")).args["amp"]
    else:
        assert proc.returncode != 0
        assert "error: --amp" in proc.stderr.strip().splitlines()[-1]
        assert not out.exists() or not any(out.rglob("*.params"))


def test_bf16_support_is_decided_by_the_probe_and_names_the_kernels_not_a_speed(monkeypatch):
    """Whether bf16 runs is the tiny probe's answer; the reason names the kernels (AMX,
    avx512_bf16 with AMX off and why, emulated) and claims no speed: that is measured
    (bf16_probe.py, tests/test_bf16_probe.py)."""
    bf16_support.cache_clear()
    try:
        monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
        monkeypatch.setattr(precision, "_bf16_probe", lambda: "could not create a primitive")
        support = bf16_support()
        assert not support.ok
        assert "has no bf16 kernels in MXNet's oneDNN (AVX2, no AVX-512)" in support.reason
        monkeypatch.setattr(precision, "_bf16_probe", lambda: None)
        amx_flags = precision.AVX512_CORE | {"avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}
        cases = [(amx_flags, amx.AmxStatus(True, "granted"), "bf16 on AMX"),
                 (amx_flags, amx.AmxStatus(False, "the kernel refused the AMX tile state"),
                  "bf16 on avx512_bf16, AMX off (the kernel refused the AMX tile state)"),
                 (precision.AVX512_CORE | {"avx512_bf16"},
                  amx.AmxStatus(False, "this CPU has no AMX"),
                  "bf16 on avx512_bf16, AMX off (this CPU has no AMX)"),
                 (precision.AVX512_CORE, amx.AmxStatus(False, "this CPU has no AMX"),
                  "bf16 emulated on AVX-512 (no avx512_bf16, no AMX)")]
        for flags, status, reason in cases:
            bf16_support.cache_clear()
            monkeypatch.setattr(precision, "cpu_flags", lambda f=flags: frozenset(f))
            monkeypatch.setattr(amx, "status", lambda s=status: s)
            support = bf16_support()
            assert support.ok and support.reason.endswith(reason)
            assert not any(word in support.reason for word in ("slow", "fast"))
    finally:
        bf16_support.cache_clear()
