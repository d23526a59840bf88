"""The bf16 probe (bf16_probe.py): the ``--amp``, ``export.py --dtype bf16`` and
``gluon-deeplab-env`` lines follow its measurement both ways (the child probe stubbed); the
cache is reused, invalidated by another CPU model, MXNet build or AMX state, and measured over
when unreadable; a failing child claims nothing; and the real probe runs on this CPU (on an
AVX2 CPU it finds that bf16 cannot run, on a bf16 CPU it times both precisions).
"""

from __future__ import annotations

import json
import os
import types

import mxnet as mx
import pytest

from gluon_deeplab import amx, bf16_probe, build_model, env, precision
from gluon_deeplab.checkpoint import save_checkpoint
from gluon_deeplab.cpuinfo import cpu_flags
from gluon_deeplab.deploy import read_meta
from gluon_deeplab.deploy.cli import export_main
from gluon_deeplab.precision import Bf16Support, bf16_support
from gluon_deeplab.training.mixed_precision import describe_amp

FASTER = {"runs": True, "fp32_s": 1.7, "bf16_s": 1.0}
SLOWER = {"runs": True, "fp32_s": 0.38, "bf16_s": 1.0}
CANNOT = {"runs": False, "fp32_s": 0.1,
          "reason": "Test CPU has no bf16 kernels in MXNet's oneDNN (AVX2, no AVX-512)"}


class StubProbe:
    """Stands in for the child probe (``run_probe``): returns ``record``, counts its calls."""

    def __init__(self, record):
        self.record = record
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return dict(self.record)


@pytest.fixture
def probe(monkeypatch, tmp_path):
    """A stub probe (faster bf16 unless a test changes its record), the cache in tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    stub = StubProbe(FASTER)
    monkeypatch.setattr(bf16_probe, "run_probe", stub)
    return stub


@pytest.mark.parametrize("record, ratio, slower", [(FASTER, "1.7x", False),
                                                   (SLOWER, "0.4x", True)],
                         ids=["faster", "slower"])
def test_amp_export_and_env_lines_follow_the_probe_both_ways(record, ratio, slower, probe,
                                                             monkeypatch, tmp_path, capsys):
    probe.record = record
    monkeypatch.setattr(precision, "bf16_support", lambda: Bf16Support(True, "test CPU"))
    phrase = f"bf16 runs {ratio} fp32 here"
    line = describe_amp("bfloat16", [mx.cpu()])
    assert line.startswith(f"AMP: bfloat16 on cpu(0) (weights and loss fp32); {phrase}")
    assert ("slower than fp32" in line) == slower and "AMX" not in line
    assert f"(measured: {bf16_probe.MEASURED_ON}; " in line and "\n" not in line
    checkpoint = save_checkpoint(str(tmp_path / "model.params"),
                                 build_model(3, "resnet18_v2", "aspp"))
    prefix = str(tmp_path / "bf16")
    export_main(["--checkpoint", checkpoint, "--output", prefix, "--dtype", "bf16"])
    assert read_meta(prefix)["precision"] == "bf16"  # slower or not, the export is written
    err = capsys.readouterr().err
    assert f"--dtype bf16: {phrase}" in err and ("slower than fp32" in err) == slower
    report = env.collect()
    assert report["cpu"]["bf16_speed"].startswith(phrase)
    assert f"  bf16_speed:             {phrase}" in env.format_report(report)
    assert probe.calls == 1  # measured once, then read from the cache


def test_where_bf16_cannot_run_the_lines_say_so_and_claim_no_speed(probe):
    probe.record = CANNOT
    speed = bf16_probe.bf16_speed()
    assert not speed.runs and speed.ratio is None
    assert speed.describe() == f"bf16 cannot run here: {CANNOT['reason']}"
    assert env.collect()["cpu"]["bf16_speed"] == speed.describe()
    for text in (speed.describe(), describe_amp("bfloat16", [mx.cpu()])):
        assert "x fp32" not in text and "faster" not in text and "slower" not in text


def test_the_cache_file_is_reused_without_a_second_probe(probe):
    first = bf16_probe.bf16_speed()
    assert not first.cached and probe.calls == 1
    with open(bf16_probe.cache_path(), encoding="utf-8") as f:
        (entry,) = json.load(f)["entries"]
    assert entry["key"] == bf16_probe.cache_key()
    assert entry["result"]["fp32_s"] == 1.7 and entry["result"]["date"] == first.date
    again = bf16_probe.bf16_speed()
    assert again.cached and probe.calls == 1 and again.ratio == first.ratio
    assert again.describe().endswith(f"; {first.date}, cached)")


def test_another_cpu_model_mxnet_build_or_amx_state_measures_again(probe, monkeypatch):
    bf16_probe.bf16_speed()
    changes = [(bf16_probe, "cpu_name", lambda: "Other CPU"),
               (bf16_probe, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"})),
               (mx, "__version__", "1.9.2"),
               (bf16_probe, "installed_builds", lambda: [("mxnet-cu117", "1.9.1")]),
               (amx, "status", lambda: amx.AmxStatus(True, "granted"))]
    for calls, (target, name, value) in enumerate(changes, start=2):
        with monkeypatch.context() as patch:
            patch.setattr(target, name, value)
            assert not bf16_probe.bf16_speed().cached and probe.calls == calls
            assert bf16_probe.bf16_speed().cached and probe.calls == calls
    assert bf16_probe.bf16_speed().cached  # the first machine's entry is still there
    with open(bf16_probe.cache_path(), encoding="utf-8") as f:
        assert len(json.load(f)["entries"]) == 1 + len(changes)


@pytest.mark.parametrize("content", [
    "{not json", '{"entries": 3}', '["entries"]', '{"entries": [1, {"key": 2}]}',
    '{"entries": [{"key": KEY, "result": {"runs": true, "fp32_s": 1.0, "date": "x"}}]}',
    '{"entries": [{"key": KEY, "result": {"runs": "yes", "date": "x"}}]}',
], ids=["not-json", "entries-not-a-list", "not-an-object", "bad-entries", "no-bf16-time",
        "runs-not-bool"])
def test_an_unreadable_cache_file_is_measured_over_without_a_crash(content, probe):
    path = bf16_probe.cache_path()
    os.makedirs(os.path.dirname(path))
    with open(path, "w", encoding="utf-8") as f:
        f.write(content.replace("KEY", json.dumps(bf16_probe.cache_key())))
    speed = bf16_probe.bf16_speed()
    assert probe.calls == 1 and not speed.cached and speed.ratio == pytest.approx(1.7)
    with open(path, encoding="utf-8") as f:
        assert [e["result"]["fp32_s"] for e in json.load(f)["entries"]] == [1.7]
    assert bf16_probe.bf16_speed().cached and probe.calls == 1


@pytest.mark.parametrize("code, reason", [
    ("import sys; sys.exit('the child exploded')", "the probe failed: the child exploded"),
    ("print('hello')", "the probe printed no record"),
    ("print('{\"runs\": true}')", "the probe gave a malformed record"),
], ids=["fails", "no-record", "malformed"])
def test_a_failing_probe_child_claims_nothing_and_is_not_cached(code, reason, monkeypatch,
                                                                tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(bf16_probe, "CHILD_CODE", code)
    speed = bf16_probe.bf16_speed()
    assert speed.runs is None and speed.describe().startswith(f"bf16 speed not measured ({reason}")
    assert not os.path.exists(bf16_probe.cache_path())


def test_the_cache_file_is_under_xdg_cache_home_else_home_cache():
    home_cache = os.path.join(os.path.expanduser("~"), ".cache", "gluon-deeplab",
                              "bf16_probe.json")
    assert bf16_probe.cache_path({"XDG_CACHE_HOME": "/var/cache/me"}) == \
        os.path.join("/var/cache/me", "gluon-deeplab", "bf16_probe.json")
    assert bf16_probe.cache_path({}) == home_cache
    assert bf16_probe.cache_path({"XDG_CACHE_HOME": "relative/dir"}) == home_cache


def test_best_seconds_is_the_best_run_after_a_warm_up_and_stops_at_the_budget(monkeypatch):
    class Block:
        def __init__(self):
            self.calls = 0

        def __call__(self, x):
            self.calls += 1
            return types.SimpleNamespace(wait_to_read=lambda: None)

    durations = iter([3.0, 1.0, 2.0, 5.0, 4.0])  # block 1: 3, 1, 2; block 2: 5, 4
    clock = types.SimpleNamespace(now=0.0)

    def perf_counter():
        if clock.now:
            clock.now, value = 0.0, clock.now
            return value
        clock.now = next(durations)
        return 0.0

    monkeypatch.setattr(bf16_probe, "time", types.SimpleNamespace(perf_counter=perf_counter))
    blocks = [(Block(), None), (Block(), None)]
    assert bf16_probe.best_seconds(blocks, repeats=3, budget=12.0) == 1.0 + 4.0
    assert [b.calls for b, _ in blocks] == [4, 3]  # warm-up + 3; warm-up + 2 (its 6 s spent)


def test_the_real_probe_times_fp32_and_says_whether_bf16_runs_here(monkeypatch, tmp_path):
    """The child probe for real: fp32 is timed on every CPU; bf16 is timed where it runs (CI's
    bf16 CPUs), and an AVX2 CPU gets what is known (no bf16 kernels) and no speed."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    speed = bf16_probe.bf16_speed()
    assert speed.fp32_s is not None and speed.fp32_s > 0 and not speed.cached
    if bf16_support().ok:
        assert speed.runs and speed.ratio > 0
        assert speed.describe().startswith(f"bf16 runs {speed.ratio:.1f}x fp32 here")
    else:
        assert speed.runs is False and speed.ratio is None
        assert speed.describe().startswith("bf16 cannot run here: ")
        assert "x fp32" not in speed.describe()
        if "avx512f" not in cpu_flags():
            assert speed.describe() == f"bf16 cannot run here: {bf16_support().reason}"
            assert "has no bf16 kernels in MXNet's oneDNN (AVX2" in speed.describe()
    assert bf16_probe.bf16_speed().cached
