"""dist_sync on this machine: scheduler + server + 2 workers started by the launcher."""

from __future__ import annotations

import json
import os
import sys

import mxnet as mx
import numpy as np
import pytest

from gluon_deeplab.checkpoint import load_checkpoint
from gluon_deeplab.data import make_synthetic_dataset
from gluon_deeplab.training.launch import launch_local, with_dist_kvstore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_two_dist_sync_workers_stay_identical_and_only_rank0_writes(tmp_path, read_tensorboard):
    data_dir = str(tmp_path / "data")
    make_synthetic_dataset(data_dir, num_train=8, num_val=2, size=(48, 64), num_classes=3, seed=0)
    out = tmp_path / "run"
    flags = ["--dataset", "synthetic", "--data_dir", data_dir, "--output_dir", str(out),
             "--base_architecture", "resnet18_v2", "--crop_size", "48", "--batch_size", "2",
             "--max_iter", "3", "--checkpoint_interval", "100", "--val_interval", "0",
             "--num_workers", "0", "--progress", "0", "--log_interval", "1"]
    command = [sys.executable, os.path.join(ROOT, "scripts", "train.py")]
    codes = launch_local(command + with_dist_kvstore(flags), num_workers=2, num_servers=1,
                         timeout=240, log_dir=str(tmp_path / "logs"))
    logs = "".join(open(os.path.join(tmp_path, "logs", n)).read()[-1500:]
                   for n in sorted(os.listdir(tmp_path / "logs")))
    assert codes == [0, 0], logs
    rank0 = mx.nd.load(str(out / "final-rank0.params"))
    rank1 = mx.nd.load(str(out / "final-rank1.params"))
    assert set(rank0) == set(rank1) and len(rank0) > 100
    for name in rank0:  # weights and (averaged) BN statistics
        np.testing.assert_array_equal(rank0[name].asnumpy(), rank1[name].asnumpy(), name)
    final = load_checkpoint(str(out / "final.params"))
    assert final.iteration == 3 and final.extra["num_workers"] == 2
    np.testing.assert_array_equal(final.params["classifier.weight"].asnumpy(),
                                  rank0["classifier.weight"].asnumpy())
    with open(out / "log.jsonl", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert [r["kind"] for r in records] == ["start", "train", "train", "train"]
    assert records[0]["workers"] == 2
    assert len(os.listdir(out / "tensorboard")) == 1  # one writer: the chief's
    speed = read_tensorboard(out / "tensorboard")["scalars"]["train/images_per_second"]
    assert [step for step, _ in speed] == [1, 2, 3]  # 2 workers x batch 2 images a step:
    assert [v for _, v in speed] == pytest.approx([4 * r["it_per_s"] for r in records[1:]])
