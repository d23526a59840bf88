"""What the trainer refuses or stops, through its command line: diverged weights, another
run's folder, a folder in use, a killed run's leftovers (SyncBN runs: test_syncbn.py)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from gluon_deeplab.checkpoint import load_checkpoint
from gluon_deeplab.training.cli import main
from gluon_deeplab.training.lock import LOCK_FILE, FolderLock, FolderLocked
from gluon_deeplab.training.run_folder import list_checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "scripts", "train.py")
TIMEOUT = 300  # seconds: a hang becomes a failure


def flags(data_dir, output_dir, *extra):
    return ["--dataset", "synthetic", "--data_dir", data_dir, "--output_dir", str(output_dir),
            "--base_architecture", "resnet18_v2", "--crop_size", "32", "--batch_size", "2",
            "--num_workers", "0", "--progress", "0", "--val_interval", "0",
            "--log_interval", "1", "--checkpoint_interval", "2", "--max_iter", "2", *extra]


def env():
    return dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")


def run_cli(args, timeout=TIMEOUT):
    return subprocess.run([sys.executable, TRAIN, *args], capture_output=True, text=True,
                          timeout=timeout, env=env())


def start_cli(args):
    return subprocess.Popen([sys.executable, TRAIN, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env())


def wait_for(condition, proc, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"gave up waiting: {proc.communicate()[1][-2000:]}")
        time.sleep(0.05)


def records(output_dir):
    with open(os.path.join(output_dir, "log.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]  # every line whole


def train_steps(output_dir):
    return [r["iteration"] for r in records(output_dir) if r["kind"] == "train"]


def all_finite(path):
    return all(np.isfinite(a.asnumpy()).all() for a in load_checkpoint(path).params.values())


def fingerprint(folder):
    """SHA-256 of every file under ``folder`` (TensorBoard's event files included)."""
    out = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


def one_line_error(stderr):
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr, stderr[-2000:]
    assert lines[-1].startswith("gluon-deeplab-train: error: "), stderr[-2000:]
    return lines[-1]


# -- diverged weights are never saved ----------------------------------------------------------
@pytest.mark.parametrize("lr", ["1e6", "1e3"])
def test_diverging_run_stops_and_saves_no_nonfinite_weights(data_dir, tmp_path, lr):
    """At lr 1e6 the loss blows up; at lr 1e3 it can stay finite (ReLU turns NaN into 0) while
    the weights are NaN: the weight check before every save stops both."""
    out = tmp_path / "run"
    proc = run_cli(flags(data_dir, out, "--max_iter", "6", "--initial_learning_rate", lr))
    assert proc.returncode == 1, proc.stderr[-2000:]
    error = one_line_error(proc.stderr)
    assert "training stopped; the diverged weights were not saved" in error
    if lr == "1e3":
        assert "parameter arrays are not finite" in error
    assert not (out / "final.params").exists()
    saved = [n for n in os.listdir(out) if n.endswith(".params")]
    for name in saved:
        assert all_finite(str(out / name)), name
    last_good = error.split("last good checkpoint: ")[1].split(")")[0]
    assert last_good == "none" or (os.path.isfile(last_good) and all_finite(last_good))


# -- another run's folder ----------------------------------------------------------------------
def test_resume_refuses_a_folder_holding_another_run(data_dir, tmp_path, capsys):
    run_a, run_b, fresh = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert main(flags(data_dir, run_a, "--checkpoint_interval", "1")) == 0
    assert main(flags(data_dir, run_b, "--seed", "1")) == 0
    capsys.readouterr()
    before = fingerprint(run_b)
    a_first = str(run_a / "checkpoint-00000001.params")

    assert main(flags(data_dir, run_b, "--resume", a_first)) == 1
    assert "is a checkpoint of another run than the one in" in capsys.readouterr().err
    assert fingerprint(run_b) == before  # nothing overwritten

    # the same run: its own folder (explicit path), or a new empty folder
    assert main(flags(data_dir, run_a, "--resume", a_first)) == 0
    assert main(flags(data_dir, fresh, "--resume", a_first)) == 0
    run_id = load_checkpoint(a_first).extra["run_id"]
    assert load_checkpoint(str(fresh / "final.params")).extra["run_id"] == run_id
    assert load_checkpoint(str(run_b / "final.params")).extra["run_id"] != run_id
    assert [r["run_id"] for r in records(fresh) if r["kind"] == "start"] == [run_id]


# -- one trainer per folder --------------------------------------------------------------------
def test_second_trainer_refuses_with_the_pid_and_a_killed_trainer_does_not_block(
        data_dir, tmp_path):
    out = tmp_path / "run"
    first = start_cli(flags(data_dir, out, "--max_iter", "1000", "--checkpoint_interval", "1"))
    try:
        wait_for(lambda: (out / "checkpoint-00000001.params").exists(), first)
        for extra in ([], ["--resume", "auto"]):
            second = run_cli(flags(data_dir, out, *extra))
            assert second.returncode == 1, second.stderr[-2000:]
            assert f"is in use by another trainer (PID {first.pid})" in one_line_error(
                second.stderr)
    finally:
        first.kill()  # SIGKILL: the lock must go with the process
        first.communicate(timeout=60)
    steps = train_steps(out)
    assert len(steps) == len(set(steps))  # one trainer wrote the log
    latest = list_checkpoints(str(out))[-1][0]
    third = run_cli(flags(data_dir, out, "--resume", "auto", "--max_iter", str(latest + 1)))
    assert third.returncode == 0, third.stderr[-2000:]
    assert load_checkpoint(str(out / "final.params")).iteration == latest + 1
    assert train_steps(out) == list(range(1, latest + 2))


def test_folder_lock_excludes_a_second_holder_in_the_same_process(tmp_path):
    with FolderLock(str(tmp_path)):
        with pytest.raises(FolderLocked, match=f"PID {os.getpid()}"):
            FolderLock(str(tmp_path)).acquire()
    with FolderLock(str(tmp_path)):  # released on exit
        pass
    assert os.path.isfile(tmp_path / LOCK_FILE)


# -- a killed run's leftovers ------------------------------------------------------------------
def test_fresh_run_replaces_a_killed_runs_log_and_removes_every_temporary(data_dir, tmp_path,
                                                                          capsys):
    out = tmp_path / "run"
    killed = start_cli(flags(data_dir, out, "--max_iter", "1000", "--checkpoint_interval",
                             "1000"))
    try:
        wait_for(lambda: len(train_steps(out)) >= 1 if (out / "log.jsonl").exists() else False,
                 killed)
    finally:
        killed.kill()
        killed.communicate(timeout=60)
    assert not list_checkpoints(str(out))
    with open(out / "log.jsonl", "a", encoding="utf-8") as f:
        f.write('{"kind": "train", "iterat')  # a record cut by the kill
    leftovers = [".tmp-abc123final.params", ".tmp-def456log.jsonl", ".tmp-0a1b2ccurves.png"]
    for name in leftovers:
        (out / name).write_bytes(b"partial")

    assert main(flags(data_dir, out)) == 0
    said = capsys.readouterr().out
    assert "it was left by a run that saved no checkpoint" in said
    assert not set(leftovers) & set(os.listdir(out))
    assert [r["kind"] for r in records(out)] == ["start", "train", "train"]
    assert train_steps(out) == [1, 2]


def test_resume_of_a_run_folder_continues_from_its_newest_checkpoint(data_dir, tmp_path,
                                                                      capsys):
    out, empty = tmp_path / "run", tmp_path / "empty"
    assert main(flags(data_dir, out, "--checkpoint_interval", "1", "--max_iter", "2")) == 0
    os.remove(out / "final.params")  # as if it had been stopped before the end
    newest = list_checkpoints(str(out))[-1][1]
    capsys.readouterr()
    assert main(flags(data_dir, out, "--resume", str(out), "--max_iter", "3")) == 0
    said = capsys.readouterr().out
    assert f"is a run folder: continuing from {newest}" in said
    assert load_checkpoint(str(out / "final.params")).iteration == 3

    empty.mkdir()
    assert main(flags(data_dir, tmp_path / "other", "--resume", str(empty))) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"--resume {empty}: the folder holds no checkpoint" in error


def test_resuming_from_another_folder_reads_each_checkpoint_once(data_dir, tmp_path,
                                                                  monkeypatch):
    from gluon_deeplab import checkpoint

    run_a, run_b = tmp_path / "a", tmp_path / "b"
    assert main(flags(data_dir, run_a, "--checkpoint_interval", "1")) == 0
    a_first = str(run_a / "checkpoint-00000001.params")
    assert main(flags(data_dir, run_b, "--resume", a_first)) == 0  # b now holds run a
    reads = []
    real = checkpoint.load_checkpoint

    def counted(path):
        reads.append(os.path.basename(path))
        return real(path)

    for module in ("run_folder", "run_setup", "trainer"):
        monkeypatch.setattr(f"gluon_deeplab.training.{module}.load_checkpoint", counted)
    assert main(flags(data_dir, run_b, "--resume", a_first)) == 0
    assert reads.count("checkpoint-00000001.params") == 1, reads
