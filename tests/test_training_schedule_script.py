"""sh/train.sh: the two-phase schedule end to end (tiny settings through environment variables)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np

from gluon_deeplab.checkpoint import load_checkpoint
from gluon_deeplab.data import make_synthetic_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHELL = shutil.which("dash") or "sh"


def test_train_sh_runs_phase1_then_phase2_from_its_final_checkpoint(tmp_path):
    data_dir = str(tmp_path / "data")
    make_synthetic_dataset(data_dir, num_train=8, num_val=2, size=(48, 64), num_classes=3, seed=0)
    out = tmp_path / "runs"
    env = dict(os.environ, DATASET="synthetic", DATA_DIR=data_dir, OUTPUT_DIR=str(out),
               BACKBONE="resnet18_v2", CROP_SIZE="48", MAX_ITER_1="16", MAX_ITER_2="3",
               BATCH_SIZE_1="2", BATCH_SIZE_2="2", VAL_INTERVAL="0", CHECKPOINT_INTERVAL="100",
               NUM_WORKERS="0", HEAD="2", PYTHON=sys.executable)  # not the .venv of the checkout
    proc = subprocess.run([SHELL, os.path.join(ROOT, "sh", "train.sh"), "--progress", "0"],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "phase1_os16/final.params (weights only" in proc.stdout
    phase1 = load_checkpoint(str(out / "phase1_os16" / "final.params"))
    phase2 = load_checkpoint(str(out / "phase2_os8" / "final.params"))
    assert (phase1.iteration, phase2.iteration) == (16, 3)
    assert phase1.model_config["output_stride"] == 16 and phase2.model_config["output_stride"] == 8
    assert phase1.model_config["head"] == phase2.model_config["head"] == "vortex"
    assert phase1.args["freeze_batch_norm"] == 0 and phase2.args["freeze_batch_norm"] == 1
    assert phase1.args["initial_learning_rate"] == 7e-3
    assert phase2.args["initial_learning_rate"] == 1e-3
    bn = [k for k in phase1.params if k.endswith(("gamma", "beta", "running_mean", "running_var"))]
    for name in bn:  # phase 2 starts from phase 1 and keeps BN frozen
        np.testing.assert_array_equal(phase2.params[name].asnumpy(),
                                      phase1.params[name].asnumpy(), name)
    assert not np.array_equal(phase2.params["classifier.weight"].asnumpy(),
                              phase1.params["classifier.weight"].asnumpy())


def test_train_sh_passes_only_what_is_set_and_what_differs_per_phase(tmp_path):
    """Unset settings are train.py's defaults: the recipe does not restate them."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "ARGS $*"\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAX_ITER", "BATCH_SIZE_1", "LR_1", "DATASET", "BACKBONE", "GPUS")}
    env.update(PYTHON=str(fake), OUTPUT_DIR=str(tmp_path / "runs"))
    proc = subprocess.run(["sh", os.path.join(ROOT, "sh", "train.sh")], env=env,
                          capture_output=True, text=True, timeout=30)
    phase1, phase2 = [line.split()[1:] for line in proc.stdout.splitlines()
                      if line.startswith("ARGS")]
    for restated in ("--max_iter", "--batch_size", "--initial_learning_rate", "--weight_decay",
                     "--dataset", "--base_architecture", "--pre_trained_model", "--crop_size"):
        assert restated not in phase1, phase1
    assert phase1[phase1.index("--output_stride") + 1] == "16"
    flags = dict(zip(phase2, phase2[1:]))
    assert (flags["--output_stride"], flags["--batch_size"], flags["--initial_learning_rate"],
            flags["--freeze_batch_norm"]) == ("8", "8", "1e-3", "1")
    assert flags["--init_checkpoint"].endswith("phase1_os16/final.params")
