"""TensorBoard event files of training and evaluation, read back with TensorBoard's reader and
checked against log.jsonl / eval.py's JSON, including a run killed with SIGKILL and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from gluon_deeplab.data import make_synthetic_dataset
from gluon_deeplab.evaluation.cli import eval_main
from gluon_deeplab.tensorboard import EventWriter, event_files, metric_scalars
from gluon_deeplab.training import cli as train_cli
from gluon_deeplab.training import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HINT = "pip install -e .[tensorboard]"
VAL_TAGS = {"miou": "val/mIoU", "pixel_accuracy": "val/pixel_accuracy",
            "mean_accuracy": "val/mean_accuracy", "fwiou": "val/fwIoU"}
# Runs the trainer's command line and SIGKILLs it right after the train record of an iteration
# is logged: a deterministic kill between two checkpoints.
KILLED_RUN = """
import os, signal, sys
from gluon_deeplab.training import cli, monitor
write = monitor.RunLog.write
def write_then_die(self, record):
    write(self, record)
    if record["kind"] == "train" and record["iteration"] == int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
monitor.RunLog.write = write_then_die
sys.exit(cli.main(sys.argv[1:]))
"""


def _settings(data_dir, out, **changes):
    settings = dict(dataset="synthetic", data_dir=data_dir, output_dir=str(out),
                    base_architecture="resnet18_v2", crop_size=33, batch_size=2, max_iter=8,
                    checkpoint_interval=4, val_interval=3, log_interval=1, num_workers=0,
                    progress=0, seed=1, initial_learning_rate=0.01)
    settings.update(changes)
    return settings


def _flags(settings):
    return [part for key, value in settings.items() for part in (f"--{key}", str(value))]


def _log(out):
    with open(os.path.join(out, "log.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _steps(track):
    return [step for step, _ in track]


def _server_steps(folder, tag):
    """The steps of a track as ``tensorboard --load_fast=false`` serves them (its own reader,
    which takes a run's first SessionLog.START as the start and later ones as restarts)."""
    from tensorboard.backend.event_processing import plugin_event_accumulator as served

    acc = served.EventAccumulator(str(folder), size_guidance={served.TENSORS: 0})
    acc.Reload()
    return [event.step for event in acc.Tensors(tag)]


def _check_against_log(board, records, classes, images_per_step):
    """Every train / val figure of log.jsonl is on its track once, at its iteration."""
    train_records = [r for r in records if r["kind"] == "train"]
    val_records = [r for r in records if r["kind"] == "val"]
    scalars = board["scalars"]
    expected = {"train/loss": [r["loss"] for r in train_records],
                "train/lr": [r["lr"] for r in train_records],
                "train/images_per_second": [r["it_per_s"] * images_per_step
                                            for r in train_records]}
    expected.update({tag: [r[key] for r in val_records] for key, tag in VAL_TAGS.items()})
    expected.update({f"val/IoU/{name}": [r["per_class_iou"][k] for r in val_records]
                     for k, name in enumerate(classes)})
    for tag, values in expected.items():
        kinds = train_records if tag.startswith("train/") else val_records
        assert _steps(scalars[tag]) == [r["iteration"] for r in kinds], tag
        np.testing.assert_allclose([v for _, v in scalars[tag]], values, rtol=1e-6, err_msg=tag)
    assert set(scalars) == set(expected)


def test_killed_and_resumed_run_shows_each_iteration_once_as_log_jsonl_does(tmp_path,
                                                                           read_tensorboard):
    data_dir = make_synthetic_dataset(str(tmp_path / "data"), num_train=4, num_val=5,
                                      size=(40, 48), num_classes=3, seed=0)
    out = tmp_path / "run"
    settings = _settings(data_dir, out)
    # Left by a run killed before its first checkpoint: the fresh run replaces it.
    EventWriter(str(out / "tensorboard"), session_start=0).scalars({"train/loss": 9.0}, 99)
    # Checkpoint at 4, validation at 3 and 6: killed after iteration 7, the first event file
    # holds iterations 5-7 and the validation at 6 that the resumed run computes again.
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN] + _flags(settings),
                            capture_output=True, text=True, timeout=300, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=REPO, KILL_AT="7",
                                     OMP_NUM_THREADS="1"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    board_dir = out / "tensorboard"
    (first,) = event_files(str(board_dir))
    before = read_tensorboard(board_dir / first)
    assert _steps(before["scalars"]["train/loss"]) == list(range(1, 8))
    assert _steps(before["scalars"]["val/mIoU"]) == [3, 6]

    train(dict(settings, resume="auto"))  # continues from checkpoint-4

    assert len(event_files(str(board_dir))) == 2
    board = read_tensorboard(board_dir)
    records = _log(out)
    assert [r["iteration"] for r in records if r["kind"] == "train"] == list(range(1, 9))
    _check_against_log(board, records, ["background", "stripes_1", "checker_2"], 2)
    for tag, steps in (("train/loss", range(1, 9)), ("val/mIoU", (3, 6, 8)),
                       ("val/panel/0", (3, 6, 8))):
        assert _server_steps(board_dir, tag) == list(steps), tag
    assert set(board["images"]) == {f"val/panel/{k}" for k in range(4)}
    for events in board["images"].values():  # image | label | prediction, 4-pixel gaps
        assert [(e.step, e.width, e.height) for e in events] == [(s, 3 * 48 + 8, 40)
                                                               for s in (3, 6, 8)]
    ((step, config),) = board["text"]["config/text_summary"]
    assert step == 0 and '| base_architecture | `"resnet18_v2"` |' in config


def test_eval_tensorboard_writes_the_metrics_and_class_iou_of_the_evaluation(
        trained_synthetic, tmp_path, capsys, read_tensorboard):
    root, checkpoint = trained_synthetic
    result_file, board_dir = tmp_path / "metrics.json", tmp_path / "board"
    eval_main(["--checkpoint", checkpoint, "--data_dir", root, "--dataset", "synthetic",
               "--output", str(result_file), "--tensorboard", str(board_dir), "--no_progress"])
    result = json.loads(result_file.read_text())
    board = read_tensorboard(board_dir)
    expected = {"eval/mIoU": result["miou"], "eval/pixel_accuracy": result["pixel_accuracy"],
                "eval/mean_accuracy": result["mean_accuracy"], "eval/fwIoU": result["fwiou"]}
    expected.update({f"eval/IoU/{name}": iou for name, iou in result["per_class_iou"].items()})
    assert set(board["scalars"]) == set(expected)
    for tag, value in expected.items():
        ((step, got),) = board["scalars"][tag]
        assert step == result["iteration"] == 100
        assert got == pytest.approx(value, rel=1e-6), tag


def test_without_tensorboardx_one_line_says_how_to_install_it_and_the_flag_off_is_silent(
        tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import tensorboardX fails
    data_dir = make_synthetic_dataset(str(tmp_path / "data"), num_train=2, num_val=1,
                                      size=(40, 48), num_classes=3, seed=0)
    out = tmp_path / "run"
    train(_settings(data_dir, out, max_iter=1, val_interval=0))
    lines = [line for line in capsys.readouterr().out.splitlines()
             if "TensorBoard" in line or HINT in line]
    assert len(lines) == 1 and HINT in lines[0], lines
    assert not (out / "tensorboard").exists() and _log(out)[-1]["kind"] == "train"

    board_dir = tmp_path / "board"
    eval_main(["--checkpoint", str(out / "final.params"), "--data_dir", data_dir,
               "--dataset", "synthetic", "--tensorboard", str(board_dir), "--no_progress"])
    printed = capsys.readouterr().out
    assert printed.count(HINT) == 1 and "mIoU" in printed and not board_dir.exists()

    flags = _flags(_settings(data_dir, tmp_path / "quiet", max_iter=1, val_interval=0))
    assert train_cli.main(flags + ["--no_tensorboard"]) == 0
    printed = capsys.readouterr().out
    assert "TensorBoard" not in printed and HINT not in printed
    assert not (tmp_path / "quiet" / "tensorboard").exists()


def test_class_iou_tags_hold_only_characters_tensorboard_keeps_and_skip_absent_classes():
    metrics = {"miou": 0.5, "pixel_accuracy": 0.9, "mean_accuracy": 0.6, "fwiou": 0.8}
    scalars = metric_scalars("val", metrics, {"tv/monitor": 0.25, "potted plant": 0.75,
                                              "sofa": None})
    assert scalars == {"val/mIoU": 0.5, "val/pixel_accuracy": 0.9, "val/mean_accuracy": 0.6,
                       "val/fwIoU": 0.8, "val/IoU/tv_monitor": 0.25,
                       "val/IoU/potted_plant": 0.75}
