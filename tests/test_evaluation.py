"""Inference (multi-scale, flip, sliding window), split evaluation, dense CRF and scripts/eval.py.

The trained model comes from conftest's ``trained_synthetic``: the project's trainer run briefly
on a small synthetic set.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import sys
from unittest import mock

import mxnet as mx
import numpy as np
import pytest
from mask_metrics import metrics_of_masks
from mxnet import gluon
from PIL import Image

from gluon_deeplab import build_model
from gluon_deeplab.checkpoint import save_checkpoint
from gluon_deeplab.data import get_dataset
from gluon_deeplab.devices import resolve_contexts
from gluon_deeplab.evaluation import (
    ConfusionMatrix,
    DenseCRF,
    evaluate,
    predict_probabilities,
    voc_colormap,
)
from gluon_deeplab.evaluation.cli import build_parser, eval_main
from gluon_deeplab.evaluation.config import EvalConfig
from gluon_deeplab.evaluation.inference import _window_starts
from gluon_deeplab.evaluation.run import parse_scales, run_eval
from gluon_deeplab.models import model_from_checkpoint

NUM_CLASSES = 3
SIZE = 40


@pytest.fixture(scope="module")
def synthetic_root(trained_synthetic):
    return trained_synthetic[0]


@pytest.fixture(scope="module")
def trained(trained_synthetic):
    """(net, val dataset, checkpoint path) of the model the trainer trained (conftest)."""
    root, path = trained_synthetic
    net, _ = model_from_checkpoint(path)
    net.hybridize()
    return net, get_dataset("synthetic", root, "val", mode="val"), path


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tiny") / "tiny.params")
    return save_checkpoint(path, build_model(NUM_CLASSES, "resnet18_v2"))


class PointwiseNet(gluon.HybridBlock):
    """A 1x1 convolution: its output at a pixel depends on that pixel only."""

    def __init__(self, num_classes=3):
        super().__init__()
        with self.name_scope():
            self.conv = gluon.nn.Conv2D(num_classes, 1, in_channels=3)

    def hybrid_forward(self, F, x):
        return self.conv(x)


@pytest.fixture
def pointwise():
    net = PointwiseNet()
    net.initialize(mx.init.Normal(1.0))
    return net


# -- predict_probabilities ------------------------------------------------------------------------

def test_multiscale_flip_scores_like_single_scale_on_a_trained_model(trained):
    """A misaligned rescale or flip costs many points; a sound one is within noise of single
    scale on this small fixture model (whose weights vary with OpenMP thread timing), so the
    check allows 0.02 either way rather than claiming a gain it cannot promise."""
    net, val_set, _ = trained
    single, _ = evaluate(net, val_set, mx.cpu(), progress=False)
    assert single["miou"] > 0.5, f"the fixture model did not learn: {single}"
    multi, _ = evaluate(net, val_set, mx.cpu(), scales=(1.0, 1.5), flip=True, progress=False)
    assert multi["miou"] != single["miou"]  # the extra scale and the flip were used
    assert multi["miou"] >= single["miou"] - 0.02, (multi, single)
    assert multi["pixel_accuracy"] >= single["pixel_accuracy"] - 0.02, (multi, single)


def test_probabilities_are_a_distribution_at_the_input_size(trained):
    net = trained[0]
    image = mx.nd.random.normal(shape=(3, 37, 51))
    for fusion in ("mean", "max"):
        prob = predict_probabilities(net, image, mx.cpu(), scales=(0.5, 1.25), flip=True,
                                     fusion=fusion)
        assert prob.shape == (NUM_CLASSES, 37, 51) and prob.dtype == np.float32
        np.testing.assert_allclose(prob.sum(axis=0), 1.0, atol=1e-5)


def test_flip_averages_the_mirrored_prediction_mirrored_back(trained):
    net = trained[0]
    image = mx.nd.random.normal(shape=(3, 33, 45))
    plain = predict_probabilities(net, image, mx.cpu())
    mirrored = predict_probabilities(net, image.flip(axis=2), mx.cpu())[:, :, ::-1]
    both = predict_probabilities(net, image, mx.cpu(), flip=True)
    np.testing.assert_allclose(both, (plain + mirrored) / 2, atol=1e-5)
    fused_max = predict_probabilities(net, image, mx.cpu(), flip=True, fusion="max")
    expected = np.maximum(plain, mirrored)
    np.testing.assert_allclose(fused_max, expected / expected.sum(0), atol=1e-5)


def test_sliding_window_is_exact_for_a_pointwise_net_and_covers_every_pixel(pointwise):
    image = mx.nd.random.normal(shape=(3, 50, 70))
    whole = predict_probabilities(pointwise, image, mx.cpu())
    windowed = predict_probabilities(pointwise, image, mx.cpu(), crop_size=24)
    np.testing.assert_allclose(windowed, whole, atol=1e-5)
    assert _window_starts(70, 24) == [0, 16, 32, 46]
    assert _window_starts(20, 24) == [0]


def test_sliding_window_runs_windows_of_crop_size_with_overlap():
    seen = []

    def net(x):
        seen.append(tuple(x.shape[2:]))
        return mx.nd.zeros((1, 2) + tuple(x.shape[2:]))

    predict_probabilities(net, mx.nd.zeros((3, 30, 50)), mx.cpu(), crop_size=(20, 32))
    assert set(seen) == {(20, 32)} and len(seen) == 2 * 2
    seen.clear()
    predict_probabilities(net, mx.nd.zeros((3, 30, 50)), mx.cpu(), scales=(0.5,), crop_size=32)
    assert seen == [(15, 25)]  # scaled image smaller than the crop: one pass


def test_scales_resize_the_input_bilinearly():
    seen = []

    def net(x):
        seen.append(tuple(x.shape[2:]))
        return mx.nd.zeros((1, 2) + tuple(x.shape[2:]))

    prob = predict_probabilities(net, mx.nd.zeros((3, 40, 60)), mx.cpu(),
                                 scales=(0.5, 0.75, 1.75))
    assert seen == [(20, 30), (30, 45), (70, 105)]
    assert prob.shape == (2, 40, 60)


@pytest.mark.parametrize("kwargs,message", [
    ({"fusion": "median"}, "fusion must be one of"),
    ({"scales": ()}, "at least one scale"),
    ({"scales": (1.0, -0.5)}, "scales must be positive"),
    ({"crop_size": 0}, "crop_size must be positive"),
])
def test_bad_inference_options_are_clear_errors(pointwise, kwargs, message):
    with pytest.raises(ValueError, match=message):
        predict_probabilities(pointwise, mx.nd.zeros((3, 8, 8)), mx.cpu(), **kwargs)


def test_image_must_be_three_channel_chw(pointwise):
    with pytest.raises(ValueError, match="3 x H x W"):
        predict_probabilities(pointwise, mx.nd.zeros((8, 8, 3)), mx.cpu())


# -- evaluate -------------------------------------------------------------------------------------

def test_evaluate_counts_every_pixel_of_every_image_on_two_contexts(synthetic_root, tmp_path):
    val_set = get_dataset("synthetic", synthetic_root, "val", mode="val")
    ctxs = [mx.cpu(0), mx.cpu(1)]
    net = build_model(NUM_CLASSES, "resnet18_v2", ctx=ctxs)
    net.hybridize()
    # 3 images over 2 contexts: the last group is partial and must not be dropped.
    metrics, cm = evaluate(net, val_set, ctxs, max_images=3, progress=False,
                           save_dir=str(tmp_path / "pred"), save_probabilities=True)
    expected = ConfusionMatrix(NUM_CLASSES)
    for i in range(3):
        image, label = val_set[i]
        pred = predict_probabilities(net, image, mx.cpu(0)).argmax(axis=0)
        expected.update(pred, label.asnumpy())
        with Image.open(tmp_path / "pred" / f"{val_set.ids[i]}.png") as saved:
            assert saved.mode == "P" and saved.size == (label.shape[1], label.shape[0])
            assert saved.getpalette() == voc_colormap().ravel().tolist()
            np.testing.assert_array_equal(np.asarray(saved), pred)
        prob = np.load(tmp_path / "pred" / f"{val_set.ids[i]}.npy")
        assert prob.dtype == np.float16 and prob.shape == (NUM_CLASSES,) + label.shape
    np.testing.assert_array_equal(cm.matrix, expected.matrix)
    assert cm.matrix.sum() == sum(int((val_set[i][1].asnumpy() != 255).sum()) for i in range(3))
    assert metrics == expected.metrics()
    assert len(os.listdir(tmp_path / "pred")) == 6


def test_evaluate_rejects_contexts_without_parameters_and_class_mismatch(synthetic_root):
    val_set = get_dataset("synthetic", synthetic_root, "val", mode="val")
    net = build_model(NUM_CLASSES, "resnet18_v2")
    with pytest.raises(ValueError, match=r"not on \['cpu\(1\)'\]"):
        evaluate(net, val_set, [mx.cpu(0), mx.cpu(1)], progress=False)
    with pytest.raises(ValueError, match="predicts 4 classes but the dataset has 3"):
        evaluate(build_model(4, "resnet18_v2"), val_set, mx.cpu(), progress=False)


# -- dense CRF ------------------------------------------------------------------------------------

def _two_region_case():
    image = np.zeros((30, 60, 3), np.uint8)
    image[:, 30:] = 200  # a colour edge at column 30
    prob = np.full((2, 30, 60), 0.5, np.float32)  # columns 25..34 undecided
    prob[0, :, :25], prob[1, :, :25] = 0.7, 0.3
    prob[0, :, 35:], prob[1, :, 35:] = 0.3, 0.7
    return image, prob


def test_crf_snaps_undecided_pixels_to_the_colour_edge():
    pytest.importorskip("pydensecrf.densecrf", reason="optional pydensecrf2 not installed")
    image, prob = _two_region_case()
    refined = DenseCRF()(image, prob)
    assert refined.shape == prob.shape
    np.testing.assert_allclose(refined.sum(axis=0), 1.0, atol=1e-4)
    expected = np.zeros((30, 60), int)
    expected[:, 30:] = 1
    np.testing.assert_array_equal(refined.argmax(axis=0), expected)


def test_crf_defaults_are_deeplabs_and_flags_change_the_result():
    pytest.importorskip("pydensecrf.densecrf", reason="optional pydensecrf2 not installed")
    crf = DenseCRF()
    assert crf.config() == {"iterations": 10, "gaussian_sxy": 1.0, "gaussian_compat": 4.0,
                            "bilateral_sxy": 49.0, "bilateral_srgb": 13.0,
                            "bilateral_compat": 5.0}
    image, prob = _two_region_case()
    weak = DenseCRF(iterations=1, bilateral_compat=0.0, gaussian_compat=0.0)(image, prob)
    np.testing.assert_allclose(weak, prob, atol=1e-4)  # no pairwise term: softmax(log p) = p
    with pytest.raises(ValueError, match="probabilities"):
        crf(image[:10], prob)


def test_evaluate_with_crf_runs_on_the_real_images(trained):
    pytest.importorskip("pydensecrf.densecrf", reason="optional pydensecrf2 not installed")
    net, val_set, _ = trained
    metrics, cm = evaluate(net, val_set, mx.cpu(), crf=DenseCRF(), progress=False)
    assert cm.matrix.sum() > 0 and metrics["miou"] > 0.4


def test_missing_crf_package_is_a_one_line_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(ImportError, match=r"pip install 'gluon-deeplab\[crf\]'"):
        DenseCRF()


# -- scripts/eval.py ------------------------------------------------------------------------------

def test_eval_writes_json_with_the_four_metrics_of_its_predictions(
        tiny_checkpoint, synthetic_root, tmp_path, capsys):
    output = tmp_path / "out" / "metrics.json"
    eval_main(["--checkpoint", tiny_checkpoint, "--data_dir", synthetic_root, "--dataset",
               "synthetic", "--output_stride", "8", "--scales", "0.75,1.0", "--flip",
               "--output", str(output), "--save_predictions", str(tmp_path / "masks"),
               "--no_progress"])
    data = json.loads(output.read_text())
    masks = sorted(glob.glob(str(tmp_path / "masks" / "*.png")))
    expected = metrics_of_masks(masks, os.path.join(synthetic_root, "SegmentationClass"), 3)
    assert len(masks) == 6 and data["num_pixels"] == expected["num_pixels"]
    for key in ("pixel_accuracy", "mean_accuracy", "miou", "fwiou"):
        assert data[key] == pytest.approx(expected[key], abs=1e-9), key
    assert list(data["per_class_iou"]) == ["background", "stripes_1", "checker_2"]
    assert data["num_images"] == 6
    assert data["settings"]["output_stride"] == 8 and data["settings"]["flip"] is True
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "background" in printed and "metrics written to" in printed


def test_eval_of_a_trained_checkpoint_matches_in_process_evaluation(trained, synthetic_root,
                                                                    tmp_path):
    net, val_set, path = trained
    expected, _ = evaluate(net, val_set, mx.cpu(), progress=False)
    result = run_eval({"checkpoint": path, "data_dir": synthetic_root, "dataset": "synthetic",
                       "no_progress": True, "save_predictions": str(tmp_path / "pred"),
                       "num_workers": 1})
    assert result["miou"] == pytest.approx(expected["miou"], abs=1e-6)
    assert result["iteration"] == 100
    assert sorted(os.listdir(tmp_path / "pred")) == [f"{i}.png" for i in val_set.ids]


def test_eval_errors_are_one_line_and_name_the_problem(tiny_checkpoint, synthetic_root,
                                                       tmp_path, capsys):
    base = ["--data_dir", synthetic_root, "--dataset", "synthetic", "--no_progress"]
    missing = str(tmp_path / "nope.params")
    with pytest.raises(SystemExit) as exit_info:
        eval_main(["--checkpoint", missing] + base)
    assert exit_info.value.code == 2
    assert f"checkpoint '{missing}' does not exist" in capsys.readouterr().err

    junk = tmp_path / "junk.params"
    junk.write_bytes(b"not an mxnet file")
    with pytest.raises(ValueError, match="not a gluon-deeplab checkpoint"):
        run_eval({"checkpoint": str(junk), **_flags(base)})

    four = save_checkpoint(str(tmp_path / "four.params"), build_model(4, "resnet18_v2"))
    with pytest.raises(ValueError, match="predicts 4 classes but --dataset synthetic"):
        run_eval({"checkpoint": four, **_flags(base)})
    with pytest.raises(ValueError, match="--num_classes 5 disagrees"):
        run_eval({"checkpoint": tiny_checkpoint, "num_classes": 5, **_flags(base)})

    existing = tmp_path / "m.json"
    existing.write_text("{}")
    with pytest.raises(FileExistsError, match="--output .* exists"):
        run_eval({"checkpoint": tiny_checkpoint, "output": str(existing), **_flags(base)})
    assert existing.read_text() == "{}"


def test_eval_flags_take_their_defaults_from_evalconfig_one_field_per_flag():
    parsed = vars(build_parser().parse_args(["--checkpoint", "c.params"]))
    expected = dataclasses.asdict(EvalConfig(checkpoint="c.params"))
    assert parsed == expected  # same names, same defaults (buckets None, crf_* DenseCRF's)
    assert EvalConfig().crf_iterations == DenseCRF().iterations
    with pytest.raises(ValueError, match="unknown evaluation setting.*: scale$"):
        EvalConfig.from_mapping({"checkpoint": "c.params", "scale": "1.0"})
    with pytest.raises(ValueError, match="unknown evaluation setting"):
        run_eval({"checkpoint": "c.params", "no_such_flag": 1})


def test_run_eval_takes_an_evalconfig_and_leaves_it_unchanged(tiny_checkpoint, synthetic_root):
    config = EvalConfig(checkpoint=tiny_checkpoint, dataset="synthetic", no_progress=True,
                        max_images=2)
    as_dict = run_eval({"checkpoint": tiny_checkpoint, "data_dir": synthetic_root,
                        "dataset": "synthetic", "no_progress": True, "max_images": 2})
    with mock.patch("gluon_deeplab.evaluation.run.default_data_dir",
                    return_value=synthetic_root):
        result = run_eval(config)
    assert config.data_dir is None  # the filled-in default went to a copy
    assert result["data_dir"] == os.path.abspath(synthetic_root)
    assert result["miou"] == as_dict["miou"] and result["num_images"] == 2


def _flags(argv):
    return {"data_dir": argv[1], "dataset": argv[3], "no_progress": True}


def test_scale_and_device_flags_are_parsed_with_clear_errors():
    assert parse_scales("0.5,0.75,1.0") == [0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match="--scales"):
        parse_scales("0.5,big")
    assert resolve_contexts("") == [mx.cpu()]
    with pytest.raises(ValueError, match="--gpus 7: "):  # no such GPU, or a build without CUDA
        resolve_contexts("7") if mx.context.num_gpus() < 8 else pytest.skip("8 GPUs present")
