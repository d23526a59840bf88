"""The quick start script, end to end at tiny settings: data, train, eval, export, predict."""

from __future__ import annotations

import json

import pytest
from mask_metrics import metrics_of_masks
from PIL import Image


def test_quickstart_script_runs_every_step_and_says_where_outputs_went(quickstart_run):
    out, done = quickstart_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "data" / "synthetic.json").is_file()
    assert (out / "train" / "final.params").is_file()
    metrics = json.loads((out / "eval.json").read_text())
    assert metrics["num_images"] == 4
    assert (out / "export" / "deeplab-symbol.json").is_file()
    assert (out / "export" / "deeplab-0000.params").is_file()
    masks = sorted((out / "predictions" / "masks").glob("*.png"))
    panels = sorted((out / "predictions" / "panels").glob("*.png"))
    assert len(masks) == len(panels) == 4
    assert Image.open(masks[0]).mode == "P" and Image.open(masks[0]).size == (64, 48)
    assert f"predictions   {out}/predictions" in done.stdout


def test_quickstart_miou_is_that_of_its_exported_masks_against_the_labels(quickstart_run):
    """eval.py's mIoU (checkpoint, one scale) equals the mIoU of the masks that predict.py
    wrote from the export for the same 4 val images: the two paths agree pixel for pixel."""
    out, done = quickstart_run
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "eval.json").read_text())
    masks = sorted((out / "predictions" / "masks").glob("*.png"))
    expected = metrics_of_masks(masks, str(out / "data" / "SegmentationClass"), 5)
    assert len(masks) == 4 and metrics["num_pixels"] == expected["num_pixels"] > 0
    for key in ("pixel_accuracy", "mean_accuracy", "miou", "fwiou"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-9), key
