"""SIGKILL during training, then --resume auto: same final iteration and bit-identical weights.

Bit-identical holds with one OpenMP thread (``OMP_NUM_THREADS=1``): with more, MXNet's CPU
reductions add in a varying order and two uninterrupted runs already differ after a step. So
every run here is a subprocess with one thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from gluon_deeplab.checkpoint import load_checkpoint
from gluon_deeplab.data import make_synthetic_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "scripts", "train.py")
MAX_ITER = 10
TIMEOUT = 300


def settings(data_dir, output_dir):
    return dict(dataset="synthetic", data_dir=data_dir, output_dir=str(output_dir),
                base_architecture="resnet18_v2", crop_size=48, batch_size=2, max_iter=MAX_ITER,
                checkpoint_interval=2, keep_checkpoints=2, val_interval=0, log_interval=1,
                num_workers=0, seed=3, progress=0, initial_learning_rate=0.01)


def as_flags(args):
    flags = []
    for key, value in args.items():
        flags += [f"--{key}", str(value)]
    return flags


def one_thread_env():
    return dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")


def run_train(args):
    proc = subprocess.run([sys.executable, TRAIN] + as_flags(args), capture_output=True,
                          text=True, timeout=TIMEOUT, env=one_thread_env())
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_sigkill_then_resume_auto_reproduces_the_uninterrupted_run(tmp_path):
    data_dir = str(tmp_path / "data")
    make_synthetic_dataset(data_dir, num_train=8, num_val=2, size=(48, 64), num_classes=3, seed=0)
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, TRAIN] + as_flags(settings(data_dir, killed_dir)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=one_thread_env())
    first = killed_dir / "checkpoint-00000002.params"
    deadline = time.monotonic() + TIMEOUT
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()  # SIGKILL
    stderr = proc.communicate()[1].decode(errors="replace")
    assert first.exists(), stderr[-2000:]
    assert not (killed_dir / "final.params").exists(), "the run ended before it was killed"
    for name in os.listdir(killed_dir):  # whatever is there is a whole checkpoint
        if name.startswith("checkpoint-"):
            load_checkpoint(str(killed_dir / name))
    with open(killed_dir / "log.jsonl", "a", encoding="utf-8") as f:
        f.write('{"kind": "train", "iteration": 99, "lo')  # a record cut by the kill

    run_train(dict(settings(data_dir, killed_dir), resume="auto"))
    assert not [n for n in os.listdir(killed_dir) if n.startswith(".tmp-")]
    with open(killed_dir / "log.jsonl", encoding="utf-8") as f:
        log = [json.loads(line) for line in f]  # every line whole
    steps = [r["iteration"] for r in log if r["kind"] == "train"]
    assert steps == list(range(1, MAX_ITER + 1))  # nothing logged twice
    starts = [r for r in log if r["kind"] == "start"]
    assert len(starts) == 2 and starts[0]["iteration"] == 0 and starts[1]["iteration"] >= 2
    assert starts[0]["run_id"] == starts[1]["run_id"]

    reference_dir = tmp_path / "uninterrupted"
    run_train(settings(data_dir, reference_dir))
    got = load_checkpoint(str(killed_dir / "final.params"))
    want = load_checkpoint(str(reference_dir / "final.params"))
    assert got.iteration == want.iteration == MAX_ITER
    assert set(got.params) == set(want.params)
    for name, value in want.params.items():
        np.testing.assert_array_equal(got.params[name].asnumpy(), value.asnumpy(), err_msg=name)
    assert len(want.params) > 100
    # the whole optimizer record (update counts too: Adam's bias correction and num_update
    # schedules read them), and every state array
    assert got.optimizer_states.record == want.optimizer_states.record
    assert set(want.optimizer_states.record["update_counts"].values()) == {MAX_ITER}
    assert set(got.optimizer_states.arrays) == set(want.optimizer_states.arrays)
    for name, value in want.optimizer_states.arrays.items():
        np.testing.assert_array_equal(got.optimizer_states.arrays[name].asnumpy(),
                                      value.asnumpy(), err_msg=name)
    with open(reference_dir / "log.jsonl", encoding="utf-8") as f:
        want_losses = [r["loss"] for r in map(json.loads, f) if r["kind"] == "train"]
    assert [r["loss"] for r in log if r["kind"] == "train"][-1] == want_losses[-1]
