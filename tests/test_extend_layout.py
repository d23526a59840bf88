"""A dataset layout defined outside the package, registered through the public API, is read by
training, evaluation and export with no edit to gluon_deeplab (docs/add-a-dataset-layout.md)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from gluon_deeplab.data import (
    DataError,
    LayoutSpec,
    SegmentationDataset,
    check_disjoint,
    default_data_dir,
    get_dataset,
    layouts_in,
    register_layout,
)

TOY_CLASSES = ("ground", "box")


def toy_dataset(root: str, split: str = "train", num_classes=None, **options):
    """The toy layout: ``pics/<id>.png`` images, ``masks/<id>_mask.png`` labels and one id list
    per split, ``<split>.ids``."""
    with open(os.path.join(root, f"{split}.ids"), encoding="utf-8") as f:
        ids = f.read().split()
    samples = [(i, os.path.join(root, "pics", f"{i}.png"),
                os.path.join(root, "masks", f"{i}_mask.png")) for i in ids]
    return SegmentationDataset(samples, num_classes=num_classes or len(TOY_CLASSES),
                               classes=TOY_CLASSES, name=f"toy:{split}", **options)


def _write_toy_set(root: str) -> None:
    """Six 32x32 images of a bright box on a dark ground; four to fit on, two to check."""
    rng = np.random.default_rng(0)
    for sub in ("pics", "masks"):
        os.makedirs(os.path.join(root, sub))
    for k in range(6):
        label = np.zeros((32, 32), np.uint8)
        y, x = rng.integers(2, 14, 2)
        label[y:y + 16, x:x + 16] = 1
        image = (rng.integers(0, 60, (32, 32, 3)) + 180 * label[..., None]).astype(np.uint8)
        Image.fromarray(image).save(os.path.join(root, "pics", f"s{k}.png"))
        Image.fromarray(label).save(os.path.join(root, "masks", f"s{k}_mask.png"))
    for split, ids in (("fit", "s0 s1 s2 s3"), ("check", "s4 s5")):
        with open(os.path.join(root, f"{split}.ids"), "w", encoding="utf-8") as f:
            f.write(ids.replace(" ", "\n") + "\n")


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> str:
    """The toy set, its layout registered with it as the default folder and 'fit' as the
    default training split."""
    root = str(tmp_path_factory.mktemp("toy") / "data")
    _write_toy_set(root)
    register_layout(LayoutSpec(
        "toy", toy_dataset, aliases=("toy_v0",), data_dir=root, train_split="fit",
        classes=lambda n: list(TOY_CLASSES) if n == len(TOY_CLASSES) else None,
        detect=lambda path: os.path.isdir(os.path.join(path, "masks"))))
    return root


def test_registered_layout_is_read_and_found_like_a_built_in_one(toy_root):
    assert default_data_dir("toy_v0") == toy_root
    train = get_dataset("toy", toy_root, "fit")
    assert train.ids == ["s0", "s1", "s2", "s3"] and train.classes == list(TOY_CLASSES)
    assert layouts_in(toy_root) == ["toy"]
    with pytest.raises(DataError, match="share 4 image"):
        check_disjoint(train, get_dataset("toy", toy_root, "fit", mode="val"))
    with pytest.raises(ValueError, match="already registered"):
        register_layout(LayoutSpec("toy", toy_dataset))


def test_cli_parsers_accept_the_layout_and_refuse_an_unknown_one_in_one_line(toy_root, capsys):
    from gluon_deeplab.evaluation.cli import build_parser as eval_parser
    from gluon_deeplab.training.cli import build_parser as train_parser
    from gluon_deeplab.training.config import TrainConfig

    assert train_parser().parse_args(["--dataset", "toy", "--val_dataset", "toy"]).dataset == "toy"
    assert eval_parser().parse_args(["--dataset", "toy", "--checkpoint", "x"]).dataset == "toy"
    with pytest.raises(ValueError, match=r"^--val_dataset 'tyo': unknown dataset layout; "
                                         r"expected one of voc, .*toy, vocaug, toy_v0$"):
        TrainConfig(dataset="toy", val_dataset="tyo").check()


def test_layout_from_outside_trains_evaluates_and_exports(toy_root, tmp_path):
    from gluon_deeplab.deploy.exporting import export_checkpoint
    from gluon_deeplab.evaluation.run import run_eval
    from gluon_deeplab.training import train

    done = train({"dataset": "toy", "val_split": "check", "val_interval": 2, "max_iter": 4,
                  "base_architecture": "resnet18_v2", "pre_trained_model": "none",
                  "batch_size": 2, "crop_size": 32, "num_workers": 0, "progress": 0,
                  "checkpoint_interval": 100, "output_dir": str(tmp_path / "run")})
    assert done["iteration"] == 4 and done["best_miou"] is not None
    with open(tmp_path / "run" / "log.jsonl", encoding="utf-8") as f:
        start = json.loads(f.readline())
    assert start["decided"]["data_dir"] == toy_root  # the layout's defaults, as decided
    assert start["decided"]["train_split"] == "fit" and start["asked"]["data_dir"] is None
    result = run_eval({"checkpoint": done["checkpoint"], "dataset": "toy", "data_dir": toy_root,
                       "split": "check", "crop_size": 32, "no_progress": True})
    assert result["num_images"] == 2 and list(result["per_class_iou"]) == list(TOY_CLASSES)
    files = export_checkpoint(done["checkpoint"], str(tmp_path / "toy"))
    with open(files["meta"], encoding="utf-8") as f:
        assert json.load(f)["classes"] == list(TOY_CLASSES)
