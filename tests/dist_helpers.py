"""Shared by the distributed-training tests: the launch command, its environment, and the
processes a launch started (found by a marker in their environment)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from typing import Dict, List, Sequence

import mxnet as mx
import numpy as np

from gluon_deeplab.checkpoint import load_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = [sys.executable, os.path.join(ROOT, "scripts", "launch_dist.py")]
MARK = "GLUON_DEEPLAB_TEST_LAUNCH"


def train_flags(data_dir: str, out: str, max_iter: int, *extra: str) -> List[str]:
    """scripts/train.py's flags of a tiny run (resnet18_v2, 48 px crops, batch 2)."""
    return ["--dataset", "synthetic", "--data_dir", data_dir, "--output_dir", out,
            "--base_architecture", "resnet18_v2", "--crop_size", "48", "--batch_size", "2",
            "--max_iter", str(max_iter), "--val_interval", "0", "--num_workers", "0",
            "--progress", "0", "--log_interval", "1", *extra]


def launch_env(tmp_path, **extra: str) -> Dict[str, str]:
    """The environment of a test launch: fakes in tmp_path/bin first, one OMP thread, and a
    marker that every process of the launch inherits."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    path = os.pathsep.join([str(bin_dir), os.path.dirname(sys.executable),
                            os.environ.get("PATH", "")])
    return {**os.environ, "OMP_NUM_THREADS": "1", "PATH": path, MARK: uuid.uuid4().hex,
            "HOME": str(tmp_path), **extra}


def run_launch(options: Sequence[str], train_args: Sequence[str], env: Dict[str, str],
               timeout: int = 300) -> subprocess.CompletedProcess:
    """``launch_dist.py OPTIONS -- TRAIN_ARGS`` to its end (``--timeout`` stops a hang)."""
    return subprocess.run(LAUNCH + list(options) + ["--timeout", str(timeout), "--"]
                          + list(train_args), env=env, cwd=str(env["HOME"]),
                          capture_output=True, text=True, timeout=timeout + 60)


def run_by_hand(train_args: Sequence[str], env: Dict[str, str], num_workers: int = 2,
                timeout: int = 300) -> List[subprocess.CompletedProcess]:
    """The same dist_sync training without any launcher: a scheduler, one server and
    ``num_workers`` workers started here with the DMLC_* variables MXNet reads (each runs
    ``scripts/train.py``; the scheduler and the server serve from ``import mxnet``)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dmlc = {"DMLC_PS_ROOT_URI": "127.0.0.1", "DMLC_PS_ROOT_PORT": str(port),
            "DMLC_NUM_SERVER": "1", "DMLC_NUM_WORKER": str(num_workers)}
    command = [sys.executable, os.path.join(ROOT, "scripts", "train.py"), *train_args,
               "--kvstore", "dist_sync"]
    roles = ["scheduler", "server"] + ["worker"] * num_workers
    procs = [subprocess.Popen(command, env={**env, **dmlc, "DMLC_ROLE": role},
                              cwd=str(env["HOME"]), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for role in roles]
    try:
        return [subprocess.CompletedProcess(p.args, p.wait(timeout), *p.communicate())
                for p in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def marked_pids(marker: str, role: str = "") -> List[int]:
    """PIDs of the live processes whose environment holds ``marker`` (and ``DMLC_ROLE=role``)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{name}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue  # a zombie has ended
        except OSError:
            continue
        if f"{MARK}={marker}".encode() in env and (
                not role or f"DMLC_ROLE={role}".encode() in env):
            pids.append(int(name))
    return pids


def check_finished_in_lockstep(out, iterations: int) -> Dict[str, mx.nd.NDArray]:
    """The run in ``out`` ended at ``iterations`` with both workers' weights equal; returns
    worker 0's."""
    rank0 = mx.nd.load(str(out / "final-rank0.params"))
    rank1 = mx.nd.load(str(out / "final-rank1.params"))
    assert set(rank0) == set(rank1) and len(rank0) > 100
    for name in rank0:  # weights and (averaged) BN statistics
        np.testing.assert_array_equal(rank0[name].asnumpy(), rank1[name].asnumpy(), name)
    final = load_checkpoint(str(out / "final.params"))
    assert final.iteration == iterations and final.extra["num_workers"] == 2
    return rank0


def outcome(result: subprocess.CompletedProcess) -> str:
    """The end of a launch's output, for assertion messages."""
    return f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
