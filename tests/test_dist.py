"""dist_sync through MXNet's tracker on this machine (local launcher): the patch it needs,
2 workers + 1 server training, a worker that dies, and a killed server's run resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from dist_helpers import (
    LAUNCH,
    check_finished_in_lockstep,
    launch_env,
    marked_pids,
    outcome,
    run_by_hand,
    run_launch,
    train_flags,
)

from gluon_deeplab.training.launch import launch, read_hosts, with_dist_kvstore
from gluon_deeplab.training.launch_cli import main as launch_main

TWO_WORKERS = ["--launcher", "local", "-n", "2", "-s", "1"]


def test_launcher_adds_a_distributed_kvstore_and_refuses_a_local_one(tmp_path):
    assert with_dist_kvstore(["--max_iter", "5"]) == ["--max_iter", "5", "--kvstore", "dist_sync"]
    assert with_dist_kvstore(["--gpus", "0,1"])[-2:] == ["--kvstore", "dist_device_sync"]
    assert with_dist_kvstore(["--gpus", "0", "--kvstore=dist_device_sync"]) == [
        "--gpus", "0", "--kvstore=dist_device_sync"]
    with pytest.raises(ValueError, match="--kvstore device: a distributed run needs"):
        with_dist_kvstore(["--kvstore", "device"])
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("node1\n\nnode2:2222\nnode3 slots=4\n")
    assert read_hosts(str(hosts)) == ["node1", "node2:2222", "node3 slots=4"]
    hosts.write_text("node1  # first\n")
    with pytest.raises(ValueError, match=r"hosts.txt:1: 'node1  # first': expected host"):
        read_hosts(str(hosts))


@pytest.mark.parametrize("argv, message", [
    (["--launcher", "mpi", "--partition", "gpu"], "--partition is an option of --launcher "
                                                  "slurm, not mpi"),
    (["--launcher", "ssh"], "--launcher ssh needs -H/--hostfile"),
    (["--launcher", "ssh", "-H", "/nonexistent/hosts"], "--hostfile /nonexistent/hosts: no such"),
    (["--launcher", "yarn"], "--launcher yarn: HADOOP_HOME must be set"),
    (["--", "--kvstore", "local"], "--kvstore local: a distributed run needs one of"),
])
def test_launcher_options_that_do_not_fit_are_one_line_errors(argv, message, capsys, monkeypatch):
    monkeypatch.delenv("HADOOP_HOME", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        launch_main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_dmlc_tracker_fails_unpatched_and_runs_patched(tmp_path):
    unpatched = ("from dmlc_tracker import {0}, opts; {0}.submit(opts.get_opts(["
                 "'--cluster', '{0}', '--num-workers', '1', '--num-servers', '1', 'true']))")
    sge = subprocess.run([sys.executable, "-c", unpatched.format("sge")], cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=60)
    assert sge.returncode != 0 and "has no attribute 'logdir'" in sge.stderr, sge.stderr
    if sys.version_info >= (3, 9):  # Thread.isAlive was removed in 3.9
        local = subprocess.run([sys.executable, "-c", unpatched.format("local")],
                               capture_output=True, text=True, timeout=60)
        assert local.returncode != 0 and "has no attribute 'isAlive'" in local.stderr
    # patched: scheduler, server and worker run (``true`` needs no parameter server)
    assert launch("local", ["true"], num_workers=1, num_servers=1, timeout=60) is None
    failure = launch("local", ["false"], num_workers=1, num_servers=1, timeout=60)
    assert failure is not None and "exited with code 1" in failure


def test_two_local_workers_train_through_the_tracker_to_the_weights_of_a_launch_by_hand(
        tmp_path, data_dir, read_tensorboard):
    """The tracker's local launch trains exactly what a scheduler, a server and two workers
    started here by hand with MXNet's DMLC_* variables train: the reference is computed on this
    machine (kernels round differently on other CPUs, so no number recorded elsewhere)."""
    out = tmp_path / "run"
    start = time.monotonic()
    result = run_launch(TWO_WORKERS, train_flags(data_dir, str(out), 3), launch_env(tmp_path))
    seconds = time.monotonic() - start
    assert result.returncode == 0, outcome(result)
    rank0 = check_finished_in_lockstep(out, 3)
    by_hand = tmp_path / "by_hand"
    done = run_by_hand(train_flags(data_dir, str(by_hand), 3, "--no_tensorboard"),
                       launch_env(tmp_path))
    assert [p.returncode for p in done] == [0] * 4, [p.stderr[-2000:] for p in done]
    reference = check_finished_in_lockstep(by_hand, 3)
    assert sorted(reference) == sorted(rank0)
    for name in rank0:
        np.testing.assert_array_equal(rank0[name].asnumpy(), reference[name].asnumpy(), name)
    assert not np.array_equal(rank0["classifier.bias"].asnumpy(), np.zeros(3))
    with open(out / "log.jsonl", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert [r["kind"] for r in records] == ["start", "train", "train", "train"]
    assert records[0]["workers"] == 2
    assert len(os.listdir(out / "tensorboard")) == 1  # one writer: the chief's
    speed = read_tensorboard(out / "tensorboard")["scalars"]["train/images_per_second"]
    assert [step for step, _ in speed] == [1, 2, 3]  # 2 workers x batch 2 images a step:
    assert [v for _, v in speed] == pytest.approx([4 * r["it_per_s"] for r in records[1:]])
    print(f"2 workers + 1 server, 3 iterations through dmlc_tracker: {seconds:.1f} s")


def test_a_worker_that_dies_ends_the_launch_and_leaves_no_process(tmp_path, data_dir):
    env = launch_env(tmp_path)
    bad = train_flags(str(tmp_path / "nothing"), str(tmp_path / "run"), 3)
    proc = subprocess.Popen(
        LAUNCH + TWO_WORKERS + ["--timeout", "200", "--"] + bad, env=env,
        cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = set()
    while proc.poll() is None:  # every process of the launch, while it runs
        seen.update(marked_pids(env["GLUON_DEEPLAB_TEST_LAUNCH"]))
        time.sleep(0.2)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 1, (stdout[-2000:], stderr[-3000:])
    reason = stderr.strip().splitlines()[-1]
    assert reason.startswith("gluon-deeplab-launch: worker (python, pid "), stderr[-3000:]
    assert reason.endswith(") exited with code 1")
    assert len(seen) >= 4  # scheduler, server, 2 workers
    alive = [pid for pid in seen if os.path.exists(f"/proc/{pid}")
             and pid in marked_pids(env["GLUON_DEEPLAB_TEST_LAUNCH"])]
    assert alive == [] and marked_pids(env["GLUON_DEEPLAB_TEST_LAUNCH"]) == []


def test_a_killed_server_leaves_a_run_that_resumes_to_the_end(tmp_path, data_dir):
    out = tmp_path / "run"
    flags = train_flags(data_dir, str(out), 8, "--checkpoint_interval", "2",
                        "--keep_checkpoints", "10")
    env = launch_env(tmp_path)
    marker = env["GLUON_DEEPLAB_TEST_LAUNCH"]
    proc = subprocess.Popen(LAUNCH + TWO_WORKERS + ["--timeout", "300", "--"] + flags,
                            env=env, cwd=str(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "checkpoint-00000002.params").exists() and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    servers = marked_pids(marker, "server")
    assert len(servers) == 1, proc.communicate()
    os.kill(servers[0], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, (stdout[-2000:], stderr[-3000:])
    assert stderr.strip().splitlines()[-1].endswith(" was killed by SIGKILL"), stderr[-2000:]
    assert "server (python, pid" in stderr.strip().splitlines()[-1]
    assert marked_pids(marker) == [] and not (out / "final.params").exists()
    before = {p.name: p.read_bytes() for p in out.glob("checkpoint-*.params")}
    with open(out / "log.jsonl", encoding="utf-8") as f:
        log_before = [json.loads(line) for line in f]

    result = run_launch(TWO_WORKERS, flags + ["--resume", "auto"], launch_env(tmp_path))
    assert result.returncode == 0, outcome(result)
    check_finished_in_lockstep(out, 8)
    for name, data in before.items():  # nothing written before is lost
        assert (out / name).read_bytes() == data, name
    with open(out / "log.jsonl", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    resumed_at = max(int(n[11:19]) for n in before)
    kept = [r for r in log_before if r.get("iteration", 0) <= resumed_at]
    assert records[:len(kept)] == kept and records[len(kept)]["kind"] == "start"
    steps = [r["iteration"] for r in records if r["kind"] == "train"]
    assert steps == list(range(1, 9))  # each iteration once
