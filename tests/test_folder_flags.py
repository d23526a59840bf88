"""Your own data through the command lines: --image_dir, --label_dir and --list_file of
``--dataset folder`` in train.py and eval.py, and one-line errors where they do not apply."""

from __future__ import annotations

import json
import os

import pytest

from gluon_deeplab.checkpoint import load_checkpoint
from gluon_deeplab.data import make_synthetic_dataset
from gluon_deeplab.evaluation.cli import eval_main
from gluon_deeplab.training.cli import main as train_main

# A synthetic set in VOC's layout, read as a folder set: none of the folder layout's default
# names (images/, labels/, {split}.txt) exists there.
FOLDER_FLAGS = ["--dataset", "folder", "--image_dir", "JPEGImages",
                "--label_dir", "SegmentationClass", "--list_file",
                "ImageSets/Segmentation/{split}.txt", "--num_classes", "3"]


@pytest.fixture(scope="module")
def own_data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("own"))
    make_synthetic_dataset(root, num_train=4, num_val=2, size=(32, 32), num_classes=3, seed=1)
    return root


def test_train_and_eval_read_a_folder_set_with_its_own_folder_names(own_data, tmp_path, capsys):
    out = str(tmp_path / "run")
    code = train_main(FOLDER_FLAGS + [
        "--data_dir", own_data, "--output_dir", out, "--base_architecture", "resnet18_v2",
        "--pre_trained_model", "none", "--max_iter", "2", "--batch_size", "2",
        "--crop_size", "32", "--val_interval", "2", "--checkpoint_interval", "2",
        "--num_workers", "0", "--progress", "0"])
    assert code == 0, capsys.readouterr().err
    log = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    assert [r["iteration"] for r in log if r.get("kind") == "val"] == [2]  # on the val list
    recorded = load_checkpoint(os.path.join(out, "final.params")).args
    assert (recorded["image_dir"], recorded["list_file"]) == ("JPEGImages", FOLDER_FLAGS[7])
    metrics = str(tmp_path / "metrics.json")
    eval_main(FOLDER_FLAGS + ["--checkpoint", out, "--data_dir", own_data, "--output", metrics,
                              "--no_progress"])
    result = json.load(open(metrics))
    assert result["num_images"] == 2 and result["dataset"] == "folder"
    assert len(result["per_class_iou"]) == 3


def _error(capsys, main, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_folder_flags_with_another_dataset_are_an_error_naming_the_flag(own_data, tmp_path,
                                                                         capsys):
    line = _error(capsys, train_main, ["--dataset", "synthetic", "--data_dir", own_data,
                                       "--label_dir", "masks", "--output_dir", str(tmp_path)])
    assert "--label_dir is an option of --dataset folder, not of --dataset synthetic" in line
    line = _error(capsys, eval_main, ["--checkpoint", str(tmp_path / "x.params"), "--data_dir",
                                      own_data, "--dataset", "voc", "--image_dir", "pics"])
    assert "--image_dir is an option of --dataset folder, not of --dataset voc" in line
    assert not os.listdir(tmp_path)


def test_one_list_file_for_training_and_validation_is_refused(own_data, tmp_path, capsys):
    flags = [flag.replace("{split}", "train") for flag in FOLDER_FLAGS]
    line = _error(capsys, train_main, flags + ["--data_dir", own_data,
                                               "--output_dir", str(tmp_path)])
    assert "--list_file ImageSets/Segmentation/train.txt would be the list of both" in line
    assert "{split}" in line and not os.listdir(tmp_path)
