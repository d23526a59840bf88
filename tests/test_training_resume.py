"""SIGKILL during training, then --resume auto: same final iteration and the same weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from gluon_deeplab.checkpoint import load_checkpoint
from gluon_deeplab.data import make_synthetic_dataset
from gluon_deeplab.training import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_ITER = 10


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


def test_sigkill_then_resume_auto_reproduces_the_uninterrupted_run(tmp_path):
    data_dir = str(tmp_path / "data")
    make_synthetic_dataset(data_dir, num_train=8, num_val=2, size=(48, 64), num_classes=3, seed=0)
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts", "train.py")]
                            + as_flags(settings(data_dir, killed_dir)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = killed_dir / "checkpoint-00000002.params"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()  # SIGKILL
    stderr = proc.communicate()[1].decode(errors="replace")
    assert first.exists(), stderr[-2000:]
    assert not (killed_dir / "final.params").exists(), "the run ended before it was killed"
    for name in os.listdir(killed_dir):  # whatever is there is a whole checkpoint
        if name.startswith("checkpoint-"):
            load_checkpoint(str(killed_dir / name))

    resumed = train(dict(settings(data_dir, killed_dir), resume="auto"))
    assert resumed["iteration"] == MAX_ITER
    assert not [n for n in os.listdir(killed_dir) if n.startswith(".tmp-")]
    with open(killed_dir / "log.jsonl", encoding="utf-8") as f:
        steps = [json.loads(line)["iteration"] for line in f if '"train"' in line]
    assert steps == list(range(1, MAX_ITER + 1))  # nothing logged twice

    reference = train(settings(data_dir, tmp_path / "uninterrupted"))
    got = load_checkpoint(resumed["checkpoint"])
    want = load_checkpoint(reference["checkpoint"])
    assert got.iteration == want.iteration == MAX_ITER
    assert set(got.params) == set(want.params)
    moved = 0
    for name, value in want.params.items():
        np.testing.assert_allclose(got.params[name].asnumpy(), value.asnumpy(), rtol=0,
                                   atol=1e-5, err_msg=name)
        moved += 1
    assert moved > 100
    assert resumed["last_loss"] == pytest.approx(reference["last_loss"], rel=1e-5)
